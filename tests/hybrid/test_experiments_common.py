"""The experiments' shared statistics and report (qldm.hybrid.experiments.common)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from qldm.cli import app
from qldm.hybrid.config import ConfigError
from qldm.hybrid.experiments import run_experiment
from qldm.hybrid.experiments.common import (
    ExperimentReport,
    line_plot,
    mean_std,
    paired_bootstrap_ci,
)


def test_mean_std_is_sample_std() -> None:
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, np.sqrt(5.0 / 3.0)))
    assert mean_std([7.0]) == (7.0, 0.0)
    with pytest.raises(ConfigError, match="no values"):
        mean_std([])


def test_paired_bootstrap_uses_the_pairing() -> None:
    # a - b is exactly 1 on every seed although both vary a lot between seeds: a paired
    # interval is the point 1; an unpaired comparison would straddle zero.
    b = [0.0, 10.0, -10.0, 5.0, 3.0]
    a = [x + 1.0 for x in b]
    d = paired_bootstrap_ci(a, b)
    assert (d.mean, d.low, d.high, d.n) == pytest.approx((1.0, 1.0, 1.0, 5))
    assert d.excludes_zero


def test_paired_bootstrap_covers_the_true_mean_about_as_often_as_claimed() -> None:
    rng = np.random.default_rng(1)
    hits = 0
    trials = 300
    for t in range(trials):
        d = rng.normal(0.5, 1.0, size=30)
        ci = paired_bootstrap_ci(d, np.zeros(30), n_boot=1000, level=0.9, seed=t)
        hits += ci.low <= 0.5 <= ci.high
    # percentile bootstrap with n=30 slightly under-covers; 0.9 nominal -> 0.84..0.95
    assert 0.82 <= hits / trials <= 0.96


def test_paired_bootstrap_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="must be equal"):
        paired_bootstrap_ci([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match="level"):
        paired_bootstrap_ci([1.0], [1.0], level=1.5)


def test_report_writes_html_json_and_figures(tmp_path: Path) -> None:
    report = ExperimentReport(tmp_path / "r", title="T & t", command="qldm experiments x")
    report.section("Numbers", "a < b")
    report.table(["variant", "value"], [["q", 0.123456], ["c", float("nan")]], caption="c1")
    png = line_plot(
        tmp_path / "r" / "fig.png",
        [1, 2],
        {"q": [[1.0, 2.0], [2.0, 3.0]]},
        xlabel="x",
        ylabel="y",
        title="t",
    )
    report.figure(png, "the figure")
    with pytest.raises(ConfigError, match="not inside"):
        report.figure(tmp_path / "elsewhere.png", "x")
    with pytest.raises(ConfigError, match="cells"):
        report.table(["a", "b"], [[1]])
    index = report.write({"value": np.float64(0.5), "d": paired_bootstrap_ci([1.0], [0.0])})
    page = index.read_text()
    assert "T &amp; t" in page and "a &lt; b" in page and 'src="fig.png"' in page
    assert "0.1235" in page and "—" in page
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["value"] == 0.5 and data["sections"] == ["Numbers"]
    assert data["d"]["excludes_zero"] is True
    assert png.stat().st_size > 1000


def test_unknown_experiment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown name 'nope'"):
        run_experiment("nope", tmp_path, data_dir=tmp_path)
    result = CliRunner().invoke(app, ["experiments", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown name 'nope'" in result.output
