"""qiskit-ibm-runtime's own error mitigation options for ``ibm:`` devices, validated.

:class:`ResilienceOptions` is the closed set of ``EstimatorV2`` options a backend accepts as
``resilience``; :func:`resilience_options` validates a request's dict into one and refuses it
on devices that are not ``ibm:`` (simulated devices use M3, ``mitigate_readout``, instead).

Re-exported by :mod:`qldm.backends.runtime`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from qldm.errors import InvalidSpecError


class ResilienceOptions(BaseModel):
    """qiskit-ibm-runtime's own error mitigation, passed to ``EstimatorV2.options`` on ``ibm:``.

    Attributes:
        resilience_level: 0, 1 (TREX) or 2 (TREX + ZNE); ``None`` leaves the runtime default.
        measure_mitigation: TREX readout mitigation.
        zne_mitigation: zero-noise extrapolation.
        zne_noise_factors: ZNE noise factors.
        pec_mitigation: probabilistic error cancellation.
        gate_twirling: Pauli twirling of two-qubit gates.
        measure_twirling: twirling of measurements.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    resilience_level: Literal[0, 1, 2] | None = None
    measure_mitigation: bool | None = None
    zne_mitigation: bool | None = None
    zne_noise_factors: tuple[float, ...] | None = None
    pec_mitigation: bool | None = None
    gate_twirling: bool | None = None
    measure_twirling: bool | None = None

    @property
    def removes_device_noise(self) -> bool:
        """Whether these options extrapolate or cancel the device's gate noise (ZNE, PEC,
        resilience level 2): then the requested channel is injected at full strength, since
        subtracting the device's floor would count it twice."""
        return bool(self.zne_mitigation or self.pec_mitigation or self.resilience_level == 2)

    def apply(self, options: Any) -> None:
        """Set these options on an ``EstimatorV2``'s ``options``."""
        if self.resilience_level is not None:
            options.resilience_level = self.resilience_level
        if self.measure_mitigation is not None:
            options.resilience.measure_mitigation = self.measure_mitigation
        if self.zne_mitigation is not None:
            options.resilience.zne_mitigation = self.zne_mitigation
        if self.zne_noise_factors is not None:
            options.resilience.zne.noise_factors = self.zne_noise_factors
        if self.pec_mitigation is not None:
            options.resilience.pec_mitigation = self.pec_mitigation
        if self.gate_twirling is not None:
            options.twirling.enable_gates = self.gate_twirling
        if self.measure_twirling is not None:
            options.twirling.enable_measure = self.measure_twirling


def resilience_options(resilience: dict[str, Any] | None, kind: str) -> ResilienceOptions:
    """Validate a backend's ``resilience`` option for a device of kind ``kind``.

    Args:
        resilience: the option as given (``None`` or ``{}``: the runtime's defaults).
        kind: the backend name's prefix (``fake``, ``ibm``, ``aer``).

    Raises:
        InvalidSpecError: an unknown or invalid option (``field="resilience.<option>"``), or
            any option on a device that is not ``ibm:`` (``field="resilience"``).
    """
    try:
        options = ResilienceOptions.model_validate(resilience or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidSpecError(str(first.get("msg")), field=f"resilience.{loc}") from None
    if resilience and kind != "ibm":
        raise InvalidSpecError(
            "the runtime's resilience options only apply on ibm: devices; use "
            "mitigate_readout (M3) on simulated devices",
            field="resilience",
        )
    return options
