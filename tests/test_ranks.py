"""Rank plumbing that needs no second process: SLURM's environment becomes torchrun's, and the
helpers are no-ops in one process."""

from __future__ import annotations

import os

from distill.core import ranks


def test_a_multi_task_slurm_job_exports_torchruns_variables(monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))  # what submitit exports is dropped after the test
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "4", "SLURM_PROCID": "3",
             "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_JOB_NUM_NODES": "2",
             "SLURM_JOB_NODELIST": "gpu[07-08]"}  # fmt: skip
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    assert ranks.launched()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("3", "4", "1")
    assert os.environ["MASTER_ADDR"] == "gpu07" and int(os.environ["MASTER_PORT"]) > 0


def test_one_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    assert not ranks.launched() and not ranks.active()
    assert (ranks.world(), ranks.rank(), ranks.is_main()) == (1, 0, True)
    assert ranks.gather_objects({"a": 1}) == [{"a": 1}] and ranks.broadcast(5) == 5
    assert ranks.mean_over_ranks({"x": 2.0}) == {"x": 2.0} and ranks.any_rank(True)
    assert ranks.main_first(lambda: 7) == 7
