"""The offline teacher-logit cache and the memory-bounded loss inside the distillers: values equal
the online/materialised ones, the cache is keyed and written safely, and a run that has it never
loads the teacher."""

from __future__ import annotations

import logging

import pytest
import torch

from distill.core.errors import ConfigError
from distill.distillers import LanguageDistiller, LogitDistiller, SupervisedDistiller
from distill.teacher.logit_cache import (
    CacheSettings,
    TeacherLogitCache,
    cache_for_loader,
    open_or_build,
    sparse_targets,
    write_meta,
)
from tests.conftest import cli, cli_subprocess, gpt2, read_jsonl, task_data

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def data(tok):
    return task_data(tok, n_train=40, n_eval=8)


def _logits(seed: int) -> torch.Tensor:
    return torch.randn(6, 30, generator=torch.Generator().manual_seed(seed)) * 2


def test_sparse_targets_top_k_and_sampled():
    logits = _logits(0)
    top = sparse_targets(logits, CacheSettings("top_k", 5), torch.Generator().manual_seed(0))
    assert torch.equal(top["ids"], logits.topk(5).indices) and torch.equal(top["logits"], logits.topk(5).values)
    drawn = sparse_targets(logits, CacheSettings("sampled", 8), torch.Generator().manual_seed(0))
    counts = drawn["counts"]
    assert torch.equal(counts.sum(-1), torch.full((6,), 8.0))  # every draw counted once
    assert torch.equal(drawn["logits"], logits.gather(1, drawn["ids"]))
    assert (counts[:, :-1] >= counts[:, 1:]).all()  # drawn ids first, by count
    again = sparse_targets(logits, CacheSettings("sampled", 8), torch.Generator().manual_seed(0))
    assert torch.equal(again["ids"], drawn["ids"])  # seeded


