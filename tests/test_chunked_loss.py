"""chunked_objective_loss against objective_loss / sparse_kd_loss on materialised logits: values and gradients."""

from __future__ import annotations

import math
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from distill.losses import DIVERGENCES, Objective, objective_loss
from distill.losses.chunked import Head, chunk_rows, chunked_objective_loss
from distill.losses.sparse import SparseTeacher, sparse_kd_loss

N, H, V_S, V_T = 13, 6, 11, 14  # the teacher's head is wider (padded), like Qwen's


def make(seed: int, n: int = N, bias: bool = True, v_t: int = V_T, dtype: torch.dtype = torch.float32) -> dict:
    """Student hidden/head (with gradients), teacher hidden/head (a teacher that would get gradients), targets."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).to(dtype).requires_grad_()

    return dict(
        h=randn(n, H),
        w=randn(V_S, H, scale=0.8),
        b=randn(V_S) if bias else None,
        h_t=randn(n, H),
        w_t=randn(v_t, H, scale=0.8),
        y=torch.randint(0, V_S, (n,), generator=g),
    )


def student_params(x: dict) -> list[torch.Tensor]:
    return [p for p in (x["h"], x["w"], x["b"]) if p is not None]


def reference(x: dict, objective: Objective, width: int | None, reduction: str = "mean", teacher: bool = True):
    """objective_loss on materialised logits, and d loss / d (hidden, weight, bias)."""
    logits = x["h"] @ x["w"].T + (0 if x["b"] is None else x["b"])
    teacher_logits = (x["h_t"] @ x["w_t"].T).detach() if teacher else None
    parts = objective_loss(logits, teacher_logits, x["y"], objective, width, reduction)
    return parts, torch.autograd.grad(parts["loss"], student_params(x))


def chunked(x: dict, objective: Objective, width: int | None, chunk_size: int = 5, reduction: str = "mean", **kw):
    """chunked_objective_loss on the same inputs, and its gradients."""
    kw.setdefault("teacher", x["h_t"])
    parts = chunked_objective_loss(
        x["h"], Head(x["w"], x["b"]), kw.pop("teacher"), kw.pop("targets", x["y"]), objective,
        teacher_head=Head(x["w_t"]), width=width, chunk_size=chunk_size, reduction=reduction,
    )  # fmt: skip
    return parts, torch.autograd.grad(parts["loss"], student_params(x))


def assert_same(got: tuple, want: tuple) -> None:
    """Equal parts and gradients, to 1e-5 relative to each tensor's largest entry."""
    (parts, grads), (ref_parts, ref_grads) = got, want
    assert parts.keys() == ref_parts.keys()
    for a, b in [*((parts[k], ref_parts[k]) for k in parts), *zip(grads, ref_grads, strict=True)]:
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.detach().abs().max()) + 1e-7)


@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
@pytest.mark.parametrize(("width", "v_t", "bias"), [(None, V_S, True), (9, V_T, False), (V_S, V_T, True)])
def test_dense_matches_objective_loss(divergence, temperature, width, v_t, bias):
    x = make(seed=len(divergence) + int(temperature * 10), bias=bias, v_t=v_t)
    objective = Objective(0.7, 0.3, divergence, temperature, beta=0.3, skew=0.2)
    assert_same(chunked(x, objective, width), reference(x, objective, width))


@pytest.mark.parametrize("chunk_size", [1, 4, 12, 13, 100])
def test_any_chunk_size_gives_the_same_loss(chunk_size):
    x = make(seed=1)
    objective = Objective(kd_weight=0.5, ce_weight=0.5, divergence="jsd", temperature=2.0, beta=0.6)
    assert_same(chunked(x, objective, 9, chunk_size), reference(x, objective, 9))


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_reduction_sum(divergence):
    x = make(seed=2)
    objective = Objective(kd_weight=0.4, ce_weight=1.0, divergence=divergence, temperature=2.0)
    assert_same(chunked(x, objective, 9, reduction="sum"), reference(x, objective, 9, reduction="sum"))


