"""atomic: nothing partial under a final name, and the leftovers of dead writers cleaned."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from evdistill_ros.atomic import atomic_dir, atomic_write, atomic_write_text, clean_stale, temp_path
from evdistill_ros.eval.figures import VideoWriter


def test_atomic_write_replaces_or_leaves_the_old_file(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "one")
    with pytest.raises(RuntimeError):
        with atomic_write(p, "w") as f:
            f.write("half")
            raise RuntimeError("crash")
    assert p.read_text() == "one"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_atomic_dir_and_stale_leftovers_of_a_killed_writer(tmp_path):
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "x").write_text("1")
    assert (tmp_path / "d" / "x").read_text() == "1"
    # a writer killed with -9 leaves its temp file and folder behind
    code = ("import os, sys; sys.path.insert(0, %r); from evdistill_ros.atomic import atomic_write, atomic_dir\n"
            "with atomic_dir(%r), atomic_write(%r, 'wb') as f:\n  f.write(b'x' * 100); f.flush();"
            " os.kill(os.getpid(), 9)") % (os.getcwd(), str(tmp_path / "e"), str(tmp_path / "ckpt.pt"))
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left != ["d"] and not (tmp_path / "ckpt.pt").exists() and not (tmp_path / "e").exists()
    mine = temp_path(tmp_path / "live.bin")  # a live writer's temp (this process) is kept
    mine.write_bytes(b"1")
    removed = clean_stale(tmp_path)
    assert len(removed) == 2 and sorted(p.name for p in tmp_path.iterdir()) == sorted(["d", mine.name])


def test_interrupted_video_leaves_nothing_under_its_name(tmp_path):
    out = tmp_path / "v.gif"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, fps=5) as w:
            w.append(np.zeros((8, 8, 3), np.uint8))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with VideoWriter(out, fps=5) as w:
        w.append(np.zeros((8, 8, 3), np.uint8))
    assert out.is_file() and [p.name for p in tmp_path.iterdir()] == ["v.gif"]


def test_a_full_disk_is_named_not_a_library_message(full_disk):
    """torch.save on a full device said "[enforce fail at inline_container.cc:672] . unexpected pos";
    the checkpoint write now says no space is left, and nothing partial stays."""
    import torch

    from evdistill_ros.models import build_model, save_checkpoint

    small = full_disk("256k")
    net = build_model("deeplabv3plus", "mobilenetv2", in_channels=1, num_classes=6, width_mult=0.25,
                      aspp_channels=16, decoder_channels=16)
    with pytest.raises(OSError, match="no space left on the device holding") as exc:
        save_checkpoint(small / "checkpoint.pt", net, {"representation": "aps"})
    assert "\n" not in str(exc.value) and "enforce fail" not in str(exc.value)
    assert list(small.iterdir()) == []
    torch.save({"a": 1}, small / "fits.pt")  # the device works for what fits