def test_sampled_cache_draws_at_its_temperature():
    """The counts of many draws approach p_tau = softmax(logits / tau), not p_1."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    for tau in (1.0, 2.0):
        drawn = sparse_targets(
            logits, CacheSettings("sampled", 20000, temperature=tau), torch.Generator().manual_seed(0)
        )
        freq = torch.zeros(4).scatter_add_(0, drawn["ids"][0], drawn["counts"][0]) / 20000
        torch.testing.assert_close(freq, torch.softmax(logits[0] / tau, -1), atol=0.01, rtol=0)
    with pytest.raises(ConfigError, match=r"distiller\.teacher_cache_temperature=0"):
        CacheSettings("sampled", 4, temperature=0)


def test_a_temperature_above_the_draw_temperature_warns(tok, caplog):
    teacher, student = gpt2(tok, 0), gpt2(tok, 1)
    with caplog.at_level(logging.WARNING):
        LogitDistiller(student, teacher, tok, temperature=4.0, teacher_cache="sampled")
    assert "above the sampled cache's draw temperature 2" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        LogitDistiller(student, teacher, tok, temperature=2.0, teacher_cache="sampled")
        LogitDistiller(student, teacher, tok, temperature=4.0, teacher_cache="top_k")
    assert "draw temperature" not in caplog.text


def test_full_width_top_k_cache_gives_the_online_loss(tok, data, tmp_path):
    teacher, student = gpt2(tok, 0, n_layer=2), gpt2(tok, 1)
    online = LogitDistiller(student, teacher, tok, temperature=2.0, alpha=0.7)
    k = len(tok)  # every token cached: the sparse target is the whole distribution
    cached = LogitDistiller(student, teacher, tok, temperature=2.0, alpha=0.7, teacher_cache="top_k",
                            teacher_cache_size=k, cache_dir=str(tmp_path))  # fmt: skip
    cached.prepare(data.train_loader())
    assert cached.teacher_targets is not None and cached.teacher_targets.meta["tokens"] > 0
    batch = next(iter(data.train_loader()))
    a, b = online.compute_loss(batch), cached.compute_loss(batch)
    assert b.parts["kd"] == pytest.approx(a.parts["kd"], rel=1e-5) and b.loss.item() == pytest.approx(a.loss.item())
    g = torch.autograd.grad(a.loss, student.transformer.wte.weight)[0]
    h = torch.autograd.grad(b.loss, student.transformer.wte.weight)[0]
    torch.testing.assert_close(h, g, rtol=1e-4, atol=1e-6)


def test_cache_key_changes_with_teacher_and_data_and_is_reused_otherwise(tok, data, tmp_path):
    settings = CacheSettings("sampled", 4)
    teacher = gpt2(tok, 0)

    def open_cache(model, loader):
        return cache_for_loader(model, loader, settings, tmp_path, len(tok), log)

    first = open_cache(teacher, data.train_loader())
    built_at = (first.path / "ids.npy").stat().st_mtime_ns
    assert open_cache(teacher, data.train_loader()).path == first.path
    assert (first.path / "ids.npy").stat().st_mtime_ns == built_at  # reused, not rebuilt
    d1 = LogitDistiller(
        gpt2(tok, 1), teacher, tok, teacher_cache="sampled", teacher_cache_size=4, cache_dir=str(tmp_path)
    )
    d1.prepare(data.train_loader())
    other_teacher = gpt2(tok, 5)
    d2 = LogitDistiller(gpt2(tok, 1), other_teacher, tok, teacher_cache="sampled", teacher_cache_size=4,
                        cache_dir=str(tmp_path))  # fmt: skip
    d2.prepare(data.train_loader())
    d3 = LogitDistiller(
        gpt2(tok, 1), teacher, tok, teacher_cache="sampled", teacher_cache_size=4, cache_dir=str(tmp_path)
    )
    d3.prepare(task_data(tok, n_train=24, n_eval=8).train_loader())
    assert d1.teacher_targets.path == first.path  # one key: the teacher's identity, the data, the settings
    paths = {d1.teacher_targets.path, d2.teacher_targets.path, d3.teacher_targets.path}
    assert len(paths) == 3  # another teacher, other data: other caches


def test_a_half_written_cache_is_never_used(tmp_path):
    (tmp_path / "abc.tmp").mkdir(parents=True)
    (tmp_path / "abc.tmp" / "ids.npy").write_bytes(b"partial")  # a build that died
    (tmp_path / "abc").mkdir()  # a directory without meta.json is not a cache either
    calls = []

    def build_fn(path):
        calls.append(path)
        import numpy as np

        path.mkdir(exist_ok=True)
        for name, array in {"ids": np.zeros((1, 2), np.int32), "logits": np.zeros((1, 2), np.float32),
                            "offsets": np.array([0, 1])}.items():  # fmt: skip
            np.save(path / f"{name}.npy", array)
        write_meta(path, {"tokens": 1, "mode": "top_k", "size": 2, "width": 3})

    cache, built = open_or_build(tmp_path, "abc", build_fn, log)
    assert built and len(calls) == 1 and calls[0] != tmp_path / "abc"  # built aside, then renamed into place
    assert isinstance(cache, TeacherLogitCache) and cache.path == tmp_path / "abc" and cache.meta["tokens"] == 1


@pytest.mark.parametrize("mode", ["top_k", "sampled"])
def test_a_damaged_cache_is_rebuilt_with_one_line_never_read(tok, data, tmp_path, caplog, mode):
    """Each file of a built cache cut to 100 bytes (or deleted): the next open says so in one line and
    rebuilds it, and its targets are the first build's; opened directly, it is refused in one line."""
    teacher, settings = gpt2(tok, 0), CacheSettings(mode, 4)
    first = cache_for_loader(teacher, data.train_loader(), settings, tmp_path, len(tok), log)
    expected = first.targets(range(3))
    names = sorted(p.name for p in first.path.iterdir())
    assert names == sorted(["ids.npy", "logits.npy", "offsets.npy", "meta.json"] + ["counts.npy"] * (mode == "sampled"))
    for name, how in [*((n, "cut") for n in names), ("offsets.npy", "deleted"), ("meta.json", "deleted")]:
        file = first.path / name
        file.unlink() if how == "deleted" else file.write_bytes(file.read_bytes()[:100])
        with pytest.raises(ValueError) as refused:
            TeacherLogitCache(first.path)
        assert str(refused.value).startswith(f"the teacher cache {first.path} is damaged (") and "\n" not in str(
            refused.value
        )
        caplog.clear()
        with caplog.at_level("WARNING"):
            again = cache_for_loader(teacher, data.train_loader(), settings, tmp_path, len(tok), log)
        lines = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
        assert len(lines) == 1 and f"teacher cache {first.path} is damaged" in lines[0], (name, how, lines)
        got = again.targets(range(3))
        assert torch.equal(got.ids, expected.ids) and torch.equal(got.logits, expected.logits), (name, how)


