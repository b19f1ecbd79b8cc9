"""The QLDM's parts: shapes, the variant switch (against analytic channel formulas), training."""

from __future__ import annotations

import math

import pytest
import torch

from qldm.hybrid.config import VARIANTS, ConfigError, load_config, parse_config
from qldm.hybrid.qldm import QLDM, ConvVAE, QuantumBottleneck
from tests.hybrid._qldm_helpers import ROOT, digits, one_thread, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")
__all__ = ["one_thread"]


def test_shapes() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = QLDM(cfg, in_channels=1, image_size=(8, 8))
    x = digits()[:5]
    mu, log_var = model.vae.encode(x)
    assert mu.shape == log_var.shape == (5, 2)
    assert model.vae.decode(mu).shape == (5, 1, 8, 8)
    assert model.bottleneck.pqc_inputs(mu).shape == (5, 2)
    assert float(model.bottleneck.pqc_inputs(100 * mu).detach().abs().max()) <= math.pi
    assert model.bottleneck(mu).shape == (5, 2)
    terms = model.loss(x, generator=torch.Generator().manual_seed(0))
    assert terms.total.ndim == 0 and terms.score > 0 and terms.recon > 0
    model.eval()
    assert model.reconstruct(x).shape == (5, 1, 8, 8)
    samples = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 8, 8)
    assert float(samples.min()) >= 0 and float(samples.max()) <= 1
    with pytest.raises(ConfigError):
        model.vae.encode(torch.zeros(2, 1, 9, 9))
    with pytest.raises(ConfigError):
        ConvVAE(in_channels=1, image_size=(10, 10), latent_dim=2)


def test_amplitude_encoding_feeds_a_normalised_state() -> None:
    torch.manual_seed(0)
    cfg = tiny_config(**{"model.encoding": "amplitude"})
    model = QLDM(cfg, in_channels=1, image_size=(8, 8))
    v = model.bottleneck.pqc_inputs(torch.randn(4, 2))
    assert v.shape == (4, 4)
    assert torch.allclose(v.norm(dim=1), torch.ones(4), atol=1e-6)
    assert model.bottleneck(torch.randn(4, 2)).shape == (4, 2)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "classical"])
def test_variant_sets_the_pqc_channel(variant: str) -> None:
    cfg = tiny_config(variant=variant, **{"model.noise_strength": 0.2})
    spec = QLDM(cfg, in_channels=1, image_size=(8, 8)).bottleneck.pqc.spec
    expected = {
        "noiseless": "none",
        "gaussian": "none",
        "amp_damp": "amplitude_damping",
        "bit_flip": "bit_flip",
        "phase_flip": "phase_flip",
    }[variant]
    assert spec.channel.kind == expected
    assert spec.layer_strengths() == ((0.2,) * 2 if expected != "none" else (0.0, 0.0))
    assert cfg.gaussian_std == (0.2 if variant == "gaussian" else 0.0)


def test_variant_channels_match_analytic_expectations() -> None:
    """One qubit, one layer: RY(x) RY(w0) RZ(w1), the channel, then <Z>.

    <Z> = c with c = cos(x + w0) without noise; (1 - 2p) c after a bit flip; c after a phase
    flip (Z commutes with it); gamma + (1 - gamma) c after amplitude damping.
    """
    p = 0.2
    x = torch.tensor([[0.3], [-1.1], [2.0]], dtype=torch.float64)
    outs = {}
    for variant in [v for v in VARIANTS if v != "classical"]:
        cfg = tiny_config(
            variant=variant, **{"model.n_qubits": 1, "model.layers": 1, "model.noise_strength": p}
        )
        torch.manual_seed(1)
        b = QuantumBottleneck(2, cfg.pqc_spec(), gaussian_std=cfg.gaussian_std)
        b.double()
        with torch.no_grad():
            b.pqc.weight.copy_(torch.tensor([0.4, 0.9], dtype=torch.float64))
        b.eval()
        outs[variant] = b.pqc(x)
        if variant == "gaussian":
            b.train()
            noisy = b.quantum_features(
                torch.zeros(3, 2, dtype=torch.float64), generator=torch.Generator().manual_seed(0)
            )
            b.eval()
            clean = b.quantum_features(torch.zeros(3, 2, dtype=torch.float64))
            assert not torch.allclose(noisy, clean)
            assert float((noisy - clean).detach().abs().max()) < 6 * p
    c = torch.cos(x + 0.4)
    torch.testing.assert_close(outs["noiseless"], c, atol=1e-9, rtol=0)
    torch.testing.assert_close(outs["gaussian"], c, atol=1e-9, rtol=0)
    torch.testing.assert_close(outs["bit_flip"], (1 - 2 * p) * c, atol=1e-9, rtol=0)
    torch.testing.assert_close(outs["phase_flip"], c, atol=1e-9, rtol=0)
    torch.testing.assert_close(outs["amp_damp"], p + (1 - p) * c, atol=1e-9, rtol=0)


def test_noisy_variants_change_the_outputs_of_a_deeper_pqc() -> None:
    outs = {}
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    for variant in ("noiseless", "amp_damp", "bit_flip", "phase_flip"):
        cfg = tiny_config(variant=variant, **{"model.noise_strength": 0.1})
        torch.manual_seed(0)
        model = QLDM(cfg, in_channels=1, image_size=(8, 8)).eval()
        outs[variant] = model.bottleneck.quantum_features(z)
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(outs[a], outs[b], atol=1e-4), (a, b)


def test_tiny_model_loss_goes_down() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = QLDM(cfg, in_channels=1, image_size=(8, 8))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    x = digits()[:64]
    losses = []
    for step in range(40):
        terms = model.loss(x, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        losses.append(float(terms.total))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert model.bottleneck.pqc.weight.grad is not None
    assert float(model.bottleneck.pqc.weight.grad.abs().sum()) > 0


def test_shipped_configs_are_valid() -> None:
    variants = set()
    for path in sorted((ROOT / "configs").glob("qldm_*.yaml")):
        cfg = load_config(path)
        variants.add(cfg.variant)
    assert set(VARIANTS) <= variants


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"variant": "depolarizing"})
    assert info.value.field == "variant"
    with pytest.raises(ConfigError) as info:
        parse_config({"model": {"n_qubits": 6, "colour": 3}})
    assert info.value.field == "model.colour"
    with pytest.raises(ConfigError) as info:
        parse_config({"diffusion": {"timesteps": 10, "ddim_steps": 20}})
    assert info.value.field == "diffusion.ddim_steps"
    with pytest.raises(ConfigError) as info:
        QLDM(parse_config({"diffusion": {"schedule": "sigmoid"}}))
    assert info.value.field == "diffusion.schedule"
