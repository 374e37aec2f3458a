"""RLHF (lesson 15): a Bradley-Terry reward model, then PPO and REINFORCE against it, in the world of
llmlab.train.preference (whose gold reward the methods never see).

    reward model   the SFT policy's trunk + a scalar head on each text's last real token (END), trained on the
                   train pairs with the Bradley-Terry loss -log sigma(r_chosen - r_rejected) (`reward_model`; cached)
    one iteration  sample a batch of train prompts from the policy (`preference.sample`); score each response with
                   the reward model; per-token rewards -beta (log pi - log pi_ref), the score added at the last
                   response token (`kl_shaped_rewards`); then
        PPO        values from a value head, advantages by GAE (`gae`), whitened; a few epochs of minibatch steps on
                   the clipped objective (`ppo_clip_loss`) + the value loss (Schulman et al. 2017; Ouyang et al. 2022)
        REINFORCE  one step on -A log pi with A = the sequence's KL-shaped return minus the batch mean (the baseline),
                   divided by the batch's spread (Williams 1992; Ahmadian et al. 2024 make the case for it in RLHF)
    measured       per iteration, on the batch: the proxy (learned) reward, the gold reward, the KL to the reference;
                   at the end, on test prompts: gold reward and its win rate against the reference's samples, KL,
                   distinct-2, entropy, example generations (`evaluate`)

`rlhf_run(RunConfig)` trains one policy (cached by a hash of the recipe, the reward model and the SFT policy);
`beta_sweep` runs PPO over KL coefficients, `ppo_frontier` hands lesson 16 its (KL, gold) points.

The value head reads the policy's final hidden states detached: the critic learns from the policy's features
but its loss never moves them (TRL's default is a separate value network, as costly again as the policy).

Left out on purpose: value clipping, reward whitening, adaptive KL control (Ziegler et al. 2019), an entropy
bonus, learning-rate schedules, and the k3 KL estimator (the per-token reward uses log pi - log pi_ref, k1).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.cache import cache_dir, write_atomic
from llmlab.device import fast_mode
from llmlab.models.gpt import run_trunk
from llmlab.stats import wilson_interval
from llmlab.train import preference as world
from llmlab.train.checkpoint import rng_state, set_rng_state
from llmlab.train.preference import PreferencePairs, Rollout, token_logprobs  # noqa: F401  (token_logprobs: exercise reference)
from llmlab.train.transfer import Score

FORMAT = 1  # bump when what a cached reward model or run holds changes


# ----------------------------------------------------------------------------- the exercises' references
def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigma(r_chosen - r_rejected), r_*: Tensor[B] -> Tensor[]. logsigmoid stays finite at any margin
    (log(sigmoid(-1000)) is log 0 = -inf in float32)."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def last_response_index(is_response: torch.Tensor) -> torch.Tensor:
    """is_response BoolTensor[B, T] -> LongTensor[B]: each row's last response position."""
    if is_response.dim() != 2 or is_response.dtype != torch.bool:
        raise ValueError(f"is_response: expected a BoolTensor[B, T], got {is_response.dtype} of shape {tuple(is_response.shape)}")
    if not is_response.any(1).all():
        raise ValueError("is_response: every row needs at least one response position")
    pos = torch.arange(is_response.size(1), device=is_response.device)
    return torch.where(is_response, pos, -1).amax(1)  # (B,)


def kl_shaped_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, is_response: torch.Tensor,
                      beta: float) -> torch.Tensor:
    """Per-token rewards [B, T]: -beta (logp - ref_logp) on response positions, 0 elsewhere, and each row's
    score added at its last response position (where the reward model read the whole text)."""
    rewards = -beta * (logp - ref_logp) * is_response  # (B, T)
    rows = torch.arange(rewards.size(0), device=rewards.device)
    return rewards.index_put((rows, last_response_index(is_response)), score.to(rewards.dtype), accumulate=True)


