"""Faults that must lose nothing: preemption and exact resume, non-finite losses, failing saves,
W&B outages, bad data and bad model paths."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerFast

from distill.core.errors import ConfigError, DataError, DistillError
from distill.data import IGNORE_INDEX, TaskData
from distill.data.arithmetic import build_tokenizer, make_splits
from distill.distillers import SupervisedDistiller
from distill.loop import Interrupted, TrainConfig, checkpoint_dirs, fit, read_checkpoint_state
from distill.models import check_same_tokenizer, from_config, pretrained
from tests.conftest import ROOT, cli
from tests.wandb_offline import offline_runs

RUN = [
    "experiment=smoke",
    "train.max_steps=60",
    "train.checkpoint_every=10",
    "train.eval_every=30",
    "train.log_every=5",
]


def train_cmd(*overrides: str) -> list[str]:
    return [sys.executable, "train.py", *overrides]


def student_metrics(run_dir: Path) -> dict[str, float]:
    return {k: v for k, v in json.loads((run_dir / "metrics.json").read_text()).items() if k.startswith("student/")}


def test_sigterm_then_resume_matches_uninterrupted_run(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    done = subprocess.run(
        train_cmd(*RUN, f"hydra.run.dir={straight}"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]

    proc = subprocess.Popen(
        train_cmd(*RUN, f"hydra.run.dir={resumed}"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not checkpoint_dirs(resumed):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    stopped_at = read_checkpoint_state(checkpoint_dirs(resumed)[0])["step"]
    assert 10 <= stopped_at < 60, "the run should have been interrupted mid-way"
    assert not (resumed / "metrics.json").exists()

    again = subprocess.run(
        train_cmd(*RUN, f"hydra.run.dir={resumed}", "train.resume=true"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    ckpt = resumed / "checkpoints" / f"step-{stopped_at:06d}"
    assert f"resumed from {ckpt} at step {stopped_at}" in again.stdout + again.stderr

    a, b = student_metrics(straight), student_metrics(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], abs=1e-6), k
    wa = load_file(straight / "student" / "model.safetensors")
    wb = load_file(resumed / "student" / "model.safetensors")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-6
    # The resumed job continues the same W&B run.
    ids = {r["id"] for r in offline_runs(resumed / "wandb")}
    assert len(ids) == 1


# ----------------------------------------------------------------------------- in-process loop faults


@pytest.fixture(scope="module")
def tiny():
    tok = build_tokenizer()
    data = TaskData(make_splits(n_train=96, n_validation=8, n_test=8), tok, max_length=64, batch_size=8)
    return tok, data


def tiny_student(tok, seed=0):
    torch.manual_seed(seed)
    return from_config("gpt2", tokenizer=tok, n_layer=1, n_embd=16, n_head=2, n_positions=96)


class NaNAt(SupervisedDistiller):
    """Returns a NaN loss on the given (1-based) micro-batches."""

    def __init__(self, *args, bad: set[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.bad, self.calls = bad, 0

    def compute_loss(self, batch):
        self.calls += 1
        out = super().compute_loss(batch)
        if self.calls in self.bad:
            out.loss = out.loss * float("nan")
        return out


def test_nonfinite_loss_stops_naming_the_step_without_touching_weights(tiny, tmp_path):
    tok, data = tiny
    d = NaNAt(tiny_student(tok), tokenizer=tok, bad={3})
    seen = {}

    class Spy:
        def log(self, metrics, step):
            seen[step] = {k: v.clone() for k, v in d.student.state_dict().items()}

    with pytest.raises(DistillError, match="non-finite loss at step 3"):
        fit(d, data.train_loader(), None, TrainConfig(max_steps=10, log_every=1, progress=False), logger=Spy())
    after_step_2 = seen[2]
    assert all(torch.equal(after_step_2[k], v) for k, v in d.student.state_dict().items())
    assert all(torch.isfinite(v).all() for v in d.student.state_dict().values())


def test_nonfinite_loss_can_skip_the_batch(tiny, tmp_path, caplog):
    tok, data = tiny
    d = NaNAt(tiny_student(tok), tokenizer=tok, bad={2, 5})
    with caplog.at_level(logging.WARNING):
        fit(
            d,
            data.train_loader(),
            None,
            TrainConfig(max_steps=8, on_nonfinite="skip", progress=False, output_dir=str(tmp_path)),
        )
    assert "update skipped" in caplog.text
    assert all(torch.isfinite(v).all() for v in d.student.state_dict().values())
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train/skipped_steps"] == 2


def test_checkpoint_holds_everything_needed_to_resume(tiny, tmp_path):
    tok, data = tiny
    d = SupervisedDistiller(tiny_student(tok), tokenizer=tok)

    class FakeLogger:
        def log(self, metrics, step):
            pass

        def checkpoint_state(self):
            return {"wandb_run_id": "abc123"}

    fit(
        d,
        data.train_loader(),
        None,
        TrainConfig(max_steps=6, checkpoint_every=2, progress=False, output_dir=str(tmp_path)),
        logger=FakeLogger(),
    )
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["step-000006", "step-000004"]  # newest first, 2 kept
    state = read_checkpoint_state(checkpoint_dirs(tmp_path)[0])  # weights_only=True load
    assert state["step"] == 6 and state["micro"] == 6 and state["wandb_run_id"] == "abc123"
    assert {"optimizer", "scheduler", "rng"} <= set(state)


def test_resume_in_process_is_exact(tiny, tmp_path):
    tok, data = tiny
    cfg = dict(max_steps=8, checkpoint_every=4, progress=False, lr=1e-2)
    full = SupervisedDistiller(tiny_student(tok), tokenizer=tok)
    fit(full, data.train_loader(seed=3), None, TrainConfig(**cfg, output_dir=str(tmp_path / "a")))

    class StopAt4(SupervisedDistiller):
        def train_step(self, batch, loss_scale=1.0):
            self.n = getattr(self, "n", 0) + 1
            if self.n == 4:
                os.kill(os.getpid(), signal.SIGINT)  # delivered mid-step, handled after it
            return super().train_step(batch, loss_scale)

    part = StopAt4(tiny_student(tok), tokenizer=tok)
    with pytest.raises(Interrupted, match="SIGINT at step 4"):
        fit(part, data.train_loader(seed=3), None, TrainConfig(**cfg, output_dir=str(tmp_path / "b")))
    rest = SupervisedDistiller(tiny_student(tok, seed=99), tokenizer=tok)  # other init: overwritten by the checkpoint
    fit(rest, data.train_loader(seed=3), None, TrainConfig(**cfg, output_dir=str(tmp_path / "b"), resume=True))
    for k, v in full.student.state_dict().items():
        assert torch.allclose(v, rest.student.state_dict()[k], atol=1e-6), k


# ----------------------------------------------------------------------------- data and model checks


def _source(**splits):
    return DatasetDict({k: Dataset.from_dict(v) for k, v in splits.items()})


def test_data_checks(caplog):
    tok = build_tokenizer()
    good = {"prompt": ["What is 1 + 1?\n"], "response": ["Answer: 2"]}
    with pytest.raises(DataError, match=r"lacks column.*response"):
        TaskData(_source(train={"prompt": ["x"]}, validation=good), tok)
    with pytest.raises(DataError, match="'validation' is empty"):
        TaskData(_source(train=good, validation={"prompt": [], "response": []}), tok)
    with pytest.raises(DataError, match="no 'validation' split"):
        TaskData(_source(train=good), tok)
    long = {"prompt": ["What is 1 + 1?\n"] * 3, "response": ["Answer: 2", "1+1=2, write 2 carry 0. " * 10, "x " * 50]}
    with caplog.at_level(logging.WARNING):
        data = TaskData(_source(train=long, validation=good), tok, max_length=24)
    assert "2 of 3 train examples exceed data.max_length=24" in caplog.text
    assert max(len(x) for x in data.train["input_ids"]) == 24


def test_tokenizer_without_pad_gets_eos_and_eos_stays_a_label(caplog):
    base = build_tokenizer()
    tok = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, eos_token="<eos>")  # no pad token
    assert tok.pad_token is None
    good = {"prompt": ["What is 1 + 1?\n", "What is 12 + 30?\n"], "response": ["Answer: 2", "Answer: 42"]}
    with caplog.at_level(logging.WARNING):
        data = TaskData(_source(train=good, validation=good), tok)
    assert tok.pad_token_id == tok.eos_token_id and "no pad token" in caplog.text
    batch = next(iter(data.val_loader()))
    for _ids, labels in zip(batch["input_ids"], batch["labels"]):
        n = int((labels != IGNORE_INDEX).sum())
        last = labels[labels != IGNORE_INDEX][-1]
        assert last == tok.eos_token_id and n > 1  # EOS is learnt although it is also the pad


def test_model_checks(tmp_path, monkeypatch):
    with pytest.raises(DistillError, match="does not exist"):
        pretrained(str(tmp_path / "no-such-teacher"))
    seen = {}

    def fake_from_pretrained(name, **kwargs):
        seen.update(kwargs)
        raise OSError("offline")

    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    with pytest.raises(DistillError, match="could not load model 'org/model'"):
        pretrained("org/model")
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True


def test_tokenizer_mismatch_is_one_clear_error():
    a = build_tokenizer()
    b = build_tokenizer(vocab_size=60)
    with pytest.raises(
        ConfigError, match=rf"teacher tokenizer \({len(b)} tokens\) and student tokenizer \({len(a)} tokens\)"
    ):
        check_same_tokenizer(a, b)
    check_same_tokenizer(a, build_tokenizer())


def test_cli_model_path_error_is_one_line(tmp_path):
    result = cli(
        "experiment=smoke",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
        "model=smollm2",
        "model.student.name_or_path=/no/such/student",
        "model.tokenizer._target_=distill.data.arithmetic.build_tokenizer",
        "~model.tokenizer.name_or_path",
        "~model.teacher_tokenizer",
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = result.error_lines()
    assert len(errors) == 1 and "model path /no/such/student does not exist" in errors[0], result.stderr[-2000:]
