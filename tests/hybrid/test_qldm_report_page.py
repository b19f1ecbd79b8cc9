"""The demo/evaluate report page: settings apart from results, directions, reference values,
failure modes counted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qldm.hybrid.qldm.report_page import RESULTS, sample_failures, write_report


def test_sample_failures_count_images_outside_the_real_bright_pixel_range() -> None:
    real = torch.zeros(4, 1, 10, 10)
    for i, rows in enumerate((1, 2, 3, 2)):  # 10, 20, 30, 20 % bright pixels
        real[i, 0, :rows] = 0.9
    fake = torch.zeros(6, 1, 10, 10)
    for i, rows in enumerate((0, 1, 3, 4, 9, 10)):  # 0, 10, 30, 40, 90, 100 %
        fake[i, 0, :rows] = 1.0
    fake[0, 0, 0] = 0.5  # exactly at the brightness cut: not bright
    out = sample_failures(fake, real)
    assert (out["saturated"], out["blank"], out["of"]) == (3, 1, 6)  # 30 % = real max
    share = out["bright_share"]
    assert share["real_min"] == pytest.approx(0.1) and share["real_max"] == pytest.approx(0.3)
    assert share["real_median"] == pytest.approx(0.2)  # torch: the lower middle value
    assert share["samples_median"] == pytest.approx(0.3)


def test_report_separates_settings_from_results_with_directions_and_references(
    tmp_path: Path,
) -> None:
    metrics = {
        "variant": "bit_flip",
        "n_qubits": 6,
        "steps": 40,
        "batch_size": 64,
        "train_seconds": 12.5,
        "n_samples": 100,
        "n_real": 100,
        "classifier_frechet_distance": 480.0,
        "classifier_kid_mean": 0.31,
        "ssim_reconstruction": 0.21,
        "final_loss": 3.5,
        "reference": {
            "real_vs_real": {
                "classifier_frechet_distance": 11.0,
                "classifier_kid_mean": 0.001,
                "ssim_reconstruction": 1.0,
            },
            "autoencoder": {"classifier_frechet_distance": 250.0, "classifier_kid_mean": 0.2},
            "sizes": {"real_half": 50, "recon": 100},
        },
        "failure_modes": {
            "samples": {
                "saturated": 12,
                "blank": 3,
                "of": 64,
                "bright_share": {
                    "real_min": 0.05,
                    "real_median": 0.2,
                    "real_max": 0.4,
                    "samples_median": 0.3,
                },
            }
        },
    }
    page = write_report(tmp_path, title="demo <1>", metrics=metrics, images=[]).read_text()
    results = page.split("<h2>Results</h2>")[1].split("<h2>")[0]
    settings = page.split("<h2>Settings</h2>")[1].split("<h2>")[0]
    assert "demo &lt;1&gt;" in page
    for r in RESULTS:
        assert r.label in results and f"{r.better} is better" in results
    assert "<td>480</td>" in results and "<td>11</td>" in results and "<td>250</td>" in results
    assert "batch_size" in settings and "batch_size" not in results
    assert "classifier_frechet_distance" not in settings
    failures = page.split("<h2>Failure modes</h2>")[1].split("<h2>")[0]
    assert "12 of 64" in failures and "3 of 64" in failures and "5.0% to 40.0%" in failures
    assert "<td>12.5</td>" in page.split("<h2>Timings</h2>")[1]
