"""save_checkpoint / load_checkpoint: bit-exact round trip, metadata, wrappers, clear errors."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from evdistill_ros.classes import CLASS_NAMES, PALETTE
from evdistill_ros.models import build_model, git_revision, load_checkpoint, save_checkpoint

META = {
    "representation": {"name": "evdistill_2ch", "params": {"normalize": "max"}, "window_ns": 50_000_000},
    "input_size": {"height": 200, "width": 346},
    "preprocessing": {"resize": "bilinear", "scale": 1.0},
    "training": {"lr": np.float64(1e-3), "epochs": np.int64(3), "weights": (10, 10, 20, 0.1)},
}


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Move BatchNorm statistics off their init values so the round trip checks them too."""
    model.train()
    with torch.no_grad():
        model(torch.rand(2, model.in_channels, 37, 41))
    return model.eval()


@pytest.mark.parametrize("backbone,options", [("mobilenetv2", {}), ("resnet18", {"with_reconstruction": True})])
def test_round_trip_is_bit_exact(tmp_path, backbone, options):
    torch.manual_seed(0)
    model = _trained_like(build_model(backbone=backbone, in_channels=2, num_classes=6, **options))
    path = save_checkpoint(tmp_path / "sub" / "student.pt", model, META)
    assert sorted(os.listdir(path.parent)) == ["student.pt"]  # no temp file left behind
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    x = torch.rand(1, 2, 45, 67)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta["backbone"] == backbone and meta["in_channels"] == 2 and meta["num_classes"] == 6
    assert meta["options"] == model.config["options"]
    assert meta["representation"] == META["representation"]
    assert meta["input_size"] == META["input_size"]
    assert meta["training"] == {"lr": 1e-3, "epochs": 3, "weights": [10, 10, 20, 0.1]}
    assert meta["classes"] == list(CLASS_NAMES) and meta["palette"] == PALETTE.tolist()
    assert meta["ignore_index"] == 255 and meta["source"] == "evdistill_ros"
    assert meta["created"].endswith("+00:00") and meta["software"]["torch"] == str(torch.__version__)
    assert meta["git_revision"] == git_revision()


