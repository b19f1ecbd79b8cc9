"""Errors of the mitigation package."""

from __future__ import annotations

from circuits._errors import QldmError


class NoiseFloorError(QldmError, ValueError):
    """A requested channel strength is below what the device already does on its own."""

    code = "noise_floor"


class MitigationError(QldmError, RuntimeError):
    """Readout calibration or correction failed."""

    code = "mitigation_error"
