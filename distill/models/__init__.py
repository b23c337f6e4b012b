"""Models: loading them (config, hub id, local directory), facts about a model, students born from a
teacher, and faster activations."""

from distill.models.facts import (
    check_model_fits,
    check_same_tokenizer,
    layer_list,
    model_task,
    num_layers,
    num_parameters,
    output_layer,
    output_width,
    shared_width,
    unwrap,
)
from distill.models.from_teacher import select_layers, student_from_teacher
from distill.models.loading import from_config, load_pretrained, pretrained, pretrained_dir, pretrained_tokenizer

__all__ = [
    "check_model_fits",
    "check_same_tokenizer",
    "from_config",
    "layer_list",
    "load_pretrained",
    "model_task",
    "num_layers",
    "num_parameters",
    "output_layer",
    "output_width",
    "pretrained",
    "pretrained_dir",
    "pretrained_tokenizer",
    "select_layers",
    "shared_width",
    "student_from_teacher",
    "unwrap",
]
