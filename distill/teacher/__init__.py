"""The teacher in one place: trained here, fine-tuned or loaded; its one identity, and the caches keyed on
it (sparse logits, generations, metrics)."""

from distill.teacher.generations import TeacherGenerations, cached_generations, label_unlabelled
from distill.teacher.identity import teacher_identity
from distill.teacher.logit_cache import CacheSettings, TeacherLogitCache
from distill.teacher.source import TeacherSource
from distill.teacher.trained import load_or_train_teacher, pretrained_teacher, trained_teacher_dir

__all__ = [
    "CacheSettings",
    "TeacherGenerations",
    "TeacherLogitCache",
    "TeacherSource",
    "cached_generations",
    "label_unlabelled",
    "load_or_train_teacher",
    "pretrained_teacher",
    "teacher_identity",
    "trained_teacher_dir",
]
