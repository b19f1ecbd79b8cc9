"""The QLDM's placements, the classical control, the score gradient and their config fields."""

from __future__ import annotations

import pytest
import torch

from qldm.hybrid.config import ConfigError, parse_config
from qldm.hybrid.qldm import QLDM
from qldm.hybrid.qldm.bottleneck import ClassicalMap
from tests.hybrid._qldm_helpers import digits, one_thread, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")
__all__ = ["one_thread"]


def _model(**overrides: object) -> QLDM:
    torch.manual_seed(0)
    return QLDM(tiny_config(**overrides), in_channels=1, image_size=(8, 8))


@pytest.mark.parametrize(("n", "layers"), [(2, 2), (4, 4), (3, 5)])
def test_classical_variant_has_the_pqc_parameter_count(n: int, layers: int) -> None:
    quantum = _model(**{"model.n_qubits": n, "model.layers": layers, "variant": "noiseless"})
    classical = _model(**{"model.n_qubits": n, "model.layers": layers, "variant": "classical"})
    assert quantum.bottleneck.pqc is not None and classical.bottleneck.pqc is None
    n_pqc = sum(p.numel() for p in quantum.bottleneck.core.parameters())
    n_cls = sum(p.numel() for p in classical.bottleneck.core.parameters())
    assert n_pqc == 2 * n * layers == n_cls
    # everything else has the same size
    rest_q = sum(p.numel() for p in quantum.parameters()) - n_pqc
    rest_c = sum(p.numel() for p in classical.parameters()) - n_cls
    assert rest_q == rest_c


def test_classical_map_matches_its_formula_and_uses_spare_parameters_as_biases() -> None:
    torch.manual_seed(0)
    m = ClassicalMap(3, 2 * 3 * 2 + 2)  # h = 2, two biases on the hidden units
    assert m.hidden == 2 and m.n_biases == 2
    with torch.no_grad():
        m.bias.copy_(torch.tensor([0.3, -0.2]))
    a = torch.randn(5, 3)
    expected = torch.tanh(torch.tanh(a @ m.w1.T + m.bias) @ m.w2.T)
    torch.testing.assert_close(m(a), expected)
    with pytest.raises(ConfigError):
        ClassicalMap(4, 5)


def _pqc_grad(model: QLDM) -> torch.Tensor:
    model.train()
    last = model.denoiser.out[-1]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():  # the last layer starts at zero, which passes no gradient back
        last.weight.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(0))
    terms = model.loss(digits()[:16], generator=torch.Generator().manual_seed(0), recon_weight=0.0)
    terms.total.backward()
    pqc = model.bottleneck.pqc
    assert pqc is not None
    return pqc.weight.grad if pqc.weight.grad is not None else torch.zeros(1)


def test_score_loss_reaches_the_pqc_only_when_standardized() -> None:
    """With recon_weight 0 the loss is the score loss alone."""
    standardized = _pqc_grad(_model(**{"train.score_grad": "standardized"}))
    detached = _pqc_grad(_model(**{"train.score_grad": "detached"}))
    assert float(standardized.abs().sum()) > 0
    assert float(detached.abs().sum()) == 0


def test_generation_placement_runs_the_pqc_when_sampling() -> None:
    """Changing the PQC weights changes the samples only in the generation placement."""
    for placement, changes in (("generation", True), ("latent", False)):
        model = _model(**{"model.placement": placement}).eval()
        before = model.sample(4, generator=torch.Generator().manual_seed(1))
        pqc = model.bottleneck.pqc
        assert pqc is not None
        with torch.no_grad():
            pqc.weight.add_(0.5)
        after = model.sample(4, generator=torch.Generator().manual_seed(1))
        assert (not torch.allclose(before, after)) is changes, placement


def test_generation_placement_models_the_latent_before_the_pqc() -> None:
    model = _model(**{"model.placement": "generation"})
    model.train()
    x = digits()[:32]
    model.loss(x, generator=torch.Generator().manual_seed(0))
    # the standardizer saw the VAE latent (first batch sets it), not the bottleneck output
    z0, _, _ = model.encode_latent(x, sample=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.standardizer.mean, z0.detach().mean(dim=0))


def test_new_config_fields_are_validated_by_name() -> None:
    for data, field in (
        ({"model": {"placement": "decoder"}}, "model.placement"),
        ({"model": {"noise_sampling": "shots"}}, "model.noise_sampling"),
        ({"train": {"score_grad": "yes"}}, "train.score_grad"),
        ({"variant": "noiseless", "model": {"noise_sampling": "trajectory"}}, None),
        ({"variant": "classical", "model": {"noise_sampling": "trajectory"}}, None),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config(data)
        assert info.value.field == (field or "model.noise_sampling")
    cfg = parse_config({"variant": "bit_flip", "model": {"noise_sampling": "trajectory"}})
    assert cfg.model.noise_sampling == "trajectory"
    with pytest.raises(ConfigError) as info:
        _model(variant="classical", **{"model.encoding": "amplitude"})
    assert info.value.field == "model.encoding"
