"""Training end to end on a tiny synthetic bag: extraction cache, learning, exact resume, every method.

The bag is made here (not by the simulator) so the test controls what is learnable: three
classes with distinct textures that a 1-px-per-frame pan turns into distinct event patterns
(flat: uniform, no events; vegetation: dense random texture; vehicle: vertical stripes).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evdistill_ros.distill import config as C
from evdistill_ros.io.pair_writer import extract_pairs
from evdistill_ros.io.pair_cache import open_cache
from evdistill_ros.events import Events
from evdistill_ros.io.bag_writer import BagWriter

H, W = 32, 48
FRAME_NS = 50_000_000
T0 = 1_000_000_000_000_000_000


def _scene(rng: np.random.Generator, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A wide panorama: (H, width) intensity in [0, 1] and class labels 0 / 3 / 5."""
    label = np.zeros((H, width), np.uint8)
    img = np.full((H, width), 0.45)
    x = 0
    while x < width:
        w = int(rng.integers(8, 16))
        cls = int(rng.choice([0, 3, 5]))
        top = int(rng.integers(0, H // 3))
        sl = (slice(top, H), slice(x, x + w))
        label[sl] = cls
        if cls == 3:
            img[sl] = rng.uniform(0.1, 0.9, size=label[sl].shape)
        elif cls == 5:
            img[sl] = np.where((np.arange(x, min(x + w, width)) // 2) % 2 == 0, 0.85, 0.25)[None, :]
        x += w
    return img, label


def write_bag(path, seed: int = 0, frames: int = 24, with_labels: bool = True) -> None:
    rng = np.random.default_rng(seed)
    pano, pano_lab = _scene(rng, W + frames + 2)
    logs = np.log(pano + 0.05)
    with BagWriter(path) as bag:
        for k in range(frames):
            t = T0 + k * FRAME_NS
            img = pano[:, k : k + W]
            if k > 0:
                d = logs[:, k : k + W] - logs[:, k - 1 : k - 1 + W]
                ys, xs = np.nonzero(np.abs(d) > 0.15)
                n = np.maximum(1, (np.abs(d[ys, xs]) / 0.15).astype(int))
                ys, xs = np.repeat(ys, n), np.repeat(xs, n)
                p = np.repeat((d[np.abs(d) > 0.15] > 0).astype(np.int8), n)
                ts = np.sort(rng.integers(t - FRAME_NS, t, len(ys)))
                order = np.argsort(ts, kind="stable")
                ev = Events(xs[order], ys[order], ts, p[order])
                bag.write_events("/davis/left/events", ev, H, W, stamp_ns=t)
            bag.write_image("/davis/left/image_raw", t, (img * 255).astype(np.uint8), "mono8")
            if with_labels:
                bag.write_image("/davis/left/labels", t, pano_lab[:, k : k + W].copy(), "mono8")


def tiny_config(tmp_path, **train) -> dict:
    over = {
        "data": {"cache_dir": str(tmp_path / "cache"), "representation": "voxel_grid",
                 "representation_params": {"bins": 3}},
        "model": {"backbone": "mobilenetv2", "width_mult": 0.25, "aspp_channels": 32, "decoder_channels": 32},
        "augment": {"scale": [0.9, 1.1], "crop": [32, 32]},
        "train": {"steps": 60, "batch_size": 4, "optimizer": "adamw", "lr": 1e-2, "warmup_steps": 3,
                  "num_workers": 0, "log_every": 5, "image_every": 0, "val_every": 0, "ckpt_every": 10,
                  "out_dir": str(tmp_path / "runs"), "device": "cpu", "threads": 1, **train},
    }
    return C.load_config(None, [over])


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    d = tmp_path_factory.mktemp("bags")
    paths = [str(d / f"seq{i}.bag") for i in range(2)]
    for i, p in enumerate(paths):
        write_bag(p, seed=i)
    return paths


def test_cache_extracts_pairs_and_rekeys(tmp_path, bags):
    from evdistill_ros.events import embed
    from evdistill_ros.io.bag import read_events

    cfg = tiny_config(tmp_path)
    path = extract_pairs(cfg.data.pair_source(bags[:1]), cfg.data.cache_dir, progress=False, log=lambda s: None)
    cache = open_cache(path)
    assert len(cache) == 24 and cache.events.shape == (24, 3, H, W) and cache.meta["labelled"] == 24
    # window ending at frame k = events in [t_k - 50 ms, t_k): compare with a direct embed
    ev = read_events(bags[0])
    k = 7
    t_end = int(cache.t_ns[k])
    ref = embed(ev.time_slice(t_end - FRAME_NS, t_end), "voxel_grid", height=H, width=W, bins=3)
    np.testing.assert_allclose(cache.events[k], ref, rtol=1e-5, atol=1e-6)
    assert cache.n_events[k] == len(ev.time_slice(t_end - FRAME_NS, t_end))
    assert (cache.labels[0] != 255).all()
    # same inputs -> same cache; a window change -> another key
    assert extract_pairs(cfg.data.pair_source(bags[:1]), cfg.data.cache_dir, progress=False, log=lambda s: None) == path
    other = cfg.data.replace(window_ns=25_000_000)
    assert other.pair_source(bags[:1]).key() != cfg.data.pair_source(bags[:1]).key()
    assert other.pair_source(bags[:1]).event_input.window != cfg.data.event_input.window
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())  # no temp dirs left
    with pytest.raises(ValueError, match="not found"):
        extract_pairs(cfg.data.pair_source([str(tmp_path / "nope.bag")]), cfg.data.cache_dir, progress=False)


def _miou(pred: np.ndarray, label: np.ndarray) -> float:
    """Reference mIoU (absent classes dropped)."""
    ious = []
    for c in range(6):
        inter = np.sum((pred == c) & (label == c))
        union = np.sum(((pred == c) | (label == c)) & (label != 255))
        if np.sum(label == c):
            ious.append(inter / union)
    return float(np.mean(ious))


def _predict(ckpt, cache, modality) -> float:
    from evdistill_ros.models import load_checkpoint, prepare_input

    model, meta = load_checkpoint(ckpt)
    scores = []
    with torch.no_grad():
        for j in range(len(cache)):
            x = np.asarray(cache.aps[j]) if modality == "aps" else np.asarray(cache.events[j])
            pred = model(prepare_input(x, meta)).argmax(1)[0].numpy()
            scores.append(_miou(pred, np.asarray(cache.labels[j])))
    return float(np.mean(scores))


def test_teacher_and_students_learn_above_chance(tmp_path, bags):
    from evdistill_ros.distill.trainer import run_training

    torch.set_num_threads(1)
    cfg = tiny_config(tmp_path)
    cfg = cfg.replace(data={"val_bags": bags[1:]})
    teacher = run_training(cfg, bags[:1], "teacher", progress=False, log=lambda s: None)
    m = json.loads((teacher.parent / "metrics.json").read_text())
    assert m["step"] == 60 and m["last_losses"]["ce"] < 0.5 * m["first_losses"]["ce"]
    # the trainer's validation is `evdistill evaluate` on the same bag
    from evdistill_ros.eval.evaluate import evaluate

    ref = evaluate(bags[1], aps_ckpt=teacher, progress=False, log=lambda s: None)["aps"]
    assert m["validation"]["miou"] == pytest.approx(ref["miou"], abs=1e-6)
    cfg = cfg.replace(data={"val_bags": []})
    test_cache = open_cache(extract_pairs(cfg.data.pair_source(bags[1:]), cfg.data.cache_dir, progress=False, log=lambda s: None))
    # chance (one class everywhere, or uniform guesses) is about 0.2 on this 3-class scene
    assert _predict(teacher, test_cache, "aps") > 0.45
    sup = run_training(cfg, bags[:1], "student", method="supervised", progress=False, log=lambda s: None)
    assert _predict(sup, test_cache, "events") > 0.4
    evd = run_training(cfg, bags[:1], "student", method="evdistill", teacher=str(teacher), progress=False,
                       log=lambda s: None)
    metrics = json.loads((evd.parent / "metrics.json").read_text())
    assert set(metrics["last_losses"]) == {"recon", "pixel", "affinity", "a2e", "a2e_gen", "total"}
    from evdistill_ros.models import load_checkpoint

    model, meta = load_checkpoint(evd)
    assert meta["representation"]["name"] == "voxel_grid" and meta["input_size"] == {"height": H, "width": W}
    assert model.reconstruction is None  # deployable: no training-only head
    assert metrics["last_losses"]["pixel"] < metrics["first_losses"]["pixel"]
    assert _predict(evd, test_cache, "events") > 0.4


def _params(path):
    from evdistill_ros.models import load_checkpoint

    model, _ = load_checkpoint(path)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_is_bit_exact(tmp_path, bags):
    from evdistill_ros.distill.trainer import run_training

    cfg = tiny_config(tmp_path, steps=12, ckpt_every=100)
    log = lambda s: None  # noqa: E731
    full = run_training(cfg, bags[:1], "teacher", out_dir=tmp_path / "full", progress=False, log=log)
    run_training(cfg, bags[:1], "teacher", out_dir=tmp_path / "cut", progress=False, log=log, stop_after=5)
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["step"] == 5
    resumed = run_training(cfg, bags[:1], "teacher", out_dir=tmp_path / "cut", progress=False, log=log, resume=True)
    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # a changed config is refused instead of silently mixing two runs
    other = tiny_config(tmp_path, steps=12, ckpt_every=100, lr=5e-3)
    with pytest.raises(ValueError, match="configuration changed.*lr"):
        run_training(other, bags[:1], "teacher", out_dir=tmp_path / "cut", progress=False, log=log, resume=True)


class _Payload:
    """What a crafted state.pt would run when unpickled: here it only leaves a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_never_unpickles_code_from_state_file(tmp_path, bags):
    from evdistill_ros.distill.trainer import STATE_FORMAT, run_training

    cfg = tiny_config(tmp_path, steps=4)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"format": STATE_FORMAT, "name": "teacher", "step": 1, "payload": _Payload(marker)},
               run_dir / "state.pt")
    with pytest.raises(ValueError, match=r"state\.pt is not a readable training state"):
        run_training(cfg, bags[:1], "teacher", out_dir=run_dir, progress=False, log=lambda s: None, resume=True)
    assert not marker.exists()
    # a truncated state (a crash before the atomic write existed, a full disk): one line, the file named
    good = run_training(cfg, bags[:1], "teacher", out_dir=tmp_path / "ok", progress=False, log=lambda s: None)
    state = good.parent / "state.pt"
    state.write_bytes(state.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"ok/state\.pt is not a readable training state") as err:
        run_training(cfg, bags[:1], "teacher", out_dir=tmp_path / "ok", progress=False, log=lambda s: None, resume=True)
    assert "\n" not in str(err.value)


def test_pretrained_rgb_backbone_starts_grey_teacher_and_event_student(tmp_path, bags):
    """config model.pretrained with a 3-channel backbone file (what ddd17.yaml / mvsec.yaml
    recommend) used to fail on the first conv's shape for every 1- and n-channel network."""
    from evdistill_ros.distill.trainer import run_training
    from evdistill_ros.models import build_model

    rgb = build_model("deeplabv3plus", "mobilenetv2", in_channels=3, num_classes=6, width_mult=0.25)
    weights = tmp_path / "imagenet_mbv2.pth"
    torch.save(rgb.backbone.state_dict(), weights)
    cfg = tiny_config(tmp_path, steps=2)
    cfg = cfg.replace(model={"pretrained": str(weights)})
    cfg = cfg.replace(data={"representation_params": {"bins": 5}})
    for stage, method, channels in (("teacher", None, 1), ("student", "supervised", 5)):
        lines: list[str] = []
        run_training(cfg, bags[:1], stage, method=method, progress=False, log=lines.append,
                     out_dir=tmp_path / stage)
        assert any(f"first conv adapted (backbone.features.0.0.weight: 3 -> {channels} channels)" in ln
                   for ln in lines), lines


def test_kd_with_a_student_as_teacher_fails_before_any_work(tmp_path, bags):
    from evdistill_ros.distill.trainer import run_training
    from evdistill_ros.events import DEFAULT_EVENT_INPUT
    from evdistill_ros.models import build_model, save_checkpoint

    student = build_model("deeplabv3plus", "mobilenetv2", in_channels=5, num_classes=6, width_mult=0.25)
    wrong = save_checkpoint(tmp_path / "student.pt", student, {"representation": DEFAULT_EVENT_INPUT.to_dict()})
    cfg = tiny_config(tmp_path, steps=2)
    with pytest.raises(ValueError, match="not an APS-frame network") as err:
        run_training(cfg, bags[:1], "student", method="kd", teacher=str(wrong), progress=False, log=lambda s: None)
    assert "student.pt" in str(err.value)
    assert not (tmp_path / "cache").exists()  # refused before extraction started
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        (tmp_path / "junk.pt").write_bytes(b"\x80\x02junk")
        run_training(cfg, bags[:1], "student", method="evdistill", teacher=str(tmp_path / "junk.pt"),
                     progress=False, log=lambda s: None)


def test_label_loss_options_reach_the_teacher(tmp_path):
    """train.ce_class_weighting / ce_top_fraction (here as teacher-stage overrides) configure the
    label loss the method uses: median-frequency weights of the cached training labels."""
    from evdistill_ros.distill import losses
    from evdistill_ros.distill.state import load_state
    from evdistill_ros.distill.methods import class_pixel_counts
    from evdistill_ros.distill.trainer import run_training
    from evdistill_ros.models import read_metadata

    bag = tmp_path / "b.bag"
    write_bag(bag, seed=3, frames=8)
    cfg = tiny_config(tmp_path, steps=2, ckpt_every=2)
    cfg = cfg.replace(teacher={"ce_class_weighting": "median_frequency", "ce_top_fraction": 0.25,
                               "augment": {"crop": [16, 24]}})
    logs: list[str] = []
    ckpt = run_training(cfg, [str(bag)], "teacher", progress=False, log=logs.append)
    # the stage's augmentation is the one it trained with (and resumes against)
    state = load_state(ckpt.parent / "state.pt")
    assert state["fingerprint"]["augment"]["crop"] == [16, 24] and cfg.augment.crop == [32, 32]
    cache = open_cache(extract_pairs(cfg.data.pair_source([str(bag)]), cfg.data.cache_dir, progress=False, log=lambda s: None))
    counts = class_pixel_counts(cache, np.arange(len(cache)), 6)
    assert counts.sum() == int((np.asarray(cache.labels) < 6).sum())
    want = losses.median_frequency_weights(counts)
    line = next(m for m in logs if m.startswith("cross-entropy class weights"))
    assert line.endswith(", ".join(f"{w:.2f}" for w in want.tolist()))
    conf = read_metadata(ckpt)["training"]["config"]
    assert conf["teacher"] == {"ce_class_weighting": "median_frequency", "ce_top_fraction": 0.25,
                               "augment": {"crop": [16, 24]}}
    # a student distilled on other crops than the teacher's is told so (16x24 teacher, 32x32 student)
    kd_logs: list[str] = []
    run_training(cfg, [str(bag)], "student", method="kd", teacher=str(ckpt), progress=False, log=kd_logs.append)
    assert any("teacher trained on 16x24 crops, the student's batches are 32x32 crops" in m for m in kd_logs)
    cfg = cfg.replace(student={"augment": {"crop": [16, 24]}})
    kd_logs.clear()
    run_training(cfg, [str(bag)], "student", method="kd", teacher=str(ckpt), progress=False, log=kd_logs.append)
    assert not any("teacher trained on" in m for m in kd_logs)
    # ... and of another rescaling range (the other half of the geometry)
    cfg = cfg.replace(student={"augment": {"crop": [16, 24], "scale": [0.5, 2.0]}})
    kd_logs.clear()
    run_training(cfg, [str(bag)], "student", method="kd", teacher=str(ckpt), progress=False, log=kd_logs.append)
    want = ("teacher trained on 16x24 crops rescaled by 0.9-1.1, the student's batches are 16x24 crops rescaled by "
            "0.5-2.0")
    assert any(want in m and "student.augment.scale to match" in m for m in kd_logs), kd_logs
    # student.kd_class_weighting: median-frequency weights of the teacher's low-resolution argmax over
    # the training frames (the label-free student's labels are the teacher's), logged and fingerprinted
    import torch

    from evdistill_ros.models import Preprocessor, load_checkpoint
    cfg = cfg.replace(student={"kd_class_weighting": "median_frequency"})
    kd_logs.clear()
    kd = run_training(cfg, [str(bag)], "student", method="kd", teacher=str(ckpt), progress=False, log=kd_logs.append,
                      out_dir=tmp_path / "kd_weighted")
    net, meta = load_checkpoint(ckpt)
    prep = Preprocessor.from_metadata({**meta, "input_size": None})

    def check_logged_weights(aps: torch.Tensor, frames: str) -> None:
        """The logged weights are those of the teacher's low-resolution argmax on `aps`."""
        with torch.no_grad():
            pred = net.eval()(prep(aps, layout="bchw"), return_features=True)["logits_lowres"].argmax(1)
        want = losses.median_frequency_weights(np.bincount(pred.flatten().numpy(), minlength=6))
        line = next(m for m in kd_logs if m.startswith("pixel KD class weights (median frequency, from the teacher's "
                                                       f"predictions on {len(cache)} {frames} frames)"))
        assert line.endswith(", ".join(f"{w:.2f}" for w in want.tolist())), (line, want)

    check_logged_weights(torch.from_numpy(np.array(cache.aps[:])).float()[:, None] / 255.0, "training")
    assert load_state(kd.parent / "state.pt")["fingerprint"]["student"]["kd_class_weighting"] == "median_frequency"
    # ... or on the frames as the batches see them: the dataset's augmentation (16x24 crops here), drawn per
    # frame from the student's seed
    from evdistill_ros.distill.dataset import PairDataset, mix_seed
    cfg = cfg.replace(student={"kd_class_weighting": "median_frequency", "kd_class_weight_frames": "augmented"})
    kd_logs.clear()
    kd = run_training(cfg, [str(bag)], "student", method="kd", teacher=str(ckpt), progress=False, log=kd_logs.append,
                      out_dir=tmp_path / "kd_weighted_augmented")
    dataset = PairDataset(cache, augment=cfg.augment_for("student"))
    seed = int(cfg.train_for("student").seed)
    aps = torch.stack([dataset[(i, mix_seed(seed, -1, i))]["aps"] for i in range(len(cache))])
    assert aps.shape[-2:] == (16, 24)
    check_logged_weights(aps, "augmented")
    assert load_state(kd.parent / "state.pt")["fingerprint"]["student"]["kd_class_weight_frames"] == "augmented"
    with pytest.raises(ValueError, match="student.kd_class_weight_frames"):
        C.load_config(None, [{"student": {"kd_class_weight_frames": "cropped"}}])
    with pytest.raises(ValueError, match="student.kd_class_weighting"):
        C.load_config(None, [{"student": {"kd_class_weighting": "inverse"}}])
    with pytest.raises(ValueError, match="teacher.ce_top_fraction"):
        C.load_config(None, [{"teacher": {"ce_top_fraction": 0}}])
    with pytest.raises(ValueError, match="train.ce_class_weighting"):
        C.load_config(None, [{"train": {"ce_class_weighting": "inverse"}}])
    assert C.load_config(None, [{"teacher": {"ce_class_weighting": "median_frequency_sqrt"}}])


def test_two_trainings_never_share_one_run_directory(tmp_path, bags):
    """A second training into a run directory another live run holds refuses in one line naming
    its PID (both used to exit 0 with the second's files and mixed logs); --wait waits for it; the
    lock of a killed run is taken over."""
    import subprocess
    import sys
    import time

    from evdistill_ros.atomic import LockedError
    from evdistill_ros.distill.trainer import run_training

    cfg = tiny_config(tmp_path, steps=2)
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from evdistill_ros.atomic import DirLock
with DirLock({str(run)!r}):
    print("locked", flush=True)
    time.sleep(float(sys.argv[1]))
""", "4"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=f"in use by PID {holder.pid}") as exc:
            run_training(cfg, bags[:1], "teacher", out_dir=run, progress=False, log=lambda s: None)
        assert "\n" not in str(exc.value) and not (run / "checkpoint.pt").exists()
        logs: list[str] = []
        t0 = time.time()
        run_training(cfg, bags[:1], "teacher", out_dir=run, progress=False, log=logs.append, wait=True)
        assert any(f"waiting for PID {holder.pid}" in s for s in logs) and holder.poll() is not None
        assert time.time() - t0 > 1.0 and (run / "checkpoint.pt").is_file()
    finally:
        holder.kill()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".lock").write_text(f"{dead.pid}\n")  # left by a run that was killed
    logs.clear()
    run_training(cfg, bags[:1], "teacher", out_dir=run, progress=False, log=logs.append)
    assert any(f"took over the lock of PID {dead.pid}" in s for s in logs)


def test_a_damaged_pair_cache_is_found_and_extracted_again(tmp_path, bags):
    """A truncated events.npy, a garbled meta.json, labels overwritten with 77 and NaN events were
    used as they were (then "loss became nan ... lower train.lr?"); each is now found when the
    cache is opened for training and the cache is extracted again, saying so."""
    cfg = tiny_config(tmp_path)
    logs: list[str] = []
    path = extract_pairs(cfg.data.pair_source(bags[:1]), cfg.data.cache_dir, progress=False, log=logs.append)
    good = {name: np.load(path / f"{name}.npy").copy() for name in ("events", "labels")}

    def truncate(p):
        data = (p / "events.npy").read_bytes()
        (p / "events.npy").write_bytes(data[: len(data) // 2])

    def garble(p):
        (p / "meta.json").write_text((p / "meta.json").read_text().replace('"labelled": 24', '"labelled": 3'))

    def labels77(p):
        a = np.load(p / "labels.npy", mmap_mode="r+")
        a[3, :4] = 77
        a.flush()

    def nan_events(p):
        a = np.load(p / "events.npy", mmap_mode="r+")
        a[:] = np.nan
        a.flush()

    for damage, why in ((truncate, "events.npy"), (garble, "checksum"), (labels77, "ids [77]"), (nan_events, "NaN")):
        damage(path)
        logs.clear()
        assert extract_pairs(cfg.data.pair_source(bags[:1]), cfg.data.cache_dir, progress=False, log=logs.append) == path
        assert any("is damaged" in s and why in s for s in logs), (why, logs)
        c = open_cache(path)
        assert np.array_equal(c.events, good["events"]) and np.array_equal(c.labels, good["labels"])
    logs.clear()
    extract_pairs(cfg.data.pair_source(bags[:1]), cfg.data.cache_dir, progress=False, log=logs.append)
    assert logs == []  # a sound cache is used as it is
