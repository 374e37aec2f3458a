"""The controlled-sentiment world of lessons 15 (reward model, RLHF) and 16 (DPO): a preference whose truth is known.

The DPO paper's (Rafailov et al. 2023) controlled-sentiment generation, sized for a CPU and the course's own model:

    prompts     the opening 2-4 words of lesson 12's UCI review sentences ("The battery", "I would not
                recommend"), split as lesson 12 splits them: train prompts for training, test prompts for every
                evaluation (the procedural reviews when the UCI data cannot be had: `review_prompts`)
    SFT policy  `course_model("python-docs-chars")` fine-tuned as a language model on the train sentences, each
                followed by END, so it writes review-like sentences and stops (`sft_policy`; cached). It is
                also the frozen reference of RLHF and DPO.
    gold reward what the methods never see directly (`gold_reward`): VADER's compound sentiment of the whole
                text, in [-1, 1], minus penalties for degenerate text, each in [0, 1]: the share of repeated
                word bigrams, the share of non-words (not in the UCI sentences' vocabulary or VADER's lexicon),
                and a text longer than any training sentence (MAX_CHARS). A policy that hacks the learned reward with "great great
                great" or invented words is caught by it.
    preferences two samples of the SFT policy per prompt, labelled by the gold reward with Bradley-Terry noise:
                the first is chosen with probability sigma((g1 - g2) / TEMPERATURE) (`preference_pairs`;
                cached). The noise is known, so the best any reward model can do on held-out pairs is known:
                `noise_ceiling`.

Rollouts (`sample`) are right-padded [B, T] rows, prompt then response then END then padding, with
`is_response` marking the response tokens (END included). `token_logprobs` / `response_logprobs` read
log-probabilities off such rows; `kl_to_reference`, `win_rate` and `distinct_n` measure what a method did.

Left out on purpose: human preference data (none installs offline; DATA.md), a learned gold classifier
(lesson 12's MiniLM costs minutes to train and seconds per thousand texts; VADER is instant and exact),
top-k / top-p sampling (temperature only), and batching
rows by prompt length (`sample` forces each row's own prompt tokens through one shared KV cache instead).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.cache import cache_dir, write_atomic
from llmlab.device import fast_mode
from llmlab.nn.attention import KVCache
from llmlab.stats import wilson_interval
from llmlab.text.tokenizers import Tokenizer
from llmlab.train.checkpoint import rng_state, set_rng_state
from llmlab.train.course_models import course_model, course_model_card
from llmlab.train.transfer import lesson_data

FORMAT = 2  # bump when what a cached SFT policy or pair set holds changes (2: too_long at MAX_CHARS)
END = "\n"  # the end-of-response marker: a character the course model knows, and never inside a review sentence
MAX_NEW_TOKENS = 72  # characters a response may take (the SFT sentences are at most MAX_CHARS long)
MAX_CHARS = 90  # the longest training sentence the SFT policy sees (75 % of the UCI train sentences)
TEMPERATURE = 0.25  # Bradley-Terry temperature of the labels: a gold gap of 0.25 is labelled right 73 % of the time
_REPLACE = {"é": "e", "ê": "e", "\x96": "-", "\x97": "-", "$": "", "\t": " "}  # characters the course model lacks


# ----------------------------------------------------------------------------- prompts and sentences
def _clean(text: str, chars: set[str] | None = None) -> str:
    text = "".join(_REPLACE.get(c, c) for c in text)
    if chars is not None:
        text = "".join(c for c in text if c in chars)
    return " ".join(text.split())


def _split(split: str):
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}: expected 'train', 'val' or 'test'")
    splits, note = lesson_data("auto", 0)
    return splits[split], note


def data_note() -> str:
    """Which sentences the world is built from (the UCI data, or the procedural stand-in, said clearly)."""
    return _split("train")[1]


def prompt_of(sentence: str) -> str | None:
    """The opening words of a sentence: 2, 3 or 4 of them (chosen by a hash of the text, so the same sentence
    always gives the same prompt), leaving at least two words to write; None for sentences under 4 words."""
    w = _clean(sentence).split()
    if len(w) < 4:
        return None
    k = min(2 + zlib.crc32(" ".join(w).encode()) % 3, len(w) - 2)
    return " ".join(w[:k])


def review_prompts(split: str, n: int | None = None, seed: int = 0) -> list[str]:
    """The prompts of a split (lesson 12's train / val / test), in an order shuffled by `seed`; the first n."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n={n!r}: expected a positive number of prompts, or None for all")
    reviews, _ = _split(split)
    prompts = [p for p in (prompt_of(r.text) for r in reviews) if p is not None]
    random.Random(seed).shuffle(prompts)
    return prompts[:n] if n is not None else prompts


def sft_sentences(split: str = "train") -> list[str]:
    """The sentences the SFT policy learns from: cleaned, at most MAX_CHARS characters."""
    reviews, _ = _split(split)
    return [s for s in (_clean(r.text) for r in reviews) if 8 <= len(s) <= MAX_CHARS]


# ----------------------------------------------------------------------------- the SFT policy
@dataclass(frozen=True)
class SFTRecipe:
    """Everything that decides the SFT policy's weights (and its cache key)."""

    steps: int = 400  # AdamW steps over the train sentences
    batch_size: int = 32  # sentences per step
    lr: float = 1e-3  # peak learning rate (linear warmup over 20 steps, cosine to lr / 10)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r}: expected a positive integer")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r}: expected a positive learning rate")


SFT_RECIPE = SFTRecipe()
FAST_SFT_RECIPE = SFTRecipe(steps=12, batch_size=16, lr=2e-3)


def _pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids -> (ids LongTensor[B, T] right-padded with pad_id, is_real BoolTensor[B, T])."""
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    real = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(list(r), dtype=torch.long)
        real[i, : len(r)] = True
    return ids, real


def _sft_key(r: SFTRecipe, fast: bool) -> str:
    base = course_model_card("python-docs-chars", fast)["key"]
    return hashlib.sha256(json.dumps({"format": FORMAT, "recipe": asdict(r), "base": base, "note": data_note(),
                                      "max_chars": MAX_CHARS, "end": END}, sort_keys=True).encode()).hexdigest()


def _train_sft(model: nn.Module, tok: Tokenizer, r: SFTRecipe) -> dict:
    chars = set(tok.chars)
    texts = [_clean(s, chars) + END for s in sft_sentences("train")]
    val = [_clean(s, chars) + END for s in sft_sentences("val")][:256]
    end_id = tok.encode(END)[0]
    g = torch.Generator().manual_seed(r.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=0.0, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, r.steps) / r.steps))))

    def loss_of(batch: list[str]) -> torch.Tensor:
        ids, real = _pad_rows([tok.encode(t) for t in batch], end_id)  # (B, T)
        logits, _ = model(ids[:, :-1])  # (B, T-1, V)
        targets = ids[:, 1:].masked_fill(~real[:, 1:], -100)  # padding is not predicted
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)

    model.train()
    for step in range(r.steps):
        idx = torch.randint(len(texts), (r.batch_size,), generator=g).tolist()
        loss = loss_of([texts[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        val_loss = float(loss_of(val))
    return {"train_loss": float(loss.detach()), "val_loss": val_loss}


def sft_policy(fast: bool | None = None, verbose: bool = True) -> tuple[nn.Module, Tokenizer]:
    """(GPT in eval mode, tokenizer): the course model fine-tuned on the train review sentences + END.
    A fresh copy every call (a caller may train it), the same weights every call: trained once, then cached."""
    fast = fast_mode() if fast is None else fast
    r = FAST_SFT_RECIPE if fast else SFT_RECIPE
    say = print if verbose else (lambda *a, **k: None)
    key = _sft_key(r, fast)
    path = cache_dir() / "models" / f"sft-reviews-{key[:16]}.pt"
    model, tok = course_model("python-docs-chars", fast=fast, verbose=False)
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved["card"]["key"] != key:
                raise ValueError("it holds another recipe")
            model.load_state_dict(saved["state_dict"])
            say(f"loaded the SFT policy from the cache (fine-tuned in {saved['card']['train_seconds']:.0f} s; "
                f"validation loss {saved['card']['val_loss']:.3f})")
            return model.eval(), tok
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
            say(f"the cached SFT policy {path.name} is unusable ({str(e)[:120]}); training it again")
    say(f"fine-tuning the course model on the review sentences ({r.steps} steps of {r.batch_size}; first use, then cached) ...", flush=True)
    t0 = time.perf_counter()
    outer = rng_state()
    try:
        torch.manual_seed(r.seed)
        metrics = _train_sft(model, tok, r)
    finally:
        set_rng_state(outer)
    card = {"key": key, "recipe": asdict(r), "train_seconds": time.perf_counter() - t0, **metrics}
    write_atomic(path, lambda t: torch.save({"state_dict": model.state_dict(), "card": card}, t))
    say(f"fine-tuned in {card['train_seconds']:.0f} s: validation loss {metrics['val_loss']:.3f}; cached")
    return model.eval(), tok


# ----------------------------------------------------------------------------- rollouts
@dataclass
class Rollout:
    """B sampled rows, right-padded to T: prompt, response, END, padding."""

    prompts: list[str]
    responses: list[str]  # the generated text, END stripped
    texts: list[str]  # prompt + response
    ids: torch.Tensor  # LongTensor[B, T]
    is_response: torch.Tensor  # BoolTensor[B, T]: the response tokens, END included
    finished: torch.Tensor  # BoolTensor[B]: the row wrote END within max_new_tokens

    def __len__(self) -> int:
        return len(self.prompts)


def encode_rows(tok: Tokenizer, prompts: Sequence[str], responses: Sequence[str], ended: Sequence[bool] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt, response) texts -> (ids LongTensor[B, T], is_response BoolTensor[B, T]): each row prompt + response
    (+ END where `ended`, default all), right-padded with END's id. Unknown characters are dropped."""
    chars, end_id = set(tok.chars), tok.encode(END)[0]
    ended = [True] * len(prompts) if ended is None else list(ended)
    rows, starts = [], []
    for p, s, e in zip(prompts, responses, ended):
        pi, si = tok.encode(_clean(p, chars)), tok.encode("".join(c for c in s if c in chars))
        rows.append(pi + si + ([end_id] if e else []))
        starts.append((len(pi), len(rows[-1])))
    ids, _ = _pad_rows(rows, end_id)
    pos = torch.arange(ids.size(1))
    is_resp = torch.stack([(pos >= a) & (pos < b) for a, b in starts])  # (B, T)
    return ids, is_resp


@torch.no_grad()
def sample(policy: nn.Module, tok: Tokenizer, prompts: Sequence[str], max_new_tokens: int = MAX_NEW_TOKENS,
           temperature: float = 1.0, generator: torch.Generator | None = None) -> Rollout:
    """One response per prompt, sampled at `temperature`; each row stops at END (or after max_new_tokens)."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts: expected a non-empty list of strings")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens!r}: expected a positive integer")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: expected > 0")
    chars, end_id = set(tok.chars), tok.encode(END)[0]
    block = policy.config.block_size
    p_ids = [tok.encode(_clean(p, chars)) for p in prompts]
    if min(map(len, p_ids)) == 0:
        raise ValueError("prompts: every prompt must hold at least one character the tokenizer knows")
    max_new_tokens = min(max_new_tokens, block - max(map(len, p_ids)))
    B = len(prompts)
    starts = torch.tensor([len(p) for p in p_ids])  # (B,) where each response begins
    ids, _ = _pad_rows(p_ids, end_id)  # (B, Tp)
    ids = torch.cat([ids, torch.full((B, max_new_tokens), end_id, dtype=torch.long)], dim=1)  # (B, Tp + n)
    # One KV cache for rows of different prompt lengths: run the shortest prompt's length at once, then step
    # one position at a time for every row; a row still inside its prompt is fed its own next prompt token
    # (forced), a row past it gets a sampled one. Positions stay aligned, so the cache is exact.
    m = int(starts.min())
    lengths = starts.clone()  # (B,) real tokens so far, once past the prompt
    done = torch.zeros(B, dtype=torch.bool)
    was_training = policy.training
    policy.eval()
    try:
        cache = KVCache()
        logits, _ = policy(ids[:, :m], cache=cache)  # (B, m, V)
        for t in range(m, int(starts.max()) + max_new_tokens):
            in_prompt = t < starts  # (B,)
            last = logits[:, -1].float() / temperature  # (B, V): the distribution of token t
            nxt = torch.multinomial(F.softmax(last, dim=-1), 1, generator=generator).squeeze(1)  # (B,)
            writing = ~in_prompt & ~done
            nxt = torch.where(in_prompt, ids[:, t], torch.where(writing, nxt, torch.full_like(nxt, end_id)))
            ids[:, t] = nxt
            lengths = lengths + writing.long()
            done |= writing & ((nxt == end_id) | (lengths - starts >= max_new_tokens))
            if done.all():
                break
            logits, _ = policy(nxt[:, None], cache=cache)  # (B, 1, V)
    finally:
        policy.train(was_training)
    ended = torch.tensor([bool((ids[b, starts[b]: lengths[b]] == end_id).any()) for b in range(B)])
    T = int(lengths.max())
    ids = ids[:, :T]
    pos = torch.arange(T)
    is_response = (pos >= starts[:, None]) & (pos < lengths[:, None])  # (B, T)
    responses = []
    for b in range(B):
        r = tok.decode(ids[b, starts[b]: lengths[b]].tolist())
        responses.append(r[:-1] if r.endswith(END) else r)
    texts = [_clean(p, chars) + r for p, r in zip(prompts, responses)]
    return Rollout(list(prompts), responses, texts, ids, is_response, ended)


# ----------------------------------------------------------------------------- the gold reward
@lru_cache(maxsize=1)
def _vader():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the gold reward needs the package vaderSentiment (in llmlab's lab extra): "
                                  "pip install vaderSentiment") from None
    return SentimentIntensityAnalyzer()


@lru_cache(maxsize=1)
def known_words() -> frozenset[str]:
    """The words the gold reward accepts: every word of the UCI (or procedural) sentences and of VADER's lexicon."""
    words: set[str] = set(_vader().lexicon)
    for split in ("train", "val", "test"):
        for r in _split(split)[0]:
            words.update(_words(r.text))
    return frozenset(words)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def gold_parts(texts: Sequence[str], max_chars: int = MAX_CHARS) -> dict[str, torch.Tensor]:
    """The gold reward's terms, each Tensor[B]: "sentiment" (VADER compound, [-1, 1]), "repetition" (share of
    word bigrams seen before in the text), "nonwords" (share of words not in `known_words()`), "too_long" (1 when
    the text is longer than max_chars, by default the longest sentence the SFT policy learned from: a response that
    runs on to the 72-character cap after a long prompt), and "gold" = sentiment - the three."""
    if isinstance(texts, str):
        raise ValueError("texts: expected a list of strings, got one string")
    sia, vocab = _vader(), known_words()
    out = {k: [] for k in ("sentiment", "repetition", "nonwords", "too_long")}
    for t in texts:
        w = _words(t)
        bigrams = list(zip(w, w[1:]))
        out["sentiment"].append(sia.polarity_scores(t)["compound"])
        out["repetition"].append(1 - len(set(bigrams)) / len(bigrams) if bigrams else 0.0)
        out["nonwords"].append(sum(x not in vocab for x in w) / len(w) if w else 1.0)
        out["too_long"].append(float(len(t) > max_chars))
    parts = {k: torch.tensor(v, dtype=torch.float32) for k, v in out.items()}
    parts["gold"] = parts["sentiment"] - parts["repetition"] - parts["nonwords"] - parts["too_long"]
    return parts


def gold_reward(texts: Sequence[str]) -> torch.Tensor:
    """Tensor[B] float32: VADER's compound sentiment minus the degeneracy penalties (`gold_parts`)."""
    return gold_parts(texts)["gold"]


# ----------------------------------------------------------------------------- log-probabilities
def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """logits[B, T, V], ids[B, T] -> Tensor[B, T-1]: entry t is log p(ids[:, t+1]) under logits[:, t]."""
    if logits.dim() != 3 or ids.shape != logits.shape[:2]:
        raise ValueError(f"logits, ids: expected shapes (B, T, V) and (B, T), got {tuple(logits.shape)} and {tuple(ids.shape)}")
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V): position t predicts token t+1
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)


