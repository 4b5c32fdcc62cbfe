"""Multi-process training helpers: torchrun detection, DDP wrapping, rank-0-only writing.

`torchrun --nproc_per_node=N -m mmhpn train ...` starts N processes with the environment
variables RANK, LOCAL_RANK and WORLD_SIZE set. `init_from_env` turns that into an
initialised process group (gloo on CPU, nccl on CUDA); everything else here is a no-op in
a single process, so the training loop reads the same with or without torchrun.
"""
from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def is_enabled() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_enabled() else 1


def rank() -> int:
    return dist.get_rank() if is_enabled() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_enabled():
        dist.barrier()


def init_from_env(device: str = "auto") -> bool:
    """Initialise the process group if started by torchrun; return whether it was.

    The backend follows the device: nccl when training on CUDA, gloo on CPU.
    """
    if not launched_by_torchrun() or is_enabled():
        return is_enabled()
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def shutdown() -> None:
    if is_enabled():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str = "auto"):
    """`with process_group(): ...` - initialise from torchrun's environment, tear down after."""
    started = not is_enabled() and init_from_env(device)  # tear down only a group we started
    try:
        yield
    finally:
        if started:
            shutdown()


def wrap_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` when several processes train, else `model`."""
    if world_size() == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all processes (the tensor itself in one process)."""
    if world_size() == 1:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
