"""Compare runs without W&B: ``python -m distill.report DIR [DIR ...] [--out DIR]`` (see :mod:`distill.report.cli`)."""

from distill.report.cli import main, write_report
from distill.report.runs import collect, parse_overrides
from distill.report.tables import build_table, column_names, varied_keys

__all__ = ["build_table", "collect", "column_names", "main", "parse_overrides", "varied_keys", "write_report"]
