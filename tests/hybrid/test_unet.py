"""The U-Net family of seed 002: parameter counts against the paper, shapes, gradient flow,
one QuantumLayer call per stage, the vertex circuit against Qiskit, transfer and resume."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp, Statevector

from qldm.backends.exact import ExactBackend
from qldm.client import QuantumLayer
from qldm.hybrid.config import ConfigError
from qldm.hybrid.unet import (
    PAPER_PARAMETERS,
    ArchConfig,
    QuantumConv,
    UNet,
    UNetTrainer,
    parse_any_config,
    parse_unet_config,
    transfer_weights,
)
from qldm.hybrid.unet.model import paper_variant

torch.set_num_threads(1)

ONE_HQ = {"vertex": "quantum", "vertex_groups": 1}
SEVEN_HQ = {"vertex": "quantum", "vertex_groups": 7}
FULL_HQ = {"vertex": "quantum", "vertex_groups": 13}
FULL_FQ = {"vertex": "quantum", "vertex_groups": 13, "vertex_ansatz": "fqconv"}
QUANV_FQ = {"vertex": "quantum", "vertex_groups": 1, "vertex_ansatz": "fqconv",
            "quanv": True, "quanv_ansatz": "fqconv"}  # fmt: skip


def _unet(**arch: object) -> UNet:
    torch.manual_seed(0)
    return UNet(ArchConfig.model_validate(arch))


# ---------------------------------------------------------------- parameter counts


def test_classical_and_1hqconv_match_the_papers_counts() -> None:
    assert _unet().parameter_count() == PAPER_PARAMETERS["classical"] == 483_321
    assert _unet(**ONE_HQ).parameter_count() == PAPER_PARAMETERS["1HQConv"] == 475_329
    assert paper_variant(ArchConfig()) == "classical"
    assert paper_variant(ArchConfig.model_validate(SEVEN_HQ)) == "7HQConv"
    assert paper_variant(ArchConfig.model_validate(FULL_FQ)) is None


def test_per_group_layout_matches_the_papers_counts() -> None:
    # one circuit per stage shared by the groups; with one weight vector per group (the
    # paper's code) the counts are the paper's
    seven, full = _unet(**SEVEN_HQ), _unet(**FULL_HQ)
    assert seven.paper_layout_parameter_count() == PAPER_PARAMETERS["7HQConv"] == 440_985
    assert full.paper_layout_parameter_count() == PAPER_PARAMETERS["FullHQConv"] == 429_993
    # shared: 4 stages x (G - 1) x 84 fewer
    assert seven.parameter_count() == 440_985 - 4 * 6 * 84
    assert full.parameter_count() == 429_993 - 4 * 12 * 84


# ---------------------------------------------------------------- shapes and gradients


@pytest.mark.parametrize("arch", [{}, ONE_HQ, FULL_FQ, QUANV_FQ])
def test_forward_shape(arch: dict[str, object]) -> None:
    out = _unet(**arch)(torch.randn(2, 1, 28, 28), torch.tensor([3, 700]))
    assert out.shape == (2, 1, 28, 28)
    assert torch.isfinite(out).all()


def test_gradients_reach_every_circuit_weight() -> None:
    model = _unet(**{**FULL_FQ, "quanv": True, "quanv_ansatz": "fqconv"})
    model(torch.randn(2, 1, 28, 28), torch.tensor([5, 900])).pow(2).mean().backward()
    layers = [m for m in model.modules() if isinstance(m, QuantumLayer)]
    assert len(layers) == 4 * 2 + 4  # 4 vertex stages x (fqconv + entangler) + 4 quanv stages
    for layer in layers:
        assert layer.weight.grad is not None
        assert layer.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- one call per stage


@pytest.mark.parametrize(
    ("arch", "calls", "circuits"),
    [(ONE_HQ, 4, 4), (FULL_FQ, 8, 4 * 14), (QUANV_FQ, 8, 4 + 4 * 49)],
)
def test_one_backend_run_per_quantum_stage(
    arch: dict[str, object], calls: int, circuits: int
) -> None:
    model = _unet(**arch)
    assert model.quantum_calls_per_forward() == calls
    assert model.circuits_per_image() == circuits
    b = 3
    with mock.patch.object(ExactBackend, "run", autospec=True, side_effect=ExactBackend.run) as run:
        out = model(torch.randn(b, 1, 28, 28), torch.tensor([1, 2, 3]))
        assert run.call_count == calls  # values and Jacobians in one run per stage
        out.sum().backward()
        assert run.call_count == calls  # backward reuses the Jacobians
        rows = sum(c.args[1].inputs.shape[0] for c in run.call_args_list)
    assert rows == b * circuits


# ---------------------------------------------------------------- the circuit against Qiskit


def _hqconv_qiskit(x: np.ndarray, w: np.ndarray, layers: int) -> QuantumCircuit:
    """The paper's HQConv on 12 qubits, written out gate by gate: per layer, A-blocks
    CRZ then CRX on (p, p+1 mod 4) inside each channel of 4 qubits, then B-blocks CRZ then CRX
    from the first qubit of channel c to that of channel c+1."""
    qc = QuantumCircuit(12)
    for q in range(12):
        qc.rx(float(x[q]), q)
    k = 0
    for _ in range(layers):
        for c in range(3):
            for p in range(4):
                a, b = 4 * c + p, 4 * c + (p + 1) % 4
                qc.crz(float(w[k]), a, b)
                qc.crx(float(w[k + 1]), a, b)
                k += 2
        for c in range(2):
            qc.crz(float(w[k]), 4 * c, 4 * c + 4)
            qc.crx(float(w[k + 1]), 4 * c, 4 * c + 4)
            k += 2
    assert k == len(w)
    return qc


def test_vertex_circuit_agrees_with_qiskit_statevector() -> None:
    torch.manual_seed(1)
    conv = QuantumConv(40, 1, ansatz="hqconv", layers=3, engine="adjoint", dtype="float64")
    x = torch.randn(1, 40, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        out = conv.to(torch.float64)(x)[0, :3]  # (3, 2, 2)
    angles = x[0, :3].reshape(12).numpy()  # qubit 4c + 2dy + dx
    state = Statevector(_hqconv_qiskit(angles, conv.circuit.weight.detach().numpy(), 3))
    for c in range(3):
        for dy in range(2):
            for dx in range(2):
                q = 4 * c + 2 * dy + dx
                z = SparsePauliOp("I" * (11 - q) + "Z" + "I" * q)
                expected = float(np.real(state.expectation_value(z)))
                assert out[c, dy, dx].item() == pytest.approx(expected, abs=1e-9)


def test_adjoint_and_autograd_layers_agree() -> None:
    spec = {"n_qubits": 12, "encoding": "angle_rx", "ansatz": "hqconv", "layers": 1}
    torch.manual_seed(2)
    a = QuantumLayer(spec)
    torch.manual_seed(2)
    b = QuantumLayer(spec, autograd=False)
    x = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 12, dtype=torch.float64)
    (a(x) * g).sum().backward()
    gx_a, gw_a = x.grad.clone(), a.weight.grad.clone()  # type: ignore[union-attr]
    x.grad = None
    (b(x) * g).sum().backward()
    torch.testing.assert_close(x.grad, gx_a, atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(b.weight.grad, gw_a, atol=1e-9, rtol=1e-7)


# ---------------------------------------------------------------- transfer and configs


def test_transfer_copies_all_but_the_vertex() -> None:
    classical = _unet()
    torch.manual_seed(9)
    hybrid = UNet(ArchConfig.model_validate(FULL_FQ))
    before = {k: v.clone() for k, v in hybrid.state_dict().items()}
    copied = transfer_weights(classical.state_dict(), hybrid)
    src = classical.state_dict()
    for name, value in hybrid.state_dict().items():
        if name.startswith("vertex."):
            assert name not in copied
            torch.testing.assert_close(value, before[name])
        else:
            assert name in copied
            torch.testing.assert_close(value, src[name])
    bad = dict(src)
    bad["init_conv.weight"] = torch.zeros(3)
    with pytest.raises(ConfigError, match=r"init_conv\.weight"):
        transfer_weights(bad, hybrid)


def test_config_kind_and_fields_are_validated() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_any_config({"kind": "vae", "name": "x"})
    assert exc.value.field == "kind"
    with pytest.raises(ConfigError) as exc:
        parse_unet_config({"arch": {"vertex": "quantum", "vertex_groups": 14}})
    assert exc.value.field == "arch.vertex_groups"
    with pytest.raises(ConfigError) as exc:
        parse_unet_config({"arch": {"quanv": True, "quanv_level": 2}})
    assert exc.value.field == "arch.quanv_level"
    assert parse_any_config({"kind": "unet"}).arch.vertex == "classical"  # type: ignore[union-attr]


# ---------------------------------------------------------------- training


def _tiny(tmp_path: Path, **train: object) -> object:
    return parse_unet_config(
        {
            "name": "t",
            "out_dir": str(tmp_path),
            "arch": {"dim": 10},
            "diffusion": {"timesteps": 50, "ddim_steps": 2},
            "train": {"epochs": 2, "batch_size": 4, "threads": 1, **train},
        }
    )


def test_resume_continues_exactly(tmp_path: Path) -> None:
    images = torch.rand(8, 1, 28, 28)
    whole = UNetTrainer(_tiny(tmp_path / "a"), images=images, progress=None)  # type: ignore[arg-type]
    whole.run()
    part = UNetTrainer(_tiny(tmp_path / "b"), images=images, progress=None)  # type: ignore[arg-type]
    part.run(max_seconds=1e-9)  # stops after one step
    assert part.step == 1
    again = UNetTrainer(_tiny(tmp_path / "b"), images=images, progress=None)  # type: ignore[arg-type]
    result = again.run()
    assert result.resumed_from == 1 and result.steps == 4
    for name, value in whole.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[name], value)
    for name, value in whole.ema.model.state_dict().items():
        torch.testing.assert_close(again.ema.model.state_dict()[name], value)


def test_transfer_run_continues_the_epoch_count(tmp_path: Path) -> None:
    images = torch.rand(8, 1, 28, 28)
    source = UNetTrainer(
        _tiny(tmp_path / "c", keep_epochs=[1]),  # type: ignore[arg-type]
        images=images,
        progress=None,
    )
    source.run()
    kept = tmp_path / "c" / "epoch_1.pt"
    assert kept.is_file()
    cfg = parse_unet_config(
        {
            "name": "tr",
            "out_dir": str(tmp_path / "d"),
            "arch": {"vertex": "quantum", "vertex_groups": 1, "vertex_ansatz": "fqconv"},
            "diffusion": {"timesteps": 50, "ddim_steps": 2},
            "train": {"epochs": 1, "batch_size": 4, "threads": 1, "transfer_from": str(kept)},
        }
    )
    tr = UNetTrainer(cfg, images=images, progress=None)
    copied = tr.start_from_transfer(kept)
    assert tr.epoch_offset == 1
    assert not any(name.startswith("vertex.") for name in copied)
    # its first batch is the source's epoch-2 batch
    torch.testing.assert_close(tr.batch(0), source.batch(source.steps_per_epoch))


# ---------------------------------------------------------------- the CLI


def test_cli_train_sample_evaluate_a_unet_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from qldm.hybrid import cli
    from qldm.hybrid.metrics import default_cache_dir

    config = Path(__file__).resolve().parents[2] / "configs" / "unet_tiny.yaml"
    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    default_cache_dir().mkdir(parents=True, exist_ok=True)
    (data_dir / "feature_net").symlink_to(default_cache_dir(), target_is_directory=True)
    cli.train(config, url=None, api_key=None, data_dir=data_dir)
    printed = capsys.readouterr().out
    assert "475,281 parameters" in printed and "circuits/s" in printed
    ckpt = tmp_path / "runs" / "unet_tiny" / "last.pt"
    cli.sample(ckpt, n=4, out=tmp_path / "s.png")
    assert (tmp_path / "s.png").is_file()
    cli.evaluate(ckpt, out=tmp_path / "eval", data_dir=data_dir)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_samples"] == 20 and metrics["classifier_score_mean"] >= 1.0
