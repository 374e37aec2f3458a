"""Chapter 12's checks: each passes the reference and the code of solutions/12_transfer.ipynb, accepts
other right ways to write it, and rejects wrong implementations written the way learners write them,
with the right hint where the mistake is a known one. The exercise notebook, unsolved, runs to the
end saying "not implemented yet"."""

from __future__ import annotations

import math

import torch

from _checks import assert_chapter, assert_unsolved_runs, rejects
from llmlab.checks import check, load_all

load_all()
IDS = ["finetune.last_token_pool", "finetune.freeze_all_but", "finetune.wilson_interval"]


def test_chapter_contract():
    assert_chapter(IDS, "12_transfer.ipynb")


def test_unsolved_exercise_notebook_runs_to_the_end_saying_not_implemented_yet(capsys):
    assert_unsolved_runs(IDS, "12_transfer.ipynb", capsys, after="head-only trainable parameters")


# ----------------------------------------------------------------------------- last_token_pool
def test_last_token_pool_written_other_right_ways_passes():
    def with_a_loop(h, is_token):
        return torch.stack([h[b, is_token[b].nonzero()[-1, 0]] for b in range(h.size(0))])

    def with_flip(h, is_token):  # the first True of the reversed row
        T = is_token.size(1)
        last = T - 1 - is_token.flip(1).int().argmax(1)
        return h[torch.arange(h.size(0)), last]

    def with_gather(h, is_token):
        pos = torch.arange(is_token.size(1)).expand_as(is_token)
        last = (pos * is_token).amax(1)  # positions of real tokens, the largest (0 only if the row's one token is at 0)
        return h.gather(1, last[:, None, None].expand(-1, 1, h.size(2))).squeeze(1)
    for impl in (with_a_loop, with_flip, with_gather):
        assert check("finetune.last_token_pool", impl, quiet=True)


def test_last_token_pool_with_argmax_of_the_mask_is_rejected():
    # argmax of a bool row gives the FIRST True: the first real token under left padding, position 0 under right
    rejects("finetune.last_token_pool", lambda h, m: h[torch.arange(h.size(0)), m.int().argmax(1)])


def test_last_token_pool_that_returns_the_positions_is_rejected_by_shape():
    e = rejects("finetune.last_token_pool", lambda h, m: torch.where(m, torch.arange(m.size(1)), -1).amax(1).float())
    assert "shape" in e.message


# ----------------------------------------------------------------------------- freeze_all_but
def test_freeze_all_but_written_other_right_ways_passes():
    def by_ids(model, trainable):
        keep = {id(p) for n, p in model.named_parameters(remove_duplicate=False) if any(n.startswith(t) for t in trainable)}
        for p in model.parameters():
            p.requires_grad = id(p) in keep
        seen, total = set(), 0
        for p in model.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
        return total

    def two_passes(model, trainable):
        for p in model.parameters():
            p.requires_grad_(False)
        for n, p in model.named_parameters(remove_duplicate=False):
            if n.startswith(tuple(trainable)):
                p.requires_grad_(True)
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert check("finetune.freeze_all_but", by_ids, quiet=True)
    assert check("finetune.freeze_all_but", two_passes, quiet=True)


def test_freeze_all_but_returning_a_tensor_count_is_rejected_by_type():
    def freeze_all_but(model, trainable):
        from llmlab.nn.freeze import freeze_all_but as ref
        return torch.tensor(ref(model, trainable))
    e = rejects("finetune.freeze_all_but", freeze_all_but)
    assert "as an int" in e.message


def test_freeze_all_but_that_freezes_nothing_is_rejected():
    e = rejects("finetune.freeze_all_but", lambda model, trainable: sum(p.numel() for n, p in model.named_parameters() if n.startswith(tuple(trainable))))
    assert "trainable but should be frozen" in e.message


# ----------------------------------------------------------------------------- wilson_interval
def test_wilson_interval_written_other_right_ways_passes():
    def quadratic(k, n, z=1.96):  # the roots of (p - p̂)² = z² p (1 - p) / n
        ph = k / n
        a, b, c = 1 + z * z / n, -(2 * ph + z * z / n), ph * ph
        d = math.sqrt(b * b - 4 * a * c)
        return max(0.0, (-b - d) / (2 * a)), min(1.0, (-b + d) / (2 * a))

    def with_counts(k, n, z=1.96):  # Wilson's form in counts: (k + z²/2 ± z sqrt(k(n-k)/n + z²/4)) / (n + z²)
        centre, half = k + z * z / 2, z * math.sqrt(k * (n - k) / n + z * z / 4)
        return max(0.0, (centre - half) / (n + z * z)), min(1.0, (centre + half) / (n + z * z))
    assert check("finetune.wilson_interval", quadratic, quiet=True)
    assert check("finetune.wilson_interval", with_counts, quiet=True)


def test_wilson_interval_as_a_list_or_swapped_is_rejected():
    from llmlab.stats import wilson_interval as ref
    e = rejects("finetune.wilson_interval", lambda k, n, z=1.96: list(ref(k, n, z)))
    assert "expected a tuple (low, high)" in e.message
    rejects("finetune.wilson_interval", lambda k, n, z=1.96: ref(k, n, z)[::-1])


def test_wilson_interval_with_a_continuity_correction_is_rejected():
    def wilson_cc(k, n, z=1.96):  # Newcombe's method 4: a different (wider) interval
        p = k / n
        lo = 0.0 if k == 0 else (2 * n * p + z * z - 1 - z * math.sqrt(z * z - 2 - 1 / n + 4 * p * (n * (1 - p) + 1))) / (2 * (n + z * z))
        hi = 1.0 if k == n else (2 * n * p + z * z + 1 + z * math.sqrt(z * z + 2 - 1 / n + 4 * p * (n * (1 - p) - 1))) / (2 * (n + z * z))
        return max(0.0, lo), min(1.0, hi)
    rejects("finetune.wilson_interval", wilson_cc)
