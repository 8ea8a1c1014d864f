"""DistributedDataParallel plumbing: one process per GPU (or CPU process with gloo).

Started by torchrun (one node or several), which sets RANK, WORLD_SIZE, LOCAL_RANK and
MASTER_ADDR/PORT:

    torchrun --nproc_per_node=4 -m evdistill_ros.cli train student --config config/ddd17.yaml
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --nproc_per_node=4 -m evdistill_ros.cli train ...

API:
    DistInfo(rank, world_size, local_rank, enabled)   .is_main is rank 0
    init_distributed(device_kind) -> DistInfo
        Reads the torchrun environment; with WORLD_SIZE > 1 initialises the default process
        group (nccl for CUDA, gloo for CPU) and pins this process to cuda:LOCAL_RANK.
        Without it returns a single-process DistInfo and touches nothing.
    barrier(info), cleanup(info)
    wrap(module, info, device) -> the module, or DDP(module) when distributed (SyncBatchNorm on CUDA;
        on the CPU BatchNorm running statistics stay per rank, rank 0's are saved)
    unwrap(module) -> the inner module of a DDP wrapper (for saving)

Only rank 0 writes files (caches are extracted by rank 0 first, then opened by the others).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local, enabled=True)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    if not info.enabled or not any(p.requires_grad for p in module.parameters()):
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":  # per-GPU batches are small: share BatchNorm statistics (as the authors)
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids, output_device=device.index if ids else None)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") and isinstance(module, nn.parallel.DistributedDataParallel) else module


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (for logged losses); identity when not distributed."""
    if not info.enabled:
        return value
    v = value.detach().clone()
    dist.all_reduce(v)
    return v / info.world_size
