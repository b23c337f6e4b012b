"""Distil a teacher into a student: ``python train.py [group=option] [key=value ...]``.

Composes conf/config.yaml with Hydra, runs distill.run.run in the run directory and returns the
student's validation metric (for sweepers). A bad config or bad data prints one line and exits
non-zero.
"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from distill.config import schemas
from distill.core.errors import DistillError
from distill.run import run

schemas.register()  # the typed schemas the config files start from


@hydra.main(version_base="1.3", config_path=str(Path(__file__).parent / "conf"), config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        return run(cfg)
    except Exception as e:
        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:  # Hydra marks this job failed and runs the others: log why
            logging.getLogger("distill").error(  # (console and the job's train.log; a traceback for bugs)
                "job %s failed (%s): %s",
                hc.job.num,
                " ".join(hc.overrides.task),
                e,
                exc_info=not isinstance(e, DistillError),
            )
            raise
        if not isinstance(e, DistillError):
            raise
        logging.getLogger("distill").error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))


if __name__ == "__main__":
    main()
