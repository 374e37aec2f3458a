"""Checks for chapter 15, RLHF: `rlhf.bradley_terry_loss` (the reward model's loss), `rlhf.token_logprobs` (log p of
each next token), `rlhf.kl_shaped_rewards` (the per-token KL penalty plus the score at the last response token),
`rlhf.gae` (advantages backwards over the response) and `rlhf.ppo_clip_loss` (the clipped surrogate).
References: llmlab.train.rlhf (token_logprobs: llmlab.train.preference).

Probes use B != T != V and rows with a prompt, a response and right padding whose positions hold non-zero values
(so that KL on the prompt, the score at the padded end, padding in a mean, or a bootstrap past the last response
token each change the numbers); gamma and lam are not 1; margins of ±1000 overflow a literal -log(sigmoid(x));
one token_logprobs probe has V < T (so that gathering along the time axis runs, and is named). The PPO probes
include the exact ones: at rho = 1 the loss is -mean(A) over the response; a gradient probe reports the gradients
reaching logp_new and logp_old (logp_old's must be zero), and one has every ratio clipped in the advantage's
direction (zero gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, compare_tensors, describe, randn, register
from llmlab.train import rlhf as ref

ATOL, RTOL = 1e-5, 1e-4  # float32 rounding of a log-softmax or a short recursion is ~1e-6; every known mistake is off by > 1e-2
LOG_SIGMOID = ("-log(torch.sigmoid(x)) overflows: sigmoid(-1000) is 0 in float32 and its log is -inf. Use -F.logsigmoid(x) "
               "(torch.nn.functional.logsigmoid), which is finite for any margin")


def _rows(T: int, prompts: list[int], responses: list[int]) -> torch.Tensor:
    """is_response [B, T]: row b is prompts[b] prompt tokens, then responses[b] response tokens, then padding."""
    m = torch.zeros(len(prompts), T, dtype=torch.bool)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        m[b, p:p + r] = True
    return m


def _last(is_response: torch.Tensor) -> torch.Tensor:
    return torch.where(is_response, torch.arange(is_response.size(1)), -1).amax(1)


# ----------------------------------------------------------------------------- bradley_terry_loss
def _bt_inputs(B: int, spread: float = 2.0, margin: float | None = None):
    def make(g):
        rc, rr = randn(g, B, scale=spread), randn(g, B, scale=spread)
        if margin is not None:  # half the pairs right by `margin`, half wrong by it
            signs = torch.tensor([1.0, -1.0]).repeat(B)[:B]
            rr = rc - signs * margin
        return rc, rr
    return make


def _scalar_compare(got, expected, args):
    if isinstance(got, torch.Tensor) and got.shape != ():
        raise CheckFailed(f"the loss has shape {tuple(got.shape)}: expected one number (shape ()), the mean over the B pairs")
    compare_tensors(got, expected, 1e-4, 1e-5, "loss")  # up to ~500 at margins of 1000: 1e-5 relative is float32 rounding


def _bt_variant(kind: str):
    def bradley_terry_loss(rc, rr):
        x = rc - rr
        if kind == "sign":
            return -F.logsigmoid(-x).mean()
        if kind == "no_log":
            return -torch.sigmoid(x).mean()
        if kind == "one_minus":
            return (1 - torch.sigmoid(x)).mean()
        if kind == "overflow":
            return -torch.log(torch.sigmoid(x)).mean()
        if kind == "sum":
            return -F.logsigmoid(x).sum()
        return -F.logsigmoid(x).mean()
    return bradley_terry_loss


register(Exercise(
    id="rlhf.bradley_terry_loss",
    signature="bradley_terry_loss(r_chosen: Tensor[B], r_rejected: Tensor[B]) -> Tensor[]  # mean of -log sigma(r_chosen - r_rejected), "
              "finite for margins of ±1000",
    reference=ref.bradley_terry_loss,
    points=1,
    probes=[
        Probe("B=5 random scores", _bt_inputs(5), compare=_scalar_compare),
        Probe("B=3, scores close together", _bt_inputs(3, spread=0.3), compare=_scalar_compare),
        Probe("margins of ±1000", _bt_inputs(4, margin=1000.0), compare=_scalar_compare, hint=LOG_SIGMOID),
    ],
    mistakes=[
        Mistake("the sign is reversed: the loss is -log sigma(r_chosen - r_rejected), small when the chosen text scores higher",
                _bt_variant("sign")),
        Mistake("the loss is -log sigma(x), not -sigma(x): without the log it is not the Bradley-Terry likelihood, and its gradient "
                "vanishes for pairs that are far wrong", _bt_variant("no_log")),
        Mistake("the loss is -log sigma(x), not 1 - sigma(x): take the log of the probability the model gives the label",
                _bt_variant("one_minus")),
        Mistake(LOG_SIGMOID, _bt_variant("overflow")),
        Mistake("average over the B pairs (.mean()), don't sum", _bt_variant("sum")),
    ],
))


# ----------------------------------------------------------------------------- token_logprobs
def _lp_inputs(B: int, T: int, V: int, scale: float = 2.0, shift: float = 0.0):
    def make(g):
        return randn(g, B, T, V, scale=scale) + shift, torch.randint(V, (B, T), generator=g)
    return make


def _lp_variant(kind: str):
    def token_logprobs(logits, ids):
        if kind == "no_shift":  # logits[:, t] scored against ids[:, t]: the token it was given, not the next one
            return F.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, :-1, None]).squeeze(-1)
        if kind == "softmax":
            return F.softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        if kind == "no_log_softmax":  # the raw logit of the token
            return logits[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
        if kind == "time_axis":  # gather along T with the token ids as indices
            return F.log_softmax(logits[:, :-1], -1).gather(1, ids[:, 1:, None]).squeeze(-1)
        if kind == "log_of_softmax_unstable":
            return torch.log(torch.exp(logits[:, :-1]) / torch.exp(logits[:, :-1]).sum(-1, keepdim=True)).gather(-1, ids[:, 1:, None]).squeeze(-1)
        return F.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return token_logprobs


register(Exercise(
    id="rlhf.token_logprobs",
    signature="token_logprobs(logits: Tensor[B, T, V], ids: LongTensor[B, T]) -> Tensor[B, T-1]  # entry t is log p(ids[:, t+1]) "
              "under logits[:, t]",
    reference=ref.token_logprobs,
    points=1,
    probes=[
        Probe("B=3, T=9, V=5", _lp_inputs(3, 9, 5)),
        Probe("B=2, T=6, V=11", _lp_inputs(2, 6, 11)),
        Probe("logits around 200 (log_softmax as one stable function)", _lp_inputs(3, 7, 4, scale=30.0, shift=200.0)),
    ],
    mistakes=[
        Mistake("shift by one: logits[:, t] predict ids[:, t+1], so score ids[:, 1:] under log_softmax(logits[:, :-1]) (scoring "
                "ids[:, t] under logits[:, t] asks how likely a token is given itself)", _lp_variant("no_shift")),
        Mistake("log_softmax, not softmax: the entries are log-probabilities (F.log_softmax(logits, dim=-1))", _lp_variant("softmax")),
        Mistake("normalise first: a raw logit is not a log-probability; take F.log_softmax(logits, dim=-1), then gather",
                _lp_variant("no_log_softmax")),
        Mistake("gather along the vocabulary, the last axis: logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1); gathering along "
                "dim 1 picks time steps, not tokens", _lp_variant("time_axis")),
        Mistake("log(softmax(x)) written out overflows for large logits (exp(200) is inf in float32): use F.log_softmax, which "
                "subtracts the maximum first", _lp_variant("log_of_softmax_unstable")),
    ],
))


# ----------------------------------------------------------------------------- kl_shaped_rewards
def _kl_inputs(T: int, prompts: list[int], responses: list[int], beta: float):
    def make(g):
        B = len(prompts)
        logp, ref_logp = -1 + randn(g, B, T), -1 + randn(g, B, T)  # non-zero everywhere, padding and prompt included
        return randn(g, B), logp, ref_logp, _rows(T, prompts, responses), beta
    return make


def _kl_variant(kind: str):
    def kl_shaped_rewards(score, logp, ref_logp, is_response, beta):
        sign = 1.0 if kind == "kl_sign" else -1.0
        kl = logp - ref_logp
        r = sign * beta * kl if kind == "kl_everywhere" else sign * beta * kl * is_response
        rows = torch.arange(len(score))
        if kind == "score_every_token":
            return r + score[:, None] * is_response
        last = torch.full_like(rows, logp.size(1) - 1) if kind == "score_padded_end" else _last(is_response)
        r = r.clone()
        r[rows, last] += score
        return r
    return kl_shaped_rewards


register(Exercise(
    id="rlhf.kl_shaped_rewards",
    signature="kl_shaped_rewards(score: Tensor[B], logp: Tensor[B, T], ref_logp: Tensor[B, T], is_response: BoolTensor[B, T], "
              "beta: float) -> Tensor[B, T]  # -beta (logp - ref_logp) on response positions, 0 elsewhere, plus score added at each "
              "row's last response position",
    reference=ref.kl_shaped_rewards,
    points=2,
    probes=[
        Probe("B=3, T=8: prompts of 2, 3, 1 tokens, responses of 4, 2, 5, then padding; beta=0.1", _kl_inputs(8, [2, 3, 1], [4, 2, 5], 0.1)),
        Probe("B=2, T=6: one row without padding; beta=0.5", _kl_inputs(6, [1, 2], [5, 2], 0.5)),
        Probe("beta=0: only the score, at the last response token", _kl_inputs(7, [2, 1, 3], [3, 5, 1], 0.0)),
    ],
    mistakes=[
        Mistake("the KL penalty is -beta (logp - ref_logp): the policy loses reward where it is MORE likely than the reference",
                _kl_variant("kl_sign")),
        Mistake("the score is one number per sequence: add it once, at the row's last response position, not at every token",
                _kl_variant("score_every_token")),
        Mistake("the rows are right-padded: the last response position of a row is the last True of is_response in it, not the "
                "tensor's last column T-1", _kl_variant("score_padded_end")),
        Mistake("the penalty counts on response positions only: multiply by is_response (the prompt was given, the padding is not "
                "text)", _kl_variant("kl_everywhere")),
    ],
))


# ----------------------------------------------------------------------------- gae
def _gae_inputs(T: int, prompts: list[int], responses: list[int], gamma: float, lam: float):
    def make(g):
        B = len(prompts)
        return randn(g, B, T), randn(g, B, T), _rows(T, prompts, responses), gamma, lam  # values non-zero on padding too
    return make


def _gae_compare(got, expected, args):
    if not isinstance(got, tuple) or len(got) != 2:
        raise CheckFailed(f"expected a tuple (advantages, returns), got {describe(got)}")
    compare_tensors(got[0], expected[0], ATOL, RTOL, "advantages")
    compare_tensors(got[1], expected[1], ATOL, RTOL, "returns")


def _gae_variant(kind: str):
    def gae(rewards, values, is_response, gamma, lam):
        B, T = rewards.shape
        m = is_response.to(rewards.dtype)
        adv = torch.zeros_like(rewards)
        if kind == "forward":  # the recursion run from the first token on
            prev = torch.zeros(B)
            for t in range(T):
                nxt_v = values[:, t + 1] * m[:, t + 1] if t + 1 < T else torch.zeros(B)
                a = rewards[:, t] + gamma * nxt_v - values[:, t] + gamma * lam * prev
                adv[:, t] = a * m[:, t]
                prev = torch.where(is_response[:, t], a, prev)
            return adv, (adv + values) * m
        last_adv, next_v = torch.zeros(B), torch.zeros(B)
        for t in reversed(range(T)):
            if kind == "bootstrap":  # V of the next column, whatever it is (padding after the last token)
                next_v = values[:, t + 1] if t + 1 < T else torch.zeros(B)
            delta = rewards[:, t] + gamma * next_v - values[:, t]
            a = delta + gamma * lam * last_adv
            adv[:, t] = a * m[:, t]
            last_adv = torch.where(is_response[:, t], a, last_adv)
            if kind != "bootstrap":
                next_v = torch.where(is_response[:, t], values[:, t], next_v)
        returns = (adv + values) * m
        if kind == "returns_as_adv":
            return returns, returns
        return adv, returns
    return gae


register(Exercise(
    id="rlhf.gae",
    signature="gae(rewards: Tensor[B, T], values: Tensor[B, T], is_response: BoolTensor[B, T], gamma: float, lam: float) -> "
              "(advantages, returns)  # both [B, T], backwards over each row's response positions, no bootstrap past its last one, "
              "0 elsewhere",
    reference=ref.gae,
    points=2,
    probes=[
        Probe("B=3, T=8, gamma=0.9, lam=0.8, values non-zero on the padding", _gae_inputs(8, [2, 1, 3], [4, 6, 2], 0.9, 0.8),
              compare=_gae_compare),
        Probe("B=2, T=6, gamma=1, lam=0.5: one row fills the tensor", _gae_inputs(6, [0, 2], [6, 3], 1.0, 0.5), compare=_gae_compare),
        Probe("lam=1 (returns are discounted rewards-to-go)", _gae_inputs(7, [1, 3], [5, 2], 0.95, 1.0), compare=_gae_compare),
    ],
    mistakes=[
        Mistake("run the recursion backwards, t = T-1 down to 0: A_t = delta_t + gamma lam A_{t+1} needs the advantage of the step "
                "AFTER t, so start at the last response token", _gae_variant("forward")),
        Mistake("no bootstrap past the last response token: the episode ends there, so V after it is 0 (the next column is "
                "padding, and its value means nothing)", _gae_variant("bootstrap")),
        Mistake("the advantage is A = delta_t + gamma lam A_{t+1}; returns = A + V is the critic's target, not the advantage",
                _gae_variant("returns_as_adv")),
    ],
))


# ----------------------------------------------------------------------------- ppo_clip_loss
def _ppo_inputs(T: int, prompts: list[int], responses: list[int], clip: float | None = 0.2, spread: float = 0.3, ratio_one: bool = False,
                all_clipped: bool = False):
    def make(g):
        B = len(prompts)
        old = -2 + randn(g, B, T)
        new = old.clone() if ratio_one else old + randn(g, B, T, scale=spread)
        adv = randn(g, B, T)
        if all_clipped:  # every ratio beyond the clip in the direction its advantage pushes
            c = 0.2 if clip is None else clip
            new = old + torch.where(adv > 0, torch.log(torch.tensor(1 + 2 * c)), torch.log(torch.tensor(1 - 2 * c)))
        args = (new, old, adv, _rows(T, prompts, responses))
        return args if clip is None else args + (clip,)
    return make


def _ppo_grads(fn, new, old, adv, mask, *clip):
    """{"loss", "grad_new", "grad_old"}: the loss and its gradients reaching logp_new and logp_old (zeros where none)."""
    with torch.enable_grad():  # the grader computes expected outputs under no_grad()
        n, o = new.clone().requires_grad_(True), old.clone().requires_grad_(True)
        loss = fn(n, o, adv, mask, *clip)
        if not isinstance(loss, torch.Tensor) or loss.shape != ():
            return loss  # the compare says what is wrong with it
        if loss.requires_grad:
            loss.backward()
    return {"loss": loss.detach(), "grad_new": n.grad if n.grad is not None else torch.zeros_like(n),
            "grad_old": o.grad if o.grad is not None else torch.zeros_like(o)}


def _ppo_compare(got, expected, args):
    if isinstance(got, torch.Tensor) and got.shape != ():
        raise CheckFailed(f"the loss has shape {tuple(got.shape)}: expected one number (shape ()), the mean over the response positions")
    if not isinstance(got, dict):
        raise CheckFailed(f"expected the loss as a tensor of shape (), got {describe(got)}")
    compare_tensors(got["loss"], expected["loss"], ATOL, RTOL, "loss")
    compare_tensors(got["grad_old"], expected["grad_old"], ATOL, RTOL, "gradient reaching logp_old")
    compare_tensors(got["grad_new"], expected["grad_new"], ATOL, RTOL, "gradient reaching logp_new")


def _ppo_variant(kind: str):
    def ppo_clip_loss(logp_new, logp_old, advantages, is_response, clip=0.2):
        old = logp_old if kind == "old_grad" else logp_old.detach()
        ratio = logp_new / old if kind == "quotient" else torch.exp(logp_new - old)
        a = advantages
        if kind == "clip_adv":
            s = torch.min(ratio * a, ratio * torch.clamp(a, 1 - clip, 1 + clip))
        elif kind == "max":
            s = torch.max(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a)
        elif kind == "no_min":
            s = torch.clamp(ratio, 1 - clip, 1 + clip) * a
        else:
            s = torch.min(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a)
        if kind == "padding":
            return -s.mean()
        m = is_response.to(s.dtype)
        out = -(s * m).sum() / m.sum()
        return -out if kind == "sign" else out
    return ppo_clip_loss


register(Exercise(
    id="rlhf.ppo_clip_loss",
    signature="ppo_clip_loss(logp_new: Tensor[B, T], logp_old: Tensor[B, T], advantages: Tensor[B, T], is_response: BoolTensor[B, T], "
              "clip: float = 0.2) -> Tensor[]  # -mean over response positions of min(rho A, clip(rho, 1-clip, 1+clip) A), "
              "rho = exp(logp_new - logp_old)",
    reference=ref.ppo_clip_loss,
    points=2,
    probes=[
        Probe("B=3, T=8, clip=0.2, ratios near 1: the loss and its gradients", _ppo_inputs(8, [2, 3, 1], [4, 2, 5], 0.2, spread=0.3),
              run=_ppo_grads, compare=_ppo_compare),
        Probe("clip=0.1, ratios far from 1", _ppo_inputs(7, [1, 2], [4, 5], 0.1, spread=0.8), run=_ppo_grads, compare=_ppo_compare),
        Probe("rho = 1 (logp_new = logp_old): the loss is -mean(A) over the response", _ppo_inputs(6, [2, 1, 0], [3, 4, 6], 0.2,
              ratio_one=True), run=_ppo_grads, compare=_ppo_compare),
        Probe("every ratio clipped in its advantage's direction: zero gradient", _ppo_inputs(8, [2, 3], [5, 3], 0.15, all_clipped=True),
              run=_ppo_grads, compare=_ppo_compare),
        Probe("clip left at its default, 0.2", _ppo_inputs(7, [1, 3], [5, 2], None, spread=0.5), run=_ppo_grads, compare=_ppo_compare),
    ],
    mistakes=[
        Mistake("clip the ratio, not the advantage: torch.clamp(ratio, 1 - clip, 1 + clip) * A", _ppo_variant("clip_adv")),
        Mistake("min, not max: the clipped objective is the pessimistic one, min(rho A, clip(rho) A), so the policy gains nothing "
                "from moving rho beyond the clip", _ppo_variant("max")),
        Mistake("take min(rho A, clip(rho) A): the clipped term alone gives no gradient inside the clip range either",
                _ppo_variant("no_min")),
        Mistake("the ratio of probabilities is exp(logp_new - logp_old), not logp_new / logp_old (a quotient of log-probabilities "
                "is not a probability ratio)", _ppo_variant("quotient")),
        Mistake("average over the response positions only: (surrogate * is_response).sum() / is_response.sum(); .mean() counts the "
                "prompt and the padding", _ppo_variant("padding")),
        Mistake("logp_old is a constant of the update (the policy that sampled the batch): use logp_old.detach(), so no gradient "
                "reaches it", _ppo_variant("old_grad")),
        Mistake("the loss is the NEGATIVE surrogate (we minimise it to maximise the objective): -mean(min(rho A, clip(rho) A))",
                _ppo_variant("sign")),
    ],
))
