"""``distiller.cross_tokenizer``: a teacher with its own tokenizer, in the distillers, the Python API and
``train.py``; and what is refused, in one line."""

from __future__ import annotations

import pytest
import torch

from distill import DistillerFactory
from distill.core.errors import ConfigError
from distill.data.alignment import TokenizerBridge
from distill.data.arithmetic import build_tokenizer
from distill.inference.generation import GenerationSettings, generate_completions
from distill.losses import CrossTeacher
from distill.losses.cross_vocab import cross_vocab_loss
from distill.teacher.generations import TeacherGenerations
from tests.conftest import cli, gpt2, read_jsonl, task_data

CROSS_SMOKE = ("experiment=smoke", "model=embedded_cross", "logger=none")


@pytest.fixture(scope="module")
def teacher_tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def student_tok():
    return build_tokenizer(200, numbers="whole")


def cross_distiller(mode, student_tok, teacher_tok, **config):
    teacher, student = gpt2(teacher_tok, seed=1, n_embd=32), gpt2(student_tok, seed=2, n_embd=16)
    options = {"cross_tokenizer": mode, "teacher_tokenizer": teacher_tok, **config}
    return DistillerFactory.create_distiller("logit", teacher, student, tokenizer=student_tok, config=options)


def test_the_teacher_reads_the_same_rows_its_own_data_would_give_it(student_tok, teacher_tok):
    ours, theirs = task_data(student_tok, n_train=16), task_data(teacher_tok, n_train=16)
    bridge = TokenizerBridge(student_tok, teacher_tok)
    batch = next(iter(ours.ordered_loader("train")))
    own = next(iter(theirs.ordered_loader("train")))
    pairing = bridge.pair(batch)
    for key in ("input_ids", "labels", "attention_mask"):
        assert torch.equal(pairing.teacher_batch[key], own[key])
    assert len(pairing.partner) == int((batch["labels"][:, 1:] != -100).sum())


@pytest.mark.parametrize("mode", ["uld", "gold"])
def test_the_distiller_loss_is_the_cross_vocabulary_loss_on_the_paired_positions(mode, student_tok, teacher_tok):
    distiller = cross_distiller(mode, student_tok, teacher_tok, temperature=2.0, alpha=1.0, chunk_size=0)
    batch = next(iter(task_data(student_tok, n_train=16).ordered_loader("train")))
    out = distiller.compute_loss(batch)
    # the reference: each model on its own tokens, the teacher's rows picked by the pairing
    pairing = distiller.bridge.pair(batch)
    labels_s, labels_t = batch["labels"], pairing.teacher_batch["labels"]
    with torch.no_grad():
        s = distiller.student(input_ids=batch["input_ids"][:, :-1], attention_mask=batch["attention_mask"][:, :-1])
        t = distiller.teacher(**{k: v[:, :-1] for k, v in pairing.teacher_batch.items() if k != "labels"})
    student_logits = s.logits[labels_s[:, 1:] != -100]
    teacher_logits = t.logits[labels_t[:, 1:] != -100][pairing.partner.clamp_min(0)]
    aligned = pairing.partner >= 0
    matched, shared = None, None
    if mode == "gold":
        shared = distiller.bridge.shared()
        teacher_of = dict(zip(shared[0].tolist(), shared[1].tolist()))
        targets_s = labels_s[:, 1:][labels_s[:, 1:] != -100].tolist()
        targets_t = labels_t[:, 1:][labels_t[:, 1:] != -100][pairing.partner.clamp_min(0)].tolist()
        matched = pairing.same & torch.tensor([teacher_of.get(a) == b for a, b in zip(targets_s, targets_t)])
        assert 0.5 < out.parts["matched"] < 1.0  # merged numbers are aligned but not the same token
    expected = cross_vocab_loss(student_logits, CrossTeacher(teacher_logits, aligned, matched, shared), 2.0)
    assert out.parts["kd"] == pytest.approx(expected.item(), rel=1e-5)
    assert out.parts["aligned"] == 1.0  # this student only merges what the teacher splits


