"""Parameter-shift rules: exact derivatives from shifted circuit evaluations.

For a gate ``G(t) = exp(-i t H)`` whose generator ``H`` has eigenvalues ``{-1/2, +1/2}``
(``rx``, ``ry``, ``rz``; ``p`` differs from ``rz`` by a global phase) the two-term rule holds::

    df/dt = [f(t + pi/2) - f(t - pi/2)] / 2

Controlled rotations (``crx``, ``crz``) have eigenvalues ``{0, -1/2, +1/2}`` and need the
four-term rule (Anselmetti et al., 2021)::

    df/dt = d+ [f(t + pi/2) - f(t - pi/2)] - d- [f(t + 3pi/2) - f(t - 3pi/2)]
    d+- = (sqrt(2) +- 1) / (4 sqrt(2))
"""

from __future__ import annotations

import math

ShiftRule = tuple[tuple[float, float], ...]
"""``((shift, coefficient), ...)``: ``df/dt = sum(c * f(t + shift))``."""

TWO_TERM: ShiftRule = ((math.pi / 2, 0.5), (-math.pi / 2, -0.5))

_D_PLUS = (math.sqrt(2) + 1) / (4 * math.sqrt(2))
_D_MINUS = (math.sqrt(2) - 1) / (4 * math.sqrt(2))
FOUR_TERM: ShiftRule = (
    (math.pi / 2, _D_PLUS),
    (-math.pi / 2, -_D_PLUS),
    (3 * math.pi / 2, -_D_MINUS),
    (-3 * math.pi / 2, _D_MINUS),
)

_RULES: dict[str, ShiftRule] = {
    "rx": TWO_TERM,
    "ry": TWO_TERM,
    "rz": TWO_TERM,
    "p": TWO_TERM,
    "crx": FOUR_TERM,
    "crz": FOUR_TERM,
}


def shift_rule(gate_name: str) -> ShiftRule:
    """The shift rule of a parametric gate, in terms of its angle.

    A :class:`qldm.circuits.program.Param` with ``scale`` s needs the angle shifted by ``shift``, so
    the value by ``shift / s``, and the derivative by the value picks up the factor ``s``.

    Raises:
        KeyError: ``gate_name`` has no parameter.
    """
    return _RULES[gate_name]