def response_logprobs(model: nn.Module, ids: torch.Tensor, is_response: torch.Tensor) -> torch.Tensor:
    """Tensor[B, T] aligned with ids: entry t = log p(ids[:, t] | ids[:, :t]) on response positions, 0 elsewhere
    (position 0 has no context: always 0). Differentiable when gradients are on."""
    if ids.shape != is_response.shape:
        raise ValueError(f"is_response: expected shape {tuple(ids.shape)} like ids, got {tuple(is_response.shape)}")
    logits, _ = model(ids)  # (B, T, V)
    lp = F.pad(token_logprobs(logits, ids), (1, 0))  # (B, T): shifted right so entry t scores ids[:, t]
    return lp * is_response


def kl_to_reference(policy: nn.Module, reference: nn.Module, rollout: Rollout) -> float:
    """The sampled KL estimate: mean over rows of sum over response tokens of log pi - log pi_ref, on `rollout`
    (which must be samples of `policy` for this to estimate KL(pi || pi_ref))."""
    with torch.no_grad():
        d = response_logprobs(policy, rollout.ids, rollout.is_response) - response_logprobs(reference, rollout.ids, rollout.is_response)
    return float(d.sum(1).mean())


def token_entropy(model: nn.Module, rollout: Rollout) -> float:
    """The policy's mean entropy (nats) of its next-token distribution over the response positions of `rollout`."""
    with torch.no_grad():
        logits, _ = model(rollout.ids)  # (B, T, V)
        logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V) predicting tokens 1..T-1
        h = -(logp.exp() * logp).sum(-1)  # (B, T-1)
        m = rollout.is_response[:, 1:]
    return float(h[m].mean())


