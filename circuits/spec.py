"""The declarative description of a parameterized quantum circuit (PQC).

A :class:`PQCSpec` names an encoding, an ansatz, its depth, a noise channel applied to every
qubit after every ansatz layer, and the observables to measure. It is the one thing every part
of qldm agrees on: the Qiskit builder, the exact torch engine, Aer, the IBM path and the HTTP
API all take a spec (JSON in, JSON out) and compute the same numbers from it.

Example:
    >>> spec = PQCSpec.model_validate({
    ...     "n_qubits": 6, "encoding": "angle_ry", "ansatz": "ry_rz_brickwork", "layers": 6,
    ...     "channel": {"kind": "amplitude_damping", "strength": 0.01}, "observables": "z_each"})
    >>> spec.n_inputs, spec.n_weights, spec.n_outputs
    (6, 72, 6)
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from qldm.errors import InvalidSpecError

MAX_QUBITS = 12
"""Largest circuit a spec may describe (the hierarchical U-Net vertex uses 3 x 4 = 12 qubits)."""

MAX_LAYERS = 64
"""Deepest ansatz a spec may describe."""

MAX_OBSERVABLES = 256
"""Most observables one spec may measure."""

Encoding = Literal[
    "angle_ry", "angle_rx", "dense_angle", "phase", "amplitude", "basis", "complex_amplitude"
]
Ansatz = Literal["ry_rz_brickwork", "basic_entangler", "hqconv", "fqconv", "mps"]
ChannelKind = Literal["none", "amplitude_damping", "bit_flip", "phase_flip", "depolarizing"]

ENCODINGS: tuple[str, ...] = Encoding.__args__  # type: ignore[attr-defined]
ANSATZE: tuple[str, ...] = Ansatz.__args__  # type: ignore[attr-defined]
CHANNEL_KINDS: tuple[str, ...] = ChannelKind.__args__  # type: ignore[attr-defined]

MAX_TIMESTEP_FEATURES = 8
"""Most timestep features (the last inputs) a spec's ``timestep`` embedding may read."""

STATE_ENCODINGS = frozenset({"amplitude", "complex_amplitude"})
"""Encodings that prepare a whole normalised vector as the state (no encoding gates)."""

QCONV_BLOCK = 4
"""Qubits per image channel in the ``hqconv``/``fqconv`` ansätze (a 2x2 patch per channel)."""


class ChannelSpec(BaseModel):
    """A single-qubit noise channel applied to every qubit after every ansatz layer.

    Kraus forms (``s`` is the strength):

    - ``amplitude_damping``: K0 = |0><0| + sqrt(1-s)|1><1|, K1 = sqrt(s)|0><1|
    - ``bit_flip``: (1-s) rho + s X rho X
    - ``phase_flip``: (1-s) rho + s Z rho Z
    - ``depolarizing``: (1-s) rho + s I/2

    Attributes:
        kind: which channel; ``none`` disables noise.
        strength: one number in [0, 1] for every layer, or one number per layer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ChannelKind = "none"
    strength: float | tuple[float, ...] = 0.0

    @field_validator("strength")
    @classmethod
    def _strength_in_range(cls, value: float | tuple[float, ...]) -> float | tuple[float, ...]:
        values = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and not value:
            raise ValueError("per-layer strengths must not be empty")
        for s in values:
            if not math.isfinite(s) or not 0.0 <= s <= 1.0:
                raise ValueError(f"channel strength must lie in [0, 1], got {s}")
        return value


class TimestepSpec(BaseModel):
    """A timestep embedding inside the ansatz: the last ``features`` inputs enter every angle.

    With ``tau = (tau_1..tau_m)`` the last ``m = features`` inputs of a sample and ``P_a`` the
    ansatz's angles, the weights are ``[w (P_a), v_1 (P_a), ..., v_m (P_a)]`` and gate ``k``
    turns by ``scale_k * (w_k + sum_j tau_j v_{j,k})``. The encoding reads only the first
    ``I - m`` inputs.

    Attributes:
        features: ``m``, 1 to :data:`MAX_TIMESTEP_FEATURES`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: int = Field(default=1, ge=1, le=MAX_TIMESTEP_FEATURES)


