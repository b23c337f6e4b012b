"""Sequence-level (language) and on-policy distillation: generation, masks, the generation cache,
text validation, and ``python train.py distiller=language|onpolicy`` end to end."""

import copy
import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from distill.core.errors import ConfigError
from distill.data import IGNORE_INDEX, TaskData
from distill.data.arithmetic import build_tokenizer, make_splits
from distill.data.sequences import left_pad, truncate_at_eos
from distill.distillers import DistillerFactory, LanguageDistiller, OnPolicyDistiller
from distill.distillers.onpolicy import lmbda_at, sample_stats
from distill.distillers.sources import on_policy_batch
from distill.inference.generation import GenerationSettings, generate_completions, generate_ids
from tests.conftest import cli, read_jsonl
from tests.conftest import gpt2 as _gpt2

TEXT_KEYS = ("bleu", "chrf", "rougeL", "exact_match")
VALIDATE_KEYS = {"loss", "accuracy", *TEXT_KEYS, *(f"agreement_{k}" for k in TEXT_KEYS)}


AT_ONCE = {"lmbda_warmup_steps": 0, "lmbda_ramp_steps": 0}  # on-policy from the first step (default: a warm start)


def tokenizer(pad_is_eos: bool = False):
    tok = build_tokenizer()
    if pad_is_eos:
        tok.pad_token = tok.eos_token
        assert tok.pad_token_id == tok.eos_token_id
    return tok


def gpt2(tok, seed: int = 0, **kw):
    return _gpt2(tok, seed, **kw)


@pytest.fixture(scope="module")
def splits():
    return make_splits(n_train=48, n_validation=8, n_test=8)


def task_data(splits, tok) -> TaskData:
    return TaskData(splits, tok, max_length=64, batch_size=8, eval_batch_size=8, max_new_tokens=8)


@pytest.fixture
def cache_dir(tmp_path) -> str:
    return str(tmp_path / "generations")


def count_generate(monkeypatch, model) -> list[int]:
    """Wrap ``model.generate``; returns a list that grows by one per call."""
    calls: list[int] = []
    original = model.generate

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counted)
    return calls


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("pad_is_eos", [False, True], ids=["distinct-pad", "pad-eq-eos"])
def test_batched_left_padded_generation_equals_one_at_a_time(pad_is_eos):
    tok = tokenizer(pad_is_eos)
    model = gpt2(tok, seed=3, n_layer=2, initializer_range=0.5).eval()  # large weights: outputs depend on context
    texts = ["What is 1 + 2?\n", "What is 123 + 987?\n", "What is 45 + 6?\n", "What is 999 + 999?\n", "7?\n"]
    prompts = {t: tok(t, add_special_tokens=False)["input_ids"] for t in texts}
    lengths = sorted(len(p) for p in prompts.values())
    assert lengths[-1] - lengths[0] >= 4  # the batch really is left-padded
    settings = GenerationSettings(max_new_tokens=12)
    batched = generate_completions(model, tok, prompts, settings, batch_size=len(texts), progress=False)
    for text, ids in prompts.items():
        alone = generate_ids(model, tok, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), settings)
        assert batched[text] == truncate_at_eos(alone, tok.eos_token_id), text
        assert 1 <= len(batched[text][0]) <= 12
    # the check has teeth: attending to the padding changes the padded rows' outputs
    ids, mask = left_pad(list(prompts.values()), tok.pad_token_id)
    unmasked = truncate_at_eos(generate_ids(model, tok, ids, torch.ones_like(mask), settings), tok.eos_token_id)
    assert any([u] != batched[t] for u, t in zip(unmasked, prompts))


