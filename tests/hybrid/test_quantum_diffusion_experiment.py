"""``qldm experiments quantum-diffusion`` at its tiny size: the report's structure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hybrid._qldm_helpers import one_thread

pytestmark = pytest.mark.usefixtures("one_thread")
__all__ = ["one_thread"]


def test_tiny_report_structure(tmp_path: Path) -> None:
    from qldm.hybrid.experiments.quantum_diffusion import (
        BEGIN,
        END,
        GROUPS,
        run,
        update_results_doc,
    )
    from qldm.paths import default_data_dir

    out = tmp_path / "report"
    results = run(
        out, quick=False, seeds=2, data_dir=default_data_dir(), size="tiny", progress=lambda _: None
    )
    saved = json.loads((out / "results.json").read_text())
    assert saved["version"] == "tiny" and saved["seeds"] == 2
    keys = {k for group in GROUPS.values() for k in group}
    assert set(saved["summary"]) == keys
    for entry in saved["summary"].values():
        assert len(entry["per_seed"]["classifier_frechet_distance"]) == 2
        assert len(entry["loss_curve"]) == 2
    # the controls have their quantum model's parameter count (U-Net: whole model)
    s = saved["summary"]
    q, c = s["unet_binary_adam"]["parameters"]["total"], s["unet_binary_classical"]["parameters"]
    assert abs(c["total"] - q) <= 0.05 * q and c["quantum"] == 0
    assert "unet_binary: qngd - adam" in saved["differences"]
    assert {c["seed"] for c in saved["claims"]} == {"001", "003", "004"}
    html = (out / "index.html").read_text()
    assert "classifier Fréchet distance" in html and "not Inception FID" in html
    for key in keys:
        assert (out / f"samples_{key}.png").is_file()
    for group in GROUPS:
        assert (out / f"loss_{group}.png").is_file()
    assert saved["device"] is None  # no server given
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nbefore\n")
    update_results_doc(doc, {**results, "command": "x"})
    update_results_doc(doc, {**results, "command": "x"})  # replaces, does not append twice
    text = doc.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and "before" in text
    assert "unet_digits10_qngd" in text
