"""ONNX export with metadata, and every inference backend against torch eager."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from evdistill_ros.events import DEFAULT_EVENT_INPUT, EventInput, ByTime, embed
from evdistill_ros.models import build_model, save_checkpoint
from evdistill_ros.models.backends import AUTO_AGREEMENT, Backend, create_backend, describe
from evdistill_ros.models.export import export_onnx, read_onnx_metadata
from evdistill_ros.models.predictor import Predictor
from conftest import random_events

HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", "mobilenetv2", in_channels=3, num_classes=6, width_mult=0.25,
                        aspp_channels=32, decoder_channels=32)
    # trained-like weights are not needed for parity; BN statistics away from init are
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("ck") / "student.pt"
    save_checkpoint(path, model.eval(), {"representation": DEFAULT_EVENT_INPUT.to_dict(), "input_size": None})
    return path


def windows(n: int = 4) -> list[np.ndarray]:
    """Embeddings of simulated-like event windows, what the node feeds the network."""
    return [embed(random_events(20_000, 200, 346, seed=k), "evdistill_2ch", height=200, width=346)
            for k in range(n)]


def test_export_embeds_metadata_and_matches_torch(student, tmp_path):
    report = export_onnx(student, tmp_path / "s.onnx")
    assert report.argmax_agreement >= 0.999 and report.max_logit_diff < 1e-3, report.summary()
    meta = read_onnx_metadata(tmp_path / "s.onnx")
    assert EventInput.from_dict(meta["representation"]) == DEFAULT_EVENT_INPUT
    assert meta["in_channels"] == 3 and meta["onnx"]["dynamic"] is True


@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(
    not HAVE_OPENVINO, reason="openvino not installed (optional: pip install openvino)"))])
def test_backend_agrees_with_torch_on_random_inputs_and_windows(student, backend):
    ref = Predictor(student, device="cpu", backend="torch")
    got = Predictor(student, device="cpu", backend=backend)
    rng = np.random.default_rng(0)
    inputs = windows() + [rng.standard_normal((3, 120, 160)).astype(np.float32) for _ in range(3)]
    agree = [np.mean(ref(x) == got(x)) for x in inputs]
    assert min(agree) >= AUTO_AGREEMENT, agree


def test_onnx_file_is_a_checkpoint(student, tmp_path):
    export_onnx(student, tmp_path / "s.onnx")
    p = Predictor(tmp_path / "s.onnx", device="cpu", backend="torch")  # "torch" falls back to onnxruntime
    assert p.backend.name == "onnxruntime" and p.is_event_network
    x = windows(1)[0]
    assert np.mean(p(x) == Predictor(student, device="cpu", backend="torch")(x)) >= AUTO_AGREEMENT


def test_auto_is_the_default_and_chooses_on_the_first_real_input(student):
    """auto decides when it is first given a window (a real input), keeps a backend that agrees
    with torch there, logs the table and reports it."""
    lines: list[str] = []
    p = Predictor(student, device="cpu", log=lines.append)
    assert p.backend.name == "auto" and not any(ln.startswith("auto on") for ln in lines)  # nothing timed yet
    x = windows(1)[0]
    got = p(x)
    assert p.backend.name in ("torch", "onnxruntime", "openvino")
    assert any(ln.startswith("auto on the first real 1x3x200x346 input") and ln.endswith("-> " + p.backend.name)
               for ln in lines), lines
    table = describe(p.backend)["auto"]
    assert {"torch", "onnxruntime"} <= set(table) and table[p.backend.name]["agreement"] >= AUTO_AGREEMENT
    assert np.mean(got == Predictor(student, device="cpu", backend="torch")(x)) >= AUTO_AGREEMENT


def test_auto_chooses_at_load_for_a_fixed_size_and_checks_on_the_first_real_input(tmp_path):
    """A network with a fixed input size is timed when it loads (a node's first windows find it
    ready) and its choice is checked against torch on the first real input."""
    torch.manual_seed(0)
    model = build_model("lraspp", "mobilenetv2", in_channels=3, num_classes=6, width_mult=0.35, head_channels=16)
    path = save_checkpoint(tmp_path / "fixed.pt", model.eval(), {"representation": DEFAULT_EVENT_INPUT.to_dict(),
                                                                 "input_size": {"height": 64, "width": 96}})
    lines: list[str] = []
    p = Predictor(path, device="cpu", log=lines.append)
    assert p.backend.name in ("torch", "onnxruntime", "openvino") and lines[-1].startswith("auto on a synthetic 1x3x64x96")
    chosen = p.backend.name
    p(windows(1)[0])  # resized to 64x96 by the preprocessing, then checked
    table = describe(p.backend)["auto"]
    assert table[chosen]["agreement_real_input"] >= AUTO_AGREEMENT and p.backend.name == chosen
    assert [k for k, v in p.backend.candidates.items() if v is not None] == [chosen]  # the rest released


def test_auto_refuses_a_backend_that_disagrees_with_torch(student):
    class Wrong(Backend):  # a fast backend whose labels are wrong: it must never be chosen
        name = "wrong"

        def run(self, x):
            return -torch.ones(x.shape[0], 6, *x.shape[-2:]) * torch.arange(6).view(1, 6, 1, 1)

    lines: list[str] = []
    p = Predictor(student, device="cpu", log=lines.append)
    p.backend.candidates["onnxruntime"] = Wrong()
    p(windows(1)[0])
    assert p.backend.name in ("torch", "openvino")
    refused = describe(p.backend)["auto"]["onnxruntime"]
    assert "ms" not in refused and refused["agreement"] < AUTO_AGREEMENT, refused
    assert any("onnxruntime refused" in ln for ln in lines), lines


def test_auto_falls_back_to_torch_when_only_torch_is_installed(student, monkeypatch):
    for missing in ("onnxruntime", "openvino"):
        monkeypatch.setitem(sys.modules, missing, None)
    lines: list[str] = []
    p = Predictor(student, device="cpu", log=lines.append)
    labels = p(windows(1)[0])
    assert p.backend.name == "torch" and labels.shape == (200, 346)
    assert any("auto: onnxruntime unavailable" in ln and "pip install onnxruntime" in ln for ln in lines), lines
    assert list(describe(p.backend)["auto"]) == ["torch"]


def test_missing_and_unknown_backends_are_one_line_errors(student, monkeypatch):
    with pytest.raises(ValueError, match="unknown backend 'tensorrt9'; known: torch, torch-compile"):
        Predictor(student, device="cpu", backend="tensorrt9")
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(RuntimeError, match="pip install openvino"):
        Predictor(student, device="cpu", backend="openvino")


def test_authors_plain_state_dict_exports(tmp_path):
    torch.manual_seed(1)
    model = build_model("deeplabv3plus", "resnet18", in_channels=3, num_classes=6)
    path = tmp_path / "ddd17_events_ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    report = export_onnx(path, tmp_path / "authors.onnx", dynamic=False)
    assert report.input_shape == (1, 3, 256, 512) and report.argmax_agreement >= 0.999
    assert read_onnx_metadata(tmp_path / "authors.onnx")["source"] == "evdistill_authors"


def test_export_cli(student, tmp_path):
    out = subprocess.run([sys.executable, "-m", "evdistill_ros.cli", "export", str(student), "--out",
                          str(tmp_path / "cli.onnx"), "--height", "64", "--width", "96"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "argmax agreement" in out.stdout and (tmp_path / "cli.onnx").is_file()
    bad = subprocess.run([sys.executable, "-m", "evdistill_ros.cli", "export", str(tmp_path / "nope.pt"), "--out",
                          str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "not found" in bad.stderr


def test_time_window_spec_in_onnx_metadata_round_trips(tmp_path):
    model = build_model("deeplabv3plus", "mobilenetv2", in_channels=5, num_classes=6, width_mult=0.25,
                        aspp_channels=16, decoder_channels=16)
    spec = EventInput("voxel_grid", {"bins": 5}, ByTime(30_000_000, 10_000_000))
    ck = save_checkpoint(tmp_path / "v.pt", model.eval(), {"representation": spec.to_dict()})
    export_onnx(ck, tmp_path / "v.onnx", dynamic=True)
    assert EventInput.from_dict(read_onnx_metadata(tmp_path / "v.onnx")["representation"]) == spec
    b = create_backend("onnxruntime", None, read_onnx_metadata(tmp_path / "v.onnx"), torch.device("cpu"),
                       onnx_model=(tmp_path / "v.onnx").read_bytes())
    assert tuple(b.run(torch.zeros(2, 5, 40, 64)).shape) == (2, 6, 40, 64)  # dynamic batch and size
