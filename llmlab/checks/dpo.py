"""Checks for chapter 16, DPO: `dpo.sequence_logprob` (the sum of response-token log-probabilities, shifted),
`dpo.dpo_loss` (the loss and implicit rewards from four sequence log-probabilities) and `dpo.reward_accuracy`
(chosen strictly above rejected). References: llmlab.train.dpo.

Probes use B != T != V (B=3, T=7, V=11 and others) and rows with a prompt, a response and right padding, so
that including the prompt or the padding, averaging, or forgetting the shift each change the numbers; one
probe has is_response True at position 0 (there is nothing to predict it from: it never counts). dpo_loss's
probes have every log-ratio different, a β that is not 1, margins of ±1000 (−log(σ(x)) overflows there),
policy = reference (loss ln 2, rewards 0), and a gradient probe that reports the gradients reaching the four
inputs (the reference's must be zero). reward_accuracy's probes include ties (all rewards 0 at initialisation).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, compare_tensors, describe, randn, register
from llmlab.train import dpo as ref

ATOL, RTOL = 1e-5, 1e-4  # float32 rounding of a log-softmax and a short sum is ~1e-6; every known mistake is off by > 1e-2


# ----------------------------------------------------------------------------- sequence_logprob
def _rows(T: int, prompts: list[int], responses: list[int]) -> torch.Tensor:
    """is_response [B, T]: row b is prompts[b] prompt tokens, then responses[b] response tokens, then padding."""
    m = torch.zeros(len(prompts), T, dtype=torch.bool)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        m[b, p:p + r] = True
    return m


def _seq_inputs(T: int, V: int, prompts: list[int], responses: list[int], scale: float = 2.0, shift: float = 0.0):
    def make(g):
        B = len(prompts)
        return randn(g, B, T, V, scale=scale) + shift, torch.randint(V, (B, T), generator=g), _rows(T, prompts, responses)
    return make


def _seq_variant(kind: str):
    def sequence_logprob(logits, ids, is_response):
        if kind == "no_shift":  # logits[:, t] scored against ids[:, t]: the token it was given, not the next one
            lp = F.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
            return (lp * is_response).sum(-1)
        if kind == "softmax":
            lp = F.softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        else:
            lp = F.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        mask = is_response[:, 1:]
        if kind == "mask_not_shifted":  # the mask of the predicting position instead of the predicted token's
            mask = is_response[:, :-1]
        elif kind == "everything":  # prompt and padding too
            mask = torch.ones_like(mask)
        elif kind == "prompt":  # every token up to the end of the response
            last = torch.where(is_response, torch.arange(is_response.size(1)), -1).amax(1)  # (B,)
            mask = torch.arange(1, is_response.size(1)) <= last[:, None]
        elif kind == "padding":  # from the first response token to the end of the row
            mask = is_response.cumsum(1)[:, 1:] > 0
        out = (lp * mask).sum(-1)
        if kind == "mean":
            out = out / mask.sum(-1).clamp(min=1)
        return out
    return sequence_logprob


register(Exercise(
    id="dpo.sequence_logprob",
    signature="sequence_logprob(logits: Tensor[B, T, V], ids: LongTensor[B, T], is_response: BoolTensor[B, T]) -> Tensor[B]  # the sum, "
              "over positions t >= 1 with is_response[:, t], of log softmax(logits[:, t-1])[ids[:, t]]",
    reference=ref.sequence_logprob,
    points=2,
    probes=[
        Probe("B=3, T=7, V=11: prompts of 2, 3, 1 tokens, responses of 3, 4, 2, then padding",
              _seq_inputs(7, 11, [2, 3, 1], [3, 4, 2])),
        Probe("B=4, T=9, V=5: one row without padding, one with a single response token", _seq_inputs(9, 5, [1, 4, 2, 3], [8, 1, 5, 3])),
        Probe("is_response True at position 0 (nothing predicts it: it never counts)", _seq_inputs(6, 8, [0, 2], [4, 3])),
        Probe("logits around 200 (log softmax as one stable function)", _seq_inputs(8, 7, [2, 1, 3], [4, 5, 2], scale=30.0, shift=200.0)),
    ],
    mistakes=[
        Mistake("shift by one: the logits at position t-1 predict token t, so score ids[:, 1:] under log_softmax(logits[:, :-1]) "
                "(scoring ids[:, t] under logits[:, t] asks how likely a token is given itself)", _seq_variant("no_shift")),
        Mistake("after the shift, entry t-1 scores token t: mask it with is_response[:, 1:] (the predicted token is a response "
                "token), not is_response[:, :-1]", _seq_variant("mask_not_shifted")),
        Mistake("sum over the response tokens only: multiply the shifted log-probs by is_response[:, 1:] (the prompt is given, "
                "not generated, and the padding is not text)", _seq_variant("everything")),
        Mistake("the prompt is included: the sequence log-probability is log π(response | prompt), so only positions with "
                "is_response True count", _seq_variant("prompt")),
        Mistake("the padding after the response is included: mask with is_response, which is False on padding", _seq_variant("padding")),
        Mistake("sum, don't average: log π(y|x) of a sequence is the sum of its tokens' log-probabilities (the per-token mean is "
                "another objective, which lesson 16 measures)", _seq_variant("mean")),
        Mistake("log softmax, not softmax: a sequence's log-probability sums log-probabilities (F.log_softmax(logits, dim=-1))",
                _seq_variant("softmax")),
    ],
))


# ----------------------------------------------------------------------------- dpo_loss
def _loss_inputs(B: int, beta: float, spread: float = 3.0, margin: float | None = None, equal_to_ref: bool = False):
    def make(g):
        ref_c, ref_r = -20 + randn(g, B, scale=spread), -20 + randn(g, B, scale=spread)
        if equal_to_ref:
            return ref_c.clone(), ref_r.clone(), ref_c, ref_r, beta
        pi_c, pi_r = ref_c + randn(g, B, scale=spread), ref_r + randn(g, B, scale=spread)
        if margin is not None:  # β · margin = ±margin_loss: half the pairs far right, half far wrong
            signs = torch.tensor([1.0, -1.0]).repeat(B)[:B]
            pi_c = ref_c + signs * margin / beta / 2
            pi_r = ref_r - signs * margin / beta / 2
        return pi_c, pi_r, ref_c, ref_r, beta
    return make


def _loss_compare(got, expected, args):
    if not isinstance(got, tuple) or len(got) != 3:
        raise CheckFailed(f"expected a tuple (loss, chosen_rewards, rejected_rewards), got {describe(got)}")
    loss, c, r = got
    if isinstance(loss, torch.Tensor) and loss.shape != ():
        raise CheckFailed(f"the loss has shape {tuple(loss.shape)}: expected one number (shape ()), the mean over the B pairs")
    compare_tensors(loss, expected[0], 1e-4, 1e-5, "loss")  # up to ~500 at the large margins: 1e-5 relative is float32 rounding
    compare_tensors(c, expected[1], 1e-4, 1e-5, "chosen_rewards")
    compare_tensors(r, expected[2], 1e-4, 1e-5, "rejected_rewards")


def _loss_grads(fn, pi_c, pi_r, ref_c, ref_r, beta):
    """d loss / d each input: [4, B] (rows pi_c, pi_r, ref_c, ref_r; zeros where no gradient reaches)."""
    with torch.enable_grad():  # the grader computes expected outputs under no_grad()
        xs = [t.clone().requires_grad_(True) for t in (pi_c, pi_r, ref_c, ref_r)]
        out = fn(*xs, beta)
        loss = out[0] if isinstance(out, tuple) and out else out
        if not isinstance(loss, torch.Tensor) or loss.shape != ():
            return out  # the value probes say what is wrong with it
        if loss.requires_grad:
            loss.backward()
    return torch.stack([x.grad if x.grad is not None else torch.zeros_like(x) for x in xs])


def _grad_compare(got, expected, args):
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"could not take the gradient of your loss: it returned {describe(got)}; return (loss, chosen_rewards, "
                          "rejected_rewards) with loss a tensor of shape ()")
    if got.shape == expected.shape and got[2:].abs().max() > 1e-8 and expected[2:].abs().max() == 0:
        raise CheckFailed("a gradient reaches ref_chosen / ref_rejected: the reference is frozen, its log-probs are constants")
    if got.shape == expected.shape and got[:2].abs().max() == 0 and expected[:2].abs().max() > 0:
        raise CheckFailed("no gradient reaches pi_chosen / pi_rejected: keep the loss a tensor computed from them (no .item(), "
                          "no torch.no_grad(), no detach on the policy's side)")
    compare_tensors(got, expected, 1e-6, 1e-4, "gradient of the loss with respect to (pi_chosen, pi_rejected, ref_chosen, ref_rejected)")


def _loss_variant(kind: str):
    def dpo_loss(pi_c, pi_r, ref_c, ref_r, beta):
        if kind != "ref_grad":
            ref_c, ref_r = ref_c.detach(), ref_r.detach()
        c, r = pi_c - ref_c, pi_r - ref_r  # (B,) log-ratios
        z = (c - r) * (1.0 if kind == "no_beta_loss" else beta)
        if kind == "swapped":
            z = -z
        if kind == "no_log":
            loss = -torch.sigmoid(z).mean()
        elif kind == "overflow":
            loss = -torch.log(torch.sigmoid(z)).mean()
        elif kind == "softplus_wrong":  # log(1 + exp(-z)) written out: exp overflows to inf for large -z
            loss = torch.log(1 + torch.exp(-z)).mean()
        elif kind == "sum":
            loss = -F.logsigmoid(z).sum()
        else:
            loss = -F.logsigmoid(z).mean()
        k = 1.0 if kind == "no_beta_rewards" else beta
        return loss, k * c.detach(), k * r.detach()
    return dpo_loss


_LOG_SIGMOID = ("−log(σ(x)) overflows: σ(−1000) rounds to 0 and log 0 = −inf (and log(1 + exp(−x)) overflows in exp): use "
                "-F.logsigmoid(x), which is exact for any margin")

register(Exercise(
    id="dpo.dpo_loss",
    signature="dpo_loss(pi_chosen: Tensor[B], pi_rejected: Tensor[B], ref_chosen: Tensor[B], ref_rejected: Tensor[B], beta: float) -> "
              "(loss, chosen_rewards, rejected_rewards)  # loss = mean −log σ(β·((pi_c − ref_c) − (pi_r − ref_r))), rewards β·(pi − ref); "
              "the reference is frozen: no gradient reaches ref_chosen / ref_rejected",
    reference=ref.dpo_loss,
    points=2,
    probes=[
        Probe("B=5, beta=0.1", _loss_inputs(5, 0.1), compare=_loss_compare),
        Probe("B=3, beta=0.5", _loss_inputs(3, 0.5, spread=1.0), compare=_loss_compare),
        Probe("policy = reference: loss ln 2 = 0.6931, rewards 0", _loss_inputs(4, 0.2, equal_to_ref=True), compare=_loss_compare),
        Probe("margins of ±1000 (β·Δ), beta=0.25", _loss_inputs(4, 0.25, margin=1000.0), compare=_loss_compare,
              hint=_LOG_SIGMOID),
        Probe("gradients reach the policy's log-probs, not the reference's", _loss_inputs(6, 0.3), run=_loss_grads,
              compare=_grad_compare),
    ],
    mistakes=[
        Mistake("chosen and rejected are swapped (or the sign is reversed): the loss is −log σ(β·(chosen log-ratio − rejected "
                "log-ratio)), small when the chosen response gained more probability than the rejected one", _loss_variant("swapped")),
        Mistake("β belongs inside the sigmoid: −log σ(β·((pi_c − ref_c) − (pi_r − ref_r)))", _loss_variant("no_beta_loss")),
        Mistake("the implicit rewards are β·(pi − ref), β included (β·(pi_chosen − ref_chosen) and β·(pi_rejected − ref_rejected))",
                _loss_variant("no_beta_rewards")),
        Mistake("the reference is frozen: detach ref_chosen and ref_rejected (ref_chosen.detach()) so that no gradient reaches them",
                _loss_variant("ref_grad")),
        Mistake("the loss is −log σ(x), not −σ(x): without the log it is not the Bradley–Terry likelihood, and its gradient vanishes "
                "for pairs that are far wrong", _loss_variant("no_log")),
        Mistake(_LOG_SIGMOID, _loss_variant("overflow")),
        Mistake(_LOG_SIGMOID, _loss_variant("softplus_wrong")),
        Mistake("average over the B pairs (.mean()), don't sum", _loss_variant("sum")),
    ],
))


# ----------------------------------------------------------------------------- reward_accuracy
def _acc_inputs(B: int, ties: int = 0, all_zero: bool = False):
    def make(g):
        if all_zero:
            return torch.zeros(B), torch.zeros(B)
        c, r = randn(g, B), randn(g, B)
        r[:ties] = c[:ties]  # exact ties
        return c, r
    return make


def _acc_run(fn, c, r):
    out = fn(c, r)
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        return ("tensor", float(out.item()))  # one number, but a tensor: said so in compare
    return out


def _acc_compare(got, expected, args):
    if isinstance(got, tuple) and len(got) == 2 and got[0] == "tensor":
        raise CheckFailed(f"expected a Python float, got a one-element tensor ({got[1]:.4g}): return .item() of it")
    if isinstance(got, bool) or not isinstance(got, (float, int)):
        raise CheckFailed(f"expected a Python float (a fraction of the pairs), got {describe(got)}")
    if not math.isclose(float(got), expected, abs_tol=1e-6):
        raise CheckFailed(f"accuracy is {float(got):.6g}, expected {expected:.6g}")


def _acc_variant(kind: str):
    def reward_accuracy(c, r):
        if kind == "ge":
            return (c >= r).float().mean().item()
        if kind == "swapped":
            return (c < r).float().mean().item()
        if kind == "count":
            return float((c > r).sum().item())
        return (c > r).float().mean().item()
    return reward_accuracy


register(Exercise(
    id="dpo.reward_accuracy",
    signature="reward_accuracy(chosen_rewards: Tensor[B], rejected_rewards: Tensor[B]) -> float  # fraction with chosen strictly greater",
    reference=ref.reward_accuracy,
    points=1,
    probes=[
        Probe("B=7, no ties", _acc_inputs(7), run=_acc_run, compare=_acc_compare),
        Probe("B=9, three exact ties (a tie is not a win)", _acc_inputs(9, ties=3), run=_acc_run, compare=_acc_compare),
        Probe("at initialisation every reward is 0: accuracy 0", _acc_inputs(5, all_zero=True), run=_acc_run, compare=_acc_compare),
    ],
    mistakes=[
        Mistake("strictly greater: chosen_rewards > rejected_rewards, not >=. At initialisation (policy = reference) every reward is 0, "
                "and >= would report 100 % before any training", _acc_variant("ge")),
        Mistake("a pair is right when the CHOSEN reward is the larger: chosen_rewards > rejected_rewards", _acc_variant("swapped")),
        Mistake("return the fraction of pairs (.float().mean()), not the count", _acc_variant("count")),
    ],
))
