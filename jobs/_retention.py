"""Result retention: the store keeps finished jobs' results for a time or a count, not forever.

A training run makes one job per step, and each job's result (values and both Jacobians) is
most of what the database holds: about 170 kB for a ``B = 64`` step of the demo, which the
client reads once, seconds after the job ends. :meth:`RetentionStore.prune_results` deletes the
results beyond the retention and keeps the jobs themselves (their state, timings and errors stay
visible; asking for a pruned result is a 410 ``result_expired``). On SQLite the freed pages are
reused by later results, so a server that prunes as it goes keeps its file near the size of
the results it retains; :meth:`RetentionStore.vacuum` gives the space back to the file system.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from qldm.errors import InvalidSpecError
from qldm.jobs import db
from qldm.jobs._sql import SqlBase, now

__all__ = ["PruneReport", "RetentionStore"]


@dataclass(frozen=True)
class PruneReport:
    """What one prune did.

    Attributes:
        results_deleted: results deleted.
        results_kept: results left.
    """

    results_deleted: int
    results_kept: int


class RetentionStore(SqlBase):
    """The retention part of :class:`qldm.jobs.store.JobStore`."""

    def prune_results(
        self,
        *,
        older_than: timedelta | None = None,
        keep: int | None = None,
        at: datetime | None = None,
    ) -> PruneReport:
        """Delete the results stored longer than ``older_than`` ago, and all but the newest
        ``keep`` results; the jobs stay.

        Args:
            older_than: keep results younger than this (``None``: no age limit).
            keep: keep at most this many results, the newest (``None``: no count limit).
            at: the time ``older_than`` counts back from (default: now).

        Returns:
            How many results were deleted and how many are left.

        Raises:
            InvalidSpecError: a negative ``older_than`` (``field="older_than"``) or ``keep``
                (``field="keep"``).
        """
        if older_than is not None and older_than < timedelta(0):
            raise InvalidSpecError(f"must be >= 0, got {older_than}", field="older_than")
        if keep is not None and keep < 0:
            raise InvalidSpecError(f"must be >= 0, got {keep}", field="keep")
        table = db.job_results
        deleted = 0
        with self._write() as conn:
            if older_than is not None:
                cutoff = (at or now()) - older_than
                deleted += conn.execute(delete(table).where(table.c.created_at < cutoff)).rowcount
            if keep is not None:
                # the newest `keep` results by (created_at, job_id); everything older goes
                boundary = conn.execute(
                    select(table.c.created_at, table.c.job_id)
                    .order_by(table.c.created_at.desc(), table.c.job_id.desc())
                    .limit(1)
                    .offset(keep)
                ).first()
                if boundary is not None:
                    older = (table.c.created_at < boundary.created_at) | (
                        (table.c.created_at == boundary.created_at)
                        & (table.c.job_id <= boundary.job_id)
                    )
                    deleted += conn.execute(delete(table).where(older)).rowcount
            left = conn.execute(select(func.count()).select_from(table)).scalar_one()
        return PruneReport(results_deleted=int(deleted), results_kept=int(left))

    def vacuum(self) -> None:
        """SQLite: rebuild the file so that pruned space goes back to the file system
        (``VACUUM``, then truncate the write-ahead log). A no-op on PostgreSQL, whose
        autovacuum reuses the space."""
        if not self._sqlite:
            return
        # the DBAPI connection in autocommit (VACUUM cannot run inside a transaction)
        raw = self._engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("VACUUM")
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cur.close()
        finally:
            raw.close()
