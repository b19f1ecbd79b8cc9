"""``qldm bench engines --qubits 12``: its agreement measure and one small interleaved section."""

from __future__ import annotations

import numpy as np
import pytest

from qldm.bench import engines_wide


def test_agreement_is_relative_to_the_reference() -> None:
    want = (np.array([[0.5, -2.0]]), np.array([[[4.0]]]), np.array([[[1.0, 0.0]]]))
    got = (want[0] + 2e-6, want[1] - 8e-6, want[2])
    # 2e-6 / 2 on the values, 8e-6 / 4 on d_inputs: the worst is 2e-6
    assert engines_wide._max_diff(got, want) == pytest.approx(2e-6)
    assert engines_wide._max_diff(want, want) == 0.0


@pytest.mark.slow  # PennyLane's import and the 12-qubit peers: about 40 s on a loaded machine
def test_a_small_section_agrees_and_times_every_engine_in_each_round(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("pennylane")
    rows = engines_wide._section("hqconv", batch=2, repeats=2)
    names = [r.name for r in rows]
    assert names == [
        "qldm statevector",
        "qldm statevector float32",
        "qldm exact backend",
        "PennyLane default.qubit",
        "PennyLane lightning.qubit",
    ]
    # every float64 engine computes the same values and Jacobians (lightning's adjoint to
    # ~1e-8); complex64 to single precision
    assert all(r.diff <= engines_wide.AGREEMENT for r in rows if "float32" not in r.name)
    assert 0 < rows[1].diff < 1e-4
    assert rows[0].ratio == 1.0
    assert all(r.ratio is not None and r.ratio > 0 for r in rows[3:] + rows[1:2])
    assert rows[2].ratio is None  # the exact row is one call, not in the rounds
    printed = capsys.readouterr().out
    assert "round 2/2" in printed and "max rel diff" in printed