# ----------------------------------------------------------------------------- preference pairs
@dataclass
class PreferencePairs:
    """N pairs of SFT samples for the same prompt, one labelled chosen (with Bradley-Terry noise)."""

    prompts: list[str]
    chosen: list[str]  # texts: prompt + response
    rejected: list[str]
    chosen_ids: torch.Tensor  # LongTensor[N, T]
    rejected_ids: torch.Tensor  # LongTensor[N, T]
    chosen_mask: torch.Tensor  # BoolTensor[N, T]: is_response
    rejected_mask: torch.Tensor  # BoolTensor[N, T]
    gold_chosen: torch.Tensor  # Tensor[N]
    gold_rejected: torch.Tensor  # Tensor[N]
    agrees_with_gold: torch.Tensor  # BoolTensor[N]: gold_chosen >= gold_rejected (a tie counts as agreeing)
    temperature: float = TEMPERATURE  # the labels' Bradley-Terry temperature

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, idx: Sequence[int] | torch.Tensor) -> PreferencePairs:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return PreferencePairs([self.prompts[i] for i in idx.tolist()], [self.chosen[i] for i in idx.tolist()],
                               [self.rejected[i] for i in idx.tolist()], self.chosen_ids[idx], self.rejected_ids[idx],
                               self.chosen_mask[idx], self.rejected_mask[idx], self.gold_chosen[idx], self.gold_rejected[idx],
                               self.agrees_with_gold[idx], self.temperature)


