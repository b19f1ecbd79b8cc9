"""Errors raised by :mod:`qldm.hybrid.metrics`."""

from __future__ import annotations

from qldm.errors import QldmError


class MetricError(QldmError, ValueError):
    """Images, features or options given to a metric are invalid (shape, size, channels)."""

    code = "invalid_metric_input"
