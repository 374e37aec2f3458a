"""One optimisation step, and the pieces around it: AdamW parameter groups, the learning-rate
schedule, gradient accumulation, mixed precision and compilation.

    batches --forward (autocast)--> loss / n --backward (scaled)--> grads (summed over n)
            --unscale, clip--> AdamW step (skipped by the scaler if a grad is inf/nan)

* `lr_at`: linear warmup, then cosine decay to `min_lr` (Loshchilov & Hutter 2017, as GPT-3).
* `param_groups`: weight decay on matrices only (Loshchilov & Hutter 2019, "Decoupled weight decay").
* `adamw_step`: one AdamW update written out on plain tensors (what `torch.optim.AdamW` computes;
  `make_optimizer` still uses torch's fused kernel, this is for reading and for exercise 07.4).
* `train_step`: one optimizer step over one or more micro-batches; `Trainer` in llmlab.train uses it.
* `resolve_amp_dtype`, `maybe_compile`: bf16/fp16 autocast where the device has it, and
  torch.compile where it can work (else a warning and eager mode).

Left out on purpose: other optimizers (Lion, Muon, Adafactor), ZeRO sharding, learning-rate finders.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from llmlab.device import bf16_is_fast, supports_bf16, warn_if_bf16_slow

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def lr_at(step: int, *, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """The learning rate of optimizer step `step` (0-based).

    step < warmup_steps:              max_lr * (step + 1) / warmup_steps   (never 0: step 0 learns too)
    warmup_steps <= step <= max_steps: cosine from max_lr (at warmup_steps) down to min_lr (at max_steps)
    step > max_steps:                 min_lr

    >>> lr_at(0, max_lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=100)
    0.1
    >>> lr_at(55, max_lr=1.0, min_lr=0.0, warmup_steps=10, max_steps=100)  # half way: the cosine is at 0
    0.5
    """
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps={warmup_steps}: expected >= 0")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:  # the cosine has reached min_lr at max_steps (and avoids 0/0 when warmup == max)
        return min_lr
    ratio = (step - warmup_steps) / (max_steps - warmup_steps)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices decay, everything else does not.

    Weight decay shrinks a weight towards 0 each step. That is a sensible prior for the
    matrices that mix channels (Linear weights, and the token embedding, which is also the
    output layer when tied). It is not for biases and norm gains (a norm's gain pulled
    towards 0 fights the normalisation) nor for learned positions: `wpe` is a per-position
    bias added to the residual stream, not a map between channels, so we treat it like a bias.

    The rule is by shape (dim >= 2 decays) with one exception *by name*: a parameter whose
    name ends in `wpe.weight` (the course GPT's `transformer.pos.wpe.weight`). A model that
    names its position table otherwise gets it decayed. nanoGPT's `configure_optimizers`
    decays every tensor with dim >= 2, wpe included (GPT-2's choice is not published); this
    is the course's choice, not a rule of the field.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # tied weights appear once
        if not p.requires_grad:
            continue
        if p.dim() >= 2 and not name.endswith("wpe.weight"):
            decay.append(p)
        else:
            no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw_step(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int, *,
               lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               weight_decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One AdamW step on one tensor of any shape, as `torch.optim.AdamW` computes it; returns new
    tensors `(param, exp_avg, exp_avg_sq)` and leaves its inputs unchanged.

    `step` is the number of this step, counted from 1 (the first step has zero state,
    `exp_avg = exp_avg_sq = zeros_like(param)`). With t = step, (b1, b2) = betas:

        p <- p - lr * weight_decay * p          decoupled decay, before the Adam update, scaled by lr
        m <- b1 * m + (1 - b1) * g              running mean of the gradient
        v <- b2 * v + (1 - b2) * g**2           running mean of its square
        m_hat = m / (1 - b1**t), v_hat = v / (1 - b2**t)      bias correction (the state starts at 0)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    >>> p, m, v = adamw_step(torch.tensor([1.0]), torch.tensor([2.0]), torch.zeros(1), torch.zeros(1), 1, lr=0.1, weight_decay=0.0)
    >>> round(p.item(), 6), round(m.item(), 6), round(v.item(), 6)  # step 1 moves by lr * sign(g)
    (0.9, 0.2, 0.004)
    """
    beta1, beta2 = betas
    param = param * (1 - lr * weight_decay)
    exp_avg = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m_hat = exp_avg / (1 - beta1 ** step)
    v_hat = exp_avg_sq / (1 - beta2 ** step)
    param = param - lr * m_hat / (v_hat.sqrt() + eps)
    return param, exp_avg, exp_avg_sq


