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
from ..io.pair_writer import extract_pairs
from ..models import Preprocessor, build_model, save_checkpoint
from ..models.card import NetworkCard
from ..models.predictor import Predictor
from .config import Config
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


def checkpoint_card(method: Method, model: nn.Module, config: Config, cache: PairCache, stats: dict,
                    record: dict) -> NetworkCard:
    """What the checkpoint of `model` (the deployable network) says: architecture, input, size,
    preprocessing, classes, training (`record`: the method's and the data's, beside the config)."""
    rep, pre = method.metadata(config.data, stats)
    size = {"height": int(cache.meta["height"]), "width": int(cache.meta["width"])}
    return NetworkCard.from_dict({**model.config, "representation": rep, "input_size": size, "preprocessing": pre,
                                  **class_set(config.data.class_set).to_dict(),
                                  "training": {"stage": method.stage, **record, "config": plain(config.to_dict())}})


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


def run_training(config: Config, bags: list[str] | None = None, stage: str = "teacher", *,
                 method: str | None = None, teacher: str | None = None, out_dir: str | os.PathLike | None = None,
                 resume: bool = False, use_labels: bool | None = None, log: Callable[[str], None] = print,
                 progress: bool = True, stop_after: int | None = None,
                 on_done: Callable[[int, nn.Module], None] | None = None, wait: bool = False) -> Path:
    st = config.student
    use_labels = bool(st.use_labels if use_labels is None else use_labels)
    strategy = method_for(stage, method or st.method, use_labels, st)
    if stage == "student":
        config = config.replace(student={"method": strategy.method, "use_labels": use_labels})
    teacher = teacher or st.teacher
    # before any extraction or network is built
    for note in strategy.check_teacher(teacher, class_set(config.data.class_set), config.data.frame,
                                       config.augment_for(stage)):
        log(note)
    if bags:
        config = config.replace(data={"bags": list(bags)})
    train = config.train_for(stage)
    probe = _device(train.device, DistInfo())
    info = init_distributed(probe.type)
    device = _device(train.device, info)
    try:
        run_dir = Path(out_dir or Path(train.out_dir) / strategy.name)
        # one run per folder: a second into the same --out would interleave checkpoints and logs
        with DirLock(run_dir, wait=wait, log=log) if info.is_main else contextlib.nullcontext():
            run = TrainingRun(config, strategy, teacher if strategy.needs_teacher else None, run_dir, info, device,
                              log, progress)
            return run.run(resume, stop_after, on_done)
    finally:
        cleanup(info)


