"""Training through a real qldm server gives the in-process losses.

The server is the real thing: ``qldm serve`` (uvicorn, SQLite, the local executor) in a
subprocess on a loopback port, started by :class:`qldm.service.embedded.EmbeddedServer`. Every PQC
forward of the remote run is one job (task ``jacobian``) on that server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qldm.hybrid.train import Trainer
from tests.hybrid._qldm_helpers import digits, one_thread, tiny_config

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
__all__ = ["one_thread"]


def test_remote_training_matches_in_process(tmp_path: Path) -> None:
    from qldm.client import ServiceClient
    from qldm.service.embedded import EmbeddedServer

    cfg = tiny_config(**{"train.steps": 3})
    local = Trainer(cfg, images=digits(), out_dir=tmp_path / "local", progress=False)
    local_result = local.run()
    with EmbeddedServer(tmp_path / "server", workers=1) as server:
        remote = Trainer(
            cfg, images=digits(), url=server.url, out_dir=tmp_path / "remote", progress=False
        )
        assert remote.model.bottleneck.pqc.url == server.url
        remote_result = remote.run()
        with ServiceClient(server.url) as client:
            jobs = client.list_jobs(run_id=remote.run_id)
    # one job per training step (forward values and Jacobians together)
    assert jobs["count"] == 3
    for a, b in zip(local_result.history, remote_result.history, strict=True):
        for key in ("loss", "score", "recon", "kl"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-6), key
    # In-process the PQC's gradient is float32 autograd, remotely float64 Jacobians; since the
    # score loss reaches the PQC (train.score_grad), one PQC weight ends 1.5e-5 apart after three
    # Adam steps (measured), whose normalised steps magnify rounding in small gradients.
    for name, value in local.model.state_dict().items():
        torch.testing.assert_close(remote.model.state_dict()[name], value, rtol=1e-4, atol=5e-5)
