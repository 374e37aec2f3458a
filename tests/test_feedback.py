"""One judge (llmlab.checks.feedback): the same learner code gets the same words from `check()` in
the notebook and from the grader's sandbox, on several exercises, for a known mistake (its hint),
an unknown wrong answer, and a crash (typed, with the line quoted); and the judge itself can fail."""

from __future__ import annotations

import re

import nbformat
import pytest
import torch

from llmlab.checks import CheckFailed, check, load_all
from llmlab.checks.core import REGISTRY, CodeRaised, Crash, clone_args, get_exercise, run_candidate
from llmlab.checks.feedback import Outcome, Verdict, judge
from llmlab.grading import Grader, Limits
from llmlab.grading.collect import Submission

load_all()

SOFTMAX_AXIS0 = """\
import torch
def softmax(x, dim=-1):
    e = (x - x.amax(dim, keepdim=True)).exp()
    return e / e.sum(dim=0, keepdim=True)
"""
SDPA_UNSCALED = """\
import torch
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v
"""
LAYER_NORM_CRASH = """\
import torch
def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps) * weight + bias.view(3, -1)
"""
MERGE_OFF_BY_ONE = """\
def merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out + [0]
"""
GREEDY_FIRST_POSITION = """\
import torch
def greedy_generate(model, idx, max_new_tokens):
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.config.block_size:])
        idx = torch.cat([idx, logits[:, 0].argmax(-1, keepdim=True)], dim=1)
    return idx
"""
CASES = [("generation.greedy_generate", GREEDY_FIRST_POSITION, "known"), ("attention.softmax", SOFTMAX_AXIS0, "known"),
         ("attention.scaled_dot_product_attention", SDPA_UNSCALED, "known"),
         ("block.layer_norm", LAYER_NORM_CRASH, "crash"), ("tokenization.merge", MERGE_OFF_BY_ONE, "unknown")]


def _in_process(eid: str, source: str, inputs: list[tuple], expected: list) -> list[Verdict]:
    """What check() does, on given inputs: run here, then judge."""
    import linecache

    linecache.cache["<cell 0>"] = (len(source), None, source.splitlines(True), "<cell 0>")  # as the sandbox does
    ns: dict = {}
    exec(compile(source, "<cell 0>", "exec"), ns)
    fn = ns[get_exercise(eid).name]
    cases = []
    for probe, args, exp in zip(get_exercise(eid).probes, inputs, expected):
        try:
            out = Outcome("value", run_candidate(probe, fn, args))
        except CodeRaised as c:
            out = Outcome("crash", crash=c.crash)
        cases.append((args, exp, out))
    return judge(get_exercise(eid), cases)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feedback")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for _, src, _ in CASES]
    nbformat.write(nb, str(tmp / "student.ipynb"))
    grader = Grader([eid for eid, _, _ in CASES], seed=2026, limits=Limits(cell_timeout=10.0, submission_timeout=120.0, memory_mb=1536))
    return grader, grader.grade_submission(Submission("student", "student.ipynb", tmp / "student.ipynb"), tmp)


@pytest.mark.slow
@pytest.mark.parametrize("eid, source, kind", CASES, ids=[c[0] for c in CASES])
def test_the_grader_and_check_say_the_same(graded, eid, source, kind):
    grader, result = graded
    from_grader = [v.text(eid) for v in result.exercises[eid].probes]
    # each cell of the notebook is its own <cell i>; in-process the source is cell 0: same lines within it
    here = [v.text(eid).replace("<cell 0>", "") for v in _in_process(eid, source, grader.inputs[eid], grader.expected[eid])]
    assert from_grader == here
    failed = [v for v in result.exercises[eid].probes if not v.passed]
    assert failed, f"{eid}: the wrong implementation passed every probe"
    hints = {m.hint for m in REGISTRY[eid].mistakes}
    if kind == "known":
        assert failed[0].hint in hints
    elif kind == "crash":
        assert failed[0].message.startswith("your code raised RuntimeError: ") and "(line 4: `return (x - mean)" in failed[0].message
    else:
        assert failed[0].hint not in hints
    # and check() in a notebook: the same first failing property, message kind and hint
    ns: dict = {}
    exec(compile(source, "<cell 0>", "exec"), ns)
    with pytest.raises(CheckFailed) as e:
        check(eid, ns[get_exercise(eid).name], quiet=True)
    assert e.value.probe == failed[0].name and e.value.hint == failed[0].hint
    numbers = re.compile(r"-?\d+(\.\d+)?(e-?\d+)?")  # the inputs differ (check() has its own seeds): the words do not
    assert numbers.sub("N", e.value.message) == numbers.sub("N", failed[0].message)


