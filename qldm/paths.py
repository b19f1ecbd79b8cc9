"""Where qldm keeps its files unless told otherwise: one data folder, one database file name.

The server reads its data folder from its settings (``QLDM_DATA_DIR``, see
:class:`qldm.service.settings.Settings`) and passes it down; library calls take it as an argument
(``data_dir=``, ``root=``, ``cache_dir=``) and fall back on :func:`default_data_dir` when they get
none. Nothing in qldm reads ``QLDM_DATA_DIR`` but the settings.

Inside the data folder::

    qldm.sqlite3        the job store (when no QLDM_DATABASE_URL is set)
    runtime_results/    finished fake:/ibm: results, for re-attaching after a restart
    m3/                 M3 readout calibrations of in-process runtime backends
    datasets/           image data sets (hybrid.data.load_dataset)
    feature_net/        the digit classifier of the generative metrics

Like :mod:`qldm.errors`, this module imports nothing of qldm, so every layer may import it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATABASE_FILE", "default_data_dir", "sqlite_url"]

DATABASE_FILE = "qldm.sqlite3"
"""The SQLite file of the job store inside the data folder."""


def default_data_dir() -> Path:
    """The data folder when none is given: ``$XDG_DATA_HOME/qldm``, else
    ``~/.local/share/qldm`` (the XDG base-directory convention; ``XDG_DATA_HOME`` is the
    platform's variable, not a qldm setting)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "qldm"


def sqlite_url(data_dir: Path) -> str:
    """The SQLAlchemy URL of the job store's SQLite file in ``data_dir`` (creates nothing)."""
    return f"sqlite:///{(Path(data_dir).expanduser() / DATABASE_FILE).resolve().as_posix()}"
