"""Teacher cards: image networks trained elsewhere (ONNX, TorchScript, Hugging Face folders) as
teachers, their classes mapped into the student's, their outputs computed once.

The networks are built here (no weights can be downloaded): a 19-class (Cityscapes train ids)
"teacher" whose logits follow the frame's brightness, so its mapped predictions vary over the
frame and a student can imitate them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from evdistill_ros.classes import CLASS_SETS, class_map, class_matrix
from evdistill_ros.distill import losses
from evdistill_ros.distill.teacher import LOG_FLOOR, class_groups, soft_targets
from evdistill_ros.models.teacher_card import load_image_network, read_teacher_card

from test_distill_train import tiny_config, write_bag

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


class Brightness19(nn.Module):
    """19 logits per pixel peaking at the class whose brightness bin the pixel falls in (RGB,
    mean/std normalised input as the card says), at a quarter of the input resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) / 255)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) / 255)
        self.register_buffer("centres", torch.linspace(0, 1, 19).view(1, 19, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = (x * self.std + self.mean).mean(1, keepdim=True)
        grey = torch.nn.functional.avg_pool2d(grey, 4)
        return -((grey - self.centres) ** 2) * 200.0


def _card(folder: Path, name: str, path: str, **fields) -> Path:
    import yaml

    body = {"path": path, "classes": "cityscapes", "frame": "rgb", "mean": MEAN, "std": STD, **fields}
    card = folder / name
    card.write_text(yaml.safe_dump({k: v for k, v in body.items() if v is not None}))
    return card


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("teachers")
    net = Brightness19().eval()
    example = torch.rand(1, 3, 32, 48)
    torch.jit.trace(net, example).save(str(d / "bright.ts"))
    torch.onnx.export(net, (example,), str(d / "bright.onnx"), input_names=["pixels"], output_names=["out"],
                      dynamic_axes={"pixels": {0: "b", 2: "h", 3: "w"}, "out": {0: "b", 2: "h", 3: "w"}},
                      opset_version=18, dynamo=False)
    transformers = pytest.importorskip("transformers")
    cfg = transformers.SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 1], mlp_ratios=[2, 2], decoder_hidden_size=16,
        num_labels=19, id2label=dict(enumerate(CLASS_SETS["dsec19"].names)),
        label2id={n: i for i, n in enumerate(CLASS_SETS["dsec19"].names)})
    torch.manual_seed(0)
    transformers.SegformerForSemanticSegmentation(cfg).save_pretrained(str(d / "segformer"))
    return {"torchscript": _card(d, "ts.yaml", "bright.ts"),
            "onnx": _card(d, "onnx.yaml", "bright.onnx", input_size=[64, 96]),
            "huggingface": _card(d, "hf.yaml", "segformer", classes=None)}


@pytest.mark.parametrize("kind", ["torchscript", "onnx", "huggingface"])
def test_card_network_runs_as_its_card_says(teachers, kind):
    card = read_teacher_card(teachers[kind])
    from evdistill_ros.models.teacher_card import content_hash

    assert card.kind == kind and card.classes == CLASS_SETS["dsec19"] and len(content_hash(teachers[kind])) == 64
    net, meta = load_image_network(teachers[kind])
    assert meta["representation"] == "aps" and meta["num_classes"] == 19 and meta["class_set"] == "dsec19"
    from evdistill_ros.models import Preprocessor

    grey = (np.linspace(0, 255, 32 * 48).reshape(32, 48)).astype(np.uint8)
    x = Preprocessor.from_metadata(meta)(grey)  # grey camera frame -> repeated RGB, card mean/std
    assert x.shape == ((1, 3, 64, 96) if kind == "onnx" else (1, 3, 32, 48))
    logits = net(x)
    assert logits.shape[:2] == (1, 19)
    if kind != "huggingface":  # the brightness network: its argmax is the pixel's brightness bin
        pred = logits.argmax(1)[0].numpy()
        small = grey.reshape(8, 4, 12, 4).mean((1, 3)) / 255 if kind == "torchscript" else None
        if small is not None:
            np.testing.assert_array_equal(pred, np.abs(small[..., None] - np.linspace(0, 1, 19)).argmin(-1))
    assert not net.train().training  # a teacher never trains


