"""Where the models live: the device, the data-parallel wrapping of the student, the teacher's
placement, and full (gathered) state dicts for checkpoints. Every rank, device and strategy
decision of the loop is made here.

    single  one process (the default outside torchrun)
    ddp     torchrun: the student replicated (DistributedDataParallel); gradients averaged
    fsdp    torchrun: the student sharded (FSDP2, ``fully_shard`` on each layer and the root; bf16
            compute on GPUs that have it); for students too large for one device

The teacher never trains and is never wrapped in DDP: it is replicated in eval mode on each
rank's device, or sharded with FSDP2 with ``train.shard_teacher=true`` (a teacher larger than
one device). ``auto`` is ``ddp`` under torchrun and ``single`` otherwise.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from distill.core import ranks
from distill.core.errors import require
from distill.models.facts import layer_list, unwrap

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "single", "ddp", "fsdp")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: this rank's GPU when there is one, else the CPU."""
    if name != "auto":
        return torch.device(name)
    return torch.device("cuda", ranks.local_rank()) if torch.cuda.is_available() else torch.device("cpu")


def resolve_strategy(strategy: str) -> str:
    """The strategy to train with; ``ddp`` or ``fsdp`` in a single process trains that process alone
    (one warning line says so)."""
    require(strategy in STRATEGIES, "train.strategy", strategy, f"must be one of {', '.join(STRATEGIES)}")
    if ranks.world() == 1:
        if strategy in ("ddp", "fsdp"):
            log.warning("train.strategy=%s outside torchrun: training a single process (launch with "
                        "torchrun --nproc_per_node=N train.py ... for %s)", strategy, strategy)  # fmt: skip
        return "single"
    return "ddp" if strategy == "auto" else strategy


def layers_of(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks FSDP2 shards one by one (the root takes the rest)."""
    try:
        return list(layer_list(model))
    except Exception:  # an architecture student_init does not know: shard the root only
        return []


def shard(model: nn.Module, device: torch.device, precision: str) -> nn.Module:
    """FSDP2 in place: each block, then the root; bf16 parameters on GPUs that support it."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs: dict[str, Any] = {}
    if device.type == "cuda" and precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in layers_of(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    return model


def place(distiller: Any, strategy: str, device: torch.device, precision: str, shard_teacher: bool) -> nn.Module:
    """Move the distiller's models and wrap its student for ``strategy``; returns the bare student."""
    student = distiller.student
    distiller.to(device)
    if strategy == "ddp":
        ids = [device.index] if device.type == "cuda" else None
        distiller.student = nn.parallel.DistributedDataParallel(student, device_ids=ids)
    elif strategy == "fsdp":
        shard(student, device, precision)
    if shard_teacher and strategy != "single" and getattr(distiller, "teacher", None) is not None:
        shard(distiller.teacher, device, precision)
    return student


def unplace(distiller: Any, student: nn.Module) -> None:
    """Give the distiller back its bare student (a DDP wrapper is dropped; FSDP2 stays in place)."""
    distiller.student = student


def gathered_state(
    student: nn.Module, opt: torch.optim.Optimizer, strategy: str, extra: nn.Module | None = None
) -> tuple[Any, dict]:
    """What a checkpoint holds, gathered from every rank (a collective: every rank calls it):
    the student (the bare module, or its full state dict under FSDP2) and the optimizer's full
    state dict keyed by parameter names, so it loads on any number of processes. ``extra``:
    trainable modules besides the student that the optimizer also updates (their names get
    the prefix ``extra.``, the student's ``student.``)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    optim = get_optimizer_state_dict(_optimized(student, extra), opt, options=options)
    weights = get_model_state_dict(student, options=options) if strategy == "fsdp" else unwrap(student)
    return weights, optim


def load_gathered_state(student: nn.Module, opt: torch.optim.Optimizer, weights_file: str, optim: dict,
                        strategy: str, extra: nn.Module | None = None) -> None:  # fmt: skip
    """Load what :func:`gathered_state` wrote, whatever the number of processes that wrote it."""
    from safetensors.torch import load_file, load_model
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    if strategy == "fsdp":
        set_model_state_dict(student, load_file(weights_file), options=options)
    else:
        load_model(unwrap(student), weights_file, device=str(next(unwrap(student).parameters()).device))
    set_optimizer_state_dict(_optimized(student, extra), opt, optim, options=options)


def _optimized(student: nn.Module, extra: nn.Module | None) -> nn.Module:
    """The modules whose parameters the optimizer holds."""
    return student if extra is None else nn.ModuleDict({"student": student, "extra": extra})
