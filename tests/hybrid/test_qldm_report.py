"""Report figures: the image grid's layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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


def test_json_and_grid_files(tmp_path: Path) -> None:
    path = tmp_path / "noiseless.json"
    report.write_json({"variant": "noiseless", "steps": 10, "fd": np.float64(99.25)}, path)
    assert json.loads(path.read_text()) == {"variant": "noiseless", "steps": 10, "fd": 99.25}
    png = report.save_grid(torch.rand(4, 1, 8, 8), tmp_path / "samples.png")
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
