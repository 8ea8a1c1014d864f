"""What --resume needs: the training state file, the RNG states and the run's fingerprint.

    save_state(path, **state)   atomic; tensors and plain data only
    load_state(path) -> dict    torch.load(weights_only=True): never unpickles code; a truncated
                                or foreign file is a one-line ValueError naming it
    rng_state() / set_rng_state(s)   python, numpy, torch (and CUDA) RNGs as tensors / numbers
    fingerprint(config, train, model, method_fp, augment) -> dict
    changed_keys(old, new) -> list[str]   "a.b: old -> new" for each difference
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .config import AugmentConfig, Config, ModelConfig, TrainConfig
from ..atomic import atomic_write

STATE_FORMAT = "evdistill_ros.train_state"
# train keys that may change between a run and its resume (cadence, placement)
_FREE_TRAIN_KEYS = {"log_every", "image_every", "val_every", "ckpt_every", "out_dir", "device", "num_workers",
                    "threads"}


def rng_state() -> dict:
    """The RNG states as tensors and plain numbers, so the state file loads with weights_only=True."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": {"version": int(version), "mt": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
            "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(s: dict) -> None:
    py, npy = s["python"], s["numpy"]
    random.setstate((py["version"], tuple(int(v) for v in py["mt"].tolist()), py["gauss"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached_gaussian"]))
    torch.set_rng_state(s["torch"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_state(path: Path, **state: Any) -> None:
    with atomic_write(path, "wb") as f:
        torch.save({"format": STATE_FORMAT, **state, "rng": rng_state()}, f)


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


def plain(value: Mapping[str, Any]) -> dict:
    """A mapping (a config's plain form) as JSON-able plain data (private `_` keys dropped)."""
    return json.loads(json.dumps({k: v for k, v in value.items() if not k.startswith("_")}, default=str))


def fingerprint(config: Config, train: TrainConfig, model: ModelConfig, method_fp: dict,
                augment: AugmentConfig) -> dict:
    """What a resumed run must share with the saved one (not logging/checkpoint cadence or device).
    `train`, `model`, `augment`: the stage's sections (Config.train_for, model_for, augment_for)."""
    data = {k: v for k, v in config.data.to_dict().items() if k not in ("cache_dir", "val_bags")}
    fp = {"train": {k: v for k, v in train.to_dict().items() if k not in _FREE_TRAIN_KEYS},
          "model": model.to_dict(), "data": data, "augment": augment.to_dict()}
    if method_fp:
        fp["student"] = method_fp
    return plain(fp)


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out
