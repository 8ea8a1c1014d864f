"""Training loops of the APS teacher and the event students (supervised, KD, EvDistill).

    run_training(config, bags=None, stage="teacher", *, method=None, teacher=None, out_dir=None,
                 resume=False, use_labels=None, log=print, progress=True, stop_after=None) -> Path
        Train one network and return the path of its deployable checkpoint
        (OUT/checkpoint.pt, written with models.save_checkpoint: architecture, representation,
        window, input size and preprocessing, so `load_checkpoint` alone configures a node).
        stage "teacher": DeepLabv3+ on grey APS frames with labels (cross-entropy).
        stage "student": a network on event embeddings; `method` (default config
        student.method):
          supervised  cross-entropy on event labels (the baseline)
          kd          pixel-wise KD from the teacher's predictions on the paired APS frames, no labels
          evdistill   E2A reconstruction + pixel-wise KD + affinity-graph KD + A2E crafted pairs
                      (+ cross-entropy when `use_labels`); every term weighted by
                      student.weights (0 switches it off). See distill.losses for the formulas.
        OUT defaults to train.out_dir/<teacher | student_<method>[_labels]>. It holds
        checkpoint.pt (latest, deployable), state.pt (everything --resume needs: step,
        networks, optimiser, scheduler, AMP scaler, RNG states; the data order follows from the
        step), tb/ (TensorBoard scalars and prediction images), config.yaml, metrics.json.
        resume=True continues from state.pt exactly where it stopped (bit-identical on CPU).
        SIGINT/SIGTERM save checkpoint + state before the process exits (KeyboardInterrupt).
        stop_after=k stops after step k as if interrupted (tests, chunked jobs).
        on_done(step, network) is called on every rank when the loop ends (before cleanup).
        Under torchrun every rank calls it; rank 0 alone writes.

    validate(model, meta, cache, indices, modality, batch_size=8) -> dict
        mIoU of `model` on cached pairs through evdistill_ros.eval (the same numbers as
        `evdistill evaluate` on those frames).
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from tqdm import tqdm

from ..atomic import atomic_write, atomic_write_text
from ..classes import IGNORE_INDEX, colorize
from . import losses
from ..eval import evaluate_model
from ..events.spec import EventInput
from ..io.pair_cache import PairCache, cache_samples, open_cache
from ..models import Preprocessor, build_a2e, build_model, load_checkpoint, save_checkpoint
from ..models.pretrained import load_pretrained
from .cache import extract_pairs
from .config import METHODS, model_config, stage_config
from .dataset import PairDataset, ResumableSampler, collate
from .ddp import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed, unwrap, wrap
from .optim import build_optimizer, build_scheduler

STATE_FORMAT = "evdistill_ros.train_state"


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after a SIGINT/SIGTERM once checkpoint and state are saved."""


def run_name(stage: str, method: str | None = None, use_labels: bool = False) -> str:
    if stage == "teacher":
        return "teacher"
    return f"student_{method}" + ("_labels" if use_labels and method == "evdistill" else "")


def _device(spec: str, info: DistInfo) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"train.device={spec} but CUDA is not available")
        if info.enabled:
            dev = torch.device("cuda", info.local_rank)
    return dev


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    """The RNG states as tensors and plain numbers, so state.pt loads with weights_only=True."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": {"version": int(version), "mt": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s: dict) -> None:
    py, npy = s["python"], s["numpy"]
    random.setstate((py["version"], tuple(int(v) for v in py["mt"].tolist()), py["gauss"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def load_state(path: Path) -> dict:
    """A training state file, loaded without unpickling anything but tensors and plain data;
    ValueError with one line naming the file when it is not a readable state."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a truncated or foreign file
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise ValueError(f"{path} is not a readable training state ({type(exc).__name__}: {first}); "
                         "delete it to start over, or resume from a good copy") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not an evdistill_ros training state")
    return state


def norm_stats(cache: PairCache, indices: np.ndarray, max_frames: int = 256) -> dict:
    """Per-channel mean/std of event embeddings and mean/std of APS over (up to) `max_frames` frames.

    Deterministic (evenly spaced frames), so every DDP rank computes the same numbers.
    """
    pick = indices[np.linspace(0, len(indices) - 1, min(max_frames, len(indices))).astype(np.int64)]
    ev = np.asarray(cache.events[np.sort(pick)], dtype=np.float64)
    aps = np.asarray(cache.aps[np.sort(pick)], dtype=np.float64) / 255.0
    ev_std = ev.std(axis=(0, 2, 3))
    return {"events_mean": ev.mean(axis=(0, 2, 3)).tolist(),
            "events_std": np.where(ev_std > 1e-6, ev_std, 1.0).tolist(),
            "aps_mean": float(aps.mean()), "aps_std": float(max(aps.std(), 1e-3))}