@pytest.mark.parametrize(("kd_weight", "ce_weight"), [(0.0, 1.0), (1.0, 0.0), (2.0, 0.5)])
@pytest.mark.parametrize("divergence", ["forward_kl", "tvd"])
def test_zero_weights_leave_a_term_out_but_log_it(kd_weight, ce_weight, divergence):
    x = make(seed=3)
    objective = Objective(kd_weight=kd_weight, ce_weight=ce_weight, divergence=divergence, temperature=1.5)
    got = chunked(x, objective, 9)
    assert_same(got, reference(x, objective, 9))
    assert {"kd", "ce", "loss"} == got[0].keys()


def test_without_teacher_or_without_targets():
    x = make(seed=4)
    ce_only = Objective(kd_weight=0.0, ce_weight=1.0)
    assert_same(chunked(x, ce_only, None, teacher=None), reference(x, ce_only, None, teacher=False))
    kd_only = Objective(kd_weight=1.0, ce_weight=0.0, divergence="reverse_kl", temperature=2.0)
    logits = x["h"] @ x["w"].T + x["b"]
    ref = objective_loss(logits, (x["h_t"] @ x["w_t"].T).detach(), None, kd_only, 9)
    want = ref, torch.autograd.grad(ref["loss"], student_params(x))
    assert_same(chunked(x, kd_only, 9, targets=None), want)


def test_teacher_gets_no_gradient_and_parts_are_for_logging():
    x = make(seed=5)
    objective = Objective(kd_weight=0.5, ce_weight=0.5, temperature=2.0)
    parts = chunked_objective_loss(x["h"], Head(x["w"], x["b"]), x["h_t"], x["y"], objective, Head(x["w_t"]), 9)
    parts["loss"].backward()
    assert x["h_t"].grad is None and x["w_t"].grad is None
    assert x["h"].grad is not None and x["w"].grad is not None and x["b"].grad is not None
    assert not parts["kd"].requires_grad and not parts["ce"].requires_grad
    with pytest.raises(RuntimeError, match="only once"):
        parts["loss"].grad_fn.apply(torch.ones(()), None, None)


def test_no_positions_give_zero_loss_and_zero_gradients():
    x = make(seed=6, n=0)
    objective = Objective(kd_weight=0.5, ce_weight=0.5, divergence="jsd", temperature=2.0)
    parts, grads = chunked(x, objective, 9)
    assert float(parts["loss"].detach()) == float(parts["kd"]) == float(parts["ce"]) == 0.0
    assert [g.shape for g in grads] == [p.shape for p in student_params(x)]
    assert all(not g.any() for g in grads)


def test_no_grad_gives_values_only():
    x = make(seed=7)
    objective = Objective(kd_weight=0.5, ce_weight=0.5, divergence="reverse_kl", temperature=2.0)
    with torch.no_grad():
        parts = chunked_objective_loss(x["h"], Head(x["w"], x["b"]), x["h_t"], x["y"], objective, Head(x["w_t"]), 9)
    ref, _ = reference(x, objective, 9)
    assert parts["loss"].grad_fn is None
    torch.testing.assert_close(parts["loss"], ref["loss"].detach(), rtol=1e-5, atol=1e-7)


def test_low_precision_inputs_compute_in_float32_and_return_their_dtype():
    x = make(seed=8, dtype=torch.bfloat16)
    objective = Objective(kd_weight=0.5, ce_weight=0.5, temperature=2.0)
    (parts, grads), (ref_parts, ref_grads) = chunked(x, objective, 9), reference(x, objective, 9)
    assert parts["loss"].dtype == torch.float32
    torch.testing.assert_close(parts["loss"], ref_parts["loss"], rtol=1e-2, atol=1e-3)
    for g, r in zip(grads, ref_grads, strict=True):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g, r, rtol=0.05, atol=0.02 * float(r.abs().max()))


# ---- sparse teachers ----


