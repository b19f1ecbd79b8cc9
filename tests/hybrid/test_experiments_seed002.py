"""``qldm experiments seed002``: a tiny run writes the whole report, and the docs part is
rendered from results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qldm.hybrid.experiments import seed002
from qldm.hybrid.experiments._seed002_report import BEGIN, END, METRICS, update_docs
from qldm.hybrid.metrics import default_cache_dir

TINY = seed002.Settings(
    label="tiny",
    seeds=2,
    n_train=4,
    n_test=20,
    batch_size=2,
    epochs=2,
    timesteps=20,
    ddim_steps=1,
    n_samples=10,
    grid=2,
    kid_subset=5,
    score_splits=2,
)


@pytest.mark.timeout(300)
def test_tiny_run_writes_the_whole_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    lines: list[str] = []
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # the metrics' classifier from the shared cache (trained there on first use)
    (data_dir / "feature_net").symlink_to(default_cache_dir(), target_is_directory=True)
    default_cache_dir().mkdir(parents=True, exist_ok=True)
    data = seed002.run_with(out, TINY, data_dir=data_dir, progress=lines.append)
    assert list(data["results"]) == [v.name for v in seed002.VARIANTS]
    assert (out / "index.html").is_file() and (out / "loss.png").is_file()
    saved = json.loads((out / "results.json").read_text())
    assert saved["experiment"] == "seed002" and saved["settings"]["seeds"] == 2
    names = [v.name for v in seed002.VARIANTS]
    assert set(saved["summary"]) == set(names) and saved["order"] == names
    for name in names:
        s = saved["summary"][name]
        for key in METRICS:
            assert len(s["metrics"][key]["values"]) == 2
        assert s["circuits_per_step"] == s["circuits_per_image"] * TINY.batch_size
        if name != "classical":
            assert set(s["vs_classical"]) == set(METRICS)
    assert saved["summary"]["classical"]["circuits_per_step"] == 0
    assert saved["summary"]["fullhqconv"]["quantum_calls_per_step"] == 8
    # the paper's per-group layout reproduces its FullHQConv count
    assert saved["summary"]["fullhqconv"]["paper_layout_parameters"] == 429_993
    # transfer runs one epoch after the classical run's first: 2 steps, offset 1
    row = saved["results"]["transfer"]["seeds"][0]
    assert row["epoch_offset"] == 1 and row["steps"] == 2
    # grids after the first, a middle and the last epoch (seed 0)
    assert set(saved["results"]["classical"]["seeds"][0]["grids"]) == {"1", "2"}
    assert set(saved["results"]["transfer"]["seeds"][0]["grids"]) == {"2"}
    for entry in saved["results"].values():
        for rel in entry["seeds"][0]["grids"].values():
            assert (out / rel).is_file()
    docs = tmp_path / "results.md"
    docs.write_text("# Other results\n")
    update_docs(out, docs)
    update_docs(out, docs)  # replaces its own part, does not append twice
    text = docs.read_text()
    assert text.startswith("# Other results") and text.count(BEGIN) == 1 == text.count(END)
    assert "classifier Fréchet distance" in text and "FullHQConv" in text
