"""Intermediate-layer distillation through the whole path: the loss is
alpha * kd + (1 - alpha) * ce + hidden_weight * hidden + attention_weight * attention (checked by hand),
every part is logged, the projection trains and is checkpointed but never exported with the student,
and students born from their teacher are selected from the config (model/student=from_teacher)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, BertConfig, BertForSequenceClassification

from distill.core.instantiate import build
from distill.distillers import LogitDistiller
from distill.loop.checkpoint import checkpoint_dirs, read_checkpoint_state
from distill.models import layer_list, student_from_teacher
from distill.run import fit_teacher
from distill.run.experiment import build_student
from distill.teacher import TeacherSource
from tests.conftest import compose, gpt2, read_jsonl, run_experiment, task_data

PARTS = ("train/kd", "train/ce", "train/hidden", "train/attention")


def bert(layers: int, width: int, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=40, hidden_size=width, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=2 * width,
        num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=0,
    )  # fmt: skip
    return BertForSequenceClassification(config).eval()


def classification_batch() -> dict[str, torch.Tensor]:
    ids = torch.tensor([[2, 5, 9, 13, 17, 21], [2, 7, 11, 3, 0, 0], [2, 30, 3, 0, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": torch.tensor([0, 2, 1])}


def test_the_loss_is_the_weighted_sum_of_its_parts_by_hand():
    teacher, student = bert(4, 32, 0), bert(2, 16, 1)  # widths differ: one projection per layer pair
    T, alpha, w_h, w_a = 2.0, 0.3, 0.5, 0.25
    distiller = LogitDistiller(
        student, teacher, temperature=T, alpha=alpha, hidden_weight=w_h, attention_weight=w_a, task="classification"
    )
    batch = classification_batch()
    out = distiller.compute_loss(batch)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        t = teacher(**inputs, output_hidden_states=True, output_attentions=True)
        s = student(**inputs, output_hidden_states=True, output_attentions=True)
        log_p_t, log_p_s = F.log_softmax(t.logits / T, -1), F.log_softmax(s.logits / T, -1)
        kd = T**2 * (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
        ce = F.cross_entropy(s.logits, batch["labels"])
        valid = batch["attention_mask"].bool()
        pairs = [(1, 2), (2, 4)]  # student layer i -> teacher layer 2i (last onto last)
        projections = distiller.intermediate.projections
        hidden = torch.stack(
            [((projections[k](s.hidden_states[i]) - t.hidden_states[j]) ** 2).mean(-1)[valid].mean()
             for k, (i, j) in enumerate(pairs)]
        ).mean()  # fmt: skip
        rows = []
        for i, j in pairs:
            a_s, a_t = s.attentions[i - 1], t.attentions[j - 1]  # (B, heads, L, L)
            per_row = []
            for b, q in valid.nonzero().tolist():
                keys = valid[b]
                p, r = a_t[b, :, q, keys], a_s[b, :, q, keys]  # (heads, valid keys)
                per_row.append((p * (p.log() - r.log())).sum(-1).mean())
            rows.append(torch.stack(per_row).mean())
        attention = torch.stack(rows).mean()
    expected = {"kd": kd, "ce": ce, "hidden": hidden, "attention": attention}
    for name, value in expected.items():
        assert out.parts[name] == pytest.approx(value.item(), rel=1e-4, abs=1e-6), name
    total = alpha * kd + (1 - alpha) * ce + w_h * hidden + w_a * attention
    assert out.loss.item() == pytest.approx(total.item(), rel=1e-5)


def test_a_student_with_the_teachers_layers_matches_it_exactly():
    teacher = bert(4, 32, 0)
    student = student_from_teacher(teacher, "first_n", n=4)  # every layer: the same network
    for kind in ("cosine", "mse"):
        distiller = LogitDistiller(
            student, teacher, alpha=0.5, hidden_weight=1.0, hidden_loss=kind, attention_weight=1.0,
            task="classification",
        )  # fmt: skip
        parts = distiller.compute_loss(classification_batch()).parts
        assert parts["hidden"] == pytest.approx(0.0, abs=1e-6) and parts["attention"] == pytest.approx(0.0, abs=1e-6)
        assert parts["kd"] == pytest.approx(0.0, abs=1e-6)
        assert distiller.intermediate.projections is not None and len(distiller.intermediate.projections) == 0


def test_causal_terms_count_the_positions_that_predict_the_response(tok):
    data = task_data(tok, n_train=8)
    batch = next(iter(data.train_loader()))
    teacher, student = gpt2(tok, 0, n_layer=2, n_embd=32).eval(), gpt2(tok, 1, n_layer=1, n_embd=32).eval()
    distiller = LogitDistiller(student, teacher, alpha=0.4, hidden_weight=2.0, hidden_loss="cosine", chunk_size=0)
    out = distiller.compute_loss(batch)
    with torch.no_grad():
        h_s = student(batch["input_ids"], output_hidden_states=True).hidden_states[1]
        h_t = teacher(batch["input_ids"], output_hidden_states=True).hidden_states[2]
    predicts = torch.zeros_like(batch["labels"], dtype=torch.bool)
    predicts[:, :-1] = batch["labels"][:, 1:] != -100  # position t predicts a response token t + 1
    hidden = (1 - F.cosine_similarity(h_s[predicts], h_t[predicts], dim=-1)).mean()
    assert out.parts["hidden"] == pytest.approx(hidden.item(), rel=1e-5)
    expected = 0.4 * out.parts["kd"] + 0.6 * out.parts["ce"] + 2.0 * out.parts["hidden"]
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)


def test_a_run_logs_every_part_checkpoints_the_projection_and_exports_the_student_alone(tmp_path):
    metrics = run_experiment(
        tmp_path,
        "experiment=smoke",  # teacher 1 x 32, student 1 x 16: a Linear(16, 32) projection
        "logger=none",
        "distiller.hidden_weight=0.5",
        "distiller.attention_weight=0.2",
        "train.max_steps=4",
        "train.log_every=1",
        "train.checkpoint_every=2",
    )
    history = read_jsonl(tmp_path / "history.jsonl")
    for part in PARTS:
        values = [h[part] for h in history if part in h]
        assert len(values) == 4 and all(v == v and v >= 0 for v in values), part
    states = [read_checkpoint_state(d) for d in reversed(checkpoint_dirs(tmp_path))]  # steps 2, 4
    projections = [s["extra_modules"] for s in states]
    assert [s["step"] for s in states] == [2, 4]
    assert set(projections[0]) == {"projections.0.weight", "projections.0.bias"}
    assert projections[0]["projections.0.weight"].shape == (32, 16)
    assert not torch.equal(projections[0]["projections.0.weight"], projections[1]["projections.0.weight"])  # trains
    exported = load_file(tmp_path / "student" / "model.safetensors")
    assert not any("projection" in k for k in exported)
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    assert sum(p.numel() for p in student.parameters()) == metrics["student/params"]
    assert set(exported) <= set(student.state_dict())


def test_model_student_from_teacher_copies_the_teachers_layers(tmp_path):
    overrides = (
        "model/student=from_teacher",
        "train.num_threads=1",
        "model.teacher.architecture.n_layer=2",
        "model.teacher.architecture.n_embd=32",
        "model.teacher.recipe.max_steps=4",
        "data.source.n_train=128",
        "data.source.n_validation=16",
        "data.source.n_test=16",
    )
    cfg = compose(*overrides)
    tokenizer = build(cfg.model.tokenizer)
    data = build(cfg.data, tokenizer=tokenizer)
    source = TeacherSource(cfg, tokenizer, data, fit_teacher=fit_teacher)
    student, teacher = build_student(cfg, tokenizer, data, source), source.model()
    assert student.config.distill_teacher_layers == [0] and student.config.n_layer == 1
    for name, value in layer_list(student)[0].state_dict().items():
        assert torch.equal(value, layer_list(teacher)[0].state_dict()[name]), name
    assert torch.equal(student.transformer.wte.weight, teacher.transformer.wte.weight)
    metrics = run_experiment(tmp_path, *overrides, "logger=none", "train.max_steps=2", "train.eval_every=2",
                             "distiller.hidden_weight=1", "distiller.hidden_loss=cosine")  # fmt: skip
    saved = json.loads((tmp_path / "student" / "config.json").read_text())
    assert saved["distill_teacher_layers"] == [0] and metrics["student/params"] < metrics["teacher/params"]


def test_a_resumed_run_restores_the_projections_and_their_optimizer_state(tmp_path):
    """Stopped at step 2 and resumed to step 4, a run with a projection ends where a straight run does."""
    run = ["experiment=smoke", "logger=none", "distiller.hidden_weight=0.5", "train.checkpoint_every=2"]
    run_experiment(tmp_path / "straight", *run, "train.max_steps=4")
    run_experiment(tmp_path / "resumed", *run, "train.max_steps=2")
    run_experiment(tmp_path / "resumed", *run, "train.max_steps=4", "train.resume=true")
    straight, resumed = (read_checkpoint_state(checkpoint_dirs(tmp_path / d)[0]) for d in ("straight", "resumed"))
    assert straight["step"] == resumed["step"] == 4
    for key, value in straight["extra_modules"].items():
        assert torch.allclose(value, resumed["extra_modules"][key], atol=1e-6), key
    a, b = (load_file(tmp_path / d / "student" / "model.safetensors") for d in ("straight", "resumed"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