def fused_available(device: torch.device) -> bool:
    """Fused AdamW (one kernel for all parameters) runs on CUDA, and on the CPU since torch 2.4."""
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        major, minor = (int(x) for x in torch.__version__.split(".")[:2])
        return (major, minor) >= (2, 4)
    return False


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                   device: torch.device | None = None) -> torch.optim.AdamW:
    """AdamW over `param_groups`, fused where the device has a fused kernel, else foreach."""
    device = device or next(model.parameters()).device
    groups = param_groups(model, weight_decay)
    if fused_available(device):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def autocast_context(device_type: str, dtype: torch.dtype | None):
    """torch.autocast for bf16/fp16, or a no-op for fp32 (dtype None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Sequence[tuple[torch.Tensor, ...]],
               scaler: torch.amp.GradScaler | None = None, grad_clip: float = 1.0, amp_dtype: torch.dtype | None = None,
               loss_fn=None) -> torch.Tensor:
    """One optimizer step over `len(batches)` micro-batches (gradient accumulation).

    Each micro-batch's loss is divided by the number of micro-batches before `backward`, so
    the summed gradients are those of the mean loss over all of them: n micro-batches of b
    sequences give the same step as one batch of n*b. With a GradScaler (fp16), the loss is
    multiplied by the scale before backward and the grads divided by it before clipping; if
    any grad is inf/nan the scaler skips the step and lowers the scale. Under DDP, grads are
    only all-reduced after the last micro-batch (`no_sync` for the others).

    loss_fn(model, batch) -> 0-d loss says how a micro-batch becomes a loss (an objective's
    `loss`, llmlab.train.objectives); None = next-token prediction, `_, loss = model(x, y)`.

    Returns the mean loss as a detached 0-d tensor (call float() on it: that waits for the
    device, so the training loop only does it when it logs).
    """
    if not batches:
        raise ValueError("batches: expected at least one (x, y) micro-batch")
    optimizer.zero_grad(set_to_none=True)
    n = len(batches)
    total = torch.zeros((), device=batches[0][0].device)
    for i, batch in enumerate(batches):
        last = i == n - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast_context(batch[0].device.type, amp_dtype):
                if loss_fn is None:
                    x, y = batch
                    _, loss = model(x, y)
                else:
                    loss = loss_fn(model, batch)
            total += loss.detach().float()
            loss = loss / n
            (scaler.scale(loss) if scaler is not None else loss).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)  # grads back to their true size before clipping
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)  # skipped when unscale_ found inf/nan grads
        scaler.update()
    else:
        optimizer.step()
    return total / n


# ----------------------------------------------------------------------------- speed: precision and compilation
def resolve_amp_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """"auto" = bf16 on GPUs where it is fast, fp16 (with a scaler) on older GPUs, fp32 elsewhere.
    "bf16" where it runs but is slow (a CPU without bf16 matrix units) warns once, with the measurement."""
    if name == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if bf16_is_fast(device) else torch.float16
    if name == "bf16":
        if not supports_bf16(device):
            raise ValueError(f"dtype='bf16': bf16 autocast is not supported on {device}; use 'fp16' (a GPU without bf16) or 'fp32'")
        warn_if_bf16_slow(device)
    return DTYPES[name]


def compile_support(device: torch.device, platform: str = sys.platform) -> tuple[bool, str]:
    """Can torch.compile work here? (ok, reason when not)."""
    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile"
    if platform == "win32":
        return False, "torch.compile is not supported on Windows by this course"
    if device.type == "mps":
        return False, "torch.compile is experimental on MPS"
    if device.type == "cpu" and not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c):
        return False, "no C++ compiler (g++ or clang++) was found, and its CPU backend needs one"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False, "Triton is not installed, and its GPU backend needs it"
    return True, ""


def maybe_compile(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    ok, why = compile_support(device)
    if not ok:
        warnings.warn(f"compile=True: {why}; training in eager mode instead", stacklevel=3)
        return model
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True  # a graph that fails to compile runs eagerly
    return torch.compile(model)