def sparse_teacher(seed: int, sampled: bool, n: int = N, k: int = 4) -> SparseTeacher:
    """k ids per row below 9; a sampled cache repeats a pad id (0) with count 0 in its last column."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(9, generator=g)[:k] for _ in range(n)])
    logits = torch.randn(n, k, generator=g) * 2
    if not sampled:
        return SparseTeacher(ids, logits)
    counts = torch.randint(1, 5, (n, k), generator=g).float()
    ids[:, -1], counts[:, -1] = 0, 0.0
    return SparseTeacher(ids, logits, counts)


@pytest.mark.parametrize("sampled", [False, True])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("width", [None, 9])
def test_sparse_matches_sparse_kd_loss(sampled, temperature, width):
    x = make(seed=9 + int(temperature), v_t=V_S)
    teacher = sparse_teacher(seed=10, sampled=sampled)
    objective = Objective(kd_weight=0.6, ce_weight=0.4, temperature=temperature)
    logits = x["h"] @ x["w"].T + x["b"]
    kd = sparse_kd_loss(logits, teacher, temperature, width)
    ce = torch.nn.functional.cross_entropy(logits, x["y"])
    want = {"kd": kd, "ce": ce, "loss": 0.6 * kd + 0.4 * ce}
    assert_same(
        chunked(x, objective, width, teacher=teacher), (want, torch.autograd.grad(want["loss"], student_params(x)))
    )


HAND_TOP_K = SparseTeacher(torch.tensor([[0, 1]]), torch.tensor([[0.0, 0.0]]))
HAND_SAMPLED = SparseTeacher(torch.tensor([[0, 1]]), torch.tensor([[0.0, math.log(4)]]), torch.tensor([[3.0, 1.0]]))
HAND_SAMPLED_AT_2 = SparseTeacher(HAND_SAMPLED.ids, HAND_SAMPLED.logits, HAND_SAMPLED.counts, draw_temperature=2.0)


@pytest.mark.parametrize(
    ("teacher", "temperature", "weights"),
    [
        (HAND_TOP_K, 3.0, [0.5, 0.5, 0.0]),  # softmax([0, 0] / 3)
        (HAND_SAMPLED, 1.0, [0.75, 0.25, 0.0]),  # counts / draws
        (HAND_SAMPLED, 2.0, [6 / 7, 1 / 7, 0.0]),  # ∝ [3, 1 * exp(log 4 * (1/2 - 1))] = [3, 1/2]
        (HAND_SAMPLED_AT_2, 2.0, [0.75, 0.25, 0.0]),  # drawn at T = 2: counts / draws
        (HAND_SAMPLED_AT_2, 1.0, [0.6, 0.4, 0.0]),  # ∝ [3, 1 * exp(log 4 * (1 - 1/2))] = [3, 2]
    ],
)
def test_sparse_by_hand(teacher, temperature, weights):
    """A uniform student over 3 tokens: kd = T^2 sum_i w_i log(3 w_i); d kd / ds = T (1/3 - w)."""
    hidden = torch.zeros(1, 3, requires_grad=True)  # logits = hidden @ I = 0: p_S uniform at any T
    weight = torch.eye(3, requires_grad=True)
    objective = Objective(kd_weight=1.0, ce_weight=0.0, temperature=temperature)
    parts = chunked_objective_loss(hidden, Head(weight), teacher, None, objective)
    w = torch.tensor(weights)
    want = temperature**2 * float(sum(wi * math.log(3 * wi) for wi in weights if wi > 0))
    assert math.isclose(float(parts["kd"]), want, rel_tol=1e-6)
    assert math.isclose(float(sparse_kd_loss(hidden @ weight.T, teacher, temperature).detach()), want, rel_tol=1e-6)
    parts["loss"].backward()
    torch.testing.assert_close(hidden.grad[0], temperature * (1 / 3 - w))  # d/ds, and W = I: d/dh = d/ds


def test_sparse_weights_at_temperature_one():
    top_k = sparse_teacher(seed=11, sampled=False)
    torch.testing.assert_close(top_k.weights(1.0), torch.softmax(top_k.logits, -1))
    sampled = sparse_teacher(seed=11, sampled=True)
    counts = sampled.counts
    torch.testing.assert_close(sampled.weights(1.0), counts / counts.sum(-1, keepdim=True))
    assert (sampled.weights(3.0)[:, -1] == 0).all()  # pad ids with count 0 get no mass at any T
    torch.testing.assert_close(sampled.weights(3.0).sum(-1), torch.ones(N))


@pytest.mark.parametrize("divergence", ["reverse_kl", "jsd", "tvd", "skew_reverse_kl"])
def test_sparse_teacher_needs_forward_kl(divergence):
    x = make(seed=12)
    with pytest.raises(ValueError, match="forward_kl"):
        chunked(x, Objective(kd_weight=1.0, divergence=divergence), None, teacher=sparse_teacher(12, sampled=False))


def test_bad_arguments_raise():
    x = make(seed=13)
    objective = Objective(kd_weight=1.0, ce_weight=1.0)
    for bad in (0, -3, "big", 2.5, True):
        with pytest.raises(ValueError, match="chunk_size"):
            chunked(x, objective, 9, chunk_size=bad)
    with pytest.raises(ValueError, match="reduction"):
        chunked(x, objective, 9, reduction="max")
    with pytest.raises(ValueError, match="width"):
        chunked(x, objective, None)  # V_S != V_T
    with pytest.raises(ValueError, match="width"):
        chunked(x, objective, V_T)  # wider than the student
    with pytest.raises(ValueError, match="no term"):
        chunked(x, Objective(kd_weight=1.0, ce_weight=0.0), 9, teacher=None)
    with pytest.raises(ValueError, match="teacher_head"):
        chunked_objective_loss(x["h"], Head(x["w"]), x["h_t"], x["y"], objective, width=9)


# ---- memory: no (N, V) tensor, and a small constant number of (chunk, V) ones ----


class LargeTensors(TorchDispatchMode):
    """Records the largest tensor any op creates, and the most tensors of >= ``size`` values alive at once."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size, self.largest, self.peak_alive = size, 0, 0
        self.alive: dict[int, weakref.ref] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and not t._is_view():
                self.largest = max(self.largest, t.numel())
                if t.numel() >= self.size:
                    self.alive[t.untyped_storage().data_ptr()] = weakref.ref(t)
        self.alive = {k: r for k, r in self.alive.items() if r() is not None}
        self.peak_alive = max(self.peak_alive, len(self.alive))
        return out


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_no_full_logits_are_materialised(divergence):
    n, vocab, chunk = 64, 200, 8  # the largest other tensors: d W (V, H) = 1200 and hidden (N, H) = 384 values
    g = torch.Generator().manual_seed(14)
    h, h_t = torch.randn(n, H, generator=g).requires_grad_(), torch.randn(n, H, generator=g)
    w, w_t = torch.randn(vocab, H, generator=g).requires_grad_(), torch.randn(vocab, H, generator=g)
    y = torch.randint(0, vocab, (n,), generator=g)
    objective = Objective(kd_weight=0.5, ce_weight=0.5, divergence=divergence, temperature=2.0)
    with LargeTensors(size=chunk * vocab // 2) as mode:
        chunked_objective_loss(h, Head(w), h_t, y, objective, Head(w_t), chunk_size=chunk)["loss"].backward()
    assert mode.largest <= max(chunk * vocab, vocab * H) < n * vocab
    # d W, and at most five (chunk, V) tensors at once (jsd: d logits, log p_S, log p_T, log M, p_T; a bool mask)
    assert mode.peak_alive <= 7, mode.peak_alive


def test_auto_chunks_take_128_rows_or_2_to_the_20_logits():
    """ "auto": 128 positions, more when the vocabulary is small (a chunk's fixed cost outweighs tiny logits)."""
    assert chunk_rows("auto", 151_936) == chunk_rows("auto", 32_000) == chunk_rows("auto", 8192) == 128
    assert chunk_rows("auto", 8191) == 129 and chunk_rows("auto", 100) == 10_486  # ceil(2^20 / V)
    assert chunk_rows(5, 100) == 5  # an explicit size is taken as it is
    x, objective = make(seed=16), Objective(kd_weight=0.6, ce_weight=0.4, divergence="jsd", temperature=2.0)
    assert_same(chunked(x, objective, 9, chunk_size="auto"), reference(x, objective, 9))


def test_a_sparse_teacher_on_every_token_is_the_dense_forward_kl():
    """k = V ids with the teacher's logits: weights(T) = p_T, so sparse KD = dense forward KL."""
    x = make(seed=15, v_t=V_S)
    teacher_logits = (x["h_t"] @ x["w_t"].T).detach()
    teacher = SparseTeacher(torch.arange(V_S).repeat(N, 1), teacher_logits)
    objective = Objective(kd_weight=0.8, ce_weight=0.2, temperature=2.0)
    assert_same(chunked(x, objective, None, teacher=teacher), reference(x, objective, None))


def test_validation_loss_takes_the_chunked_path_and_agrees(tok):
    """evaluate_model with chunk_size runs the head chunk by chunk (the model computes only its last position) and
    reports the same mean cross-entropy as the materialised path."""
    from distill.inference.evaluation import evaluate_model
    from tests.conftest import gpt2, task_data

    model, data = gpt2(tok, seed=3), task_data(tok, n_eval=16)
    heads_called: list[tuple[int, ...]] = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: heads_called.append(tuple(o.shape)))
    chunked, _ = evaluate_model(model, data.val_loader(), tok, task="causal_lm", generate=False, chunk_size=4)
    hook.remove()
    materialised, _ = evaluate_model(model, data.val_loader(), tok, task="causal_lm", generate=False)
    assert heads_called and all(shape[1] == 1 for shape in heads_called)  # the model's head: one position only
    assert math.isclose(chunked["loss"], materialised["loss"], rel_tol=1e-5)