@pytest.mark.parametrize("mode", ["uld", "gold"])
def test_chunked_and_materialised_distillers_agree(mode, student_tok, teacher_tok):
    batch = next(iter(task_data(student_tok, n_train=16).ordered_loader("train")))
    results = []
    for chunk_size in (0, 7):
        distiller = cross_distiller(mode, student_tok, teacher_tok, chunk_size=chunk_size)
        out = distiller.compute_loss(batch)
        out.loss.backward()
        grads = [p.grad.clone() for p in distiller.student.parameters()]
        results.append((out.loss.item(), out.parts["kd"], grads))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-5)
    assert results[0][1] == pytest.approx(results[1][1], abs=1e-5)
    for a, b in zip(results[0][2], results[1][2]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_teacher_generations_come_back_in_the_students_tokens(student_tok, teacher_tok, tmp_path):
    teacher = gpt2(teacher_tok, seed=3)
    bridge = TokenizerBridge(student_tok, teacher_tok)
    data = task_data(student_tok, n_train=8)
    prompts = dict(zip(data.train["prompt"][:4], data.train["prompt_ids"][:4]))
    settings = GenerationSettings(max_new_tokens=6)
    ours = TeacherGenerations(teacher, student_tok, str(tmp_path), 8, bridge)(prompts, settings, "train")
    own = {text: teacher_tok(text, add_special_tokens=False)["input_ids"] for text in prompts}
    theirs = generate_completions(teacher, teacher_tok, own, settings, 8, progress=False)
    for text in prompts:
        expected = teacher_tok.decode(theirs[text][0], skip_special_tokens=True)
        assert student_tok.decode(ours[text][0], skip_special_tokens=True) == expected


def test_a_mismatch_without_the_key_is_one_line_naming_it(tmp_path):
    result = cli(*CROSS_SMOKE, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert result.error_lines() == [
        "error: teacher tokenizer (100 tokens) and student tokenizer (200 tokens) differ: set "
        "distiller.cross_tokenizer=uld or gold to distil across tokenizers"
    ]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["distiller.cross_tokenizer=uld", "distiller.teacher_cache=top_k"], "distiller.teacher_cache='top_k'"),
        (["distiller.cross_tokenizer=gold", "distiller.divergence=reverse_kl"], "distiller.divergence='reverse_kl'"),
        (
            ["distiller=onpolicy", "distiller.cross_tokenizer=gold", "distiller.objective=reverse_kl_reward"],
            "distiller.objective='reverse_kl_reward'",
        ),
        (["distiller.cross_tokenizer=dsk"], "distiller.cross_tokenizer='dsk' is invalid: must be null or one of"),
    ],
)
def test_what_cross_tokenizer_cannot_do_is_refused_at_start_up(overrides, message, tmp_path):
    result = cli(*CROSS_SMOKE, *overrides, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2 and len(result.error_lines()) == 1
    assert message in result.error_lines()[0]


def test_the_python_api_refuses_a_cross_tokenizer_without_the_teachers_tokenizer(student_tok, teacher_tok):
    teacher, student = gpt2(teacher_tok), gpt2(student_tok)
    with pytest.raises(ConfigError, match=r"distiller\.cross_tokenizer=uld needs both tokenizers"):
        DistillerFactory.create_distiller("logit", teacher, student, student_tok, {"cross_tokenizer": "uld"})
    with pytest.raises(ConfigError, match=r"set distiller\.cross_tokenizer=uld or gold"):
        DistillerFactory.create_distiller("logit", teacher, student, student_tok, {"teacher_tokenizer": teacher_tok})


@pytest.mark.parametrize("distiller", ["logit", "language", "onpolicy"])
def test_train_py_runs_each_distiller_across_tokenizers_and_the_loss_falls(distiller, tmp_path):
    extra = {"onpolicy": ["distiller.lmbda_warmup_steps=0", "distiller.lmbda_ramp_steps=0", "distiller.max_length=8"],
             "language": ["distiller.kd_weight=0.5"]}.get(distiller, [])  # fmt: skip
    result = cli(*CROSS_SMOKE, f"distiller={distiller}", "distiller.cross_tokenizer=gold", *extra,
                 "train.max_steps=24", "train.log_every=4", f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    history = [r for r in read_jsonl(tmp_path / "history.jsonl") if "train/loss" in r]
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert any(r.get("train/aligned", 0) > 0.9 for r in history)
    assert "teacher/test_accuracy" in result.stdout and "student/test_accuracy" in result.stdout


def test_a_transfer_set_is_labelled_by_the_teacher_in_the_students_tokens(tmp_path):
    result = cli(*CROSS_SMOKE, "distiller.cross_tokenizer=uld", "data.labelled_fraction=0.5", "train.max_steps=4",
                 f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "256 labelled examples and 256 examples of" in result.stdout


def test_a_batch_where_nothing_pairs_runs_without_the_teacher(student_tok, teacher_tok, monkeypatch):
    distiller = cross_distiller("gold", student_tok, teacher_tok, alpha=0.5)
    batch = next(iter(task_data(student_tok, n_train=8).ordered_loader("train")))
    batch["labels"] = torch.full_like(batch["labels"], -100)  # no response position at all
    monkeypatch.setattr(distiller.teacher, "forward", None)  # never called
    out = distiller.compute_loss(batch)
    assert out.parts["aligned"] == 0.0 and out.parts["kd"] == 0.0 and out.loss.item() == 0.0
