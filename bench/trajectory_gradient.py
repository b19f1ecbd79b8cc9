"""Bias and variance of the amplitude-damping trajectory gradient, three estimators side by side.

``python -m qldm.bench.trajectory_gradient [--draws N] [--gamma G] [--qubits n] [--layers L]``

One spec (``ry_rz_brickwork``, ``angle_ry``, Z on each qubit, amplitude damping ``G`` after
every layer), one input ``x`` and weights ``w``, ``N`` trajectories of that same input, the
same draws for all three estimators of the per-trajectory Jacobian ``d f_o / d(x, w)``:

- ``pathwise``: autograd through the drawn trajectory, draws held fixed (the estimator before
  the score term);
- ``score``: pathwise plus ``f grad log p`` (no baseline);
- ``score+LOO``: pathwise plus ``(f - b) grad log p``, ``b`` the leave-one-out mean of the
  other trajectories' values (what :func:`qldm.backends.trajectory.with_score` does).

Reference: the density engine's Jacobian (:class:`qldm.backends.exact.ExactBackend`, no
sampling). Printed per estimator: the relative L2 distance of the mean Jacobian from the
reference, the relative L2 standard error of the mean, the largest |z| over the components,
and the mean per-draw variance over components (with its ratio to the pathwise one).

A second table repeats the variance comparison for a batch of 8 different inputs (``N / 8``
draws each, one noise level, so the leave-one-out baseline mixes inputs).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from qldm.backends import _torch_ops as ops
from qldm.backends.base import Workload
from qldm.backends.exact import ExactBackend
from qldm.backends.trajectory import draw_uniforms, simulate, with_score
from qldm.circuits import PQCSpec

ESTIMATORS = ("pathwise", "score", "score+LOO")


@dataclass(frozen=True)
class Branches:
    """Every draw pattern of an amplitude-damping spec at one input, with its probability.

    Attributes:
        probs: ``(M,)`` probability of each pattern (``M = 2**(layers * n)``; they sum to 1).
        values: ``(M, O)`` the trajectory's expectation values.
        jac_values: ``(M, O, I + P)`` their pathwise derivatives (draws held fixed).
        jac_log_prob: ``(M, I + P)`` the derivatives of the pattern's log-probability.
    """

    probs: np.ndarray
    values: np.ndarray
    jac_values: np.ndarray
    jac_log_prob: np.ndarray

    def mean_values(self) -> np.ndarray:
        """``(O,)`` the exact mean of the values (the density-matrix expectation)."""
        return self.probs @ self.values

    def per_draw(self, estimator: str, baseline: np.ndarray | None = None) -> np.ndarray:
        """``(M, O, I + P)`` the estimator's per-draw Jacobian on every pattern; for
        ``score+LOO`` with the baseline at its large-sample limit: ``baseline`` ``(O,)`` (the
        batch's mean value), by default this input's ``E[f]``."""
        if estimator == "pathwise":
            return self.jac_values
        f = self.values
        if estimator == "score+LOO":
            f = f - (self.mean_values() if baseline is None else baseline)
        return self.jac_values + f[:, :, None] * self.jac_log_prob[:, None, :]

    def moments(
        self, estimator: str, baseline: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact mean and per-draw variance ``(O, I + P)`` of the estimator over the draws."""
        t = self.per_draw(estimator, baseline)
        mean = np.einsum("m,moj->oj", self.probs, t)
        var = np.einsum("m,moj->oj", self.probs, (t - mean) ** 2)
        return mean, var


def _jacobians(
    spec: PQCSpec, x: np.ndarray, w: np.ndarray, uniforms: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``x`` ``(R, I)``: values ``(R, O)``, log-probabilities ``(R,)``, per-row Jacobians
    ``(R, O, I + P)`` of values and ``(R, I + P)`` of log-probabilities, and of
    :func:`with_score` without and with the leave-one-out baseline (``(3, R, O, I + P)``,
    pathwise first)."""
    r = x.shape[0]
    xl = torch.tensor(x, requires_grad=True)
    wl = torch.tensor(w).expand(r, -1).clone().requires_grad_(True)
    strengths = torch.tensor([spec.layer_strengths()], dtype=torch.float64).expand(r, -1)
    values, log_prob = simulate(spec, ops.statevectors(spec, xl), wl, strengths, uniforms)

    def jac(out: torch.Tensor) -> np.ndarray:
        gx, gw = torch.autograd.grad(out.sum(), (xl, wl), retain_graph=True)
        return np.concatenate([gx.numpy(), gw.numpy()], 1)

    outs = (
        values,
        with_score(values, log_prob, torch.arange(r)),  # each row alone: no baseline
        with_score(values, log_prob, torch.zeros(r, dtype=torch.int64)),
    )
    estimators = np.stack(
        [np.stack([jac(out[:, o]) for o in range(spec.n_outputs)], 1) for out in outs]
    )
    return values.detach().numpy(), log_prob.detach().numpy(), jac(log_prob), estimators


def branches(spec: PQCSpec, x: np.ndarray, w: np.ndarray) -> Branches:
    """Enumerate every draw pattern of an amplitude-damping spec at one input ``x`` ``(I,)``.

    A uniform of 0 forces the jump (it happens when ``u < g ||P_1 psi||^2``), 1 forbids it;
    the pattern's probability is ``exp(log_prob)`` from :func:`simulate`.

    Raises:
        ValueError: the probabilities do not sum to 1 (a jump of probability 0 was forced).
    """
    draws = spec.layers * spec.n_qubits
    m = 2**draws
    bits = (np.arange(m)[:, None] >> np.arange(draws)) & 1
    uniforms = torch.tensor(1.0 - bits, dtype=torch.float64).reshape(m, spec.layers, -1)
    values, log_prob, jac_log_prob, estimators = _jacobians(
        spec, np.repeat(x[None], m, 0), w, uniforms
    )
    probs = np.exp(log_prob)
    if abs(probs.sum() - 1.0) > 1e-9:
        raise ValueError(f"pattern probabilities sum to {probs.sum()}, not 1")
    return Branches(probs, values, estimators[0], jac_log_prob)


def sampled(spec: PQCSpec, x: np.ndarray, w: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """``(R, O, I + P)`` per-row Jacobians of each estimator on drawn trajectories of rows
    ``x`` ``(R, I)`` (one noise level: the leave-one-out baseline takes all rows)."""
    uniforms = torch.as_tensor(draw_uniforms(spec, x.shape[0], np.random.default_rng(seed)))
    estimators = _jacobians(spec, x, w, uniforms)[3]
    return dict(zip(ESTIMATORS, estimators, strict=True))


def density_jacobian(spec: PQCSpec, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(O, I + P)`` of the density engine at one input ``x`` ``(I,)``."""
    ev = ExactBackend().run(Workload.build(spec, x[None], w, task="jacobian"))
    assert ev.d_inputs is not None and ev.d_weights is not None
    return np.concatenate([ev.d_inputs[0, 0], ev.d_weights[0, 0]], -1)


def main(*, draws: int, gamma: float, qubits: int, layers: int, seed: int = 0) -> None:
    torch.set_num_threads(1)
    spec = PQCSpec.parse(
        {
            "n_qubits": qubits,
            "layers": layers,
            "ansatz": "ry_rz_brickwork",
            "channel": {"kind": "amplitude_damping", "strength": gamma},
            "observables": "z_each",
        }
    )
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 2.8, spec.n_inputs)
    w = rng.uniform(-1.5, 1.5, spec.n_weights)
    ref = density_jacobian(spec, x, w)
    norm = float(np.linalg.norm(ref))
    exact = branches(spec, x, w)
    jac = sampled(spec, np.repeat(x[None], draws, 0), w, seed + 1)
    print(f"{qubits} qubits, {layers} layers, gamma={gamma}; exact: all {exact.probs.size} draw")
    print(f"patterns enumerated; sampled: {draws} draws of one input (z with the exact SE)")
    print(
        f"{'estimator':<10} {'exact bias':>10} {'var/draw':>9} {'ratio':>6} "
        f"{'sampled bias':>12} {'SE':>7} {'max |z|':>8}"
    )
    base_var = float(exact.moments("pathwise")[1].mean())
    for name in ESTIMATORS:
        mean, var = exact.moments(name)
        se = np.sqrt(var / draws)
        diff = jac[name].mean(0) - ref
        live = se > 1e-12
        print(
            f"{name:<10} {np.linalg.norm(mean - ref) / norm:>10.1e} {var.mean():>9.4f} "
            f"{var.mean() / base_var:>6.2f} {np.linalg.norm(diff) / norm:>12.4f} "
            f"{np.linalg.norm(se) / norm:>7.4f} {np.abs(diff[live] / se[live]).max():>8.2f}"
        )
    n_inputs = 8
    xs = rng.uniform(0.2, 2.8, (n_inputs, spec.n_inputs))
    per = draws // n_inputs
    jac = sampled(spec, np.tile(xs, (per, 1)), w, seed + 2)
    each = [branches(spec, xi, w) for xi in xs]
    batch_mean = np.mean([br.mean_values() for br in each], 0)
    exact_var = {
        name: np.mean([br.moments(name, batch_mean)[1].mean() for br in each])
        for name in ESTIMATORS
    }
    print(f"\n{n_inputs} different inputs in one batch (one level), {per} draws each:")
    print(f"{'estimator':<10} {'sampled var/draw':>16} {'ratio':>6} {'exact':>7}")
    variances = {
        name: float(np.mean([g[i::n_inputs].var(0, ddof=1).mean() for i in range(n_inputs)]))
        for name, g in jac.items()
    }
    for name in ESTIMATORS:
        print(
            f"{name:<10} {variances[name]:>16.4f} "
            f"{variances[name] / variances['pathwise']:>6.2f} {exact_var[name]:>7.4f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--gamma", type=float, default=0.3)
    parser.add_argument("--qubits", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(draws=args.draws, gamma=args.gamma, qubits=args.qubits, layers=args.layers, seed=args.seed)