@pytest.mark.parametrize("sampled", [False, True])
@pytest.mark.parametrize("temperature", [0.5, 2.0])
@pytest.mark.parametrize("width", [None, 9])
def test_sparse_skewed_forward_kl_matches_its_reference(sampled, temperature, width):
    x = make(seed=21 + int(temperature), v_t=V_S)
    teacher = sparse_teacher(seed=22, sampled=sampled)
    objective = Objective(kd_weight=0.6, ce_weight=0.4, divergence="skew_forward_kl", temperature=temperature, skew=0.3)
    logits = x["h"] @ x["w"].T + x["b"]
    kd = sparse_kd_loss(logits, teacher, temperature, width, skew=0.3)
    ce = torch.nn.functional.cross_entropy(logits, x["y"])
    want = {"kd": kd, "ce": ce, "loss": 0.6 * kd + 0.4 * ce}
    grads = torch.autograd.grad(want["loss"], student_params(x))
    assert_same(chunked(x, objective, width, teacher=teacher), (want, grads))
    torch.testing.assert_close(objective_loss(logits, teacher, x["y"], objective, width)["kd"], kd)  # materialised


def test_sparse_skewed_forward_kl_by_hand_in_float64():
    """Teacher w = (3/4, 1/4) on ids 0, 1 of 3 tokens, a uniform student, s = 1/2, T = 1:
    M = (13/24, 7/24), kd = sum w log(w / M); against the float64 autograd of the same expression."""
    hidden = torch.zeros(1, 3, requires_grad=True)
    teacher = SparseTeacher(torch.tensor([[0, 1]]), torch.tensor([[math.log(3), 0.0]]))
    objective = Objective(kd_weight=1.0, ce_weight=0.0, divergence="skew_forward_kl", skew=0.5)
    parts = chunked_objective_loss(hidden, Head(torch.eye(3)), teacher, None, objective)
    want = 0.75 * math.log(0.75 / (13 / 24)) + 0.25 * math.log(0.25 / (7 / 24))
    assert math.isclose(float(parts["kd"]), want, rel_tol=1e-6)
    parts["loss"].backward()
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    p, w = torch.softmax(z, -1), torch.tensor([0.75, 0.25], dtype=torch.float64)
    (w * (w.log() - (0.5 * w + 0.5 * p[:2]).log())).sum().backward()
    torch.testing.assert_close(hidden.grad[0], z.grad.float())
