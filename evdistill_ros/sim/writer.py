"""Simulate DAVIS sequences into ROS1 bags: events, APS frames, labels, camera info.

Topics of every bag (all header stamps start at ``start_ns``, default 1.6e9 s):

    /davis/left/events       dvs_msgs/EventArray    packets of ``packet_hz`` (30 Hz)
    /davis/left/image_raw    sensor_msgs/Image      mono8 APS at ``fps`` (20 Hz), stamped mid-exposure
    /davis/left/labels       sensor_msgs/Image      mono8 class id per pixel (255 = ignore), same stamp
                                                    as its frame, the scene at that instant (absent
                                                    with ``labels=False``: unlabelled recordings)
    /davis/left/camera_info  sensor_msgs/CameraInfo one per frame (pinhole K, no distortion)

The loop renders the scene at adaptive times: each step is as long as keeps the largest
optic flow below ``max_pixel_motion`` pixels (within [min_dt, max_dt]), and renders are
forced at each frame's exposure start, mid point (labels) and end. Events come from
`esim.EventSimulator` between consecutive renders; APS frames are the time average of the
renders inside the exposure window (trapezoid rule), then `aps.ApsSensor`.

Public:
    SimConfig                      all parameters (a frozen dataclass; ``replace`` to change)
    simulate_sequence(path, *, seconds=1.0, seed=0, width=346, height=260, night=False,
                      config=None, progress=False, **overrides) -> dict   (stats, see below)
    simulate_dataset(out_dir, *, sequences, seconds, seed, night=False, workers=1,
                     config=None, progress=True, preview=False, **overrides) -> dict (manifest)

The stats dict: path, seed, seconds, width, height, night, events, packets, frames, renders,
class_pixels (6 counts over all label images), class_frequency, exposure_s (mean),
event_rate_hz, timings_s {render, events, aps, write, total}.
"""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write_text, clean_stale
from ..classes import SIM, class_map, class_set
from ..events.types import Events
from ..io.bag_writer import BagWriter
from ..io.presets import PRESETS
from . import render as rd
from .aps import ApsSensor
from .esim import EventSimulator, hot_pixels, noise_events
from .preview import preview_strip
from .scene import Street, Trajectory

SIM_TOPICS = PRESETS["sim"]

# the topics are io.presets' "sim" preset, the one place they are defined
EVENTS_TOPIC, IMAGE_TOPIC = SIM_TOPICS.events, SIM_TOPICS.image
LABELS_TOPIC, CAMERA_INFO_TOPIC = SIM_TOPICS.labels, SIM_TOPICS.camera_info
FRAME_ID = "davis_left"
DEFAULT_START_NS = 1_600_000_000 * 1_000_000_000


@dataclass(frozen=True)
class SimConfig:
    width: int = 346
    height: int = 260
    hfov_deg: float = 70.0
    fps: float = 20.0
    packet_hz: float = 30.0
    night: bool = False
    # ego motion: None = varying speed (with stops) in speed_range, else constant m/s
    speed: float | None = None
    speed_range: tuple[float, float] = (3.0, 14.0)
    moving_objects: bool = True
    illumination_ramp: float = 0.0  # global log-radiance change per second (tests, tunnels)
    # DVS
    contrast_pos: float = 0.25
    contrast_neg: float = 0.25
    contrast_sigma: float = 0.03
    refractory_s: float = 1e-4
    log_eps: float = 1e-3
    noise_rate_hz: float | None = None  # per pixel; None: 0.1 by day, 0.5 at night
    hot_pixel_fraction: float = 5e-5
    # adaptive rendering
    max_pixel_motion: float = 1.0
    min_dt: float = 2e-5
    max_dt: float = 5e-3
    # APS
    full_well_time: float = 0.01
    aps_target: float = 0.18
    max_exposure_frac: float = 0.8
    read_noise: float = 0.004
    gamma: float = 1 / 2.2
    start_ns: int = DEFAULT_START_NS
    # the class set of the labels topic: "ddd17" (the default: DDD17's six), "sim" (the renderer's
    # own twelve: small classes apart) or "dsec11"; mapped from "sim" by classes.class_map
    classes: str = "ddd17"
    # False: no labels topic (the unlabelled recordings distillation is for; class statistics still kept)
    labels: bool = True

    def validate(self) -> None:
        if self.width < 16 or self.height < 16 or self.width > 4096 or self.height > 4096:
            raise ValueError(f"simulate: sensor size {self.width}x{self.height} outside 16..4096")
        if self.classes not in ("ddd17", "sim", "dsec11"):
            raise ValueError(f"simulate: classes must be ddd17, sim or dsec11, got {self.classes!r}")
        if self.fps <= 0 or self.packet_hz <= 0:
            raise ValueError(f"simulate: fps and packet_hz must be > 0, got {self.fps}, {self.packet_hz}")
        if self.max_pixel_motion <= 0 or not 0 < self.min_dt <= self.max_dt:
            raise ValueError("simulate: need max_pixel_motion > 0 and 0 < min_dt <= max_dt")
        if self.speed is not None and self.speed < 0:
            raise ValueError(f"simulate: speed must be >= 0 m/s, got {self.speed}")

    @property
    def noise_rate(self) -> float:
        if self.noise_rate_hz is not None:
            return self.noise_rate_hz
        return 0.5 if self.night else 0.1