def test_cache_refuses_what_it_cannot_do(tok):
    teacher, student = gpt2(tok, 0), gpt2(tok, 1)
    for divergence in ("reverse_kl", "jsd", "tvd"):
        with pytest.raises(ConfigError, match="supports forward_kl and skew_forward_kl only"):
            LogitDistiller(student, teacher, tok, divergence=divergence, teacher_cache="top_k")
    with pytest.raises(ConfigError, match=r"distiller\.teacher_cache"):
        LogitDistiller(student, teacher, tok, teacher_cache="all")
    with pytest.raises(ConfigError, match=r"distiller\.teacher_cache_size"):
        LogitDistiller(student, teacher, tok, teacher_cache="sampled", teacher_cache_size=0)


@pytest.mark.parametrize("make", ["logit", "supervised", "language"])
def test_chunked_loss_equals_materialised_in_every_distiller(tok, data, tmp_path, make):
    batch = next(iter(data.train_loader()))

    def distiller(chunk_size):
        student, teacher = gpt2(tok, 1), gpt2(tok, 0, n_layer=2)
        if make == "logit":
            return LogitDistiller(student, teacher, tok, divergence="jsd", alpha=0.6, chunk_size=chunk_size)
        if make == "supervised":
            return SupervisedDistiller(student, tokenizer=tok, chunk_size=chunk_size)
        return LanguageDistiller(student, teacher, tok, alpha=0.5, kd_weight=0.3, max_length=6,
                                 cache_dir=str(tmp_path), chunk_size=chunk_size)  # fmt: skip

    plain, bounded = distiller(0), distiller(5)
    a, b = plain.compute_loss(batch), bounded.compute_loss(batch)
    assert b.loss.item() == pytest.approx(a.loss.item(), rel=1e-5)
    assert b.parts.keys() == a.parts.keys()
    a.loss.backward()
    b.loss.backward()
    for (name, p), q in zip(plain.student.named_parameters(), bounded.student.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert bounded.validate(data.val_loader())["loss"] == pytest.approx(plain.validate(data.val_loader())["loss"])


def test_a_sweep_builds_the_cache_once(tmp_path):
    out = tmp_path / "grid"
    proc = cli_subprocess("-m", "experiment=smoke", "logger=none", "train.progress=false", "train.max_steps=4",
                          "train.eval_every=0", "distiller.teacher_cache=sampled", "distiller.temperature=1,2",
                          "distiller.alpha=0.3,0.7", f"hydra.sweep.dir={out}",
                          env={"DISTILL_CACHE": str(tmp_path / "cache")})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = [(out / str(job) / "train.log").read_text() for job in range(4)]
    assert sum("teacher cache built" in log for log in logs) == 1
    assert sum("teacher cache reused" in log for log in logs) == 3
    assert all(any("train/kd" in h for h in read_jsonl(out / str(job) / "history.jsonl")) for job in range(4))


def test_a_run_with_a_cache_never_loads_the_teacher(tmp_path, monkeypatch):
    args = ("experiment=smoke", "logger=none", "train.progress=false", "train.max_steps=4", "train.eval_every=0",
            "distiller.teacher_cache=top_k", "distiller.teacher_cache_size=8")  # fmt: skip
    first = cli(*args, f"hydra.run.dir={tmp_path / 'first'}")  # builds the cache and the teacher's metrics
    assert first.returncode == 0, first.stderr[-3000:]

    import distill.teacher.source as setup

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher was loaded")

    monkeypatch.setattr(setup.TeacherSource, "model", no_teacher)  # any load of the teacher fails the run
    again = cli(*args, f"hydra.run.dir={tmp_path / 'again'}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "teacher cache reused" in again.stdout and "training does not load the teacher" in again.stdout
