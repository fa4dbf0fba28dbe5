"""Data-parallel training: two CPU processes (gloo) end with identical weights."""

from __future__ import annotations

import os
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp

from napari_superres.engine.samples import synthetic_pair
from napari_superres.engine.train.trainer import Trainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out_dir: str, preset: str) -> None:
    """One rank: what ``torchrun`` would set up, then a short training run."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    import numpy as np

    from napari_superres.engine.train.trainer import TrainConfig, Trainer, make_pair_source

    lr, hr = synthetic_pair((96, 128), 2, seed=0, noise=False)
    top = float(hr.max())
    data = make_pair_source([(hr / top).astype(np.float32)], [(lr / top).astype(np.float32)], scale=2, patch_size=32)
    weights = {"perceptual": 0.0} if preset == "gan" else None
    config = TrainConfig(scale=2, preset=preset, weights=weights, pretrain_steps=1, steps=3, batch_size=2,
                         patch_size=32, net={"channels": 8, "blocks": 1}, device="cpu", val_every=0,
                         discriminator={"kind": "patchgan", "channels": 8},
                         checkpoint_path=os.path.join(out_dir, "run.ckpt"))  # fmt: skip
    trainer = Trainer(config, data)
    assert trainer.ctx.world_size == world_size and trainer.ctx.rank == rank
    initial = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    first_batch = data.sample(2)[1]  # each rank draws its own patches
    trainer.run()
    state = {
        "generator": trainer.generator.state_dict(),
        "ema": trainer.trained_net().state_dict(),
        "initial": initial,
        "batch": first_batch,
        "is_main": trainer.is_main,
    }
    if trainer.disc is not None:
        from napari_superres.engine.train.distributed import unwrap

        state["discriminator"] = unwrap(trainer.disc).state_dict()
    torch.save(state, os.path.join(out_dir, f"rank{rank}.pt"))
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")
@pytest.mark.skipif(sys.platform == "win32", reason="gloo process groups over TCP are flaky on Windows CI")
@pytest.mark.slow  # two fresh interpreters import torch
def test_two_processes_hold_identical_weights(tmp_path):
    # L1 + adversarial: generator, EMA and discriminator all go through DistributedDataParallel
    preset = "gan"
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), preset), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["is_main"] and not r1["is_main"]
    assert not torch.equal(r0["batch"], r1["batch"])  # sampling is sharded by rank
    assert any(not torch.equal(t, r0["initial"][k]) for k, t in r0["generator"].items())  # it trained
    for key in ("generator", "ema", "discriminator"):
        for name, tensor in r0[key].items():
            assert torch.equal(tensor, r1[key][name]), f"{key}.{name} differs between ranks"
    # the checkpoint (written by rank 0 only) holds the same weights
    ckpt = Trainer.read_checkpoint(tmp_path / "run.ckpt")  # checksum verified, then torch.load(weights_only=True)
    assert ckpt["step"] == 3
    assert all(torch.equal(t, ckpt["generator"][k]) for k, t in r0["generator"].items())
