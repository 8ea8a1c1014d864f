"""torch Dataset over a pair cache, and the resumable (distributed) sampler that feeds it.

    PairDataset(cache, indices=None, augment=None, crop=None)
        Items are dicts: "events" (C,H,W) float32 raw embedding, "aps" (1|3,H,W) float32 in [0,1],
        "label" (H,W) int64 (IGNORE_INDEX where unlabelled), "has_label" bool, "index" int.
        With `augment` (the config's `augment` section) items are augmented by
        `augment.augment_pair`; without it they are centre-cropped to `crop` (validation).
        An item is requested as ``dataset[(index, seed)]`` (what `ResumableSampler` yields):
        the augmentation is drawn from numpy's Generator(seed), so a sample's augmentation
        depends only on (index, seed), not on worker processes or the order of requests.
    ResumableSampler(dataset_len, batch_size, seed, num_replicas=1, rank=0, start_step=0)
        A DistributedSampler (shuffled per epoch with seed + epoch, padded so every rank gets
        the same count, drop_last per rank batch) that yields (index, seed) pairs forever,
        epoch after epoch, starting at global step `start_step`: resuming at step k yields
        exactly what an uninterrupted run yields from its k-th batch on.
    aps_batch(raw) -> (B, 1|3, H, W)  cached APS frames as the network-side tensor (items use it too)
    mix_seed(*ints) -> int            an item's augmentation seed from integers (the sampler's, KD weights')
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from ..io.pair_cache import PairCache, open_cache
from ..models.preprocess import unit_scale
from .augment import augment_pair, center_crop_pad
from .config import AugmentConfig


class PairDataset(Dataset):
    def __init__(self, cache: PairCache, indices: Sequence[int] | None = None, augment: AugmentConfig | None = None,
                 crop: Sequence[int] | None = None, labelled_only: bool = False) -> None:
        self.cache = cache
        self.cache_path = cache.path
        idx = np.arange(len(cache)) if indices is None else np.asarray(indices, dtype=np.int64)
        if labelled_only:
            idx = idx[np.asarray(cache.has_label)[idx]]
        if len(idx) == 0:
            raise ValueError(f"{cache.path}: no training pairs selected" + (" with labels" if labelled_only else ""))
        self.indices = idx
        self.augment = augment
        self.crop = tuple(crop) if crop else None
        self.teacher_outputs_path: Path | None = None
        self.teacher_outputs: np.ndarray | None = None

    def use_teacher_outputs(self, path: str | os.PathLike) -> None:
        """Items carry "teacher": the stored teacher log-probabilities of their frame (distill.teacher)
        plus a validity map, through the same geometry as the label (K + 1, h, w) float32."""
        self.teacher_outputs_path = Path(path)
        self.teacher_outputs = np.load(self.teacher_outputs_path / "log_probs.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.indices)

    # A memmap would pickle as a full copy of its data: workers reopen the cache by path instead.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["cache"] = None
        state["teacher_outputs"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.cache = open_cache(self.cache_path)
        if self.teacher_outputs_path is not None:
            self.use_teacher_outputs(self.teacher_outputs_path)

    def __getitem__(self, item) -> dict:
        i, seed = item if isinstance(item, tuple) else (item, None)
        j = int(self.indices[int(i)])
        c = self.cache
        events = torch.from_numpy(np.array(c.events[j], dtype=np.float32))
        aps = aps_batch(np.array(c.aps[j:j + 1]))[0]  # (1|3, H, W)
        label = torch.from_numpy(np.array(c.labels[j], dtype=np.int64))
        channels = events.shape[0]
        if self.teacher_outputs is not None:
            # the stored teacher maps and a map of ones ride along as extra event channels: the same
            # bilinear resampling, crop and flip; padding gives 0 in the ones map (no teacher there)
            soft = torch.from_numpy(np.array(self.teacher_outputs[j], dtype=np.float32))
            events = torch.cat([events, soft, torch.ones_like(soft[:1])])
        if self.augment is not None:
            rng = np.random.default_rng(seed if seed is not None else j)
            events, aps, label = augment_pair(events, aps, label, self.augment, rng)
        else:
            events, aps, label = center_crop_pad(events, aps, label, self.crop)
        item = {"events": events[:channels], "aps": aps, "label": label, "has_label": bool(c.has_label[j]),
                "index": j}
        if self.teacher_outputs is not None:
            item["teacher"] = events[channels:].contiguous()
        return item


def mix_seed(*values: int) -> int:
    """One augmentation seed from several integers (stable across processes and runs)."""
    return zlib.crc32(np.array(values, dtype=np.int64).tobytes()) & 0x7FFFFFFF


class ResumableSampler(DistributedSampler):
    def __init__(self, dataset_len: int, batch_size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 start_step: int = 0) -> None:
        super().__init__(range(dataset_len), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=False)
        if self.num_samples < batch_size:
            raise ValueError(f"{dataset_len} training pairs are too few for batch size {batch_size} x "
                             f"{num_replicas} process(es)")
        self.batch_size = batch_size
        self.steps_per_epoch = self.num_samples // batch_size
        self.start_step = start_step

    def __len__(self) -> int:  # an endless stream; DataLoader asks only for progress bars
        return 1 << 62

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start_step, self.steps_per_epoch)
        while True:
            self.set_epoch(epoch)
            order = list(super().__iter__())[: self.steps_per_epoch * self.batch_size]
            for pos in range(offset * self.batch_size, len(order)):
                # seed from (seed, epoch, global position): identical across resumes and ranks differ
                yield order[pos], mix_seed(self.seed, epoch, self.rank, pos)
            epoch, offset = epoch + 1, 0


def aps_batch(raw: np.ndarray) -> torch.Tensor:
    """Cached APS frames, (B, H, W) grey or (B, H, W, 3) colour -> (B, 1|3, H, W) float32 in [0, 1]
    (the inference path's scaling, models.preprocess.unit_scale)."""
    aps = unit_scale(torch.from_numpy(np.ascontiguousarray(raw)))
    return aps[:, None] if aps.dim() == 3 else aps.permute(0, 3, 1, 2).contiguous()


def collate(items: list[dict]) -> dict:
    return {
        "events": torch.stack([it["events"] for it in items]),
        "aps": torch.stack([it["aps"] for it in items]),
        "label": torch.stack([it["label"] for it in items]),
        "has_label": torch.tensor([it["has_label"] for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
        **({"teacher": torch.stack([it["teacher"] for it in items])} if "teacher" in items[0] else {}),
    }
