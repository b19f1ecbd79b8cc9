"""The distribution installs one import package, ``qldm``, and works from a wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # setuptools builds in the source folder: keep the checkout clean
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in tracked:
        if (ROOT / name).exists() and not name.startswith("tests/"):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (found,) = out.glob("qldm-*.whl")
    return found


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"qldm"}
    for module in (
        "qldm/__init__.py",
        "qldm/__main__.py",
        "qldm/errors.py",
        "qldm/cli.py",
        "qldm/circuits/spec.py",
        "qldm/mitigation/m3.py",
        "qldm/backends/exact.py",
        "qldm/jobs/store.py",
        "qldm/jobs/migrations/env.py",
        "qldm/jobs/migrations/script.py.mako",
        "qldm/jobs/migrations/versions/0001_initial.py",
        "qldm/jobs/migrations/versions/0003_run_losses.py",
        "qldm/service/app.py",
        "qldm/service/ui.py",
        "qldm/service/static/index.html",
        "qldm/service/static/ui.js",
        "qldm/service/static/ui.css",
        "qldm/client/quantum_layer.py",
        "qldm/hybrid/qldm/model.py",
        "qldm/bench/engines.py",
    ):
        assert module in names, module
    assert not [n for n in names if n.startswith("qldm/tests") or "__pycache__" in n]
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    assert "qldm = qldm.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_unpacked_wheel_imports_from_another_folder(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    script = (
        "import qldm\n"
        "from qldm import QuantumLayer, PQCSpec, ServiceClient, RemoteEstimatorV2, QldmError\n"
        "from qldm.backends.exact import ExactBackend\n"
        f"assert qldm.__file__.startswith({str(site)!r}), qldm.__file__\n"
        "import qldm.circuits.spec as s\n"
        f"assert s.__file__.startswith({str(site)!r}), s.__file__\n"
        "try:\n"
        "    import circuits\n"
        "except ModuleNotFoundError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('circuits is importable')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=elsewhere, env=env)
    help_text = subprocess.run(
        [sys.executable, "-m", "qldm", "--help"],
        check=True,
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert "serve" in help_text and "demo" in help_text
