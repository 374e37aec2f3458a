"""`generation.sample_generate` and `generation.cached_attention_step`: their references are what the
task text says (an oracle each), other right forms pass, and wrong implementations written the way
learners write them (not copies of the checks' `Mistake`s) are rejected, with the right hint where the
mistake is a known one; on fresh seeds too, as the grader draws them. Plus the written questions of
solutions 01-08: stripped from exercises/, never read by the grader; and every exercise heading's points."""

from __future__ import annotations

import math
import re
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from _checks import rejects
from llmlab import course
from llmlab.checks import REGISTRY, check, evaluate, get_exercise, load_all
from llmlab.checks.generation import cached_attention_reference, sample_reference
from llmlab.checks.modules import build_model
from llmlab.generate.sampling import generate

load_all()
ROOT = Path(__file__).resolve().parent.parent
SAMPLE, STEP = "generation.sample_generate", "generation.cached_attention_step"


# ----------------------------------------------------------------------------- the references are what the text says
def test_cached_steps_from_an_empty_cache_are_causal_attention_row_by_row():
    """The oracle: the reference, stepped token by token from an empty cache, gives every row of
    F.scaled_dot_product_attention(is_causal=True) over the whole sequence, and grows the cache to k, v."""
    g = torch.Generator().manual_seed(0)
    B, H, T, D = 2, 3, 7, 5
    q, k, v = (torch.randn(B, H, T, D, generator=g) for _ in range(3))
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
    k_cache, v_cache, rows = k[:, :, :0], v[:, :, :0], []
    for t in range(T):
        y, k_cache, v_cache = cached_attention_reference(q[:, :, t : t + 1], k[:, :, t : t + 1], v[:, :, t : t + 1], k_cache, v_cache)
        rows.append(y)
    # float32 sums in another order (fused kernel vs matmul): ~1e-7 on O(1) values
    torch.testing.assert_close(torch.cat(rows, dim=2), full, atol=1e-6, rtol=1e-5)
    assert torch.equal(k_cache, k) and torch.equal(v_cache, v)


def test_the_cached_step_with_an_empty_cache_returns_the_new_value():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 1, 4, generator=g) for _ in range(3))
    y, kc, vc = cached_attention_reference(q, k, v, k[:, :, :0], v[:, :, :0])
    assert torch.equal(y, v) and torch.equal(kc, k) and torch.equal(vc, v)  # one key: weight exactly 1


def _spec_and_prompt(seed=0, B=2, T=5):
    ex = get_exercise(SAMPLE)
    spec, *_ = ex.probes[1].inputs(torch.Generator().manual_seed(seed))
    return spec, torch.randint(13, (B, T), generator=torch.Generator().manual_seed(seed + 1))


