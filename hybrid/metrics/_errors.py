"""Errors raised by :mod:`hybrid.metrics`."""

from __future__ import annotations

from circuits._errors import QldmError


class MetricError(QldmError, ValueError):
    """Images, features or options given to a metric are invalid (shape, size, channels)."""

    code = "invalid_metric_input"
