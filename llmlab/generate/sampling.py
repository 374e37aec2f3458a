"""Turning next-token distributions into text: greedy, temperature, top-k and top-p
(nucleus) sampling, with a KV cache so each new token runs one position through the model
instead of T (its attention still reads every cached key: O(T) per token, not constant).

    logits[V] --/temperature--> top-k filter --> top-p filter --> softmax --> sample

* `top_k_filter`, `top_p_filter`: pure functions of a row of logits (the exercises of lesson 08).
* `sample_next`: one step, greedy when temperature is 0; a seeded `torch.Generator` makes
  samples reproducible.
* `generate_tokens` yields new tokens one at a time; `generate` collects them;
  `generate_text` goes from a prompt string to text, stopping at a length or a stop string.

The KV cache (`llmlab.nn.attention.KVCache`) keeps every layer's keys and values, so after the
prompt has been run once (the *prefill*) each step feeds only the newest token (whose query
still attends to every cached key; what is saved is recomputing the earlier tokens). Its greedy
output is token-for-token the output without it. Once the text outgrows `block_size`, the
model sees only the last `block_size` tokens; every position then shifts by one each step,
so cached keys and values are stale and the exact answer needs a full recomputation: the
cache is dropped there (a sliding-window cache would be faster but would change the output).

Left out on purpose: beam search, repetition penalties, min-p, speculative decoding.
Reference: Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration" (top-p).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from llmlab.nn.attention import KVCache


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set the entries below the k-th largest of each row to -inf; entries tied with the
    k-th largest stay (so a row may keep more than k). k larger than V keeps everything.

    >>> top_k_filter(torch.tensor([1., 3., 2., 3.]), 2)
    tensor([-inf, 3., -inf, 3.])
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r}: expected a positive integer (how many of the most likely tokens to keep)")
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest of each row
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep, per row, the smallest set of most probable tokens whose probabilities add up to
    at least p, and set the rest to -inf. Kept entries keep their value and their position.

    The token that carries the total over p is kept (without it the set would fall short),
    so the most probable token is always kept, even when its probability alone exceeds p.

    >>> top_p_filter(torch.log(torch.tensor([0.1, 0.5, 0.15, 0.25])), 0.7).exp()
    tensor([0.0000, 0.5000, 0.0000, 0.2500])
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"p={p!r}: expected a probability in (0, 1]")
    if p >= 1.0:  # everything is needed; no rounding of a cumulative sum may drop the tail
        return logits.clone()
    # stable: among tokens of equal probability the lower id ranks first, so ties are deterministic
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)  # (..., V)
    probs = F.softmax(sorted_logits.double(), dim=-1)  # float64: the cumulative sum must not drift
    mass_before = probs.cumsum(dim=-1) - probs  # (..., V): probability of the tokens ranked above
    remove_sorted = mass_before >= p  # p already reached without this token: not needed
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, float("-inf"))


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """logits[B, V] -> next ids LongTensor[B, 1]. temperature 0 means greedy (argmax).

    Temperature divides the logits first: below 1 it sharpens the distribution, above 1 it
    flattens it. The filters then remove the unlikely tail, and softmax renormalises what is left.
    """
    if temperature < 0:
        raise ValueError(f"temperature={temperature}: expected >= 0 (0 = greedy)")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = F.softmax(logits, dim=-1)  # (B, V)
    if generator is not None and generator.device != probs.device:  # a CPU generator for a GPU model
        return torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)


@torch.no_grad()
def generate_tokens(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                    top_p: float | None = None, use_cache: bool = True, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Yield up to max_new_tokens next ids, each LongTensor[B, 1], continuing idx[B, T].

    With `use_cache` the prompt runs once (prefill), then each step feeds only the newest
    token; without it, each step reruns the whole (cropped) context. The model is put in
    eval mode while generating and given back in the mode it came in.
    """
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx: expected a LongTensor of shape (B, T) with T >= 1, got shape {tuple(idx.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens}: expected >= 0")
    block_size = model.config.block_size
    was_training = model.training
    model.eval()
    try:
        cache = KVCache() if use_cache else None
        for _ in range(max_new_tokens):
            if cache is not None and idx.size(1) > block_size:
                cache = None  # the window slides: every position shifts, so recompute from here on
            if cache is not None and cache.length > 0:
                logits, _ = model(idx[:, -1:], cache=cache)  # only the newest token: (B, 1, V)
            else:
                logits, _ = model(idx[:, -block_size:], cache=cache)  # the whole context: (B, T, V)
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B, 1)
            idx = torch.cat([idx, nxt], dim=1)  # (B, T + 1)
            yield nxt
    finally:
        model.train(was_training)


def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, use_cache: bool = True, generator: torch.Generator | None = None, stop_token: int | None = None) -> torch.Tensor:
    """Extend idx[B, T] by up to max_new_tokens tokens -> LongTensor[B, T + n].

    Greedy (temperature=0) output is the same with and without the cache; so are samples
    drawn with the same seeded generator. With `stop_token`, a row that has produced it
    is padded with it from then on, and generation ends once every row has.
    """
    out = [idx]
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
    for nxt in generate_tokens(model, idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator):
        if stop_token is not None:
            nxt = nxt.masked_fill(done[:, None], stop_token)  # finished rows stay finished
            done |= nxt.squeeze(1) == stop_token
        out.append(nxt)
        if stop_token is not None and done.all():
            break
    return torch.cat(out, dim=1)


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 200, stop: str | None = None,
                  device: torch.device | str | None = None, seed: int | None = None, **kwargs) -> str:
    """Prompt in, text out (the prompt included). Ends after max_new_tokens tokens, or right
    after the first occurrence of `stop` in the generated text (the stop string is kept).

    `seed` makes the sample reproducible (a fresh CPU generator with that seed); the other
    keyword arguments (temperature, top_k, top_p, use_cache, generator) go to `generate_tokens`.
    """
    if stop == "":
        raise ValueError("stop='': expected a non-empty stop string, or None")
    device = device or next(model.parameters()).device
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError(f"prompt={prompt!r}: encodes to no tokens; give at least one character")
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    if seed is not None:
        kwargs["generator"] = torch.Generator().manual_seed(seed)
    new: list[int] = []
    searched = 0  # characters of generated text already known to hold no stop string
    for nxt in generate_tokens(model, idx, max_new_tokens, **kwargs):
        new.append(int(nxt[0, 0]))
        if stop is not None:
            text = tokenizer.decode(new)
            # a stop string completed now must overlap the new characters: search from there
            # (4 more back: a split UTF-8 character decodes as up to 3 "\ufffd" until completed)
            cut = text.find(stop, max(0, searched - len(stop) - 3))
            if cut != -1:
                return prompt + text[: cut + len(stop)]
            searched = len(text)
    return prompt + tokenizer.decode(new)
