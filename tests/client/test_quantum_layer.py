"""QuantumLayer: closed forms, autograd (exact) and the Jacobian Function (Aer), training, I/O."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
import torch

from qldm.circuits import PQCSpec
from qldm.client import QuantumLayer
from qldm.client._autograd import LocalEvaluator
from qldm.errors import InvalidSpecError, UnknownBackendError

ONE_QUBIT = {
    "n_qubits": 1,
    "encoding": "angle_ry",
    "ansatz": "ry_rz_brickwork",
    "layers": 1,
    "channel": {"kind": "amplitude_damping", "strength": 0.1},
}

NOISY = {
    "n_qubits": 3,
    "encoding": "angle_ry",
    "ansatz": "ry_rz_brickwork",
    "layers": 2,
    "channel": {"kind": "amplitude_damping", "strength": 0.05},
}


def _double(layer: QuantumLayer) -> QuantumLayer:
    return layer.double()


# ---------------------------------------------------------------------- values


def test_one_qubit_values_equal_closed_form() -> None:
    # RY(x) RY(w0) RZ(w1) then amplitude damping g: <Z> = g + (1 - g) cos(x + w0).
    torch.manual_seed(0)
    levels = [0.0, 0.3, 1.0]
    layer = _double(QuantumLayer(ONE_QUBIT, noise_levels=levels))
    x = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64).unsqueeze(1)
    out = layer(x)
    assert out.shape == (3, 7, 1)
    w0 = layer.weight[0].item()
    for k, g in enumerate(levels):
        want = g + (1 - g) * torch.cos(x[:, 0] + w0)
        torch.testing.assert_close(out[k, :, 0], want, atol=1e-12, rtol=0)
    # Without noise levels the spec's own strength (0.1) applies and K is squeezed away.
    plain = _double(QuantumLayer(ONE_QUBIT))
    plain.load_state_dict({"weight": layer.weight.detach().clone()})
    out = plain(x)
    assert out.shape == (7, 1)
    torch.testing.assert_close(out[:, 0], 0.1 + 0.9 * torch.cos(x[:, 0] + w0), atol=1e-12, rtol=0)


def test_one_qubit_aer_function_values_equal_closed_form() -> None:
    layer = _double(QuantumLayer(ONE_QUBIT, backend="aer", noise_levels=[0.0, 0.5]))
    x = torch.tensor([[0.3], [-1.2]], dtype=torch.float64)
    with torch.no_grad():
        out = layer(x)
    w0 = layer.weight[0].item()
    for k, g in enumerate([0.0, 0.5]):
        torch.testing.assert_close(
            out[k, :, 0], g + (1 - g) * torch.cos(x[:, 0] + w0), atol=1e-9, rtol=0
        )


# ---------------------------------------------------------------------- gradients


def test_gradcheck_exact_float64() -> None:
    torch.manual_seed(1)
    layer = _double(QuantumLayer(NOISY, noise_levels=[0.02, 0.2]))
    x = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)

    def f(inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, {"weight": weight}, (inputs,))

    assert torch.autograd.gradcheck(f, (x, layer.weight.detach().clone().requires_grad_()))


def test_gradcheck_aer_function_path() -> None:
    torch.manual_seed(2)
    spec = {**ONE_QUBIT, "n_qubits": 2}
    layer = _double(QuantumLayer(spec, backend="aer", noise_levels=[0.1, 0.4]))
    x = torch.rand(2, 2, dtype=torch.float64, requires_grad=True)

    def f(inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, {"weight": weight}, (inputs,))

    w = layer.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x, w), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("levels", [None, [0.0, 0.05, 0.3]])
def test_aer_function_gradients_equal_exact_autograd(levels: list[float] | None) -> None:
    torch.manual_seed(3)
    exact = _double(QuantumLayer(NOISY, noise_levels=levels))
    aer = _double(QuantumLayer(NOISY, backend="aer", noise_levels=levels))
    aer.load_state_dict(exact.state_dict())
    x = torch.rand(4, 3, dtype=torch.float64) * 2 - 1
    grads = []
    for layer in (exact, aer):
        xi = x.clone().requires_grad_()
        out = layer(xi)
        # A non-uniform upstream gradient exercises every (k, b, o) entry of the contraction.
        probe = torch.linspace(-1.0, 2.0, out.numel(), dtype=torch.float64).reshape(out.shape)
        (out * probe).sum().backward()
        assert layer.weight.grad is not None and xi.grad is not None
        grads.append((out.detach(), xi.grad.clone(), layer.weight.grad.clone()))
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


class _Recorder:
    """Wraps the real Aer evaluator and records the task of every call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.tasks: list[str] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.tasks.append(kwargs["task"])
        return self.inner(*args, **kwargs)


