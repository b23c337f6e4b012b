"""distillation_loss against references computed independently in float64 NumPy."""

import math

import numpy as np
import pytest
import torch

from distill.losses import DIVERGENCES, distillation_loss


def _softmax(x: np.ndarray, t: float) -> np.ndarray:
    z = x / t
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(q))).sum(-1)


def reference(s: np.ndarray, t: np.ndarray, mask, divergence: str, temperature: float, beta: float) -> float:
    ps, pt = _softmax(s, temperature), _softmax(t, temperature)
    if divergence == "forward_kl":
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
    rng = np.random.default_rng(hash((divergence, temperature, shape, masked)) % 2**32)
    s = rng.normal(size=shape) * 3
    t = rng.normal(size=shape) * 3
    mask = (rng.random(shape[:-1]) > 0.4) if masked else None
    if mask is not None:
        mask.flat[0] = True
    beta = 0.3
    got = distillation_loss(
        torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32),
        None if mask is None else torch.tensor(mask),
        divergence=divergence, temperature=temperature, beta=beta,
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
    s, t = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    mask = torch.tensor([[1, 0, 0], [0, 0, 1]])
    expected = distillation_loss(torch.stack([s[0, 0], s[1, 2]]), torch.stack([t[0, 0], t[1, 2]]))
    assert distillation_loss(s, t, mask).item() == pytest.approx(expected.item(), abs=1e-6)
    garbage = s.clone()
    garbage[0, 1] = 1e4  # masked positions may hold anything
    assert distillation_loss(garbage, t, mask).item() == pytest.approx(expected.item(), abs=1e-6)
    assert distillation_loss(s, t, torch.zeros(2, 3)).item() == 0.0


def test_float32_for_half_inputs_and_gradients_flow():
    s = torch.randn(4, 9, dtype=torch.bfloat16, requires_grad=True)
    t = torch.randn(4, 9, dtype=torch.bfloat16)
    loss = distillation_loss(s, t, temperature=2.0)
    assert loss.dtype == torch.float32
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad.float()).all()


def test_identical_distributions_give_zero():
    x = torch.randn(5, 13)
    for d in DIVERGENCES:
        assert distillation_loss(x, x.clone(), divergence=d, temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_bad_arguments():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="divergence"):
        distillation_loss(x, x, divergence="kl_magic")
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(x, x, temperature=0.0)
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(x, torch.randn(2, 4))
    with pytest.raises(ValueError, match="mask"):
        distillation_loss(x, x, torch.ones(3))
