"""Checks for chapter 12, transfer learning: `finetune.last_token_pool` (a causal model's sentence
vector, under right or left padding), `finetune.freeze_all_but` (which parameters train, by name
prefix, tied tensors once) and `finetune.wilson_interval` (the interval behind every accuracy).

Probes use every dimension different (B=3, T=6, C=5 and others). `freeze_all_but` is judged on small
course models built inside the probe from plain data (the grader sends probe inputs across its
sandbox): what comes back is the count, the names that require grad (under every name of a tied
tensor), and each module's `.training` flag, which freezing must not touch.
References: llmlab.nn.pooling.last_token_pool, llmlab.nn.freeze.freeze_all_but, llmlab.stats.wilson_interval.
"""

from __future__ import annotations

import math

import torch

from llmlab import stats as stats_ref
from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, describe, randn, register
from llmlab.models.classifier import ClassifierConfig, SequenceClassifier
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.nn import freeze as freeze_ref
from llmlab.nn import pooling as pooling_ref


# ----------------------------------------------------------------------------- last_token_pool
def _pool_inputs(B: int, T: int, C: int, lengths: list[int], side: str):
    def make(g):
        h = randn(g, B, T, C)
        is_token = torch.zeros(B, T, dtype=torch.bool)
        for b, n in enumerate(lengths):
            if side == "right":
                is_token[b, :n] = True
            else:
                is_token[b, T - n:] = True
        return h, is_token
    return make


def _last(kind: str):
    def last_token_pool(h, is_token):
        B, T = is_token.shape
        rows = torch.arange(B)
        if kind == "minus_one":
            return h[:, -1]
        if kind == "first":
            return h[:, 0]
        if kind == "mean_all":
            return h.mean(dim=1)
        if kind == "first_pad":  # one past the last real token under right padding
            return h[rows, is_token.sum(1)]
        if kind == "length_minus_one":  # right padding assumed
            return h[rows, is_token.sum(1) - 1]
        if kind == "mean_real":
            m = is_token.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1)
        raise AssertionError(kind)
    return last_token_pool


register(Exercise(
    id="finetune.last_token_pool",
    signature="last_token_pool(h: Tensor[B, T, C], is_token: BoolTensor[B, T]) -> Tensor[B, C]  # the hidden state of each row's "
              "last real token (the last True of is_token), for right or left padding",
    reference=pooling_ref.last_token_pool,
    points=1,
    probes=[
        Probe("h[3, 6, 5], right padding, lengths 4, 2, 5", _pool_inputs(3, 6, 5, [4, 2, 5], "right")),
        Probe("h[4, 5, 3], left padding, lengths 5, 3, 1, 2", _pool_inputs(4, 5, 3, [5, 3, 1, 2], "left")),
        Probe("h[2, 7, 6], right padding, lengths 7 and 3", _pool_inputs(2, 7, 6, [7, 3], "right")),
        Probe("h[2, 3, 4], no padding", _pool_inputs(2, 3, 4, [3, 3], "right")),
    ],
    mistakes=[
        Mistake("h[:, -1] is the last position, which under right padding is a pad: take each row's last True of is_token "
                "(e.g. torch.where(is_token, positions, -1).amax(1))", _last("minus_one")),
        Mistake("position 0 is the first token ([CLS] pooling); a causal model's summary of the sequence is its LAST real token",
                _last("first")),
        Mistake("a mean over all T positions includes the pads (and is mean pooling anyway): take the vector at each row's last real token",
                _last("mean_all")),
        Mistake("off by one: is_token.sum(1) is the number of real tokens, so under right padding it indexes the first pad; the last "
                "real token is one before (and under left padding it is elsewhere again)", _last("first_pad")),
        Mistake("is_token.sum(1) - 1 is right only under right padding; under left padding ([p p t t t]) the last real token is at T - 1: "
                "find the last True of each row instead", _last("length_minus_one")),
        Mistake("that is mean pooling over the real tokens (an encoder's sentence vector); here take the single vector at each row's "
                "last real token", _last("mean_real")),
    ],
))


# ----------------------------------------------------------------------------- freeze_all_but
def _model(spec: dict):
    torch.manual_seed(spec["seed"])
    kind, cfg = spec["kind"], dict(spec["cfg"])
    model = SequenceClassifier(ClassifierConfig(**cfg)) if kind == "classifier" else GPT(GPTConfig(**cfg))
    for name, p in model.named_parameters():
        if name.startswith(tuple(spec.get("frozen_before", ()))):
            p.requires_grad_(False)  # a model partly frozen already: matching parameters must be switched back on
    return model


