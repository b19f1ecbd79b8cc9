"""Autograd through a backend that returns Jacobians: the evaluators and the torch Function.

A backend (Aer, a fake or real IBM device, or the qldm service over HTTP) is not a torch
program, so torch cannot differentiate through it. Instead, when a gradient will be needed,
the forward pass asks the backend for the ``jacobian`` task, which returns the values *and*
both Jacobians in the same submission (forward values and every parameter-shift term travel
together), and the backward pass contracts the incoming gradient with them:

    dL/dx[b, i] = sum_{k, o} g[k, b, o] * J_x[k, b, o, i]
    dL/dw[p]    = sum_{k, b, o} g[k, b, o] * J_w[k, b, o, p]

where ``g = dL/dvalues`` has shape ``(K, B, O)``.

An *evaluator* is the one step that differs between the local and the remote path: it takes
NumPy inputs ``(B, I)``, weights ``(P,)`` and noise levels ``(K,)`` (or ``None``) and returns a
:class:`qldm.backends.base.Evaluation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import torch

from qldm.backends.base import Backend, Context, Evaluation, NoiseSampling, Task, Workload
from qldm.backends.outputs import Metric, Output, check_state_support, output_width
from qldm.circuits import PQCSpec
from qldm.errors import BackendError


class Evaluator(Protocol):
    """Evaluates a spec on a batch: values, and the Jacobians when ``task == "jacobian"``."""

    output: Output
    """What ``values`` hold for the expectation/jacobian tasks."""

    def __call__(
        self,
        inputs: np.ndarray,
        weights: np.ndarray,
        *,
        noise_levels: np.ndarray | None,
        task: Task,
        seed: int | None,
    ) -> Evaluation:
        """Run one evaluation.

        Args:
            inputs: ``(B, I)`` float64.
            weights: ``(P,)`` float64.
            noise_levels: ``(K,)`` float64 or ``None``.
            task: ``expectation`` or ``jacobian``.
            seed: shot-sampling seed of this call.
        """
        ...


class LocalEvaluator:
    """Runs workloads on an in-process backend (``backends.get_backend(name)``).

    Args:
        spec: the circuit.
        backend: the backend object.
        shots: shots per circuit, or ``None`` for exact expectations.
        noise_sampling: ``expectation`` or ``trajectory`` (:class:`NoiseSampling`).
    """

    output: Output = Output.EXPECTATION
    """What ``values`` hold for the expectation/jacobian tasks (set by ``QuantumLayer``)."""

    def __init__(
        self,
        spec: PQCSpec,
        backend: Backend,
        *,
        shots: int | None,
        noise_sampling: NoiseSampling = NoiseSampling.EXPECTATION,
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.shots = shots
        self.noise_sampling = noise_sampling

    def __call__(
        self,
        inputs: np.ndarray,
        weights: np.ndarray,
        *,
        noise_levels: np.ndarray | None,
        task: Task,
        seed: int | None,
        targets: np.ndarray | None = None,
        metric: Metric = Metric.FULL,
    ) -> Evaluation:
        work = Workload.build(
            self.spec,
            inputs,
            weights,
            noise_levels=noise_levels,
            task=task,
            shots=self.shots,
            seed=seed,
            noise_sampling=self.noise_sampling,
            output=self.output if task in (Task.EXPECTATION, Task.JACOBIAN) else Output.EXPECTATION,
            targets=targets if task in (Task.EXPECTATION, Task.JACOBIAN) else None,
            metric=metric,
        )
        check_state_support(self.backend.name, work)
        return self.backend.run(work, Context())


class RemoteEvaluator:
    """Runs workloads on a qldm server through ``client.service_client.ServiceClient``.

    Args:
        spec: the circuit.
        client: a ``ServiceClient`` (anything with its ``evaluate`` method).
        backend: the server-side backend name.
        shots: shots per circuit, or ``None``.
        run_id: the training run the jobs belong to, or ``None``.
        noise_sampling: ``expectation`` or ``trajectory`` (:class:`NoiseSampling`).
        options: the jobs' ``options`` (``JobOptions`` fields), or ``None``.
    """

    output: Output = Output.EXPECTATION
    """What ``values`` hold for the expectation/jacobian tasks (set by ``QuantumLayer``)."""

    def __init__(
        self,
        spec: PQCSpec,
        client: Any,
        *,
        backend: str,
        shots: int | None,
        run_id: str | None,
        noise_sampling: NoiseSampling = NoiseSampling.EXPECTATION,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.client = client
        self.options = dict(options) if options else None
        self.backend = backend
        self.shots = shots
        self.run_id = run_id
        self.noise_sampling = noise_sampling

    def __call__(
        self,
        inputs: np.ndarray,
        weights: np.ndarray,
        *,
        noise_levels: np.ndarray | None,
        task: Task,
        seed: int | None,
        targets: np.ndarray | None = None,
        metric: Metric = Metric.FULL,
    ) -> Evaluation:
        state: dict[str, Any] = {}
        if task in (Task.EXPECTATION, Task.JACOBIAN) and self.output is not Output.EXPECTATION:
            state = {"output": str(self.output), "targets": targets}
        if metric is not Metric.FULL:
            state["metric"] = str(metric)
        result: Evaluation = self.client.evaluate(
            self.spec,
            inputs,
            weights,
            backend=self.backend,
            task=task,
            noise_levels=noise_levels,
            shots=self.shots,
            seed=seed,
            run_id=self.run_id,
            **self._sampling(),
            **state,
            **({"options": self.options} if self.options else {}),
        )
        return result

    def _sampling(self) -> dict[str, str]:
        # only when not the default: a server that predates the field keeps taking the jobs
        if self.noise_sampling is NoiseSampling.EXPECTATION:
            return {}
        return {"noise_sampling": str(self.noise_sampling)}


def check_evaluation(
    result: Evaluation,
    *,
    k: int,
    b: int,
    spec: PQCSpec,
    task: Task,
    output: Output = Output.EXPECTATION,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Check an evaluation's shapes against the request; return its arrays as float64.

    Returns:
        ``values (K, B, O)``, ``d_inputs (K, B, O, I)`` and ``d_weights (K, B, O, P)`` (both
        ``None`` for the ``expectation`` task).

    Raises:
        BackendError: a shape does not match, or the Jacobians are missing.
    """
    o, i, p = output_width(spec, output), spec.n_inputs, spec.n_weights
    if result.values is None:
        raise BackendError("the backend returned no values", field="task")
    values = _shaped(result.values, (k, b, o), "values")
    if task != "jacobian":
        return values, None, None
    if result.d_inputs is None or result.d_weights is None:
        raise BackendError("the backend returned no Jacobians for the jacobian task", field="task")
    d_inputs = _shaped(result.d_inputs, (k, b, o, i), "d_inputs")
    d_weights = _shaped(result.d_weights, (k, b, o, p), "d_weights")
    return values, d_inputs, d_weights


