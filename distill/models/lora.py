"""LoRA students (``peft=lora``): low-rank adapters on the student's attention and MLP projections, through
``peft``. Only the adapters train (the optimizer sees only parameters that require gradients); the output
head stays frozen, so the chunked loss works from it unchanged. Checkpoints hold the adapted model and
resume exactly; the exported student is merged (:func:`merged_copy`) and loads with plain transformers.
"""

from __future__ import annotations

import copy
import logging
import warnings

from torch import nn
from transformers.pytorch_utils import Conv1D

from distill.core.errors import ConfigError, first_line, is_number, require, require_int, require_package
from distill.models.facts import is_adapted, layer_list, model_task, num_parameters

log = logging.getLogger(__name__)


def default_targets(model: nn.Module) -> list[str]:
    """The names of the linear maps inside the transformer layers: the attention and MLP projections
    (``q_proj`` ... ``down_proj`` for Llama, ``c_attn``, ``c_proj``, ``c_fc`` for GPT-2, ``query`` ... ``dense``
    for BERT)."""
    names = {
        name.rsplit(".", 1)[-1] for name, m in layer_list(model).named_modules() if isinstance(m, (nn.Linear, Conv1D))
    }
    return sorted(names)


def lora_student(
    student: nn.Module, r: int = 8, alpha: float = 16.0, dropout: float = 0.0, target_modules: list[str] | None = None
) -> nn.Module:
    """``student`` with LoRA adapters of rank ``r`` (scale ``alpha / r``, ``dropout`` on their input) on
    ``target_modules`` (null: :func:`default_targets`); every other weight frozen."""
    require_package("peft", "peft=lora")
    require_int("peft.r", r)
    require(is_number(alpha) and alpha > 0, "peft.alpha", alpha, "must be > 0")  # type: ignore[operator]
    require(is_number(dropout) and 0 <= dropout < 1, "peft.dropout", dropout, "must be in [0, 1)")  # type: ignore[operator]
    from peft import LoraConfig, get_peft_model

    targets = list(target_modules) if target_modules else default_targets(student)
    task = "CAUSAL_LM" if model_task(student) == "causal_lm" else "SEQ_CLS"
    fan_in_fan_out = any(isinstance(m, Conv1D) for m in student.modules())  # GPT-2 stores its maps transposed
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type=task,
                        fan_in_fan_out=fan_in_fan_out)  # fmt: skip
    try:
        with warnings.catch_warnings():  # peft asks transformers a deprecated question (is_gradient_checkpointing)
            warnings.simplefilter("ignore", FutureWarning)
            adapted = get_peft_model(student, config)
    except ValueError as e:
        raise ConfigError(f"peft.target_modules={targets!r} is invalid: {first_line(e)}") from None
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    print(f"LoRA student: {trainable:,} trainable parameters (adapters) of {num_parameters(adapted):,}; "
          f"rank {r} on {', '.join(targets)}")  # fmt: skip
    return adapted


def merged_copy(model: nn.Module) -> nn.Module:
    """A plain transformers model with the adapters merged into its weights (``model`` is left as it is)."""
    if not is_adapted(model):
        return model
    return copy.deepcopy(model).merge_and_unload()
