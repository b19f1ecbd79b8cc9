"""The quantum diffusion models (issue 13): data, building blocks against independent maths,
parameter-matched controls, a few training steps of each model, configs and job options."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qldm.hybrid.config import ConfigError
from qldm.hybrid.qdiff.common import (
    ComplexLinear,
    DepolarizingSchedule,
    GaussianSchedule,
    born_sample,
    count_parameters,
    infidelity,
)
from qldm.hybrid.qdiff.config import load_qdiff_config, parse_qdiff_config
from qldm.hybrid.qdiff.data import load_amplitude_digits, to_images
from qldm.hybrid.qdiff.run import build_model, quantum_budget
from qldm.hybrid.qdiff.training import fit
from tests.hybrid._qldm_helpers import one_thread

pytestmark = pytest.mark.usefixtures("one_thread")
__all__ = ["one_thread"]

ROOT = Path(__file__).resolve().parents[2]


def test_amplitude_digits_are_unit_states_of_the_chosen_classes() -> None:
    data = load_amplitude_digits(classes=(0, 1), side=8, subset=50)
    assert data.vectors.shape == (50, 64) and data.n_qubits == 6
    torch.testing.assert_close(data.vectors.norm(dim=1), torch.ones(50))
    assert set(data.labels.tolist()) <= {0, 1}
    assert (data.vectors >= 0).all()
    assert data.images.shape == (50, 1, 8, 8) and float(data.images.amax()) == 1.0
    with pytest.raises(ConfigError, match="power of two"):
        load_amplitude_digits(side=6)


def test_complex_linear_equals_numpy_complex_matmul() -> None:
    torch.manual_seed(0)
    layer = ComplexLinear(5, 3)
    x = torch.randn(4, 5)
    w = layer.weight_re.detach().numpy() + 1j * layer.weight_im.detach().numpy()
    b = layer.bias_re.detach().numpy() + 1j * layer.bias_im.detach().numpy()
    want = x.numpy() @ w.T + b
    np.testing.assert_allclose(layer(x).detach().numpy(), want, rtol=1e-5, atol=1e-6)
    assert count_parameters(layer) == 2 * (5 * 3 + 3)


def test_infidelity_closed_forms() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    torch.testing.assert_close(infidelity(a, b), torch.tensor([1.0, 0.5]))
    z = torch.tensor([[1 + 1j, 2 - 1j]], dtype=torch.complex64)
    # a global phase and a scale leave a state unchanged
    torch.testing.assert_close(infidelity(z, 3j * z), torch.zeros(1), atol=1e-6, rtol=0)


def test_depolarizing_schedule_composes_to_a_t() -> None:
    s = DepolarizingSchedule(50, layers=4, a_min=0.02)
    # L per-layer Bloch shrinks (1 - s) compose to a_t
    torch.testing.assert_close((1 - s.strength) ** 4, s.a, rtol=1e-12, atol=1e-12)
    floored = DepolarizingSchedule(50, layers=4, a_min=0.02, min_strength=0.05)
    assert float(floored.strength.min()) == pytest.approx(0.05)


def test_gaussian_posterior_matches_bayes_rule() -> None:
    # q(x_{t-1} | x_t, x_0) of one scalar, by completing the square independently
    sch = GaussianSchedule(10)
    t = 4
    a, abp = float(sch.alpha[t]), float(sch.abar[t - 1])
    x0, xt = torch.tensor([[0.7]]), torch.tensor([[-0.3]])
    # prior x_{t-1} ~ N(sqrt(abp) x0, 1 - abp); likelihood x_t ~ N(sqrt(a) x_{t-1}, 1 - a)
    prec = 1 / (1 - abp) + a / (1 - a)
    mean = (math.sqrt(abp) * 0.7 / (1 - abp) + math.sqrt(a) * -0.3 / (1 - a)) / prec
    got_mean, got_std = sch.posterior(xt, x0, t)
    assert float(got_mean) == pytest.approx(mean, rel=1e-5)
    assert got_std == pytest.approx(math.sqrt(1 / prec), rel=1e-5)


def test_born_sample_frequencies_with_the_probabilities_gradient() -> None:
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4]], requires_grad=True)
    f = born_sample(p, 10_000, generator=torch.Generator().manual_seed(0))
    assert float(f.detach().sum()) == pytest.approx(1.0)
    assert torch.allclose(f, p, atol=0.02)
    (f * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close(p.grad, torch.arange(4.0).unsqueeze(0))


def _cfg(kind: str, **over: Any) -> Any:
    base: dict[str, Any] = {"name": "t", "kind": kind, "data": {"subset": 64}}
    if kind == "quantum_unet":
        base["model"] = {"n_qubits": 3, "layers": 2, "hidden": 16, "timesteps": 4}
        if over.get("variant") == "pqc_only":  # the PQC acts on the 64 pixel amplitudes
            base["model"] = {"layers": 1, "timesteps": 4}
    elif kind == "qdm_denoiser":
        base["model"] = {
            "latent": 8,
            "conditioned": True,
            "layers": 2,
            "timesteps": 3,
            "codec_steps": 5,
        }
    else:
        base["model"] = {"layers": 1, "hidden": 16, "timesteps": 3, "levels_per_step": 2}
    base["train"] = {"steps": 3, "batch_size": 8}
    return parse_qdiff_config(base).with_overrides(**over)


@pytest.mark.parametrize("kind", ["quantum_unet", "qdm_denoiser", "depolarizing_diffusion"])
def test_classical_control_has_the_quantum_parameter_count(kind: str) -> None:
    q = _cfg(kind)
    budget = quantum_budget(q)
    control = build_model(q.with_overrides(variant="classical"))
    if kind == "qdm_denoiser":
        n = count_parameters(control) - count_parameters(control.codec)  # type: ignore[arg-type]
    else:
        n = count_parameters(control)
    assert abs(n - budget) <= max(0.05 * budget, 40), (n, budget)


def test_the_latent_qdm_has_1104_pqc_weights() -> None:
    cfg = load_qdiff_config(ROOT / "configs" / "qdiff_qdm_latent.yaml")
    model = build_model(cfg)
    assert sum(p.numel() for p in model.quantum_parameters()) == 1104


@pytest.mark.parametrize(
    ("kind", "variant", "optimizer"),
    [
        ("quantum_unet", "quantum", "adam"),
        ("quantum_unet", "quantum", "qngd"),
        ("quantum_unet", "pqc_only", "qngd"),
        ("qdm_denoiser", "quantum", "adam"),
        ("depolarizing_diffusion", "quantum", "adam"),
    ],
)
def test_a_few_steps_train_and_sample(kind: str, variant: str, optimizer: str) -> None:
    cfg = _cfg(kind, **{"train.optimizer": optimizer, "variant": variant})
    data = load_amplitude_digits(subset=64)
    model = build_model(cfg)
    if hasattr(model, "prepare"):
        model.prepare(data.vectors, steps=5, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.quantum_parameters()]
    result = fit(model, data, steps=3, batch_size=8, lr=1e-2, seed=0, optimizer=optimizer)
    assert len(result.losses) == 3 and all(0.0 <= v <= 1.0 for v in result.losses)
    assert any(
        not torch.equal(a, b) for a, b in zip(before, model.quantum_parameters(), strict=True)
    )
    out = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 64)
    torch.testing.assert_close(out.abs().pow(2).sum(1), torch.ones(3), atol=1e-5, rtol=0)
    assert to_images(out).shape == (3, 1, 8, 8)


def test_qngd_step_of_the_unet_is_the_damped_natural_gradient() -> None:
    from qldm.hybrid.qngd import natural_direction

    cfg = _cfg("quantum_unet", **{"train.optimizer": "qngd"})
    model = build_model(cfg)
    data = load_amplitude_digits(subset=16)
    gen = torch.Generator().manual_seed(0)
    loss = model.loss(data.vectors[:8], data.labels[:8], generator=gen)
    loss.backward()
    w0 = model.pqc.weight.detach().clone()
    g = model.metric()()
    want = w0 - 0.05 * natural_direction(g, model.pqc.weight.grad, damping=0.01)
    from qldm.hybrid.qngd import QNGD

    QNGD([model.pqc.weight], metric=model.metric(), lr=0.05, damping=0.01).step()
    torch.testing.assert_close(model.pqc.weight.detach(), want)
    assert g.shape == (w0.numel(), w0.numel())
    torch.testing.assert_close(g, g.T)
    assert float(torch.linalg.eigvalsh(g).min()) > -1e-8  # positive semi-definite


def test_shipped_configs_load_and_errors_name_the_field() -> None:
    for path in sorted((ROOT / "configs").glob("qdiff_*.yaml")):
        assert load_qdiff_config(path).kind
    with pytest.raises(ConfigError) as err:
        parse_qdiff_config({"kind": "quantum_unet", "model": {"layers": 0}})
    assert err.value.field == "model.layers"
    with pytest.raises(ConfigError) as err:
        parse_qdiff_config({"kind": "qdm_denoiser", "train": {"optimizer": "qngd"}})
    assert err.value.field == "train.optimizer"


def test_job_options_reach_the_server_request() -> None:
    from qldm.circuits import PQCSpec
    from qldm.client._autograd import RemoteEvaluator

    seen: dict[str, Any] = {}

    class FakeClient:
        def evaluate(self, *args: Any, **kwargs: Any) -> Any:
            seen.update(kwargs)
            raise RuntimeError("stop")

    spec = PQCSpec.parse({"n_qubits": 1})
    ev = RemoteEvaluator(
        spec,
        FakeClient(),
        backend="fake:fake_manila",
        shots=8,
        run_id=None,
        options={"gradient_budget": 2},
    )
    with pytest.raises(RuntimeError):
        ev(np.zeros((1, 1)), np.zeros(2), noise_levels=None, task="jacobian", seed=None)
    assert seen["options"] == {"gradient_budget": 2}


def test_qldm_train_sample_evaluate_on_a_kind_config(tmp_path: Path) -> None:
    import json

    from qldm.hybrid import cli
    from qldm.paths import default_data_dir

    cfg = tmp_path / "q.yaml"
    cfg.write_text(
        "name: q\nkind: depolarizing_diffusion\n"
        f"out_dir: {tmp_path / 'run'}\n"
        "data: {subset: 32}\n"
        "model: {layers: 1, hidden: 8, timesteps: 2, levels_per_step: 2}\n"
        "train: {steps: 2, batch_size: 4}\neval: {n_samples: 4, test_images: 16}\n"
    )
    cli.train(cfg, url=None, api_key=None, data_dir=default_data_dir())
    ckpt = tmp_path / "run" / "last.pt"
    assert ckpt.is_file()
    cli.sample(ckpt, n=3, out=tmp_path / "s.png")
    assert (tmp_path / "s.png").is_file()
    cli.evaluate(ckpt, out=tmp_path / "eval", data_dir=default_data_dir())
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["kind"] == "depolarizing_diffusion"
    assert metrics["classifier_frechet_distance"] > 0
    assert metrics["parameters"]["quantum"] == 2 * (2 * 5)  # mps: 2(n-1) x 1 layer, x2 timestep