def _metadata(cfg: dict, stage: str, cache: PairCache, stats: dict, extra: dict) -> dict:
    d = cfg["data"]
    size = {"height": int(cache.meta["height"]), "width": int(cache.meta["width"])}
    # "frame" and "resize" name the conversions the cache applied (frames.to_gray_u8 and
    # frames.resize), so inference gives the network the same pixels (models.preprocess)
    if stage == "teacher":
        rep: object = "aps"
        pre = {"frame": "gray", "resize": "area", "scale": "auto", "channels": "exact",
               "mean": [stats["aps_mean"]], "std": [stats["aps_std"]]}
    else:
        rep = EventInput.from_config(d).to_dict()
        pre = {"resize": "area", "scale": 1.0, "channels": "exact",
               "mean": stats["events_mean"], "std": stats["events_std"]}
    return {"representation": rep, "input_size": size, "preprocessing": pre,
            "training": {"stage": stage, **extra, "config": _plain_cfg(cfg)}}


def _plain_cfg(cfg: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in cfg.items() if not k.startswith("_")}, default=str))


def _fingerprint(cfg: dict, scfg: dict, stage: str, method, use_labels, teacher) -> dict:
    """What a resumed run must share with the saved one (not logging/checkpoint cadence or device)."""
    free = {"log_every", "image_every", "val_every", "ckpt_every", "out_dir", "device", "num_workers", "threads"}
    data = {k: v for k, v in cfg["data"].items() if k not in ("cache_dir", "val_bags")}
    fp = {"train": {k: v for k, v in scfg.items() if k not in free}, "model": model_config(cfg, stage),
          "data": data, "augment": cfg["augment"]}
    if stage == "student":
        fp["student"] = {k: v for k, v in cfg["student"].items() if k in ("temperature", "affinity_nodes", "weights")}
        fp["student"].update(method=method, use_labels=use_labels, teacher=str(teacher) if teacher else None)
    return _plain_cfg(fp)


def _changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def _deployable(model: nn.Module) -> nn.Module:
    """The network without its training-only reconstruction head (what nodes run)."""
    m = unwrap(model)
    conf = copy.deepcopy(m.config)
    if not conf["options"].get("with_reconstruction"):
        return m
    conf["options"]["with_reconstruction"] = False
    opts = {k: v for k, v in conf.pop("options").items() if k != "reconstruction_channels"}
    with torch.random.fork_rng(devices=[]):  # weight init must not move the training RNG (exact resume)
        dep = build_model(**conf, **opts)
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("reconstruction.")}
    dep.load_state_dict(state)
    return dep


def _build_net(mcfg: dict, in_channels: int, with_reconstruction: bool = False,
               log: Callable[[str], None] = print) -> nn.Module:
    opts = {k: v for k, v in mcfg.items() if k not in ("arch", "backbone", "output_stride", "num_classes", "pretrained")
            and v is not None}
    if with_reconstruction:
        opts["with_reconstruction"] = True
    model = build_model(arch=mcfg["arch"], backbone=mcfg["backbone"], in_channels=in_channels,
                        num_classes=int(mcfg["num_classes"]), output_stride=int(mcfg["output_stride"]), **opts)
    if mcfg.get("pretrained"):
        try:
            report = load_pretrained(model, mcfg["pretrained"])
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"model.pretrained: {exc}") from None
        log(f"model.pretrained: {report.summary()}")
    return model


def validate(model: nn.Module, meta: dict, cache: PairCache, indices: np.ndarray, modality: str,
             batch_size: int = 8) -> dict:
    """Evaluate on cached pairs through evdistill_ros.eval (labelled frames only)."""
    samples = cache_samples(cache, indices)
    return evaluate_model(unwrap(model), meta, samples, modality, batch_size=batch_size)


