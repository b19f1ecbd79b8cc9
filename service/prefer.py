"""The ``Prefer`` request header (RFC 7240), of which the server honours ``wait``.

``Prefer: wait=S`` on ``POST /v1/jobs`` asks the server to hold the answer until the job
finishes or ``S`` seconds pass, so that a training step costs one HTTP exchange instead of a
submit and a long-poll. Other preferences (``respond-async``, ``return=...``) are ignored, as the
RFC asks; a ``wait`` whose value is not a finite, non-negative number is refused.
"""

from __future__ import annotations

import math

from qldm.errors import RequestValidationError

__all__ = ["PreferenceError", "preferred_wait"]


class PreferenceError(RequestValidationError):
    """A ``Prefer`` header whose ``wait`` is not a finite, non-negative number of seconds."""


def preferred_wait(header: str | None, *, max_wait_s: float) -> float | None:
    """The seconds a ``Prefer`` header asks to wait, capped at ``max_wait_s``.

    Args:
        header: the header's value, e.g. ``"wait=20"`` or ``"respond-async, wait=5"``.
        max_wait_s: the longest wait the server holds.

    Returns:
        The wait in seconds, or ``None`` when the header asks for none.

    Raises:
        PreferenceError: ``wait`` has no value, or one that is not a finite number >= 0
            (``field="Prefer"``).
    """
    if not header:
        return None
    for preference in header.split(","):
        name, _, value = preference.split(";")[0].partition("=")
        if name.strip().lower() != "wait":
            continue
        text = value.strip().strip('"')
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            raise PreferenceError(
                f"wait must be a finite number of seconds >= 0, got {text!r}", field="Prefer"
            )
        return min(seconds, max_wait_s)
    return None
