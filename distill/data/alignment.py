"""A teacher with its own tokenizer reading the student's sequences: prompts, responses and which positions pair up.

The teacher sees the same text as the student, tokenised by its own tokenizer: the prompt rendered for the teacher
(:meth:`TokenizerBridge.teacher_prompt`), the response text re-tokenised, and the teacher's end-of-response token
where the student's response ended with its own. Positions pair up by character offsets in the response text:

* each token's span is read off its tokenizer's own decoding (the end of token i is the length of the decoded
  first i + 1 tokens), so both sides are measured on one string;
* student response token i, starting at character c, is paired with the teacher token that starts at c: both
  models then predict what follows the same text (the prompt and the response up to c). A student token that
  starts inside a teacher token (the teacher merged what the student splits) has no partner: it gets the task
  loss only. A student token that covers several teacher tokens (the student merged) is paired with the first;
* a pair is *the same token* when the two tokens also end at the same character (they spell the same string);
  the two end-of-response tokens are a pair of the same token too.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from distill.core.errors import DataError
from distill.data.rendering import end_of_response, render_prompt, set_end_of_response
from distill.data.sequences import response_of, sequence_batch

log = logging.getLogger(__name__)
REPLACEMENT = "\ufffd"  # what a decoder writes for the bytes of a character that is not complete yet


def decode(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """The text of ``ids`` as the spans are measured on it (no clean-up of spaces, special tokens kept)."""
    return tokenizer.decode(ids, clean_up_tokenization_spaces=False)


def token_ends(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[int]:
    """The character where each token of ``ids`` ends in ``decode(tokenizer, ids)``: the length of the decoded
    first i + 1 tokens; a token that ends inside a character (its bytes incomplete) ends where the previous did.
    When the tokens decoded one by one add up to the whole text (most byte-level BPE on whole characters), their
    running lengths, the same numbers in linear time."""
    if not ids:
        return []
    pieces = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    if REPLACEMENT not in "".join(pieces) and "".join(pieces) == decode(tokenizer, ids):  # each token is its text
        return list(itertools.accumulate(map(len, pieces)))
    prefixes = tokenizer.batch_decode([ids[: i + 1] for i in range(len(ids))], clean_up_tokenization_spaces=False)
    ends = [len(p) - p.endswith(REPLACEMENT) for p in prefixes]
    for i in range(len(ends) - 2, -1, -1):  # never past a later token's end
        ends[i] = min(ends[i], ends[i + 1])
    return ends


def pair_tokens(student_ends: list[int], teacher_ends: list[int]) -> tuple[list[int], list[bool]]:
    """For each student token, the index of the teacher token that starts at the same character (-1: none), and
    whether the two also end at the same character. Tokens of zero width are never paired."""
    starts: dict[int, int] = {}
    for j, end in enumerate(teacher_ends):
        start = teacher_ends[j - 1] if j else 0
        if end > start:
            starts.setdefault(start, j)
    partner, same = [], []
    for i, end in enumerate(student_ends):
        start = student_ends[i - 1] if i else 0
        j = starts.get(start, -1) if end > start else -1
        partner.append(j)
        same.append(j >= 0 and teacher_ends[j] == end)
    return partner, same


def token_strings(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Each ordinary token's decoded string -> its id (special tokens, strings that decode to nothing or to an
    incomplete character, and strings two ids share are left out)."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    texts = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    seen: dict[str, int] = {}
    repeated: set[str] = set()
    for i, text in zip(ids, texts):
        if not text or REPLACEMENT in text:
            continue
        if text in seen:
            repeated.add(text)
        seen.setdefault(text, i)
    return {text: i for text, i in seen.items() if text not in repeated}


def prompt_pairs(student: Any, teacher: Any) -> dict[tuple[int, ...], list[int]]:
    """Student prompt ids -> teacher prompt ids, row by row, of two :class:`~distill.data.TaskData` built from one
    source with each model's tokenizer (so each rendered its prompts for itself); a split whose two versions
    differ in length (examples dropped differently) is left out."""
    pairs: dict[tuple[int, ...], list[int]] = {}
    for split in ("task_train", "validation", "test"):
        ours, theirs = getattr(student, split), getattr(teacher, split)
        if ours is not None and theirs is not None and len(ours) == len(theirs):
            pairs.update(zip(map(tuple, ours["prompt_ids"]), theirs["prompt_ids"]))
    return pairs


@dataclass(frozen=True)
class Pairing:
    """A student batch paired with the teacher's reading of it.

    teacher_batch: right-padded ``input_ids``/``attention_mask``/``labels`` in the teacher's tokens (labelled on
    the response). partner: (N_s,) long, for each student response position (row-major, as the loss sees them)
    the teacher response position it pairs with (row-major over the teacher batch's N_t), or -1. same: (N_s,)
    bool, the pair is the same token (see the module docstring).
    """

    teacher_batch: dict[str, Tensor]
    partner: Tensor
    same: Tensor


class TokenizerBridge:
    """Everything that turns the student's token ids into the teacher's, and back.

    Args:
        student, teacher: the two tokenizers (the student's end of response is its EOS, as the data set it).
        teacher_chat: the teacher renders a plain student prompt as a user turn of its chat template.
        student_chat: the student's prompts were rendered by its own chat template (then they must be in ``prompts``).
        prompts: student prompt ids -> teacher prompt ids known in advance (the data's rows rendered for each
            model; a student prompt rendered by its own chat template must be found here).
        max_length: teacher sequences are cut at this many tokens (its context); positions past it are unpaired.
    """

    def __init__(
        self,
        student: PreTrainedTokenizerBase,
        teacher: PreTrainedTokenizerBase,
        teacher_chat: bool = False,
        student_chat: bool = False,
        prompts: Mapping[tuple[int, ...], list[int]] | None = None,
        max_length: int | None = None,
    ) -> None:
        self.student_tok, self.teacher_tok = student, teacher
        self.teacher_chat, self.student_chat = teacher_chat, student_chat
        self.student_end, self.teacher_end = student.eos_token_id, end_of_response(teacher, teacher_chat)
        set_end_of_response(teacher, self.teacher_end)  # the teacher's generations stop there
        self.prompts: dict[tuple[int, ...], list[int]] = dict(prompts or {})
        self.max_length = max_length
        self._shared: tuple[Tensor, Tensor] | None = None
        self._teacher_of: Tensor | None = None
        self.unpaired_rows = 0  # responses the teacher's tokenizer does not give back unchanged

    def teacher_prompt(self, student_ids: list[int]) -> list[int]:
        """The teacher's prompt for a student prompt: known in advance, or the student's plain text (as the user
        turn of the teacher's chat template with ``teacher_chat``) in the teacher's tokens."""
        key = tuple(student_ids)
        if key not in self.prompts:
            if self.student_chat:
                shown = decode(self.student_tok, student_ids)[:60]
                raise DataError(f"the student prompt {shown!r} was rendered by its chat template and is not one of "
                                "the data's: the teacher cannot render it")  # fmt: skip
            text = self.student_tok.decode(student_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            if self.teacher_chat:
                text = render_prompt(self.teacher_tok, [{"role": "user", "content": text}])
            self.prompts[key] = self.teacher_tok(text, add_special_tokens=False)["input_ids"]
        return self.prompts[key]

    def to_student(self, teacher_ids: list[int]) -> list[int]:
        """A teacher's completion (its tokens, ending with its end of response when it stopped) in the student's
        tokens, ending with the student's end of response when the teacher's did."""
        stopped = bool(teacher_ids) and teacher_ids[-1] == self.teacher_end
        body = teacher_ids[:-1] if stopped else teacher_ids
        text = self.teacher_tok.decode(body, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return self.student_tok(text, add_special_tokens=False)["input_ids"] + ([self.student_end] if stopped else [])

    def shared(self) -> tuple[Tensor, Tensor]:
        """(student ids (S,), teacher ids (S,)): the tokens both vocabularies decode to the same string, and the
        two ends of response; computed once."""
        if self._shared is None:
            s, t = token_strings(self.student_tok), token_strings(self.teacher_tok)
            pairs = sorted((s[text], t[text]) for text in s.keys() & t.keys())
            pairs.append((self.student_end, self.teacher_end))
            self._shared = (torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs]))
        return self._shared

    def teacher_of(self) -> Tensor:
        """(len(student),) long: for each student id, the teacher id of the same shared token, or -1; computed once."""
        if self._teacher_of is None:
            student_ids, teacher_ids = self.shared()
            self._teacher_of = torch.full((len(self.student_tok),), -1, dtype=torch.long)
            self._teacher_of[student_ids] = teacher_ids
        return self._teacher_of

    def pair(self, sequences: Mapping[str, Tensor]) -> Pairing:
        """The teacher's reading of right-padded student ``input_ids``/``attention_mask``/``labels`` (response
        labelled, see :mod:`distill.data.sequences`) and the pairing of their response positions (class docstring).
        A teacher prompt longer than ``max_length`` keeps its last ``max_length - 1`` tokens."""
        rows = []
        for ids, mask, labels in zip(*(sequences[k].tolist() for k in ("input_ids", "attention_mask", "labels"))):
            start, response = response_of(labels)
            ended = bool(response) and response[-1] == self.student_end
            body = response[:-1] if ended else response
            prompt_ids = ids[:start] if start is not None else ids[: sum(mask)]
            rows.append((prompt_ids, body, ended, decode(self.student_tok, body)))
        texts = [text for *_, text in rows]
        theirs = self.teacher_tok(texts, add_special_tokens=False)["input_ids"] if texts else []
        prompts, responses, partners, sames = [], [], [], []
        for (prompt_ids, body, ended, text), teacher_body in zip(rows, theirs):
            prompt = self.teacher_prompt(prompt_ids)
            if self.max_length is not None:
                prompt = prompt[-(self.max_length - 1) :] if len(prompt) >= self.max_length else prompt
            teacher_response = teacher_body + ([self.teacher_end] if ended else [])
            if self.max_length is not None:
                teacher_response = teacher_response[: self.max_length - len(prompt)]
            partner, same = self._pair_row(text, body, teacher_body, ended, len(teacher_response))
            offset = sum(map(len, responses))  # the teacher's response positions of the rows before
            partners += [j + offset if j >= 0 else -1 for j in partner]
            sames += same
            prompts.append(prompt)
            responses.append(teacher_response)
        batch = sequence_batch(prompts, responses, self.teacher_tok.pad_token_id or 0)
        return Pairing(batch, torch.tensor(partners, dtype=torch.long), torch.tensor(sames, dtype=torch.bool))

    def _pair_row(self, text: str, body: list[int], theirs: list[int], ended: bool, kept: int) -> tuple[list, list]:
        """One row's pairing (module docstring): the student's response tokens ``body`` (then its end token when
        ``ended``) against the teacher's tokens ``theirs`` of the same ``text``, of which the first ``kept`` are in the
        teacher's sequence. A text the teacher's tokenizer does not give back unchanged (it normalises) is not
        paired at all."""
        if decode(self.teacher_tok, theirs) != text:
            if not self.unpaired_rows:
                log.warning("the teacher's tokenizer does not give back the response text unchanged (e.g. %r): "
                            "such responses are not paired (task loss only)", text[:60])  # fmt: skip
            self.unpaired_rows += 1
            return [-1] * (len(body) + ended), [False] * (len(body) + ended)
        partner, same = pair_tokens(token_ends(self.student_tok, body), token_ends(self.teacher_tok, theirs))
        if ended:
            partner, same = [*partner, len(theirs)], [*same, True]
        return [j if j < kept else -1 for j in partner], [s and j < kept for s, j in zip(same, partner)]
