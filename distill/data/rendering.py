"""How a prompt becomes text the model reads: as it is, or through the tokenizer's chat template.

With a chat template, a row's prompt (``prompt`` column: one user turn; ``messages`` column: every turn
before the last, which must be the assistant's) is rendered with the generation prompt, and the
response is the assistant turn's content. The turn ends with the template's end-of-turn token
(``<|im_end|>`` for SmolLM2 and Qwen2.5): the response is labelled up to and including it, and
generation stops there; what the template writes after it (a newline) is never part of a sequence.
"""

from __future__ import annotations

import logging
from typing import Any

from datasets import DatasetDict
from transformers import PreTrainedTokenizerBase

from distill.core.errors import ConfigError, DataError, require

log = logging.getLogger(__name__)
CHAT_OPTIONS = ("auto", True, False)
_PROBE = "PROBE-4f1d"  # an assistant content no template writes itself


def use_chat_template(tokenizer: PreTrainedTokenizerBase, option: Any) -> bool:
    """``data.chat_template``: auto (the tokenizer's template when it has one), true (required) or false."""
    require(option in CHAT_OPTIONS, "data.chat_template", option, "must be auto, true or false")
    has = bool(getattr(tokenizer, "chat_template", None))
    if option is True and not has:
        raise ConfigError(
            "data.chat_template=true is invalid: the tokenizer has no chat template; set data.chat_template=false "
            "(plain prompts) or use a tokenizer that has one"
        )
    return has if option == "auto" else bool(option)


def end_of_turn(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that closes an assistant turn in the chat template (the first token after its content)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "u"}, {"role": "assistant", "content": _PROBE}], tokenize=False
    )
    suffix = text[text.index(_PROBE) + len(_PROBE) :]
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    if not ids:
        return int(tokenizer.eos_token_id)
    return int(ids[0])


def end_of_response(tokenizer: PreTrainedTokenizerBase, chat: bool) -> int | None:
    """The token a response ends with: the chat template's end-of-turn token (with a template in use), else EOS."""
    if chat and getattr(tokenizer, "chat_template", None):
        return end_of_turn(tokenizer)
    return tokenizer.eos_token_id


def check_same_end_of_response(
    student: PreTrainedTokenizerBase, teacher: PreTrainedTokenizerBase, chat: bool, distiller: str
) -> None:
    """Refuse, in one line naming both ids, a teacher whose responses end with another token than the
    student's: a student trained on the teacher's text or graded by it would not stop like its teacher."""
    ids = end_of_response(student, chat), end_of_response(teacher, chat)
    if ids[0] != ids[1]:
        names = [t.convert_ids_to_tokens(i) if i is not None else None for t, i in zip((student, teacher), ids)]
        raise ConfigError(
            f"model.teacher_tokenizer ends a response with id {ids[1]} ({names[1]!r}) and model.tokenizer with "
            f"id {ids[0]} ({names[0]!r}): distiller={distiller} needs one end-of-response token"
        )


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """The conversation so far, rendered with the generation prompt (what the assistant continues)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _conversation(row: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """``(turns before the response, response)`` of a ``messages`` row or a prompt/response row."""
    if "messages" not in row:
        return [{"role": "user", "content": row["prompt"]}], row["response"]
    turns = list(row["messages"])
    if not turns or turns[-1].get("role") != "assistant":
        raise DataError("every conversation in the messages column must end with an assistant turn (the response)")
    return turns[:-1], turns[-1]["content"]


def render(source: DatasetDict, tokenizer: PreTrainedTokenizerBase) -> DatasetDict:
    """Every split with ``prompt`` rendered by the chat template and ``response`` the assistant's content."""

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        turns, response = _conversation(row)
        return {"prompt": render_prompt(tokenizer, turns), "response": response}

    return DatasetDict({k: v.map(convert, remove_columns=[c for c in ("messages",) if c in v.column_names],
                                 desc=f"chat template {k}") for k, v in source.items()})  # fmt: skip


def set_end_of_response(tokenizer: PreTrainedTokenizerBase, token_id: int) -> None:
    """Make ``token_id`` the tokenizer's EOS, so generation stops at the end of the assistant turn."""
    if token_id == tokenizer.eos_token_id:
        return
    token = tokenizer.convert_ids_to_tokens(token_id)
    log.info("chat template: the assistant turn ends with %r (id %d): it is the end of a response", token, token_id)
    tokenizer.eos_token = token
