"""``qldm.backends.admit`` refuses at submission exactly what the backend refuses when it runs."""

from __future__ import annotations

import pytest

from qldm.backends import admit, get_backend
from qldm.backends.base import Workload
from qldm.circuits import PQCSpec
from qldm.errors import BackendLimitError


def _work(n_qubits: int, kind: str, sampling: str = "expectation") -> Workload:
    spec = PQCSpec.model_validate(
        {"n_qubits": n_qubits, "channel": {"kind": kind, "strength": 0.1}}
    )
    return Workload.build(
        spec, [[0.1] * spec.n_inputs], [0.2] * spec.n_weights, noise_sampling=sampling
    )


@pytest.mark.parametrize(
    ("n_qubits", "kind", "sampling"),
    [
        (11, "bit_flip", "expectation"),
        (12, "depolarizing", "expectation"),
        (4, "bit_flip", "expectation"),
        (11, "none", "expectation"),
        (11, "bit_flip", "trajectory"),
    ],
)
def test_admit_agrees_with_the_exact_backend(n_qubits: int, kind: str, sampling: str) -> None:
    work = _work(n_qubits, kind, sampling)
    try:
        get_backend("exact").run(work)
        refused_when_run = False
    except BackendLimitError:
        refused_when_run = True
    try:
        admit("exact", work)
        refused_at_submission = False
    except BackendLimitError as exc:
        assert exc.field == "circuit.n_qubits"
        refused_at_submission = True
    assert refused_at_submission == refused_when_run