def gae(rewards: torch.Tensor, values: torch.Tensor, is_response: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), backwards over each row's response positions:
    delta_t = r_t + gamma V_{t+1} - V_t (V after the last response token is 0: no bootstrap past it),
    A_t = delta_t + gamma lam A_{t+1}; returns = A + V. Both [B, T], 0 off the response."""
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    next_adv = rewards.new_zeros(B)  # A_{t+1}: 0 past the last response position
    next_value = rewards.new_zeros(B)  # V_{t+1}
    for t in reversed(range(T)):
        m = is_response[:, t]  # (B,)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * lam * next_adv
        adv[:, t] = torch.where(m, a, 0.0)
        next_adv = torch.where(m, a, next_adv)  # padding and prompt positions pass the recursion through untouched
        next_value = torch.where(m, values[:, t], next_value)
    returns = (adv + values) * is_response
    return adv, returns


def ppo_clip_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, is_response: torch.Tensor,
                  clip: float = 0.2) -> torch.Tensor:
    """-mean over response positions of min(rho A, clip(rho, 1 - clip, 1 + clip) A), rho = exp(logp_new - logp_old).
    logp_old and the advantages are constants of the update (detached)."""
    ratio = torch.exp(logp_new - logp_old.detach())  # (B, T)
    a = advantages.detach()
    surrogate = torch.min(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a)  # (B, T)
    m = is_response.to(surrogate.dtype)
    return -(surrogate * m).sum() / m.sum()


def reinforce_loss(logp: torch.Tensor, advantages: torch.Tensor, is_response: torch.Tensor) -> torch.Tensor:
    """-mean over response positions of A log pi: logp [B, T], advantages [B] (one per sequence) or [B, T]."""
    a = advantages.detach()
    a = a[:, None] if a.dim() == 1 else a
    m = is_response.to(logp.dtype)
    return -(a * logp * m).sum() / m.sum()


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the positions of mask, 0 elsewhere."""
    v = x[mask]
    return torch.where(mask, (x - v.mean()) / (v.std(unbiased=False) + eps), 0.0)


# ----------------------------------------------------------------------------- the reward model
class RewardModel(nn.Module):
    """A GPT trunk + a scalar head on ln_f(h[last response token]): ids [B, T], is_response [B, T] -> Tensor[B].
    `scale` and `shift` standardise the scores (set after training: mean 0, spread 1 on the train pairs)."""

    def __init__(self, gpt: nn.Module):
        super().__init__()
        self.config = gpt.config
        self.transformer = copy.deepcopy(gpt.transformer)
        self.head = nn.Linear(gpt.config.n_embd, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("shift", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, ids: torch.Tensor, is_response: torch.Tensor) -> torch.Tensor:
        x = run_trunk(self.transformer, self.config, ids)  # (B, T, C): causal, so the padding after a row is unseen
        last = x[torch.arange(ids.size(0)), last_response_index(is_response)]  # (B, C)
        return (self.head(self.transformer.ln_f(last)).squeeze(-1) - self.shift) * self.scale  # (B,)


@dataclass(frozen=True)
class RMConfig:
    epochs: int = 2  # passes over the train pairs
    batch_size: int = 32  # pairs per step
    lr: float = 3e-4  # AdamW, constant after 10 warmup steps
    weight_decay: float = 0.01
    seed: int = 0


RM_CONFIG = RMConfig()
FAST_RM_CONFIG = RMConfig(epochs=1, batch_size=16)


def rm_scores(rm: RewardModel, ids: torch.Tensor, mask: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([rm(ids[i: i + batch_size], mask[i: i + batch_size]) for i in range(0, len(ids), batch_size)])


@dataclass(frozen=True)
class PairAccuracy(Score):
    """A reward model on N pairs: k of n agree with the (noisy) labels (`Score`'s accuracy and Wilson interval);
    k_gold of n_gold agree with the gold order (gold ties left out)."""

    k_gold: int
    n_gold: int

    @property
    def gold_accuracy(self) -> float:
        return self.k_gold / self.n_gold

    @property
    def gold_interval(self) -> tuple[float, float]:
        return wilson_interval(self.k_gold, self.n_gold)

    def __str__(self) -> str:
        (lo, hi), (glo, ghi) = self.interval, self.gold_interval
        return (f"{self.accuracy:6.1%} [{lo:6.1%}, {hi:6.1%}] against the labels ({self.k}/{self.n}); "
                f"{self.gold_accuracy:6.1%} [{glo:6.1%}, {ghi:6.1%}] against the gold order ({self.k_gold}/{self.n_gold})")


def pair_accuracy(rm: RewardModel, pairs: PreferencePairs) -> PairAccuracy:
    """How often the reward model scores the chosen text strictly higher (and the gold-better one, where gold differs)."""
    rc, rr = rm_scores(rm, pairs.chosen_ids, pairs.chosen_mask), rm_scores(rm, pairs.rejected_ids, pairs.rejected_mask)
    gold_gap = pairs.gold_chosen - pairs.gold_rejected
    decided = gold_gap != 0
    agree_gold = ((rc - rr) * gold_gap > 0) & decided
    return PairAccuracy(int((rc > rr).sum()), len(pairs), int(agree_gold.sum()), int(decided.sum()))


def train_reward_model(pairs: PreferencePairs, cfg: RMConfig = RM_CONFIG, fast: bool | None = None) -> tuple[RewardModel, list[float]]:
    """A RewardModel from the SFT policy's trunk, trained with the Bradley-Terry loss -> (model, loss per step)."""
    policy, _ = world.sft_policy(fast, verbose=False)
    outer = rng_state()
    try:
        torch.manual_seed(cfg.seed)
        rm = RewardModel(policy)
        opt = torch.optim.AdamW(rm.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))
        g = torch.Generator().manual_seed(cfg.seed)
        losses = []
        rm.train()
        for _ in range(cfg.epochs):
            order = torch.randperm(len(pairs), generator=g)
            for i in range(0, len(pairs), cfg.batch_size):
                b = order[i: i + cfg.batch_size]
                loss = bradley_terry_loss(rm(pairs.chosen_ids[b], pairs.chosen_mask[b]), rm(pairs.rejected_ids[b], pairs.rejected_mask[b]))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
        rm.eval()
        raw = torch.cat([rm_scores(rm, pairs.chosen_ids, pairs.chosen_mask), rm_scores(rm, pairs.rejected_ids, pairs.rejected_mask)])
        rm.shift.fill_(float(raw.mean()))
        rm.scale.fill_(1.0 / max(float(raw.std()), 1e-6))
    finally:
        set_rng_state(outer)
    return rm, losses


def _key(material: dict) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT, **material}, sort_keys=True).encode()).hexdigest()


