"""``QuantumLayer``: a PQC as a torch module, evaluated exactly, on a backend, or on a server.

Three ways to evaluate the same :class:`qldm.circuits.PQCSpec`:

- ``backend="exact"`` (the default, no ``url``, no ``shots``): the torch simulator
  :func:`qldm.backends.exact.expectation` runs inside the autograd graph, on the layer's
  device; gradients come from autograd.
- any other backend name (``aer``, ``aer:<device>``, ``fake:<device>``, ``ibm:<device>``),
  no ``url``: the backend runs in-process; a :class:`qldm.client._autograd.BackendFunction` asks it
  for values and Jacobians in one run and contracts them with the incoming gradient.
- ``url`` given: the same Function, but each evaluation is one job on a qldm server
  (``client.service_client.ServiceClient``); ``backend`` names the server-side backend.

Example:
    >>> layer = QuantumLayer({"n_qubits": 2, "layers": 2})
    >>> layer(torch.zeros(5, 2)).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from qldm.backends.base import NoiseSampling
from qldm.backends.outputs import Metric, Output
from qldm.circuits import PQCSpec
from qldm.circuits.spec import check_noise_level
from qldm.client._autograd import Evaluator, LocalEvaluator, RemoteEvaluator, evaluate
from qldm.client._states import (
    BoundTargets,
    complete_inputs,
    in_graph_values,
    metric_from_evaluator,
    target_array,
)
from qldm.errors import InvalidSpecError

__all__ = ["QuantumLayer"]

_SEED_MODULUS = 2**63
"""Per-call seeds stay below this (NumPy and Aer take unsigned 64-bit seeds)."""


class QuantumLayer(nn.Module):
    """A parameterized quantum circuit as a torch layer: ``(B, I) -> (B, O)``.

    The layer holds the circuit's weights ``weight (P,)`` as an ``nn.Parameter``. Each call
    encodes every sample of the batch, runs the ansatz with the current weights, and returns
    the expectation values of the spec's observables.

    With noise levels (given here, or per call to :meth:`forward`), every level replaces the
    channel strength of the spec in turn, and the output gains a leading noise axis:
    ``(K, B, O)``. Noise levels given here are a buffer: they move with ``.to(device)`` and are
    saved in the ``state_dict``.

    Noise sampling: with ``noise_sampling="expectation"`` (the default) a channel is its exact
    density-matrix average, so the layer is a deterministic function. With ``"trajectory"``
    every sample of a batch (at every noise level) draws its own realization of every channel
    after every layer, as a device with randomized noise delivers it: a Pauli insertion for
    bit flip, phase flip and depolarizing, a quantum-jump Kraus draw for amplitude damping
    (:mod:`qldm.backends.trajectory`). The outputs vary from call to call; their mean over
    draws is the ``"expectation"`` output. In-process on ``exact`` each trajectory is one
    statevector (noisy circuits of 11-12 qubits run too) and gradients flow by autograd through
    the drawn trajectory, draws held fixed; for amplitude damping, whose jump probability
    depends on the state, a score-function term ``(f - b) grad log p(draws)`` is added (``b``
    the leave-one-out mean of the other samples' outputs at the same level), so for every
    channel the mean of the gradients over draws is the gradient of the expectation (of a loss
    linear in the outputs), with ``autograd=False`` too. With ``shots`` the values
    are Born-rule estimates from ``shots`` shots of each sample's trajectory and the Jacobians
    are still those of the trajectory's exact value (a straight-through estimator: unbiased for the
    gradient of the shot estimate's mean given the draw, without the parameter-shift terms'
    shot noise; a parameter-shift rule does not hold for a renormalised amplitude-damping
    trajectory). On a spec without a channel ``"trajectory"`` changes nothing. Draws come from
    the per-call seed (``seed + n``); without ``seed`` each call's seed is drawn from torch's
    global generator, so ``torch.manual_seed`` reproduces a run.

    Initialisation: ``weight ~ U(-init_scale, init_scale)`` (rotation angles). The default,
    ``pi``, covers every angle once; a small scale (e.g. 0.1) starts every rotation near zero,
    which keeps deep circuits away from barren plateaus.

    Args:
        spec: the circuit, a :class:`PQCSpec` or a dict validated by :meth:`PQCSpec.parse`.
        backend: ``exact`` (torch, autograd), ``aer``, ``aer:<device>``, ``fake:<device>`` or
            ``ibm:<device>``.
        noise_levels: ``(K,)`` channel strengths in [0, 1], each replacing the spec's; needs a
            spec with a channel.
        shots: shots per circuit; ``None`` for exact expectations. With ``shots``, the
            ``exact`` backend also goes through the Jacobian Function (its values carry
            binomial shot noise, see :class:`qldm.backends.exact.ExactBackend`).
        seed: seeds shot sampling and trajectory draws; call ``n`` of this layer uses
            ``seed + n``, so a run is reproducible without repeating the same sampling noise
            at every step.
        init_scale: half-width of the uniform weight initialisation, >= 0.
        url: base URL of a qldm server: evaluate there instead of in-process.
        api_key: the server's API key (remote mode).
        run_id: the training run the server files the jobs under (remote mode).
        backend_options: keyword options for the in-process backend
            (``backends.get_backend(backend, **backend_options)``).
        job_options: the jobs' ``options`` in remote mode (``url``): e.g.
            ``{"gradient_budget": 4}`` (antithetic shot-frugal Jacobians on hardware
            backends), ``allow_noise_floor``, ``m3_max_age_s`` (docs/api.md).
        autograd: ``True`` (default): on ``exact`` without ``shots`` or ``url`` the torch
            simulator runs inside the autograd graph. ``False``: the backend returns values
            and both Jacobians in one run, as for every other backend (for a noiseless
            product-encoded spec on ``exact`` that is the fused statevector engine with adjoint
            Jacobians, several times faster at 12 qubits than autograd through the gates).
        noise_sampling: ``"expectation"`` (exact channel averages) or ``"trajectory"`` (one
            drawn realization per sample and call; runs on ``exact`` and ``aer``, in-process
            or on a server).

        output: ``"expectation"`` (the observables, ``(B, O)``), ``"probabilities"`` (Born-rule
            probabilities of all ``2**n`` outcomes, ``(B, 2**n)``) or ``"fidelity"``
            (``|<target|U|psi(x)>|^2``, ``(B,)``); docs/api.md, section QuantumLayer.

    Raises:
        InvalidSpecError: an invalid spec, noise level, ``shots``, ``init_scale``,
            ``noise_sampling`` or ``output``.
        UnknownBackendError: no backend has the name ``backend``.
    """

    weight: nn.Parameter
    noise_levels: torch.Tensor | None

    def __init__(
        self,
        spec: PQCSpec | Mapping[str, Any] | str,
        *,
        backend: str = "exact",
        noise_levels: Any = None,
        shots: int | None = None,
        seed: int | None = None,
        init_scale: float = math.pi,
        url: str | None = None,
        api_key: str | None = None,
        run_id: str | None = None,
        backend_options: Mapping[str, Any] | None = None,
        job_options: Mapping[str, Any] | None = None,
        autograd: bool = True,
        noise_sampling: str = "expectation",
        output: str = "expectation",
    ) -> None:
        super().__init__()
        self.spec = spec if isinstance(spec, PQCSpec) else PQCSpec.parse(spec)
        if not isinstance(backend, str) or not backend:
            raise InvalidSpecError("backend must be a non-empty string", field="backend")
        if shots is not None and (
            isinstance(shots, bool) or not isinstance(shots, int) or shots < 1
        ):
            raise InvalidSpecError(
                f"shots must be a positive integer or None, got {shots!r}", field="shots"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise InvalidSpecError(
                f"seed must be a non-negative integer, got {seed!r}", field="seed"
            )
        if not math.isfinite(init_scale) or init_scale < 0:
            raise InvalidSpecError(
                f"init_scale must be finite and >= 0, got {init_scale}", field="init_scale"
            )
        try:
            self.noise_sampling = NoiseSampling(noise_sampling)
        except ValueError:
            known = ", ".join(v.value for v in NoiseSampling)
            raise InvalidSpecError(
                f"unknown noise_sampling {noise_sampling!r}: use {known}", field="noise_sampling"
            ) from None
        try:
            self.output = Output(output)
        except ValueError:
            known = ", ".join(v.value for v in Output)
            raise InvalidSpecError(
                f"unknown output {output!r}: use {known}", field="output"
            ) from None
        self.backend = backend
        self.shots = shots
        self.seed = seed
        self.init_scale = float(init_scale)
        self.url = url
        self.run_id = run_id
        self._api_key = api_key
        self._backend_options = dict(backend_options or {})
        self._job_options = dict(job_options or {})
        self.autograd = bool(autograd)
        self._calls = 0
        self._evaluator: Evaluator | None = None

        self.weight = nn.Parameter(
            torch.empty(self.spec.n_weights, dtype=torch.get_default_dtype())
        )
        self.register_buffer("noise_levels", None)
        if noise_levels is not None:
            self.noise_levels = self._levels_tensor(noise_levels)
        self.reset_parameters()
        if not self._in_graph:
            self._get_evaluator()  # fail now on an unknown backend name or a bad option

    # ------------------------------------------------------------------ torch API

    def reset_parameters(self) -> None:
        """Draw ``weight ~ U(-init_scale, init_scale)`` (from torch's global generator)."""
        with torch.no_grad():
            self.weight.uniform_(-self.init_scale, self.init_scale)

    def forward(
        self, inputs: torch.Tensor, *, noise_levels: Any = None, target: Any = None, t: Any = None
    ) -> torch.Tensor:
        """Expectation values of the observables.

        The computation runs in the wider of the input's and the weight's floating dtypes; the
        result has the input's floating dtype (integer inputs, e.g. bits for the ``basis``
        encoding, are converted to the weight's dtype).

        Args:
            inputs: ``(B, I)`` samples, on the layer's device.
            noise_levels: ``(K,)`` strengths for this call only; overrides the layer's buffer.
                On the in-graph exact path a tensor that requires grad receives a gradient
                (noise strength as a trainable parameter); other paths, and trajectory
                sampling of a noisy spec, refuse one. With trajectory sampling every level
                draws its own trajectories.

            target: ``output="fidelity"`` only: ``(B, 2**n)`` complex or ``(B, 2 * 2**n)`` real
                target states (normalised here; no gradient flows to them).
            t: specs with a ``timestep`` only: ``(B,)`` or ``(B, m)`` timestep features,
                appended as the last inputs (then ``inputs`` are the data inputs).

        ``inputs`` may be a complex ``(B, 2**n)`` tensor for the ``complex_amplitude`` encoding.

        Returns:
            ``(B, O)`` values (``(B, 2**n)`` probabilities, ``(B,)`` fidelities), with a leading
            ``K`` axis when noise levels are in effect.

        Raises:
            InvalidSpecError: ``inputs`` of the wrong shape, type or device, or invalid noise
                levels.
        """
        x = self._check_inputs(complete_inputs(self.spec, inputs, t))
        targets = target_array(self.spec, self.output, target, x.shape[0])
        if noise_levels is None:
            levels = self.noise_levels
        else:
            levels = self._levels_tensor(noise_levels, keep_graph=True)
        dtype = torch.promote_types(x.dtype, self.weight.dtype)
        xc, wc = x.to(dtype), self.weight.to(dtype)
        if (
            self._trajectories
            and levels is not None
            and levels.requires_grad
            and torch.is_grad_enabled()
        ):
            raise InvalidSpecError(
                "gradients by noise levels are not available with trajectory sampling "
                "(the draw is not differentiable); detach the levels",
                field="noise_levels",
            )
        if self._in_graph and self._trajectories:
            from qldm.backends.trajectory import sample

            rng = np.random.default_rng(self._next_seed())
            values = sample(self.spec, xc, wc, noise_levels=levels, rng=rng)
        elif self._in_graph and self._state_level:
            values = in_graph_values(
                self.spec, xc, wc, output=self.output, targets=targets, levels=levels
            )
        elif self._in_graph:
            from qldm.backends.exact import expectation

            lv = None if levels is None else levels.to(device=wc.device, dtype=dtype)
            values = expectation(self.spec, xc, wc, noise_levels=lv)
        else:
            if levels is not None and levels.requires_grad and torch.is_grad_enabled():
                raise InvalidSpecError(
                    "gradients by noise levels need the exact backend (no url, no shots); "
                    "detach the levels for this backend",
                    field="noise_levels",
                )
            lv_np = None if levels is None else levels.detach().cpu().double().numpy()
            values = evaluate(
                BoundTargets(self._get_evaluator(), targets),
                self.spec,
                xc,
                wc,
                noise_levels=lv_np,
                seed=self._next_seed(),
            )
        values = values.to(x.dtype)
        if self.output is Output.FIDELITY:
            values = values[..., 0]
        return values if levels is not None else values.squeeze(0)

    def metric_tensor(
        self, inputs: torch.Tensor, *, t: Any = None, block_diagonal: bool = False
    ) -> torch.Tensor:
        """The Fubini-Study metric of the weights for every sample, ``(B, P, P)``.

        ``g_ij = Re<d_i psi|d_j psi> - Re(<d_i psi|psi><psi|d_j psi>)`` of
        ``|psi> = U(w)|psi(x_b)>`` (docs/api.md); no autograd graph. ``exact`` computes the
        full matrix or its block diagonal, ``aer`` (in-process or on a server) the block
        diagonal from measured circuits.

        Args:
            inputs: ``(B, I)`` (or complex, or the data inputs with ``t``), as for forward.
            t: timestep features ``(B,)`` or ``(B, m)`` for a spec with ``timestep``.
            block_diagonal: the block-diagonal approximation (:mod:`qldm.circuits.metric`).

        Returns:
            ``(B, P, P)`` in the input's real dtype, on the layer's device.

        Raises:
            InvalidSpecError: a noisy spec (field ``circuit.channel``), bad inputs.
            BackendLimitError: ``block_diagonal=False`` on a backend that measures only the
                block diagonal (field ``metric``).
        """
        x = self._check_inputs(complete_inputs(self.spec, inputs, t)).detach()
        metric = Metric.BLOCK_DIAGONAL if block_diagonal else Metric.FULL
        dtype = torch.promote_types(x.dtype, self.weight.dtype)
        if self._in_graph:
            from qldm.backends import _states

            _states.check_states_finite(self.spec, x)
            w = self.weight.detach().to(dtype)
            g = _states.metric_tensor(self.spec, x.to(dtype), w, block_diagonal=block_diagonal)
        else:
            arr = metric_from_evaluator(
                self._get_evaluator(),
                x.cpu().double().numpy(),
                self.weight.detach().cpu().double().numpy(),
                metric=metric,
                spec=self.spec,
            )
            g = torch.from_numpy(arr).to(device=self.weight.device)
        return g.to(x.dtype)

    def extra_repr(self) -> str:
        s = self.spec
        channel: str = s.channel.kind
        if s.noisy:
            strength = s.channel.strength
            shown = (
                f"{strength:g}"
                if isinstance(strength, float)
                else ",".join(f"{v:g}" for v in strength)
            )
            channel = f"{channel}({shown})"
        obs = s.observables if isinstance(s.observables, str) else f"{len(s.observables)} paulis"
        parts = [
            f"spec=({s.n_qubits} qubits, {s.encoding}, {s.ansatz} x {s.layers}, {channel}, {obs})",
            f"inputs={s.n_inputs}, weights={s.n_weights}, outputs={s.n_outputs}",
            f"backend={self.backend}",
        ]
        if self.noise_levels is not None:
            parts.append(f"noise_levels={self.noise_levels.numel()}")
        if self.shots is not None:
            parts.append(f"shots={self.shots}")
        if self.noise_sampling is not NoiseSampling.EXPECTATION:
            parts.append(f"noise_sampling={self.noise_sampling}")
        if self.url is not None:
            parts.append(f"url={self.url}")
        return ", ".join(parts)

    def __getstate__(self) -> dict[str, Any]:
        # Backends and HTTP clients hold simulators, sockets and locks: rebuild them lazily
        # after a copy.deepcopy (EMA models) or a pickle.
        state = dict(self.__dict__)
        state["_evaluator"] = None
        return state

    # ------------------------------------------------------------------ helpers

    def _check_inputs(self, inputs: Any) -> torch.Tensor:
        i = self.spec.n_inputs
        if not isinstance(inputs, torch.Tensor):
            raise InvalidSpecError(
                f"expected a torch.Tensor of shape (B, {i}), got {type(inputs).__name__}",
                field="inputs",
            )
        if inputs.ndim != 2 or inputs.shape[1] != i or inputs.shape[0] < 1:
            raise InvalidSpecError(
                f"expected shape (B, {i}) with B >= 1, got {tuple(inputs.shape)}", field="inputs"
            )
        if inputs.is_complex():
            raise InvalidSpecError("inputs must be real", field="inputs")
        if inputs.device != self.weight.device:
            raise InvalidSpecError(
                f"inputs are on {inputs.device} but the layer is on {self.weight.device}",
                field="inputs",
            )
        if not inputs.is_floating_point():
            inputs = inputs.to(self.weight.dtype)
        return inputs

    def _levels_tensor(self, noise_levels: Any, *, keep_graph: bool = False) -> torch.Tensor:
        """Validate noise levels into a ``(K,)`` tensor on the layer's device.

        With ``keep_graph`` a floating tensor stays in the autograd graph (per-call levels on
        the exact backend are differentiable); otherwise it is detached and copied.
        """
        try:
            arr = np.asarray(
                noise_levels.detach().cpu()
                if isinstance(noise_levels, torch.Tensor)
                else noise_levels,
                dtype=np.float64,
            )
        except (TypeError, ValueError) as exc:
            raise InvalidSpecError(
                f"not an array of numbers ({exc})", field="noise_levels"
            ) from None
        if arr.ndim != 1 or arr.size == 0:
            raise InvalidSpecError(
                f"expected shape (K,) with K >= 1, got {arr.shape}", field="noise_levels"
            )
        for level in arr:
            check_noise_level(self.spec, float(level))
        device = self.weight.device if hasattr(self, "weight") else None
        if isinstance(noise_levels, torch.Tensor) and noise_levels.is_floating_point():
            if keep_graph:
                return noise_levels.to(device=device)
            return noise_levels.detach().to(device=device).clone()
        return torch.as_tensor(arr, dtype=torch.float64, device=device)

    @property
    def _state_level(self) -> bool:
        """Whether the state-level torch engine computes this layer's values in the graph."""
        s = self.spec
        return (
            self.output is not Output.EXPECTATION
            or s.timestep is not None
            or s.encoding == "complex_amplitude"
        )

    @property
    def _in_graph(self) -> bool:
        """Whether the torch simulator runs inside the autograd graph (exact, local, no shots)."""
        return self.autograd and self.url is None and self.backend == "exact" and self.shots is None

    @property
    def _trajectories(self) -> bool:
        """Whether this layer draws channel trajectories (trajectory sampling, noisy spec)."""
        return self.noise_sampling is NoiseSampling.TRAJECTORY and self.spec.noisy

    def _next_seed(self) -> int | None:
        call = self._calls
        self._calls += 1
        if self.seed is None:
            if self._trajectories:  # reproducible under torch.manual_seed
                return int(torch.randint(0, 2**62, (1,)).item())
            return None
        return (self.seed + call) % _SEED_MODULUS

    @property
    def run_id(self) -> str | None:
        """The server run the layer's jobs are filed under (remote mode), or ``None``;
        settable (a trainer that opens a new run), also after the first job."""
        return self._run_id

    @run_id.setter
    def run_id(self, value: str | None) -> None:
        self._run_id = value
        evaluator = self.__dict__.get("_evaluator")
        if evaluator is not None and hasattr(evaluator, "run_id"):
            evaluator.run_id = value

    def _get_evaluator(self) -> Evaluator:
        if self._evaluator is None:
            if self.url is not None:
                from qldm.client.service_client import ServiceClient

                client = ServiceClient(self.url, api_key=self._api_key)
                self._evaluator = RemoteEvaluator(
                    self.spec,
                    client,
                    backend=self.backend,
                    shots=self.shots,
                    run_id=self.run_id,
                    noise_sampling=self.noise_sampling,
                    options=self._job_options,
                )
            else:
                from qldm.backends import get_backend

                backend = get_backend(self.backend, **self._backend_options)
                self._evaluator = LocalEvaluator(
                    self.spec, backend, shots=self.shots, noise_sampling=self.noise_sampling
                )
        self._evaluator.output = self.output
        return self._evaluator
