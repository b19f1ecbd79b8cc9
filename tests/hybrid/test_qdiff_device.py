"""Seed 004 on a fake IBM device through a real qldm server (issue 13, item 3).

The server is ``qldm serve`` on loopback (:class:`qldm.service.embedded.EmbeddedServer`); the
model's ``QuantumLayer`` has ``url=`` it, so every evaluation is one job. A training step is
one ``jacobian`` job carrying both noise levels of the step (one runtime submission, antithetic
parameter-shift subset), a reverse step one ``expectation`` job; M3 readout mitigation is on.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.hybrid._qldm_helpers import one_thread

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
__all__ = ["one_thread"]


def test_depolarizing_diffusion_trains_and_samples_on_a_fake_device(tmp_path: Path) -> None:
    from qldm.hybrid.experiments.quantum_diffusion import DEVICE_CONFIG
    from qldm.hybrid.qdiff.config import parse_qdiff_config
    from qldm.hybrid.qdiff.data import load_amplitude_digits
    from qldm.hybrid.qdiff.device import device_run
    from qldm.service.embedded import EmbeddedServer

    cfg = parse_qdiff_config(DEVICE_CONFIG).with_overrides(
        **{"train.steps": 1, "model.timesteps": 2, "eval.n_samples": 2}
    )
    data = load_amplitude_digits(side=4, subset=16)
    with EmbeddedServer(tmp_path / "server", workers=1) as server:
        res = device_run(cfg, url=server.url, data=data, progress=lambda _: None)
    rows = res["rows"]
    # one job per training step and per reverse step, each one runtime submission
    assert [r["phase"] for r in rows] == ["train step 1", "sample step 1", "sample step 2"]
    assert [r["task"] for r in rows] == ["jacobian", "expectation", "expectation"]
    for r in rows:
        assert r["submissions"] == 1
        assert r["circuits"] > 0 and r["shots"] == 256
        assert r["readout_mitigation"] == "m3"
        assert r["metadata"]["backend"] == "fake:fake_manila"
    assert rows[0]["metadata"]["gradient"]["method"] == "subset"
    assert rows[0]["metadata"]["gradient"]["budget"] == 2
    assert rows[0]["floor_subtracted"] is True and rows[0]["floor_max"] > 0
    # both noise levels of the training step travelled in the one job
    assert rows[0]["circuits"] > rows[1]["circuits"]
    assert len(res["train_losses"]) == 1 and 0.0 <= res["train_losses"][0] <= 1.0
    assert res["images"].shape == (2, 1, 4, 4)
    assert torch.isfinite(res["images"]).all()
