"""Checks for chapter 07, training: `training.get_batch`, `training.lr_at`,
`training.train_step` (one optimizer step with gradient accumulation) and `training.adamw_step`
(one AdamW update by hand).

`get_batch` is random, so its probes check properties rather than values: the windows are
contiguous pieces of the data with y one step ahead of x; thousands of windows drawn from
a 13-token corpus cover every valid start (0 … N-T-1) and none beyond, in proportions a
chi-square test accepts; and the same seeded generator gives the same batch whatever the
global seed. The corpus's tokens are all different (a random permutation), so a window
can be located in it from its first token.

`train_step` runs on a one-layer GPT (V=11, T=6, C=12, H=3) with plain SGD, whose update
is the gradient itself (scaled by lr), so a gradient that is n times too large, or that
of one micro-batch only, changes the parameters visibly.

`adamw_step` runs on float64 tensors and compares its three outputs separately and tightly; its
reference equals torch.optim.AdamW to ~1e-16 (tests/test_adamw_step.py). A large eps (1e-3) makes
"eps inside the root" visible (at eps = 1e-8 it moves the param by only ~1e-9); "decay after the
update" differs by lr² · wd · update, ~1e-5 at lr = 0.01, wd = 0.1, far above the tolerance. References: llmlab.text.get_batch, llmlab.train.optim.lr_at,
llmlab.train.optim.train_step, llmlab.train.optim.adamw_step.
"""

from __future__ import annotations

import math

import torch

from llmlab.checks.core import CheckFailed, Exercise, Mistake, Probe, close, describe, is_real_tensor, register
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.text import batches as data_ref
from llmlab.train import optim as optim_ref


# ----------------------------------------------------------------------------- get_batch
def _corpus(g: torch.Generator, N: int) -> torch.Tensor:
    return torch.randperm(500, generator=g)[:N]  # N different token ids: a window is found by its first token


def _windows(data: torch.Tensor, T: int, out) -> dict:
    """Properties of one batch: plain values, so the reference and a learner compare exactly."""
    if not isinstance(out, (tuple, list)) or len(out) != 2 or not all(is_real_tensor(t) for t in out):
        raise CheckFailed(f"expected a pair (x, y) of tensors, got {type(out).__name__}")
    x, y = out
    props = {"x shape": tuple(x.shape), "y shape": tuple(y.shape), "dtype": str(x.dtype), "y dtype": str(y.dtype)}
    if x.dim() != 2 or y.shape != x.shape or x.size(1) != T:
        return props
    where = {int(v): i for i, v in enumerate(data.tolist())}
    starts = [where.get(int(row[0]), -1) for row in x]
    ok_x = all(s >= 0 and s + T <= len(data) and torch.equal(row, data[s : s + T]) for s, row in zip(starts, x))
    ok_y = ok_x and all(s + T + 1 <= len(data) and torch.equal(row, data[s + 1 : s + T + 1]) for s, row in zip(starts, y))
    props.update({"x windows": ok_x, "y next": ok_y, "starts": starts})
    return props


def _batch_shape(fn, data, T, B):
    props = _windows(data, T, fn(data, T, B, torch.Generator().manual_seed(11)))
    props.pop("starts", None)
    return props


def _coverage(fn, data, T, B):
    """Draw B windows from a tiny corpus: every valid start should occur, about equally often."""
    try:
        out = fn(data, T, B, torch.Generator().manual_seed(12))
    except (IndexError, RuntimeError) as e:
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
    props = _windows(data, T, out)
    starts = props.pop("starts", None)
    if not starts or not props.get("x windows"):
        return props
    n_valid = len(data) - T
    counts = torch.bincount(torch.tensor(starts).clamp(min=0), minlength=n_valid + 1).double()
    expected = len(starts) / n_valid
    chi2 = ((counts[:n_valid] - expected) ** 2 / expected).sum().item()
    # df = n_valid - 1 = 8; P(chi2 > 45) < 1e-6 for a uniform sampler, so a correct answer
    # fails by chance less than once in a million; every non-uniform sampler we know scores > 100
    props.update({"smallest start": min(starts), "largest start": max(starts), "distinct starts": len(set(starts)), "uniform": chi2 < 45.0})
    return props


