"""What every experiment shares: seed statistics, paired bootstrap intervals, plots, the report.

The report of one experiment is a folder: ``results.json`` (everything measured, machine
readable), ``index.html`` (sections, tables and figures by relative path) and PNG figures.

Statistics: each variant is trained on the same seeds (same data order and initialisation
seed per seed index), so "variant minus control" is paired by seed, and its confidence interval
is a paired bootstrap over seeds (resampling seed indices with replacement). With 5 seeds a
percentile bootstrap is coarse; the interval is reported as it is, with the number of seeds.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qldm.hybrid.config import ConfigError
from qldm.hybrid.report import jsonable, pyplot, save_figure

__all__ = [
    "Diff",
    "ExperimentReport",
    "Stopwatch",
    "bar_plot",
    "fmt_mean_std",
    "line_plot",
    "mean_std",
    "paired_bootstrap_ci",
]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; 0.0 for a single value).

    Raises:
        ConfigError: ``values`` is empty.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ConfigError("mean_std: no values")
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return float(x.mean()), std


def fmt_mean_std(values: Sequence[float], *, digits: int = 3) -> str:
    """``"m ± s"`` with ``digits`` significant digits (``"m"`` alone for one value)."""
    m, s = mean_std(values)
    if len(values) == 1:
        return f"{m:.{digits}g}"
    return f"{m:.{digits}g} ± {s:.2g}"


@dataclass(frozen=True)
class Diff:
    """A paired difference ``a - b`` over seeds: its mean and bootstrap interval.

    Attributes:
        mean: mean over seeds of ``a[i] - b[i]``.
        low: lower end of the interval.
        high: upper end.
        level: the interval's coverage (e.g. 0.95).
        n: number of seeds (pairs).
    """

    mean: float
    low: float
    high: float
    level: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely on one side of zero."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict[str, Any]:
        """The fields plus ``excludes_zero``, for ``results.json``."""
        return {**asdict(self), "excludes_zero": self.excludes_zero}

    def __str__(self) -> str:
        pct = round(100 * self.level)
        return f"{self.mean:+.3g} [{self.low:+.3g}, {self.high:+.3g}] ({pct}% CI, n={self.n})"


def paired_bootstrap_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_boot: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> Diff:
    """Percentile bootstrap interval of ``mean(a - b)``, pairs resampled together.

    Args:
        a: ``(n,)`` a metric of one variant, one value per seed.
        b: ``(n,)`` the same metric of the control, same seed order.
        n_boot: bootstrap resamples.
        level: coverage in (0, 1).
        seed: seeds the resampling (the interval is reproducible).

    Returns:
        The :class:`Diff`; with one pair the interval is the point itself.

    Raises:
        ConfigError: different lengths, no pairs, or ``level`` outside (0, 1).
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"paired_bootstrap_ci: a {x.shape} and b {y.shape} must be equal 1-D")
    if x.size == 0:
        raise ConfigError("paired_bootstrap_ci: no pairs")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"paired_bootstrap_ci: level must lie in (0, 1), got {level}")
    d = x - y
    if d.size == 1:
        v = float(d[0])
        return Diff(v, v, v, level, 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))
    means = d[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Diff(float(d.mean()), float(low), float(high), level, int(d.size))


class Stopwatch:
    """Wall-clock seconds since construction (``elapsed``) and a progress line printer."""

    def __init__(self, progress: Callable[[str], None] = print) -> None:
        self._start = time.perf_counter()
        self._progress = progress

    @property
    def elapsed(self) -> float:
        """Seconds since construction."""
        return time.perf_counter() - self._start

    def say(self, message: str) -> None:
        """Print ``[mm:ss] message`` through the progress callback."""
        s = int(self.elapsed)
        self._progress(f"[{s // 60:02d}:{s % 60:02d}] {message}")


def line_plot(
    path: str | Path,
    x: Sequence[float],
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logx: bool = False,
    logy: bool = False,
) -> Path:
    """One line per series, mean over seeds with a ± std band.

    Args:
        path: the PNG to write.
        x: ``(X,)`` abscissae.
        series: name -> ``(X, seeds)`` values (each inner sequence: one x, all seeds).
        xlabel: x-axis label.
        ylabel: y-axis label.
        title: figure title.
        logx: log-scale x axis.
        logy: log-scale y axis.

    Returns:
        The path written.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    xs = np.asarray(x, dtype=np.float64)
    for name, values in series.items():
        stats = [mean_std(v) for v in values]
        m = np.array([s[0] for s in stats])
        s = np.array([s[1] for s in stats])
        ax.plot(xs, m, marker="o", label=name)
        ax.fill_between(xs, m - s, m + s, alpha=0.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def bar_plot(
    path: str | Path,
    categories: Sequence[str],
    series: Mapping[str, Sequence[Sequence[float]]],
    *,
    ylabel: str,
    title: str,
) -> Path:
    """Grouped bars: one group per category, one bar per series, mean over seeds ± std.

    Each seed's value is drawn as a dot on its bar, so the spread is visible.

    Args:
        path: the PNG to write.
        categories: ``(C,)`` group labels.
        series: name -> ``(C, seeds)`` values.
        ylabel: y-axis label.
        title: figure title.

    Returns:
        The path written.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(categories) * max(1, len(series))), 4.0))
    width = 0.8 / max(1, len(series))
    xs = np.arange(len(categories), dtype=np.float64)
    for k, (name, values) in enumerate(series.items()):
        stats = [mean_std(v) for v in values]
        pos = xs - 0.4 + width * (k + 0.5)
        ax.bar(
            pos,
            [m for m, _ in stats],
            width,
            yerr=[s for _, s in stats],
            capsize=3,
            label=name,
            alpha=0.75,
        )
        for x, v in zip(pos, values, strict=True):
            ax.plot([x] * len(v), list(v), "k.", markersize=3)
    ax.set_xticks(xs)
    ax.set_xticklabels(list(categories), rotation=20, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    if len(series) > 1:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return str(value)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 13px; }