def _shaped(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise BackendError(f"the backend returned shape {arr.shape}, expected {shape}", field=name)
    return arr


class BackendFunction(torch.autograd.Function):
    """``values (K, B, O) = evaluator(inputs (B, I), weights (P,))`` with a Jacobian backward.

    Call through :func:`evaluate`, not directly.
    """

    @staticmethod
    def forward(
        ctx: Any,
        inputs: torch.Tensor,
        weights: torch.Tensor,
        evaluator: Evaluator,
        spec: PQCSpec,
        noise_levels: np.ndarray | None,
        want_jacobian: bool,
        seed: int | None,
    ) -> torch.Tensor:
        task = Task.JACOBIAN if want_jacobian else Task.EXPECTATION
        x = inputs.detach().to(device="cpu", dtype=torch.float64).numpy()
        w = weights.detach().to(device="cpu", dtype=torch.float64).numpy()
        k = 1 if noise_levels is None else int(noise_levels.size)
        result = evaluator(x, w, noise_levels=noise_levels, task=task, seed=seed)
        values, d_inputs, d_weights = check_evaluation(
            result,
            k=k,
            b=x.shape[0],
            spec=spec,
            task=task,
            output=getattr(evaluator, "output", Output.EXPECTATION),
        )
        device, dtype = inputs.device, inputs.dtype

        def tensor(arr: np.ndarray | None) -> torch.Tensor | None:
            return None if arr is None else torch.from_numpy(arr).to(device=device, dtype=dtype)

        ctx.d_inputs, ctx.d_weights = tensor(d_inputs), tensor(d_weights)
        ctx.weight_device, ctx.weight_dtype = weights.device, weights.dtype
        out = tensor(values)
        assert out is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_values: torch.Tensor) -> tuple[Any, ...]:
        if ctx.d_inputs is None or ctx.d_weights is None:
            raise BackendError(
                "no Jacobian was computed in the forward pass: call the layer with gradients "
                "enabled and an input or weight that requires grad",
                field="task",
            )
        grad_inputs = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_inputs = torch.einsum("kbo,kboi->bi", grad_values, ctx.d_inputs)
        if ctx.needs_input_grad[1]:
            grad_weights = torch.einsum("kbo,kbop->p", grad_values, ctx.d_weights)
            grad_weights = grad_weights.to(device=ctx.weight_device, dtype=ctx.weight_dtype)
        return grad_inputs, grad_weights, None, None, None, None, None


def evaluate(
    evaluator: Evaluator,
    spec: PQCSpec,
    inputs: torch.Tensor,
    weights: torch.Tensor,
    *,
    noise_levels: np.ndarray | None,
    seed: int | None,
) -> torch.Tensor:
    """Evaluate through ``evaluator``, differentiably.

    The Jacobian task is requested only when autograd is recording and ``inputs`` or
    ``weights`` requires grad; otherwise only the values are computed.

    Args:
        evaluator: the local or remote evaluation step.
        spec: the circuit.
        inputs: ``(B, I)``.
        weights: ``(P,)``, same dtype and device as ``inputs``.
        noise_levels: ``(K,)`` float64 or ``None``.
        seed: shot-sampling seed of this call.

    Returns:
        ``(K, B, O)`` values in ``inputs``' dtype and device.
    """
    want = torch.is_grad_enabled() and (inputs.requires_grad or weights.requires_grad)
    out: torch.Tensor = BackendFunction.apply(
        inputs, weights, evaluator, spec, noise_levels, want, seed
    )
    return out
