"""The device floor learned by IBM's own noise learner (``NoiseLearnerV3``).

:func:`noise_learner_floor` boxes the job's layers of two-qubit gates, has the runtime's
client-side noise learner (:class:`qiskit_ibm_runtime.executor_noise_learner.NoiseLearnerV3`,
which runs through the ``Executor`` primitive: in local testing mode on a fake device, or in
the job's Session/Batch on ``ibm:``) learn a sparse Pauli-Lindblad model of each, and turns the
models into the floor :mod:`qldm.backends._runtime_pubs` subtracts: per data qubit, the
strength of ``spec.channel.kind`` per PQC layer.

The layers. In the job's ISA circuit (:class:`qldm.circuits.transpile.IsaCircuit`) every
two-qubit gate that touches a data qubit is placed at the first *two-qubit depth* after the
earlier two-qubit gates on its qubits (an as-soon-as-possible layering that ignores the
single-qubit gates between them). Each depth becomes one box over the data qubits and the
ancillas that depth's gates touch (``Twirl()`` annotation: Pauli twirl, dressing on the left;
the box holds only the two-qubit gates, which are self-inverse, as the learning protocol
needs). With no encoding having two-qubit gates, the ``L * s`` depths are the ansatz's
(``s`` per PQC layer, routing SWAPs and the amplitude-damping dilation's gates included); a
spec without two-qubit gates (one qubit) gets one empty box per PQC layer on its data qubits
(one qubit: with an idle neighbour, as the learner's two-local model needs two qubits), whose
learned model is the noise of one twirling layer of single-qubit gates. Identical boxes are
learned once.

From a Pauli-Lindblad model ``E = exp(sum_k r_k D_{P_k})`` the fidelity of a Pauli ``Q``
is ``f(Q) = exp(-2 sum_{k: P_k anticommutes with Q} r_k)``
(:meth:`qiskit.quantum_info.PauliLindbladMap.pauli_fidelity`); the model of a box acts on the
box's qubits in ascending physical order (``qiskit_noise_learning``'s
``process_vanilla_result``). Per data qubit ``q`` and Pauli ``P`` in ``Z, X, Y``:
``lambda_P(q) = (prod over all boxes b of f_b(P_q)) ** (1 / L)``, the geometric mean over the
``L`` PQC layers of the product over one layer's boxes (a box that does not hold ``q`` counts
``1``). The learning protocol determines a two-qubit gate's fidelities only in products over
gate pairs (``f(Z_t) f(Z_c Z_t)`` for a CNOT); its solver splits them evenly, which is what
the mean over layers of a repeated layer needs.

Then :func:`strength_from_fidelities` gives the channel's strength, with the conversion of
:mod:`qldm.mitigation.measured_floor` (which calls it).

What the learned model does NOT cover (``meta["not_covered"]``): the single-qubit gates of the
layer (ansatz rotations, the Pauli-insertion slots) and the idle time outside the boxes (the
learned model holds one twirling layer of single-qubit gates, which stands in for them only
partly), the dilation's ``reset`` (not a gate a box may hold), and any non-unital part of the
noise: the twirl makes every channel a Pauli channel, so amplitude relaxation is seen only
through the Pauli fidelities it shrinks (see :func:`strength_from_fidelities`). For
``amplitude_damping`` those parts are most of the floor (fake:manila, one qubit: learned 0.005,
exact 0.045, mostly relaxation while the ancilla resets), so :func:`noise_learner_floor` refuses
that kind.

Measured on fake:manila (local testing mode; 32 twirls x 256 shots at 0, 1, 2, 4, 8 layer pairs;
two qubits, default ansatz, physical qubits 4 and 3), learned against the exact floor
(:func:`qldm.mitigation.measured_floor.measured_floor` through an Aer density-matrix estimator):
``bit_flip`` 0.0017, 0.0022 against 0.0021, 0.0020; ``phase_flip`` 0.0065, 0.0034 against 0.0073,
0.0034; ``depolarizing`` 0.0094, 0.0063 against 0.0125, 0.0065. The gaps on qubit 4 (the
CNOT's control): the exact two-layer ratio reads the second layer's ``f(X_4 X_3)`` (the CNOT
carries ``X_4`` to ``X_4 X_3``), the learner only the product ``f(X_4) f(X_4 X_3)``, split
evenly; and the slots' ``sx`` gates beyond the two of the twirling layer (per layer: 3 in
``bit_flip``, 2 in ``phase_flip``, 4 in ``depolarizing``) lie outside the box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qldm.circuits import PQCSpec
from qldm.circuits.transpile import IsaCircuit

__all__ = [
    "LearnedLayer",
    "LearnerSettings",
    "Learning",
    "learned_fidelities",
    "learning_boxes",
    "noise_learner_floor",
    "strength_from_fidelities",
    "submit_learning",
]

NOT_COVERED = (
    "single-qubit gates of the layer (ansatz rotations, Pauli-insertion slots) and idle time "
    "outside the boxes of two-qubit gates",
    "the amplitude-damping dilation's reset",
    "non-unital noise (amplitude relaxation): the twirl turns the layer's channel into a Pauli "
    "channel, so relaxation is seen only through the Pauli fidelities it lowers",
)
"""What a learned floor leaves out (``meta["not_covered"]``)."""


@dataclass(frozen=True)
class LearnerSettings:
    """How much learning ``NoiseLearnerV3`` does (its options of the same names).

    Attributes:
        num_randomizations: random twirls per learning circuit configuration.
        shots_per_randomization: shots per twirl.
        layer_pair_depths: repetitions (in pairs of the layer) of the learning sequences.
        seed_simulator: the local simulator's seed (local testing mode only).
    """

    num_randomizations: int = 32
    shots_per_randomization: int = 128
    layer_pair_depths: tuple[int, ...] = (0, 1, 2, 4, 16, 32)
    seed_simulator: int | None = None

    def options(self) -> dict[str, Any]:
        """The ``NoiseLearnerV3Options`` as a dict."""
        out: dict[str, Any] = {
            "num_randomizations": self.num_randomizations,
            "shots_per_randomization": self.shots_per_randomization,
            "layer_pair_depths": list(self.layer_pair_depths),
        }
        if self.seed_simulator is not None:
            out["simulator"] = {"seed_simulator": self.seed_simulator}
        return out


@dataclass(frozen=True)
class LearnedLayer:
    """One box to learn: a depth of two-qubit gates on physical qubits.

    Attributes:
        qubits: the box's physical qubits, ascending (the learned model's qubit order).
        gates: ``(name, (a, b))`` two-qubit gates in circuit order (empty: an idle box).
        count: how many depths of the circuit are this box.
    """

    qubits: tuple[int, ...]
    gates: tuple[tuple[str, tuple[int, ...]], ...]
    count: int


def learning_boxes(isa: IsaCircuit, *, layers: int) -> list[LearnedLayer]:
    """The distinct depths of two-qubit gates of ``isa`` that touch a data qubit, in order.

    Args:
        isa: the job's ISA circuit.
        layers: its PQC layers ``L``.

    Returns:
        one :class:`LearnedLayer` per distinct depth (its ``count`` the repeats); for a
        circuit without such gates, one empty box on the data qubits, counted once per PQC
        layer.
    """
    circuit = isa.circuit
    data = set(isa.layout[: isa.hardware.n_data])
    depth: dict[int, int] = {}
    depths: list[list[tuple[str, tuple[int, ...]]]] = []
    for inst in circuit.data:
        if inst.operation.num_qubits != 2 or inst.operation.name == "barrier":
            continue
        qubits = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if not set(qubits) & data:
            continue
        level = max(depth.get(q, 0) for q in qubits)
        for q in qubits:
            depth[q] = level + 1
        while len(depths) <= level:
            depths.append([])
        depths[level].append((inst.operation.name, qubits))
    if not depths:
        return [LearnedLayer(tuple(sorted(data)), (), layers)]
    boxes: dict[tuple[Any, ...], int] = {}
    for gates in depths:
        touched = {q for _, qs in gates for q in qs}
        key = (tuple(sorted(data | touched)), tuple(gates))
        boxes[key] = boxes.get(key, 0) + 1
    return [LearnedLayer(qubits, gates, count) for (qubits, gates), count in boxes.items()]


def _with_a_neighbour(boxes: list[LearnedLayer], backend: Any) -> list[LearnedLayer]:
    """``boxes``, an empty box on a single qubit widened by an idle neighbour: the learner's
    two-local model needs two qubits (the neighbour's fidelities are not read)."""
    if len({q for box in boxes for q in box.qubits}) > 1:
        return boxes
    out = []
    coupling = backend.target.build_coupling_map()
    for box in boxes:
        (q,) = box.qubits
        if coupling is not None:  # a device: the nearest coupled qubit
            neighbour = min(coupling.neighbors(q))
        else:  # all-to-all
            neighbour = q + 1 if q + 1 < int(backend.num_qubits) else q - 1
        out.append(LearnedLayer(tuple(sorted((q, neighbour))), box.gates, box.count))
    return out


def _instructions(boxes: Sequence[LearnedLayer], num_qubits: int) -> list[Any]:
    """The boxes as twirl-annotated ``BoxOp`` instructions on the device's qubits."""
    from qiskit import QuantumCircuit, QuantumRegister
    from samplomatic.annotations import Twirl

    qc = QuantumCircuit(QuantumRegister(num_qubits, "q"))
    for box in boxes:
        with qc.box([Twirl()]):
            qc.noop(*box.qubits)
            for name, qubits in box.gates:
                getattr(qc, name)(*qubits)
    return list(qc.data)


def learned_fidelities(
    models: Sequence[Any], boxes: Sequence[LearnedLayer], data: Sequence[int], *, layers: int
) -> np.ndarray:
    """``(3, n)`` per-PQC-layer fidelities of ``Z, X, Y`` on each data qubit.

    Args:
        models: one ``PauliLindbladMap`` per box (on the box's qubits, ascending).
        boxes: the boxes (their qubits and how often each occurs).
        data: the physical qubit of each data qubit.
        layers: PQC layers ``L`` the boxes' occurrences span.

    Returns:
        ``lambda[P, q] = (prod_b f_b(P_q) ** count_b) ** (1 / L)``.
    """
    from qiskit.quantum_info import QubitSparsePauli

    log = np.zeros((3, len(data)))
    for model, box in zip(models, boxes, strict=True):
        for q, physical in enumerate(data):
            if physical not in box.qubits:
                continue
            j = box.qubits.index(physical)
            for row, pauli in enumerate("ZXY"):
                f = model.pauli_fidelity(
                    QubitSparsePauli.from_sparse_label((pauli, [j]), model.num_qubits)
                )
                log[row, q] += box.count * np.log(max(float(f), 1e-300))
    return np.exp(log / layers)


def strength_from_fidelities(
    kind: str,
    lambda_z: np.ndarray,
    lambda_x: np.ndarray,
    lambda_y: np.ndarray | None = None,
) -> np.ndarray:
    """A channel's per-layer strength from the layer's Pauli fidelities on a qubit.

    The conversion :class:`qldm.mitigation.measured_floor.FloorExperiment` uses for the
    Pauli kinds:
    ``bit_flip`` ``(1 - lambda_z) / 2``; ``phase_flip`` ``(1 - lambda_x) / 2``;
    ``depolarizing`` ``1 - (lambda_x + lambda_y + lambda_z) / 3`` (``lambda_y = lambda_x``
    when not given, as measured_floor assumes). ``amplitude_damping``: the decay of the
    excited population, ``1 - P_1(2) / P_1(1)`` with ``P_1(k) = (1 + lambda_z^k) / 2``, the
    population a Pauli channel of Z fidelity ``lambda_z`` leaves in ``|1>`` after ``k``
    layers, i.e. ``lambda_z (1 - lambda_z) / (1 + lambda_z)``: what measured_floor's
    excited-population decay gives on a Pauli channel. A Pauli channel has no relaxation, so
    for a floor that is pure relaxation of strength ``gamma`` (twirled: ``lambda_z =
    1 - gamma``) this gives about ``gamma / 2``.

    Args:
        kind: the channel kind.
        lambda_z, lambda_x, lambda_y: ``(n,)`` fidelities.

    Returns:
        ``(n,)`` strengths (not clipped).

    Raises:
        ValueError: kind ``none`` or unknown.
    """
    lz = np.asarray(lambda_z, dtype=np.float64)
    lx = np.asarray(lambda_x, dtype=np.float64)
    ly = lx if lambda_y is None else np.asarray(lambda_y, dtype=np.float64)
    if kind == "bit_flip":
        return (1 - lz) / 2
    if kind == "phase_flip":
        return (1 - lx) / 2
    if kind == "depolarizing":
        return 1 - (lx + ly + lz) / 3
    if kind == "amplitude_damping":
        return 1 - (1 + lz**2) / (1 + lz)
    raise ValueError(f"no floor for channel kind {kind!r}")


def noise_learner_floor(
    spec: PQCSpec,
    isa: IsaCircuit,
    backend: Any,
    *,
    mode: Any = None,
    settings: LearnerSettings | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """``(n,)`` the per-layer strength of ``spec.channel.kind`` on each data qubit, learned by
    ``NoiseLearnerV3`` on the job's layers of two-qubit gates (:func:`submit_learning`, then
    :meth:`Learning.floor` of its job's result).

    Args:
        spec: the job's circuit (its channel kind and layers).
        isa: its ISA circuit on ``backend`` (``transpile_spec(spec, backend)``).
        backend: the device whose target the learning circuits are built for.
        mode: where the learner runs: a fake backend (local testing mode), an IBM backend (job
            mode), or the job's ``Session``/``Batch`` (default ``backend``).
        settings: how much to learn (default: the runtime's defaults).

    Returns:
        ``(floor, meta)``: ``floor`` clipped to [0, 1]; ``meta`` holds ``job_id``,
        ``circuits`` and ``shots`` (learning circuits and shots per circuit, read from the
        local job's program; ``None`` for a cloud job, whose inputs the runtime holds),
        ``settings`` (the learner's options), ``boxes`` (each box's qubits, gates and
        repeats), ``fidelities`` (``{"z", "x", "y"}`` per data qubit per PQC layer) and
        ``not_covered``.

    Raises:
        ValueError: channel kind ``none`` or ``amplitude_damping`` (what the learned model
            leaves out, the dilation's reset and the relaxation during it, is most of that
            floor).
    """
    learning = submit_learning(spec, isa, backend, mode=mode, settings=settings)
    return learning.floor(learning.job.result())


@dataclass(frozen=True)
class Learning:
    """A submitted noise-learner job and what reading its result needs."""

    job: Any
    spec: PQCSpec
    isa: IsaCircuit
    boxes: list[LearnedLayer]
    settings: LearnerSettings

    def floor(self, result: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """``(floor, meta)`` of :func:`noise_learner_floor` from the job's ``result``."""
        models = result.to_pauli_lindblad_maps()
        data = self.isa.layout[: self.isa.hardware.n_data]
        lz, lx, ly = learned_fidelities(models, self.boxes, data, layers=self.spec.layers)
        floor = np.clip(strength_from_fidelities(self.spec.channel.kind, lz, lx, ly), 0.0, 1.0)
        circuits, shots = _program_size(self.job)
        meta: dict[str, Any] = {
            "method": "noise_learner",
            "job_id": str(self.job.job_id()),
            "circuits": circuits,
            "shots": shots,
            "settings": self.settings.options(),
            "boxes": [
                {
                    "qubits": list(b.qubits),
                    "gates": [[g, list(q)] for g, q in b.gates],
                    "count": b.count,
                }
                for b in self.boxes
            ],
            "fidelities": {"z": lz.tolist(), "x": lx.tolist(), "y": ly.tolist()},
            "not_covered": list(NOT_COVERED),
        }
        return floor, meta


def submit_learning(
    spec: PQCSpec,
    isa: IsaCircuit,
    backend: Any,
    *,
    mode: Any = None,
    settings: LearnerSettings | None = None,
) -> Learning:
    """Submit the ``NoiseLearnerV3`` job of :func:`noise_learner_floor` (not waited for).

    Raises:
        ValueError: channel kind ``none`` or ``amplitude_damping``.
    """
    from qiskit_ibm_runtime.executor_noise_learner import NoiseLearnerV3

    kind = spec.channel.kind
    if kind == "none":
        raise ValueError("no floor for channel kind 'none'")
    if kind == "amplitude_damping":
        raise ValueError(
            "no learned floor for amplitude_damping: the dilation's reset and the idle time "
            "around it lie outside every box, and the twirled model has no relaxation "
            "(fake:manila: learned 0.005 against an exact 0.045 on one qubit); use the "
            "calibration or measured floor"
        )
    settings = settings or LearnerSettings()
    boxes = _with_a_neighbour(learning_boxes(isa, layers=spec.layers), backend)
    instructions = _instructions(boxes, int(backend.num_qubits))
    learner = NoiseLearnerV3(mode if mode is not None else backend, options=settings.options())
    return Learning(learner.run(instructions), spec, isa, boxes, settings)


def _program_size(job: Any) -> tuple[int | None, int | None]:
    """Learning circuits and shots per circuit of a noise-learner job (local jobs keep their
    ``QuantumProgram``; a cloud job's inputs are its encoded parameters)."""
    program: Any = getattr(job, "inputs", None)
    items = getattr(program, "items", None)
    if items is None:
        return None, None
    return int(sum(item.size() for item in items)), int(program.shots)
