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
        The teacher (`teacher`) is a checkpoint of this package or a teacher card (models.teacher_card);
        a teacher of another class set is mapped into data.class_set (distill.teacher). With
        student.teacher_outputs cached (auto: for cards) it runs once per training frame before
        the loop (distill.teacher.TeacherOutputs), not per step, and is unloaded after.
        OUT defaults to train.out_dir/<teacher | student_<method>[_labels]>. It holds
        checkpoint.pt (latest, deployable), state.pt (everything --resume needs: step,
        networks, optimiser, scheduler, AMP scaler, RNG states; the data order follows from the
        step), tb/ (TensorBoard scalars and prediction images), config.yaml, metrics.json.
        resume=True continues from state.pt exactly where it stopped (bit-identical on CPU).
        SIGINT/SIGTERM save checkpoint + state before the process exits (KeyboardInterrupt).
        stop_after=k stops after step k as if interrupted (tests, chunked jobs).
        on_done(step, network) is called on every rank when the loop ends (before cleanup).
        OUT is locked for the run (atomic.DirLock): a second run into it refuses in one line
        naming the first's PID, or with wait=True waits for it; a killed run's lock is taken over.
        Under torchrun every rank calls it; rank 0 alone writes.

    validate(model, card, cache, indices, batch_size=8) -> dict
        mIoU of `model` on cached pairs through evdistill_ros.eval (the same numbers as
        `evdistill evaluate` on those frames).
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
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

from ..atomic import DirLock, atomic_write_text, clean_stale
from ..classes import IGNORE_INDEX, class_set
from ..eval import evaluate_model
from ..io.pair_cache import PairCache, cache_samples, open_cache
from ..models import Preprocessor, build_model, save_checkpoint
from ..models.card import NetworkCard
from ..models.predictor import Predictor
from . import losses
from .cache import extract_pairs
from .config import CE_CLASS_WEIGHTINGS, augment_config, model_config, stage_config
from .dataset import PairDataset, ResumableSampler, collate
from .ddp import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed, unwrap, wrap
from .methods import Method, Networks, method_for
from .optim import build_optimizer, build_scheduler
from .state import STATE_FORMAT, changed_keys, fingerprint, load_state, plain, save_state, seed_everything, \
    set_rng_state
from .teacher import TeacherOutputs, TeacherView

