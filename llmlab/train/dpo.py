"""Direct preference optimisation (Rafailov et al. 2023), lesson 16: the policy is its own reward model.

DPO starts from the same SFT model as RLHF (it stays frozen as the reference) and the same preference pairs,
and minimises, over pairs (x, y_chosen, y_rejected),

    loss = -log σ(β · [(log π(y_c|x) - log π_ref(y_c|x)) - (log π(y_r|x) - log π_ref(y_r|x))])

where log π(y|x) is the *sequence* log-probability: the sum over the response's tokens of the log-probability
of each token given what precedes it (the paper's and TRL's choice). β · (log π - log π_ref) is the implicit
reward of a response; the loss is the Bradley–Terry loss of lesson 15 on that reward, so no reward model is
trained and no sample is drawn while training.

    sequence_logprob      sum over response tokens (t >= 1, is_response[:, t]) of log p(ids[:, t] | ids[:, :t])
    mean_token_logprob    the same, divided by the number of response tokens (LLMs-from-scratch's choice)
    dpo_loss              (loss, chosen_rewards, rejected_rewards); the reference's values are constants
    reward_accuracy       fraction of pairs whose chosen reward is strictly greater (ties count as wrong)
    train_dpo / dpo_run   DPO on `preference.preference_pairs()` from `preference.sft_policy()`, measured
                          (gold-reward win rate against the reference's samples, KL, length, held-out accuracy)
                          and cached in the course cache, keyed by a hash of the recipe
    dpo_sweep             the runs of the lesson: β sweep and the per-token-average variant

Left out on purpose: the other losses of the DPO family (IPO, hinge, robust/cDPO label smoothing), reference-free
variants (SimPO, ORPO), iterative/online DPO (sampling new pairs from the policy), LoRA, and a learning-rate search
(one learning rate, fixed before the runs).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmlab.cache import cache_dir, write_atomic
from llmlab.device import fast_mode
from llmlab.stats import bootstrap_ci, wilson_interval
from llmlab.train import preference
from llmlab.train.preference import token_logprobs


def _check_shapes(logits: torch.Tensor, ids: torch.Tensor, is_response: torch.Tensor) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits: expected shape (B, T, V), got {tuple(logits.shape)}")
    if tuple(ids.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"ids: expected shape {tuple(logits.shape[:2])} (B, T of logits), got {tuple(ids.shape)}")
    if tuple(is_response.shape) != tuple(ids.shape) or is_response.dtype != torch.bool:
        raise ValueError(f"is_response: expected a bool tensor of shape {tuple(ids.shape)}, got {is_response.dtype} {tuple(is_response.shape)}")


def sequence_logprob(logits: torch.Tensor, ids: torch.Tensor, is_response: torch.Tensor) -> torch.Tensor:
    """log π(response | prompt) of each row: [B, T, V], [B, T], bool [B, T] -> [B].

    The sum over positions t >= 1 with is_response[:, t] of log softmax(logits[:, t-1])[ids[:, t]]: every
    response token scored given everything before it; prompt and padding contribute nothing."""
    _check_shapes(logits, ids, is_response)
    per_token = token_logprobs(logits, ids)  # (B, T-1): entry t-1 scores token t
    return (per_token * is_response[:, 1:]).sum(-1)  # (B,)


def mean_token_logprob(logits: torch.Tensor, ids: torch.Tensor, is_response: torch.Tensor) -> torch.Tensor:
    """The per-token average of `sequence_logprob` ([B]): what LLMs-from-scratch's DPO chapter uses. Long and short
    responses then weigh the same, so the loss no longer sees how long a response is (lesson 16 shows the effect)."""
    n = is_response[:, 1:].sum(-1).clamp(min=1)  # (B,) response tokens that are scored
    return sequence_logprob(logits, ids, is_response) / n


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO's loss on sequence log-probabilities, all [B] -> (loss [], chosen_rewards [B], rejected_rewards [B]).

    loss = mean -log σ(β · ((pi_c - ref_c) - (pi_r - ref_r))), via F.logsigmoid (finite for any margin);
    rewards β · (pi - ref), detached (they are measurements, as in TRL). The reference is a constant: no gradient
    reaches ref_chosen / ref_rejected even when they carry one."""
    if not beta > 0:
        raise ValueError(f"beta={beta!r}: expected a positive KL strength (0.1 in the DPO paper)")
    shapes = {tuple(t.shape) for t in (pi_chosen, pi_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"pi_chosen, pi_rejected, ref_chosen, ref_rejected: expected four [B] tensors, got shapes {sorted(shapes)}")
    chosen_logratio = pi_chosen - ref_chosen.detach()  # (B,) log π/π_ref of the chosen response
    rejected_logratio = pi_rejected - ref_rejected.detach()  # (B,)
    loss = -F.logsigmoid(beta * (chosen_logratio - rejected_logratio)).mean()  # logsigmoid: no overflow at ±1000
    return loss, beta * chosen_logratio.detach(), beta * rejected_logratio.detach()


def reward_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> float:
    """Fraction of pairs with chosen_rewards > rejected_rewards, strictly: at initialisation (policy = reference) every
    reward is 0 and the accuracy must read 0, not 1."""
    if chosen_rewards.shape != rejected_rewards.shape or chosen_rewards.numel() == 0:
        raise ValueError(f"chosen_rewards, rejected_rewards: expected two non-empty tensors of one shape, got "
                         f"{tuple(chosen_rewards.shape)} and {tuple(rejected_rewards.shape)}")
    return (chosen_rewards > rejected_rewards).float().mean().item()


# ----------------------------------------------------------------------------- training on the lesson's world
@dataclass(frozen=True)
class DPOConfig:
    beta: float = 0.1  # KL strength: the implicit reward is beta * log(π / π_ref)
    steps: int = 120  # optimiser steps, each on `batch_size` pairs drawn with replacement
    batch_size: int = 16  # pairs per step (each pair: one chosen and one rejected row)
    lr: float = 5e-4  # AdamW, no weight decay, gradients clipped to norm 1
    logprob: str = "sum"  # "sum" (the paper, TRL) or "mean" (per-token average, LLMs-from-scratch)
    seed: int = 0  # the batches drawn and the evaluation samples
    log_every: int = 20  # steps between the measurements of `history`
    eval_prompts: int = 200  # test prompts sampled from the policy and from the reference for win rate, KL, length
    heldout_probe: int = 96  # held-out pairs measured every log_every steps (the final accuracy uses them all)

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"beta={self.beta!r}: expected a positive KL strength")
        if self.logprob not in LOGPROBS:
            raise ValueError(f"logprob={self.logprob!r}: expected one of {', '.join(LOGPROBS)}")
        for name in ("steps", "batch_size", "log_every", "eval_prompts", "heldout_probe"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}: expected a positive whole number")

    @property
    def label(self) -> str:
        return f"DPO β={self.beta:g}" + (" (per-token mean)" if self.logprob == "mean" else "")