class _Stopper:
    """SIGINT/SIGTERM -> a flag the loop checks after each step (main thread only)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self) -> "_Stopper":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # second signal: give up saving
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def run_training(config: dict, bags: list[str] | None = None, stage: str = "teacher", *, method: str | None = None,
                 teacher: str | None = None, out_dir: str | os.PathLike | None = None, resume: bool = False,
                 use_labels: bool | None = None, log: Callable[[str], None] = print, progress: bool = True,
                 stop_after: int | None = None, on_done: Callable[[int, nn.Module], None] | None = None) -> Path:
    if stage not in ("teacher", "student"):
        raise ValueError(f"stage must be 'teacher' or 'student', got {stage!r}")
    cfg = copy.deepcopy(config)
    scfg = stage_config(cfg, stage)
    st = cfg["student"]
    method = method or st["method"]
    if stage == "student" and method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    use_labels = bool(st["use_labels"] if use_labels is None else use_labels)
    if stage == "student":
        st.update(method=method, use_labels=use_labels)
    teacher = teacher or st.get("teacher")
    if stage == "student" and method in ("kd", "evdistill") and not teacher:
        raise ValueError(f"method {method} needs a teacher checkpoint (--teacher or student.teacher)")
    if bags:
        cfg["data"]["bags"] = list(bags)

    probe = _device(scfg["device"], DistInfo())
    info = init_distributed(probe.type)
    device = _device(scfg["device"], info)
    try:
        return _train(cfg, scfg, stage, method, use_labels, teacher, out_dir, resume, info, device, log, progress,
                      stop_after, on_done)
    finally:
        cleanup(info)


def _train(cfg, scfg, stage, method, use_labels, teacher_path, out_dir, resume, info, device, log, progress,
           stop_after, on_done) -> Path:
    if scfg.get("threads"):
        torch.set_num_threads(int(scfg["threads"]))
    main = info.is_main
    say = log if main else (lambda s: None)
    name = run_name(stage, method, use_labels)
    run_dir = Path(out_dir or Path(scfg["out_dir"]) / name)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)

    # --- data: rank 0 extracts, the others open the same cache
    data = cfg["data"]
    if main:
        cache_path = extract_pairs(data["bags"], data, progress=progress, log=say)
    barrier(info)
    if not main:
        cache_path = extract_pairs(data["bags"], data, progress=False, log=lambda s: None)
    cache = open_cache(cache_path)
    val_cache = None
    if data.get("val_bags"):
        if main:
            extract_pairs(data["val_bags"], data, progress=progress, log=say)
        barrier(info)
        val_cache = open_cache(extract_pairs(data["val_bags"], data, progress=False, log=lambda s: None))
    all_idx = np.arange(len(cache))
    stats = norm_stats(cache, all_idx)
    needs_labels = stage == "teacher" or method == "supervised"
    if needs_labels and not cache.meta["labelled"]:
        raise ValueError(f"{stage} {method or ''}: the training bags have no labels on {data['labels_topic']}")
    dataset = PairDataset(cache, all_idx, augment=cfg["augment"], labelled_only=needs_labels)

    # --- networks
    w = {k: float(v) for k, v in cfg["student"]["weights"].items()}
    T = float(cfg["student"]["temperature"])
    nodes = int(cfg["student"]["affinity_nodes"])
    mcfg = model_config(cfg, stage)
    _seed_everything(int(scfg["seed"]))
    teacher_net, teacher_meta, a2e = None, None, None
    if stage == "teacher":
        net = _build_net(mcfg, 1, log=say)
    else:
        net = _build_net(mcfg, int(cache.meta["channels"]), with_reconstruction=method == "evdistill" and w["recon"] > 0,
                         log=say)
        if method in ("kd", "evdistill"):
            teacher_net, teacher_meta = load_checkpoint(teacher_path, device=device)
            teacher_net.eval().requires_grad_(False)
        if method == "evdistill" and (w["a2e"] > 0 or w["a2e_gen"] > 0):
            a2e = build_a2e(in_channels=teacher_net.in_channels, out_channels=int(cache.meta["channels"]),
                            activation="none")
    net.to(device).train()
    params = list(net.named_parameters()) + (list(a2e.named_parameters()) if a2e is not None else [])
    if a2e is not None:
        a2e.to(device).train()
    optimizer = build_optimizer(params, scfg)
    scheduler = build_scheduler(optimizer, scfg)
    amp = bool(scfg["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    extra = {"method": method, "use_labels": use_labels, "teacher": str(teacher_path) if teacher_path else None,
             "bags": list(data["bags"])} if stage == "student" else {"bags": list(data["bags"])}
    meta = _metadata(cfg, stage, cache, stats, extra)
    prep = Preprocessor.from_metadata({**meta, "in_channels": unwrap(net).in_channels, "input_size": None})
    prep_t = None
    if teacher_meta is not None:
        prep_t = Preprocessor.from_metadata({**teacher_meta, "input_size": None})

    # --- resume
    fingerprint = _fingerprint(cfg, scfg, stage, method, use_labels, teacher_path)
    step = 0
    state_path, ckpt_path = run_dir / "state.pt", run_dir / "checkpoint.pt"
    if resume:
        if state_path.is_file():
            s = load_state(state_path)
            if s.get("name") != name:
                raise ValueError(f"{state_path}: not a training state of run {name!r}")
            changed = _changed_keys(s.get("fingerprint") or {}, fingerprint)
            if changed:
                raise ValueError(f"{state_path}: the configuration changed since it was saved ({', '.join(changed[:5])}); "
                                 "resume with the same config or use another --out")
            net.load_state_dict(s["model"])
            if a2e is not None:
                a2e.load_state_dict(s["a2e"])
            optimizer.load_state_dict(s["optimizer"])
            scheduler.load_state_dict(s["scheduler"])
            scaler.load_state_dict(s["scaler"])
            step = int(s["step"])
            _set_rng_state(s["rng"])
            say(f"resumed {name} at step {step} from {state_path}")
        else:
            say(f"--resume: no {state_path} yet, starting {name} from step 0")

    total = int(scfg["steps"])
    bs = int(scfg["batch_size"])
    sampler = ResumableSampler(len(dataset), bs, seed=int(scfg["seed"]), num_replicas=info.world_size,
                               rank=info.rank, start_step=step)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=bs, sampler=sampler, collate_fn=collate, num_workers=int(scfg["num_workers"]),
        drop_last=True, generator=torch.Generator().manual_seed(int(scfg["seed"])),
        persistent_workers=False, pin_memory=device.type == "cuda")
    ddp_net = wrap(net, info, device)
    ddp_a2e = wrap(a2e, info, device) if a2e is not None else None

    writer = None
    if main:
        writer = SummaryWriter(str(run_dir / "tb"), purge_step=step if step else None)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(_plain_cfg(cfg), sort_keys=False))

    def save(at: int) -> None:
        if not main:
            return
        m = {**meta, "training": {**meta["training"], "step": at, "steps": total}}
        save_checkpoint(ckpt_path, _deployable(net), m)
        with atomic_write(state_path, "wb") as f:
            torch.save({
                "format": STATE_FORMAT, "name": name, "step": at, "fingerprint": fingerprint,
                "model": net.state_dict(), "a2e": a2e.state_dict() if a2e is not None else None,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": _rng_state(),
            }, f)

    def run_validation(at: int) -> dict | None:
        if val_cache is None or not main:
            return None
        net.eval()
        res = validate(_deployable(net), {**meta, "in_channels": unwrap(net).in_channels}, val_cache,
                       np.arange(len(val_cache)), "aps" if stage == "teacher" else "events")
        net.train()
        if writer is not None and res.get("miou") is not None:
            writer.add_scalar("val/miou", res["miou"], at)
            writer.add_scalar("val/miou_all", res.get("miou_all", float("nan")), at)
        say(f"step {at}: validation mIoU {100 * res['miou']:.2f}")
        return res

    bar = tqdm(total=total, initial=step, desc=name, unit="step", disable=not (progress and main), dynamic_ncols=True)
    it = iter(loader)
    last_terms: dict = {}
    first_terms: dict = {}
    t0 = time.time()
    with _Stopper() as stopper:
        while step < total:
            batch = next(it)
            # the teacher never sees events: no embedding is prepared for it
            ev = None if stage == "teacher" else prep(batch["events"].to(device, non_blocking=True), layout="bchw")
            aps01 = batch["aps"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                terms = _loss_terms(stage, method, use_labels, w, T, nodes, ddp_net, ddp_a2e, teacher_net, prep,
                                    prep_t, ev, aps01, label)
                loss = sum(w[k] * v for k, v in terms.items() if w[k] > 0)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if scfg.get("grad_clip"):
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_([p for _, p in params], float(scfg["grad_clip"]))
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            if not math.isfinite(float(loss.detach())):
                raise RuntimeError(f"{name}: loss became {float(loss)} at step {step} (lower train.lr?)")
            if step % int(scfg["log_every"]) == 0 or step == total:
                logged = {k: float(all_reduce_mean(v.detach(), info)) for k, v in terms.items()}
                logged["total"] = float(all_reduce_mean(loss.detach(), info))
                last_terms = logged
                first_terms = first_terms or logged
                if writer is not None:
                    for k, v in logged.items():
                        writer.add_scalar(f"loss/{k}", v, step)
                    writer.add_scalar("lr", optimizer.param_groups[0]["lr"], step)
                bar.set_postfix(loss=f"{logged['total']:.3f}")
            if writer is not None and scfg.get("image_every") and step % int(scfg["image_every"]) == 0:
                _log_images(writer, net, prep, batch, ev, step, stage, IGNORE_INDEX)
            bar.update(1)
            if scfg.get("val_every") and step % int(scfg["val_every"]) == 0 and step < total:
                run_validation(step)
            interrupted = stopper.signum is not None
            if step % int(scfg["ckpt_every"]) == 0 or step == total or interrupted or step == stop_after:
                save(step)
            if interrupted:
                bar.close()
                say(f"{name}: stopped by signal {stopper.signum} at step {step}; state saved to {state_path} "
                    "(continue with --resume)")
                raise TrainingInterrupted(f"stopped at step {step}")
            if stop_after is not None and step >= stop_after:
                break
    bar.close()
    if on_done is not None:
        on_done(step, net)
    barrier(info)
    if main:
        elapsed = time.time() - t0
        result = {"name": name, "step": step, "steps": total, "seconds": round(elapsed, 1),
                  "first_losses": first_terms, "last_losses": last_terms, "checkpoint": str(ckpt_path)}
        if step >= total:
            val = run_validation(step)
            if val is not None:
                result["validation"] = val
        atomic_write_text(run_dir / "metrics.json", json.dumps(result, indent=1, default=float))
        say(f"{name}: {step}/{total} steps in {elapsed:.0f} s, loss {last_terms.get('total', float('nan')):.4f} -> {ckpt_path}")
        writer.close()
    return ckpt_path


def _loss_terms(stage, method, use_labels, w, T, nodes, net, a2e, teacher, prep, prep_t, ev, aps01, label) -> dict:
    """Unweighted loss terms of one batch (only those with a non-zero weight are computed)."""
    if stage == "teacher":
        out = net(prep(aps01, layout="bchw"))
        return {"ce": losses.cross_entropy(out, label)}
    if method == "supervised":
        return {"ce": losses.cross_entropy(net(ev), label)}
    with torch.no_grad():
        t_out = teacher(prep_t(aps01, layout="bchw"), return_features=True)
    if method == "kd":
        out = net(ev, return_features=True)
        return {"pixel": losses.pixel_kd(out["logits_lowres"], t_out["logits_lowres"], T)}
    terms: dict = {}
    B = ev.shape[0]
    inputs = ev
    if a2e is not None:
        fake = a2e(prep_t(aps01, layout="bchw"))
        if w["a2e_gen"] > 0:
            terms["a2e_gen"] = losses.reconstruction_loss(fake, ev)
        if w["a2e"] > 0:
            # crafted pairs: the student sees generated events, the teacher the APS frame they came from;
            # detached so the generator learns from real events only (no shortcut through the student)
            inputs = torch.cat([ev, fake.detach()])
    out = net(inputs, return_features=True)
    if use_labels and w["ce"] > 0:
        terms["ce"] = losses.cross_entropy(out["logits"][:B], label)
    if w["recon"] > 0:
        terms["recon"] = losses.reconstruction_loss(out["reconstruction"][:B], aps01)
    if w["pixel"] > 0:
        terms["pixel"] = losses.pixel_kd(out["logits_lowres"][:B], t_out["logits_lowres"], T)
    if w["affinity"] > 0:
        terms["affinity"] = losses.affinity_kd(out["aspp"][:B], t_out["aspp"], nodes)
    if inputs.shape[0] > B:
        terms["a2e"] = losses.pixel_kd(out["logits_lowres"][B:], t_out["logits_lowres"], T)
    return terms


@torch.no_grad()
def _log_images(writer, net, prep, batch, ev, step, stage, ignore) -> None:
    was = net.training
    net.eval()
    x = prep(batch["aps"], layout="bchw") if stage == "teacher" else ev
    pred = net(x[:4].to(next(net.parameters()).device)).argmax(1).cpu().numpy()
    net.train(was)
    rows = []
    for i in range(pred.shape[0]):
        aps = (batch["aps"][i, 0].numpy() * 255).astype(np.uint8)
        e = batch["events"][i].abs().sum(0).numpy()
        e = (255 * e / max(float(e.max()), 1e-6)).astype(np.uint8)
        lab = batch["label"][i].numpy().astype(np.int64)
        lab = np.where(lab == ignore, 255, lab).astype(np.uint8)
        rows.append(np.concatenate([np.repeat(aps[..., None], 3, 2), np.repeat(e[..., None], 3, 2),
                                    colorize(lab), colorize(pred[i].astype(np.uint8))], axis=1))
    writer.add_image("aps | events | label | prediction", np.concatenate(rows, 0), step, dataformats="HWC")
