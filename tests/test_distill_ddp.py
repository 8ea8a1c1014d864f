"""DistributedDataParallel on the CPU: 2 gloo processes train, end with identical parameters, rank 0 alone writes."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, tmp: str, bag: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from test_distill_train import tiny_config

    from evdistill_ros.distill.trainer import run_training

    cfg = tiny_config(Path(tmp), steps=6, ckpt_every=3, batch_size=2)

    def done(step, net):
        torch.save({"step": step, "params": {k: v.detach().clone() for k, v in net.named_parameters()},
                    "state": {k: v.detach().clone() for k, v in net.state_dict().items()}}, Path(tmp) / f"rank{rank}.pt")

    run_training(cfg, [bag], "student", method="supervised", out_dir=Path(tmp) / "run", progress=False,
                 log=lambda s: None, on_done=done)


def test_two_process_gloo_ddp_keeps_ranks_identical(tmp_path):
    from test_distill_train import write_bag

    bag = str(tmp_path / "seq.bag")
    write_bag(bag, seed=3, frames=12)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), bag), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["step"] == r1["step"] == 6
    assert r0["params"].keys() == r1["params"].keys() and len(r0["params"]) > 10
    for k, v in r0["params"].items():
        assert torch.equal(v, r1["params"][k]), k
    # BatchNorm running statistics are per rank on the CPU (SyncBatchNorm only on CUDA); rank 0's are saved
    from evdistill_ros.models import load_checkpoint

    model, meta = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, r0["state"][k]), k
    assert meta["training"]["step"] == 6
    assert (tmp_path / "run" / "state.pt").is_file()
    assert not list((tmp_path / "run").glob(".*.tmp"))