def test_judge_words_every_kind_of_outcome():
    ex = get_exercise("attention.softmax")
    args = ex.probes[0].inputs(torch.Generator().manual_seed(0))
    expected = ex.probes[0].run(ex.reference, *clone_args(args))
    n = len(ex.probes)
    outcomes = [Outcome("value", expected), Outcome("crash", crash=Crash("KeyError", "'x'", 3, "d['x']")), Outcome("stub"),
                Outcome("skipped", message="ran longer than the 3 s limit"), Outcome("failed", message="no c_attn"), Outcome("none")]
    cases = [(args, expected, outcomes[i % len(outcomes)]) for i in range(n)]
    v = judge(ex, cases)
    assert v[0].passed and not any(x.passed for x in v[1:6])
    assert v[1].message == "your code raised KeyError: 'x' (line 3: `d['x']`)"
    assert v[2].message == "not implemented yet (still raises NotImplementedError)"
    assert v[3].message == "your code ran longer than the 3 s limit"
    assert v[4].message == "no c_attn" and v[5].message == "no output came back for this case"
    with pytest.raises(ValueError, match="cases: expected one per probe"):
        judge(ex, cases[:1])
    with pytest.raises(ValueError, match="kind='oops'"):
        Outcome("oops")


def test_a_crash_is_a_type_and_survives_the_sandbox_boundary():
    c = Crash.from_dict({"type": "ValueError\x1b[31m", "message": "x" * 1000, "line": "7", "code": None})
    assert c.type == "ValueError[31m" and len(c.message) == 400 and c.line is None  # bounded, printable, typed
    assert Crash.from_dict(c.to_dict()) == c


GREEDY_RIGHT = """\
import torch
def greedy_generate(model, idx, max_new_tokens):
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits, _ = model(idx[:, -model.config.block_size:])
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx
"""


@pytest.mark.slow
def test_the_grader_grades_an_exercise_that_takes_a_model(tmp_path):
    """greedy_generate's argument is a GPT: the grader sends its config and weights as plain tensors,
    the sandbox builds the course's model from them, and the student's loop runs on it."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(GREEDY_RIGHT)]
    nbformat.write(nb, str(tmp_path / "right.ipynb"))
    grader = Grader(["generation.greedy_generate"], seed=7, limits=Limits(cell_timeout=10.0, submission_timeout=120.0, memory_mb=1536))
    spec = grader.inputs["generation.greedy_generate"][0][0]
    assert spec["class"] == "GPT" and all(type(t) is torch.Tensor for t in spec["state"].values())  # plain data, no pickle
    r = grader.grade_submission(Submission("right", "right.ipynb", tmp_path / "right.ipynb"), tmp_path).exercises["generation.greedy_generate"]
    assert r.score == r.max_score == 2.0 and all(v.passed for v in r.probes), [v.text() for v in r.probes]


BPE_WITH_A_BROKEN_MERGE = [
    "def get_pair_counts(ids):\n    counts = {}\n    for pair in zip(ids, ids[1:]):\n        counts[pair] = counts.get(pair, 0) + 1\n    return counts\n",
    "def merge(ids, pair, new_id):\n    return list(ids)  # forgot to merge\n",
    "def train_bpe(text, vocab_size):\n    ids, merges = list(text.encode('utf-8')), {}\n    for new_id in range(256, vocab_size):\n"
    "        counts = get_pair_counts(ids)\n        if not counts:\n            break\n        pair = max(counts, key=counts.get)\n"
    "        merges[pair] = new_id\n        ids = merge(ids, pair, new_id)\n    return merges\n",
    "def bpe_encode(text, merges):\n    ids = list(text.encode('utf-8'))\n    while len(ids) >= 2:\n"
    "        pair = min(get_pair_counts(ids), key=lambda p: merges.get(p, float('inf')))\n        if pair not in merges:\n            break\n"
    "        ids = merge(ids, pair, merges[pair])\n    return ids\n",
]


@pytest.mark.slow
def test_one_broken_helper_costs_that_exercise_only_in_the_grader(tmp_path):
    """Issue 11: train_bpe and bpe_encode call the student's merge; a bug there used to cost 6 of 7 points."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in BPE_WITH_A_BROKEN_MERGE]
    nbformat.write(nb, str(tmp_path / "bpe.ipynb"))
    ids = ["tokenization.get_pair_counts", "tokenization.merge", "tokenization.train_bpe", "tokenization.bpe_encode"]
    grader = Grader(ids, seed=11, limits=Limits(cell_timeout=10.0, submission_timeout=120.0, memory_mb=1536))
    res = grader.grade_submission(Submission("bpe", "bpe.ipynb", tmp_path / "bpe.ipynb"), tmp_path).exercises
    scores = {i: (res[i].score, res[i].max_score) for i in ids}
    assert scores["tokenization.get_pair_counts"] == (1.0, 1.0)
    assert scores["tokenization.merge"][0] < scores["tokenization.merge"][1]
    assert scores["tokenization.train_bpe"] == (3.0, 3.0) and scores["tokenization.bpe_encode"] == (2.0, 2.0), scores
