"""Alembic environment for qldm's job store.

Migrations run programmatically (:func:`qldm.jobs.db.run_migrations`), which passes an open
connection in ``config.attributes["connection"]``; there is no ``alembic.ini``. Running
``alembic`` from the command line is supported too, with ``-x url=<database url>``.
"""

from __future__ import annotations

from alembic import context

from qldm.jobs.db import VERSION_TABLE, make_engine, metadata

config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
elif context.is_offline_mode():
    context.configure(
        url=context.get_x_argument(as_dictionary=True)["url"],
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(context.get_x_argument(as_dictionary=True)["url"])
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
