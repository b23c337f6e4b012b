"""The top-k teacher cache's tail bucket: k + 1 bins (the cached ids and the rest of the teacher's mass)."""

import logging

import numpy as np
import pytest
import torch

from distill.core.errors import ConfigError
from distill.distillers import LogitDistiller
from distill.losses import Head, Hidden, Objective, SparseTeacher, distillation_loss, objective_loss
from distill.teacher.logit_cache import CacheSettings, cache_for_loader, cache_key, sparse_targets
from tests.conftest import cli, gpt2, task_data

log = logging.getLogger(__name__)
T = 2.0
FORWARD_KL = Objective(kd_weight=1.0, ce_weight=0.0, divergence="forward_kl", temperature=T)


def _case(k: int, n: int = 7, h: int = 5, v: int = 11, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden, weight, teacher_logits = (
        torch.randn(n, h, generator=g),
        torch.randn(v, h, generator=g),
        3 * torch.randn(n, v, generator=g),
    )
    cached = sparse_targets(teacher_logits, CacheSettings("top_k", k, temperature=T, tail=True), torch.Generator())
    teacher = SparseTeacher(cached["ids"], cached["logits"], draw_temperature=T, tail=cached["tail"])
    return hidden, weight, teacher_logits, teacher


def _reference(hidden: torch.Tensor, weight: torch.Tensor, teacher_logits: torch.Tensor, ids: torch.Tensor):
    """float64: T^2 mean KL over the k + 1 bins [p(ids_1), ..., p(ids_k), 1 - sum], written out."""
    x = hidden.double().requires_grad_(True)
    p_s = torch.softmax(x @ weight.double().T / T, -1)
    p_t = torch.softmax(teacher_logits.double() / T, -1)
    bins_s = torch.cat([p_s.gather(1, ids), 1 - p_s.gather(1, ids).sum(-1, keepdim=True)], 1)
    bins_t = torch.cat([p_t.gather(1, ids), 1 - p_t.gather(1, ids).sum(-1, keepdim=True)], 1)
    loss = (bins_t * (bins_t.log() - bins_s.log())).sum(-1).mean() * T**2
    loss.backward()
    return float(loss.detach()), x.grad


@pytest.mark.parametrize("chunk_size", [None, 3])
@pytest.mark.parametrize("k", [1, 4])
def test_k_plus_one_bins_match_the_hand_computed_kl_and_gradient(chunk_size, k):
    hidden, weight, teacher_logits, teacher = _case(k)
    want, want_grad = _reference(hidden, weight, teacher_logits, teacher.ids)
    x = hidden.clone().requires_grad_(True)
    out = objective_loss(Hidden(x, Head(weight)), teacher, None, FORWARD_KL, chunk_size=chunk_size)
    out["loss"].backward()
    assert float(out["loss"].detach()) == pytest.approx(want, rel=1e-5)
    torch.testing.assert_close(x.grad.double(), want_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_with_every_id_cached_the_tail_is_zero_and_the_loss_is_the_full_forward_kl(chunk_size):
    hidden, weight, teacher_logits, teacher = _case(k=11)
    assert torch.equal(teacher.tail, torch.zeros(7))
    full = distillation_loss(hidden @ weight.T, teacher_logits, divergence="forward_kl", temperature=T)
    got = objective_loss(Hidden(hidden, Head(weight)), teacher, None, FORWARD_KL, chunk_size=chunk_size)["loss"]
    assert float(got) == pytest.approx(float(full), abs=1e-6)


def test_the_tail_adds_what_top_k_drops():
    """Two tokens of three cached at k = 1 by hand: the teacher (at T) puts 1/2 on id 0, so the tail is 1/2."""
    logits = torch.tensor([[np.log(2.0) * T, 0.0, 0.0]])  # softmax(logits / T) = (1/2, 1/4, 1/4)
    cached = sparse_targets(logits, CacheSettings("top_k", 1, temperature=T, tail=True), torch.Generator())
    assert cached["ids"].tolist() == [[0]] and cached["tail"].tolist() == pytest.approx([0.5])
    teacher = SparseTeacher(cached["ids"], cached["logits"], draw_temperature=T, tail=cached["tail"])
    student = torch.zeros(1, 3)  # p_S = (1/3, 1/3, 1/3): bins (1/3, 2/3) against the teacher's (1/2, 1/2)
    kd = objective_loss(student, teacher, None, FORWARD_KL)["kd"]
    expected = T**2 * (0.5 * np.log(0.5 / (1 / 3)) + 0.5 * np.log(0.5 / (2 / 3)))
    assert float(kd) == pytest.approx(expected, rel=1e-6)
    without = objective_loss(student, SparseTeacher(cached["ids"], cached["logits"]), None, FORWARD_KL)["kd"]
    assert float(without) == pytest.approx(T**2 * np.log(3), rel=1e-6)  # all the mass on id 0: a different target


def test_a_tail_serves_forward_kl_at_its_temperature_only():
    hidden, weight, _, teacher = _case(k=3)
    for objective in (Objective(1.0, 0.0, "forward_kl", temperature=1.0), Objective(1.0, 0.0, "skew_forward_kl", T)):
        for chunk in (None, 4):
            with pytest.raises(ValueError, match="with a tail serves forward_kl at T = 2"):
                objective_loss(Hidden(hidden, Head(weight)), teacher, None, objective, chunk_size=chunk)
    with pytest.raises(ConfigError, match="true only with teacher_cache=top_k"):
        CacheSettings("sampled", 4, tail=True)


def test_a_cache_with_its_tail_is_keyed_apart_and_trains(tok, tmp_path):
    data = task_data(tok, n_train=24, n_eval=4)
    teacher = gpt2(tok, 0)
    plain, tail = CacheSettings("top_k", 4), CacheSettings("top_k", 4, tail=True)
    assert cache_key("t", data.train, plain) != cache_key("t", data.train, tail)
    cache = cache_for_loader(teacher, data.train_loader(), tail, tmp_path, len(tok), log)
    assert cache.tail is not None and cache.bytes_per_token == 4 * (4 + 4) + 4 and cache.settings.tail
    targets = cache.targets(range(2))
    assert targets.tail is not None and len(targets.tail) == len(targets) and float(targets.tail.min()) >= 0
    student = gpt2(tok, 1)
    d = LogitDistiller(student, teacher_targets=cache, tokenizer=tok, teacher_cache_tail=True)
    out = d.train_step(next(iter(data.train_loader())))
    assert np.isfinite(out["kd"]) and out["kd"] > 0
    with pytest.raises(ConfigError, match="teacher_cache_tail=True is invalid: keeps the teacher's tail"):
        LogitDistiller(student, teacher, tok, teacher_cache="top_k", teacher_cache_tail=True, temperature=1.0)


def test_train_py_with_the_tail(tmp_path):
    tail = ["distiller.teacher_cache=top_k", "distiller.teacher_cache_tail=true"]
    result = cli("experiment=smoke", "logger=none", *tail, f"paths.cache_dir={tmp_path / 'cache'}",
                 f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert any(p.name == "tail.npy" for p in (tmp_path / "cache").rglob("*.npy"))