def _env(cfg: SimConfig, seed: int) -> np.ndarray:
    env = np.zeros(rd.ENV_LEN)
    sun = np.array([-0.45, 0.75, 0.5])
    sun /= np.linalg.norm(sun)
    env[rd.E_SUNX:rd.E_SUNZ + 1] = sun
    if cfg.night:
        env[rd.E_AMBIENT], env[rd.E_SUN], env[rd.E_SKY], env[rd.E_HEADLIGHT], env[rd.E_NIGHT] = 0.0015, 0.0, 0.001, 0.8, 1
    else:
        env[rd.E_AMBIENT], env[rd.E_SUN], env[rd.E_SKY] = 0.55, 0.5, 1.1
    env[rd.E_SEED] = seed % 1_000_003
    env[rd.E_GAIN] = 1.0
    return env


def simulate_sequence(path: str | os.PathLike, *, seconds: float = 1.0, seed: int = 0, width: int = 346,
                      height: int = 260, night: bool = False, config: SimConfig | None = None,
                      progress: bool = False, **overrides) -> dict:
    """Simulate ``seconds`` of driving into the bag ``path``; returns statistics (module doc)."""

    base = config or SimConfig()
    known = {f.name for f in fields(SimConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"simulate: unknown parameter(s) {bad}; known: {sorted(known)}")
    cfg = replace(base, width=width, height=height, night=night, **overrides)
    cfg.validate()
    if not seconds > 0:
        raise ValueError(f"simulate: seconds must be > 0, got {seconds}")
    t_wall = time.perf_counter()
    ss = np.random.SeedSequence(seed)
    rng_traj, rng_world, rng_dvs, rng_noise, rng_aps = (np.random.default_rng(s) for s in ss.spawn(5))

    traj = Trajectory.generate(seconds + 0.1, rng_traj, speed=cfg.speed, speed_range=cfg.speed_range)
    street = Street(rng_world, traj, night=cfg.night, moving_objects=cfg.moving_objects, seconds=seconds + 0.1)
    cam = rd.Camera.davis(cfg.width, cfg.height, cfg.hfov_deg)
    renderer = rd.Renderer(cam)
    env = _env(cfg, seed)
    dvs = EventSimulator(cfg.height, cfg.width, rng_dvs, cfg.contrast_pos, cfg.contrast_neg, cfg.contrast_sigma,
                         int(cfg.refractory_s * 1e9), cfg.log_eps)
    hot = hot_pixels(rng_noise, cfg.height, cfg.width, cfg.hot_pixel_fraction)
    aps = ApsSensor(cfg.height, cfg.width, rng_aps, fps=cfg.fps, full_well_time=cfg.full_well_time,
                    target=cfg.aps_target, max_exposure_frac=cfg.max_exposure_frac, read_noise=cfg.read_noise,
                    gamma=cfg.gamma)
    timings = dict(render=0.0, events=0.0, aps=0.0, write=0.0)

    def render_at(t_ns: int):
        t0 = time.perf_counter()
        t = t_ns * 1e-9
        pose = traj.pose(t)
        R = rd.rotation(pose.yaw, pose.pitch)
        prims, lights = street.primitives(t, pose)
        env[rd.E_GAIN] = np.exp(cfg.illumination_ramp * t)
        img, lab, flow = renderer.render(prims, lights, env, R, pose.c, R @ pose.v, R @ pose.w)
        timings["render"] += time.perf_counter() - t0
        return img, lab, flow

    T = int(round(seconds * 1e9))
    period = 1e9 / cfg.fps
    n_frames = int(np.floor(seconds * cfg.fps))
    pk = 1e9 / cfg.packet_hz
    start = int(cfg.start_ns)

    I0, _, flow = render_at(0)
    dvs.reset(I0)
    exposure = aps.first_exposure(I0)
    label_set = class_set(cfg.classes)
    label_lut = class_map(SIM, label_set)  # the renderer labels in the sim set
    stats_classes = np.zeros(label_set.num_classes, np.int64)
    n_events = n_packets = n_frames_done = n_renders = 0
    exposures: list[float] = []
    pending: list[Events] = []
    pk_index = 0
    K = cam.K

    def frame_window(k: int, exp_s: float) -> tuple[int, int, int]:
        mid = int(round((k + 0.5) * period))
        half = int(round(exp_s * 1e9 / 2))
        return mid - half, mid, mid + half

    win = frame_window(0, exposure) if n_frames else None
    acc = np.zeros((cfg.height, cfg.width), np.float64)
    label_img = None
    bar = None
    if progress:
        bar = tqdm(total=round(seconds, 3), unit="sim s", desc=Path(path).name, leave=False,
                   bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} sim s [{elapsed}<{remaining}]")

    with BagWriter(path) as bag:

        def flush(upto_ns: int) -> None:
            nonlocal pending, pk_index, n_events, n_packets
            while (pk_index + 1) * pk <= upto_ns or (upto_ns >= T and pk_index * pk < T):
                p0, p1 = int(round(pk_index * pk)), min(int(round((pk_index + 1) * pk)), T + 1)
                ev = Events.concatenate(pending)
                inside = ev.t < p1
                noise = noise_events(rng_noise, p0, p1, cfg.height, cfg.width, cfg.noise_rate, hot)
                packet = Events.concatenate([ev[inside], noise])
                pending = [ev[~inside]] if (~inside).any() else []
                order = np.argsort(packet.t, kind="stable")
                packet = Events(packet.x[order], packet.y[order], packet.t[order] + start, packet.p[order])
                t0 = time.perf_counter()
                stamp = int(packet.t[-1]) if len(packet) else start + p1
                bag.write_events(EVENTS_TOPIC, packet, cfg.height, cfg.width, stamp_ns=stamp, frame_id=FRAME_ID)
                timings["write"] += time.perf_counter() - t0
                n_events += len(packet)
                n_packets += 1
                pk_index += 1

        t = 0
        while t < T:
            dt = cfg.max_pixel_motion / max(flow, 1e-9)
            dt_ns = int(np.clip(dt, cfg.min_dt, cfg.max_dt) * 1e9)
            t1 = min(t + max(dt_ns, 1), T)
            if win is not None:
                nxt = [w for w in win if w > t]
                if nxt:
                    t1 = min(t1, nxt[0])
            I1, lab1, flow = render_at(t1)
            n_renders += 1
            t0w = time.perf_counter()
            ev = dvs.step(I1, t, t1)
            if len(ev):
                pending.append(ev)
            timings["events"] += time.perf_counter() - t0w
            if win is not None:
                if win[0] <= t and t1 <= win[2]:
                    acc += (0.5 * (t1 - t)) * (I0.astype(np.float64) + I1)
                if t1 == win[1]:
                    label_img = label_lut[lab1]
                if t1 == win[2]:
                    t0a = time.perf_counter()
                    mean_rad = acc / max(win[2] - win[0], 1)
                    frame = aps.expose(mean_rad, exposure)
                    timings["aps"] += time.perf_counter() - t0a
                    t0w = time.perf_counter()
                    stamp = start + win[1]
                    bag.write_image(IMAGE_TOPIC, stamp, frame, "mono8", FRAME_ID)
                    if cfg.labels:
                        bag.write_image(LABELS_TOPIC, stamp, label_img, "mono8", FRAME_ID)
                    bag.write_camera_info(CAMERA_INFO_TOPIC, stamp, cfg.height, cfg.width, K, frame_id=FRAME_ID)
                    timings["write"] += time.perf_counter() - t0w
                    stats_classes += np.bincount(label_img.ravel(), minlength=256)[:label_set.num_classes]
                    exposures.append(exposure)
                    n_frames_done += 1
                    acc[:] = 0
                    exposure = aps.next_exposure()
                    win = frame_window(n_frames_done, exposure) if n_frames_done < n_frames else None
            flush(t1)
            if bar is not None:
                bar.update(round((t1 - t) * 1e-9, 6))
            t, I0 = t1, I1
        flush(T)
    if bar is not None:
        bar.close()
    total = time.perf_counter() - t_wall
    freq = stats_classes / max(int(stats_classes.sum()), 1)
    return {
        "path": str(path),
        "seed": int(seed),
        "seconds": float(seconds),
        "width": cfg.width,
        "height": cfg.height,
        "night": bool(cfg.night),
        "start_ns": start,
        "events": int(n_events),
        "packets": int(n_packets),
        "frames": int(n_frames_done),
        "renders": int(n_renders),
        "event_rate_hz": n_events / seconds,
        "class_pixels": {name: int(c) for name, c in zip(label_set.names, stats_classes)},
        "class_frequency": {name: round(float(f), 5) for name, f in zip(label_set.names, freq)},
        "exposure_s": float(np.mean(exposures)) if exposures else 0.0,
        "timings_s": {**{k: round(v, 3) for k, v in timings.items()}, "total": round(total, 3)},
        "distance_m": round(float(traj.pose(seconds).c[2] - traj.pose(0).c[2]), 2),
    }


def _sequence_job(args: tuple) -> dict:
    path, seconds, seed, cfg, night, progress = args
    return simulate_sequence(path, seconds=seconds, seed=seed, width=cfg.width, height=cfg.height, night=night,
                             config=cfg, progress=progress)


def sequence_seed(seed: int, index: int) -> int:
    """Seed of sequence ``index`` of a data set made with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _quiet_worker() -> None:
    """A simulate worker ignores SIGINT (the parent handles Ctrl-C) and dies on SIGTERM without
    Python's clean-up (a handler inherited through fork would raise inside numba's compiler)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def simulate_dataset(out_dir: str | os.PathLike, *, sequences: int, seconds: float, seed: int, night: bool = False,
                     workers: int = 1, config: SimConfig | None = None, progress: bool = True,
                     preview: bool = False, prefix: str = "seq", **overrides) -> dict:
    """Write ``sequences`` bags (``{prefix}_{i:03d}.bag``) and ``manifest.json`` into ``out_dir``."""
    if sequences < 1:
        raise ValueError(f"simulate: sequences must be >= 1, got {sequences}")
    base = replace(config or SimConfig(), night=night, **overrides)
    base.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale(out)  # temp bags of a run that was killed
    jobs = []
    for i in range(sequences):
        cfg = replace(base, start_ns=base.start_ns + i * 3600 * 1_000_000_000)  # one drive per hour
        jobs.append((str(out / f"{prefix}_{i:03d}.bag"), seconds, sequence_seed(seed, i), cfg, night,
                     progress and workers <= 1))
    t0 = time.perf_counter()
    if workers > 1 and sequences > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # Ctrl-C reaches the parent alone, which stops the workers and raises KeyboardInterrupt
        # (the clean "interrupted" path) instead of a pool of tracebacks
        ex = ProcessPoolExecutor(min(workers, sequences), mp_context=mp.get_context("fork"),
                                 initializer=_quiet_worker)
        try:
            it = ex.map(_sequence_job, jobs)
            if progress:
                it = tqdm(it, total=sequences, unit="bag", desc="simulate")
            results = list(it)
        except BaseException:
            for proc in list(getattr(ex, "_processes", {}).values()):  # no public way to stop running jobs
                proc.terminate()
            ex.shutdown(wait=True, cancel_futures=True)
            clean_stale(out)  # the stopped workers' temp bags
            raise
        ex.shutdown()
    else:
        results = [_sequence_job(j) for j in jobs]
    names = class_set(base.classes).names
    pixels = np.zeros(len(names), np.int64)
    for r in results:
        pixels += np.array([r["class_pixels"][n] for n in names])
    params = asdict(base)
    params.pop("start_ns")
    manifest = {
        "generator": "evdistill_ros.sim",
        "seed": int(seed),
        "sequences": sequences,
        "seconds": float(seconds),
        "night": bool(night),
        "parameters": params,
        "topics": {"events": EVENTS_TOPIC, "image": IMAGE_TOPIC, "labels": LABELS_TOPIC,
                   "camera_info": CAMERA_INFO_TOPIC},
        "classes": list(names),
        "class_set": base.classes,
        "class_frequency": {n: round(float(p / max(pixels.sum(), 1)), 5) for n, p in zip(names, pixels)},
        "bags": [{**r, "path": os.path.relpath(r["path"], out)} for r in results],
        "wall_s": round(time.perf_counter() - t0, 2),
    }
    if preview and results:
        png = out / "preview.png"
        preview_strip(results[0]["path"], png, classes=class_set(base.classes))
        manifest["preview"] = png.name
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2))
    return manifest
