"""Zero- and few-shot classification by prompting a chat model (lesson 13): SmolLM2 labels review sentences.

No training: the task is said in words, k solved examples ("shots") are shown as earlier turns of the
conversation, and the answer is read off the next-token distribution (Brown et al. 2020, GPT-3's
in-context learning):

    <|im_start|>system ... <|im_end|>                        \\
    <|im_start|>user  {QUESTION}\\nReview: {shot 1}<|im_end|>  |  the prefix: the same for every test sentence
    <|im_start|>assistant  positive<|im_end|>    (k shots)    |  (computed once, its keys and values kept)
    <|im_start|>user  {QUESTION}\\nReview:                   /
     {sentence}<|im_end|>                                    \\  the suffix: one per sentence, a batch of
    <|im_start|>assistant\\n                                   /  them after the cached prefix
                          -> compare log p("positive") with log p("negative")   (first token of each word)

Scoring the label words instead of generating text means every sentence gets an answer (no parsing of
"It seems positive!") in one forward pass. Shots are drawn from the training split, half of each label
(k = 1: one, alternating the label by seed), in a random order; the same shots for every test sentence.

The baseline a prompt must beat is lesson 12's (llmlab.train.transfer.bow_method): a bag-of-words logistic
regression trained on the same training split.

Left out on purpose: calibration of the label words (Zhao et al. 2021), choosing shots per sentence
(retrieval), and chain-of-thought prompting.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from llmlab.models.gpt import GPT, run_trunk
from llmlab.models.smollm2 import IM_END, IM_START, chat_prompt
from llmlab.nn.attention import KVCache
from llmlab.text.sentiment import Review

LABEL_WORDS = ("negative", "positive")  # index = Review.label
QUESTION = "Is the sentiment of this review positive or negative? Answer with one word."


def draw_shots(train: list[Review], k: int, seed: int = 0) -> list[Review]:
    """k label-balanced examples from `train` (k // 2 of each label; an odd k adds one of label seed % 2), shuffled."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k={k!r}: expected a number of shots >= 0")
    rng = random.Random(seed)
    by_label = {lab: [r for r in train if r.label == lab] for lab in (0, 1)}
    want = {0: k // 2, 1: k // 2}
    if k % 2:
        want[seed % 2] += 1
    for lab, n in want.items():
        if len(by_label[lab]) < n:
            raise ValueError(f"train: {len(by_label[lab])} examples of label {lab}; expected at least {n} for k={k}")
    out = [r for lab in (0, 1) for r in rng.sample(by_label[lab], want[lab])]
    rng.shuffle(out)
    return out


def user_turn(text: str) -> str:
    """The question first, the review last: everything before the review is shared by all test sentences."""
    return f"{QUESTION}\nReview: {text}"


def prompt_parts(shots: list[Review], text: str) -> tuple[str, str]:
    """(prefix, suffix) with prefix + suffix == chat_prompt(the k shot turns + the question): the prefix ends
    with the last user turn's "...\\nReview:" (shared by every sentence), the suffix is " {text}" and the end of the turn."""
    messages = []
    for s in shots:
        messages += [{"role": "user", "content": user_turn(s.text)}, {"role": "assistant", "content": LABEL_WORDS[s.label]}]
    full = chat_prompt(messages + [{"role": "user", "content": user_turn(text)}])
    cut = full.rindex(f"{IM_START}user\n") + len(f"{IM_START}user\n{QUESTION}\nReview:")
    return full[:cut], full[cut:]


def label_token_ids(tok) -> list[int]:
    """The first token of each label word as the assistant would start its answer."""
    ids = [tok.encode(w)[0] for w in LABEL_WORDS]
    if len(set(ids)) != len(ids):
        raise ValueError(f"the label words {LABEL_WORDS} start with the same token; choose words that differ in their first token")
    return ids


@torch.no_grad()
def label_logprobs(model: GPT, prefix_ids: list[int], suffixes: list[list[int]], label_ids: list[int], batch_size: int = 25) -> torch.Tensor:
    """log p(label word | prefix + suffix) for each suffix: Tensor[N, n_labels]. The prefix runs once; its keys and
    values are shared by every batch of right-padded suffixes (causal: a real token never sees the padding after
    it), and the logits are read at each suffix's last real token only."""
    if not prefix_ids or any(len(s) == 0 for s in suffixes):
        raise ValueError("prefix_ids, suffixes: expected at least one token in the prefix and in every suffix")
    cfg, tr = model.config, model.transformer
    prefix = torch.tensor([prefix_ids], dtype=torch.long)  # (1, P)
    cache = KVCache()
    run_trunk(tr, cfg, prefix, cache)  # fills the cache: per layer (1, H_kv, P, D)
    keys, values = list(cache.k), list(cache.v)
    order = sorted(range(len(suffixes)), key=lambda i: len(suffixes[i]))  # similar lengths together: less padding
    out = []
    for start in range(0, len(order), batch_size):
        chunk = [suffixes[i] for i in order[start : start + batch_size]]
        b, T = len(chunk), max(len(s) for s in chunk)
        idx = torch.zeros(b, T, dtype=torch.long)
        for i, s in enumerate(chunk):
            idx[i, : len(s)] = torch.tensor(s)
        shared = KVCache(k=list(keys), v=list(values))  # the batch-1 prefix broadcasts into each layer's new buffer
        shared.length = len(prefix_ids)
        h = run_trunk(tr, cfg, idx, shared)  # (b, T, C)
        last = torch.tensor([len(s) - 1 for s in chunk])
        h = tr.ln_f(h[torch.arange(b), last])  # (b, C): each row's last real token
        logp = F.log_softmax(model.lm_head(h).float(), dim=-1)  # (b, V)
        out.append(logp[:, label_ids])  # (b, n_labels)
    scores = torch.cat(out)  # (N, n_labels) in length order
    return scores[torch.argsort(torch.tensor(order))]  # back to the order of `suffixes`


def few_shot_predictions(model: GPT, tok, shots: list[Review], test: list[Review], batch_size: int = 25) -> torch.Tensor:
    """Predicted labels (LongTensor[N]) of the test sentences with these shots."""
    prefix, _ = prompt_parts(shots, "")
    suffixes = [tok.encode(prompt_parts(shots, r.text)[1]) for r in test]
    return label_logprobs(model, tok.encode(prefix), suffixes, label_token_ids(tok), batch_size).argmax(dim=-1)


__all__ = ["IM_END", "LABEL_WORDS", "QUESTION", "draw_shots", "few_shot_predictions", "label_logprobs",
           "label_token_ids", "prompt_parts"]