LOGPROBS = {"sum": sequence_logprob, "mean": mean_token_logprob}


def fast_config(cfg: DPOConfig) -> DPOConfig:
    """The same recipe, shrunk to seconds (fast mode: the test suite and nbval)."""
    return replace(cfg, steps=min(cfg.steps, 6), batch_size=min(cfg.batch_size, 8), log_every=3, eval_prompts=min(cfg.eval_prompts, 12),
                   heldout_probe=min(cfg.heldout_probe, 24))


def pair_logprobs(model: nn.Module, pairs, idx: torch.Tensor, logprob: str = "sum") -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(chosen), log π(rejected)) of the pairs at `idx`, each [len(idx)]: one forward over 2·len(idx) rows."""
    fn = LOGPROBS[logprob]
    c_ids, r_ids, c_m, r_m = pairs.chosen_ids[idx], pairs.rejected_ids[idx], pairs.chosen_mask[idx], pairs.rejected_mask[idx]
    T = max(c_ids.size(1), r_ids.size(1))
    ids = torch.cat([F.pad(c_ids, (0, T - c_ids.size(1))), F.pad(r_ids, (0, T - r_ids.size(1)))])  # (2n, T)
    mask = torch.cat([F.pad(c_m, (0, T - c_m.size(1))), F.pad(r_m, (0, T - r_m.size(1)))])  # (2n, T)
    last = int(torch.where(mask.any(0))[0].max()) + 1  # drop the all-padding tail: cheaper, same values
    out = model(ids[:, :last])
    logits = out[0] if isinstance(out, tuple) else out  # (2n, T', V)
    lp = fn(logits, ids[:, :last], mask[:, :last])  # (2n,)
    return lp[: len(idx)], lp[len(idx):]


@torch.no_grad()
def all_pair_logprobs(model: nn.Module, pairs, logprob: str = "sum", batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """pair_logprobs over every pair, in batches: ([N], [N])."""
    n = len(pairs.prompts)
    cs, rs = zip(*(pair_logprobs(model, pairs, torch.arange(i, min(i + batch, n)), logprob) for i in range(0, n, batch)))
    return torch.cat(cs), torch.cat(rs)


def heldout_accuracy(policy: nn.Module, ref_c: torch.Tensor, ref_r: torch.Tensor, pairs, beta: float, logprob: str = "sum") -> dict:
    """Implicit-reward accuracy on held-out pairs, against their (noisy) labels and against the gold order:
    {"k", "n", "acc", "lo", "hi", "gold_acc", "gold_lo", "gold_hi"} (95 % Wilson)."""
    pi_c, pi_r = all_pair_logprobs(policy, pairs, logprob)
    _, r_c, r_r = dpo_loss(pi_c, pi_r, ref_c, ref_r, beta)
    right = r_c > r_r  # (N,) strict: a tie is not a win
    agrees = pairs.agrees_with_gold.bool()
    gold_right = torch.where(agrees, right, r_r > r_c)  # the gold order: a flipped label's rejected text is the better one
    n, k, kg = len(right), int(right.sum()), int(gold_right.sum())
    lo, hi = wilson_interval(k, n)
    glo, ghi = wilson_interval(kg, n)
    return {"k": k, "n": n, "acc": k / n, "lo": lo, "hi": hi, "gold_acc": kg / n, "gold_lo": glo, "gold_hi": ghi}


def train_dpo(policy: nn.Module, reference: nn.Module, pairs, cfg: DPOConfig, heldout=None, say: Callable[[str], None] = print) -> list[dict]:
    """Train `policy` in place with DPO on `pairs` (reference frozen) -> history, one dict per `log_every` steps:
    step, loss (mean over those steps), train reward accuracy, margin, the mean change in log π of the chosen and
    of the rejected responses of a fixed probe set of train pairs (nats, against the reference), and, given
    `heldout` pairs, the held-out implicit-reward accuracy."""
    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    ref_c, ref_r = all_pair_logprobs(reference, pairs, cfg.logprob)  # the reference never changes: once
    probe = torch.arange(min(64, len(pairs.prompts)))
    probe_ref = all_pair_logprobs(reference, pairs.subset(probe), "sum")  # the chosen-falls effect, always in summed nats
    if heldout is not None:  # measured during training on the first `heldout_probe` held-out pairs (all of them after)
        heldout = heldout.subset(torch.arange(min(cfg.heldout_probe, len(heldout.prompts))))
        held_ref = all_pair_logprobs(reference, heldout, cfg.logprob)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(cfg.seed)
    policy.eval()  # no dropout in the course GPT; eval keeps any that a model has off, as in the reference
    history, window = [], []

    def measure(step):
        with torch.no_grad():
            c, r = all_pair_logprobs(policy, pairs.subset(probe), "sum")
        row = {"step": step, "chosen_logp": float((c - probe_ref[0]).mean()), "rejected_logp": float((r - probe_ref[1]).mean())}
        if window:
            row.update({k: sum(w[k] for w in window) / len(window) for k in window[0]})
        if heldout is not None:
            row["heldout_acc"] = heldout_accuracy(policy, *held_ref, heldout, cfg.beta, cfg.logprob)["acc"]
        history.append(row)
        window.clear()

    measure(0)
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(pairs.prompts), (cfg.batch_size,), generator=g)  # (b,) with replacement
        pi_c, pi_r = pair_logprobs(policy, pairs, idx, cfg.logprob)
        loss, r_c, r_r = dpo_loss(pi_c, pi_r, ref_c[idx], ref_r[idx], cfg.beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        window.append({"loss": loss.item(), "train_acc": reward_accuracy(r_c, r_r), "margin": float((r_c - r_r).mean())})
        if step % cfg.log_every == 0 or step == cfg.steps:
            measure(step)
            if say:
                h = history[-1]
                say(f"  step {step:4d}  loss {h['loss']:.3f}  train acc {h['train_acc']:.0%}  Δlog π chosen {h['chosen_logp']:+.1f} "
                    f"rejected {h['rejected_logp']:+.1f}" + (f"  held-out acc {h['heldout_acc']:.0%}" if "heldout_acc" in h else ""))
    return history


# ----------------------------------------------------------------------------- measuring a policy by its samples
def _win(w) -> dict:
    """preference.win_rate's answer as {"rate", "lo", "hi", "n"} (a (k, n, lo, hi) tuple or an object with .rate/.lo/.hi)."""
    if hasattr(w, "rate"):
        return {"rate": float(w.rate), "lo": float(w.lo), "hi": float(w.hi), "n": int(getattr(w, "n", 0) or 0)}
    k, n, lo, hi = w
    return {"rate": float(k) / n, "lo": float(lo), "hi": float(hi), "n": int(n)}