def test_completion_cut_after_first_eos_when_pad_is_eos():
    eos = pad = 1
    prompt_ids, prompt_mask = left_pad([[5, 6, 7], [8]], pad)
    generated = torch.tensor([[20, 21, eos, eos, eos], [eos, 30, eos, 31, 32]])  # row 2 stops at once
    assert truncate_at_eos(generated, eos) == [[20, 21, eos], [eos]]
    seq = on_policy_batch(prompt_ids, prompt_mask, generated, eos_token_id=eos, pad_token_id=pad)
    assert seq["input_ids"].tolist() == [[5, 6, 7, 20, 21, eos], [8, eos, pad, pad, pad, pad]]
    assert seq["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]]
    x = IGNORE_INDEX
    assert seq["labels"].tolist() == [[x, x, x, 20, 21, eos], [x, eos, x, x, x, x]]
    # no EOS within the budget: everything generated is kept, nothing is added
    seq = on_policy_batch(prompt_ids[:1], prompt_mask[:1], torch.tensor([[40, 41, 42]]), eos, pad)
    assert seq["labels"].tolist() == [[x, x, x, 40, 41, 42]]


# ----------------------------------------------------------------------------- the language loss


@pytest.mark.parametrize("pad_is_eos", [False, True], ids=["distinct-pad", "pad-eq-eos"])
def test_language_loss_is_ce_on_teacher_completion_only(splits, cache_dir, pad_is_eos):
    tok = tokenizer(pad_is_eos)
    data = task_data(splits, tok)
    distiller = LanguageDistiller(gpt2(tok, 1), gpt2(tok, 2, n_layer=2), tok, cache_dir=cache_dir, max_length=8)
    batch = next(iter(data.train_loader()))
    eos = tok.eos_token_id
    # known teacher completions of different lengths, one of them without EOS (budget reached)
    completions = [[10, 11, eos], [12, eos], [13, 14, 15]] * 3
    for prompt, completion in zip(batch["prompts"], completions):
        distiller.teacher_completions.completions[prompt] = [completion]
    seq = distiller.teacher_completions.sequences(batch, distiller.device)
    loss = distiller.compute_loss(batch).loss

    expected, n = torch.zeros(()), 0
    prompt_lists = [row[m.bool()].tolist() for row, m in zip(batch["prompt_input_ids"], batch["prompt_attention_mask"])]
    for i, (prompt, completion) in enumerate(zip(prompt_lists, completions)):
        assert seq["labels"][i, : len(prompt)].eq(IGNORE_INDEX).all()  # prompt masked
        assert seq["labels"][i, len(prompt) : len(prompt) + len(completion)].tolist() == completion  # EOS kept
        assert seq["labels"][i, len(prompt) + len(completion) :].eq(IGNORE_INDEX).all()  # padding masked
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            logits = distiller.student(input_ids=ids).logits[0]
        targets = torch.tensor(completion)
        expected += F.cross_entropy(logits[len(prompt) - 1 : -1], targets, reduction="sum")
        n += len(completion)
    assert loss.item() == pytest.approx((expected / n).item(), rel=1e-4)


def test_alpha_mixes_in_the_ground_truth_and_kd_term(splits, cache_dir):
    tok = tokenizer()
    data = task_data(splits, tok)
    batch = next(iter(data.train_loader()))
    teacher, student = gpt2(tok, 2, n_layer=2), gpt2(tok, 1)
    pure = LanguageDistiller(student, teacher, tok, cache_dir=cache_dir, max_length=8)
    mixed = LanguageDistiller(student, teacher, tok, cache_dir=cache_dir, max_length=8, alpha=0.25, kd_weight=0.5)
    a, b = pure.compute_loss(batch), mixed.compute_loss(batch)
    assert set(a.parts) == {"ce_teacher"} and set(b.parts) == {"ce_teacher", "ce", "kd"}
    assert b.parts["ce_teacher"] == pytest.approx(a.parts["ce_teacher"], rel=1e-5)
    expected = 0.25 * b.parts["ce_teacher"] + 0.75 * b.parts["ce"] + 0.5 * b.parts["kd"]
    assert b.loss.item() == pytest.approx(expected, rel=1e-5)
    b.loss.backward()
    assert all(p.grad is None for p in teacher.parameters())


# ----------------------------------------------------------------------------- the cache


def test_second_run_reuses_cached_generations(splits, cache_dir, monkeypatch, capsys):
    tok = tokenizer()
    data = task_data(splits, tok)
    teacher = gpt2(tok, 2, n_layer=2)

    def run(teacher_model, **options) -> tuple[int, str]:
        options = {"max_length": 8, "cache_dir": cache_dir, **options}
        distiller = LanguageDistiller(gpt2(tok, 1), teacher_model, tok, **options)
        calls = count_generate(monkeypatch, teacher_model)
        distiller.prepare(data.train_loader(), data.val_loader())
        for batch in itertools.islice(data.train_loader(), 2):  # completions come from prepare()
            distiller.compute_loss(batch)
        distiller.validate(data.val_loader())
        return len(calls), capsys.readouterr().out

    n, out = run(teacher)
    assert n == 2 and "using cache" not in out  # one batch of train prompts (48 < 128), one of validation
    n, out = run(copy.deepcopy(teacher))  # a later run: same weights, a new model object
    assert n == 0
    distinct = len(set(splits["train"]["prompt"]))
    assert (
        out.count("teacher generations: using cache") == 2 and f"({distinct} prompts)" in out and "(8 prompts)" in out
    )
    n, _ = run(teacher, temperature=3.0, top_p=0.5, kd_weight=0.1, alpha=0.5)  # no effect on greedy completions
    assert n == 0
    n, _ = run(teacher, max_length=6)  # other settings: new train generations, same validation ones
    assert n == 1
    changed = copy.deepcopy(teacher)
    with torch.no_grad():
        changed.lm_head.weight.add_(0.01)
    n, _ = run(changed)  # other weights: everything regenerated
    assert n == 2
    assert len(list(Path(cache_dir).glob("*.json"))) == 5 and not list(Path(cache_dir).glob("*.tmp"))


def test_prompts_missing_from_prepare_are_generated_per_batch(splits, cache_dir, monkeypatch):
    tok = tokenizer()
    data = task_data(splits, tok)
    distiller = LanguageDistiller(gpt2(tok, 1), gpt2(tok, 2), tok, cache_dir=cache_dir, max_length=8)
    calls = count_generate(monkeypatch, distiller.teacher)
    batch = next(iter(data.train_loader()))
    distiller.compute_loss(batch)
    distiller.compute_loss(batch)
    assert len(calls) == 1 and set(batch["prompts"]) <= set(distiller.teacher_completions.completions)
    assert not Path(cache_dir).exists()  # nothing cached on disk without prepare()


# ----------------------------------------------------------------------------- validation and API


def test_validate_scores_student_against_references_and_teacher(splits, cache_dir):
    tok = tokenizer()
    data = task_data(splits, tok)
    teacher = gpt2(tok, 2, n_layer=2)
    distiller = LanguageDistiller(copy.deepcopy(teacher), teacher, tok, cache_dir=cache_dir, max_new_tokens=8)
    metrics = distiller.validate(data.val_loader())
    assert set(metrics) == VALIDATE_KEYS
    # a student identical to the teacher agrees with it exactly
    assert metrics["agreement_exact_match"] == 1.0 and metrics["agreement_rougeL"] == 1.0
    assert 0.0 <= metrics["bleu"] <= 100.0 and 0.0 <= metrics["accuracy"] <= 1.0
    assert len(distiller.last_samples) == 8
    row = distiller.last_samples[0]
    assert set(row) == {"prompt", "reference", "teacher", "student"} and row["teacher"] == row["student"]
    # a different student does not
    other = LanguageDistiller(gpt2(tok, 5), teacher, tok, cache_dir=cache_dir, max_new_tokens=8)
    assert other.validate(data.val_loader())["agreement_exact_match"] < 1.0


def test_factory_and_config_errors(cache_dir):
    tok = tokenizer()
    teacher, student = gpt2(tok, 2), gpt2(tok, 1)
    d = DistillerFactory.create_distiller(
        mode="language",
        teacher_model=teacher,
        student_model=student,
        tokenizer=tok,
        config={"temperature": 1.0, "max_length": 128, "cache_dir": cache_dir},
    )
    settings = d.teacher_completions.settings
    assert isinstance(d, LanguageDistiller) and settings.max_new_tokens == 128 and not settings.do_sample
    assert isinstance(
        DistillerFactory.create_distiller("onpolicy", teacher, student, tok, {"lmbda": 0.3}), OnPolicyDistiller
    )
    for mode in ("language", "onpolicy"):
        with pytest.raises(ConfigError, match="needs a tokenizer"):
            DistillerFactory.create_distiller(mode=mode, teacher_model=teacher, student_model=student, config={})
    with pytest.raises(ConfigError, match="num_samples"):
        LanguageDistiller(student, teacher, tok, num_samples=2)
    with pytest.raises(ConfigError, match=r"distiller\.top_p"):
        LanguageDistiller(student, teacher, tok, top_p=0.0)
    with pytest.raises(ConfigError, match=r"distiller\.lmbda"):
        OnPolicyDistiller(student, teacher, tok, lmbda=1.5)


def test_sampled_completions_num_samples_each_become_a_sequence(splits, cache_dir):
    tok = tokenizer()
    data = task_data(splits, tok)
    distiller = LanguageDistiller(
        gpt2(tok, 1),
        gpt2(tok, 2),
        tok,
        cache_dir=cache_dir,
        max_length=6,
        do_sample=True,
        num_samples=3,
        temperature=1.5,
    )
    distiller.prepare(data.train_loader())
    assert all(len(c) == 3 for c in distiller.teacher_completions.completions.values())
    batch = next(iter(data.train_loader()))
    assert distiller.teacher_completions.sequences(batch, distiller.device)["input_ids"].shape[0] == 3 * len(
        batch["prompts"]
    )


# ----------------------------------------------------------------------------- on-policy


def test_inverse_cdf_sampling_draws_from_the_softmax_and_never_a_zero_probability_token():
    """20,000 rows of one distribution (0, 1/8, 3/8, 1/2 after a -inf score): the draw is the only finite score,
    and the frequencies match within 4 standard errors; reproducible from torch's seed."""
    from distill.inference.generation import InverseCdfSampling

    probs = torch.tensor([0.0, 0.125, 0.375, 0.5])
    scores = probs.log().expand(20_000, 4).clone()
    torch.manual_seed(0)
    out = InverseCdfSampling()(None, scores)
    assert torch.equal(torch.isfinite(out).sum(-1), torch.ones(20_000, dtype=torch.long))
    drawn = out.argmax(-1)
    frequency = torch.bincount(drawn, minlength=4).double() / len(drawn)
    assert frequency[0] == 0
    assert torch.all((frequency - probs.double()).abs() <= 4 * (probs * (1 - probs) / len(drawn)).sqrt().double())
    torch.manual_seed(0)
    assert torch.equal(InverseCdfSampling()(None, scores).argmax(-1), drawn)


def test_sampling_follows_temperature_and_top_p():
    """The warpers run before the draw: a top_p that keeps only the top token makes sampling greedy, and
    settings that sample record how they were drawn in their cache key."""
    tok = tokenizer()
    model = gpt2(tok, 3)
    ids, mask = left_pad([tok.encode("12+34=")] * 4, tok.pad_token_id)
    greedy = generate_ids(model, tok, ids, mask, GenerationSettings(6))
    nucleus = GenerationSettings(6, do_sample=True, top_p=1e-6, num_samples=2)
    assert torch.equal(generate_ids(model, tok, ids, mask, nucleus), greedy.repeat_interleave(2, 0))
    assert nucleus.key_fields()["draw"] == "inverse_cdf" and "draw" not in GenerationSettings(6).key_fields()


def test_onpolicy_coin_uses_the_global_torch_rng(splits, cache_dir):
    tok = tokenizer()
    data = task_data(splits, tok)
    batch = next(iter(data.train_loader()))

    def coins(lmbda: float, n: int = 8) -> list[float]:
        d = OnPolicyDistiller(
            gpt2(tok, 1), gpt2(tok, 2), tok, lmbda=lmbda, max_length=4, cache_dir=cache_dir, **AT_ONCE
        )
        torch.manual_seed(0)
        out = []
        for _ in range(n):
            result = d.compute_loss(batch)
            assert torch.isfinite(result.loss) and result.loss.requires_grad
            out.append(result.parts["on_policy"])
        return out

    assert coins(0.0) == [0.0] * 8 and coins(1.0, n=2) == [1.0] * 2
    first = coins(0.5)
    assert first == coins(0.5) and 0 < sum(first) < 8  # reproducible from the seed, and mixed


def test_onpolicy_loss_is_divergence_on_generated_tokens(splits, cache_dir, monkeypatch):
    tok = tokenizer(pad_is_eos=True)
    data = task_data(splits, tok)
    batch = next(iter(data.train_loader()))
    d = OnPolicyDistiller(
        gpt2(tok, 1),
        gpt2(tok, 2),
        tok,
        lmbda=1.0,
        max_length=6,
        divergence="forward_kl",
        temperature=1.0,
        cache_dir=cache_dir,
        **AT_ONCE,
    )
    eos = tok.eos_token_id
    fixed = torch.tensor([[50, 51, eos, 52, 53, 54]] * len(batch["prompts"]))  # tokens after EOS must not count
    monkeypatch.setattr("distill.distillers.sources.generate_ids", lambda *a, **k: fixed)
    loss = d.compute_loss(batch).loss
    expected = []
    for row, m in zip(batch["prompt_input_ids"], batch["prompt_attention_mask"]):
        prompt = row[m.bool()].tolist()
        ids = torch.tensor([[*prompt, 50, 51, eos]])
        with torch.no_grad():
            s = torch.log_softmax(d.student(input_ids=ids).logits[0, len(prompt) - 1 : -1], -1)
            t = torch.log_softmax(d.teacher(input_ids=ids).logits[0, len(prompt) - 1 : -1], -1)
        expected.append((t.exp() * (t - s)).sum(-1))
    assert loss.item() == pytest.approx(torch.cat(expected).mean().item(), rel=1e-4)


def test_onpolicy_reverse_kl_reward_and_its_logged_log_probs_by_hand(splits, cache_dir, monkeypatch):
    """objective=reverse_kl_reward on fixed samples: the loss is mean_t (log p_S(y_t) - log p_T(y_t)) over the
    generated tokens, and teacher_logprob / student_logprob are the two means (also logged under gkd)."""
    tok = tokenizer(pad_is_eos=True)
    batch = next(iter(task_data(splits, tok).train_loader()))
    eos = tok.eos_token_id
    fixed = torch.tensor([[50, 51, eos, 52, 53, 54]] * len(batch["prompts"]))
    monkeypatch.setattr("distill.distillers.sources.generate_ids", lambda *a, **k: fixed)
    student_lp, teacher_lp = [], []
    options = dict(lmbda=1.0, max_length=6, objective="reverse_kl_reward", cache_dir=cache_dir, **AT_ONCE)
    d = OnPolicyDistiller(gpt2(tok, 1), gpt2(tok, 2), tok, **options)
    for row, m in zip(batch["prompt_input_ids"], batch["prompt_attention_mask"]):
        prompt = row[m.bool()].tolist()
        ids = torch.tensor([[*prompt, 50, 51, eos]])
        targets = ids[0, len(prompt) :, None]
        with torch.no_grad():
            for model, out in ((d.student, student_lp), (d.teacher, teacher_lp)):
                log_p = torch.log_softmax(model(input_ids=ids).logits[0, len(prompt) - 1 : -1], -1)
                out.append(log_p.gather(1, targets).squeeze(1))
    s, t = torch.cat(student_lp), torch.cat(teacher_lp)
    result = d.compute_loss(batch)
    assert result.loss.item() == pytest.approx((s - t).mean().item(), rel=1e-4)
    assert result.parts["teacher_logprob"] == pytest.approx(t.mean().item(), rel=1e-4)
    assert result.parts["student_logprob"] == pytest.approx(s.mean().item(), rel=1e-4)
    gkd = OnPolicyDistiller(d.student, d.teacher, tok, lmbda=1.0, max_length=6, cache_dir=cache_dir, **AT_ONCE)
    assert gkd.compute_loss(batch).parts["teacher_logprob"] == pytest.approx(t.mean().item(), rel=1e-4)
    with pytest.raises(
        ConfigError, match=r"distiller.objective='ppo' is invalid: must be one of gkd, reverse_kl_reward"
    ):
        OnPolicyDistiller(d.student, d.teacher, tok, objective="ppo", cache_dir=cache_dir)


# ----------------------------------------------------------------------------- end to end


def test_train_py_language_then_onpolicy(tmp_path):
    for distiller in ("language", "onpolicy"):
        out = tmp_path / distiller
        # short: 6 steps, one validation, 8-token teacher/student completions in training
        result = cli(
            "experiment=smoke",
            "logger=none",
            "train.progress=false",
            f"distiller={distiller}",
            "distiller.max_length=8",
            "train.max_steps=6",
            f"hydra.run.dir={out}",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = json.loads((out / "metrics.json").read_text())
        for key in ("accuracy", "loss", *TEXT_KEYS, *(f"agreement_{k}" for k in TEXT_KEYS)):
            assert f"student/{key}" in metrics, key
        assert metrics["distiller"] == distiller and "agreement_bleu" in result.stdout  # the printed table
        history = read_jsonl(out / "history.jsonl")
        assert any("val/agreement_chrf" in h for h in history)
        assert any(("train/ce_teacher" if distiller == "language" else "train/on_policy") in h for h in history)
    # the on-policy run scores against the same teacher outputs: the language run cached them
    assert "teacher generations: using cache" in result.stdout


def test_sample_stats_count_lengths_and_stops_by_hand():
    eos, x = 9, -100
    labels = torch.tensor([[x, x, 4, 5, eos, x], [x, 4, 5, 6, 7, 8], [x, x, x, x, x, x], [x, eos, x, x, x, x]])
    stats = sample_stats(labels, eos)
    assert stats == {"sample_tokens": (3 + 5 + 0 + 1) / 4, "sample_stopped": 2 / 4}


def test_onpolicy_logs_which_batches_were_sampled_and_how_samples_ended(splits, cache_dir, caplog):
    tok = tokenizer()
    batch = next(iter(task_data(splits, tok).train_loader()))
    d = OnPolicyDistiller(gpt2(tok, 1), gpt2(tok, 2), tok, lmbda=1.0, max_length=2, cache_dir=cache_dir, **AT_ONCE)
    with caplog.at_level("WARNING", logger="distill.distillers.onpolicy"):
        parts = d.compute_loss(batch).parts
        d.compute_loss(batch)
    assert parts["on_policy"] == 1.0 and parts["kd_sampled"] == parts["kd"] and "kd_dataset" not in parts
    assert 0 < parts["sample_tokens"] <= 2 and 0 <= parts["sample_stopped"] <= 1
    unstopped = [r for r in caplog.records if "without the end-of-response token" in r.getMessage()]
    assert len(unstopped) == (1 if parts["sample_stopped"] < 1 else 0)  # one line per run, not per batch
    d.lmbda = 0.0
    parts = d.compute_loss(batch).parts
    assert parts["on_policy"] == 0.0 and parts["kd_dataset"] == parts["kd"] and "sample_tokens" not in parts


def test_lmbda_schedule_is_off_policy_then_ramps_by_hand():
    assert [lmbda_at(s, 0.5, 3, 0) for s in range(5)] == [0, 0, 0, 0.5, 0.5]
    assert [lmbda_at(s, 0.8, 2, 4) for s in range(8)] == pytest.approx([0, 0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8])
    assert [lmbda_at(s, 0.5, 0, 0) for s in range(3)] == [0.5] * 3  # the default: lmbda from the start


def test_a_run_follows_the_lmbda_schedule_and_bad_schedules_are_one_line(tmp_path):
    options = [
        "experiment=smoke",
        "logger=none",
        "distiller=onpolicy",
        "distiller.lmbda=1.0",
        "distiller.lmbda_ramp_steps=0",
    ]
    result = cli(*options, "distiller.lmbda_warmup_steps=6", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    shares = {h["step"]: h["train/on_policy"] for h in read_jsonl(tmp_path / "history.jsonl") if "train/on_policy" in h}
    assert shares == {2: 0.0, 4: 0.0, 6: 0.0, 8: 1.0, 10: 1.0, 12: 1.0}  # steps 1-6 off-policy, then lmbda = 1
    bad_lines = [
        ("distiller.lmbda_ramp_steps=-1", "distiller.lmbda_ramp_steps=-1 is invalid"),
        ("distiller.sampler=vllm", "distiller.sampler='vllm' is invalid: must be one of hf"),
    ]
    for bad, line in bad_lines:
        result = cli(*options, bad, f"hydra.run.dir={tmp_path / 'bad'}")
        assert result.returncode != 0 and any(line in e for e in result.error_lines()), result.stderr[-1500:]


def test_the_sampler_is_a_seam(splits, cache_dir, monkeypatch):
    """A sampler registered under a name is what the distiller calls for its on-policy batches."""
    from distill.distillers import sources

    tok = tokenizer()
    batch = next(iter(task_data(splits, tok).train_loader()))
    calls = []

    def fixed(student, tokenizer_, settings, batch_):
        calls.append(settings.max_new_tokens)
        prompt_ids, mask = batch_["prompt_input_ids"], batch_["prompt_attention_mask"]
        completions = torch.full((len(prompt_ids), 2), tok.eos_token_id)
        return on_policy_batch(prompt_ids, mask, completions, tok.eos_token_id, tok.pad_token_id)

    monkeypatch.setitem(sources.SAMPLERS, "fixed", fixed)
    d = OnPolicyDistiller(gpt2(tok, 1), gpt2(tok, 2), tok, lmbda=1.0, max_length=3, sampler="fixed", **AT_ONCE,
                          cache_dir=cache_dir)  # fmt: skip
    parts = d.compute_loss(batch).parts
    assert calls == [3] and parts["sample_tokens"] == 1.0 and parts["sample_stopped"] == 1.0


def tokenizer_ending_with_pad():
    """The embedded tokenizer with the same vocabulary, whose responses would end with <pad> instead of <eos>."""
    tok = build_tokenizer()
    tok.eos_token = "<pad>"
    return tok


def test_a_teacher_that_ends_responses_with_another_token_is_refused_in_one_line():
    from distill.data.rendering import check_same_end_of_response
    from distill.run.experiment import build_distiller
    from tests.conftest import compose

    student, teacher = build_tokenizer(), tokenizer_ending_with_pad()
    line = (
        f"model.teacher_tokenizer ends a response with id {teacher.eos_token_id} ('<pad>') and model.tokenizer "
        f"with id {student.eos_token_id} ('<eos>'): distiller=language needs one end-of-response token"
    )
    with pytest.raises(ConfigError) as error:
        check_same_end_of_response(student, teacher, False, "language")
    assert str(error.value) == line
    check_same_end_of_response(student, build_tokenizer(), False, "language")  # the same token: no error
    different = "+model.teacher_tokenizer._target_=tests.test_language.tokenizer_ending_with_pad"
    for distiller in ("language", "onpolicy"):
        with pytest.raises(ConfigError, match=f"distiller={distiller} needs one end-of-response token"):
            build_distiller(compose("experiment=smoke", "logger=none", f"distiller={distiller}", different))