def test_jacobian_requested_only_when_a_gradient_is_needed() -> None:
    layer = _double(QuantumLayer(ONE_QUBIT, backend="aer"))
    recorder = _Recorder(layer._get_evaluator())
    assert isinstance(recorder.inner, LocalEvaluator)
    layer._evaluator = recorder  # type: ignore[assignment]
    x = torch.zeros(2, 1, dtype=torch.float64)
    with torch.no_grad():
        layer(x)
    layer.weight.requires_grad_(False)
    layer(x)
    layer.weight.requires_grad_(True)
    layer(x).sum().backward()
    assert recorder.tasks == ["expectation", "expectation", "jacobian"]
    assert layer.weight.grad is not None


def test_only_inputs_need_grad_on_function_path() -> None:
    layer = _double(QuantumLayer(ONE_QUBIT, backend="aer")).requires_grad_(False)
    x = torch.tensor([[0.4]], dtype=torch.float64, requires_grad=True)
    layer(x).sum().backward()
    # d/dx [0.1 + 0.9 cos(x + w0)] = -0.9 sin(x + w0)
    want = -0.9 * math.sin(0.4 + layer.weight[0].item())
    assert x.grad is not None
    assert x.grad.item() == pytest.approx(want, abs=1e-9)
    assert layer.weight.grad is None


# ---------------------------------------------------------------------- training


def test_regression_task_trains() -> None:
    torch.manual_seed(4)
    spec = {**NOISY, "n_qubits": 2, "layers": 3}
    teacher = QuantumLayer(spec).double()
    student = QuantumLayer(spec).double()
    x = torch.rand(32, 2, dtype=torch.float64) * math.pi - math.pi / 2
    with torch.no_grad():
        y = teacher(x)
    opt = torch.optim.Adam(student.parameters(), lr=0.1)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(student(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


def test_trains_as_a_float32_submodule() -> None:
    torch.manual_seed(5)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 2), QuantumLayer({"n_qubits": 2, "layers": 2}), torch.nn.Linear(2, 1)
    )
    x = torch.randn(16, 4)
    y = torch.sin(x.sum(dim=1, keepdim=True))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = last = 0.0
    for step in range(30):
        opt.zero_grad()
        out = model(x)
        assert out.dtype == torch.float32
        loss = torch.nn.functional.mse_loss(out, y)
        loss.backward()
        opt.step()
        first = loss.item() if step == 0 else first
        last = loss.item()
    assert last < first / 2


# ---------------------------------------------------------------------- module plumbing


def test_state_dict_round_trip() -> None:
    torch.manual_seed(6)
    layer = QuantumLayer(NOISY, noise_levels=[0.1, 0.2]).double()
    state = layer.state_dict()
    assert set(state) == {"weight", "noise_levels"}
    other = QuantumLayer(NOISY, noise_levels=[0.5, 0.6]).double()
    other.load_state_dict(state)
    x = torch.rand(5, 3, dtype=torch.float64)
    torch.testing.assert_close(other(x), layer(x), atol=0, rtol=0)
    torch.testing.assert_close(other.noise_levels, torch.tensor([0.1, 0.2], dtype=torch.float64))


def test_noise_levels_buffer_and_k_dimension() -> None:
    layer = QuantumLayer(NOISY, noise_levels=[0.0, 0.1, 0.2, 0.3])
    assert "noise_levels" in dict(layer.named_buffers())
    assert layer(torch.zeros(2, 3)).shape == (4, 2, 3)
    layer.float()
    assert layer.noise_levels is not None and layer.noise_levels.dtype == torch.float32
    # A per-call override replaces the buffer for that call only.
    assert layer(torch.zeros(2, 3), noise_levels=[0.4]).shape == (1, 2, 3)
    assert layer(torch.zeros(2, 3)).shape == (4, 2, 3)
    assert QuantumLayer(NOISY).noise_levels is None


def test_noise_level_errors_name_the_field() -> None:
    with pytest.raises(InvalidSpecError) as err:
        QuantumLayer({"n_qubits": 2}, noise_levels=[0.1])
    assert err.value.field == "noise_levels"
    with pytest.raises(InvalidSpecError) as err:
        QuantumLayer(NOISY, noise_levels=[1.5])
    assert err.value.field == "noise_levels"
    with pytest.raises(InvalidSpecError) as err:
        QuantumLayer(NOISY, noise_levels=[[0.1]])
    assert err.value.field == "noise_levels"


