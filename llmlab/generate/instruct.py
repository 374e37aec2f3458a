"""Evaluating an instruction-tuned course model (lesson 13): greedy responses, then scores with intervals.

    model, tok, card = instruct_model("masked")            # llmlab.train.instruct
    qa_report(model, tok, qas, baseline)                    # exact match, token F1 vs the majority answer
    summary_report(model, tok, pairs)                       # ROUGE-L vs the lead sentence

`respond` decodes greedily with the KV cache (llmlab.generate.sampling.generate), one batch per prompt
length (no padding, so no attention mask is needed), and stops a row at <|end|>. The scores are
llmlab.text.scores' (SQuAD's exact match and F1, ROUGE-L equal to rouge_score's); every mean comes with a
percentile bootstrap interval over the test items (llmlab.stats.bootstrap_ci), and ROUGE-L's comparison
with the lead baseline is paired (the interval of the mean difference on the same docstrings).

Left out on purpose: sampling (every figure is of greedy output), and judging answers by a model.
"""

from __future__ import annotations

import numpy as np
import torch

from llmlab.generate.sampling import generate
from llmlab.models.gpt import GPT
from llmlab.stats import bootstrap_ci
from llmlab.text.docstrings import DocPair
from llmlab.text.knowledge import QA
from llmlab.text.scores import exact_match, rouge_l, token_f1
from llmlab.train.instruct import ChatTokenizer, lead_sentence, summary_user_text


@torch.no_grad()
def respond(model: GPT, tok: ChatTokenizer, prompts: list[list[int]], max_new_tokens: int) -> tuple[list[str], list[bool]]:
    """Greedy responses to prompts (token ids): (texts without the EOS, whether each stopped at <|end|>).
    Prompts of one length run as one batch with the KV cache."""
    texts, stopped = [""] * len(prompts), [False] * len(prompts)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p), []).append(i)
    for T, idx in groups.items():
        x = torch.tensor([prompts[i] for i in idx], dtype=torch.long)  # (b, T)
        out = generate(model, x, max_new_tokens, temperature=0.0, stop_token=tok.eos_id)[:, T:]  # (b, n)
        for row, i in zip(out.tolist(), idx):
            stopped[i] = tok.eos_id in row
            texts[i] = tok.decode(row[: row.index(tok.eos_id)] if stopped[i] else row)
    return texts, stopped


def qa_report(model: GPT, tok: ChatTokenizer, qas: list[QA], baseline: dict[str, str], max_new_tokens: int = 24, seed: int = 0) -> dict:
    """Exact match and token F1 of the model's answers to `qas`, and of the majority-answer baseline, with
    bootstrap intervals of the means; also the stop rate and the answers themselves."""
    preds, stopped = respond(model, tok, [tok.prompt(q.question) for q in qas], max_new_tokens)
    em = np.array([exact_match(p, q.answer) for p, q in zip(preds, qas)])
    f1 = np.array([token_f1(p, q.answer) for p, q in zip(preds, qas)])
    base_em = np.array([exact_match(baseline.get(q.fact.relation, ""), q.answer) for q in qas])
    return {"n": len(qas), "em": bootstrap_ci(em, np.mean, seed=seed), "f1": bootstrap_ci(f1, np.mean, seed=seed),
            "baseline_em": bootstrap_ci(base_em, np.mean, seed=seed), "stop_rate": float(np.mean(stopped)),
            "predictions": preds, "stopped": stopped}


def summary_report(model: GPT, tok: ChatTokenizer, pairs: list[DocPair], body_chars: int = 160, max_new_tokens: int = 80,
                   seed: int = 0) -> dict:
    """ROUGE-L of the model's summaries of `pairs` and of the lead sentence, with bootstrap intervals of both
    means and of the paired difference (model - lead)."""
    preds, stopped = respond(model, tok, [tok.prompt(summary_user_text(p.body, body_chars)) for p in pairs], max_new_tokens)
    model_r = np.array([rouge_l(s, p.summary) for s, p in zip(preds, pairs)])
    lead_r = np.array([rouge_l(lead_sentence(p.body), p.summary) for p in pairs])
    return {"n": len(pairs), "rouge_l": bootstrap_ci(model_r, np.mean, seed=seed), "lead": bootstrap_ci(lead_r, np.mean, seed=seed),
            "difference": bootstrap_ci(model_r - lead_r, np.mean, seed=seed), "stop_rate": float(np.mean(stopped)),
            "predictions": preds}
