"""The Python API: DistillerFactory, the seed's BERT Quick Start on tiny configs, vocabularies."""

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForSequenceClassification

from distill import BaseDistiller, DistillerFactory, LogitDistiller, distillation_loss
from distill.core.errors import ConfigError
from distill.distillers import LanguageDistiller, OnPolicyDistiller, SupervisedDistiller
from tests.conftest import gpt2, task_data


def tiny_bert(layers: int, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(cfg)


def sentiment_batches(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Label 1 iff token 7 ("great") occurs: a task a tiny BERT learns in a few steps."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 64, (n, 12), generator=g)
    labels = torch.randint(0, 2, (n,), generator=g)
    ids[labels == 1, torch.randint(1, 12, (1,), generator=g)] = 7
    ids[:, 0] = 2  # [CLS]
    return [
        {"input_ids": ids[i : i + 16], "attention_mask": torch.ones_like(ids[i : i + 16]), "labels": labels[i : i + 16]}
        for i in range(0, n, 16)
    ]


def test_seed_quick_start_trains_only_the_student():
    teacher, student = tiny_bert(4, 0), tiny_bert(2, 1)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    train_loader, val_loader = sentiment_batches(320, 0), sentiment_batches(64, 1)

    distiller = DistillerFactory.create_distiller(
        mode="logit",
        teacher_model=teacher,
        student_model=student,
        config={
            "temperature": 2.0,
            "alpha": 0.7,
            "learning_rate": 3e-3,
            "max_steps": 30,
            "eval_every": 15,
            "progress": False,
        },
    )
    assert isinstance(distiller, BaseDistiller) and isinstance(distiller, LogitDistiller)
    metrics = distiller.train(train_loader, val_loader)

    assert set(metrics) >= {"loss", "accuracy"}
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items()), "teacher changed"
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert any(not torch.equal(student_before[k], v) for k, v in student.state_dict().items()), "student unchanged"


def test_classifier_loss_is_alpha_mix_of_kd_and_ce():
    teacher, student = tiny_bert(2, 0), tiny_bert(1, 1)
    d = LogitDistiller(student, teacher, temperature=3.0, alpha=0.25, divergence="reverse_kl")
    batch = sentiment_batches(16, 2)[0]
    out = d.compute_loss(batch)
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    kd = distillation_loss(s, t, divergence="reverse_kl", temperature=3.0)
    ce = F.cross_entropy(s, batch["labels"])
    assert out.loss.item() == pytest.approx(0.25 * kd.item() + 0.75 * ce.item(), rel=1e-5)
    assert out.parts["kd"] == pytest.approx(kd.item(), rel=1e-5) and out.parts["ce"] == pytest.approx(
        ce.item(), rel=1e-5
    )


@pytest.fixture(scope="module")
def arithmetic(tok):
    return tok, task_data(tok)


def test_causal_loss_uses_response_tokens_only(arithmetic):
    tok, data = arithmetic
    teacher, student = gpt2(tok, 0), gpt2(tok, 1)
    d = LogitDistiller(student, teacher, tok, temperature=2.0, alpha=0.6)
    batch = next(iter(data.train_loader()))
    out = d.compute_loss(batch)
    labels = batch["labels"]
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # Hand-built mask: position i predicts token i+1, which must be a response token.
    mask = torch.zeros(labels.shape[0], labels.shape[1] - 1, dtype=torch.bool)
    for b in range(labels.shape[0]):
        for i in range(labels.shape[1] - 1):
            mask[b, i] = labels[b, i + 1] != -100
    kd = distillation_loss(s[:, :-1], t[:, :-1], mask, temperature=2.0)
    ce = F.cross_entropy(s[:, :-1][mask], labels[:, 1:][mask])
    assert out.loss.item() == pytest.approx(0.6 * kd.item() + 0.4 * ce.item(), rel=1e-5)
    # Changing prompt or padding logits of the teacher must not change the loss.
    assert mask.sum() < (batch["attention_mask"][:, 1:] == 1).sum()


def test_the_last_position_is_not_run_and_modes_are_restored(arithmetic):
    """A causal LM's last position predicts nothing: both models run on L - 1 positions (the loss is the full
    forward's, test above). A teacher put in train mode is put back in eval, a student left in eval trains."""
    tok, data = arithmetic
    teacher, student = gpt2(tok, 0), gpt2(tok, 1)
    d = LogitDistiller(student, teacher, tok)
    batch = next(iter(data.train_loader()))
    widths: list[int] = []
    hooks = [m.register_forward_pre_hook(lambda m, a, kw: widths.append(kw["input_ids"].shape[1]), with_kwargs=True)
             for m in (student, teacher)]  # fmt: skip
    teacher.train(), student.eval()
    d.train_step(batch)
    for hook in hooks:
        hook.remove()
    assert widths == [batch["input_ids"].shape[1] - 1] * 2
    assert not teacher.training and all(not m.training for m in teacher.modules())
    assert all(m.training for m in student.modules())


def test_padded_teacher_vocabulary_is_sliced(arithmetic):
    tok, data = arithmetic
    teacher = gpt2(tok, 0, vocab_size=len(tok) + 28)  # padded embedding rows, as Qwen2.5 has
    with torch.no_grad():
        teacher.lm_head.weight[len(tok) :] = 0.0
        teacher.transformer.wte.weight[len(tok) :] = 0.0
    student = gpt2(tok, 1)
    d = LogitDistiller(student, teacher, tok, alpha=1.0)
    assert d.width == len(tok)
    batch = next(iter(data.train_loader()))
    loss = d.compute_loss(batch).loss
    # the same teacher without its padding rows gives the same loss: they never enter the divergence
    trimmed = gpt2(tok, 0)
    vocab_rows = ("transformer.wte.weight", "lm_head.weight")
    trimmed.load_state_dict({k: v[: len(tok)] if k in vocab_rows else v for k, v in teacher.state_dict().items()})
    assert loss.item() == pytest.approx(
        LogitDistiller(student, trimmed, tok, alpha=1.0).compute_loss(batch).loss.item(), rel=1e-6
    )


def test_vocabulary_mismatch_fails_naming_both_sizes(arithmetic):
    tok, _ = arithmetic
    teacher = gpt2(tok, 0, vocab_size=5000)
    student = gpt2(tok, 1)
    with pytest.raises(ConfigError, match=rf"5000.*{len(tok)}"):
        LogitDistiller(student, teacher, tok)
    with pytest.raises(ConfigError, match="5000"):
        LogitDistiller(student, teacher)  # no tokenizer: any difference is a mismatch


def test_factory_errors_and_registration(arithmetic):
    tok, _ = arithmetic
    teacher, student = gpt2(tok, 0), gpt2(tok, 1)
    with pytest.raises(ConfigError, match="mode='magic'"):
        DistillerFactory.create_distiller(mode="magic", teacher_model=teacher, student_model=student)
    with pytest.raises(ConfigError, match="temprature"):
        DistillerFactory.create_distiller(
            mode="logit", teacher_model=teacher, student_model=student, config={"temprature": 2}
        )
    with pytest.raises(ConfigError, match="teacher_model"):
        DistillerFactory.create_distiller(mode="logit", student_model=student)
    with pytest.raises(ConfigError, match=r"distiller\.alpha"):
        DistillerFactory.create_distiller(
            mode="logit", teacher_model=teacher, student_model=student, config={"alpha": 2}
        )
    for chunk_size in ("big", -1, 1.5):
        with pytest.raises(ConfigError, match=r"distiller\.chunk_size"):
            DistillerFactory.create_distiller(
                mode="logit", teacher_model=teacher, student_model=student, config={"chunk_size": chunk_size}
            )

    class HalfCE(SupervisedDistiller):
        def compute_loss(self, batch):
            out = super().compute_loss(batch)
            out.loss = out.loss * 0.5
            return out

    DistillerFactory.register("half_ce", HalfCE)
    assert "half_ce" in DistillerFactory.available()
    d = DistillerFactory.create_distiller(mode="half_ce", student_model=student, tokenizer=tok, config={"max_steps": 3})
    assert isinstance(d, HalfCE) and d.train_config == {"max_steps": 3}
    with pytest.raises(TypeError):
        DistillerFactory.register("bad", dict)


class ScaledSupervised(SupervisedDistiller):
    """Importable from a config's _target_ (tests.test_api.ScaledSupervised)."""

    def __init__(self, student_model, teacher_model=None, tokenizer=None, max_new_tokens=8, scale: float = 1.0):
        super().__init__(student_model, teacher_model, tokenizer, max_new_tokens=max_new_tokens)
        self.scale = scale


def test_custom_distiller_by_target(arithmetic):
    tok, _ = arithmetic
    d = instantiate(
        {"_target_": "tests.test_api.ScaledSupervised", "scale": 0.5}, student_model=gpt2(tok, 0), tokenizer=tok
    )
    assert isinstance(d, ScaledSupervised) and d.scale == 0.5


def test_validation_loss_falls_in_a_short_run(arithmetic):
    tok, data = arithmetic
    d = LogitDistiller(gpt2(tok, 1), gpt2(tok, 0, n_embd=48), tok, max_new_tokens=8)
    before = d.validate(data.val_loader())["loss"]
    after = d.train(data.train_loader(), data.val_loader(), max_steps=40, lr=3e-3, eval_every=0, progress=False)["loss"]
    assert after < 0.8 * before


def test_plain_dataloader_is_accepted(arithmetic):
    tok, data = arithmetic
    loader = DataLoader(data.train, batch_size=8, shuffle=True, collate_fn=data.collator)
    d = SupervisedDistiller(gpt2(tok, 0), tokenizer=tok)
    metrics = d.train(loader, None, max_steps=5, progress=False)
    assert metrics == {}


def test_ddp_outside_torchrun_trains_one_process_and_says_so(arithmetic, caplog):
    tok, data = arithmetic
    d = SupervisedDistiller(gpt2(tok, 0), tokenizer=tok)
    with caplog.at_level("WARNING"):
        d.train(data.train_loader(), None, max_steps=2, strategy="ddp", progress=False)
    lines = [r.getMessage() for r in caplog.records if "train.strategy=ddp" in r.getMessage()]
    assert len(lines) == 1 and "single process" in lines[0]


def test_base_options_are_keyword_only_and_shared_by_every_distiller(arithmetic):
    tok, _ = arithmetic
    with pytest.raises(TypeError):
        SupervisedDistiller(gpt2(tok, 0), None, tok, 8)  # max_new_tokens only by keyword
    for cls in (LogitDistiller, SupervisedDistiller, LanguageDistiller, OnPolicyDistiller):
        assert {"max_new_tokens", "task", "chunk_size", "fast_activations"} <= cls.init_parameter_names()
    assert LogitDistiller.teacher_input({"teacher_cache": "top_k"}) == "targets"
    assert LogitDistiller.teacher_input({}) == "model" and SupervisedDistiller.teacher_input({}) is None
