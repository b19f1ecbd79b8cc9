"""The timestep embedding of a spec: per-sample ansatz angles and the chain rule back.

A spec with ``timestep = {"features": m}`` reads its last ``m`` inputs as timestep features
``tau`` (``(B, m)``) and lays its weights out as ``[w (P_a), v_1 (P_a), ..., v_m (P_a)]``. Gate
``k`` of the ansatz turns by ``scale_k * theta_k`` with

    theta_k(tau) = w_k + sum_j tau_j v_{j,k}.

Every engine evaluates the spec without the timestep (:meth:`PQCSpec.without_timestep`) at
each sample's own angles ``theta (B, P_a)``, and maps the derivatives by those angles back:

    df/dw_k = df/dtheta_k,  df/dv_{j,k} = tau_j df/dtheta_k,  df/dtau_j = sum_k v_{j,k} df/dtheta_k.

NumPy only (the torch engine does the same inside autograd).
"""

from __future__ import annotations

import numpy as np

from qldm.circuits.spec import PQCSpec

__all__ = ["chain_rule", "effective_angles", "slopes"]


def slopes(spec: PQCSpec, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split ``weights (P,)`` into ``w (P_a,)`` and the slopes ``v (m, P_a)``."""
    pa, m = spec.n_ansatz_weights, spec.timestep_features
    w = np.asarray(weights, dtype=np.float64)
    return w[:pa], w[pa:].reshape(m, pa)


def effective_angles(
    spec: PQCSpec, inputs: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The data inputs and every sample's ansatz angles.

    Args:
        spec: a spec (with or without ``timestep``).
        inputs: ``(B, I)``.
        weights: ``(P,)``.

    Returns:
        ``data (B, I - m)`` and ``theta (B, P_a)``; without a timestep ``theta`` is ``weights``
        repeated for every sample.
    """
    x = np.asarray(inputs, dtype=np.float64)
    m = spec.timestep_features
    w, v = slopes(spec, weights)
    data = x[:, : spec.n_data_inputs]
    theta = np.broadcast_to(w, (x.shape[0], w.size)).copy()
    if m:
        theta += x[:, spec.n_data_inputs :] @ v
    return data, theta


def chain_rule(
    spec: PQCSpec,
    inputs: np.ndarray,
    weights: np.ndarray,
    d_data: np.ndarray,
    d_theta: np.ndarray,
    *,
    variances: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Derivatives by the spec's inputs and weights from those by data inputs and angles.

    Args:
        spec: the spec.
        inputs: ``(B, I)``.
        weights: ``(P,)``.
        d_data: ``(..., B, O, I - m)``.
        d_theta: ``(..., B, O, P_a)`` (per sample: each sample has its own angles).
        variances: ``d_data`` and ``d_theta`` are variances of independent estimates (one
            per entry): map them with every coefficient squared (``tau_j^2``, ``v_{j,k}^2``),
            giving the variances of the results.

    Returns:
        ``d_inputs (..., B, O, I)`` and ``d_weights (..., B, O, P)``.
    """
    m = spec.timestep_features
    if not m:
        return d_data, d_theta
    power = 2 if variances else 1
    tau = np.asarray(inputs, dtype=np.float64)[:, spec.n_data_inputs :] ** power  # (B, m)
    v = slopes(spec, weights)[1] ** power
    d_tau = np.einsum("...bop,jp->...boj", d_theta, v)
    d_inputs = np.concatenate([d_data, d_tau], axis=-1)
    d_slopes = [tau[:, None, j : j + 1] * d_theta for j in range(m)]
    d_weights = np.concatenate([d_theta, *d_slopes], axis=-1)
    return d_inputs, d_weights
