"""Report figures and pages: grid layout, the results table, a self-contained index.html."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from qldm.hybrid import report


def test_image_grid_layout() -> None:
    images = torch.stack([torch.full((1, 3, 2), float(k) / 5) for k in range(5)])
    grid = report.image_grid(images, nrow=3, pad=1)
    # 2 rows of 3 tiles: height 2 * (3 + 1) + 1, width 3 * (2 + 1) + 1
    assert grid.shape == (9, 10)
    assert grid[1, 1] == 0.0 and abs(grid[1, 4] - 0.2) < 1e-7 and abs(grid[5, 4] - 0.8) < 1e-7
    assert grid[5, 7] == 1.0  # the empty sixth tile stays white padding
    rgb = report.image_grid(torch.rand(4, 3, 5, 5), nrow=2)
    assert rgb.shape == (16, 16, 3)


def test_results_table_and_index(tmp_path: Path) -> None:
    rows = []
    for variant, fd in (("noiseless", 120.5), ("bit_flip", 99.25)):
        path = tmp_path / f"{variant}.json"
        report.write_json(
            {
                "variant": variant,
                "classifier_frechet_distance": fd,
                "ssim_reconstruction": 0.61234,
                "steps": 10,
            },
            path,
        )
        rows.append(path)
    table = report.results_table(rows).splitlines()
    assert len(table) == 4 and table[0].startswith("| variant |")
    assert "| bit_flip | 0.612 | 99.2 |" in table[3]
    assert "—" in table[2]  # missing keys are shown as a dash, never invented

    report.save_grid(torch.rand(4, 1, 8, 8), tmp_path / "samples.png")
    page = report.write_index(
        tmp_path,
        title="t <x>",
        metrics={"a": 1.23456, "b": {"c": 1}},
        images=[("samples.png", "some samples")],
    )
    text = page.read_text()
    assert 'src="samples.png"' in text and "t &lt;x&gt;" in text and "1.235" in text
    assert str(tmp_path) not in text  # relative paths only
    assert json.loads((tmp_path / "noiseless.json").read_text())["steps"] == 10