def test_predictor_and_evaluation_take_a_card(teachers):
    from evdistill_ros.models.predictor import Predictor

    p = Predictor(teachers["torchscript"], device="cpu")
    labels = p(np.full((32, 48), 200, np.uint8))
    assert labels.shape == (32, 48) and p.class_set.name == "dsec19" and not p.is_event_network
    assert int(labels[0, 0]) == int(np.abs(200 / 255 - np.linspace(0, 1, 19)).argmin())


def test_class_mapped_soft_targets_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (2, 19, 5, 7)).astype(np.float32)
    T = 2.0
    groups = class_groups(CLASS_SETS["dsec19"], CLASS_SETS["ddd17"])
    got = soft_targets(torch.from_numpy(logits), T, groups).numpy()
    # plain numpy: softmax over the 19 classes, then each DDD17 class sums its Cityscapes classes
    e = np.exp(logits / T - (logits / T).max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    lut = class_map("dsec19", "ddd17")
    q = np.zeros((2, 6, 5, 7))
    for s in range(19):
        q[:, lut[s]] += p[:, s]
    np.testing.assert_allclose(np.exp(got), q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(class_matrix("dsec19", "ddd17").sum(1), 1)
    # the KD term on mapped targets is the numpy KL
    student = rng.normal(0, 1, (2, 6, 5, 7)).astype(np.float32)
    es = np.exp(student / T - (student / T).max(1, keepdims=True))
    ps = es / es.sum(1, keepdims=True)
    ref = (q * (np.log(q) - np.log(ps))).sum(1).mean() * T * T
    kd = losses.pixel_kd_soft(torch.from_numpy(student), torch.from_numpy(got), T)
    assert float(kd) == pytest.approx(ref, rel=1e-4)
    # the same teacher class set: exactly the logits' KD
    same = losses.pixel_kd(torch.from_numpy(student), torch.from_numpy(logits[:, :6]), T)
    assert float(same) == pytest.approx(float(losses.pixel_kd_soft(
        torch.from_numpy(student), soft_targets(torch.from_numpy(logits[:, :6]), T), T)), rel=1e-6)
    assert (got >= LOG_FLOOR).all()


def test_card_errors_are_one_line(tmp_path, teachers):
    import yaml

    good = yaml.safe_load(teachers["torchscript"].read_text())
    for field in ("path", "frame", "mean", "std", "classes"):
        card = tmp_path / f"no_{field}.yaml"
        card.write_text(yaml.safe_dump({**{k: v for k, v in good.items() if k != field},
                                        "path": str(teachers["torchscript"].parent / "bright.ts")}
                                       if field != "path" else {k: v for k, v in good.items() if k != "path"}))
        with pytest.raises(ValueError, match=f"{field}: missing") as exc:
            read_teacher_card(card)
        assert "\n" not in str(exc.value)
    bad = tmp_path / "bad.yaml"
    for body, field in (({**good, "frame": "bgr"}, "frame"), ({**good, "std": [0, 1, 1]}, "std"),
                        ({**good, "mean": [1, 2]}, "mean"), ({**good, "input_size": [512]}, "input_size"),
                        ({**good, "classes": "mapillary"}, "classes"), ({**good, "colour": 1}, "colour"),
                        ({**good, "path": "missing.onnx"}, "path")):
        body["path"] = str(teachers["torchscript"].parent / Path(str(body["path"])).name)
        bad.write_text(yaml.safe_dump(body))
        with pytest.raises((ValueError, FileNotFoundError), match=f"{field}") as exc:
            read_teacher_card(bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="without evdistill_ros metadata: write a teacher card"):
        load_image_network(teachers["onnx"].parent / "bright.onnx")


def test_unmappable_teacher_fails_before_any_work(tmp_path, teachers):
    from evdistill_ros.distill.trainer import run_training

    cfg = tiny_config(tmp_path)
    # Cityscapes' 19 classes have no mapping onto the simulator's 12
    cfg = cfg.replace(data={"class_set": "sim"}, model={"num_classes": 12})
    with pytest.raises(ValueError, match="dsec19.*sim|no mapping from class set dsec19 to sim") as exc:
        run_training(cfg, [str(tmp_path / "never_read.bag")], stage="student", method="kd",
                     teacher=str(teachers["torchscript"]), progress=False, log=lambda s: None)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "cache").exists()  # nothing extracted


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    p = tmp_path_factory.mktemp("cardbag") / "seq.bag"
    write_bag(str(p), seed=3)
    return str(p)


@pytest.mark.parametrize("kind,method", [("torchscript", "kd"), ("onnx", "evdistill"), ("huggingface", "kd")])
def test_student_distils_from_a_card(tmp_path, bag, teachers, kind, method):
    from evdistill_ros.distill.teacher import TeacherOutputs
    from evdistill_ros.distill.trainer import run_training
    from evdistill_ros.models import load_checkpoint

    cfg = tiny_config(tmp_path, steps=30)
    cfg = cfg.replace(student={"weights": {"recon": 1.0}})
    logs: list[str] = []
    ckpt = run_training(cfg, [bag], stage="student", method=method, teacher=str(teachers[kind]), progress=False,
                        log=logs.append)
    model, meta = load_checkpoint(ckpt)
    assert meta["training"]["teacher"] == str(teachers[kind]) and meta["class_set"] == "ddd17"
    text = "\n".join(logs)
    assert "summed into the student's ddd17 classes" in text and "computed once" in text
    metrics = json.loads((Path(ckpt).parent / "metrics.json").read_text())
    assert metrics["last_losses"]["pixel"] < metrics["first_losses"]["pixel"]  # the student imitates the teacher
    # the stored outputs are the teacher's mapped soft predictions on the un-augmented frames
    stored = [p for p in (tmp_path / "cache").rglob("log_probs.npy")]
    assert len(stored) == 1
    lp = np.load(stored[0])
    assert lp.dtype == np.float16 and lp.shape[1] == 6
    if kind == "torchscript":
        from evdistill_ros.io.pair_cache import open_cache

        cache = open_cache(stored[0].parent.parent.parent)
        net = torch.jit.load(str(teachers[kind].parent / "bright.ts"))
        aps = np.asarray(cache.aps[:4], np.float32) / 255  # grey frames, repeated to RGB by the card
        x = (torch.from_numpy(aps)[:, None].expand(-1, 3, -1, -1) - torch.tensor(MEAN).view(1, 3, 1, 1) / 255) \
            / (torch.tensor(STD).view(1, 3, 1, 1) / 255)
        logits = torch.nn.functional.interpolate(net(x), size=aps.shape[1:], mode="bilinear", align_corners=False)
        p = torch.softmax(logits, 1).numpy()
        lut = class_map("dsec19", "ddd17")
        q = np.zeros((4, 6) + aps.shape[1:])
        for s in range(19):
            q[:, lut[s]] += p[:, s]
        np.testing.assert_allclose(np.exp(lp[:4].astype(np.float64)), q, atol=3e-3)
    # a second student reuses them (the teacher does not run again)
    logs.clear()
    run_training(cfg, [bag], stage="student", method="kd", teacher=str(teachers[kind]), progress=False,
                 log=logs.append, out_dir=tmp_path / "again")
    assert any("teacher outputs: reusing" in s for s in logs)
    assert isinstance(TeacherOutputs, type)


def test_cached_teacher_outputs_follow_the_label_geometry(tmp_path, bag):
    """An item's teacher maps go through the same crop / scale / flip as its label: a teacher
    that predicts the label exactly stays exact after augmentation (where the label is)."""
    from evdistill_ros.io.pair_writer import extract_pairs
    from evdistill_ros.distill.dataset import PairDataset
    from evdistill_ros.io.pair_cache import open_cache

    cfg = tiny_config(tmp_path)
    cache = open_cache(extract_pairs(cfg.data.pair_source([bag]), cfg.data.cache_dir, progress=False, log=lambda s: None))
    labels = np.asarray(cache.labels)
    onehot = np.where(np.eye(6, dtype=bool)[np.minimum(labels, 5)].transpose(0, 3, 1, 2), 0.0, LOG_FLOOR)
    out = tmp_path / "outs"
    out.mkdir()
    np.save(out / "log_probs.npy", onehot.astype(np.float16))
    ds = PairDataset(cache, augment=cfg.augment.replace(scale=[1.0, 1.0]), labelled_only=True)
    ds.use_teacher_outputs(out)
    for i in range(6):
        item = ds[(i, 100 + i)]
        soft, label = item["teacher"], item["label"]
        assert soft.shape == (7,) + tuple(label.shape)
        valid = label != 255
        np.testing.assert_array_equal(soft[:6].argmax(0)[valid].numpy(), label[valid].numpy())
        assert bool((soft[6][valid] > 0.5).all())


@pytest.mark.parametrize("kind", ["huggingface", "onnx"])
def test_export_writes_the_card_inside_the_onnx(tmp_path, teachers, kind):
    """`evdistill export CARD.yaml --out t.onnx`: the .onnx then needs no card, and it predicts
    what the card's network predicts."""
    from evdistill_ros.models.teacher_card import export_card
    from evdistill_ros.models.predictor import Predictor

    out = tmp_path / f"{kind}.onnx"
    report = export_card(teachers[kind], out)
    assert report.argmax_agreement > 0.999 and report.max_logit_diff < 1e-3
    net, meta = load_image_network(out)  # no card beside it
    assert meta["class_set"] == "dsec19" and meta["preprocessing"]["frame"] == "rgb"
    frame = np.random.default_rng(0).integers(0, 256, (64, 96), dtype=np.uint8)
    a, b = Predictor(teachers[kind], device="cpu")(frame), Predictor(out, device="cpu")(frame)
    assert (a == b).mean() > 0.999
    r = subprocess_cli("export", str(teachers[kind]), "--out", str(tmp_path / "cli.onnx"))
    assert r.returncode == 0 and "argmax agreement" in r.stdout, r.stderr


def subprocess_cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "evdistill_ros.cli", *args], capture_output=True, text=True,
                          timeout=300)


SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "sample.aedat4"


@pytest.mark.skipif(not SAMPLE.is_file(), reason="the real recording ../shared/data/real is not here")
def test_walkthrough_distils_on_the_real_aedat4(tmp_path, teachers):
    """docs/real_cameras.md step 3 as a user types it: config/davis.yaml, the real DV recording,
    a card teacher (small steps and a small student, so it runs in seconds)."""
    config = Path(__file__).resolve().parents[1] / "config" / "davis.yaml"
    r = subprocess_cli("train", "student", "--config", str(config), "--bags", str(SAMPLE), "--teacher",
                       str(teachers["torchscript"]), "--out", str(tmp_path / "run"),
                       "--set", "train.steps=4", "--set", "train.batch_size=2", "--set", "train.num_workers=0",
                       "--set", "train.device=cpu", "--set", "train.image_every=0", "--set", "train.threads=1",
                       "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "model.width_mult=0.25",
                       "--set", "augment.crop=[128,160]")
    assert r.returncode == 0, r.stderr[-3000:]
    from evdistill_ros.models import load_checkpoint

    _, meta = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert meta["representation"]["name"] == "voxel_grid" and meta["input_size"] == {"height": 260, "width": 346}
    assert meta["training"]["bags"] == [str(SAMPLE)]
