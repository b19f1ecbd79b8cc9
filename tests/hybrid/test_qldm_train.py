"""Training: bitwise reproducibility, checkpoint contents, resume, and the CLI functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qldm.hybrid.config import ConfigError
from qldm.hybrid.train import Trainer, load_model, read_checkpoint
from tests.hybrid._qldm_helpers import digits, one_thread, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")
__all__ = ["one_thread"]


def _states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_run_bitwise(tmp_path: Path) -> None:
    cfg = tiny_config(**{"train.steps": 8})
    runs = []
    for name in ("a", "b"):
        trainer = Trainer(cfg, images=digits(), out_dir=tmp_path / name, progress=False)
        result = trainer.run()
        runs.append((result.history, trainer.model.state_dict()))
    (h1, s1), (h2, s2) = runs
    assert [(r["loss"], r["score"], r["recon"]) for r in h1] == [
        (r["loss"], r["score"], r["recon"]) for r in h2
    ]
    assert _states_equal(s1, s2)
    other = Trainer(
        tiny_config(seed=1, **{"train.steps": 8}),
        images=digits(),
        out_dir=tmp_path / "c",
        progress=False,
    ).run()
    assert [r["loss"] for r in other.history] != [r["loss"] for r in h1]


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    full_cfg = tiny_config(**{"train.steps": 12, "train.checkpoint_every": 4})
    full = Trainer(full_cfg, images=digits(), out_dir=tmp_path / "full", progress=False)
    full_result = full.run()

    # "Interrupted" after 5 steps (a checkpoint at step 4 and the final one at step 5) ...
    part = Trainer(
        tiny_config(**{"train.steps": 5, "train.checkpoint_every": 4}),
        images=digits(),
        out_dir=tmp_path / "part",
        progress=False,
    )
    part.run()
    ckpt = read_checkpoint(tmp_path / "part" / "last.pt")
    assert ckpt["step"] == 5 and len(ckpt["history"]) == 5
    assert {"model", "optimizer", "rng", "config", "elapsed", "image_shape"} <= set(ckpt)
    assert {"torch", "python", "numpy"} <= set(ckpt["rng"])

    # ... then a fresh process-like Trainer resumes to 12.
    resumed = Trainer(full_cfg, images=digits(), out_dir=tmp_path / "part", progress=False)
    result = resumed.run()
    assert result.resumed_from == 5 and result.steps == 12
    assert [r["loss"] for r in result.history] == [r["loss"] for r in full_result.history]
    assert _states_equal(resumed.model.state_dict(), full.model.state_dict())
    opt_a, opt_b = resumed.optimizer.state_dict(), full.optimizer.state_dict()
    for k in opt_a["state"]:
        assert _states_equal(opt_a["state"][k], opt_b["state"][k])


def test_resume_refuses_a_different_model(tmp_path: Path) -> None:
    Trainer(
        tiny_config(**{"train.steps": 2}), images=digits(), out_dir=tmp_path, progress=False
    ).run()
    other = Trainer(
        tiny_config(variant="phase_flip", **{"train.steps": 4}),
        images=digits(),
        out_dir=tmp_path,
        progress=False,
    )
    with pytest.raises(ConfigError) as info:
        other.run()
    assert info.value.field == "variant"


def test_time_limit_stops_and_checkpoints(tmp_path: Path) -> None:
    trainer = Trainer(
        tiny_config(**{"train.steps": 10_000}), images=digits(), out_dir=tmp_path, progress=False
    )
    result = trainer.run(max_seconds=0.5)
    assert 1 <= result.steps < 10_000
    assert read_checkpoint(tmp_path / "last.pt")["step"] == result.steps


def test_cli_train_sample_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qldm.hybrid import cli
    from qldm.paths import default_data_dir

    cfg_path = tmp_path / "tiny.json"
    cfg = tiny_config(out_dir=str(tmp_path / "run"), **{"train.steps": 6})
    cfg_path.write_text(json.dumps(cfg.model_dump(mode="json")))
    cli.train(cfg_path, url=None, api_key=None, data_dir=default_data_dir())
    ckpt = tmp_path / "run" / "last.pt"
    assert ckpt.is_file() and "6 steps" in capsys.readouterr().out

    cli.sample(ckpt, n=9, out=tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    model, _ = load_model(ckpt)
    assert not model.training

    cli.evaluate(ckpt, out=tmp_path / "eval", data_dir=default_data_dir())
    out = tmp_path / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "ssim_reconstruction",
        "classifier_frechet_distance",
        "classifier_kid_mean",
        "train_seconds",
        "steps",
    ):
        assert key in metrics, key
    assert metrics["steps"] == 6 and metrics["variant"] == "bit_flip"
    assert not any(k.lower() == "fid" or k.lower().startswith("fid_") for k in metrics)
    for name in ("samples.png", "reconstructions.png", "loss.png"):
        assert (out / name).stat().st_size > 100
        assert f'src="{name}"' in (out / "index.html").read_text()
