"""What one runtime submission binds, and how its results become per-level values.

Preprocessing, before the one primitive ``run`` of a workload (:mod:`qldm.backends.runtime`):

- :func:`choose_rows`: for a subset (``gradient_budget``, :mod:`qldm.backends._subset`) or
  SPSA (``spsa_directions``, :mod:`qldm.backends._spsa`) Jacobian, which rows of the full
  shift plan run, drawn with a seed taken from the workload's fingerprint (so a resumed job
  draws the same rows); :func:`gradient_meta` describes the choice in the metadata;
- :func:`level_slots`: per noise level, the device's floor subtracted from the requested
  strengths (:mod:`qldm.mitigation.noise`) and the ``(R, slots)`` values of ``R`` random
  Pauli-insertion instances;
- :func:`build_pub`: one PUB per level, bindings ``(R, S)`` for ``SamplerV2`` (the circuit
  measured by :func:`measured_circuit`) or ``(R, S, 1)`` against observables ``(1, 1, O)`` for
  ``EstimatorV2``.

Postprocessing: :func:`average_results` turns the PUB results into ``(K, S, O)`` values, raw
and (sampler) M3-mitigated, averaged over the instances, and the standard errors of the
mitigated ones (shot noise only: ``sqrt(sum_r sigma_r^2) / R`` over the ``R`` instances, each
``sigma_r`` from mthree or the estimator's ``stds``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qldm.backends._runtime_results import fingerprint
from qldm.backends._shift import ShiftPlan
from qldm.backends._spsa import SpsaSelection, choose_directions
from qldm.backends._subset import SubsetSelection, choose_subsets
from qldm.backends.base import Workload
from qldm.circuits import PQCSpec
from qldm.circuits.transpile import IsaCircuit
from qldm.errors import BackendError, MitigationError
from qldm.mitigation.m3 import ReadoutCalibration, z_estimates
from qldm.mitigation.noise import device_floor, injected_strengths, slot_bindings


def choose_rows(
    work: Workload,
    plan: ShiftPlan,
    name: str,
    *,
    budget: int | None,
    directions: int | None,
) -> tuple[SubsetSelection | None, SpsaSelection | None]:
    """The subset or SPSA choice of shift rows for a Jacobian plan, ``(None, None)`` otherwise.

    Args:
        work: the workload (its fingerprint seeds the draw).
        plan: the full shift plan.
        name: the backend name.
        budget: ``gradient_budget`` (``None``: no subset).
        directions: ``spsa_directions`` (``None``: no SPSA).
    """
    selection = spsa = None
    if budget is not None and plan.jacobian:
        seed = int(fingerprint(work, name, 0, budget, False)[:15], 16)
        selection = choose_subsets(plan, budget, np.random.default_rng(seed))
    if directions is not None and plan.jacobian:
        seed = int(fingerprint(work, name, 0, 0, False, spsa=directions)[:15], 16)
        spsa = choose_directions(plan, directions, np.random.default_rng(seed))
    return selection, spsa


def gradient_meta(selection: SubsetSelection | None, spsa: SpsaSelection | None) -> dict[str, Any]:
    """The ``gradient`` entry of the metadata: which estimator made the Jacobians."""
    if selection is not None:
        return {"method": "subset", "budget": int(selection.columns.sum(axis=1).max())}
    if spsa is not None:
        return {
            "method": "spsa",
            "directions": int(spsa.picks.shape[1]),
            "unit": spsa.rule.unit,
            "order": spsa.rule.order,
            "scale": spsa.rule.scale,
        }
    return {"method": "parameter_shift"}


def level_slots(
    spec: PQCSpec,
    isa: IsaCircuit,
    backend: Any,
    levels: list[float | None],
    *,
    instances: int,
    allow_floor: bool,
    rng: np.random.Generator,
    subtract_floor: bool = True,
    floor: np.ndarray | None = None,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The noise-slot values of every level and the ``noise`` entry of the metadata.

    Args:
        spec: the circuit (its channel and layers).
        isa: the transpiled circuit.
        backend: the device (its noise floor).
        levels: the noise levels, ``K`` of them.
        instances: ``R``, random Pauli-insertion instances per level (1 for amplitude damping).
        allow_floor: accept the device floor where a requested strength is below it.
        rng: draws the instances.
        subtract_floor: inject only what the device's floor leaves (``False`` with ZNE or PEC,
            which remove the device's noise: the full strength is injected).
        floor: ``(n,)`` the device floor per data qubit (a measured one,
            :func:`qldm.mitigation.measured_floor.measured_floor`); ``None``: the calibration
            estimate (:func:`qldm.mitigation.noise.device_floor`).

    Returns:
        ``K`` arrays ``(R, L*n*m)`` (``(1, 0)`` without noise) and ``{"kind", "device_floor",
        "injected"}``.

    Raises:
        NoiseFloorError: a requested strength is below the device's floor.
    """
    kind = spec.channel.kind
    noise_meta: dict[str, Any] = {"kind": kind}
    per_level: list[np.ndarray] = []  # (R, L*n*m) slot values per level
    if kind != "none":
        if floor is None:
            floor = device_floor(kind, isa, backend, layers=spec.layers)
        noise_meta["device_floor"] = floor.tolist()
        noise_meta["floor_subtracted"] = subtract_floor
        noise_meta["injected"] = []
        for level in levels:
            targets = np.array(spec.layer_strengths(level))
            if subtract_floor:
                injected = injected_strengths(kind, targets, floor, allow_floor=allow_floor)
            else:
                injected = np.repeat(targets[:, None], floor.shape[0], axis=1)
            noise_meta["injected"].append(injected.tolist())
            r = 1 if kind == "amplitude_damping" else instances
            per_level.append(slot_bindings(kind, injected, instances=r, rng=rng))
    else:
        per_level = [np.zeros((1, 0)) for _ in levels]
    return per_level, noise_meta