def _world_key(fast: bool) -> str:
    return world._sft_key(world.FAST_SFT_RECIPE if fast else world.SFT_RECIPE, fast)


def _rm_key(fast: bool) -> str:
    cfg = FAST_RM_CONFIG if fast else RM_CONFIG
    return _key({"rm": asdict(cfg), "world": _world_key(fast), "pairs": asdict(world.FAST_PAIRS_RECIPE if fast else world.PAIRS_RECIPE)})


def reward_model(fast: bool | None = None, verbose: bool = True) -> tuple[RewardModel, dict]:
    """(the trained reward model in eval mode, its card): trained on preference_pairs("train") once, then cached.
    The card holds the losses per step, the train and held-out accuracies (PairAccuracy fields) and the noise ceiling."""
    fast = fast_mode() if fast is None else fast
    cfg = FAST_RM_CONFIG if fast else RM_CONFIG
    say = print if verbose else (lambda *a, **k: None)
    key = _rm_key(fast)
    path = cache_dir() / "models" / f"reward-model-{key[:16]}.pt"
    policy, _ = world.sft_policy(fast, verbose=False)
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved["card"]["key"] != key:
                raise ValueError("it holds another recipe")
            rm = RewardModel(policy)
            rm.load_state_dict(saved["state_dict"])
            say(f"loaded the reward model from the cache (trained in {saved['card']['train_seconds']:.0f} s)")
            return rm.eval(), saved["card"]
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            say(f"the cached reward model {path.name} is unusable ({str(e)[:120]}); training it again")
    train, test = world.preference_pairs("train", fast=fast), world.preference_pairs("test", fast=fast)
    say(f"training the reward model on {len(train)} preference pairs ({cfg.epochs} epochs; first use, then cached) ...", flush=True)
    t0 = time.perf_counter()
    rm, losses = train_reward_model(train, cfg, fast)
    card = {"key": key, "config": asdict(cfg), "losses": losses, "train_seconds": time.perf_counter() - t0,
            "train": asdict(pair_accuracy(rm, train)), "test": asdict(pair_accuracy(rm, test)),
            "noise_ceiling_test": world.noise_ceiling(test), "label_agreement_test": float(test.agrees_with_gold.float().mean())}
    write_atomic(path, lambda t: torch.save({"state_dict": rm.state_dict(), "card": card}, t))
    say(f"trained in {card['train_seconds']:.0f} s: held-out accuracy {PairAccuracy(**card['test'])}")
    return rm, card


