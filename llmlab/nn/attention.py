"""Attention: every token looks at the others and takes a weighted average of them.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(D) + bias, masked) V      (Vaswani et al. 2017)

Written out step by step (`softmax`, `causal_mask`, `scaled_dot_product_attention`) and
then as a module, `MultiHeadAttention`, whose fast path calls PyTorch's fused
`torch.nn.functional.scaled_dot_product_attention` (FlashAttention on GPUs). Tests prove
that the two paths agree.

Self-attention takes q, k and v from the same tokens x; cross-attention (`cross=True`, the
decoder of an encoder-decoder) takes q from x and k, v from another sequence, the `memory`.
What a query may look at is the AND of three masks, merged with any additive bias into ONE
bias by `attention_bias` before either path runs: `causal` (no future keys), `attn_mask`
(True = may attend, as in F.scaled_dot_product_attention; torch.nn.MultiheadAttention's
attn_mask uses the opposite, True = not allowed) and `key_padding_mask` (True = padding,
never attended to, as torch.nn.MultiheadAttention). A query left with nothing to attend to gets
weights 0 and output 0 on both paths, never nan.

Grouped-query attention (Ainslie et al. 2023; Llama 2 70B, Mistral, SmolLM2): `n_kv_heads` < H
key/value heads, each shared by H / n_kv_heads query heads. The KV cache then holds n_kv_heads
heads, not H: the memory saving that is the point of it. Keys and values are widened to H heads
with `repeat_kv` just before the scores (on the fast path PyTorch's `enable_gqa` does the same
without the copy). n_kv_heads = 1 is multi-query attention (Shazeer 2019).

Positions are not this module's business: a `positions` object (see llmlab.nn.positional)
may rotate q and k (RoPE) or add a bias to the scores (ALiBi). A `KVCache` lets
generation reuse the keys and values of earlier tokens, and a cross-attention layer's
keys and values of the memory, which do not change while decoding.

Left out on purpose: sliding windows, a memory of another width
(PyTorch's kdim/vdim), float masks in `attn_mask` (additive biases come from `positions`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from llmlab.nn.hooks import hook

# F.scaled_dot_product_attention(..., enable_gqa=True) reads each key/value head for its group of
# query heads without copying them (torch >= 2.5); older torch gets repeat_kv on both paths.
SDPA_GQA = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp(x) / sum(exp(x)) along `dim`, stable for large inputs.

    Subtracting the max changes nothing mathematically (it cancels in the ratio) but
    keeps exp() from overflowing: softmax([1000, 1000]) is [0.5, 0.5], not nan.
    A row of only -inf has no answer (0 / 0 = nan, as torch.softmax); `attention_bias`
    keeps such rows away from it.
    """
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # an all -inf row: -inf - 0, not -inf - -inf
    e = (x - m).exp()
    return e / e.sum(dim=dim, keepdim=True)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Grouped-query attention's sharing (Ainslie et al. 2023): x[B, H_kv, T, D] -> [B, H_kv * n_rep, T, D],
    each key/value head repeated n_rep times consecutively, so query head j reads kv head j // n_rep.

    >>> repeat_kv(torch.arange(2.).view(1, 2, 1, 1), 3).flatten().tolist()
    [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    """
    if isinstance(n_rep, bool) or not isinstance(n_rep, int) or n_rep < 1:
        raise ValueError(f"n_rep={n_rep!r}: expected a positive integer (query heads per key/value head)")
    if x.dim() != 4:
        raise ValueError(f"x: expected shape (B, H_kv, T, D), got shape {tuple(x.shape)}")
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)  # (B, H_kv * n_rep, T, D)


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """BoolTensor[T, T], True where query i may attend to key j, i.e. j <= i.

    >>> causal_mask(3).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def offset_causal_mask(Tq: int, Tk: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The causal mask when the Tq queries are the *last* Tq of Tk positions (KV cache):
    query i sits at position Tk - Tq + i and may see keys j <= that."""
    return torch.ones(Tq, Tk, dtype=torch.bool, device=device).tril(diagonal=Tk - Tq)


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) + bias) with masked entries removed: [..., Tq, Tk], rows sum to 1."""
    D = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)  # (..., Tq, D) @ (..., D, Tk) -> (..., Tq, Tk)
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        # mask *before* softmax: a masked key must get exactly zero weight
        scores = scores.masked_fill(~mask, float("-inf"))
    return softmax(scores, dim=-1)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """q[..., Tq, D], k[..., Tk, D], v[..., Tk, Dv] -> [..., Tq, Dv].

    `mask` (bool, broadcastable to [..., Tq, Tk]): True = may attend, as in
    F.scaled_dot_product_attention (nn.MultiheadAttention's attn_mask: True = not allowed).
    Why 1/sqrt(D)? With unit-variance q and k, q.k has variance D; dividing keeps the
    scores near unit scale so softmax does not saturate into a one-hot.
    """
    return attention_weights(q, k, mask, bias) @ v  # (..., Tq, Tk) @ (..., Tk, Dv) -> (..., Tq, Dv)


def attention_bias(Tq: int, Tk: int, *, causal: bool = False, attn_mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None, dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Every mask and bias of one attention call as ONE additive bias, broadcastable to
    [B, H, Tq, Tk]: `bias` (ALiBi's, or 0) where the query may attend, -inf where it may not.

    A key is allowed when all masks allow it: `causal` (key j <= query i, the queries being the
    last Tq of Tk positions), `attn_mask` (bool, broadcastable to [B, H, Tq, Tk], True = may
    attend) and `key_padding_mask` (BoolTensor[B, Tk], True = padding).
    Returns (bias, empty). `empty` [.., Tq, 1] is True for a query left with nothing to attend
    to (a fully padded row, or a padded query under a causal mask); its row is left open, since
    softmax of a row of only -inf is 0/0 = nan (in the gradient too), and the caller sets its
    weights and output to 0. `empty` is None where no row can be empty (causal alone never
    empties one: query i always sees key i).
    """
    allowed = offset_causal_mask(Tq, Tk, device) if causal else None  # (Tq, Tk)
    if attn_mask is not None:
        allowed = attn_mask if allowed is None else allowed & attn_mask  # (.., Tq, Tk)
    if key_padding_mask is not None:
        real = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk): True = a real token
        allowed = real if allowed is None else allowed & real  # (B, .., Tq, Tk)
    base = bias.to(dtype) if bias is not None else None
    if allowed is None:
        return base, None
    empty = None
    if attn_mask is not None or key_padding_mask is not None:
        empty = ~allowed.any(dim=-1, keepdim=True)  # (.., Tq, 1)
        allowed = allowed | empty
    if base is None:
        base = torch.zeros((), dtype=dtype, device=device)
    return torch.where(allowed, base, float("-inf")), empty  # (.., Tq, Tk)


def _check_mask(name: str, m: torch.Tensor | None, shape: tuple[int, ...], meaning: str, exact: bool) -> None:
    if m is None:
        return
    fits = len(m.shape) <= len(shape) and all(a in (1, b) for a, b in zip(reversed(m.shape), reversed(shape)))  # broadcasts to `shape`
    ok = m.dtype == torch.bool and (tuple(m.shape) == shape if exact else fits)
    if not ok:
        want = "of shape" if exact else "broadcastable to"
        raise ValueError(f"{name}: expected a BoolTensor {want} {shape} ({meaning}), got {m.dtype} of shape {tuple(m.shape)}")


@dataclass
class KVCache:
    """Keys and values of the tokens seen so far, one entry per layer: [B, H_kv, T_past, D] (H_kv = H
    without grouped-query attention); `cross` holds each cross-attention layer's keys and values of the memory: [B, H_kv, Tk, D],
    projected from the memory of the first call and reused after it (a new memory needs a new cache).

    `k[layer]` and `v[layer]` are views of the filled part of a buffer with room to spare: appending a
    step's keys writes into the buffer, and only when it is full is a new one, twice as long, allocated
    and the old keys copied (so a run of T steps copies O(T) keys in all, where concatenating at every
    step would copy O(T^2))."""

    k: list[torch.Tensor | None] = field(default_factory=list)
    v: list[torch.Tensor | None] = field(default_factory=list)
    cross: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.length = 0  # positions already processed (set by the model after each forward)
        self._room: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # layer -> (k, v) buffers [B, H_kv, capacity, D]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append k, v [B, H_kv, T, D] to the layer's keys and values -> all of them, [B, H_kv, T_past + T, D]."""
        while len(self.k) <= layer:
            self.k.append(None)
            self.v.append(None)
        past_k, past_v = self.k[layer], self.v[layer]
        if past_k is None:  # the first call (the prompt): keep the tensors, no copy
            self.k[layer], self.v[layer] = k, v
            return k, v
        n, T = past_k.size(2), k.size(2)
        room = self._room.get(layer)
        fits = (room is not None and room[0].size(2) >= n + T and room[0].shape[:2] == k.shape[:2] and room[0].dtype == k.dtype
                and room[0].data_ptr() == past_k.data_ptr())  # past_k is still a view of this buffer
        if not fits:
            capacity = max(2 * (n + T), 64)
            kb = k.new_empty(k.shape[:2] + (capacity, k.size(3)))  # (B, H_kv, capacity, D)
            vb = v.new_empty(v.shape[:2] + (capacity, v.size(3)))
            kb[:, :, :n], vb[:, :, :n] = past_k, past_v
            self._room[layer] = room = (kb, vb)
        kb, vb = room
        kb[:, :, n : n + T], vb[:, :, n : n + T] = k, v
        self.k[layer], self.v[layer] = kb[:, :, : n + T], vb[:, :, : n + T]  # (B, H_kv, T_past + T, D) views
        return self.k[layer], self.v[layer]


class MultiHeadAttention(nn.Module):
    """H heads of width D = C / H attend in parallel; their outputs are concatenated and mixed.

    Names follow GPT-2's checkpoint: `c_attn` makes q, k, v in one matmul (stacked in that
    order: H·D rows of q, then H_kv·D of k, H_kv·D of v), `c_proj` mixes the heads back together.
    With `cross=True`, q comes from x through `q_proj` and k, v (stacked) from the memory through
    `kv_proj`; there is no `c_attn`. `n_kv_heads` (H_kv, default H) key/value heads, a divisor of H:
    fewer is grouped-query attention, and H_kv = H is exactly GPT-2's attention.
    """

    def __init__(self, d_model: int, n_heads: int, causal: bool = True, bias: bool = True, dropout: float = 0.0, fast: bool = True, *, cross: bool = False,
                 n_kv_heads: int | None = None):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}: each head needs d_model / n_heads channels")
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if isinstance(n_kv_heads, bool) or not isinstance(n_kv_heads, int) or n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(f"n_kv_heads={n_kv_heads!r}: expected a positive divisor of n_heads={n_heads} "
                             "(each key/value head serves n_heads / n_kv_heads query heads)")
        if cross and causal:
            raise ValueError("causal=True with cross=True: queries and memory are different sequences, so there is no future to hide; pass causal=False")
        self.d_model, self.n_heads, self.n_kv_heads, self.causal, self.cross = d_model, n_heads, n_kv_heads, causal, cross
        kv_width = n_kv_heads * (d_model // n_heads)  # H_kv * D: C without grouped-query attention
        if cross:
            self.q_proj = nn.Linear(d_model, d_model, bias=bias)
            self.kv_proj = nn.Linear(d_model, 2 * kv_width, bias=bias)
        else:
            self.c_attn = nn.Linear(d_model, d_model + 2 * kv_width, bias=bias)
        self.c_proj = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)
        self.fast = fast  # use F.scaled_dot_product_attention (fused kernels) when True
        self.record_weights = False  # keep the last attention pattern for plots (slow path)
        self.last_weights: torch.Tensor | None = None
        self.layer_idx = 0  # which slot of a KVCache this module uses (set by the model)
        self.hooks: dict = {}  # see llmlab.nn.hooks; empty unless a run asks
        self.hook_points = ("pattern", "head_out")

    def forward(self, x: torch.Tensor, positions: nn.Module | None = None, cache: KVCache | None = None, *, memory: torch.Tensor | None = None,
                key_padding_mask: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x[B, T, C] -> [B, T, C]. Cross-attention also takes memory[B, Tk, C] (from the cache
        after its first call); key_padding_mask[B, Tk] (True = padding) covers the keys: past and
        new tokens with a cache, the memory's for cross-attention."""
        if x.dim() != 3 or x.size(-1) != self.d_model:
            raise ValueError(f"x: expected shape (B, T, C) with last dimension d_model={self.d_model}, got shape {tuple(x.shape)}")
        B, T, C = x.shape
        H, H_kv = self.n_heads, self.n_kv_heads
        if self.cross:
            if positions is not None:
                raise ValueError("positions: cross-attention takes none (queries and memory are different sequences)")
            q = rearrange(self.q_proj(x), "b t (h d) -> b h t d", h=H)  # (B, H, T, D)
            k, v = self._memory_kv(memory, cache, B)  # (B, H_kv, Tk, D) each
            bias = None
        else:
            if memory is not None:
                raise ValueError("memory: this is self-attention; build MultiHeadAttention(..., causal=False, cross=True) to attend to a memory")
            q, k, v = self.c_attn(x).split([C, C // H * H_kv, C // H * H_kv], dim=-1)  # (B, T, H*D), 2 x (B, T, H_kv*D)
            q = rearrange(q, "b t (h d) -> b h t d", h=H)  # (B, H, T, D)
            k, v = (rearrange(a, "b t (h d) -> b h t d", h=H_kv) for a in (k, v))  # (B, H_kv, T, D) each
            past = cache.length if cache is not None else 0
            if positions is not None:
                q, k = positions.rotate(q, k, offset=past)  # RoPE; identity for other schemes
            if cache is not None:
                k, v = cache.update(self.layer_idx, k, v)  # (B, H_kv, past + T, D): the cache keeps H_kv heads
            bias = positions.attn_bias(T, k.size(2), offset=past) if positions is not None else None  # ALiBi: (H, T, Tk)
        Tk = k.size(2)
        _check_mask("key_padding_mask", key_padding_mask, (B, Tk), "True = padding", exact=True)
        _check_mask("attn_mask", attn_mask, (B, H, T, Tk), "True = may attend", exact=False)

        p = self.dropout if self.training else 0.0
        slow = self.record_weights or not self.fast or "pattern" in self.hooks
        gqa = {}  # grouped-query attention: widen k and v to H heads, or let SDPA read them shared (tests/test_gqa.py: the same)
        if H_kv != H:
            if slow or not SDPA_GQA:
                k, v = repeat_kv(k, H // H_kv), repeat_kv(v, H // H_kv)  # (B, H, Tk, D): query head j reads kv head j // (H / H_kv)
            else:
                gqa = {"enable_gqa": True}
        if not slow and bias is None and key_padding_mask is None and attn_mask is None and (not self.causal or T == 1 or T == Tk):
            # the fast path: no mask tensor at all (one query of a cache step sees every key)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=self.causal and T == Tk and T > 1, **gqa)  # (B, H, T, D)
        else:
            bias, empty = attention_bias(T, Tk, causal=self.causal, attn_mask=attn_mask, key_padding_mask=key_padding_mask, bias=bias,
                                         dtype=q.dtype, device=x.device)  # (.., T, Tk), (.., T, 1)
            if slow:
                w = attention_weights(q, k, bias=bias)  # (B, H, T, Tk)
                if empty is not None:
                    w = w.masked_fill(empty, 0.0)  # nothing to attend to: no weight anywhere
                w = hook(self.hooks, "pattern", w)
                if self.record_weights:
                    self.last_weights = w.detach()
                if self.training and self.dropout > 0:
                    w = F.dropout(w, self.dropout)
                y = w @ v  # (B, H, T, Tk) @ (B, H, Tk, D) -> (B, H, T, D)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, **gqa)  # (B, H, T, D)
                if empty is not None:
                    y = y.masked_fill(empty, 0.0)  # the same answer as the slow path, whatever the kernel does
        y = hook(self.hooks, "head_out", rearrange(y, "b h t d -> b t h d"))  # (B, T, H, D)
        y = y.reshape(B, T, C)  # (B, T, H, D) -> (B, T, C): heads side by side
        return self.resid_dropout(self.c_proj(y))

    def _memory_kv(self, memory: torch.Tensor | None, cache: KVCache | None, B: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory's keys and values, (B, H_kv, Tk, D) each: projected once per cache, then reused."""
        if cache is not None and self.layer_idx in cache.cross:
            return cache.cross[self.layer_idx]
        if memory is None or memory.dim() != 3 or memory.size(0) != B or memory.size(-1) != self.d_model:
            got = "None" if memory is None else f"shape {tuple(memory.shape)}"
            raise ValueError(f"memory: cross-attention expected shape (B, Tk, C) = ({B}, Tk, {self.d_model}), got {got}")
        k, v = rearrange(self.kv_proj(memory), "b t (two h d) -> two b h t d", two=2, h=self.n_kv_heads)  # 2 x (B, H_kv, Tk, D)
        if cache is not None:
            cache.cross[self.layer_idx] = (k, v)
        return k, v
