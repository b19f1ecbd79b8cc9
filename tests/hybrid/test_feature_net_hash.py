"""The digit classifier is trained once with a fixed seed and its weights are checked by hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from qldm.hybrid.metrics import MetricError, _feature_net, get_feature_net, weights_sha256


def _independent_hash(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(bytes(t.numpy().data))
    return h.hexdigest()


def test_hash_is_stored_checked_and_reproducible(tmp_path: Path) -> None:
    net = get_feature_net(cache_dir=tmp_path / "a", epochs=1, seed=3)
    assert len(net.weights_sha256) == 64
    assert net.weights_sha256 == _independent_hash(net.state_dict()) == weights_sha256(net)
    # the same seed trains the same weights again (another cache, no memo)
    again = get_feature_net(cache_dir=tmp_path / "b", epochs=1, seed=3)
    assert again is not net and again.weights_sha256 == net.weights_sha256
    # an expected hash is enforced
    assert (
        get_feature_net(
            cache_dir=tmp_path / "a", epochs=1, seed=3, expected_sha256=net.weights_sha256
        )
        is net
    )
    with pytest.raises(MetricError) as info:
        get_feature_net(cache_dir=tmp_path / "a", epochs=1, seed=3, expected_sha256="0" * 64)
    assert info.value.field == "expected_sha256"
    # a cached file whose weights changed after saving is refused
    (path,) = (tmp_path / "a").glob("*.pt")
    saved = torch.load(path, weights_only=True)
    saved["state_dict"]["fc2.bias"] = saved["state_dict"]["fc2.bias"] + 1e-3
    torch.save(saved, path)
    _feature_net._MEMO.pop(path, None)
    with pytest.raises(MetricError) as info:
        get_feature_net(cache_dir=tmp_path / "a", epochs=1, seed=3)
    assert info.value.field == "cache_dir"