def build_pub(
    isa: IsaCircuit,
    sets: np.ndarray,
    slots: np.ndarray,
    labels: list[str],
    use_m3: bool,
) -> tuple[Any, ...]:
    """One PUB: bindings ``(R, S)`` (sampler) or ``(R, S, 1)`` x observables ``(1, 1, O)``."""
    from qiskit.primitives.containers.bindings_array import BindingsArray

    r, s = slots.shape[0], sets.shape[0]
    columns = np.concatenate(
        [
            np.broadcast_to(sets[None, :, :], (r, s, sets.shape[1])),
            np.broadcast_to(slots[:, None, :], (r, s, slots.shape[1])),
        ],
        axis=2,
    )
    order = isa.hardware.parameter_order()
    present = set(isa.circuit.parameters)
    keep = [i for i, p in enumerate(order) if p in present]
    params = tuple(order[i] for i in keep)
    if use_m3:
        circuit = measured_circuit(isa)
        data = columns[:, :, keep]
        return (circuit, BindingsArray(data={params: data}) if params else None)
    data = columns[:, :, None, keep]
    observables = [[isa.observables(labels)]]
    return (isa.circuit, observables, BindingsArray(data={params: data}) if params else None)


def measured_circuit(isa: IsaCircuit) -> Any:
    """The ISA circuit with the data qubits measured into a register ``meas``."""
    from qiskit.circuit import ClassicalRegister

    circuit = isa.circuit.copy()
    n = isa.hardware.n_data
    creg = ClassicalRegister(n, "meas")
    circuit.add_register(creg)
    for q in range(n):
        circuit.measure(isa.layout[q], creg[q])
    return circuit


def average_results(
    result: Any,
    *,
    use_m3: bool,
    labels: list[str],
    isa: IsaCircuit,
    calibration: ReadoutCalibration | None,
    backend: Any,
    n_instances: int,
    n_sets: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(K, S, O)`` mitigated and raw values averaged over the instances, and the standard
    errors of the mitigated ones.

    The standard error of a parameter set's average over ``R`` instances is
    ``sqrt(sum_r sigma_r^2) / R``: the instances' shots are independent. It is the shot noise
    of the estimate of the instances' average; how far the ``R`` drawn instances are from the
    channel itself is not in it.

    Args:
        result: the primitive's result, one PUB result per level.
        use_m3: sampler counts mitigated with ``calibration`` (else estimator values, for
            which mitigated and raw are the same).
        labels: the ``O`` Pauli labels.
        isa: the transpiled circuit (its data qubits).
        calibration: the M3 calibration when ``use_m3``.
        backend: the device.
        n_instances: ``R``.
        n_sets: ``S``.

    Returns:
        ``(mitigated, raw, mitigated_std)``, each ``(K, S, O)``. Sampler: mthree's standard
        deviation of every quasi-distribution (the binomial one without a calibration);
        estimator: the primitive's ``stds`` (``None`` when a PUB result has none).

    Raises:
        BackendError: M3 could not mitigate the counts.
    """
    mitigated, raw, stds = [], [], []
    complete = True
    qubits = list(isa.layout[: isa.hardware.n_data])
    o = len(labels)
    for pub_result in result:
        sd: Any
        if use_m3:
            bits = pub_result.data.meas
            counts = [bits.get_counts((r, s)) for r in range(n_instances) for s in range(n_sets)]
            try:
                est = z_estimates(
                    counts, labels, calibration=calibration, backend=backend, qubits=qubits
                )
            except MitigationError as exc:
                raise BackendError(str(exc)) from exc
            m, w, sd = est.mitigated, est.raw, est.mitigated_std
        else:
            m = w = np.asarray(pub_result.data.evs, dtype=np.float64)
            sd = getattr(pub_result.data, "stds", None)
        mitigated.append(np.asarray(m).reshape(n_instances, n_sets, o).mean(axis=0))
        raw.append(np.asarray(w).reshape(n_instances, n_sets, o).mean(axis=0))
        if sd is None:
            complete = False
            continue
        var = (np.asarray(sd, dtype=np.float64).reshape(n_instances, n_sets, o) ** 2).sum(axis=0)
        stds.append(np.sqrt(var) / n_instances)
    return np.stack(mitigated), np.stack(raw), np.stack(stds) if complete else None