def _freeze_inputs(kind: str, cfg: dict, trainable: list[str], frozen_before: tuple[str, ...] = ()):
    def make(g):
        return {"kind": kind, "cfg": cfg, "seed": int(torch.randint(1 << 20, (1,), generator=g)), "frozen_before": list(frozen_before)}, trainable
    return make


def _freeze_run(fn, spec, trainable):
    model = _model(spec)
    model.train()
    n = fn(model, list(trainable))
    names = sorted(name for name, p in model.named_parameters(remove_duplicate=False) if p.requires_grad)
    return {"count": n, "requires_grad": names, "training": [m.training for m in model.modules()]}


def _freeze_compare(got, expected, args):
    if not isinstance(got, dict):
        raise CheckFailed(f"unexpected output {describe(got)}")
    n = got["count"]
    if isinstance(n, bool) or not isinstance(n, int):
        raise CheckFailed(f"expected the number of trainable parameters as an int, got {describe(n)}")
    if got["training"] != expected["training"]:
        raise CheckFailed("your function changed some modules' .training flag (model.eval() / .train()); freezing is requires_grad only, "
                          "dropout and the mode of every module stay as they were")
    g, e = set(got["requires_grad"]), set(expected["requires_grad"])
    if g != e:
        extra, missing = sorted(g - e), sorted(e - g)
        raise CheckFailed(f"requires_grad is wrong for {len(extra) + len(missing)} parameter name(s) with trainable={args[1]!r}: "
                          + (f"trainable but should be frozen: {extra[:3]}; " if extra else "")
                          + (f"frozen but should train: {missing[:3]}" if missing else ""))
    if n != expected["count"]:
        raise CheckFailed(f"returned {n:,} trainable parameters, expected {expected['count']:,} (requires_grad itself is right)")


def _freezer(kind: str):
    def freeze_all_but(model, trainable):
        prefixes = tuple(trainable)
        if kind == "training_flag":  # "freezing" by eval mode
            for name, m in model.named_modules():
                if name and not name.startswith(prefixes):
                    m.eval()
            return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefixes))
        if kind == "last_prefix_wins":
            for name, p in model.named_parameters(remove_duplicate=False):
                for t in trainable:
                    p.requires_grad = name.startswith(t)
                if not trainable:
                    p.requires_grad = False
        elif kind == "exact_names":
            for name, p in model.named_parameters(remove_duplicate=False):
                p.requires_grad = name in trainable
        elif kind == "dedup_names":  # named_parameters() drops the second name of a tied tensor
            for name, p in model.named_parameters():
                p.requires_grad = name.startswith(prefixes)
        elif kind == "only_freezes":
            for name, p in model.named_parameters():
                if not name.startswith(prefixes):
                    p.requires_grad = False
        else:
            freeze_ref.freeze_all_but(model, list(trainable))
        if kind == "tied_twice":
            return sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False) if p.requires_grad)
        if kind == "counts_all":
            return sum(p.numel() for p in model.parameters())
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    return freeze_all_but


GPT_CFG = dict(vocab_size=23, block_size=9, n_layer=2, n_head=2, n_embd=12, tied=True, bias=True)
CLF_CFG = dict(vocab_size=17, block_size=11, n_layer=2, n_head=2, n_embd=10, n_classes=3)

