"""The local executor: calls and answers over each worker's pipe, failures, dead workers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from qldm.jobs.executors import WorkerLostError
from qldm.jobs.executors.local import LocalExecutor
from qldm.jobs.runner import JobFailure


def _square(x: int) -> int:
    return x * x


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _raise(code: str) -> None:
    raise JobFailure(code, f"failed with {code}")


def _unpicklable_answer() -> Callable[[], None]:
    return lambda: None


@pytest.fixture(scope="module")
def executor() -> Iterator[LocalExecutor]:
    ex = LocalExecutor(2, preload=())
    yield ex
    ex.shutdown()


def test_answers_come_back_to_their_calls(executor: LocalExecutor) -> None:
    futures = [executor.submit(_square, i) for i in range(50)]
    assert [f.result(timeout=30) for f in futures] == [i * i for i in range(50)]
    assert len(executor.worker_pids()) == 2


def test_exceptions_travel_back_with_their_type(executor: LocalExecutor) -> None:
    failed = executor.submit(_raise, "backend_error")
    with pytest.raises(JobFailure) as info:
        failed.result(timeout=30)
    assert info.value.code == "backend_error" and "failed with" in info.value.message
    unpicklable = executor.submit(_unpicklable_answer)
    with pytest.raises(RuntimeError, match="unpicklable answer"):
        unpicklable.result(timeout=30)
    with pytest.raises(Exception, match="pickle"):  # refused before anything is sent
        executor.submit(_square, lambda: 1)
    assert executor.submit(_square, 3).result(timeout=30) == 9


def test_a_dead_worker_fails_its_call_and_is_replaced(executor: LocalExecutor) -> None:
    executor.warm_up()
    restarts = executor.restarts
    slow = executor.submit(_pid_after, 30.0)
    other = executor.submit(_pid_after, 0.5)  # the least busy worker: the other one
    time.sleep(0.3)
    victim = next(p for p in executor.worker_pids() if p != other.result(timeout=30))
    os.kill(victim, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(WorkerLostError, match=str(victim)):
        slow.result(timeout=30)
    assert time.monotonic() - start < 10
    pids = executor.warm_up()  # the dead one's slot gets a fresh worker
    assert victim not in pids and len(pids) == 2
    assert executor.restarts == restarts + 1
    assert executor.submit(_square, 4).result(timeout=30) == 16


def test_shutdown_stops_the_workers() -> None:
    ex = LocalExecutor(1, preload=())
    (pid,) = ex.worker_pids()
    ex.shutdown()
    assert ex.worker_pids() == []
    with pytest.raises(RuntimeError, match="shut down"):
        ex.submit(_square, 2)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
