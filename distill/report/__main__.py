"""``python -m distill.report``: see :mod:`distill.report.cli`."""

import sys

from distill.report.cli import main

sys.exit(main())
