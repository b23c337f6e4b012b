"""The experiment ``train.py`` runs, its record on disk, and fitting a teacher for it."""

from distill.run.experiment import run
from distill.run.teacher_fit import fit_teacher

__all__ = ["fit_teacher", "run"]