def _mean_ci(values: Sequence[float]) -> dict:
    """Mean with a 95 % percentile bootstrap over the items: {"mean", "lo", "hi"}."""
    v, lo, hi = bootstrap_ci(np.asarray(values, dtype=np.float64), np.mean, n_boot=1000, seed=0)
    return {"mean": v, "lo": lo, "hi": hi}


@torch.no_grad()
def sample_eval(policy: nn.Module, reference: nn.Module, tok, prompts: list[str], seed: int) -> dict:
    """Sample one response per prompt from `policy` and measure it: gold reward, KL to `reference` (the sum over
    response tokens of log π - log π_ref, per row, on these samples), response length in characters (END
    excluded), distinct-2. Each with a 95 % bootstrap interval over the prompts; texts kept for win rates."""
    ro = preference.sample(policy, tok, prompts, generator=torch.Generator().manual_seed(seed))
    gold = preference.gold_reward(ro.texts).double()
    lp = preference.response_logprobs(policy, ro.ids, ro.is_response).double()  # (B, T), 0 off the response
    lp_ref = preference.response_logprobs(reference, ro.ids, ro.is_response).double()
    kl_rows = (lp - lp_ref).sum(1)  # (B,): a one-sample estimate of KL(π || π_ref) per prompt
    lengths = [len(r.replace(preference.END, "")) for r in ro.responses]
    return {"texts": list(ro.texts), "responses": [r.replace(preference.END, "") for r in ro.responses],
            "gold": _mean_ci(gold.tolist()), "kl": _mean_ci(kl_rows.tolist()), "length": _mean_ci(lengths),
            "stopped": float(ro.finished.float().mean()),
            "distinct2": preference.distinct_n(list(ro.texts), 2), "gold_rows": gold.tolist(), "lengths": lengths}


