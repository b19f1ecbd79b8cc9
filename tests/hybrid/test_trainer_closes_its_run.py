"""A trainer closes its server run when training ends and when it is interrupted, so the
run's runtime Session closes then and not at IBM's timeout; a later ``run()`` opens a new run,
and the run keeps the execution mode the trainer asked for. Against a real ``qldm serve``
(:class:`qldm.service.embedded.EmbeddedServer`) on the exact backend."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qldm.client import QuantumLayer, ServiceClient
from qldm.hybrid.train import Trainer
from tests.hybrid._qldm_helpers import digits, one_thread, tiny_config

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
__all__ = ["one_thread"]


class _Stop(Exception):
    """Stands in for Ctrl-C inside a training step."""


def test_the_run_is_closed_at_the_end_and_on_interruption(tmp_path: Path) -> None:
    from qldm.service.embedded import EmbeddedServer

    cfg = tiny_config(**{"train.steps": 2, "train.checkpoint_every": 1})
    with (
        EmbeddedServer(tmp_path / "server", workers=1) as server,
        ServiceClient(server.url) as client,
    ):
        stopped: list[int] = []

        def interrupt(record: dict[str, float]) -> None:
            if not stopped:
                stopped.append(int(record["step"]))
                raise _Stop

        trainer = Trainer(
            cfg,
            images=digits(),
            url=server.url,
            out_dir=tmp_path / "run",
            progress=False,
            on_step=interrupt,
            execution_mode="batch",
        )
        first = trainer.run_id
        assert first is not None
        opened = client.get_run(first)
        assert opened["status"] == "open" and opened["execution_mode"] == "batch"
        with pytest.raises(_Stop):
            trainer.run()
        assert stopped == [1]
        assert client.get_run(first)["status"] == "closed"  # interrupted: closed anyway

        result = trainer.run()  # resumes from the checkpoint in a new run, then closes it
        second = trainer.run_id
        assert second is not None and second != first and result.steps == 2
        run = client.get_run(second)
        assert run["status"] == "closed" and run["execution_mode"] == "batch"
        assert client.list_jobs(run_id=second)["count"] == 1  # step 2 ran in the new run
        assert client.list_jobs(run_id=first)["count"] == 1
        # after training the layers leave the closed run: evaluating the trained model (what
        # `qldm demo` does next) runs as jobs of their own instead of a 409 run_closed
        layers = [m for m in trainer.model.modules() if isinstance(m, QuantumLayer)]
        assert layers and all(m.run_id is None for m in layers)
        before = client.list_jobs()["count"]
        with torch.no_grad():
            out = layers[0](torch.zeros(3, layers[0].spec.n_inputs))
        assert out.shape[-2] == 3
        assert client.list_jobs()["count"] == before + 1
        assert client.list_jobs(run_id=second)["count"] == 1
