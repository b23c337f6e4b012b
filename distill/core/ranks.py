"""Which process this is, and the few collective operations the project needs.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process is a rank of one process group: ``nccl`` on
GPUs (each rank on ``cuda:LOCAL_RANK``), ``gloo`` on CPUs. In a single process every function
here is a no-op, so the code that calls them reads the same either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
TIMEOUT = timedelta(hours=3)  # a rank may wait this long for rank 0 (e.g. while it builds a teacher cache)


def from_slurm() -> None:
    """A task of a multi-task SLURM job (the ``slurm`` launcher with ``tasks_per_node`` > 1, one per
    GPU): export torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) from SLURM's."""
    if "WORLD_SIZE" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1 or "SLURM_PROCID" not in os.environ:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def launched() -> bool:
    """Whether this process was started by torchrun (or as a task of a multi-task SLURM job) with other ranks."""
    from_slurm()
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def init() -> None:
    """Join the process group torchrun describes (once); on GPUs pick this rank's device."""
    if active() or not launched():
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)


def barrier() -> None:
    if active():
        dist.barrier()


def gather_objects(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (``[value]`` in one process)."""
    if not active():
        return [value]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, value)
    return out


def broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool) -> bool:
    """True on every rank if it is true on any (a stop request, a non-finite loss)."""
    return any(gather_objects(bool(flag)))


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over the ranks (the same keys on every rank)."""
    if not active():
        return values
    every = gather_objects(values)
    return {k: sum(v[k] for v in every) / len(every) for k in values}


def main_first(build: Callable[[], T]) -> T:
    """``build()`` on rank 0 first (it creates what is missing: a cache, a trained teacher), then on the
    other ranks, which find it. ``build`` must not use collectives."""
    if not active():
        return build()
    if is_main():
        result = build()
        dist.barrier()
        return result
    dist.barrier()
    return build()


def is_sharded(model: Any) -> bool:
    """Whether ``model`` is sharded with FSDP2: its forward is then a collective, run by every rank in step."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)