class TrainingRun:
    """One network's training as small steps over one state: data, networks, resume, loop, finish.
    Everything that depends on the method is asked of it (distill.methods)."""

    def __init__(self, config: Config, method: Method, teacher_path: str | None, run_dir: Path, info: DistInfo,
                 device: torch.device, log: Callable[[str], None], progress: bool) -> None:
        self.config, self.method, self.teacher_path = config, method, teacher_path
        self.run_dir, self.info, self.device, self.progress = Path(run_dir), info, device, progress
        self.main = info.is_main
        self.say = log if self.main else (lambda s: None)
        self.train = config.train_for(method.stage)
        self.state_path, self.ckpt_path = self.run_dir / "state.pt", self.run_dir / "checkpoint.pt"
        self.step = 0
        self.writer = None

    def run(self, resume: bool, stop_after: int | None, on_done: Callable[[int, nn.Module], None] | None) -> Path:
        if self.train.threads:
            torch.set_num_threads(int(self.train.threads))
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for leftover in clean_stale(self.run_dir):
                self.say(f"removed {leftover.name}, left by a run that did not finish writing it")
        self.load_data()
        self.build_networks()
        if resume:
            self.resume()
        self.loop(stop_after)
        if on_done is not None:
            on_done(self.step, self.net)
        barrier(self.info)
        return self.finish()

    def _pairs(self, bags: list[str]) -> PairCache:
        """Rank 0 extracts (with progress), the others find the same cache after it (each cache is
        looked up and verified once per rank)."""
        source, root = self.config.data.pair_source(bags), self.config.data.cache_dir
        path = extract_pairs(source, root, progress=self.progress, log=self.say) if self.main else None
        barrier(self.info)
        return open_cache(path or extract_pairs(source, root, progress=False, log=lambda s: None))

    def load_data(self) -> None:
        data, method = self.config.data, self.method
        self.cache = self._pairs(data.bags)
        self.val_cache = self._pairs(data.val_bags) if data.val_bags else None
        self.stats = norm_stats(self.cache, np.arange(len(self.cache)))
        if method.needs_labels and not self.cache.meta["labelled"]:
            raise ValueError(f"{method.name}: the training bags have no labels on {data.labels_topic}")
        self.dataset = PairDataset(self.cache, np.arange(len(self.cache)),
                                   augment=self.config.augment_for(method.stage), labelled_only=method.needs_labels)

    def build_networks(self) -> None:
        method, device, cache = self.method, self.device, self.cache
        seed_everything(int(self.train.seed))
        nets = method.build(self.config.model_for(method.stage), cache, self.teacher_path, device, self.say,
                            classes=class_set(self.config.data.class_set))
        self.net, self.a2e, self.outputs = nets.net, nets.a2e, None
        mode = self.config.student.teacher_outputs
        if nets.teacher is not None and teacher_outputs_cached(mode, nets.teacher):
            if self.main:
                self.outputs = TeacherOutputs.build(nets.teacher, cache, device, self.say, progress=self.progress)
            barrier(self.info)
            if not self.main:
                self.outputs = TeacherOutputs.open(TeacherOutputs.location(nets.teacher, cache), cache)
            self.dataset.use_teacher_outputs(self.outputs.path)
            self.say(f"{method.name}: the teacher's outputs are read from {self.outputs.path} (computed once; "
                     "student.teacher_outputs: live runs the teacher on every batch)")
        self.ctx = method.prepare(nets, self.dataset, self.train, device, self.say,
                                  outputs=self.outputs)
        if self.outputs is not None:
            nets.teacher.release()  # its outputs are stored: a large teacher need not hold memory (or a GPU) all run
        for m in nets.trained():
            m.to(device).train()
        self.params = [p for m in nets.trained() for p in m.named_parameters()]
        self.optimizer = build_optimizer(self.params, self.train)
        self.scheduler = build_scheduler(self.optimizer, self.train)
        self.amp = bool(self.train.amp) and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        record = {**method.record(self.teacher_path), "bags": list(self.config.data.bags)}
        self.card = checkpoint_card(method, _deployable(self.net), self.config, cache, self.stats, record)
        self.prep = Preprocessor.for_card(self.card, any_size=True)
        # the loop's view: DDP-wrapped trained networks, the frozen teacher as it is
        self.run_nets = Networks(net=wrap(self.net, self.info, device), prep=self.prep,
                                 a2e=wrap(self.a2e, self.info, device) if self.a2e is not None else None,
                                 teacher=nets.teacher)
        self.fingerprint = fingerprint(self.config, self.train, self.config.model_for(method.stage),
                                       method.fingerprint(self.teacher_path, self.outputs is not None),
                                       self.config.augment_for(method.stage))

    def resume(self) -> None:
        name, path = self.method.name, self.state_path
        if not path.is_file():
            self.say(f"--resume: no {path} yet, starting {name} from step 0")
            return
        s = load_state(path)
        if s.get("name") != name:
            raise ValueError(f"{path}: not a training state of run {name!r}")
        changed = changed_keys(s.get("fingerprint") or {}, self.fingerprint)
        if changed:
            raise ValueError(f"{path}: the configuration changed since it was saved ({', '.join(changed[:5])}); "
                             "resume with the same config or use another --out")
        self.net.load_state_dict(s["model"])
        if self.a2e is not None:
            self.a2e.load_state_dict(s["a2e"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        self.scaler.load_state_dict(s["scaler"])
        self.step = int(s["step"])
        set_rng_state(s["rng"])
        self.say(f"resumed {name} at step {self.step} from {path}")

    def save(self, at: int) -> None:
        if not self.main:
            return
        done = self.card.replace(training={**self.card.training, "step": at, "steps": int(self.train.steps)})
        save_checkpoint(self.ckpt_path, _deployable(self.net), done.to_dict())
        save_state(self.state_path, name=self.method.name, step=at, fingerprint=self.fingerprint,
                   model=self.net.state_dict(), a2e=self.a2e.state_dict() if self.a2e is not None else None,
                   optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                   scaler=self.scaler.state_dict())

    def validation(self, at: int) -> dict | None:
        if self.val_cache is None or not self.main:
            return None
        res = validate(_deployable(self.net), self.card, self.val_cache, np.arange(len(self.val_cache)))
        if self.writer is not None and res.get("miou") is not None:
            self.writer.add_scalar("val/miou", res["miou"], at)
            self.writer.add_scalar("val/miou_all", res.get("miou_all", float("nan")), at)
        self.say(f"step {at}: validation mIoU {100 * res['miou']:.2f}")
        return res

    def _loader(self) -> torch.utils.data.DataLoader:
        t, info = self.train, self.info
        bs = int(t.batch_size)
        sampler = ResumableSampler(len(self.dataset), bs, seed=int(t.seed), num_replicas=info.world_size,
                                   rank=info.rank, start_step=self.step)
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=bs, sampler=sampler, collate_fn=collate, num_workers=int(t.num_workers),
            drop_last=True, generator=torch.Generator().manual_seed(int(t.seed)),
            persistent_workers=False, pin_memory=self.device.type == "cuda")

    def _optimise(self, batch: dict) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
        """One step on one batch: (unweighted terms, weighted loss, the batch's event input)."""
        device, method, w = self.device, self.method, self.method.weights
        # the teacher never sees events: no embedding is prepared for it
        ev = None if method.modality == "aps" else self.prep(batch["events"].to(device, non_blocking=True),
                                                             layout="bchw")
        aps01 = batch["aps"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        soft = batch["teacher"].to(device, non_blocking=True) if "teacher" in batch else None
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=self.amp):
            terms = method.loss_terms(self.run_nets, self.ctx, ev, aps01, label, soft)
            loss = sum(w[k] * v for k, v in terms.items() if w[k] > 0)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.train.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([p for _, p in self.params], float(self.train.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f"{method.name}: loss became {float(loss)} at step {self.step} (lower train.lr?)")
        return terms, loss, ev

    def _log(self, terms: dict, loss: torch.Tensor, batch: dict, ev: torch.Tensor | None, bar: tqdm) -> None:
        t, step = self.train, self.step
        if step % int(t.log_every) == 0 or step == int(t.steps):
            logged = {k: float(all_reduce_mean(v.detach(), self.info)) for k, v in terms.items()}
            logged["total"] = float(all_reduce_mean(loss.detach(), self.info))
            self.last_terms = logged
            self.first_terms = self.first_terms or logged
            if self.writer is not None:
                for k, v in logged.items():
                    self.writer.add_scalar(f"loss/{k}", v, step)
                self.writer.add_scalar("lr", self.optimizer.param_groups[0]["lr"], step)
            bar.set_postfix(loss=f"{logged['total']:.3f}")
        if self.writer is not None and t.image_every and step % int(t.image_every) == 0:
            _log_images(self.writer, self.net, self.prep, batch, ev, step, self.method.modality, IGNORE_INDEX,
                        class_set(self.config.data.class_set))

    def loop(self, stop_after: int | None) -> None:
        t, name, total = self.train, self.method.name, int(self.train.steps)
        if self.main:
            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step if self.step else None)
            atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(plain(self.config.to_dict()),
                                                                            sort_keys=False))
        bar = tqdm(total=total, initial=self.step, desc=name, unit="step", disable=not (self.progress and self.main),
                   dynamic_ncols=True)
        it = iter(self._loader())
        self.last_terms, self.first_terms = {}, {}
        self.t0 = time.time()
        with _Stopper() as stopper:
            while self.step < total:
                batch = next(it)
                terms, loss, ev = self._optimise(batch)
                self._log(terms, loss, batch, ev, bar)
                bar.update(1)
                step = self.step
                if t.val_every and step % int(t.val_every) == 0 and step < total:
                    self.validation(step)
                interrupted = stopper.signum is not None
                if step % int(t.ckpt_every) == 0 or step == total or interrupted or step == stop_after:
                    self.save(step)
                if interrupted:
                    bar.close()
                    self.say(f"{name}: stopped by signal {stopper.signum} at step {step}; state saved to "
                             f"{self.state_path} (continue with --resume)")
                    raise TrainingInterrupted(f"stopped at step {step}", stopper.signum)
                if stop_after is not None and step >= stop_after:
                    break
        bar.close()

    def finish(self) -> Path:
        if not self.main:
            return self.ckpt_path
        total, elapsed = int(self.train.steps), time.time() - self.t0
        result = {"name": self.method.name, "step": self.step, "steps": total, "seconds": round(elapsed, 1),
                  "first_losses": self.first_terms, "last_losses": self.last_terms, "checkpoint": str(self.ckpt_path)}
        if self.step >= total:
            val = self.validation(self.step)
            if val is not None:
                result["validation"] = val
        atomic_write_text(self.run_dir / "metrics.json", json.dumps(result, indent=1, default=float))
        self.say(f"{self.method.name}: {self.step}/{total} steps in {elapsed:.0f} s, loss "
                 f"{self.last_terms.get('total', float('nan')):.4f} -> {self.ckpt_path}")
        self.writer.close()
        return self.ckpt_path


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