def _reproducible(fn, data, T, B):
    """Same seed, same batch (whatever the global RNG); another seed, another batch."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        a = fn(data, T, B, torch.Generator().manual_seed(5))
        torch.manual_seed(2)
        b = fn(data, T, B, torch.Generator().manual_seed(5))
        c = fn(data, T, B, torch.Generator().manual_seed(6))
        none = fn(data, T, B)
    same = all(torch.equal(u, v) for u, v in zip(a, b))
    other = not all(torch.equal(u, v) for u, v in zip(a, c))
    return {"same seed, same batch": same, "other seed, other batch": other, "works without a generator": tuple(none[0].shape) == (B, T)}


MESSAGES = {
    "error": "get_batch failed with {got} while drawing {B} windows of block_size={T} from only {N} tokens (so every start occurs). "
             "Does a window run past the end? The last valid start is N - T - 1 = {last}: its target y ends at the last token",
    "x shape": "x has shape {got}, expected {expected} (batch_size, block_size)",
    "y shape": "y has shape {got}, expected {expected}, the same as x",
    "dtype": "x has dtype {got}, expected {expected} (token ids index an embedding)",
    "y dtype": "y has dtype {got}, expected {expected}",
    "x windows": "each row of x should be block_size consecutive tokens of data (data[s : s + T])",
    "y next": "y should be x shifted one step ahead: y[b] = data[s + 1 : s + T + 1], the token after each token of x",
    "smallest start": "over {B} windows the smallest start was {got}, expected {expected}: the first window of the data must be possible",
    "largest start": "over {B} windows the largest start was {got}; with N={N} tokens and block_size={T} it should be N - T - 1 = {expected}",
    "distinct starts": "only {got} of the {expected} valid starts (0 … N - T - 1) ever occurred in {B} windows: every start should be possible",
    "uniform": "every valid start occurred, but not equally often (a chi-square test rejects uniformity): each start in 0 … N - T - 1 should be equally likely",
    "same seed, same batch": "two calls with generators of the same seed gave different batches: draw the starts with torch.randint(..., generator=generator)",
    "other seed, other batch": "generators with different seeds gave the same batch: the starts must come from the generator",
    "works without a generator": "calling get_batch(data, block_size, batch_size) without a generator should work (generator=None uses torch's global RNG)",
}


def _props_compare(got, expected, args):
    data, T, B = args
    N = len(data)
    if not isinstance(got, dict):
        raise CheckFailed(f"unexpected output {got!r}")
    for key in ["error"] * ("error" in got) + list(expected) + [k for k in got if k not in expected]:
        if got.get(key) != expected.get(key):
            fmt = dict(got=got.get(key), expected=expected.get(key), B=B, T=T, N=N, last=N - T - 1)
            raise CheckFailed(MESSAGES.get(key, key + ": got {got}, expected {expected}").format(**fmt))


def _gb_inputs(N, T, B):
    return lambda g: (_corpus(g, N), T, B)


def _gb(starts_fn=None, shift=1, swap=False):
    """A get_batch whose starts come from starts_fn(N, T, B, generator)."""
    def get_batch(data, block_size, batch_size, generator=None):
        N, T = len(data), block_size
        starts = starts_fn(N, T, batch_size, generator) if starts_fn else torch.randint(N - T, (batch_size,), generator=generator)
        x = torch.stack([data[s : s + T] for s in starts.tolist()])
        y = torch.stack([data[s + shift : s + shift + T] for s in starts.tolist()])
        return (y, x) if swap else (x, y)
    return get_batch


register(Exercise(
    id="training.get_batch",
    signature="get_batch(data: LongTensor[N], block_size: int, batch_size: int, generator: torch.Generator | None = None) -> (x, y), both LongTensor[B, T]",
    reference=data_ref.get_batch,
    points=2,
    probes=[
        Probe("x is a batch of windows of the data, y the same windows one token later", _gb_inputs(200, 7, 5), run=_batch_shape, compare=_props_compare),
        Probe("every valid window start (0 … N-T-1) occurs, equally often", _gb_inputs(13, 4, 4000), run=_coverage, compare=_props_compare),
        Probe("a seeded generator makes batches reproducible", _gb_inputs(50, 6, 3), run=_reproducible, compare=_props_compare),
    ],
    mistakes=[
        Mistake("y must be the *next* tokens: y = data[s + 1 : s + 1 + T], not the same window as x", _gb(shift=0)),
        Mistake("you return (y, x): the inputs x come first, the targets y (one step later) second", _gb(swap=True)),
        Mistake("the last window is never drawn: torch.randint(high, ...) excludes `high`, so use high = len(data) - block_size",
                _gb(lambda N, T, B, g: torch.randint(N - T - 1, (B,), generator=g))),
        Mistake("a window starting at len(data) - block_size needs a target one past the end: starts must be < len(data) - block_size",
                _gb(lambda N, T, B, g: torch.randint(N - T + 1, (B,), generator=g))),
        Mistake("windows may start anywhere, not only at multiples of block_size: draw the start itself with torch.randint(len(data) - block_size, ...)",
                _gb(lambda N, T, B, g: torch.randint((N - 1) // T, (B,), generator=g) * T)),
        Mistake("every row got the same window: draw batch_size starts, torch.randint(high, (batch_size,), generator=generator)",
                _gb(lambda N, T, B, g: torch.randint(N - T, (1,), generator=g).expand(B))),
        Mistake("rounding a uniform float gives the first and last start half the chance of the others: use torch.randint",
                _gb(lambda N, T, B, g: (torch.rand(B, generator=g) * (N - T - 1)).round().long())),
        Mistake("the generator is ignored: pass generator=generator to torch.randint so a seed reproduces the batch",
                _gb(lambda N, T, B, g: torch.randint(N - T, (B,)))),
    ],
))


# ----------------------------------------------------------------------------- lr_at
SCHEDULES = {
    # (max_lr, min_lr, warmup_steps, max_steps), steps to ask about: both sides of each boundary
    "warmup 10, cosine to step 100": ((6e-4, 6e-5, 10, 100), [0, 1, 4, 8, 9, 10, 11, 30, 55, 77, 99, 100, 101, 150]),
    "no warmup": ((1.0, 0.1, 0, 20), [0, 1, 5, 10, 15, 19, 20, 21, 40]),
    "min_lr = 0, short run": ((3e-3, 0.0, 5, 12), list(range(16))),
}


def _lr_curve(fn, name):
    (max_lr, min_lr, warmup, max_steps), steps = SCHEDULES[name]
    out = []
    for s in steps:
        v = fn(s, max_lr=max_lr, min_lr=min_lr, warmup_steps=warmup, max_steps=max_steps)
        if isinstance(v, torch.Tensor):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CheckFailed(f"lr_at({s}, ...) returned {type(v).__name__}, expected a float")
        out.append(float(v))
    return torch.tensor(out, dtype=torch.float64)


def _lr_compare(got, expected, args):
    (name,) = args
    (max_lr, min_lr, warmup, max_steps), steps = SCHEDULES[name]
    bad = ((got - expected).abs() > 1e-12 + 1e-6 * expected.abs()).nonzero()
    if len(bad):
        i = int(bad[0])
        raise CheckFailed(f"with max_lr={max_lr}, min_lr={min_lr}, warmup_steps={warmup}, max_steps={max_steps}: "
                          f"lr_at({steps[i]}) = {got[i].item():.6g}, expected {expected[i].item():.6g}")


def _lr(warm="ok", decay="cos", end="ok", after="ok"):
    def lr_at(step, *, max_lr, min_lr, warmup_steps, max_steps):
        if step < warmup_steps:
            return {"ok": max_lr * (step + 1) / warmup_steps, "zero": max_lr * step / warmup_steps,
                    "plus1": max_lr * (step + 1) / (warmup_steps + 1)}[warm]
        if step > max_steps and after == "ok":
            return min_lr
        span = max_steps if end == "span" else max_steps - warmup_steps
        ratio = (step - (0 if end == "span" else warmup_steps)) / max(span, 1)
        lo = 0.0 if end == "zero" else min_lr
        if decay == "linear":
            return max_lr - ratio * (max_lr - lo)
        if decay == "no_half":
            return lo + math.cos(math.pi * ratio) * (max_lr - lo)
        return lo + 0.5 * (1 + math.cos(math.pi * ratio)) * (max_lr - lo)
    return lr_at


register(Exercise(
    id="training.lr_at",
    signature="lr_at(step: int, *, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float",
    reference=optim_ref.lr_at,
    points=2,
    probes=[Probe(name, (lambda n: lambda g: (n,))(name), run=_lr_curve, compare=_lr_compare) for name in SCHEDULES],
    mistakes=[
        Mistake("warmup is off by one: step 0 must already learn, lr = max_lr * (step + 1) / warmup_steps (so step warmup_steps - 1 reaches max_lr)",
                _lr(warm="zero")),
        Mistake("warmup divides by warmup_steps, not warmup_steps + 1: lr = max_lr * (step + 1) / warmup_steps", _lr(warm="plus1")),
        Mistake("the decay should follow a cosine, min_lr + 0.5 * (1 + cos(pi * ratio)) * (max_lr - min_lr), not a straight line", _lr(decay="linear")),
        Mistake("the cosine goes from 1 to -1; the schedule needs 0.5 * (1 + cos(pi * ratio)), which goes from 1 to 0", _lr(decay="no_half")),
        Mistake("the decay must end at min_lr, not at 0: lr = min_lr + (cosine factor) * (max_lr - min_lr)", _lr(end="zero")),
        Mistake("the cosine must start at warmup_steps: ratio = (step - warmup_steps) / (max_steps - warmup_steps), "
                "which is 0 at the end of warmup and 1 at max_steps", _lr(end="span")),
        Mistake("after max_steps the learning rate stays at min_lr; your cosine comes back up", _lr(after="keep")),
    ],
))


# ----------------------------------------------------------------------------- train_step (gradient accumulation)
STEP_CFG = dict(vocab_size=11, block_size=6, n_layer=1, n_head=3, n_embd=12)


def _step_inputs(n_micro=3, b=2, grad_clip=0.0, stale=False, lr=0.5):
    def make(g):
        cfg = GPTConfig(**STEP_CFG)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            shapes = [p.shape for p in GPT(cfg).parameters()]
        weights = [randn_like(g, s) for s in shapes]
        batches = []
        for _ in range(n_micro):
            x = torch.randint(cfg.vocab_size, (b, cfg.block_size), generator=g)
            batches.append((x, torch.randint(cfg.vocab_size, (b, cfg.block_size), generator=g)))
        return weights, batches, grad_clip, lr, stale
    return make


def randn_like(g, shape):
    return torch.randn(*shape, generator=g) * 0.4  # large enough that the logits are far from uniform


def _make_model(weights):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = GPT(GPTConfig(**STEP_CFG))
    with torch.no_grad():
        for p, w in zip(m.parameters(), weights):
            p.copy_(w)
    return m.train()


def _run_step(fn, weights, batches, grad_clip, lr, stale):
    m = _make_model(weights)
    if stale:  # gradients left over from an earlier step must not leak into this one
        for p in m.parameters():
            p.grad = torch.full_like(p, 3.0)
    opt = torch.optim.SGD(m.parameters(), lr=lr)
    loss = fn(m, opt, batches, grad_clip)
    return m, loss


def _params_after(fn, *args):
    m, _ = _run_step(fn, *args)
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def _loss_returned(fn, *args):
    _, loss = _run_step(fn, *args)
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise CheckFailed(f"train_step returned a tensor of shape {tuple(loss.shape)}, expected the mean loss (a float or a 0-d tensor)")
        loss = loss.item()
    if isinstance(loss, bool) or not isinstance(loss, (int, float)):
        raise CheckFailed(f"train_step returned {type(loss).__name__}, expected the mean loss as a float (loss.item()) or a 0-d tensor")
    return torch.tensor([float(loss)], dtype=torch.float64)


def _reference_step(model, optimizer, batches, grad_clip=0.0):
    return optim_ref.train_step(model, optimizer, batches, grad_clip=grad_clip)


def _step(scale="mean", zero="start", step="end", ret="mean", clip="end"):
    def train_step(model, optimizer, batches, grad_clip=0.0):
        n = len(batches)
        if zero == "start":
            optimizer.zero_grad()
        losses = []
        for x, y in batches:
            if zero == "loop":
                optimizer.zero_grad()
            _, loss = model(x, y)
            losses.append(loss.item())
            (loss / n if scale == "mean" else loss).backward()
            if clip == "loop" and grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if step == "loop":
                optimizer.step()
        if clip == "end" and grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if step == "end":
            optimizer.step()
        return {"mean": sum(losses) / n, "last": losses[-1], "sum": sum(losses)}[ret]
    return train_step


register(Exercise(
    id="training.train_step",
    signature="train_step(model, optimizer, batches: list[(x, y)], grad_clip: float = 0.0) -> float  "
              "# one optimizer step over all micro-batches; returns their mean loss",
    reference=_reference_step,
    points=3,
    probes=[
        Probe("3 micro-batches make the same step as one batch of their mean loss", _step_inputs(), run=_params_after,
              compare=close(1e-5, 1e-4, "parameters after the step")),
        Probe("returns the mean loss over the micro-batches", _step_inputs(), run=_loss_returned, compare=close(1e-5, 1e-5, "returned loss")),
        Probe("gradients left over from before the call are cleared", _step_inputs(stale=True), run=_params_after,
              compare=close(1e-5, 1e-4, "parameters after the step")),
        Probe("the total gradient norm is clipped to grad_clip", _step_inputs(grad_clip=0.05, lr=5.0), run=_params_after,
              compare=close(1e-5, 1e-4, "parameters after the step")),
        Probe("a single micro-batch (no accumulation)", _step_inputs(n_micro=1, b=3), run=_params_after,
              compare=close(1e-5, 1e-4, "parameters after the step")),
    ],
    mistakes=[
        Mistake("divide each micro-batch's loss by the number of micro-batches before backward(): "
                "the gradients add up, so without it they are n times too large", _step(scale="sum")),
        Mistake("zero the gradients once, before the loop: zeroing inside it throws away all but the last micro-batch's gradient", _step(zero="loop")),
        Mistake("call optimizer.step() once, after the loop: stepping per micro-batch makes n small steps instead of one accumulated one", _step(step="loop")),
        Mistake("gradients add up across calls: call optimizer.zero_grad() at the start of the step", _step(zero="never")),
        Mistake("return the mean of the micro-batch losses, not the last one", _step(ret="last")),
        Mistake("return the mean of the micro-batch losses, not their sum", _step(ret="sum")),
        Mistake("clip once, after all micro-batches have added their gradients (clipping inside the loop clips partial sums)", _step(clip="loop")),
        Mistake("clip the total gradient norm before optimizer.step(): torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)", _step(clip="never")),
    ],
))


# ----------------------------------------------------------------------------- adamw_step
def _adamw_inputs(shape=(3, 4), step=1, fresh=True, grad_scale=1.0, lr=1e-2, **hp):
    """(param, grad, exp_avg, exp_avg_sq, step, hyper-parameters), all float64: the state is zero
    on step 1 and random (exp_avg_sq >= 0, as a running mean of squares is) on a later step."""
    hp = {"lr": lr, "weight_decay": 0.1, **hp}

    def make(g):
        def r(scale=1.0):
            return torch.randn(*shape, generator=g, dtype=torch.float64) * scale
        param, grad = r(), r(grad_scale)
        if fresh:
            m, v = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
        else:
            m, v = r(0.3 * grad_scale), r(0.5 * grad_scale) ** 2
        return param, grad, m, v, step, hp
    return make


def _adamw_run(fn, param, grad, m, v, step, hp):
    return fn(param, grad, m, v, step, **hp)


def _adamw_keeps(fn, param, grad, m, v, step, hp):
    """The outputs, or None when the call changed any of its four input tensors in place."""
    inputs = (param, grad, m, v)
    before = [x.clone() for x in inputs]
    out = fn(param, grad, m, v, step, **hp)
    return out if all(torch.equal(x, b) for x, b in zip(inputs, before)) else None


ADAMW_OUTPUTS = ("the new param", "exp_avg", "exp_avg_sq")


def _adamw_compare(got, expected, args):
    """Each of the three outputs on its own, named. float64 inputs: the reference equals
    torch.optim.AdamW to ~1e-16 (tests/test_adamw_step.py) and any correct rewriting of the
    formula to ~1e-15, while every known mistake is off by > 1e-7 somewhere; atol 1e-10 +
    rtol 1e-9 sits between the two with margins of 1e5 and 1e3 (rtol for the large gradients,
    whose exp_avg_sq is ~1e6)."""
    if got is None and expected is None:  # a known mistake that also mutates: diagnosis matches it
        return
    if got is None:
        raise CheckFailed("your function changed an input tensor in place (param, grad, exp_avg or exp_avg_sq); "
                          "compute new tensors (p = p * (1 - lr * wd), not p.mul_(...)) or work on clones")
    if expected is None:
        raise CheckFailed("your function leaves its inputs unchanged here, unlike this mistake")
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise CheckFailed(f"expected a tuple (param, exp_avg, exp_avg_sq) of 3 tensors, got {describe(got)}")
    step, hp = args[4], args[5]
    where = f" (step={step}, " + ", ".join(f"{k}={v}" for k, v in hp.items()) + ")"
    for what, g_out, e_out in zip(ADAMW_OUTPUTS, got, expected):
        try:
            close(1e-10, 1e-9, what)(g_out, e_out)
        except CheckFailed as f:
            raise CheckFailed(f.message + where) from None


def _adamw(bias="t", decay="decoupled", when="before", eps_in=False, square=True, lr_decay=True):
    """A wrong AdamW step: one switch away from the reference."""
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        b1, b2 = betas
        if decay == "l2":
            grad = grad + weight_decay * param
        factor = 1 - lr * weight_decay if lr_decay else 1 - weight_decay
        if decay == "decoupled" and when == "before":
            param = param * factor
        m = b1 * exp_avg + (1 - b1) * grad
        v = b2 * exp_avg_sq + (1 - b2) * (grad * grad if square else grad)
        t = {"t": step, "t-1": step - 1}.get(bias, step)
        m_hat = m / (1 - b1 ** t) if bias != "none" else m
        v_hat = v / (1 - b2 ** t) if bias != "none" else v
        denom = (v_hat + eps).sqrt() if eps_in else v_hat.sqrt() + eps
        param = param - lr * m_hat / denom
        if decay == "decoupled" and when == "after":
            param = param * factor
        return param, m, v
    return adamw_step


register(Exercise(
    id="training.adamw_step",
    signature="adamw_step(param, grad, exp_avg, exp_avg_sq, step: int, *, lr: float, betas=(0.9, 0.999), eps=1e-8, "
              "weight_decay=0.01) -> (param, exp_avg, exp_avg_sq)  # new tensors; step counts from 1",
    reference=optim_ref.adamw_step,
    points=3,
    probes=[
        Probe("the first step (step=1) from zero state", _adamw_inputs(), run=_adamw_run, compare=_adamw_compare),
        Probe("a later step (step=7) from a running state", _adamw_inputs(step=7, fresh=False, lr=0.1), run=_adamw_run, compare=_adamw_compare),
        Probe("weight_decay=0 is plain Adam", _adamw_inputs(step=4, fresh=False, weight_decay=0.0), run=_adamw_run, compare=_adamw_compare),
        Probe("other betas and a large eps", _adamw_inputs(step=3, fresh=False, grad_scale=0.01, betas=(0.8, 0.95), eps=1e-3),
              run=_adamw_run, compare=_adamw_compare),
        Probe("large gradients (the step size does not grow with them)", _adamw_inputs(step=5, fresh=False, grad_scale=1e3, lr=0.05),
              run=_adamw_run, compare=_adamw_compare),
        Probe("a 1-D parameter (a bias)", _adamw_inputs(shape=(7,), step=2, fresh=False), run=_adamw_run, compare=_adamw_compare),
        Probe("leaves its inputs unchanged", _adamw_inputs(step=3, fresh=False), run=_adamw_keeps, compare=_adamw_compare),
    ],
    mistakes=[
        Mistake("divide by the bias corrections: m_hat = exp_avg / (1 - beta1 ** step), v_hat = exp_avg_sq / (1 - beta2 ** step) "
                "(the state starts at 0, so without them the early steps are far too small)", _adamw(bias="none")),
        Mistake("that is L2 regularisation (weight_decay * param added to the gradient, so it goes through m and v); AdamW decouples it: "
                "param = param * (1 - lr * weight_decay), and the gradient stays as it is", _adamw(decay="l2")),
        Mistake("decay the parameter before the Adam update, from the old value: param * (1 - lr * weight_decay) first, then subtract the step",
                _adamw(when="after")),
        Mistake("eps goes outside the square root: m_hat / (sqrt(v_hat) + eps), not m_hat / sqrt(v_hat + eps)", _adamw(eps_in=True)),
        Mistake("step counts from 1: the bias corrections are 1 - beta ** step (with step - 1 the first step divides by 0)", _adamw(bias="t-1")),
        Mistake("exp_avg_sq is a running mean of the *squared* gradient: beta2 * exp_avg_sq + (1 - beta2) * grad ** 2", _adamw(square=False)),
        Mistake("the decay is scaled by the learning rate: param * (1 - lr * weight_decay), not param * (1 - weight_decay)", _adamw(lr_decay=False)),
    ],
))
