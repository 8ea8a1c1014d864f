"""Screenshot of rviz showing the live overlay, taken headless under Xvfb during playback.

    python -m evdistill_ros.ros.screenshot --bag BAG --checkpoint STUDENT [--teacher TEACHER]
                                           [--out docs/images/rviz_overlay.png] [--wait 8]

Starts Xvfb on a free display, a private roscore, and `roslaunch evdistill_ros segment.launch
bag:=BAG loop:=true rviz:=true` (config/segment.rviz: student overlay, APS frame, teacher
overlay); once the segmentation node has published, waits `--wait` seconds for rviz to draw,
grabs the screen and checks that coloured overlays are on it (an rviz that shows "No Image"
panels fails the check instead of producing a useless picture).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .probe import RosMaster, node_stats


def free_display() -> int:
    n = 99
    while Path(f"/tmp/.X{n}-lock").exists() or Path(f"/tmp/.X11-unix/X{n}").exists():
        n += 1
    return n


def coloured_fraction(rgb: np.ndarray, min_chroma: int = 24) -> float:
    """Share of clearly coloured pixels: rviz's own widgets are grey, white and black (a few
    small icons aside), so the overlays and APS-coloured panels are what makes this non-zero."""
    rgb = np.asarray(rgb)[..., :3].astype(np.int16)
    return float(((rgb.max(-1) - rgb.min(-1)) >= min_chroma).mean())


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
                p.wait(20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)


def take(bag: Path, checkpoint: Path, teacher: Path | None, out: Path, wait: float = 8.0,
         size: tuple[int, int] = (1400, 900), timeout: float = 180.0) -> float:
    """Run the pipeline with rviz under Xvfb and save a screenshot; returns `coloured_fraction`."""
    from PIL import ImageGrab

    display = f":{free_display()}"
    procs = [subprocess.Popen(["Xvfb", display, "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        time.sleep(1.0)
        if procs[0].poll() is not None:
            raise RuntimeError(f"Xvfb did not start on {display} (apt-get install xvfb)")
        with RosMaster(extra_env={"DISPLAY": display}) as env:
            args = ["roslaunch", "evdistill_ros", "segment.launch", f"bag:={bag.resolve()}", "loop:=true", "rviz:=true",
                    f"checkpoint:={checkpoint.resolve()}", "delay:=2"]
            if teacher:
                args.append(f"teacher_checkpoint:={teacher.resolve()}")
            procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
            deadline = time.time() + timeout
            while time.time() < deadline:
                s = node_stats(env, "/segmentation_node/stats", 10) or {}
                if s.get("published", 0) > 0:
                    break
                if procs[-1].poll() is not None:
                    raise RuntimeError("roslaunch exited early (see ~/.ros/log/latest)")
                time.sleep(1)
            else:
                raise RuntimeError(f"no overlay published within {timeout:.0f} s (see ~/.ros/log/latest)")
            time.sleep(wait)
            shot = ImageGrab.grab(xdisplay=display)
            _stop(procs[1:])
    finally:
        _stop(procs)
    frac = coloured_fraction(np.asarray(shot))
    out.parent.mkdir(parents=True, exist_ok=True)
    shot.save(out)
    return frac


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bag", type=Path, required=True, help="bag with /davis/left/events and image_raw (sim preset)")
    ap.add_argument("--checkpoint", type=Path, required=True, help="event (student) checkpoint")
    ap.add_argument("--teacher", type=Path, default=None, help="APS (teacher) checkpoint: adds its overlay panel")
    ap.add_argument("--out", type=Path, default=Path("docs/images/rviz_overlay.png"))
    ap.add_argument("--wait", type=float, default=8.0, help="seconds rviz draws before the grab")
    args = ap.parse_args(argv)
    for p in (args.bag, args.checkpoint, args.teacher):
        if p is not None and not p.is_file():
            ap.error(f"no such file: {p}")
    frac = take(args.bag, args.checkpoint, args.teacher, args.out, args.wait)
    print(f"wrote {args.out}: {100 * frac:.1f}% of the screen coloured (overlays)")
    if frac < 0.05:
        print("the overlay is not visible on the screenshot (rviz shows no image?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