def test_bad_input_shape_names_inputs() -> None:
    layer = QuantumLayer(NOISY)
    for bad in (torch.zeros(4, 2), torch.zeros(3), torch.zeros(0, 3), torch.zeros(2, 3, 1)):
        with pytest.raises(InvalidSpecError, match=r"inputs: expected shape \(B, 3\)") as err:
            layer(bad)
        assert err.value.field == "inputs"
    with pytest.raises(InvalidSpecError) as err:
        layer(np.zeros((2, 3)))  # type: ignore[arg-type]
    assert err.value.field == "inputs"
    with pytest.raises(InvalidSpecError, match="inputs: inputs are on meta") as err:
        layer(torch.zeros(2, 3, device="meta"))
    assert err.value.field == "inputs"


def test_spec_dict_and_construction_errors() -> None:
    assert QuantumLayer(NOISY).spec == PQCSpec.parse(NOISY)
    with pytest.raises(InvalidSpecError) as err:
        QuantumLayer({"n_qubits": 0})
    assert err.value.field == "n_qubits"
    with pytest.raises(UnknownBackendError):
        QuantumLayer(NOISY, backend="nonesuch")
    with pytest.raises(InvalidSpecError) as err:
        QuantumLayer(NOISY, shots=0)
    assert err.value.field == "shots"
    with pytest.raises(InvalidSpecError) as err:
        QuantumLayer(NOISY, init_scale=-1.0)
    assert err.value.field == "init_scale"


def test_dtype_conversions_and_init() -> None:
    torch.manual_seed(7)
    layer = QuantumLayer(NOISY, init_scale=0.1)
    assert layer.weight.dtype == torch.float32
    assert float(layer.weight.detach().abs().max()) <= 0.1
    x = torch.rand(2, 3)
    assert layer(x).dtype == torch.float32
    layer.double()
    assert layer.weight.dtype == torch.float64
    # float32 inputs on a float64 layer are computed in float64 and returned as float32
    out = layer(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), layer(x.double()), atol=1e-6, rtol=0)


def test_extra_repr_and_deepcopy() -> None:
    layer = QuantumLayer(NOISY, backend="aer", noise_levels=[0.1])
    text = repr(layer)
    assert "backend=aer" in text and "ry_rz_brickwork" in text and "amplitude_damping(0.05)" in text
    twin = copy.deepcopy(layer)
    x = torch.rand(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), layer(x))


def test_shots_are_seeded_per_call() -> None:
    torch.manual_seed(8)
    layers = [QuantumLayer(NOISY, shots=2000, seed=11).double() for _ in range(2)]
    layers[1].load_state_dict(layers[0].state_dict())
    exact = QuantumLayer(NOISY).double()
    exact.load_state_dict(layers[0].state_dict())
    x = torch.rand(6, 3, dtype=torch.float64)
    with torch.no_grad():
        first, second = layers[0](x), layers[0](x)
        twin = layers[1](x)
        want = exact(x)
    torch.testing.assert_close(first, twin, atol=0, rtol=0)  # same seed, same call number
    assert not torch.equal(first, second)  # the next call draws new shots
    # The mean of 2000 +-1 outcomes: standard deviation <= 1/sqrt(2000) = 0.022.
    assert float((first - want).abs().max()) < 0.12
    assert float((first - want).abs().max()) > 0.0


def test_gradient_by_noise_level_on_exact_path() -> None:
    # d/dg [g + (1 - g) cos(x + w0)] = 1 - cos(x + w0)
    layer = QuantumLayer(ONE_QUBIT).double()
    g = torch.tensor([0.2, 0.6], dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[0.7]], dtype=torch.float64)
    layer(x, noise_levels=g).sum().backward()
    want = 1 - math.cos(0.7 + layer.weight[0].item())
    assert g.grad is not None
    torch.testing.assert_close(g.grad, torch.full((2,), want, dtype=torch.float64))
    aer = QuantumLayer(ONE_QUBIT, backend="aer").double()
    with pytest.raises(InvalidSpecError) as err:
        aer(x, noise_levels=g)
    assert err.value.field == "noise_levels"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_moves_to_cuda_on_both_paths() -> None:
    torch.manual_seed(9)
    x = torch.rand(3, 3, dtype=torch.float64)
    cpu = QuantumLayer(NOISY, noise_levels=[0.1, 0.2]).double()
    want = cpu(x)
    want.sum().backward()
    assert cpu.weight.grad is not None
    for backend in ("exact", "aer"):
        layer = QuantumLayer(NOISY, backend=backend, noise_levels=[0.1, 0.2]).double()
        layer.load_state_dict(cpu.state_dict())
        layer.cuda()
        assert layer.noise_levels is not None and layer.noise_levels.is_cuda
        out = layer(x.cuda())
        out.sum().backward()
        assert out.is_cuda and layer.weight.grad is not None and layer.weight.grad.is_cuda
        torch.testing.assert_close(out.cpu(), want.detach(), atol=1e-9, rtol=0)
        torch.testing.assert_close(layer.weight.grad.cpu(), cpu.weight.grad, atol=1e-9, rtol=0)