register(Exercise(
    id="finetune.freeze_all_but",
    signature="freeze_all_but(model: nn.Module, trainable: list[str]) -> int  # requires_grad=False on every parameter whose name starts "
              "with none of the prefixes, True on the rest (a tied tensor trains if any of its names matches); returns the number of "
              "trainable parameters, a shared tensor counted once",
    reference=freeze_ref.freeze_all_but,
    points=2,
    probes=[
        Probe("GPT (2 blocks, tied), trainable=['transformer.h.1', 'transformer.ln_f']: the top block and the final norm",
              _freeze_inputs("gpt", GPT_CFG, ["transformer.h.1", "transformer.ln_f"]), run=_freeze_run, compare=_freeze_compare),
        Probe("classifier, already frozen everywhere, trainable=['transformer.ln_f', 'head']: switched back on",
              _freeze_inputs("classifier", CLF_CFG, ["transformer.ln_f", "head"], frozen_before=("",)), run=_freeze_run, compare=_freeze_compare),
        Probe("GPT (tied), trainable=['lm_head']: the output layer is the token embedding, one tensor under two names",
              _freeze_inputs("gpt", GPT_CFG, ["lm_head"]), run=_freeze_run, compare=_freeze_compare),
        Probe("GPT (tied), trainable=['transformer.wte', 'lm_head', 'transformer.h.0']: the tied tensor counted once",
              _freeze_inputs("gpt", GPT_CFG, ["transformer.wte", "lm_head", "transformer.h.0"]), run=_freeze_run, compare=_freeze_compare),
        Probe("classifier, trainable=[]: everything frozen, 0", _freeze_inputs("classifier", CLF_CFG, []), run=_freeze_run,
              compare=_freeze_compare),
    ],
    mistakes=[
        Mistake("model.eval() / .train() switch dropout, not training: a frozen parameter is one with requires_grad=False "
                "(p.requires_grad_(False)); leave every module's mode as it was", _freezer("training_flag")),
        Mistake("a tied tensor (lm_head.weight is transformer.wte.weight) is one tensor: count model.parameters(), which yields it "
                "once, not named_parameters(remove_duplicate=False)", _freezer("tied_twice")),
        Mistake("in `for t in trainable: p.requires_grad = name.startswith(t)` the last prefix overwrites the others (the final norm "
                "stays frozen): a parameter trains if ANY prefix matches, name.startswith(tuple(trainable))", _freezer("last_prefix_wins")),
        Mistake("the entries of `trainable` are name PREFIXES ('transformer.ln_f' covers transformer.ln_f.weight and .bias): "
                "use name.startswith(tuple(trainable)), not name in trainable", _freezer("exact_names")),
        Mistake("named_parameters() lists a tied tensor under its first name only (transformer.wte.weight), so a prefix of its second "
                "name (lm_head) never matches: decide on named_parameters(remove_duplicate=False)", _freezer("dedup_names")),
        Mistake("set requires_grad=True on the matching parameters too: the model may arrive partly frozen already", _freezer("only_freezes")),
        Mistake("return the number of TRAINABLE parameters (those with requires_grad), not all of them", _freezer("counts_all")),
    ],
))


# ----------------------------------------------------------------------------- wilson_interval
def _kn(k: int, n: int, z: float = 1.96):
    def make(g):
        return (k, n, z)
    return make


def _interval_compare(got, expected, args):
    if not isinstance(got, tuple) or len(got) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in got):
        raise CheckFailed(f"expected a tuple (low, high) of two floats, got {describe(got)}")
    k, n, z = args
    for name, g, e in zip(("low", "high"), got, expected):
        if not math.isfinite(g) or abs(g - e) > 1e-9:  # float64 arithmetic of a few operations: ~1e-16; every mistake is off by > 1e-3
            raise CheckFailed(f"{name} is {g:.6f} for k={k}, n={n}, z={z}; expected {e:.6f}")


def _wilson(kind: str):
    def wilson_interval(k, n, z=1.96):
        if kind == "fixed_z":
            z = 1.96
        p = k / n
        if kind == "normal":
            half = z * math.sqrt(p * (1 - p) / n)
            return max(0.0, p - half), min(1.0, p + half)
        denom = 1.0 if kind == "no_denominator" else 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        if kind == "n_not_squared":
            half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n)) / denom
        elif kind == "divide_by_n":
            half = z * math.sqrt(p * (1 - p) + z * z / (4 * n)) / n / denom
        else:
            half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        return max(0.0, centre - half), min(1.0, centre + half)
    return wilson_interval


register(Exercise(
    id="finetune.wilson_interval",
    signature="wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]  # the Wilson score interval for k successes "
              "in n trials",
    reference=stats_ref.wilson_interval,
    points=1,
    probes=[
        Probe("k=81, n=263 (Newcombe 1998: [0.2553, 0.3662])", _kn(81, 263), compare=_interval_compare),
        Probe("k=0, n=20: no successes still allows some", _kn(0, 20), compare=_interval_compare),
        Probe("k=37, n=37: every trial a success", _kn(37, 37), compare=_interval_compare),
        Probe("k=412, n=448, z=2.576 (99 %)", _kn(412, 448, 2.576), compare=_interval_compare),
        Probe("k=3, n=7, z=1.0", _kn(3, 7, 1.0), compare=_interval_compare),
    ],
    mistakes=[
        Mistake("that is the normal approximation p ± z·sqrt(p(1-p)/n), which collapses to a point at k = 0 and k = n; Wilson's centre is "
                "(p + z²/2n) / (1 + z²/n) and its half-width z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)", _wilson("normal")),
        Mistake("under the square root the second term is z² / (4 n²), n squared: p(1-p)/n + z²/(4n²)", _wilson("n_not_squared")),
        Mistake("the half-width divides by sqrt(n) (inside the root: p(1-p)/n), not by n outside it", _wilson("divide_by_n")),
        Mistake("both the centre and the half-width are divided by 1 + z²/n", _wilson("no_denominator")),
        Mistake("use the z you are given (2.576 for 99 %), not a fixed 1.96", _wilson("fixed_z")),
    ],
))
