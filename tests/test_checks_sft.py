"""Chapter 13's checks: each passes the reference and the code of solutions/13_instruction.ipynb, accepts other
right ways to write it, and rejects wrong implementations written the way learners write them, with the right
hint where the mistake is a known one. The probes of sft.rouge_l agree with Google's rouge_score, so the check
judges against the real metric. The exercise notebook, unsolved, runs to the end saying "not implemented yet"."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import torch

from _checks import assert_chapter, assert_unsolved_runs, rejects, solution_namespace
from llmlab.checks import check, get_exercise, load_all
from llmlab.checks.sft import F1_PAIRS, F1_PAIRS_2, RL_PAIRS, RL_PAIRS_2

load_all()
IDS = ["sft.build_example", "sft.collate", "sft.token_f1", "sft.rouge_l"]


def test_chapter_contract():
    assert_chapter(IDS, "13_instruction.ipynb")


def test_solutions_pass():
    ns = solution_namespace("13_instruction.ipynb")
    for eid in IDS:
        assert check(eid, ns[eid.split(".", 1)[1]], quiet=True)


def test_unsolved_exercise_notebook_runs_to_the_end_saying_not_implemented_yet(capsys):
    assert_unsolved_runs(IDS, "13_instruction.ipynb", capsys, after="the pieces together")


# ----------------------------------------------------------------------------- build_example
def build_loop(prompt_ids, response_ids, eos_id, mask_prompt=True):
    """Right, written as a loop over positions."""
    seq = [*prompt_ids, *response_ids, eos_id]
    inputs, labels = [], []
    for t in range(len(seq) - 1):
        inputs.append(seq[t])
        labels.append(-100 if mask_prompt and t < len(prompt_ids) - 1 else seq[t + 1])
    return torch.tensor(inputs), torch.tensor(labels)


def test_build_example_written_another_right_way_passes():
    assert check("sft.build_example", build_loop, quiet=True)


def test_build_example_rejects_labels_equal_to_inputs():
    def same(prompt_ids, response_ids, eos_id, mask_prompt=True):
        x, _ = build_loop(prompt_ids, response_ids, eos_id, mask_prompt)
        return x, x.clone()
    rejects("sft.build_example", same)


def test_build_example_rejects_float_labels():
    def floats(prompt_ids, response_ids, eos_id, mask_prompt=True):
        x, y = build_loop(prompt_ids, response_ids, eos_id, mask_prompt)
        return x, y.float()
    rejects("sft.build_example", floats, "integer ids")


def test_build_example_rejects_masking_the_response_instead():
    def masks_response(prompt_ids, response_ids, eos_id, mask_prompt=True):
        x, y = build_loop(prompt_ids, response_ids, eos_id, False)
        if mask_prompt:
            y[len(prompt_ids) - 1 : -1] = -100
        return x, y
    rejects("sft.build_example", masks_response)


# ----------------------------------------------------------------------------- collate
def collate_pad_sequence(examples, pad_id):
    """Right, with torch.nn.utils.rnn.pad_sequence."""
    from torch.nn.utils.rnn import pad_sequence

    xs, ys = [x for x, _ in examples], [y for _, y in examples]
    lengths = torch.tensor([len(x) for x in xs])
    inputs = pad_sequence(xs, batch_first=True, padding_value=pad_id)
    labels = pad_sequence(ys, batch_first=True, padding_value=-100)
    is_token = torch.arange(inputs.size(1))[None, :] < lengths[:, None]
    return inputs, labels, is_token


def test_collate_written_another_right_way_passes():
    assert check("sft.collate", collate_pad_sequence, quiet=True)


def test_collate_rejects_an_int_mask_and_padding_to_a_fixed_length():
    def int_mask(examples, pad_id):
        x, y, m = collate_pad_sequence(examples, pad_id)
        return x, y, m.long()
    rejects("sft.collate", int_mask, "BoolTensor")

    def fixed(examples, pad_id):
        x, y, m = collate_pad_sequence(examples + [(torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long))], pad_id)
        return x[:-1], y[:-1], m[:-1]
    rejects("sft.collate", fixed)


# ----------------------------------------------------------------------------- scores
def f1_squad_style(pred, gold):
    """Right, as SQuAD's official evaluate-v1.1.py writes it."""
    import string

    def normalize(s):
        s = s.lower()
        s = "".join(ch for ch in s if ch not in set(string.punctuation))
        s = re.sub(r"\b(a|an|the)\b", " ", s)
        return " ".join(s.split())
    p, g = normalize(pred).split(), normalize(gold).split()
    if len(p) == 0 or len(g) == 0:
        return float(p == g)
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0
    precision, recall = same / len(p), same / len(g)
    return (2 * precision * recall) / (precision + recall)


def test_token_f1_written_another_right_way_passes():
    assert check("sft.token_f1", f1_squad_style, quiet=True)


def test_token_f1_rejects_not_removing_articles_when_a_set_of_words():
    def jaccard(pred, gold):
        p, g = set(pred.lower().split()), set(gold.lower().split())
        return len(p & g) / max(1, len(p | g))
    rejects("sft.token_f1", jaccard)


@pytest.mark.parametrize("pairs", [RL_PAIRS, RL_PAIRS_2])
def test_rouge_l_probes_agree_with_rouge_score(pairs):
    """The check's expected values are rouge_score's own (1e-12: both divide the same integers)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    ref = get_exercise("sft.rouge_l").reference
    for pred, gold in pairs:
        assert ref(pred, gold) == pytest.approx(scorer.score(gold, pred)["rougeL"].fmeasure, abs=1e-12)


def test_rouge_l_with_rouge_score_itself_passes():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    assert check("sft.rouge_l", lambda pred, ref: scorer.score(ref, pred)["rougeL"].fmeasure, quiet=True)


def test_rouge_l_rejects_lcs_over_characters():
    def chars(pred, ref):
        p, r = pred.lower(), ref.lower()
        if not p or not r:
            return 0.0
        row = [0] * (len(r) + 1)
        for x in p:
            diag = 0
            for j, y in enumerate(r, 1):
                diag, row[j] = row[j], diag + 1 if x == y else max(row[j], row[j - 1])
        lcs = row[-1]
        return 0.0 if lcs == 0 else 2 * lcs / (len(p) + len(r))
    rejects("sft.rouge_l", chars)


def test_each_score_mistake_moves_a_score_by_more_than_0_05():
    """The tolerance is 1e-9; every known mistake is off by far more somewhere on the probes."""
    for eid, banks in (("sft.token_f1", (F1_PAIRS, F1_PAIRS_2)), ("sft.rouge_l", (RL_PAIRS, RL_PAIRS_2))):
        ex = get_exercise(eid)
        pairs = [p for bank in banks for p in bank]
        for m in ex.mistakes:
            worst = max(abs(m.impl(a, b) - ex.reference(a, b)) for a, b in pairs)
            assert worst > 0.05, (eid, m.hint)