th { background: #f4f4f4; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
img { max-width: 100%; border: 1px solid #ddd; }
figcaption, .note { font-size: 13px; color: #555; }
code { background: #f4f4f4; padding: 0 3px; }
"""


class ExperimentReport:
    """Sections of text, tables and figures, written as ``index.html`` + ``results.json``.

    Figures must lie inside ``out`` (they are linked by relative path, so the folder can be
    moved as a whole). Text is escaped; pass plain text.

    Args:
        out: the report folder (created).
        title: the page title.
        command: the command that produced the report (shown at the top).
    """

    def __init__(self, out: str | Path, *, title: str, command: str) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.command = command
        self._parts: list[str] = []
        self.sections: list[str] = []

    def section(self, title: str, *paragraphs: str) -> None:
        """Start a section with a heading and plain-text paragraphs."""
        self.sections.append(title)
        self._parts.append(f"<h2>{html.escape(title)}</h2>")
        self.text(*paragraphs)

    def text(self, *paragraphs: str) -> None:
        """Plain-text paragraphs in the current section."""
        self._parts.extend(f"<p>{html.escape(p)}</p>" for p in paragraphs)

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        caption: str | None = None,
    ) -> None:
        """A table; floats are shown with 4 significant digits, NaN as a dash.

        Raises:
            ConfigError: a row's length differs from the headers'.
        """
        for row in rows:
            if len(row) != len(headers):
                raise ConfigError(
                    f"table: row {list(row)!r} has {len(row)} cells, not {len(headers)}"
                )
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "\n".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>"
            for row in rows
        )
        cap = f'<p class="note">{html.escape(caption)}</p>' if caption else ""
        self._parts.append(f"<table><tr>{head}</tr>\n{body}</table>{cap}")

    def figure(self, path: str | Path, caption: str) -> None:
        """An image inside the report folder.

        Raises:
            ConfigError: the image is not inside the report folder.
        """
        p = Path(path).resolve()
        try:
            rel = p.relative_to(self.out.resolve())
        except ValueError as exc:
            raise ConfigError(f"figure: {p} is not inside the report folder {self.out}") from exc
        self._parts.append(
            f'<figure><img src="{html.escape(rel.as_posix())}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def write(self, results: Mapping[str, Any]) -> Path:
        """Write ``results.json`` (``results`` plus title, command, sections) and ``index.html``.

        Returns:
            The path of ``index.html``.
        """
        data = {
            "title": self.title,
            "command": self.command,
            "sections": list(self.sections),
            **results,
        }
        (self.out / "results.json").write_text(
            json.dumps(data, indent=2, sort_keys=True, default=jsonable) + "\n", encoding="utf-8"
        )
        page = (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>\n"
            f"<h1>{html.escape(self.title)}</h1>\n"
            f'<p class="note">Command: <code>{html.escape(self.command)}</code>. '
            'Everything measured is in <a href="results.json">results.json</a>.</p>\n'
            + "\n".join(self._parts)
            + "\n</body></html>\n"
        )
        index = self.out / "index.html"
        index.write_text(page, encoding="utf-8")
        return index
