"""Hook points: read or replace an activation inside a model without editing its code.

Interpretability starts with two moves: *caching* an activation (what does layer 2 hold at
token 5?) and *patching* one (run the model again with that activation swapped for another
run's, or for zeros, and see what changes). Modules that offer hook points pass each such
activation through `hook(self.hooks, point, x)`; `self.hooks` is a plain dict that stays empty
unless a run asks, so an unused hook point costs one dict lookup: no module call, no tensor op.

Names follow TransformerLens without its `hook_` prefix (its `attn.hook_z` is `attn.head_out` here);
for a GPT with layers i = 0 .. L-1:

    blocks.{i}.resid_pre       [B, T, C]     the residual stream entering block i
    blocks.{i}.attn_out        [B, T, C]     the attention branch's output (after c_proj)
    blocks.{i}.resid_mid       [B, T, C]     the stream between the attention sub-layer(s) and the MLP
    blocks.{i}.mlp_out         [B, T, C]     the MLP branch's output
    blocks.{i}.resid_post      [B, T, C]     the stream leaving block i (blocks.{i+1}.resid_pre)
    blocks.{i}.attn.pattern    [B, H, T, T]  the attention weights; asking for it runs that layer's slow path
    blocks.{i}.attn.head_out   [B, T, H, D]  each head's output, before c_proj mixes the heads

A block with cross-attention adds `blocks.{i}.cross_out` and `blocks.{i}.cross_attn.pattern` /
`.head_out` (pattern [B, H, T, Tk]). A name is the module's path, with GPT-2's `transformer.h.{i}`
written `blocks.{i}` (the one translation, in ALIASES); `hook_points(model)` lists them all.

    logits, acts = run_with_cache(model, idx, ["blocks.0.attn.pattern", "blocks.1.resid_post"])
    with patch(model, {"blocks.1.attn.head_out": zero_head(3)}):
        patched, _ = model(idx)

Left out on purpose: backward hooks (gradients), hook points on the embeddings and ln_f,
TransformerLens's per-head q/k/v points, caching to disk. `nn.Module.register_forward_hook`
sees a module's input and output; these points sit inside a forward, where no module boundary is.
References: Nanda & Bloom 2022 (TransformerLens); Meng et al. 2022 (activation patching).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

ALIASES = {"transformer.h.": "blocks."}  # module path prefix -> the name it is known by


def hook(hooks: dict[str, Callable], point: str, x: torch.Tensor) -> torch.Tensor:
    """x, or what the function installed at `point` makes of it: the identity while nothing is."""
    fn = hooks.get(point)
    return x if fn is None else fn(x)


def _name(path: str) -> str:
    for prefix, alias in ALIASES.items():
        if path.startswith(prefix):
            return alias + path[len(prefix):]
    return path


def hook_points(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Every hook point of `model`, block by block: {name: (module, point)}."""
    out = {}
    for path, m in model.named_modules():
        for point in getattr(m, "hook_points", ()):
            out[f"{_name(path)}.{point}" if path else point] = (m, point)
    return out


def _resolve(model: nn.Module, names: Iterable[str], what: str) -> dict[str, tuple[nn.Module, str]]:
    points = hook_points(model)
    unknown = [n for n in names if n not in points]
    if unknown:
        valid = ", ".join(points) if points else "none (the model has no hook points)"
        raise ValueError(f"{what}: unknown hook point(s) {', '.join(map(repr, unknown))}; valid names: {valid}")
    return {n: points[n] for n in names}


@contextmanager
def _installed(model: nn.Module, fns: dict[str, Callable], what: str) -> Iterator[None]:
    """Install fns[name] at each named point for the duration of the block, after whatever is
    installed there already (so a cache inside a patch records the patched value)."""
    points = _resolve(model, fns, what)
    saved = []
    try:
        for name, fn in fns.items():
            m, point = points[name]
            prev = m.hooks.get(point)
            saved.append((m, point, prev))
            m.hooks[point] = fn if prev is None else (lambda x, f=fn, p=prev: f(p(x)))
        yield
    finally:
        for m, point, prev in reversed(saved):
            if prev is None:
                m.hooks.pop(point, None)
            else:
                m.hooks[point] = prev


def run_with_cache(model: nn.Module, idx: torch.Tensor, names: str | Iterable[str] | None = None, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run model(idx, **kwargs) once -> (logits, {name: activation}) for the hook points in
    `names` (every point if None). The activations are the tensors of the forward itself
    (still in the graph when gradients are on); a point the forward does not reach is absent."""
    names = list(hook_points(model)) if names is None else [names] if isinstance(names, str) else list(dict.fromkeys(names))
    cache: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable:
        def fn(x: torch.Tensor) -> torch.Tensor:
            cache[name] = x
            return x
        return fn

    with _installed(model, {n: keep(n) for n in names}, "names"):
        out = model(idx, **kwargs)
    return (out[0] if isinstance(out, tuple) else out), cache


def _replacement(name: str, value: torch.Tensor | Callable) -> Callable:
    def fn(x: torch.Tensor) -> torch.Tensor:
        y = value(x) if callable(value) else value
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            got = f"shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"replacements[{name!r}]: expected a tensor of the activation's shape {tuple(x.shape)}, got {got}")
        return y.to(device=x.device, dtype=x.dtype)
    return fn


@contextmanager
def patch(model: nn.Module, replacements: dict[str, torch.Tensor | Callable]) -> Iterator[None]:
    """Within the `with` block, every forward of `model` uses, at each named point, the given
    tensor (same shape as the activation) or fn(activation) instead of the activation."""
    with _installed(model, {n: _replacement(n, v) for n, v in replacements.items()}, "replacements"):
        yield


def zero_head(head: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A replacement for an `attn.head_out` point [B, T, H, D] that zeroes one head (ablation)."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        if not 0 <= head < x.size(2):
            raise ValueError(f"head={head}: expected 0 <= head < H={x.size(2)}")
        return x.index_fill(2, torch.tensor([head], device=x.device), 0.0)  # (B, T, H, D)
    return fn
