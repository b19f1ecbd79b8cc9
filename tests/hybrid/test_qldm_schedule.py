"""Noise schedules against their closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from qldm.hybrid.config import ConfigError
from qldm.hybrid.qldm.schedule import NoiseSchedule, schedule_names


def test_registered_names() -> None:
    assert {"cosine", "linear"} <= set(schedule_names())


def test_unknown_schedule_fails_loudly() -> None:
    with pytest.raises(ConfigError) as info:
        NoiseSchedule("quadratic-ish", 10)
    assert info.value.field == "diffusion.schedule"
    assert "cosine" in str(info.value)


def test_linear_alpha_bar_is_product_of_one_minus_beta() -> None:
    T = 50
    s = NoiseSchedule("linear", T)
    betas = [1e-4 * 1000 / T + k * (0.02 * 1000 / T - 1e-4 * 1000 / T) / (T - 1) for k in range(T)]
    prod = 1.0
    for t in range(T):
        prod *= 1 - betas[t]
        assert float(s.betas[t]) == pytest.approx(betas[t], rel=1e-12)
        assert float(s.alpha_bars[t]) == pytest.approx(prod, rel=1e-12)
    assert float(s.alpha_bars_prev[0]) == 1.0
    assert float(s.alpha_bars_prev[7]) == pytest.approx(float(s.alpha_bars[6]), rel=1e-15)


def test_cosine_matches_nichol_dhariwal() -> None:
    T, off = 100, 0.008

    def f(t: float) -> float:
        return math.cos((t / T + off) / (1 + off) * math.pi / 2) ** 2

    s = NoiseSchedule("cosine", T)
    for t in (0, 1, 10, 50, 90, 98):  # beta is clipped at 0.999 only at the very end
        assert float(s.alpha_bars[t]) == pytest.approx(f(t + 1) / f(0), rel=1e-9)
        assert float(s.betas[t]) == pytest.approx(1 - f(t + 1) / f(t), rel=1e-9)
    assert float(s.betas.max()) <= 0.999
    assert float(s.alpha_bars[-1]) < 1e-3


def test_schedule_tensors_are_buffers() -> None:
    s = NoiseSchedule("cosine", 10)
    names = {n for n, _ in s.named_buffers()}
    assert {"betas", "alphas", "alpha_bars", "alpha_bars_prev"} <= names
    assert "betas" in s.state_dict()


def test_add_noise_moments() -> None:
    s = NoiseSchedule("linear", 100)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.full((n, 1), 2.0, dtype=torch.float64)
    t = torch.full((n,), 40, dtype=torch.long)
    noise = torch.randn(n, 1, generator=g, dtype=torch.float64)
    xt = s.add_noise(x0, t, noise)
    ab = float(s.alpha_bars[40])
    assert float(xt.mean()) == pytest.approx(2.0 * math.sqrt(ab), abs=4e-3)
    assert float(xt.var()) == pytest.approx(1 - ab, rel=1e-2)
    # predict_x0 inverts add_noise given the true noise
    assert torch.allclose(s.predict_x0(xt, t, noise), x0, atol=1e-10)


def test_posterior_matches_ho_et_al() -> None:
    s = NoiseSchedule("cosine", 30)
    t = torch.tensor([5, 0])
    x0 = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    xt = torch.tensor([[0.5], [0.5]], dtype=torch.float64)
    mean, var = s.posterior(x0, xt, t)
    b, a = float(s.betas[5]), float(s.alphas[5])
    ab, abp = float(s.alpha_bars[5]), float(s.alpha_bars[4])
    expected = b * math.sqrt(abp) / (1 - ab) * 1.0 + (1 - abp) * math.sqrt(a) / (1 - ab) * 0.5
    assert float(mean[0]) == pytest.approx(expected, rel=1e-12)
    assert float(var[0]) == pytest.approx(b * (1 - abp) / (1 - ab), rel=1e-12)
    assert float(var[1]) == 0.0 and float(mean[1]) == pytest.approx(1.0, rel=1e-12)


def test_add_noise_validates_timesteps() -> None:
    s = NoiseSchedule("linear", 10)
    x = torch.zeros(3, 2)
    with pytest.raises(ConfigError):
        s.add_noise(x, torch.tensor([0, 1, 10]), torch.zeros(3, 2))
    with pytest.raises(ConfigError):
        s.add_noise(x, torch.tensor([0, 1]), torch.zeros(3, 2))
