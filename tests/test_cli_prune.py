"""``qldm prune``: old results deleted from the server's database, the jobs kept, the file
shrunk; limits from the flags or else from ``QLDM_RESULT_TTL_S`` / ``QLDM_MAX_RESULTS``."""

from __future__ import annotations

from pathlib import Path

import pytest

from qldm.errors import ResultExpiredError
from qldm.jobs.store import JobStore
from tests.jobs.test_run_losses_retention import _finish
from tests.test_cli import data_dir, qldm

__all__ = ["data_dir"]


def _filled(data_dir: Path, n: int) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(f"sqlite:///{data_dir}/qldm.sqlite3")
    store.migrate()
    try:
        return _finish(store, n)
    finally:
        store.close()


def test_prune_keeps_the_newest_results_and_shrinks_the_file(data_dir: Path) -> None:
    ids = _filled(data_dir, 12)
    before = (data_dir / "qldm.sqlite3").stat().st_size
    done = qldm("prune", "--keep", "3")
    assert done.exit_code == 0, done.output
    assert "deleted 9 results, kept 3" in done.stdout
    assert (data_dir / "qldm.sqlite3").stat().st_size < before / 2
    store = JobStore(f"sqlite:///{data_dir}/qldm.sqlite3")
    try:
        with pytest.raises(ResultExpiredError):
            store.result(tenant="t", job_id=ids[0])
        assert store.result(tenant="t", job_id=ids[-1]).values is not None
        assert len(store.list(tenant="t")[0]) == 12  # every job is still there
    finally:
        store.close()


def test_prune_takes_its_limits_from_the_settings(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _filled(data_dir, 4)
    monkeypatch.setenv("QLDM_MAX_RESULTS", "1")
    done = qldm("prune", "--no-vacuum")
    assert done.exit_code == 0, done.output
    assert "deleted 3 results, kept 1" in done.stdout and "count limit: 1" in done.stdout
    monkeypatch.setenv("QLDM_MAX_RESULTS", "")
    monkeypatch.setenv("QLDM_RESULT_TTL_S", "0")  # everything finished before now is old
    done = qldm("prune")
    assert "deleted 1 results, kept 0" in done.stdout and "count limit: none" in done.stdout