__all__ = ["run_training", "validate", "norm_stats", "TrainingInterrupted", "STATE_FORMAT"]


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after a SIGINT/SIGTERM once checkpoint and state are saved; `signum` says which."""

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum


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


def norm_stats(cache: PairCache, indices: np.ndarray, max_frames: int = 256) -> dict:
    """Per-channel mean/std of event embeddings and of APS frames over (up to) `max_frames` frames.

    Deterministic (evenly spaced frames), so every DDP rank computes the same numbers.
    """
    pick = indices[np.linspace(0, len(indices) - 1, min(max_frames, len(indices))).astype(np.int64)]
    ev = np.asarray(cache.events[np.sort(pick)], dtype=np.float64)
    aps = np.asarray(cache.aps[np.sort(pick)], dtype=np.float64) / 255.0
    ev_std = ev.std(axis=(0, 2, 3))
    aps_axes = (0, 1, 2) if aps.ndim == 4 else None  # RGB (n, H, W, 3): per channel; grey: one value
    return {"events_mean": ev.mean(axis=(0, 2, 3)).tolist(),
            "events_std": np.where(ev_std > 1e-6, ev_std, 1.0).tolist(),
            "aps_mean": np.atleast_1d(aps.mean(axis=aps_axes)).tolist(),
            "aps_std": np.maximum(np.atleast_1d(aps.std(axis=aps_axes)), 1e-3).tolist()}


def class_pixel_counts(cache: PairCache, indices: np.ndarray, num_classes: int, chunk: int = 256) -> np.ndarray:
    """Labelled pixels per class over the cached frames `indices` (ignore and unknown ids left out)."""
    counts = np.zeros(256, np.int64)
    idx = np.sort(np.asarray(indices))
    for s in range(0, len(idx), chunk):
        counts += np.bincount(np.asarray(cache.labels[idx[s:s + chunk]]).ravel(), minlength=256)
    return counts[:num_classes]


def label_loss(scfg: dict, cache: PairCache, indices: np.ndarray, num_classes: int, device: torch.device,
               log: Callable[[str], None]) -> losses.CrossEntropy:
    """The stage's cross-entropy: `train.ce_class_weighting` (none | median_frequency |
    median_frequency_sqrt, from the training labels) and `train.ce_top_fraction` (1 = every labelled
    pixel; < 1 bootstrapped)."""
    weighting, top = scfg.get("ce_class_weighting") or "none", float(scfg.get("ce_top_fraction") or 1.0)
    weight = None
    power = CE_CLASS_WEIGHTINGS[weighting]
    if power is not None:
        counts = class_pixel_counts(cache, indices, num_classes)
        weight = losses.median_frequency_weights(counts, power=power).to(device)
        log(f"cross-entropy class weights ({weighting.replace('_', ' ')}): "
            + ", ".join(f"{w:.2f}" for w in weight.tolist()))
    return losses.CrossEntropy(weight, top)


def checkpoint_card(method: Method, model: nn.Module, data_cfg: dict, cache: PairCache, stats: dict, extra: dict,
                    cfg: dict) -> NetworkCard:
    """What the checkpoint of `model` (the deployable network) says: architecture, input, size,
    preprocessing, classes, training."""
    rep, pre = method.metadata(data_cfg, stats)
    size = {"height": int(cache.meta["height"]), "width": int(cache.meta["width"])}
    return NetworkCard.from_dict({**model.config, "representation": rep, "input_size": size, "preprocessing": pre,
                                  **class_set(data_cfg.get("class_set", "ddd17")).to_dict(),
                                  "training": {"stage": method.stage, **extra, "config": plain(cfg)}})


def teacher_outputs_cached(mode: str, teacher: TeacherView) -> bool:
    """`student.teacher_outputs`: auto caches a teacher card's outputs, runs this package's live."""
    return mode == "cached" or (mode == "auto" and teacher.foreign)


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


def validate(model: nn.Module, card: NetworkCard, cache: PairCache, indices: np.ndarray, batch_size: int = 8) -> dict:
    """Evaluate on cached pairs through evdistill_ros.eval (labelled frames only); the network's
    training mode is as it was afterwards."""
    model = unwrap(model)
    was_training = model.training
    try:
        return evaluate_model(Predictor.from_model(model, card), cache_samples(cache, indices), card.modality,
                              batch_size=batch_size)
    finally:
        model.train(was_training)


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
                 stop_after: int | None = None, on_done: Callable[[int, nn.Module], None] | None = None,
                 wait: bool = False) -> Path:
    cfg = copy.deepcopy(config)
    st = cfg["student"]
    use_labels = bool(st["use_labels"] if use_labels is None else use_labels)
    strategy = method_for(stage, method or st["method"], use_labels, st)
    scfg = stage_config(cfg, stage)
    if stage == "student":
        st.update(method=strategy.extra["method"], use_labels=use_labels)
    teacher = teacher or st.get("teacher")
    # before any extraction or network is built
    for note in strategy.check_teacher(teacher, class_set(cfg["data"]["class_set"]), cfg["data"]["frame"],
                                       augment_config(cfg, stage)):
        log(note)
    if bags:
        cfg["data"]["bags"] = list(bags)

    probe = _device(scfg["device"], DistInfo())
    info = init_distributed(probe.type)
    device = _device(scfg["device"], info)
    try:
        run_dir = Path(out_dir or Path(scfg["out_dir"]) / strategy.name)
        # one run per folder: a second into the same --out would interleave checkpoints and logs
        with DirLock(run_dir, wait=wait, log=log) if info.is_main else contextlib.nullcontext():
            return _train(cfg, scfg, strategy, teacher if strategy.needs_teacher else None, run_dir, resume, info,
                          device, log, progress, stop_after, on_done)
    finally:
        cleanup(info)


def _train(cfg: dict, scfg: dict, method: Method, teacher_path: str | None, out_dir, resume: bool, info: DistInfo,
           device: torch.device, log, progress: bool, stop_after: int | None, on_done) -> Path:
    """The loop: data, the method's networks, resume, steps, checkpoints. Everything that
    depends on the method is asked of it."""
    if scfg.get("threads"):
        torch.set_num_threads(int(scfg["threads"]))
    main = info.is_main
    say = log if main else (lambda s: None)
    name = method.name
    run_dir = Path(out_dir)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        for leftover in clean_stale(run_dir):
            say(f"removed {leftover.name}, left by a run that did not finish writing it")

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
    if method.needs_labels and not cache.meta["labelled"]:
        raise ValueError(f"{name}: the training bags have no labels on {data['labels_topic']}")
    dataset = PairDataset(cache, all_idx, augment=augment_config(cfg, method.stage), labelled_only=method.needs_labels)
    method.ce = label_loss(scfg, cache, dataset.indices, int(model_config(cfg, method.stage)["num_classes"]), device, say)

    # --- networks
    w = method.weights
    seed_everything(int(scfg["seed"]))
    nets = method.build(model_config(cfg, method.stage), cache, teacher_path, device, say,
                        classes=class_set(data["class_set"]))
    net, a2e = nets.net, nets.a2e
    outputs = None
    if nets.teacher is not None and teacher_outputs_cached(cfg["student"]["teacher_outputs"], nets.teacher):
        if main:
            outputs = TeacherOutputs.build(nets.teacher, cache, device, say, progress=progress)
        barrier(info)
        if not main:
            outputs = TeacherOutputs.open(TeacherOutputs.location(nets.teacher, cache), cache)
        dataset.use_teacher_outputs(outputs.path)
        say(f"{name}: the teacher's outputs are read from {outputs.path} (computed once; "
            "student.teacher_outputs: live runs the teacher on every batch)")
    method.prepare(nets, cache, dataset.indices, device, say, outputs=outputs)
    if outputs is not None:
        nets.teacher.release()  # its outputs are stored: a large teacher need not hold memory (or a GPU) all run
    for m in nets.trained():
        m.to(device).train()
    params = [p for m in nets.trained() for p in m.named_parameters()]
    optimizer = build_optimizer(params, scfg)
    scheduler = build_scheduler(optimizer, scfg)
    amp = bool(scfg["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    extra = {"bags": list(data["bags"])}
    if method.stage == "student":
        extra = {**method.extra, "teacher": str(teacher_path) if teacher_path else None, **extra}
    card = checkpoint_card(method, _deployable(net), data, cache, stats, extra, cfg)
    prep = Preprocessor.for_card(card, any_size=True)

    # --- resume
    method_fp = method.fingerprint()
    if method.stage == "student":
        method_fp = {**method_fp, "teacher": str(teacher_path) if teacher_path else None}
        if outputs is not None:  # (runs from before the option ran the teacher live: they still resume)
            method_fp["teacher_outputs"] = "cached"
    fp = fingerprint(cfg, scfg, model_config(cfg, method.stage), method_fp, augment_config(cfg, method.stage))
    step = 0
    state_path, ckpt_path = run_dir / "state.pt", run_dir / "checkpoint.pt"
    if resume:
        if state_path.is_file():
            s = load_state(state_path)
            if s.get("name") != name:
                raise ValueError(f"{state_path}: not a training state of run {name!r}")
            changed = changed_keys(s.get("fingerprint") or {}, fp)
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
            set_rng_state(s["rng"])
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
    # the loop's view: DDP-wrapped trained networks, the frozen teacher as it is
    run_nets = Networks(net=wrap(net, info, device), prep=prep, a2e=wrap(a2e, info, device) if a2e is not None else None,
                        teacher=nets.teacher)

    writer = None
    if main:
        writer = SummaryWriter(str(run_dir / "tb"), purge_step=step if step else None)
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(plain(cfg), sort_keys=False))

    def save(at: int) -> None:
        if not main:
            return
        done = card.replace(training={**card.training, "step": at, "steps": total})
        save_checkpoint(ckpt_path, _deployable(net), done.to_dict())
        save_state(state_path, name=name, step=at, fingerprint=fp, model=net.state_dict(),
                   a2e=a2e.state_dict() if a2e is not None else None, optimizer=optimizer.state_dict(),
                   scheduler=scheduler.state_dict(), scaler=scaler.state_dict())

    def run_validation(at: int) -> dict | None:
        if val_cache is None or not main:
            return None
        res = validate(_deployable(net), card, val_cache, np.arange(len(val_cache)))
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
            ev = None if method.modality == "aps" else prep(batch["events"].to(device, non_blocking=True),
                                                            layout="bchw")
            aps01 = batch["aps"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            soft = batch["teacher"].to(device, non_blocking=True) if "teacher" in batch else None
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                terms = method.loss_terms(run_nets, ev, aps01, label, soft)
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
                _log_images(writer, net, prep, batch, ev, step, method.modality, IGNORE_INDEX,
                            class_set(cfg["data"]["class_set"]))
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
                raise TrainingInterrupted(f"stopped at step {step}", stopper.signum)
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


@torch.no_grad()
def _log_images(writer, net, prep, batch, ev, step, modality, ignore, classes) -> None:
    was = net.training
    net.eval()
    x = prep(batch["aps"], layout="bchw") if modality == "aps" else ev
    pred = net(x[:4].to(next(net.parameters()).device)).argmax(1).cpu().numpy()
    net.train(was)
    rows = []
    for i in range(pred.shape[0]):
        aps = (batch["aps"][i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        e = batch["events"][i].abs().sum(0).numpy()
        e = (255 * e / max(float(e.max()), 1e-6)).astype(np.uint8)
        lab = batch["label"][i].numpy().astype(np.int64)
        lab = np.where(lab == ignore, 255, lab).astype(np.uint8)
        rows.append(np.concatenate([np.repeat(aps, 3 // aps.shape[2], 2), np.repeat(e[..., None], 3, 2),
                                    classes.colorize(lab), classes.colorize(pred[i].astype(np.uint8))], axis=1))
    writer.add_image("aps | events | label | prediction", np.concatenate(rows, 0), step, dataformats="HWC")