@dataclass(frozen=True)
class PairsRecipe:
    n_train: int = 1200  # train prompts (one pair each)
    n_test: int = 400  # test prompts (one held-out pair each)
    temperature: float = TEMPERATURE
    sample_temperature: float = 1.0
    seed: int = 0


PAIRS_RECIPE = PairsRecipe()
FAST_PAIRS_RECIPE = PairsRecipe(n_train=48, n_test=32)


def _make_pairs(policy: nn.Module, tok: Tokenizer, prompts: list[str], r: PairsRecipe, seed: int) -> PreferencePairs:
    g = torch.Generator().manual_seed(seed)
    a_parts, b_parts = [], []
    for i in range(0, len(prompts), 64):
        chunk = prompts[i: i + 64]
        a_parts.append(sample(policy, tok, chunk, temperature=r.sample_temperature, generator=g))
        b_parts.append(sample(policy, tok, chunk, temperature=r.sample_temperature, generator=g))
    a_texts = [t for ro in a_parts for t in ro.texts]
    b_texts = [t for ro in b_parts for t in ro.texts]
    a_resp = [t for ro in a_parts for t in ro.responses]
    b_resp = [t for ro in b_parts for t in ro.responses]
    a_end = [bool(x) for ro in a_parts for x in ro.finished]
    b_end = [bool(x) for ro in b_parts for x in ro.finished]
    ga, gb = gold_reward(a_texts), gold_reward(b_texts)
    a_first = torch.rand(len(prompts), generator=g) < torch.sigmoid((ga - gb) / r.temperature)  # (N,) Bradley-Terry labels
    pick = lambda x, y: [u if f else v for u, v, f in zip(x, y, a_first.tolist())]  # noqa: E731
    chosen, rejected = pick(a_texts, b_texts), pick(b_texts, a_texts)
    c_ids, c_mask = encode_rows(tok, prompts, pick(a_resp, b_resp), pick(a_end, b_end))
    r_ids, r_mask = encode_rows(tok, prompts, pick(b_resp, a_resp), pick(b_end, a_end))
    gc, gr = torch.where(a_first, ga, gb), torch.where(a_first, gb, ga)
    return PreferencePairs(list(prompts), chosen, rejected, c_ids, r_ids, c_mask, r_mask, gc, gr, gc >= gr, r.temperature)


