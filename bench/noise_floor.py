"""``qldm bench floor``: the channel a hardware job delivers, against the one it asked for.

On ``fake:`` devices the runtime path (:class:`qldm.backends.runtime.RuntimeBackend`) estimates
the device's own per-layer noise from the calibration (the *floor*) and injects only the
remainder. Whether the total is what was asked is measured here, independently of that
estimate: the same ISA circuit the job runs, bound with the injected strengths the job chose,
is simulated exactly (Aer density matrix, the fake device's own noise model
``NoiseModel.from_backend``, which is what local testing mode runs; the Pauli-insertion
channel enumerated exactly instead of sampled, and expectation values read without readout
error or shots).

Per layer, from the decay between one and two layers (which cancels state preparation):

- ``bit_flip``: the Z contrast ``lambda_z = (<Z>_{|0>} - <Z>_{|1>}) / 2``; delivered
  ``p = (1 - lambda_z) / 2``;
- ``phase_flip``: the X contrast from ``|+>``, ``|->``; ``p = (1 - lambda_x) / 2``;
- ``depolarizing``: ``s = 1 - (lambda_x + lambda_y + lambda_z) / 3`` (the mean Bloch shrink,
  ``|+-i>`` prepared with an ``angle_rx`` encoding);
- ``amplitude_damping``: the excited population from ``|1>``, ``gamma = 1 - P_1(2) / P_1(1)``.
"""

from __future__ import annotations

import itertools
import tempfile
import warnings
from typing import Any

import numpy as np

__all__ = ["delivered", "main"]

CASES = (
    ("manila", "depolarizing", 0.01),
    ("manila", "depolarizing", 0.04),
    ("manila", "bit_flip", 0.01),
    ("manila", "bit_flip", 0.03),
    ("manila", "phase_flip", 0.03),
    ("manila", "amplitude_damping", 0.05),
    ("lima", "depolarizing", 0.02),
    ("quito", "bit_flip", 0.05),
    ("quito", "amplitude_damping", 0.15),
)
"""(device, channel, requested strength) rows of the table: the strengths the models use."""


def _spec(kind: str, strength: float, layers: int, encoding: str) -> Any:
    from qldm.circuits import PQCSpec

    return PQCSpec.parse(
        {
            "n_qubits": 1,
            "layers": layers,
            "encoding": encoding,
            "channel": {"kind": kind, "strength": strength},
        }
    )


def _expectations(
    backend: Any, kind: str, strength: float, layers: int, encoding: str, x: float, label: str
) -> float:
    """Exact ``<label>`` on the data qubit after ``layers`` layers, prepared by ``x``."""
    from qldm.backends.base import Workload
    from qldm.mitigation.noise import slot_distribution

    spec = _spec(kind, strength, layers, encoding)
    work = Workload.build(spec, [[x]], np.zeros(spec.n_weights), shots=1000, seed=1)
    prepared = backend.prepare(work)
    isa = prepared.isa
    injected = np.asarray(prepared.noise["injected"][0]).reshape(-1)  # (L * n,)
    choices = [slot_distribution(kind, float(g)) for g in injected]
    order = isa.hardware.parameter_order()
    present = set(isa.circuit.parameters)
    sim = _simulator(backend.backend)
    observable = isa.observables([label])[0]
    total = 0.0
    for combo in itertools.product(*choices):
        values = [x, *np.zeros(spec.n_weights)]
        prob = 1.0
        for angles, p in combo:
            values.extend(angles)
            prob *= p
        binding = {p: v for p, v in zip(order, values, strict=True) if p in present}
        circuit = isa.circuit.assign_parameters(binding)
        circuit.save_expectation_value(observable, list(range(circuit.num_qubits)))
        result = sim.run(circuit, shots=1).result()
        total += prob * float(np.real(result.data(0)["expectation_value"]))
    return total


_SIMULATORS: dict[str, Any] = {}


def _simulator(device: Any) -> Any:
    from qiskit_aer import AerSimulator

    name = str(device.name)
    if name not in _SIMULATORS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sim = AerSimulator.from_backend(device)
        sim.set_options(method="density_matrix")
        _SIMULATORS[name] = sim
    return _SIMULATORS[name]


def delivered(
    device: str,
    kind: str,
    strength: float,
    *,
    data_dir: Any = None,
    floor_method: str = "calibration",
) -> dict[str, float]:
    """The per-layer channel a ``fake:<device>`` job delivers when it asks for ``strength``.

    Args:
        device: a fake device (``manila``).
        kind: the channel kind.
        strength: the requested per-layer strength.
        data_dir: the backend's data folder (a temporary one when ``None``).
        floor_method: the backend's ``floor`` option: ``calibration`` or ``measured``.

    Returns:
        ``{"requested", "delivered", "floor"}``: the floor is the backend's (estimated or
        measured).
    """
    from qldm.backends.runtime import RuntimeBackend

    folder = data_dir or tempfile.mkdtemp(prefix="qldm-floor-")
    backend = RuntimeBackend(
        f"fake:{device}", data_dir=folder, allow_noise_floor=True, floor=floor_method
    )

    def ev(layers: int, encoding: str, x: float, label: str) -> float:
        return _expectations(backend, kind, strength, layers, encoding, x, label)

    def contrast(layers: int, axis: str) -> float:
        encoding, label, x = {
            "z": ("angle_ry", "Z", 0.0),
            "x": ("angle_ry", "X", np.pi / 2),
            "y": ("angle_rx", "Y", -np.pi / 2),
        }[axis]
        return (ev(layers, encoding, x, label) - ev(layers, encoding, x + np.pi, label)) / 2

    def shrink(axis: str) -> float:
        return contrast(2, axis) / contrast(1, axis)

    if kind == "bit_flip":
        value = (1 - shrink("z")) / 2
    elif kind == "phase_flip":
        value = (1 - shrink("x")) / 2
    elif kind == "depolarizing":
        value = 1 - (shrink("x") + shrink("y") + shrink("z")) / 3
    else:  # amplitude damping: the excited population, from |1>

        def excited(layers: int) -> float:
            return (1 - ev(layers, "angle_ry", np.pi, "Z")) / 2

        value = 1 - excited(2) / excited(1)
    spec = _spec(kind, strength, 1, "angle_ry")
    from qldm.backends.base import Workload

    work = Workload.build(spec, [[0.0]], np.zeros(spec.n_weights), shots=1000)
    floor = float(backend.prepare(work).noise["device_floor"][0])
    return {"requested": strength, "delivered": float(value), "floor": floor}


def main() -> None:
    """Print the tables: one data qubit (device, channel, requested, delivered, floor
    estimate), then several (:func:`qldm.bench.noise_floor_layers.main`)."""
    print("| device | channel | requested | delivered | error | floor estimate |")
    print("| --- | --- | --- | --- | --- | --- |")
    for device, kind, strength in CASES:
        row = delivered(device, kind, strength)
        err = row["delivered"] - strength
        print(
            f"| fake:{device} | {kind} | {strength:.3f} | {row['delivered']:.4f} | "
            f"{err:+.4f} | {row['floor']:.4f} |"
        )
    print()
    from qldm.bench.noise_floor_layers import main as main_layers

    main_layers()


if __name__ == "__main__":
    main()
