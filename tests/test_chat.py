"""Chat templates: prompts rendered with the generation prompt, the response labelled up to and including the
template's end-of-turn token and nothing after it, conversations from a ``messages`` column, and generation
that stops at the end of the assistant turn."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset, DatasetDict
from torch import nn

from distill.core.errors import ConfigError
from distill.data import IGNORE_INDEX, TaskData
from distill.data.arithmetic import build_tokenizer
from distill.inference.generation import GenerationSettings, generate_completions
from distill.models import from_config

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chat_tokenizer():
    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def split(**columns) -> DatasetDict:
    return DatasetDict({"train": Dataset.from_dict(columns), "validation": Dataset.from_dict(columns)})


def test_prompt_and_response_rows_are_rendered_and_masked_by_hand():
    tok = chat_tokenizer()
    data = TaskData(split(prompt=["what is 1+2"], response=["3"]), tok, max_length=64)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    prompt = ids(tok, "<|im_start|>user\nwhat is 1+2<|im_end|>\n<|im_start|>assistant\n")
    row = data.train[0]
    assert row["input_ids"] == [*prompt, *ids(tok, "3"), end]  # nothing after the end-of-turn token
    assert row["labels"] == [IGNORE_INDEX] * len(prompt) + [*ids(tok, "3"), end]
    assert row["prompt_ids"] == prompt and tok.eos_token_id == end  # generation stops at the end of the turn
    batch = data.collator([data.train[0], {**data.train[0], "input_ids": prompt[:3], "labels": [IGNORE_INDEX] * 3}])
    assert (batch["labels"][1, 3:] == IGNORE_INDEX).all()  # padding is never labelled


def test_a_messages_column_is_a_conversation_ending_with_the_response():
    tok = chat_tokenizer()
    turns = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is 2+2"},
        {"role": "assistant", "content": "4"},
    ]
    data = TaskData(split(messages=[turns]), tok, max_length=64)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    rendered = (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nwhat is 2+2<|im_end|>\n<|im_start|>assistant\n"
    )
    row = data.train[0]
    assert row["prompt"] == rendered and row["response"] == "4"
    assert row["labels"] == [IGNORE_INDEX] * len(ids(tok, rendered)) + [*ids(tok, "4"), end]
    with pytest.raises(Exception, match="end with an assistant turn"):
        TaskData(split(messages=[turns[:2]]), chat_tokenizer(), max_length=64)


def test_chat_template_options_are_checked():
    plain = build_tokenizer()
    with pytest.raises(ConfigError, match=r"data.chat_template=true is invalid: the tokenizer has no chat template"):
        TaskData(split(prompt=["1+1"], response=["2"]), plain, chat_template=True)
    with pytest.raises(ConfigError, match=r"data.chat_template='maybe' is invalid"):
        TaskData(split(prompt=["1+1"], response=["2"]), plain, chat_template="maybe")
    with pytest.raises(ConfigError, match="a messages column needs a chat template"):
        TaskData(split(messages=[[{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]]), plain)
    data = TaskData(split(prompt=["1+1="], response=["2"]), chat_tokenizer(), chat_template=False)
    assert data.train[0]["prompt_ids"] == ids(data.tokenizer, "1+1=")  # as it is


def test_generation_stops_at_the_end_of_the_assistant_turn():
    tok = chat_tokenizer()
    TaskData(split(prompt=["1+1"], response=["2"]), tok, max_length=64)  # makes <|im_end|> the end of a response
    end = tok.convert_tokens_to_ids("<|im_end|>")
    torch.manual_seed(0)
    model = from_config("llama", tokenizer=tok, num_hidden_layers=1, hidden_size=16, intermediate_size=32,
                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)  # fmt: skip
    head = nn.Linear(16, len(tok), bias=True)  # constant logits: <|im_end|> first, then "1"
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[end] = 10.0
        head.bias[ids(tok, "1")[0]] = 5.0
    model.lm_head = head
    prompt = ids(tok, "<|im_start|>user\n1+1<|im_end|>\n<|im_start|>assistant\n")
    out = generate_completions(model, tok, {"p": prompt}, GenerationSettings(max_new_tokens=8), progress=False)
    assert out["p"] == [[end]]  # stopped at the end of the turn, which is kept