class PQCSpec(BaseModel):
    """A parameterized quantum circuit: encoding, ansatz, noise channel and observables.

    Attributes:
        n_qubits: number of qubits, 1 to :data:`MAX_QUBITS`.
        encoding: how a sample ``x`` enters the circuit (see :mod:`qldm.circuits.program`).
        ansatz: the trainable layer structure (see :mod:`qldm.circuits.program`).
        layers: number of ansatz layers; a channel follows each.
        channel: the noise channel applied to every qubit after every layer.
        observables: ``"z_each"`` (Z on qubit i, for i = 0..n-1) or a list of Pauli strings in
            Qiskit's label order (the rightmost character acts on qubit 0).
        timestep: a :class:`TimestepSpec` (the last inputs enter the ansatz's angles), or
            ``None`` (left out of the spec's JSON when ``None``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_qubits: int = Field(ge=1, le=MAX_QUBITS)
    encoding: Encoding = "angle_ry"
    ansatz: Ansatz = "ry_rz_brickwork"
    layers: int = Field(default=1, ge=1, le=MAX_LAYERS)
    channel: ChannelSpec = ChannelSpec()
    observables: Literal["z_each"] | tuple[str, ...] = "z_each"
    timestep: TimestepSpec | None = None

    @model_serializer(mode="wrap")
    def _drop_absent_timestep(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.timestep is None:
            data.pop("timestep", None)  # specs without one serialize as they always did
        return data

    @field_validator("observables")
    @classmethod
    def _paulis_well_formed(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, str):
            return value
        if not value:
            raise ValueError("at least one observable is required")
        if len(value) > MAX_OBSERVABLES:
            raise ValueError(f"at most {MAX_OBSERVABLES} observables, got {len(value)}")
        for label in value:
            if not label or set(label) - set("IXYZ"):
                raise ValueError(f"Pauli string {label!r} may only contain I, X, Y and Z")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PQCSpec:
        n = self.n_qubits
        if not isinstance(self.observables, str):
            for label in self.observables:
                if len(label) != n:
                    raise ValueError(
                        f"observables: Pauli string {label!r} has {len(label)} characters, "
                        f"expected n_qubits = {n}"
                    )
        strength = self.channel.strength
        if isinstance(strength, tuple) and len(strength) != self.layers:
            raise ValueError(
                f"channel.strength: {len(strength)} per-layer strengths given for "
                f"layers = {self.layers}"
            )
        if self.ansatz in ("hqconv", "fqconv") and n % QCONV_BLOCK:
            raise ValueError(
                f"ansatz: {self.ansatz} works on channels of {QCONV_BLOCK} qubits, so n_qubits "
                f"must be a multiple of {QCONV_BLOCK}, got {n}"
            )
        if self.ansatz == "fqconv" and n < 2 * QCONV_BLOCK:
            raise ValueError(
                f"ansatz: fqconv connects channels of {QCONV_BLOCK} qubits with stride "
                f"{QCONV_BLOCK}, so it needs n_qubits >= {2 * QCONV_BLOCK}, got {n}"
            )
        if self.ansatz in ("hqconv", "fqconv", "mps") and n < 2:
            raise ValueError(f"ansatz: {self.ansatz} needs at least 2 qubits")
        return self

    # ------------------------------------------------------------------ sizes

    @property
    def n_inputs(self) -> int:
        """Number of classical inputs per sample, ``I`` (data inputs, then timestep features)."""
        return self.n_data_inputs + self.timestep_features

    @property
    def n_data_inputs(self) -> int:
        """Inputs the encoding reads: the first ``I - m`` (``m`` timestep features)."""
        if self.encoding == "dense_angle":
            return 2 * self.n_qubits
        if self.encoding == "amplitude":
            return 2**self.n_qubits
        if self.encoding == "complex_amplitude":
            return 2 * 2**self.n_qubits
        return self.n_qubits

    @property
    def timestep_features(self) -> int:
        """``m``: how many trailing inputs are timestep features (0 without ``timestep``)."""
        return 0 if self.timestep is None else self.timestep.features

    @property
    def weights_per_layer(self) -> int:
        """Number of trainable weights in one ansatz layer (the compiled program checks it)."""
        n = self.n_qubits
        if self.ansatz == "basic_entangler":
            return n  # RX on every qubit
        if self.ansatz == "mps":
            return 2 * (n - 1)  # two RY per neighbouring pair
        if self.ansatz == "hqconv":
            channels = n // QCONV_BLOCK  # CRZ+CRX around each ring, CRZ+CRX between rings
            return 2 * QCONV_BLOCK * channels + 2 * (channels - 1)
        return 2 * n  # ry_rz_brickwork: RY+RZ per qubit; fqconv: CRZ+CRX per qubit

    @property
    def n_ansatz_weights(self) -> int:
        """Number of ansatz angles, ``P_a`` (the weights without timestep slopes)."""
        return self.layers * self.weights_per_layer

    @property
    def n_weights(self) -> int:
        """Number of trainable weights, ``P = (1 + m) P_a``."""
        return (1 + self.timestep_features) * self.n_ansatz_weights

    def without_timestep(self) -> PQCSpec:
        """The same circuit with no timestep embedding (its ansatz angles are the weights)."""
        if self.timestep is None:
            return self
        return self.model_copy(update={"timestep": None})

    @property
    def n_outputs(self) -> int:
        """Number of observables, ``O``."""
        return self.n_qubits if self.observables == "z_each" else len(self.observables)

    @property
    def noisy(self) -> bool:
        """Whether the circuit has a channel (a density matrix is needed to simulate it)."""
        return self.channel.kind != "none"

    def pauli_labels(self) -> list[str]:
        """The observables as Pauli strings in Qiskit's label order.

        ``z_each`` gives ``SparsePauliOp.from_sparse_list([("Z", [i], 1)], n)`` for each qubit
        ``i``, that is the label with ``Z`` at position ``n - 1 - i``.
        """
        if self.observables == "z_each":
            n = self.n_qubits
            return ["I" * (n - 1 - i) + "Z" + "I" * i for i in range(n)]
        return list(self.observables)

    def layer_strengths(self, noise_level: float | None = None) -> tuple[float, ...]:
        """Channel strength after each layer, ``(layers,)``.

        Args:
            noise_level: when given, replaces the spec's strength in every layer.

        Raises:
            InvalidSpecError: ``noise_level`` outside [0, 1], or given for a spec whose
                channel is ``none``.
        """
        if noise_level is not None:
            check_noise_level(self, noise_level)
            return (float(noise_level),) * self.layers
        if not self.noisy:
            return (0.0,) * self.layers
        s = self.channel.strength
        return tuple(float(v) for v in s) if isinstance(s, tuple) else (float(s),) * self.layers

    # ------------------------------------------------------------------ I/O

    @classmethod
    def parse(cls, data: Any) -> PQCSpec:
        """Validate a dict or a JSON string into a spec.

        Raises:
            InvalidSpecError: naming the first offending field (``field`` attribute).
        """
        try:
            if isinstance(data, (str, bytes)):
                return cls.model_validate_json(data)
            return cls.model_validate(data)
        except ValidationError as exc:
            raise spec_error_from_validation(exc, prefix=None) from None


def check_noise_level(spec: PQCSpec, level: float) -> None:
    """Raise :class:`InvalidSpecError` unless ``level`` is a valid strength for ``spec``."""
    if not spec.noisy:
        raise InvalidSpecError(
            "noise levels replace the channel strength, but the spec's channel is 'none'",
            field="noise_levels",
        )
    if not math.isfinite(level) or not 0.0 <= level <= 1.0:
        raise InvalidSpecError(f"noise level must lie in [0, 1], got {level}", field="noise_levels")


def spec_error_from_validation(exc: ValidationError, *, prefix: str | None) -> InvalidSpecError:
    """Turn pydantic's error into an :class:`InvalidSpecError` naming the first bad field."""
    first = exc.errors()[0]
    # Union and Literal branches add a type tag ("float", "tuple[float, ...]") to the location.
    loc = [
        str(part)
        for part in first.get("loc", ())
        if "[" not in str(part) and str(part) not in _TYPE_TAGS
    ]
    message = str(first.get("msg", "invalid value"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if not loc:
        # model-level checks put the field name first: "channel.strength: ..."
        head, sep, rest = message.partition(": ")
        if sep and head.replace(".", "").replace("_", "").isalnum():
            loc, message = [head], rest
    field = ".".join(([prefix] if prefix else []) + loc) or prefix
    return InvalidSpecError(message, field=field)


_TYPE_TAGS = frozenset({"float", "int", "str", "bool", "function-after", "function-before"})
