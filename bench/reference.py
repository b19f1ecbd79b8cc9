"""The reference work every benchmark measures (issue: 'the reference work')."""

from __future__ import annotations

REFERENCE_SPEC = {
    "n_qubits": 6,
    "encoding": "angle_ry",
    "ansatz": "ry_rz_brickwork",
    "layers": 6,
    "channel": {"kind": "amplitude_damping", "strength": 0.01},
    "observables": "z_each",
}
"""6 qubits, ``ry_rz_brickwork``, 6 layers, amplitude damping 0.01, ``angle_ry``, Z on each."""

REFERENCE_BATCH = 128
"""Samples per job in the reference work."""
