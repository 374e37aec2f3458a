"""A sequence classifier: the GPT's trunk reads the tokens, the hidden state of each sequence's
last real token goes through a linear head, one score per class.

    idx (B, T), lengths (B,) --wte + positions, N causal blocks--> h (B, T, C)
        --h[b, lengths[b] - 1]--> (B, C) --ln_f, head--> logits (B, K)

Batches of different lengths are padded on the RIGHT to the longest (`Classification` in
llmlab.train.objectives does it). Attention is causal, so a real token never looks at a
position after it: the hidden states of the real tokens are the same whatever the padding
holds, and pooling the last real one needs no key-padding mask. (Left padding would need one.)

The trunk is the GPT's own (`GPT(cfg).transformer`: the same blocks, names and GPT-2
initialisation), so a trained GPT's weights load into it: `clf.transformer.load_state_dict(
gpt.transformer.state_dict())`. Only the output layer over the vocabulary is dropped.

Left out on purpose: pooling by mean or a [CLS] token, left padding and key-padding masks,
multi-label heads, freezing the trunk (set requires_grad=False on `transformer` yourself).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from llmlab.models.gpt import GPT, GPTConfig, run_trunk


@dataclass
class ClassifierConfig(GPTConfig):
    """Unlike GPTConfig: `n_classes` for the head, and `tied` means nothing (there is no output
    layer over the vocabulary to tie). vocab_size counts the padding id too."""

    n_classes: int = 2  # K: scores per sequence

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.n_classes, int) or isinstance(self.n_classes, bool) or self.n_classes < 2:
            raise ValueError(f"n_classes={self.n_classes!r}: expected an integer >= 2")


class SequenceClassifier(nn.Module):
    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        if not isinstance(cfg, ClassifierConfig):
            raise ValueError(f"cfg: expected a ClassifierConfig, got {type(cfg).__name__}")
        self.config = cfg
        self.transformer = GPT(cfg).transformer  # wte, pos, drop, h, ln_f with GPT-2's init; no lm_head
        self.head = nn.Linear(cfg.n_embd, cfg.n_classes)
        nn.init.normal_(self.head.weight, mean=0.0, std=0.02)  # as GPT-2's Linear layers
        nn.init.zeros_(self.head.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """idx: LongTensor[B, T] padded on the right, lengths: LongTensor[B] in 1..T -> logits[B, K]."""
        if idx.dim() != 2:
            raise ValueError(f"idx: expected a LongTensor of shape (B, T), got shape {tuple(idx.shape)}")
        B, T = idx.shape
        if lengths.shape != (B,):
            raise ValueError(f"lengths: expected shape ({B},), one length per sequence, got {tuple(lengths.shape)}")
        x = run_trunk(self.transformer, self.config, idx)  # (B, T, C); causal: no real token sees the padding after it
        last = x[torch.arange(B, device=idx.device), lengths - 1]  # (B, C): each sequence's last real token
        return self.head(self.transformer.ln_f(last))  # (B, K); ln_f works per position, so pooling first is the same
