"""QuantumLayer's state-level surface (docs/api.md, section QuantumLayer): outputs, complex
inputs, the timestep ``t``, fidelity targets and ``metric_tensor``, in the autograd graph and
through the backend Function, against Qiskit Statevector and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Statevector

from qldm.circuits import PQCSpec
from qldm.circuits.qiskit_builder import build
from qldm.client import QuantumLayer
from qldm.errors import InvalidSpecError

torch.set_num_threads(1)

SPEC = {
    "n_qubits": 2,
    "encoding": "complex_amplitude",
    "ansatz": "ry_rz_brickwork",
    "layers": 2,
    "timestep": {"features": 1},
}


def _qiskit_state(spec: PQCSpec, z: np.ndarray, t: float, w: np.ndarray) -> np.ndarray:
    pa = spec.n_ansatz_weights
    theta = w[:pa] + t * w[pa:]
    tpl = build(spec.without_timestep(), amplitudes=z)
    qc = tpl.circuit.assign_parameters(dict(zip(tpl.weights, theta, strict=True)))
    return np.asarray(Statevector(qc).data)


@pytest.mark.parametrize("autograd", [True, False])
def test_probabilities_and_fidelity_with_complex_inputs_and_t(autograd: bool) -> None:
    torch.manual_seed(0)
    probs = QuantumLayer(SPEC, output="probabilities", autograd=autograd).double()
    fid = QuantumLayer(SPEC, output="fidelity", autograd=autograd).double()
    fid.load_state_dict(probs.state_dict())
    z = torch.randn(3, 4, dtype=torch.complex128, requires_grad=True)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    phi = torch.randn(3, 4, dtype=torch.complex128)
    p = probs(z, t=t)
    f = fid(z, t=t, target=phi)
    assert p.shape == (3, 4) and f.shape == (3,)
    w = probs.weight.detach().numpy()
    spec = probs.spec
    for b in range(3):
        psi = _qiskit_state(spec, z[b].detach().numpy(), float(t.detach()[b]), w)
        np.testing.assert_allclose(p[b].detach().numpy(), np.abs(psi) ** 2, atol=1e-12)
        ph = phi[b].numpy() / np.linalg.norm(phi[b].numpy())
        assert float(f[b]) == pytest.approx(abs(np.vdot(ph, psi)) ** 2, abs=1e-12)
    # gradients to the real and imaginary parts, to t and to the weights: finite differences
    loss = (1 - f).sum() + (p[:, 0] * torch.arange(1, 4)).sum()
    loss.backward()

    def total(zz: np.ndarray, tt: np.ndarray, ww: np.ndarray) -> float:
        out = 0.0
        for b in range(3):
            psi = _qiskit_state(spec, zz[b], float(tt[b]), ww)
            ph = phi[b].numpy() / np.linalg.norm(phi[b].numpy())
            out += 1 - abs(np.vdot(ph, psi)) ** 2 + (b + 1) * abs(psi[0]) ** 2
        return out

    eps = 1e-6
    z0, t0 = z.detach().numpy(), t.detach().numpy()
    dz = np.zeros_like(z0)
    for idx in np.ndindex(z0.shape):
        for unit in (1.0, 1j):
            e = np.zeros_like(z0)
            e[idx] = eps * unit
            d = (total(z0 + e, t0, w) - total(z0 - e, t0, w)) / (2 * eps)
            dz[idx] += d * unit
    # torch's gradient of a real loss by a complex tensor is dL/dRe + i dL/dIm
    np.testing.assert_allclose(z.grad.numpy(), dz, atol=1e-6)
    for b in range(3):
        e = np.zeros(3)
        e[b] = eps
        d = (total(z0, t0 + e, w) - total(z0, t0 - e, w)) / (2 * eps)
        assert float(t.grad[b]) == pytest.approx(d, abs=1e-6)
    grad_w = probs.weight.grad.numpy() + fid.weight.grad.numpy()
    for k in range(w.size):
        e = np.zeros(w.size)
        e[k] = eps
        d = (total(z0, t0, w + e) - total(z0, t0, w - e)) / (2 * eps)
        assert grad_w[k] == pytest.approx(d, abs=1e-6)


@pytest.mark.parametrize("autograd", [True, False])
def test_metric_tensor_of_the_layer(autograd: bool) -> None:
    layer = QuantumLayer({"n_qubits": 1, "layers": 1}, autograd=autograd).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.4, 1.1], dtype=torch.float64))
    x = torch.tensor([[0.3], [-1.2]], dtype=torch.float64)
    for block in (False, True):
        g = layer.metric_tensor(x, block_diagonal=block)
        assert g.shape == (2, 2, 2) and not g.requires_grad
        for b in range(2):
            want = torch.diag(torch.tensor([0.25, np.sin(0.4 + float(x[b, 0])) ** 2 / 4]))
            torch.testing.assert_close(g[b], want.double(), atol=1e-12, rtol=0)
    tl = QuantumLayer(SPEC, autograd=autograd).double()
    g = tl.metric_tensor(torch.randn(2, 4, dtype=torch.complex128), t=torch.tensor([0.2, 0.7]))
    assert g.shape == (2, tl.spec.n_weights, tl.spec.n_weights)
    assert torch.linalg.eigvalsh(g).min() > -1e-10


def test_bad_state_arguments_name_the_field() -> None:
    layer = QuantumLayer(SPEC, output="fidelity").double()
    z = torch.randn(2, 4, dtype=torch.complex128)
    cases = [
        ({"t": torch.zeros(2)}, "target"),
        ({"t": torch.zeros(3), "target": torch.ones(2, 4)}, "t"),
        ({"t": torch.zeros(2), "target": torch.ones(2, 3)}, "target"),
        ({"t": torch.zeros(2), "target": torch.zeros(2, 4)}, "target"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidSpecError) as err:
            layer(z, **kwargs)
        assert err.value.field == field
    with pytest.raises(InvalidSpecError) as err:
        QuantumLayer({"n_qubits": 2}, output="density")
    assert err.value.field == "output"
    with pytest.raises(InvalidSpecError) as err:
        QuantumLayer({"n_qubits": 2})(torch.zeros(1, 2), t=torch.zeros(1))
    assert err.value.field == "t"