# ----------------------------------------------------------------------------- cached runs
FORMAT = 1  # bump when what a cached record holds changes
REF_SEED, POLICY_SEED = 1000, 2000  # sampling seeds: the reference's comparison samples, every policy's samples


def _world(fast: bool) -> tuple:
    train, test = preference.preference_pairs("train", fast=fast), preference.preference_pairs("test", fast=fast)
    h = hashlib.sha256(json.dumps([train.chosen, train.rejected, test.chosen, test.rejected]).encode()).hexdigest()
    return train, test, h


def _cached(name: str, key: dict, make: Callable[[], dict], say) -> dict:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / "dpo" / f"{name}-{digest}.json"
    if path.is_file():
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            if rec.get("key") == key:
                return rec
        except ValueError:
            pass  # unreadable: compute again
    rec = make()
    rec["key"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda p: Path(p).write_text(json.dumps(rec), encoding="utf-8"))
    return rec


def reference_eval(n_prompts: int = 200, fast: bool | None = None, say: Callable[[str], None] | None = print) -> dict:
    """The SFT reference's own samples on the first n test prompts (cached): what every DPO policy is compared with,
    plus a second reference sample of the same prompts and its win rate against the first (≈ 50 %: the baseline)."""
    fast = fast_mode() if fast is None else fast
    n_prompts = min(n_prompts, 12) if fast else n_prompts
    _, _, world = _world(fast)

    def make():
        t0 = time.perf_counter()
        reference, tok = preference.sft_policy(fast=fast, verbose=False)
        prompts = preference.review_prompts("test", n=n_prompts)
        ev = sample_eval(reference, reference, tok, prompts, REF_SEED)
        again = sample_eval(reference, reference, tok, prompts, POLICY_SEED)
        ev["self_win"] = _win(preference.win_rate(again["texts"], ev["texts"]))
        ev["prompts"], ev["seconds"] = prompts, time.perf_counter() - t0
        return ev

    return _cached("reference", {"format": FORMAT, "world": world, "n": n_prompts, "fast": fast}, make, say)


