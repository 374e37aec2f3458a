"""Turning next-token distributions into text: greedy, temperature, top-k and top-p
(nucleus) sampling, with a KV cache so each new token costs one position, not T.

    logits[V] --/temperature--> top-k filter --> top-p filter --> softmax --> sample

Reference: Holtzman et al. 2020 (nucleus sampling). A seeded `torch.Generator` makes
samples reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmlab.attention import KVCache


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set entries below the k-th largest of each row to -inf (entries tied with it stay).

    >>> top_k_filter(torch.tensor([1., 3., 2., 3.]), 2)
    tensor([-inf, 3., -inf, 3.])
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r}: expected a positive integer")
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep, per row, the smallest set of most probable tokens whose probability adds up to
    at least p (the most probable token is always kept); set the rest to -inf."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p={p!r}: expected a probability in (0, 1]")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
    probs = F.softmax(sorted_logits.float(), dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
    remove_sorted = mass_before >= p  # enough mass already: this token is not needed
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """logits[B, V] -> next ids LongTensor[B, 1]. temperature 0 means greedy (argmax)."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature}: expected >= 0 (0 = greedy)")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = F.softmax(logits, dim=-1)  # (B, V)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)


@torch.no_grad()
def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None, use_cache: bool = True, generator: torch.Generator | None = None, stop_token: int | None = None) -> torch.Tensor:
    """Extend idx[B, T] by up to max_new_tokens tokens -> LongTensor[B, T + n].

    With `use_cache` the prompt is run once (prefill) and then one token per step; the
    output is identical to recomputing everything (greedy, or the same generator). When
    the sequence outgrows block_size, the context is cropped to the last block_size
    tokens and, as positions then shift, the cache is dropped for the remaining steps.
    Stops early when every row has produced `stop_token`.
    """
    model.eval()
    block_size = model.config.block_size
    cache = KVCache() if use_cache else None
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        if cache is not None and idx.size(1) > block_size:
            cache = None  # positions would shift: fall back to recomputation
        if cache is not None and cache.length > 0:
            logits, _ = model(idx[:, -1:], cache=cache)  # only the new token: (B, 1, V)
        else:
            logits, _ = model(idx[:, -block_size:], cache=cache)  # (B, T, V)
        nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B, 1)
        idx = torch.cat([idx, nxt], dim=1)
        if stop_token is not None:
            done |= nxt.squeeze(1) == stop_token
            if done.all():
                break
    return idx


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 200, stop: str | None = None, device: torch.device | str | None = None, seed: int | None = None, **kwargs) -> str:
    """Prompt in, text out (prompt included). Stops at max_new_tokens or right after `stop`."""
    device = device or next(model.parameters()).device
    ids = tokenizer.encode(prompt) or [0]
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    gen = torch.Generator().manual_seed(seed) if seed is not None else kwargs.pop("generator", None)
    if stop is None:
        out = generate(model, idx, max_new_tokens, generator=gen, **kwargs)
        return tokenizer.decode(out[0].tolist())
    # with a stop string, generate in chunks and check the decoded text as we go
    text, produced = prompt, 0
    while produced < max_new_tokens:
        n = min(16, max_new_tokens - produced)
        out = generate(model, idx, n, generator=gen, **kwargs)
        produced += n
        idx = out
        text = tokenizer.decode(out[0].tolist())
        cut = text.find(stop, len(prompt))
        if cut != -1:
            return text[: cut + len(stop)]
    return text
