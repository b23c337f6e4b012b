"""What the teacher buys on the embedded task: three benchmarks, one command each, every cell over seeds.

    python -m benchmarks.value curves     # test accuracy against steps and seconds, per method
    python -m benchmarks.value transfer   # few labels: data.labelled_fraction 0.01, 0.05, 1.0
    python -m benchmarks.value sizes      # students of 1/5, 1/10 and 1/25 of the teacher's parameters
    python -m benchmarks.value budgets    # test accuracy at 300 to 1,500 steps, each budget its own schedule
    python -m benchmarks.value onpolicy   # on-policy distillation (both objectives) against logit, 600 and 1,500 steps
    python -m benchmarks.value cross_tokenizer   # a student with its own tokenizer: ULD and the hybrid, 5 % labels
        [--seeds 0,1,2 (onpolicy: 0-4)] [--jobs 2] [--runs outputs/value] [--out docs/value] [--sweeps A,B] [--wandb]
        [--dry-run] [override ...]

Each runs its sweeps with ``train.py -m`` (as :mod:`benchmarks.results` does: the teacher trained
first, once, with every core; ``--jobs`` jobs at a time, cores // jobs threads each), then writes
``<out>/<benchmark>/``: ``summary.md`` (the comparison), and ``report.md``/``report.csv``/
``report_seeds.csv`` (every run) and ``curves.png`` from :mod:`distill.report`. With ``--wandb``
the runs log to W&B with ``job_type=<benchmark>``, grouped per method (``<sweep>/<run name
without the seed>``), so the dashboard shows the same comparison. Extra overrides go to every job
(``experiment=smoke`` makes a seconds-long version; the tests run it).

    curves    supervised; logit at T = 2 (the default) and T = 4; logit with the top-k cache (k = 16);
              language; onpolicy. The default schedule (1,500 steps, cosine, 50 warm-up steps) for
              every method, validation and test evaluated every 100 steps (train.eval_test).
    transfer  supervised trains on the labelled part alone; logit (top-k cache, k = 16) on every
              prompt, the unlabelled ones with the teacher's greedy response; language (alpha = 1)
              on the teacher's text for every prompt (it never reads a gold response, so its runs do
              not depend on the fraction: they run at 0.05 only).
    sizes     supervised and logit (top-k cache, k = 16) for students of 3 x 64 (1/5, the default),
              4 x 38 (1/10.3) and 4 x 24 (1/23.9).
    budgets   supervised and logit (top-k cache, k = 16, T = 2 and 4) trained for 300, 600, 900, 1,200 and
              1,500 steps, each with its own cosine schedule: the budget each needs to reach the teacher.
    onpolicy  the default logit distiller (online teacher) and onpolicy with its defaults, objective gkd and
              reverse_kl_reward, at 600 and 1,500 steps (each its own schedule), seeds 0-4; the summary checks
              onpolicy against logit: at 1,500 steps mean >= logit's - 0.5 points and std <= 2x logit's, at
              600 steps mean >= logit's.
    cross_tokenizer  the student of model=embedded_cross (its own byte-level BPE, 200 tokens, numbers free to
              merge) with 5 % and 100 % of the labels: supervised (label-only); logit across tokenizers, ULD and
              the hybrid (T = 1), on every prompt, the unlabelled ones with the teacher's greedy response
              re-tokenised; the same with alpha = 0 (the teacher's text, no distillation term); and, for
              reference, the default logit student, which shares the teacher's tokenizer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from benchmarks.results import prepare_teacher, run_sweep, sweep_command

ROOT = Path(__file__).resolve().parents[1]
CACHE = ["distiller.teacher_cache=top_k"]  # logit from the top-k cache: an online logit run's result at half its cost
FRACTIONS = "data.labelled_fraction=0.01,0.05,1.0"
SIZES = "model/student=gpt2_small,gpt2_tenth,gpt2_25th"
BUDGETS = "train.max_steps=300,600,900,1200,1500"
ONPOLICY_BUDGETS = "train.max_steps=600,1500"
CROSS = ["model=embedded_cross", "data.labelled_fraction=0.05,1.0"]
BENCHMARKS: dict[str, dict[str, list[str]]] = {
    "curves": {
        "supervised": ["distiller=supervised"],
        "logit": ["distiller.temperature=2,4"],
        "top_k": CACHE,
        "text": ["distiller=language,onpolicy"],
    },
    "transfer": {
        "supervised": ["distiller=supervised", FRACTIONS],
        "logit": [*CACHE, FRACTIONS],
        "language": ["distiller=language", "data.labelled_fraction=0.05"],
    },
    "sizes": {
        "supervised": ["distiller=supervised", SIZES],
        "logit": [*CACHE, SIZES],
    },
    "budgets": {
        "supervised": ["distiller=supervised", BUDGETS],
        "logit": [*CACHE, "distiller.temperature=2,4", BUDGETS],
    },
    "onpolicy": {
        "logit": [ONPOLICY_BUDGETS],
        "onpolicy": ["distiller=onpolicy", "distiller.objective=gkd,reverse_kl_reward", ONPOLICY_BUDGETS],
    },
    "cross_tokenizer": {
        "supervised": ["distiller=supervised", *CROSS],
        "cross": ["distiller.cross_tokenizer=uld,gold", "distiller.temperature=1", *CROSS],
        "text": ["distiller.cross_tokenizer=gold", "distiller.alpha=0", *CROSS],
        "logit": ["data.labelled_fraction=0.05,1.0"],
    },
}
SETTINGS = {  # every job of the benchmark
    "curves": ["train.eval_every=100", "train.eval_test=true"],
    "transfer": ["train.eval_every=0"],
    "sizes": ["train.eval_every=0"],
    "budgets": ["train.eval_every=0"],
    "onpolicy": ["train.eval_every=0"],
    "cross_tokenizer": ["train.eval_every=0"],
}
# the summary's rows (curves: one row per method), the method the others are compared with, and the default seeds
ROW = {
    "transfer": "labelled_fraction",
    "sizes": "model/student",
    "budgets": "max_steps",
    "onpolicy": "max_steps",
    "cross_tokenizer": "labelled_fraction",
}
BASE = {"onpolicy": "logit"}  # default: supervised
SEEDS = {"onpolicy": "0,1,2,3,4"}  # default: 0,1,2


def method_column(table: pd.DataFrame) -> pd.Series:
    """``supervised``, ``logit top_k``, ``logit top_k T=4``, ``onpolicy reverse_kl_reward``, ``logit gold T=1``,
    ``logit gold a=0``: the distiller, its cache, its on-policy objective, its cross-tokenizer loss and, when they
    vary between runs, its temperature and alpha."""
    none = pd.Series([None] * len(table), index=table.index)
    words = [table.get(key, none) for key in ("teacher_cache", "objective", "cross_tokenizer")]
    temperature, alpha = table.get("temperature", none), table.get("alpha", none)
    return table["distiller"] + [
        "".join(f" {w}" for w in named if isinstance(w, str) and w)
        + (f" T={t:g}" if isinstance(t, float) and t == t else "")
        + (f" a={a:g}" if isinstance(a, float) and a == a else "")
        for *named, t, a in zip(*words, temperature, alpha)
    ]


def grid_summary(out: Path, row: str, base: str = "supervised") -> str:
    """Test accuracy, mean ± std over seeds, rows = ``row`` values, columns = methods (``base`` first), and each
    method's difference from ``base`` in the same row; the teacher's test accuracy and each student's size."""
    runs = pd.read_csv(out / "report.csv")
    runs = runs[runs["student/test_accuracy"].notna()].copy()
    runs["method"] = method_column(runs)
    if row == "model/student":
        runs[row] = runs[row].astype(str) + " (" + runs["student/params"].map("{:,}".format) + " parameters)"
    teacher = runs["teacher/test_accuracy"].mean()
    stats = runs.groupby([row, "method"])["student/test_accuracy"].agg(["mean", "std", "count"])
    lines = [f"Test accuracy, mean ± std over seeds (n per cell); the teacher: {teacher:.3f}.", ""]
    methods = sorted(dict.fromkeys(runs["method"]), key=lambda m: m != base)
    lines += ["| " + " | ".join([row, *methods, *(f"{m} - {base}" for m in methods[1:])]) + " |"]
    lines += ["|:---|" + "---:|" * (2 * len(methods) - 1)]
    for value in dict.fromkeys(runs[row]):
        cells = [str(value)]
        reference = stats.loc[(value, base)] if (value, base) in stats.index else None
        for m in methods:
            s = stats.loc[(value, m)] if (value, m) in stats.index else None
            cells.append("-" if s is None else f"{s['mean']:.3f} ± {s['std']:.3f} ({int(s['count'])})")
        for m in methods[1:]:
            s = stats.loc[(value, m)] if (value, m) in stats.index else None
            cells.append(
                "-" if s is None or reference is None else f"{100 * (s['mean'] - reference['mean']):+.1f} points"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def onpolicy_targets(out: Path) -> str:
    """Issue 23's targets for every onpolicy method against logit: at the most steps, mean >= logit's - 0.5 points
    and std <= 2x logit's; at the fewest, mean >= logit's. One line each with the measured values."""
    runs = pd.read_csv(out / "report.csv")
    runs = runs[runs["student/test_accuracy"].notna()].copy()
    runs["method"] = method_column(runs)
    stats = runs.groupby(["max_steps", "method"])["student/test_accuracy"].agg(["mean", "std"])
    lines, (low, high) = (
        ["Targets (against logit at the same budget):", ""],
        (runs["max_steps"].min(), runs["max_steps"].max()),
    )
    for method in (m for m in dict.fromkeys(runs["method"]) if m.startswith("onpolicy")):
        if (high, method) in stats.index and (high, "logit") in stats.index:
            s, ref = stats.loc[(high, method)], stats.loc[(high, "logit")]
            mean_ok, std_ok = s["mean"] >= ref["mean"] - 0.005, s["std"] <= 2 * ref["std"]
            lines.append(f"- {method}, {high} steps: mean {s['mean']:.3f} vs logit {ref['mean']:.3f} - 0.005: "
                         f"{'met' if mean_ok else 'NOT met'}; std {s['std']:.3f} vs 2 x {ref['std']:.3f}: "
                         f"{'met' if std_ok else 'NOT met'}")  # fmt: skip
        if low != high and (low, method) in stats.index and (low, "logit") in stats.index:
            s, ref = stats.loc[(low, method)], stats.loc[(low, "logit")]
            ok = "met" if s["mean"] >= ref["mean"] else "NOT met"
            lines.append(f"- {method}, {low} steps: mean {s['mean']:.3f} vs logit {ref['mean']:.3f}: {ok}")
    return "\n".join(lines)


def cross_targets(out: Path) -> str:
    """Issue 24's target for every cross-tokenizer method (``logit uld``, ``logit gold``, any alpha) at each labelled
    fraction: above the label-only student beyond the spread, i.e. mean - std above supervised's mean + std; with
    the seeds' lowest and highest values. One line each."""
    runs = pd.read_csv(out / "report.csv")
    runs = runs[runs["student/test_accuracy"].notna()].copy()
    runs["method"] = method_column(runs)
    stats = runs.groupby(["labelled_fraction", "method"])["student/test_accuracy"].agg(["mean", "std", "min", "max"])
    lines = ["Target (against supervised, the label-only student with the same tokenizer):", ""]
    for fraction, method in (k for k in stats.index if " uld" in k[1] or " gold" in k[1]):
        if (fraction, "supervised") not in stats.index:
            continue
        s, ref = stats.loc[(fraction, method)], stats.loc[(fraction, "supervised")]
        ok = "met" if s["mean"] - s["std"] > ref["mean"] + ref["std"] else "NOT met"
        lines.append(f"- {method}, labelled_fraction {fraction:g}: {s['mean']:.3f} ± {s['std']:.3f} (seeds "
                     f"{s['min']:.3f} to {s['max']:.3f}) vs supervised {ref['mean']:.3f} ± {ref['std']:.3f} ("
                     f"{ref['min']:.3f} to {ref['max']:.3f}): above beyond the spread {ok}")  # fmt: skip
    return "\n".join(lines)


def plot_grid(out: Path, row: str) -> Path:
    """Test accuracy (mean, error bar = std over seeds) against the row's value (the labelled fraction, or the
    student's parameters), one line per method, log x axis, the teacher as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = pd.read_csv(out / "report.csv")
    runs = runs[runs["student/test_accuracy"].notna()].copy()
    runs["method"] = method_column(runs)
    x = "student/params" if row == "model/student" else row
    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for method, group in runs.groupby("method", sort=False):
        stats = group.groupby(x)["student/test_accuracy"].agg(["mean", "std"]).sort_index()
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=method)
    teacher = runs["teacher/test_accuracy"].mean()
    ax.axhline(teacher, color="black", linestyle="--", linewidth=1, label=f"teacher ({teacher:.3f})")
    if row != "max_steps":
        ax.set_xscale("log")
    xlabel = {"student/params": "student parameters", "max_steps": "training steps (each run its own cosine schedule)"}
    ax.set_xlabel(xlabel.get(x, f"{row} (share of training examples with a label)"))
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    path = out / f"test_accuracy_vs_{x.split('/')[-1]}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summarise(benchmark: str, out: Path, runs: list[Path]) -> str:
    """Write the benchmark's report (distill.report) and summary.md; return the summary."""
    from distill.report.cli import write_report
    from distill.report.curves import read_curves, summary_markdown

    write_report(runs, out)
    if benchmark == "curves":
        curves, key = read_curves([r for path in runs for r in _runs(path)])
        text, plot = summary_markdown(curves, key), out / "curves.png"
    else:
        text, plot = (
            grid_summary(out, ROW[benchmark], BASE.get(benchmark, "supervised")),
            plot_grid(out, ROW[benchmark]),
        )
        if benchmark == "onpolicy":
            text += "\n\n" + onpolicy_targets(out)
        if benchmark == "cross_tokenizer":
            text += "\n\n" + cross_targets(out)
    (out / "summary.md").write_text(f"# {benchmark}\n\n{text}\n\n![{plot.stem}]({plot.name})\n")
    return text


def _runs(path: Path) -> list[dict]:
    from distill.report.runs import collect

    return collect([path])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=list(BENCHMARKS))
    parser.add_argument("--runs", type=Path, default=ROOT / "outputs" / "value")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "value")
    parser.add_argument("--seeds", default=None, help="comma-separated (default: 0,1,2; onpolicy: 0,1,2,3,4)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs at a time (each gets cores // jobs threads)")
    parser.add_argument("--sweeps", default=None, help="only these sweeps, comma-separated (default: all)")
    parser.add_argument("--wandb", action="store_true", help="log every run to W&B, job_type=<benchmark>")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args, extra = parser.parse_known_args()
    name = args.benchmark
    logger = ("logger=wandb", f"logger.job_type={name}") if args.wandb else ("logger=none",)
    given = {e.partition("=")[0] for e in extra}
    extra = [*(s for s in SETTINGS[name] if s.partition("=")[0] not in given), *extra]  # the caller's win
    if not args.dry_run:
        prepare_teacher(extra)
    runs = []
    for sweep, overrides in BENCHMARKS[name].items():
        if args.sweeps is not None and sweep not in args.sweeps.split(","):
            continue
        seeds = args.seeds or SEEDS.get(name, "0,1,2")
        command = sweep_command(sweep, overrides, args.runs / name, seeds, args.jobs, extra, logger)
        runs.append(args.runs / name / sweep)
        if not run_sweep(command, sweep, runs[-1], args.dry_run):
            return 1
    if not args.dry_run:
        print(summarise(name, args.out / name, runs))
        print(f"written: {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
