"""Samplers: determinism, DDIM's deterministic path, and sampling a known Gaussian."""

from __future__ import annotations

import pytest
import torch

from qldm.hybrid.config import ConfigError
from qldm.hybrid.qldm.denoiser import LatentDenoiser, SinusoidalEmbedding
from qldm.hybrid.qldm.sampler import DDIMSampler, DDPMSampler, make_sampler
from qldm.hybrid.qldm.schedule import NoiseSchedule
from tests.hybrid._qldm_helpers import one_thread

pytestmark = pytest.mark.usefixtures("one_thread")
__all__ = ["one_thread"]


def _net() -> LatentDenoiser:
    torch.manual_seed(0)
    net = LatentDenoiser(3, hidden=16, blocks=1, time_dim=8)
    last = net.out[-1]
    assert isinstance(last, torch.nn.Linear)
    torch.nn.init.normal_(last.weight, std=0.1)  # not the zero init: outputs depend on input
    return net


def test_denoiser_and_embedding_shapes() -> None:
    emb = SinusoidalEmbedding(8)(torch.tensor([0, 5, 99]))
    assert emb.shape == (3, 8)
    assert torch.allclose(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert _net()(torch.randn(4, 3), torch.tensor([0, 1, 2, 3])).shape == (4, 3)
    with pytest.raises(ConfigError):
        SinusoidalEmbedding(7)


@pytest.mark.parametrize("kind", ["ddpm", "ddim"])
def test_same_seed_same_samples(kind: str) -> None:
    s = NoiseSchedule("cosine", 20)
    sampler = make_sampler(kind, s, ddim_steps=5, eta=0.5)
    net = _net()
    a = sampler.sample(net, (6, 3), generator=torch.Generator().manual_seed(3))
    b = sampler.sample(net, (6, 3), generator=torch.Generator().manual_seed(3))
    c = sampler.sample(net, (6, 3), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_ddim_eta0_is_deterministic_given_xT() -> None:
    s = NoiseSchedule("linear", 50)
    sampler = DDIMSampler(s, steps=10, eta=0.0)
    net = _net()
    x_t = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    a = sampler.sample(net, (5, 3), generator=torch.Generator().manual_seed(7), x_t=x_t)
    b = sampler.sample(net, (5, 3), generator=torch.Generator().manual_seed(8), x_t=x_t)
    assert torch.equal(a, b)
    assert sampler.timesteps()[0] == 49 and sampler.timesteps()[-1] == 0
    with pytest.raises(ConfigError):
        DDIMSampler(s, steps=51)
    with pytest.raises(ConfigError):
        make_sampler("euler", s)


def test_samplers_recover_a_known_gaussian() -> None:
    """With the exact noise predictor of data N(m, v), both samplers reproduce N(m, v).

    (Few-step DDIM shrinks the variance by its discretisation error, so the check uses fine
    grids: T = 1000 for DDPM, 500 steps for DDIM.)
    """
    s = NoiseSchedule("cosine", 1000)
    m, v = 1.5, 0.25

    def eps_exact(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = s.alpha_bars[t].to(x.dtype)[:, None]
        # x_t ~ N(sqrt(ab) m, ab v + 1 - ab); E[eps | x_t] = sqrt(1-ab) (x_t - sqrt(ab) m) / var_t
        var_t = ab * v + 1 - ab
        return (1 - ab).sqrt() * (x - ab.sqrt() * m) / var_t

    g = torch.Generator().manual_seed(0)
    for sampler in (DDPMSampler(s), DDIMSampler(s, steps=500, eta=0.0)):
        x = sampler.sample(eps_exact, (8_000, 1), generator=g)
        assert float(x.mean()) == pytest.approx(m, abs=0.02)
        assert float(x.var()) == pytest.approx(v, rel=0.05)
