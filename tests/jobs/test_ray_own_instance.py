"""The Ray executor's local instance is its own (issue 15, item 9, in part).

Without ``QLDM_RAY_ADDRESS`` the server is documented to start a local Ray instance. But
``ray.init()`` with no address joins whatever cluster ``RAY_ADDRESS`` or
``/tmp/ray/ray_current_cluster`` (left by ``ray start``) names: on a machine where another
process's Ray runs (another server, a leftover of a killed one, a user's ``ray start``), the
server's jobs ran on that cluster and died with it. Here another process's Ray instance, named
by ``RAY_ADDRESS``, stands in for it: the executor must start its own.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.ray

ray = pytest.importorskip("ray")

_OTHER = """
import sys, time, ray
ray.init(num_cpus=1, include_dashboard=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()  # until the test closes stdin
ray.shutdown()
"""


def test_a_local_executor_never_joins_another_process_ray(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qldm.jobs.executors.ray import RayExecutor

    if ray.is_initialized():
        pytest.skip("this process already runs Ray (the executor would reuse it)")
    other = subprocess.Popen(
        [sys.executable, "-c", _OTHER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        foreign = other.stdout.readline().strip()
        assert foreign, "the other Ray instance did not start"
        monkeypatch.setenv("RAY_ADDRESS", foreign)
        executor = RayExecutor(num_cpus=1)
        try:
            own = ray.get_runtime_context().gcs_address
            assert own != foreign
            assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
        finally:
            executor.shutdown()
    finally:
        assert other.stdin is not None
        other.stdin.close()
        try:
            other.wait(timeout=60)
        except subprocess.TimeoutExpired:
            other.kill()
    time.sleep(0.1)