def _solution(model, idx, max_new_tokens, temperature, generator):
    """The task text, step for step (as solutions/08_generation.ipynb)."""
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.config.block_size:])
        probs = F.softmax(logits[:, -1, :] / temperature, dim=-1)
        idx = torch.cat([idx, torch.multinomial(probs, num_samples=1, generator=generator)], dim=1)
    return idx


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sample_reference_is_the_loop_the_text_describes(temperature):
    spec, idx = _spec_and_prompt()
    model = build_model(spec)
    with torch.no_grad():
        a = sample_reference(model, idx, 12, temperature, torch.Generator().manual_seed(5))  # grows past block_size 8
        b = _solution(model, idx, 12, temperature, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == (2, 17)


def test_sample_reference_depends_on_the_seed_and_on_nothing_else():
    spec, idx = _spec_and_prompt()
    model = build_model(spec)
    with torch.no_grad():
        a = sample_reference(model, idx, 10, 1.0, torch.Generator().manual_seed(1))
        torch.manual_seed(123)  # the global state is not used
        b = sample_reference(model, idx, 10, 1.0, torch.Generator().manual_seed(1))
        c = sample_reference(model, idx, 10, 1.0, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_check_leaves_the_notebooks_global_random_state_alone():
    def uses_the_global_rng(model, idx, n, temperature, generator):
        for _ in range(n):
            p = F.softmax(model(idx[:, -model.config.block_size:])[0][:, -1] / temperature, -1)
            idx = torch.cat([idx, torch.multinomial(p, 1)], 1)
        return idx

    torch.manual_seed(7)
    before = torch.get_rng_state()
    with pytest.raises(AssertionError):
        check(SAMPLE, uses_the_global_rng, quiet=True)
    assert check("generation.greedy_generate", get_exercise("generation.greedy_generate").reference, quiet=True)  # builds models too
    assert torch.equal(torch.get_rng_state(), before)


# ----------------------------------------------------------------------------- sample_generate: other right forms pass
def test_sample_generate_written_other_ways_passes():
    def preallocated_per_row_float64(model, idx, max_new_tokens, temperature, generator):
        B, T0 = idx.shape
        out = torch.empty(B, T0 + max_new_tokens, dtype=torch.long)
        out[:, :T0] = idx
        for t in range(T0, T0 + max_new_tokens):
            z = model(out[:, max(0, t - model.config.block_size) : t])[0][:, -1].double() * (1 / temperature)
            p = torch.softmax(z, dim=-1)
            out[:, t] = torch.cat([p[b].multinomial(1, generator=generator) for b in range(B)])  # row by row: the same draws
        return out

    assert check(SAMPLE, preallocated_per_row_float64, quiet=True)
    assert check(SAMPLE, _solution, quiet=True)


def test_sample_generate_with_a_kv_cache_passes():
    assert check(SAMPLE, lambda m, idx, n, t, g: generate(m, idx, n, temperature=t, use_cache=True, generator=g), quiet=True)


# ----------------------------------------------------------------------------- sample_generate: wrong ones fail
def _loop(step, crop=True):
    """A learner's loop around `step(last_logits[B, V], temperature, generator) -> next ids [B, 1]`."""
    def sample_generate(model, idx, max_new_tokens, temperature, generator):
        for _ in range(max_new_tokens):
            ctx = idx[:, -model.config.block_size:] if crop else idx
            idx = torch.cat([idx, step(model(ctx)[0][:, -1, :], temperature, generator)], dim=1)
        return idx
    return sample_generate


def test_multiplying_by_the_temperature_is_rejected():
    rejects(SAMPLE, _loop(lambda z, t, g: torch.multinomial(F.softmax(z * t, -1), 1, generator=g)), hint="divide the logits by the temperature")


def test_dividing_the_probabilities_by_the_temperature_is_rejected():
    rejects(SAMPLE, _loop(lambda z, t, g: torch.multinomial(F.softmax(z, -1) / t, 1, generator=g)), hint="has no effect")


def test_ignoring_the_temperature_is_rejected():
    rejects(SAMPLE, _loop(lambda z, t, g: torch.multinomial(F.softmax(z, -1), 1, generator=g)), hint="has no effect")


def test_softmax_over_the_batch_is_rejected():
    rejects(SAMPLE, _loop(lambda z, t, g: torch.multinomial(F.softmax(z / t, dim=0), 1, generator=g)), hint="over the vocabulary")


def test_softmax_over_the_time_axis_is_rejected():
    def sample_generate(model, idx, max_new_tokens, temperature, generator):
        for _ in range(max_new_tokens):
            logits, _ = model(idx[:, -model.config.block_size:])  # (B, T, V)
            probs = F.softmax(logits / temperature, dim=1)[:, -1]  # normalised over positions, not tokens
            idx = torch.cat([idx, torch.multinomial(probs, 1, generator=generator)], dim=1)
        return idx
    rejects(SAMPLE, sample_generate)


def test_reading_the_first_position_is_rejected():
    def sample_generate(model, idx, max_new_tokens, temperature, generator):
        for _ in range(max_new_tokens):
            logits, _ = model(idx[:, -model.config.block_size:])
            idx = torch.cat([idx, torch.multinomial(F.softmax(logits[:, 0] / temperature, -1), 1, generator=generator)], dim=1)
        return idx
    rejects(SAMPLE, sample_generate, hint="logits of the *last* position")


def test_not_cropping_the_context_is_rejected():
    e = rejects(SAMPLE, _loop(lambda z, t, g: torch.multinomial(F.softmax(z / t, -1), 1, generator=g), crop=False),
                hint="crop the context to the model's block_size")
    assert "your code raised ValueError" in e.message and "block_size" in e.message


def test_keeping_the_first_tokens_of_a_long_context_is_rejected():
    def sample_generate(model, idx, max_new_tokens, temperature, generator):
        for _ in range(max_new_tokens):
            logits, _ = model(idx[:, : model.config.block_size])
            idx = torch.cat([idx, torch.multinomial(F.softmax(logits[:, -1] / temperature, -1), 1, generator=generator)], dim=1)
        return idx
    rejects(SAMPLE, sample_generate, hint="crop to the *last* block_size tokens")


def test_argmax_instead_of_sampling_is_rejected():
    rejects(SAMPLE, _loop(lambda z, t, g: (z / t).argmax(-1, keepdim=True)), hint="don't take the argmax")


def test_the_global_random_state_instead_of_the_generator_is_rejected():
    rejects(SAMPLE, _loop(lambda z, t, g: torch.multinomial(F.softmax(z / t, -1), 1)), hint="pass the generator on")


def test_a_generator_of_its_own_is_rejected():
    mine = torch.Generator()

    def step(z, t, g):
        return torch.multinomial(F.softmax(z / t, -1), 1, generator=mine)

    def sample_generate(model, idx, max_new_tokens, temperature, generator):
        mine.manual_seed(1234)  # "for reproducibility"
        return _loop(step)(model, idx, max_new_tokens, temperature, generator)

    e = rejects(SAMPLE, sample_generate, hint="pass it to every draw")
    assert e.probe == "draws with the generator it is given: two seeds, two samples" and "gave the same tokens" in e.message


def test_reseeding_the_callers_generator_is_rejected():
    def sample_generate(model, idx, max_new_tokens, temperature, generator):
        generator.manual_seed(0)
        return _loop(lambda z, t, g: torch.multinomial(F.softmax(z / t, -1), 1, generator=g))(model, idx, max_new_tokens, temperature, generator)
    rejects(SAMPLE, sample_generate, hint="pass it to every draw")


def test_an_extra_draw_from_the_generator_is_rejected():
    """The text: one multinomial per step and nothing else from `generator` (the draws must line up)."""
    def step(z, t, g):
        torch.rand(1, generator=g)  # e.g. a coin for "exploration"
        return torch.multinomial(F.softmax(z / t, -1), 1, generator=g)
    rejects(SAMPLE, _loop(step))


def test_the_gumbel_max_trick_is_rejected_since_the_text_asks_for_multinomial():
    """A correct sampler, but other draws than the ones the text prescribes: the same seed gives another text."""
    def step(z, t, g):
        u = torch.rand(z.shape, generator=g).clamp_min(1e-20)
        return (z / t - torch.log(-torch.log(u))).argmax(-1, keepdim=True)
    rejects(SAMPLE, _loop(step))


def test_forgetting_to_assign_the_concatenation_is_rejected():
    def sample_generate(model, idx, max_new_tokens, temperature, generator):
        for _ in range(max_new_tokens):
            logits, _ = model(idx[:, -model.config.block_size:])
            torch.cat([idx, torch.multinomial(F.softmax(logits[:, -1] / temperature, -1), 1, generator=generator)], dim=1)
        return idx
    rejects(SAMPLE, sample_generate, hint="append each new token")


def test_predicting_every_token_from_the_prompt_is_rejected():
    def sample_generate(model, idx, max_new_tokens, temperature, generator):
        new = []
        for _ in range(max_new_tokens):
            logits, _ = model(idx[:, -model.config.block_size:])  # idx never grows
            new.append(torch.multinomial(F.softmax(logits[:, -1] / temperature, -1), 1, generator=generator))
        return torch.cat([idx, *new], dim=1)
    rejects(SAMPLE, sample_generate, hint="feed the grown sequence back in")


def test_returning_only_the_new_tokens_is_rejected():
    def sample_generate(model, idx, max_new_tokens, temperature, generator):
        T0 = idx.size(1)
        return _loop(lambda z, t, g: torch.multinomial(F.softmax(z / t, -1), 1, generator=g))(model, idx, max_new_tokens, temperature, generator)[:, T0:]
    rejects(SAMPLE, sample_generate, hint="the prompt followed by the new tokens")


# ----------------------------------------------------------------------------- cached_attention_step: right forms pass
def test_cached_attention_step_written_other_ways_passes():
    def with_einsum(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat((k_cache, k_new), dim=-2), torch.cat((v_cache, v_new), dim=-2)
        w = F.softmax(torch.einsum("bhqd,bhkd->bhqk", q, k) * q.shape[-1] ** -0.5, dim=-1)
        return torch.einsum("bhqk,bhkd->bhqd", w, v), k, v

    def with_the_right_causal_mask(q, k_new, v_new, k_cache, v_cache):  # the offset mask allows every key: harmless
        k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
        Tq, Tk = q.size(2), k.size(2)
        s = (q @ k.mT) / math.sqrt(q.size(-1))
        s = s.masked_fill(~torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq), float("-inf"))
        return s.softmax(-1) @ v, k, v

    assert check(STEP, with_einsum, quiet=True)
    assert check(STEP, with_the_right_causal_mask, quiet=True)


# ----------------------------------------------------------------------------- cached_attention_step: wrong ones fail
def _attend(q, k, v, scale=None, dim=-1):
    s = q @ k.transpose(-2, -1) / (math.sqrt(q.size(-1)) if scale is None else scale)
    return torch.softmax(s, dim=dim) @ v


def test_concatenating_on_the_head_axis_is_rejected():
    def cached_attention_step(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat([k_cache, k_new], dim=1), torch.cat([v_cache, v_new], dim=1)
        return _attend(q, k, v), k, v
    e = rejects(STEP, cached_attention_step, hint="append along the time axis, dim=2")
    assert e.message.startswith("your code raised RuntimeError")


def test_concatenating_on_the_channel_axis_is_rejected():
    def cached_attention_step(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat([k_cache, k_new], dim=-1), torch.cat([v_cache, v_new], dim=-1)
        return _attend(q, k, v), k, v
    rejects(STEP, cached_attention_step, hint="append along the time axis, dim=2")


def test_no_scaling_is_rejected():
    def cached_attention_step(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
        return torch.softmax(q @ k.transpose(2, 3), dim=-1) @ v, k, v
    rejects(STEP, cached_attention_step, hint="divide the scores by sqrt(D)")


def test_scaling_by_the_number_of_keys_is_rejected():
    def cached_attention_step(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
        return _attend(q, k, v, scale=math.sqrt(k.size(2))), k, v
    rejects(STEP, cached_attention_step)


def test_the_square_causal_mask_is_rejected():
    def cached_attention_step(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
        Tq, Tk = q.size(2), k.size(2)
        s = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
        s = s.masked_fill(torch.ones(Tq, Tk, dtype=torch.bool).tril() == 0, float("-inf"))  # chapter 03's mask, unshifted
        return F.softmax(s, dim=-1) @ v, k, v
    rejects(STEP, cached_attention_step, hint="no mask is needed")


def test_attending_before_appending_is_rejected():
    def cached_attention_step(q, k_new, v_new, k_cache, v_cache):
        y = _attend(q, k_cache, v_cache)
        return y, torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
    rejects(STEP, cached_attention_step, hint="append first, then attend")


def test_returning_the_old_cache_is_rejected():
    def cached_attention_step(q, k_new, v_new, k_cache, v_cache):
        return _attend(q, torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)), k_cache, v_cache
    rejects(STEP, cached_attention_step, hint="return the grown caches")


def test_softmax_over_the_query_axis_is_rejected():
    def cached_attention_step(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
        return _attend(q, k, v, dim=2), k, v
    rejects(STEP, cached_attention_step, hint="softmax over the keys")


def test_prepending_the_new_token_is_rejected():
    def cached_attention_step(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat([k_new, k_cache], 2), torch.cat([v_new, v_cache], 2)
        return _attend(q, k, v), k, v
    rejects(STEP, cached_attention_step, hint="go at the end of the cache")


def test_swapping_keys_and_values_in_the_cache_is_rejected():
    def cached_attention_step(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat([k_cache, v_new], 2), torch.cat([v_cache, k_new], 2)
        return _attend(q, k, v), k, v
    rejects(STEP, cached_attention_step)


def test_returning_a_list_is_fine_but_a_dict_is_rejected():
    def as_dict(q, k_new, v_new, k_cache, v_cache):
        k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)
        return {"y": _attend(q, k, v), "k": k, "v": v}
    e = rejects(STEP, as_dict)
    assert "expected a tuple of three tensors (y, k_cache, v_cache)" in e.message


# ----------------------------------------------------------------------------- fresh seeds, as the grader draws them
@pytest.mark.slow
@pytest.mark.parametrize("eid", [SAMPLE, STEP])
def test_on_fresh_seeds_right_passes_and_every_known_mistake_is_caught(eid):
    """The grader seeds every probe afresh: the reference must pass and each known mistake be caught
    (with its own hint) on any seed, not only on check()'s seed 0."""
    ex = REGISTRY[eid]
    seeds = (11, 2026, 90210) if eid == SAMPLE else range(1, 31)
    for seed in seeds:
        assert all(v.passed for v in evaluate(ex, ex.reference, seed)), (eid, seed)
        for m in ex.mistakes:
            failed = [v for v in evaluate(ex, m.impl, seed) if not v.passed]
            assert failed and failed[0].hint == m.hint, (eid, seed, m.hint)


@pytest.mark.slow
def test_the_grader_grades_sample_generate_with_a_generator_built_in_the_sandbox(tmp_path):
    """A torch.Generator is not plain data: the grader sends a seed, the sandbox builds the generator."""
    from llmlab.grading import Grader, Limits
    from llmlab.grading.collect import Submission

    right = "import torch\nimport torch.nn.functional as F\n" + _source_of_solution()
    forgot = right.replace("generator=generator)", ")")
    assert forgot != right
    ids = [SAMPLE, STEP]
    step = ("import math, torch\ndef cached_attention_step(q, k_new, v_new, k_cache, v_cache):\n"
            "    k, v = torch.cat([k_cache, k_new], 2), torch.cat([v_cache, v_new], 2)\n"
            "    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), -1) @ v, k, v\n")
    grader = Grader(ids, seed=5, limits=Limits(cell_timeout=10.0, submission_timeout=120.0, memory_mb=1536))
    results = {}
    for name, cells in {"right": [right, step], "forgot": [forgot]}.items():
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nbformat.write(nb, str(tmp_path / f"{name}.ipynb"))
        results[name] = grader.grade_submission(Submission(name, f"{name}.ipynb", tmp_path / f"{name}.ipynb"), tmp_path).exercises
    for eid in ids:
        r = results["right"][eid]
        assert r.score == r.max_score == 2.0, [v.text() for v in r.probes]
    failed = [v for v in results["forgot"][SAMPLE].probes if not v.passed]
    assert failed and failed[0].hint == next(m.hint for m in REGISTRY[SAMPLE].mistakes if "pass the generator on" in m.hint)


def _source_of_solution() -> str:
    nb = nbformat.read(str(ROOT / "solutions" / "08_generation.ipynb"), as_version=4)
    (src,) = [c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("def sample_generate(")]
    return src.split("\n\n\nwith torch.no_grad()")[0] + "\n"  # the function, without the check() call


# ----------------------------------------------------------------------------- the notebooks: points, written questions
LESSONS = [f"{p.stem}" for p in sorted((ROOT / "solutions").glob("0[1-8]_*.ipynb"))]


@pytest.mark.parametrize("stem", LESSONS)
def test_every_exercise_heading_shows_its_points(stem):
    nb = nbformat.read(str(ROOT / "solutions" / f"{stem}.ipynb"), as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for eid in nb.metadata["llmlab"]["exercises"]:
        name, points = REGISTRY[eid].name, REGISTRY[eid].points
        m = re.search(rf"^## \d+ · .*`{name}`.*\((\d+) points?\)", text, re.MULTILINE)
        assert m, f"{stem}: no '## N · `{name}` (P points)' heading"
        assert int(m.group(1)) == points, f"{stem}: the heading of {eid} says {m.group(1)} points, the registry {points}"


@pytest.mark.parametrize("stem", LESSONS)
def test_written_questions_have_model_answers_that_exercises_and_grader_never_see(stem):
    from llmlab.grading.collect import read_code_cells

    sol = nbformat.read(str(ROOT / "solutions" / f"{stem}.ipynb"), as_version=4)
    answers = [c.source for c in sol.cells if c.cell_type == "markdown" and c.source.startswith(course.MD_BEGIN)]
    assert answers and any("Questions to think about (not graded)" in c.source for c in sol.cells), f"{stem}: no written questions"
    ex_path = ROOT / "exercises" / f"{stem}.ipynb"
    ex_cells = nbformat.read(str(ex_path), as_version=4).cells
    ex_text = "\n".join(c.source for c in ex_cells)
    for a in answers:
        body = a.splitlines()[1]  # the answer's first line
        assert body not in ex_text, f"exercises/{stem}.ipynb shows a model answer: {body[:60]}"
    stubs = [c for c in ex_cells if c.cell_type == "markdown" and c.source == course.ANSWER_STUB]
    assert len(stubs) == len(answers)
    assert not any("Model answer" in src for src in read_code_cells(ROOT / "solutions" / f"{stem}.ipynb"))  # markdown: never graded