def test_overwrite_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "ckpt.pt"
    m1 = build_model(backbone="mobilenetv2", in_channels=1, num_classes=3)
    m2 = build_model(backbone="mobilenetv2", in_channels=1, num_classes=3)
    save_checkpoint(path, m1, {})
    save_checkpoint(path, m2, {})
    loaded, _ = load_checkpoint(path)
    k = "decoder.last_conv.8.weight"
    assert torch.equal(loaded.state_dict()[k], m2.state_dict()[k])
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_plain_and_wrapped_state_dicts(tmp_path):
    """Foreign state_dicts: bare, module.-prefixed, wrapped in {'state_dict': ...}; aps by file name."""
    model = _trained_like(build_model(backbone="resnet18", in_channels=3, num_classes=6))
    state = model.state_dict()
    x = torch.rand(1, 3, 33, 35)
    with torch.no_grad():
        want = model(x)
    variants = {
        "plain_event.pth": state,
        "dp_event.pth": {"module." + k: v for k, v in state.items()},
        "ddd17_aps_ckpt.pth": {"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 7},
        "no_counter_event.pth": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
    }
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
        loaded, meta = load_checkpoint(tmp_path / name)
        assert meta["backbone"] == "resnet18" and meta["source"] == "evdistill_authors"
        with torch.no_grad():
            assert torch.equal(loaded(x), want), name
        assert meta["representation"] == ("aps" if "aps" in name else meta["representation"])
        if "aps" not in name:
            assert meta["representation"]["name"] == "evdistill_2ch"


def test_mismatch_errors_name_key_and_shapes(tmp_path):
    src = build_model(backbone="resnet18", in_channels=2, num_classes=6)
    path = save_checkpoint(tmp_path / "c.pt", src, {})
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["decoder.last_conv.8.weight"] = torch.zeros(7, 256, 1, 1)
    torch.save(payload, tmp_path / "bad_shape.pt")
    with pytest.raises(ValueError, match=r"'decoder\.last_conv\.8\.weight' has shape \(7, 256, 1, 1\) in the checkpoint "
                                         r"but \(6, 256, 1, 1\) in the model"):
        load_checkpoint(tmp_path / "bad_shape.pt")

    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["aspp.bn1.running_var"]
    payload["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(payload, tmp_path / "bad_keys.pt")
    with pytest.raises(ValueError, match=r"1 missing key\(s\).*aspp\.bn1\.running_var.*1 unexpected key\(s\).*extra\.weight"):
        load_checkpoint(tmp_path / "bad_keys.pt")
    model, _ = load_checkpoint(tmp_path / "bad_keys.pt", strict=False)  # non-strict: keys may differ
    assert torch.equal(model.state_dict()["aspp.bn1.running_var"], torch.ones(256))


def test_bad_files_and_metadata(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt is not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "nostate.pt")
    with pytest.raises(ValueError, match="without a state_dict"):
        load_checkpoint(tmp_path / "nostate.pt")
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other_net.pt")
    with pytest.raises(ValueError, match="not a DeepLabv3\\+ ResNet"):
        load_checkpoint(tmp_path / "other_net.pt")
    with pytest.raises(ValueError, match="is not a file"):
        load_checkpoint(tmp_path)

    model = build_model(backbone="mobilenetv2", in_channels=2)
    with pytest.raises(ValueError, match="in_channels=3 contradicts the model's 2"):
        save_checkpoint(tmp_path / "x.pt", model, {"in_channels": 3})
    with pytest.raises(ValueError, match=r"metadata\.training\.fn is a builtin_function_or_method"):
        save_checkpoint(tmp_path / "x.pt", model, {"training": {"fn": len}})
    with pytest.raises(ValueError, match="has no .config"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Conv2d(1, 1, 1), {})
    assert not (tmp_path / "x.pt").exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_nonfinite_weights_inputs_and_logits_are_refused(tmp_path):
    """One NaN weight: refused at load naming the tensor (it evaluated to 7.57 mIoU, exit 0); NaN,
    inf and 3e38 inputs: NonFiniteError, never labels; export's check fails on NaN logits."""
    import numpy as np

    from evdistill_ros.models.export import parity
    from evdistill_ros.models.predictor import NonFiniteError, Predictor

    torch.manual_seed(0)
    net = build_model("deeplabv3plus", "mobilenetv2", in_channels=2, num_classes=6, width_mult=0.25,
                      aspp_channels=16, decoder_channels=16).eval()
    meta = {"representation": {"name": "count", "params": {}, "window_ns": 50_000_000}}
    good = save_checkpoint(tmp_path / "good.pth", net, meta)
    p = Predictor(good, device="cpu")
    assert p(np.ones((2, 20, 30), np.float32)).shape == (20, 30)
    for value in (np.nan, np.inf, -np.inf, 3e38):
        with pytest.raises(NonFiniteError):
            p(np.full((2, 20, 30), value, np.float32))
    name, param = next((n, t) for n, t in net.named_parameters() if n.endswith("bias"))
    with torch.no_grad():
        param[0] = float("nan")
    bad = save_checkpoint(tmp_path / "bad.pth", net, meta)
    with pytest.raises(ValueError, match=f"tensor '{name}' holds NaN or infinite") as exc:
        load_checkpoint(bad)
    assert "\n" not in str(exc.value)
    nan = np.full((1, 6, 4, 4), np.nan, np.float32)
    assert parity(lambda x: nan, lambda x: nan, [np.zeros(1)]) == (float("inf"), 0.0)


def test_an_onnx_named_pth_says_so(tmp_path):
    """An .onnx renamed .pth carried torch's "Please file an issue" wording; now one line saying
    what the file is."""
    from evdistill_ros.models.export import onnx_bytes

    net = build_model("deeplabv3plus", "mobilenetv2", in_channels=1, num_classes=6, width_mult=0.25,
                      aspp_channels=16, decoder_channels=16)
    fake = tmp_path / "model.pth"
    fake.write_bytes(onnx_bytes(net, {"in_channels": 1, "input_size": {"height": 32, "width": 32}}))
    with pytest.raises(ValueError, match="looks like an ONNX model: name it .onnx") as exc:
        load_checkpoint(fake)
    assert "file an issue" not in str(exc.value) and "\n" not in str(exc.value)


def test_evaluate_json_path_is_checked_before_the_work(tmp_path):
    """An unwritable --json PATH failed only after the whole evaluation; now before any work
    (the data here does not even exist: the --json check comes first)."""
    import subprocess
    import sys

    (tmp_path / "a_file").write_text("x")
    for bad in (tmp_path / "a_file" / "out.json", tmp_path):  # under a file; a directory
        r = subprocess.run([sys.executable, "-m", "evdistill_ros.cli", "evaluate", "--data",
                            str(tmp_path / "nothing.bag"), "--aps-ckpt", "x.pth", "--json", str(bad)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "cannot write the --json file" in r.stderr, r.stderr