# ----------------------------------------------------------------------------- the policy and its value head
class PolicyWithValue(nn.Module):
    """The policy GPT plus a value head on its (detached) final hidden states. forward(idx, cache) is the GPT's,
    so `preference.sample` draws from it; `logits_and_values(ids)` -> (logits [B, T, V], values [B, T]) where
    values[:, t] estimates the return of the response from token t on (read off h[:, t-1], which chose it)."""

    def __init__(self, gpt: nn.Module):
        super().__init__()
        self.gpt, self.config = gpt, gpt.config
        C = gpt.config.n_embd
        self.v_head = nn.Sequential(nn.Linear(C, C), nn.Tanh(), nn.Linear(C, 1))
        nn.init.zeros_(self.v_head[2].weight)
        nn.init.zeros_(self.v_head[2].bias)

    def forward(self, idx: torch.Tensor, targets=None, cache=None):
        return self.gpt(idx, targets, cache=cache)

    def logits_and_values(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.gpt.transformer.ln_f(run_trunk(self.gpt.transformer, self.config, ids))  # (B, T, C)
        logits = self.gpt.lm_head(h)  # (B, T, V)
        v = self.v_head(h.detach()).squeeze(-1)  # (B, T): v[:, t] values the state after token t
        return logits, F.pad(v[:, :-1], (1, 0))  # aligned with ids: entry t values the state before token t


def _logp_values(model: PolicyWithValue, ids: torch.Tensor, is_response: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits, values = model.logits_and_values(ids)
    logp = F.pad(token_logprobs(logits, ids), (1, 0)) * is_response  # (B, T) aligned with ids
    return logp, values * is_response


# ----------------------------------------------------------------------------- one run
@dataclass(frozen=True)
class RunConfig:
    """One RLHF run: everything that decides its outcome (and its cache key)."""

    method: str = "ppo"  # "ppo" or "reinforce"
    beta: float = 0.03  # KL coefficient of the per-token penalty
    iterations: int = 30  # rollout batches
    batch_size: int = 64  # prompts per rollout batch
    lr: float = 1e-4  # AdamW on the policy (and the value head)
    ppo_epochs: int = 2  # passes over each batch (PPO only; REINFORCE takes one step per batch)
    minibatches: int = 2  # steps per pass (PPO only)
    clip: float = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.5
    n_eval: int = 200  # test prompts of the final evaluation
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("ppo", "reinforce"):
            raise ValueError(f"method={self.method!r}: expected 'ppo' or 'reinforce'")
        if not self.beta >= 0:
            raise ValueError(f"beta={self.beta!r}: expected a KL coefficient >= 0")
        for name in ("iterations", "batch_size", "ppo_epochs", "minibatches", "n_eval"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}: expected a positive integer")
        if self.batch_size % self.minibatches:
            raise ValueError(f"minibatches={self.minibatches}: expected a divisor of batch_size={self.batch_size}")


FAST_RUN = dict(iterations=2, batch_size=8, n_eval=12)  # the fast-mode overrides of any RunConfig


def _run_config(cfg: RunConfig, fast: bool) -> RunConfig:
    return replace(cfg, **FAST_RUN) if fast else cfg


def _iteration(policy: PolicyWithValue, reference: nn.Module, rm: RewardModel, opt, tok, prompts: list[str], cfg: RunConfig,
               g: torch.Generator) -> dict:
    ro = world.sample(policy, tok, prompts, generator=g)
    with torch.no_grad():
        old_logp, old_values = _logp_values(policy, ro.ids, ro.is_response)
        ref_logp = world.response_logprobs(reference, ro.ids, ro.is_response)
        score = rm(ro.ids, ro.is_response)  # (B,) the proxy reward
        rewards = kl_shaped_rewards(score, old_logp, ref_logp, ro.is_response, cfg.beta)  # (B, T)
    stats = {"proxy": float(score.mean()), "gold": float(world.gold_reward(ro.texts).mean()),
             "kl": float((old_logp - ref_logp).sum(1).mean()), "length": float(ro.is_response.sum(1).float().mean()),
             "distinct2": world.distinct_n(ro.texts, 2), "finished": float(ro.finished.float().mean())}
    policy.train()
    if cfg.method == "ppo":
        adv, returns = gae(rewards, old_values, ro.is_response, cfg.gamma, cfg.lam)
        adv = masked_whiten(adv, ro.is_response)
        B, mb = len(ro), len(ro) // cfg.minibatches
        clipped = []
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(B, generator=g)
            for i in range(0, B, mb):
                b = order[i: i + mb]
                logp, values = _logp_values(policy, ro.ids[b], ro.is_response[b])
                m = ro.is_response[b]
                pg = ppo_clip_loss(logp, old_logp[b], adv[b], m, cfg.clip)
                vf = 0.5 * (((values - returns[b]) ** 2) * m).sum() / m.sum()
                opt.zero_grad(set_to_none=True)
                (pg + cfg.vf_coef * vf).backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
                opt.step()
                with torch.no_grad():
                    ratio = torch.exp(logp - old_logp[b])[m]
                    clipped.append(float(((ratio - 1).abs() > cfg.clip).float().mean()))
        stats["clipfrac"] = sum(clipped) / len(clipped)
    else:
        ret = rewards.sum(1)  # (B,) the KL-shaped return of each sequence
        adv = (ret - ret.mean()) / (ret.std(unbiased=False) + 1e-8)  # the batch mean as the baseline
        logp, _ = _logp_values(policy, ro.ids, ro.is_response)
        loss = reinforce_loss(logp, adv, ro.is_response)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
    policy.eval()
    return stats


def _mean_ci(x: torch.Tensor) -> tuple[float, float, float]:
    """mean and a normal 95 % interval (1.96 standard errors) of per-text values."""
    m, se = float(x.mean()), float(x.std() / len(x) ** 0.5) if len(x) > 1 else 0.0
    return m, m - 1.96 * se, m + 1.96 * se


def evaluate(policy: nn.Module, reference: nn.Module, rm: RewardModel, tok, n_eval: int, seed: int = 12345,
             reference_texts: Sequence[str] | None = None) -> dict:
    """On the first n_eval test prompts: samples of `policy`, their gold and proxy rewards (mean, 95 % interval),
    the gold win rate against the reference's samples for the same prompts, KL to the reference, distinct-2,
    entropy, mean length, and 6 example texts."""
    prompts = world.review_prompts("test", n_eval)
    g = torch.Generator().manual_seed(seed)
    ro = world.sample(policy, tok, prompts, generator=g)
    if reference_texts is None:
        reference_texts = world.sample(reference, tok, prompts, generator=torch.Generator().manual_seed(seed + 1)).texts
    gold = world.gold_reward(ro.texts)
    gm, glo, ghi = _mean_ci(gold)
    pm, plo, phi = _mean_ci(rm_scores(rm, ro.ids, ro.is_response))
    wr = world.win_rate(ro.texts, list(reference_texts))
    return {"gold": gm, "gold_lo": glo, "gold_hi": ghi, "proxy": pm, "proxy_lo": plo, "proxy_hi": phi,
            "win": asdict(wr), "win_rate": wr.rate, "win_lo": wr.lo, "win_hi": wr.hi,
            "kl": world.kl_to_reference(policy, reference, ro), "distinct2": world.distinct_n(ro.texts, 2),
            "entropy": world.token_entropy(policy, ro), "length": float(ro.is_response.sum(1).float().mean()),
            "nonwords": float(world.gold_parts(ro.texts)["nonwords"].mean()), "examples": ro.texts[:6]}


def _cached_run(cfg: RunConfig, fast: bool, keep_policy: bool = False) -> tuple[dict | None, str, Path]:
    """(the cached record of this run or None, its key, its path); nothing is trained."""
    key = _key({"run": asdict(cfg), "rm": _rm_key(fast)})
    path = cache_dir() / "rlhf" / f"{cfg.method}-beta{cfg.beta:g}-{key[:16]}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved["record"]["key"] != key or (keep_policy and "policy" not in saved):
                raise ValueError("it holds another recipe, or no policy")
            record = saved["record"]
            if keep_policy:
                policy = PolicyWithValue(world.sft_policy(fast, verbose=False)[0])
                policy.load_state_dict(saved["policy"])
                record = {**record, "policy": policy.eval()}
            return record, key, path
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            pass
    return None, key, path


def rlhf_run(cfg: RunConfig, fast: bool | None = None, verbose: bool = True, keep_policy: bool = False) -> dict:
    """Train a policy from the SFT model with `cfg` against the cached reward model -> a record: "config",
    "history" (one dict per iteration: samples, proxy, gold, kl, length, distinct2, finished[, clipfrac]),
    "final" (`evaluate` on test prompts), "reference" (`evaluate` of the SFT policy itself), "seconds".
    Cached; `keep_policy` also returns the trained policy under "policy" (and stores its weights)."""
    fast = fast_mode() if fast is None else fast
    cfg = _run_config(cfg, fast)
    say = print if verbose else (lambda *a, **k: None)
    record, key, path = _cached_run(cfg, fast, keep_policy)
    if record is not None:
        say(f"loaded the {cfg.method} run (beta={cfg.beta:g}) from the cache (trained in {record['seconds']:.0f} s)")
        return record
    reference, tok = world.sft_policy(fast, verbose=False)
    rm, _ = reward_model(fast, verbose=False)
    say(f"RLHF with {cfg.method} (beta={cfg.beta:g}): {cfg.iterations} batches of {cfg.batch_size} prompts ...", flush=True)
    t0 = time.perf_counter()
    outer = rng_state()
    try:
        torch.manual_seed(cfg.seed)
        policy = PolicyWithValue(world.sft_policy(fast, verbose=False)[0])
        opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
        g = torch.Generator().manual_seed(cfg.seed)
        prompts = world.review_prompts("train")
        history = []
        for it in range(cfg.iterations):
            idx = torch.randint(len(prompts), (cfg.batch_size,), generator=g).tolist()
            stats = _iteration(policy, reference, rm, opt, tok, [prompts[i] for i in idx], cfg, g)
            history.append({"iteration": it + 1, "samples": (it + 1) * cfg.batch_size, **stats})
        final = evaluate(policy, reference, rm, tok, cfg.n_eval)
        ref_eval = evaluate(reference, reference, rm, tok, cfg.n_eval)
    finally:
        set_rng_state(outer)
    record = {"key": key, "config": asdict(cfg), "history": history, "final": final, "reference": ref_eval,
              "seconds": time.perf_counter() - t0}
    write_atomic(path, lambda t: torch.save({"record": record, "policy": policy.state_dict()}, t))
    say(f"  done in {record['seconds']:.0f} s: gold {final['gold']:+.3f} (SFT {ref_eval['gold']:+.3f}), KL {final['kl']:.1f} nats, "
        f"win rate vs SFT {final['win_rate']:.1%}")
    return {**record, "policy": policy} if keep_policy else record


# ----------------------------------------------------------------------------- sweeps
BETAS = (0.0, 0.03, 0.3, 1.0)  # KL coefficients of the sweep: the smallest is where over-optimisation would show
PPO = RunConfig()
REINFORCE = RunConfig(method="reinforce", beta=0.03)


def beta_sweep(betas: Sequence[float] = BETAS, base: RunConfig = PPO, fast: bool | None = None, verbose: bool = True) -> list[dict]:
    """One cached `rlhf_run` per KL coefficient."""
    return [rlhf_run(replace(base, beta=float(b)), fast, verbose) for b in betas]


def ppo_frontier(fast: bool | None = None, cached_only: bool = False) -> list[dict] | None:
    """PPO's end points of the beta sweep for lesson 16's frontier plot: one dict per run with method, beta,
    kl (nats, sampled on test prompts), gold, gold_lo, gold_hi (mean gold reward and its 95 % interval), proxy,
    and win_rate, win_lo, win_hi (gold win rate against the SFT policy's samples, Wilson 95 %).
    cached_only: None unless every run of the sweep is in the cache already (lesson 15 trains them); never trains."""
    fast = fast_mode() if fast is None else fast
    if cached_only:
        records = [_cached_run(_run_config(replace(PPO, beta=float(b)), fast), fast)[0] for b in BETAS]
        if any(r is None for r in records):
            return None
    else:
        records = beta_sweep(fast=fast, verbose=False)
    out = []
    for rec in records:
        f = rec["final"]
        out.append({"method": "ppo", "beta": rec["config"]["beta"], "kl": f["kl"], "gold": f["gold"], "gold_lo": f["gold_lo"],
                    "gold_hi": f["gold_hi"], "proxy": f["proxy"], "win_rate": f["win_rate"], "win_lo": f["win_lo"], "win_hi": f["win_hi"]})
    return out