def dpo_run(cfg: DPOConfig = DPOConfig(), fast: bool | None = None, say: Callable[[str], None] | None = print) -> dict:
    """One DPO run from `preference.sft_policy()` on `preference.preference_pairs("train")`, measured and cached
    (course cache, keyed by the recipe and the pairs): {"config", "label", "history", "heldout", "eval", "win",
    "noise_ceiling", "train_seconds", "seconds", "key"}. Fast mode shrinks the recipe (`fast_config`)."""
    fast = fast_mode() if fast is None else fast
    cfg = fast_config(cfg) if fast else cfg
    train, test, world = _world(fast)
    ref_ev = reference_eval(cfg.eval_prompts, fast, say)

    def make():
        if say:
            say(f"training {cfg.label}: {cfg.steps} steps of {cfg.batch_size} pairs ({len(train.prompts)} train pairs)")
        t0 = time.perf_counter()
        policy, tok = preference.sft_policy(fast=fast, verbose=False)
        reference, _ = preference.sft_policy(fast=fast, verbose=False)
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            history = train_dpo(policy, reference, train, cfg, heldout=test, say=say)
        train_seconds = time.perf_counter() - t0
        ref_c, ref_r = all_pair_logprobs(reference, test, cfg.logprob)
        held = heldout_accuracy(policy, ref_c, ref_r, test, cfg.beta, cfg.logprob)
        ev = sample_eval(policy, reference, tok, ref_ev["prompts"], POLICY_SEED)
        win = _win(preference.win_rate(ev["texts"], ref_ev["texts"]))
        rec = {"config": asdict(cfg), "label": cfg.label, "history": history, "heldout": held, "eval": ev, "win": win,
               "noise_ceiling": float(preference.noise_ceiling(test)), "train_seconds": train_seconds,
               "seconds": time.perf_counter() - t0}
        if say:
            say(f"  → win rate vs the reference {win['rate']:.0%} [{win['lo']:.0%}, {win['hi']:.0%}], KL {ev['kl']['mean']:.1f} nats, "
                f"length {ev['length']['mean']:.0f} chars (reference {ref_ev['length']['mean']:.0f}); {rec['seconds']:.0f} s")
        return rec

    return _cached("run", {"format": FORMAT, "world": world, "config": asdict(cfg), "fast": fast}, make, say)


BETAS = (0.03, 0.1, 1.0)  # the β sweep (the paper's controlled-sentiment runs span 0.05 … 5)


def dpo_sweep(fast: bool | None = None, say: Callable[[str], None] | None = print, base: DPOConfig = DPOConfig()) -> list[dict]:
    """The lesson's runs: one per β of BETAS (summed log-probabilities), then β = base.beta with the per-token mean.
    Fast mode: the smallest and the largest β and the mean variant, each a few steps."""
    fast = fast_mode() if fast is None else fast
    betas = (BETAS[0], BETAS[-1]) if fast else BETAS
    cfgs = [replace(base, beta=b) for b in betas] + [replace(base, logprob="mean")]
    return [dpo_run(c, fast, say) for c in cfgs]
