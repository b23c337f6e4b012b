"""distillation_loss against references computed independently in float64 NumPy, and the objective."""

import math
import zlib

import numpy as np
import pytest
import torch

from distill.core.errors import ConfigError
from distill.losses import DIVERGENCES, Objective, distillation_loss, objective_loss


def _softmax(x: np.ndarray, t: float) -> np.ndarray:
    z = x / t
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(-1)


def reference(
    s: np.ndarray, t: np.ndarray, mask, divergence: str, temperature: float, beta: float, skew: float = 0.2
) -> float:
    ps, pt = _softmax(s, temperature), _softmax(t, temperature)
    if divergence == "skew_forward_kl":  # KL(p_T || s p_T + (1 - s) p_S)
        d = _kl(pt, skew * pt + (1 - skew) * ps)
    elif divergence == "skew_reverse_kl":  # KL(p_S || s p_S + (1 - s) p_T)
        d = _kl(ps, skew * ps + (1 - skew) * pt)
    elif divergence == "forward_kl":
        d = _kl(pt, ps)
    elif divergence == "reverse_kl":
        d = _kl(ps, pt)
    elif divergence == "jsd":
        m = beta * pt + (1 - beta) * ps
        d = beta * _kl(pt, m) + (1 - beta) * _kl(ps, m)
    else:
        d = 0.5 * np.abs(pt - ps).sum(-1)
    if mask is not None:
        d = d[mask.astype(bool)]
    return float(d.mean() * temperature**2)


@pytest.mark.parametrize("divergence", DIVERGENCES)
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("shape", [(3, 5, 11), (6, 4)])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_reference(divergence, temperature, shape, masked):
    rng = np.random.default_rng(zlib.crc32(repr((divergence, temperature, shape, masked)).encode()))
    s = rng.normal(size=shape) * 3
    t = rng.normal(size=shape) * 3
    mask = (rng.random(shape[:-1]) > 0.4) if masked else None
    if mask is not None:
        mask.flat[0] = True
    beta = 0.3
    got = distillation_loss(
        torch.tensor(s, dtype=torch.float32),
        torch.tensor(t, dtype=torch.float32),
        None if mask is None else torch.tensor(mask),
        divergence=divergence,
        temperature=temperature,
        beta=beta,
        skew=0.2,
    )
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(reference(s, t, mask, divergence, temperature, beta), abs=1e-5, rel=1e-5)


def test_hand_computed_values_and_t_squared_scaling():
    # p_T = [1/4, 3/4] (logits [0, ln 3]), p_S = [1/2, 1/2] (logits [0, 0]), at T = 1.
    t = torch.tensor([[0.0, math.log(3.0)]])
    s = torch.zeros(1, 2)
    fkl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    rkl = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    assert distillation_loss(s, t).item() == pytest.approx(fkl, abs=1e-6)
    assert distillation_loss(s, t, divergence="reverse_kl").item() == pytest.approx(rkl, abs=1e-6)
    assert distillation_loss(s, t, divergence="tvd").item() == pytest.approx(0.25, abs=1e-6)
    m = [0.375, 0.625]  # beta = 0.5
    jsd = 0.5 * (0.25 * math.log(0.25 / m[0]) + 0.75 * math.log(0.75 / m[1])) + 0.5 * (
        0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])
    )
    assert distillation_loss(s, t, divergence="jsd", beta=0.5).item() == pytest.approx(jsd, abs=1e-6)
    # At T = 2 the logits are halved before the softmax and the result is multiplied by 4.
    t2 = 2 * t  # so softmax(t2 / 2) == softmax(t)
    assert distillation_loss(s, t2, temperature=2.0).item() == pytest.approx(4 * fkl, abs=1e-6)


def test_mask_ignores_positions_and_empty_mask_is_zero():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 3, 7, generator=g), torch.randn(2, 3, 7, generator=g)
    mask = torch.tensor([[1, 0, 0], [0, 0, 1]])
    expected = distillation_loss(torch.stack([s[0, 0], s[1, 2]]), torch.stack([t[0, 0], t[1, 2]]))
    assert distillation_loss(s, t, mask).item() == pytest.approx(expected.item(), abs=1e-6)
    garbage = s.clone()
    garbage[0, 1] = 1e4  # masked positions may hold anything
    assert distillation_loss(garbage, t, mask).item() == pytest.approx(expected.item(), abs=1e-6)
    assert distillation_loss(s, t, torch.zeros(2, 3)).item() == 0.0


def test_float32_for_half_inputs_and_gradients_flow():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(4, 9, generator=g).bfloat16().requires_grad_()
    t = torch.randn(4, 9, generator=g).bfloat16()
    loss = distillation_loss(s, t, temperature=2.0)
    assert loss.dtype == torch.float32
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad.float()).all()