def preference_pairs(split: str = "train", n: int | None = None, fast: bool | None = None, verbose: bool = False) -> PreferencePairs:
    """Pairs for the prompts of `split` ("train": for training; "test": held out), the first n of them
    (None: the recipe's count). Sampled once from the SFT policy, then cached."""
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: expected 'train' or 'test'")
    fast = fast_mode() if fast is None else fast
    r = FAST_PAIRS_RECIPE if fast else PAIRS_RECIPE
    count = r.n_train if split == "train" else r.n_test
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= count):
        raise ValueError(f"n={n!r}: expected a number of pairs between 1 and {count} (the cached set), or None")
    key = hashlib.sha256(json.dumps({"format": FORMAT, "recipe": asdict(r), "sft": _sft_key(FAST_SFT_RECIPE if fast else SFT_RECIPE, fast),
                                     "split": split}, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / "preference" / f"pairs-{split}-{key[:16]}.pt"
    pairs = None
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved["key"] != key:
                raise ValueError("it holds another recipe")
            pairs = PreferencePairs(**saved["pairs"])
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            pairs = None
    if pairs is None:
        policy, tok = sft_policy(fast, verbose=verbose)
        prompts = review_prompts(split, count, seed=r.seed)
        outer = rng_state()
        try:
            pairs = _make_pairs(policy, tok, prompts, r, seed=r.seed + (0 if split == "train" else 1))
        finally:
            set_rng_state(outer)
        write_atomic(path, lambda t: torch.save({"key": key, "pairs": asdict(pairs)}, t))
    return pairs.subset(range(n)) if n is not None else pairs


def noise_ceiling(pairs: PreferencePairs) -> float:
    """The expected accuracy, against these pairs' noisy labels, of a perfect reward model (one that ranks by
    the gold reward): mean over pairs of sigma(|gold_chosen - gold_rejected| / temperature). A tie scores 1/2.
    (Against the gold order itself a perfect model scores 100 %; the realised share of labels that agree with
    gold is `pairs.agrees_with_gold.float().mean()`, a noisy estimate of this expectation.)"""
    gap = (pairs.gold_chosen - pairs.gold_rejected).abs()
    return float(torch.sigmoid(gap / pairs.temperature).mean())


# ----------------------------------------------------------------------------- measures
@dataclass(frozen=True)
class WinRate:
    """Gold-reward wins of A over B, ties counted half: k = wins + ties / 2 of n, a 95 % Wilson interval."""

    wins: int
    ties: int
    n: int

    @property
    def k(self) -> float:
        return self.wins + self.ties / 2

    @property
    def rate(self) -> float:
        return self.k / self.n

    @property
    def lo(self) -> float:
        return wilson_interval(round(self.k), self.n)[0]

    @property
    def hi(self) -> float:
        return wilson_interval(round(self.k), self.n)[1]

    def __iter__(self):  # (k_wins_plus_half_ties, n, lo, hi), as the world's API names it
        return iter((self.k, self.n, self.lo, self.hi))

    def __str__(self) -> str:
        return f"{self.rate:6.1%} [{self.lo:6.1%}, {self.hi:6.1%}]  ({self.wins} wins, {self.ties} ties of {self.n})"


def win_rate(texts_a: Sequence[str], texts_b: Sequence[str]) -> WinRate:
    """How often text a (e.g. the trained policy's, for the same prompt) has the higher gold reward than text b."""
    if len(texts_a) != len(texts_b) or not texts_a:
        raise ValueError(f"texts_a, texts_b: expected two equally long non-empty lists, got {len(texts_a)} and {len(texts_b)}")
    ga, gb = gold_reward(texts_a), gold_reward(texts_b)
    return WinRate(int((ga > gb).sum()), int((ga == gb).sum()), len(texts_a))


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct word n-grams / all word n-grams, pooled over `texts` (Li et al. 2016): 1 when nothing repeats."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: expected a positive integer")
    grams = [tuple(w[i: i + n]) for w in map(_words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
