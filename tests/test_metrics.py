"""Text metrics on strings whose scores can be checked by hand."""

import math

import pytest

from distill.inference.text_metrics import (
    answer_accuracy,
    bleu,
    chrf,
    exact_match,
    extract_answer,
    rouge_l,
    text_metrics,
)

SENTENCES = ["the cat sat on the mat today", "7+5=12, write 2 carry 1. Answer: 132"]


def test_identical_texts_score_perfectly():
    m = text_metrics(SENTENCES, SENTENCES)
    assert m["bleu"] == pytest.approx(100.0)
    assert m["chrf"] == pytest.approx(100.0)
    assert m["rougeL"] == pytest.approx(1.0)
    assert m["exact_match"] == 1.0


def test_disjoint_texts_score_about_zero():
    m = text_metrics(["alpha beta gamma delta epsilon"], ["zulu yankee xray whiskey victor"])
    assert m["bleu"] == pytest.approx(0.0)
    assert m["rougeL"] == 0.0 and m["exact_match"] == 0.0
    assert m["chrf"] < 10.0  # a few shared characters ("a", "e") are all chrF can find


def test_partial_overlap_by_hand():
    # n-gram precisions 3/4, 1/3, 0/2, 0/1; sacrebleu's exp smoothing turns the k-th zero into
    # 1 / (2^k * count): 1/4 and 1/4. Same length, so no brevity penalty:
    # BLEU = 100 * (3/4 * 1/3 * 1/4 * 1/4) ** (1/4) = 100 / sqrt(8).
    assert bleu(["a b c d"], ["a b x d"]) == pytest.approx(100 / math.sqrt(8))
    # longest common subsequence "a b d": precision = recall = 3/4
    assert rouge_l(["a b c d"], ["a b x d"]) == pytest.approx(0.75)
    # LCS 5 of 6 words each way
    assert rouge_l(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(5 / 6)
    assert 0.0 < chrf(["the cat sat on the mat"], ["the cat sat on a mat"]) < 100.0


def test_brevity_penalty_lowers_bleu():
    ref = ["one two three four five six seven eight"]
    assert bleu(["one two three four"], ref) == pytest.approx(100 * math.exp(1 - 8 / 4))


def test_rouge_l_is_a_mean_over_pairs_and_identity_counts_without_tokens():
    assert rouge_l(["a b c d", "x y"], ["a b x d", "p q"]) == pytest.approx((0.75 + 0.0) / 2)
    assert rouge_l(["+ = ;", "+"], ["+ = ;", "-"]) == pytest.approx(0.5)  # no letters or digits: only identity scores


def test_exact_match_strips_outer_whitespace_only():
    assert exact_match([" Answer: 5\n", "Answer: 5"], ["Answer: 5", "answer: 5"]) == 0.5


def test_prefix_and_length_check():
    assert set(text_metrics(["a"], ["a"], prefix="agreement_")) == {
        "agreement_bleu",
        "agreement_chrf",
        "agreement_rougeL",
        "agreement_exact_match",
    }
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        bleu(["a", "b"], ["a"])
    assert text_metrics([], []) == {"bleu": 0.0, "chrf": 0.0, "rougeL": 0.0, "exact_match": 0.0}


def test_answer_accuracy_reads_the_last_number():
    assert extract_answer("3+4=7, write 7 carry 0. Answer: 1,007") == "1007"
    assert extract_answer("no number") is None
    assert answer_accuracy(["so the answer is: 432", "Answer: 431", "none"], ["432", "432", "1"]) == pytest.approx(
        1 / 3
    )
