"""What the KD term asks of a student, per temperature: the teacher's entropy, and the KD gradient against
the label gradient.

    python -m benchmarks.kd_signal [--temperatures 1,2,4] [--steps 150] [--batches 8] [override ...]

With the run's config (``conf/``, plus overrides; default: the four-way comparison's random-init student,
``model/student=gpt2_half``, GPT-2 2 x 128), prints

1. the teacher's entropy per response position of ``--batches`` training batches at each temperature
   (mean and median, nats), and the share of positions where its top token is the gold one;
2. for one training batch, the gradients over the student's parameters of the two terms of the default
   loss, ``alpha T^2 KD`` and ``(1 - alpha) CE`` (alpha 0.5): their norms, the KD term's share of the
   update (<g_KD, g_KD + g_CE> / |g_KD + g_CE|^2) and their cosine, at initialisation and after
   ``--steps`` steps of the logit distiller at T = 2 (AdamW at ``optimizer.lr``, cosine over those steps).

Seeded (``seed``), one thread unless ``train.num_threads`` says otherwise. See docs/value.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = ["logger=none", "model/student=gpt2_half", "train.max_steps=300"]


def config(overrides: list[str]):
    from distill.config import schemas

    schemas.register()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose("config", overrides=[*DEFAULTS, *overrides])


def distiller(overrides: list[str], *options: str):
    """A freshly seeded distiller (student from ``seed``), with the data."""
    from distill.run.experiment import build_distiller

    cfg = config([*overrides, *options])
    torch.manual_seed(cfg.seed)
    built, _, data = build_distiller(cfg)
    return built, data, cfg


def teacher_entropy(overrides: list[str], temperatures: list[float], batches: int) -> None:
    d, data, _ = distiller(overrides)
    entropies: dict[float, list[torch.Tensor]] = {t: [] for t in temperatures}
    gold = []
    with torch.no_grad():
        for i, batch in enumerate(data.ordered_loader("train")):
            if i >= batches:
                break
            logits = d.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            labels = batch["labels"][:, 1:]
            z = logits[labels != -100].float()
            gold.append(z.argmax(-1) == labels[labels != -100])
            for t in temperatures:
                log_p = torch.log_softmax(z / t, -1)
                entropies[t].append(-(log_p.exp() * log_p).sum(-1))
    print(f"teacher entropy per response position ({sum(len(g) for g in gold):,} positions, nats; "
          f"vocabulary {z.shape[-1]}, log V = {torch.tensor(float(z.shape[-1])).log():.2f}):")  # fmt: skip
    for t, values in entropies.items():
        e = torch.cat(values)
        print(f"  T = {t:g}: mean {e.mean():.3f}, median {e.median():.3f}")
    print(f"  the teacher's top token is the gold token at {torch.cat(gold).float().mean():.1%} of positions")


def gradient(d, batch) -> torch.Tensor:
    d.student.zero_grad()
    d.compute_loss(batch).loss.backward()
    return torch.cat([p.grad.flatten() for p in d.student.parameters() if p.grad is not None])


def compare(overrides: list[str], temperatures: list[float], state: dict, batch: dict, when: str) -> None:
    for t in temperatures:
        kd, _, _ = distiller(overrides, "distiller.alpha=1", f"distiller.temperature={t}")
        ce, _, _ = distiller(overrides, "distiller=supervised")
        kd.student.load_state_dict(state)
        ce.student.load_state_dict(state)
        g_kd, g_ce = 0.5 * gradient(kd, batch), 0.5 * gradient(ce, batch)
        total = g_kd + g_ce
        share = float(g_kd @ total) / float(total @ total)
        cosine = float(torch.nn.functional.cosine_similarity(g_kd, g_ce, dim=0))
        print(f"  {when:<16} T = {t:g}: |g_KD| {g_kd.norm():.3f}  |g_CE| {g_ce.norm():.3f}  "
              f"KD share {share:.2f}  cosine {cosine:+.2f}")  # fmt: skip


def main() -> int:
    from distill.loop import TrainConfig, fit

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--temperatures", default="1,2,4")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batches", type=int, default=8)
    args, overrides = parser.parse_known_args()
    temperatures = [float(t) for t in args.temperatures.split(",")]
    cfg = config(overrides)
    torch.set_num_threads(cfg.train.num_threads or 1)
    teacher_entropy(overrides, temperatures, args.batches)
    student, data, cfg = distiller(overrides, "distiller.alpha=0.5", "distiller.temperature=2")
    loader = data.train_loader(seed=cfg.seed)
    batch = next(iter(loader))
    print(f"gradients of alpha T^2 KD and (1 - alpha) CE, alpha 0.5, one batch of {len(batch['input_ids'])}:")
    compare(overrides, temperatures, student.student.state_dict(), batch, "at init")
    lr = float(cfg.optimizer.lr)
    fit(student, loader, None, TrainConfig(max_steps=args.steps, lr=lr, warmup_steps=50, progress=False, seed=cfg.seed))
    compare(overrides, temperatures, student.student.state_dict(), batch, f"after {args.steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
