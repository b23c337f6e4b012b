"""Pairing a student's positions with a teacher's that tokenises the same text differently: spans, pairs and a
padded batch, checked against pairings written out by hand."""

from __future__ import annotations

import pytest
import torch

from distill.core.errors import DataError
from distill.data.alignment import TokenizerBridge, pair_tokens, token_ends
from distill.data.arithmetic import build_tokenizer
from distill.data.sequences import IGNORE_INDEX, sequence_batch


@pytest.fixture(scope="module")
def teacher_tok():
    return build_tokenizer()  # numbers digit by digit


@pytest.fixture(scope="module")
def student_tok():
    return build_tokenizer(200, numbers="whole")  # numbers may merge


def test_pairs_by_hand_where_the_two_split_at_different_boundaries():
    # text "12+3": student "12" "+" "3" (ends 2, 3, 4); teacher "1" "2+" "3" (ends 1, 3, 4)
    partner, same = pair_tokens([2, 3, 4], [1, 3, 4])
    # "12" starts at 0 with teacher "1" (a longer token: paired, not the same); "+" starts at 2, inside the
    # teacher's "2+" (no partner); "3" starts at 3 with teacher "3" (the same token)
    assert partner == [0, -1, 2]
    assert same == [False, False, True]
    # zero-width tokens are never paired, and a teacher token of zero width does not hide the next one
    assert pair_tokens([1, 1, 2], [0, 1, 2]) == ([1, -1, 2], [True, False, True])


def test_token_ends_measure_each_tokenizer_on_one_string(student_tok, teacher_tok):
    text = " 47 + 385"
    ours, theirs = student_tok(text)["input_ids"], teacher_tok(text)["input_ids"]
    assert [student_tok.decode([i]) for i in ours] == [" 47", " +", " 38", "5"]
    assert token_ends(student_tok, ours) == [3, 5, 8, 9]
    assert token_ends(teacher_tok, theirs) == [2, 3, 5, 7, 8, 9]  # " 4" "7" " +" " 3" "8" "5"
    assert pair_tokens(token_ends(student_tok, ours), token_ends(teacher_tok, theirs)) == (
        [0, 2, 3, 5],
        [False, True, False, True],
    )


def test_a_padded_batch_pairs_row_by_row_against_a_hand_reference(student_tok, teacher_tok):
    bridge = TokenizerBridge(student_tok, teacher_tok)
    prompt = student_tok("What is 7 + 5?\n", add_special_tokens=False)["input_ids"]
    first = student_tok("7+5=12 Answer: 12", add_special_tokens=False)["input_ids"] + [student_tok.eos_token_id]
    second = student_tok("7+5=1", add_special_tokens=False)["input_ids"]  # cut short: no end of response
    assert [student_tok.decode([i]) for i in first[:-1]] == ["7", "+", "5", "=", "12", " Answer", ":", " 12"]
    batch = sequence_batch([prompt, prompt], [first, second], student_tok.pad_token_id)
    pairing = bridge.pair(batch)
    teacher_labels = pairing.teacher_batch["labels"]
    rows = [[teacher_tok.decode([int(i)]) for i in row[row != IGNORE_INDEX]] for row in teacher_labels]
    assert rows[0] == ["7", "+", "5", "=", "1", "2", " Answer", ":", " 1", "2", "<eos>"]
    assert rows[1] == ["7", "+", "5", "=", "1"]
    # row 0: "12" -> teacher "1" (4), " 12" -> " 1" (8), <eos> -> <eos> (10); row 1 starts at teacher position 11
    assert pairing.partner.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 10, 11, 12, 13, 14, 15]
    assert pairing.same.tolist() == [True] * 4 + [False, True, True, False, True] + [True] * 5
    # the teacher's prompt is the same text in its own tokens; padding is the teacher's pad
    ids = pairing.teacher_batch["input_ids"][0].tolist()
    assert teacher_tok.decode(ids[: ids.index(teacher_tok("7", add_special_tokens=False)["input_ids"][0])]) == (
        "What is 7 + 5?\n"
    )
    assert pairing.teacher_batch["attention_mask"][1].sum() == len(bridge.teacher_prompt(prompt)) + 5


