"""LoRA students: only the adapters train and sit in the optimizer, the loss runs unchanged (chunked, head
frozen), a stopped run resumes exactly, and the exported student is merged and loads with plain transformers."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from transformers import AutoModelForCausalLM

from distill.core.errors import ConfigError
from distill.distillers import LogitDistiller
from distill.loop import Interrupted, TrainConfig, fit
from distill.models import from_config
from distill.models.lora import default_targets, lora_student
from tests.conftest import gpt2, task_data


def llama(tok, seed: int = 0, layers: int = 2):
    torch.manual_seed(seed)
    return from_config("llama", tokenizer=tok, num_hidden_layers=layers, hidden_size=32, intermediate_size=64,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)  # fmt: skip


@pytest.fixture(scope="module")
def data(tok):
    return task_data(tok, n_train=48)


def test_only_the_adapters_train_and_sit_in_the_optimizer(tok, data, capsys):
    student = lora_student(llama(tok, 1), r=4)
    assert default_targets(llama(tok)) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert f"LoRA student: {sum(p.numel() for p in student.parameters() if p.requires_grad):,} trainable" in (
        capsys.readouterr().out
    )
    distiller = LogitDistiller(student, llama(tok, 0), tok, max_new_tokens=4)
    assert {id(p) for p in distiller.parameters()} == {id(p) for p in student.parameters() if p.requires_grad}
    head = student.get_output_embeddings().weight.clone()
    fit(distiller, data.train_loader(), None, TrainConfig(max_steps=3, lr=1e-2, progress=False))
    assert torch.equal(head, student.get_output_embeddings().weight)  # the head is frozen: the chunked loss holds


def test_gpt2_and_bad_options(tok):
    assert default_targets(gpt2(tok)) == ["c_attn", "c_fc", "c_proj"]
    lora_student(gpt2(tok), r=2)  # GPT-2's transposed Conv1D maps
    with pytest.raises(ConfigError, match=r"peft\.r="):
        lora_student(gpt2(tok), r=0)
    with pytest.raises(ConfigError, match=r"peft\.target_modules"):
        lora_student(gpt2(tok), target_modules=["no_such_module"])


class StopAt3(LogitDistiller):
    def train_step(self, batch, loss_scale=1.0):
        self.n = getattr(self, "n", 0) + 1
        if self.n == 3:
            os.kill(os.getpid(), signal.SIGINT)  # handled after this step: a checkpoint at step 3
        return super().train_step(batch, loss_scale)


def test_a_stopped_lora_run_resumes_exactly_and_exports_merged(tok, data, tmp_path):
    cfg = dict(max_steps=6, checkpoint_every=3, progress=False, lr=1e-2, seed=0)
    teacher = llama(tok, 0, layers=3)

    def run(cls, out, student_seed=1, resume=False):
        d = cls(lora_student(llama(tok, student_seed), r=4, dropout=0.1), teacher, tok, max_new_tokens=4)
        fit(d, data.train_loader(seed=2), None, TrainConfig(**cfg, output_dir=str(out), resume=resume))
        return d

    full = run(LogitDistiller, tmp_path / "full")
    with pytest.raises(Interrupted):
        run(StopAt3, tmp_path / "part")
    rest = run(LogitDistiller, tmp_path / "part", student_seed=7, resume=True)  # other init: the checkpoint wins
    for name, value in full.student.state_dict().items():
        assert torch.equal(value, rest.student.state_dict()[name]), name

    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "full" / "student")  # plain transformers
    assert not any("lora" in n for n, _ in exported.named_parameters())
    batch = next(iter(data.val_loader()))
    full.student.eval()
    with torch.no_grad():
        adapted = full.student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        merged = exported(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)
