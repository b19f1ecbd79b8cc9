"""Large exact-valued jobs run in chunks of about a second (issue 15, item 5): the values do
not depend on the cut, and a cancel is seen between chunks."""

from __future__ import annotations

import numpy as np
import pytest

from qldm.backends import get_backend
from qldm.errors import JobCancelled
from qldm.jobs import runner
from qldm.jobs.model import JobRequest


def _request(batch: int, **extra: object) -> JobRequest:
    rng = np.random.default_rng(3)
    return JobRequest.parse(
        {
            "circuit": {"n_qubits": 3, "layers": 2},
            "task": "jacobian",
            "inputs": rng.uniform(-np.pi, np.pi, size=(batch, 3)).tolist(),
            "weights": rng.uniform(-np.pi, np.pi, size=12).tolist(),
            **extra,
        }
    )


def test_timed_chunks_give_the_backends_own_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "CHUNK_SECONDS", 1e-9)  # every chunk after the first: 1 sample
    request = _request(80)
    assert runner.timed_chunks(request)
    fractions: list[float] = []
    result = runner.execute(request, progress=fractions.append)
    whole = get_backend("exact").run(request.workload())
    assert result.metadata["chunks"] == 1 + (80 - runner.TIMED_FIRST_CHUNK)
    np.testing.assert_allclose(result.values, whole.values, atol=1e-12)
    np.testing.assert_allclose(result.d_inputs, whole.d_inputs, atol=1e-12)
    np.testing.assert_allclose(result.d_weights, whole.d_weights, atol=1e-12)
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_a_cancel_is_seen_between_timed_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "CHUNK_SECONDS", 1e-9)
    asked: list[int] = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) >= 3

    with pytest.raises(JobCancelled):
        runner.execute(_request(80), should_cancel=cancel)
    assert len(asked) == 3


@pytest.mark.parametrize(
    "extra",
    [{"shots": 100, "seed": 1}, {"options": {"chunk_size": 10}}],
)
def test_shots_and_explicit_chunk_sizes_keep_their_fixed_chunks(extra: dict[str, object]) -> None:
    """With shots, each chunk has its own seed: where the batch is cut must not depend on
    timing, or the same request would give other values."""
    assert not runner.timed_chunks(_request(80, **extra))


def test_small_jobs_run_in_one_chunk() -> None:
    request = _request(2 * runner.TIMED_FIRST_CHUNK)
    assert not runner.timed_chunks(request)
    assert runner.execute(request).metadata.get("chunks", 1) == 1