def test_identical_distributions_give_zero():
    x = torch.randn(5, 13, generator=torch.Generator().manual_seed(2))
    for d in DIVERGENCES:
        assert distillation_loss(x, x.clone(), divergence=d, temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_bad_arguments():
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match="divergence"):
        distillation_loss(x, x, divergence="kl_magic")
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(x, x, temperature=0.0)
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(x, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mask"):
        distillation_loss(x, x, torch.ones(3))


# ----------------------------------------------------------------------------- the objective


def _logits(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


def test_objective_is_the_weighted_sum_and_logs_both_parts():
    s, t = _logits(6, 11, seed=0), _logits(6, 11, seed=1)
    y = torch.tensor([0, 3, 5, 10, 2, 2])
    obj = Objective(kd_weight=0.3, ce_weight=0.7, divergence="reverse_kl", temperature=2.0)
    parts = objective_loss(s, t, y, obj)
    kd = distillation_loss(s, t, divergence="reverse_kl", temperature=2.0)
    ce = torch.nn.functional.cross_entropy(s, y)
    assert parts["kd"].item() == pytest.approx(kd.item(), rel=1e-6)
    assert parts["ce"].item() == pytest.approx(ce.item(), rel=1e-6)
    assert parts["loss"].item() == pytest.approx(0.3 * kd.item() + 0.7 * ce.item(), rel=1e-6)
    summed = objective_loss(s, None, y, Objective(), reduction="sum")
    assert summed["loss"].item() == pytest.approx(6 * ce.item(), rel=1e-6) and "kd" not in summed


def test_zero_weight_term_is_logged_but_has_no_gradient():
    s = _logits(4, 7, seed=2).requires_grad_()
    t, y = _logits(4, 7, seed=3), torch.tensor([1, 2, 3, 4])
    parts = objective_loss(s, t, y, Objective(kd_weight=1.0, ce_weight=0.0))
    parts["loss"].backward()
    expected = s.detach().clone().requires_grad_()
    distillation_loss(expected, t).backward()
    assert parts["ce"].item() > 0
    assert torch.equal(s.grad, expected.grad)


def test_width_slices_padded_vocabulary_for_the_divergence_only():
    s, t = _logits(5, 9, seed=4), _logits(5, 12, seed=5)  # the teacher pads 3 extra rows
    t[:, 9:] = 50.0  # huge logits on the padding rows: they must not count
    y = torch.tensor([0, 1, 2, 3, 4])
    parts = objective_loss(s, t, y, Objective(kd_weight=1.0, ce_weight=1.0), width=9)
    assert parts["kd"].item() == pytest.approx(distillation_loss(s, t[:, :9]).item(), rel=1e-6)
    assert parts["ce"].item() == pytest.approx(torch.nn.functional.cross_entropy(s, y).item(), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"divergence": "jsd", "beta": 0.0}, "distiller.beta"),
        ({"divergence": "jsd", "beta": 1.0}, "distiller.beta"),
        ({"temperature": 0.0}, "distiller.temperature"),
        ({"divergence": "kl"}, "distiller.divergence"),
        ({"kd_weight": -1.0}, "kd_weight"),
    ],
)
def test_objective_refuses_degenerate_settings(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        Objective(**kwargs)
    Objective(divergence="forward_kl", beta=0.0)  # beta only matters for jsd


def test_objective_with_nothing_to_optimise_is_an_error():
    with pytest.raises(ValueError, match="no term"):
        objective_loss(_logits(2, 3, seed=6), None, None, Objective())


def test_skewed_kls_by_hand_and_their_limits():
    """Two tokens, p_T = (3/4, 1/4), p_S = (1/4, 3/4), s = 1/2: M = (1/2, 1/2) for both skewed KLs, so each is
    (3/4) log(3/2) + (1/4) log(1/2); s -> 0 gives the plain KLs back."""
    teacher, student = torch.tensor([[math.log(3), 0.0]]), torch.tensor([[0.0, math.log(3)]])
    want = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    for divergence in ("skew_forward_kl", "skew_reverse_kl"):
        got = distillation_loss(student, teacher, divergence=divergence, skew=0.5)
        assert got.item() == pytest.approx(want, rel=1e-6)
        plain = divergence.removeprefix("skew_")
        near = distillation_loss(student, teacher, divergence=divergence, skew=1e-6)
        assert near.item() == pytest.approx(distillation_loss(student, teacher, divergence=plain).item(), rel=1e-4)


@pytest.mark.parametrize("skew", [0, 1, -0.1, 1.5, "x"])
def test_skew_outside_the_open_interval_is_refused(skew):
    with pytest.raises(ConfigError, match=r"^distiller.skew=.* is invalid: must be in the open interval \(0, 1\)"):
        Objective(kd_weight=1.0, divergence="skew_reverse_kl", skew=skew)
