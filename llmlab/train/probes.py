"""What a character model's residual stream knows: variables of the text that the data make known,
read per character, and the rows a linear probe is trained on (llmlab.train.interp.fit_probe).

    depth     inside parentheses (depth >= 1, counted from the window's start): 0 / 1
    quoted    inside a "double-quoted" span (the python-docs corpus quotes code names that way): 0 / 1
    word_pos  position of a letter within its word: 0, 1, 2, 3 or later; other characters are left out (-1)

Each variable is computed from the model's own context window only (what it could know). Rows are
grouped by document (a pydoc topic of the python-docs corpus), so a probe is scored on documents it
never saw. Left out on purpose: token-level (BPE) variables, syntax trees, anything needing a parser.
"""

from __future__ import annotations

import torch

from llmlab.train.interp import residual_stack

VARIABLES = {"depth": 2, "quoted": 2, "word_pos": 4}  # name -> number of classes


def char_variables(window: str) -> dict[str, list[int]]:
    """Each variable's label at every character of `window` (-1 where it is undefined)."""
    depth, quoted, pos = 0, 0, 0
    out = {k: [] for k in VARIABLES}
    for ch in window:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch == '"':
            quoted = 1 - quoted
        pos = pos + 1 if ch.isalpha() else 0
        out["depth"].append(min(depth, 1))
        out["quoted"].append(quoted)  # the quote character itself counts as inside once opened
        out["word_pos"].append(min(pos - 1, 3) if ch.isalpha() else -1)
    return out


def documents() -> list[str]:
    """The python-docs corpus as its documents (pydoc topics, in the corpus's order)."""
    from pydoc_data.topics import topics

    return [topics[k].strip() for k in sorted(topics)]


def probe_rows(model, tok, docs: list[str], window: int = 64, per_doc: int = 2, every: int = 4, skip: int = 8,
               generator: torch.Generator | None = None) -> dict:
    """Run `model` on `per_doc` random windows of each document and keep every `every`-th position
    after the first `skip` (little context before them) -> {"acts" [L+1, N, C], "labels" {name: [N]},
    "groups" [N] (document index), "tokens" [N] (the character's id)}."""
    idx, groups, labels = [], [], {k: [] for k in VARIABLES}
    keep = torch.arange(skip, window, every)
    for d, text in enumerate(docs):
        if len(text) <= window:
            continue
        for _ in range(per_doc):
            start = int(torch.randint(len(text) - window, (1,), generator=generator))
            chunk = text[start:start + window]
            ids = tok.encode(chunk)
            if len(ids) != window:
                continue
            idx.append(ids)
            groups.append(d)
            var = char_variables(chunk)
            for k in VARIABLES:
                labels[k].append(torch.tensor(var[k])[keep])
    x = torch.tensor(idx)  # (W, window)
    acts = []
    for i in range(0, len(x), 64):
        _, resids = residual_stack(model, x[i:i + 64])  # (L+1, b, window, C)
        acts.append(resids[:, :, keep])
    acts = torch.cat(acts, 1).flatten(1, 2)  # (L+1, W * k, C)
    return {"acts": acts, "labels": {k: torch.stack(v).flatten() for k, v in labels.items()},
            "groups": torch.tensor(groups).repeat_interleave(len(keep)), "tokens": x[:, keep].flatten()}