def test_teacher_positions_past_its_context_are_unpaired(student_tok, teacher_tok):
    prompt = student_tok("What is 7 + 5?\n", add_special_tokens=False)["input_ids"]
    response = student_tok("7+5=12", add_special_tokens=False)["input_ids"] + [student_tok.eos_token_id]
    teacher_prompt = TokenizerBridge(student_tok, teacher_tok).teacher_prompt(prompt)
    bridge = TokenizerBridge(student_tok, teacher_tok, max_length=len(teacher_prompt) + 3)
    pairing = bridge.pair(sequence_batch([prompt], [response], student_tok.pad_token_id))
    assert pairing.partner.tolist() == [0, 1, 2, -1, -1, -1]  # "7" "+" "5" kept; "=", "12" and <eos> cut
    assert pairing.teacher_batch["input_ids"].shape[1] == len(teacher_prompt) + 3


def test_completions_go_back_to_the_student_with_its_end_token(student_tok, teacher_tok):
    bridge = TokenizerBridge(student_tok, teacher_tok)
    written = teacher_tok("4+7=11 Answer: 11", add_special_tokens=False)["input_ids"]
    ids = bridge.to_student([*written, teacher_tok.eos_token_id])
    assert ids[-1] == student_tok.eos_token_id and student_tok.decode(ids[:-1]) == "4+7=11 Answer: 11"
    assert student_tok.eos_token_id not in bridge.to_student(written)  # a teacher that did not stop


def test_shared_tokens_spell_the_same_string_and_the_ends_pair(student_tok, teacher_tok):
    student_ids, teacher_ids = bridge_shared = TokenizerBridge(student_tok, teacher_tok).shared()
    pairs = dict(zip(student_ids.tolist(), teacher_ids.tolist()))
    assert pairs[student_tok.eos_token_id] == teacher_tok.eos_token_id
    for text in (" write", "+", " 4"):
        s, t = (tok(text, add_special_tokens=False)["input_ids"] for tok in (student_tok, teacher_tok))
        assert len(s) == len(t) == 1 and pairs[s[0]] == t[0]
    assert student_tok(" 47", add_special_tokens=False)["input_ids"][0] not in pairs  # the teacher has no " 47"
    assert len(bridge_shared[0]) == len(set(student_ids.tolist()))


def test_a_chat_rendered_student_prompt_must_be_known_and_a_chat_teacher_renders_plain_prompts(student_tok):
    teacher = build_tokenizer()
    teacher.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% endfor %}assistant:"
    bridge = TokenizerBridge(student_tok, teacher, teacher_chat=True)
    prompt = student_tok("What is 7 + 5?\n", add_special_tokens=False)["input_ids"]
    assert teacher.decode(bridge.teacher_prompt(prompt)) == "user: What is 7 + 5?\nassistant:"
    rendered = TokenizerBridge(student_tok, teacher, student_chat=True, prompts={(1, 2): [3]})
    assert rendered.teacher_prompt([1, 2]) == [3]
    with pytest.raises(DataError, match="chat template"):
        rendered.teacher_prompt(prompt)


def test_identical_tokenizers_pair_every_position_with_itself(teacher_tok):
    bridge = TokenizerBridge(teacher_tok, teacher_tok)
    prompt = teacher_tok("What is 17 + 5?\n", add_special_tokens=False)["input_ids"]
    response = teacher_tok("7+5=12, write 2 carry 1.", add_special_tokens=False)["input_ids"] + [2]
    batch = sequence_batch([prompt], [response], 0)
    pairing = bridge.pair(batch)
    assert pairing.partner.tolist() == list(range(len(response))) and bool(pairing.same.all())
    assert torch.equal(pairing.teacher_batch["input_ids"], batch["input_ids"])


def test_a_teacher_that_normalises_the_text_pairs_nothing_and_says_so_once(student_tok, caplog):
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast

    backend = build_tokenizer().backend_tokenizer
    backend.normalizer = normalizers.Lowercase()  # "Answer" comes back as "answer"
    teacher = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")
    bridge = TokenizerBridge(student_tok, teacher)
    prompt = student_tok("What is 7 + 5?\n", add_special_tokens=False)["input_ids"]
    clean = student_tok("7+5=12", add_special_tokens=False)["input_ids"] + [student_tok.eos_token_id]
    shouting = student_tok("Answer: 12", add_special_tokens=False)["input_ids"] + [student_tok.eos_token_id]
    with caplog.at_level("WARNING", logger="distill.data.alignment"):
        pairing = bridge.pair(sequence_batch([prompt, prompt, prompt], [clean, shouting, shouting], 0))
    assert pairing.partner.tolist()[: len(clean)] == [0, 1, 2, 3, 4, 6]  # already lower case: paired ("12": "1" "2")
    assert pairing.partner.tolist()[len(clean) :] == [-1] * (2 * len(shouting))
    assert bridge.unpaired_rows == 2 and caplog.text.count("does not give back the response text") == 1
