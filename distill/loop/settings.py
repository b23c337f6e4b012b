"""Every option of the loop and its default, once.

:class:`TrainSettings` is Hydra's schema for the ``train`` node (registered by
:mod:`distill.config.schemas`), so Hydra refuses a wrong type or an unknown key, and the yaml files
only override it. The Python API uses the same classes (``distiller.train(max_steps=...)`` builds a
:class:`TrainConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.core.errors import require, require_int

NONFINITE_POLICIES = ("stop", "skip")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class TrainSettings:
    """The loop's options: the ``train`` node of ``train.py``."""

    max_steps: int | None = 1500  # optimizer steps; null: run ``epochs`` epochs
    epochs: int | None = None  # if both are set, whichever ends first
    grad_accum: int = 1  # micro-batches per optimizer step
    max_grad_norm: float | None = 1.0  # null: no clipping
    lr_scheduler: str = "cosine"  # any name transformers.get_scheduler knows
    warmup_steps: int = 50
    eval_every: int = 500  # 0: only at the end
    eval_test: bool = False  # also evaluate the test split at every validation (test/<m>: learning curves)
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2  # the newest N are kept; an unreadable one falls back to the one before
    device: str = "auto"  # auto: this rank's GPU if there is one, else the CPU
    strategy: str = "auto"  # auto | single | ddp | fsdp (auto: ddp under torchrun, else single)
    shard_teacher: bool = False  # under torchrun: shard the teacher with FSDP2 (else replicated per rank)
    num_threads: int | None = None  # CPU threads; null: all cores, or cores // n_jobs under a parallel launcher
    precision: str = "auto"  # auto: bf16 autocast on GPUs that support it, else fp32
    resume: bool = False  # continue from the newest checkpoint in the run directory
    resume_allow_changes: list[str] = field(default_factory=list)  # config keys (or prefixes) a resume may change
    on_nonfinite: str = "stop"  # stop: fail naming the step; skip: drop the batch's update
    progress: bool = True
    desc: str = "train"  # the progress bar's label


@dataclass
class TrainConfig(TrainSettings):
    """Everything :func:`distill.loop.fit` takes: the ``train`` options, the keys the runner sets
    (``seed``, ``output_dir``) and, for the Python API without an optimizer, AdamW's ``lr`` and
    ``weight_decay``. Values are checked here, one line per problem."""

    seed: int = 0
    output_dir: str | None = None
    lr: float = 5e-4
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        for key in ("max_steps", "epochs", "num_threads"):
            require_int(f"train.{key}", getattr(self, key), none_ok=True)
        require(
            self.max_steps is not None or self.epochs is not None, "train.max_steps", None, "set max_steps or epochs"
        )
        for key in ("grad_accum", "log_every", "keep_checkpoints"):
            require_int(f"train.{key}", getattr(self, key))
        for key in ("eval_every", "checkpoint_every", "warmup_steps"):
            require_int(f"train.{key}", getattr(self, key), minimum=0)
        require(
            self.max_grad_norm is None or (isinstance(self.max_grad_norm, (int, float)) and self.max_grad_norm > 0),
            "train.max_grad_norm",
            self.max_grad_norm,
            "must be > 0 (0 would freeze the weights), or null for no clipping",
        )
        require(
            self.on_nonfinite in NONFINITE_POLICIES, "train.on_nonfinite", self.on_nonfinite, "must be stop or skip"
        )
        require(
            self.precision in PRECISIONS, "train.precision", self.precision, f"must be one of {', '.join(PRECISIONS)}"
        )
        require(isinstance(self.lr, (int, float)) and self.lr > 0, "lr", self.lr, "must be > 0")
