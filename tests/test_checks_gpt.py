"""Chapter 06's check, gpt.GPT: it passes the reference (whose positions live at
transformer.pos.wpe: the translation table) and the class in solutions/06_gpt.ipynb, and
rejects a bank of wrong assemblies written the way learners write them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _checks import assert_chapter, rejects
from llmlab.checks import REGISTRY, check, load_all
from llmlab.models import gpt as ref

load_all()
IDS = ["gpt.GPT"]


def test_chapter_contract():
    assert_chapter(IDS, "06_gpt.ipynb")


# ----------------------------------------------------------------------------- the bank
def gpt_class(forward=None, tied=True, head_bias=False, wpe_name="wpe", ln_f=True):
    """A learner's GPT in nanoGPT's layout; `forward(self, idx, targets)` replaces the correct one."""

    class GPT(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.config = cfg
            parts = dict(wte=nn.Embedding(cfg.vocab_size, cfg.n_embd), h=nn.ModuleList([ref.Block(cfg) for _ in range(cfg.n_layer)]))
            parts[wpe_name] = nn.Embedding(cfg.block_size, cfg.n_embd)
            if ln_f:
                parts["ln_f"] = ref.LayerNorm(cfg.n_embd)
            self.transformer = nn.ModuleDict(parts)
            self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=head_bias)
            if tied:
                self.lm_head.weight = self.transformer.wte.weight

        def embed(self, idx):
            T = idx.size(1)
            return self.transformer.wte(idx) + self.transformer[wpe_name](torch.arange(T))

        def trunk(self, x):
            for block in self.transformer.h:
                x = block(x)
            return self.transformer.ln_f(x) if ln_f else x

        def forward(self, idx, targets=None):
            if forward is not None:
                return forward(self, idx, targets)
            logits = self.lm_head(self.trunk(self.embed(idx)))
            loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            return logits, loss

    return GPT


def _ce(logits, targets):
    return None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _no_positions(s, idx, targets):
    logits = s.lm_head(s.trunk(s.transformer.wte(idx)))
    return logits, _ce(logits, targets)


def _positions_off_by_one(s, idx, targets):
    T = idx.size(1)
    x = s.transformer.wte(idx) + s.transformer.wpe(torch.arange(1, T + 1) % s.config.block_size)
    logits = s.lm_head(s.trunk(x))
    return logits, _ce(logits, targets)


def _ln_f_first(s, idx, targets):
    x = s.transformer.ln_f(s.embed(idx))
    for block in s.transformer.h:
        x = block(x)
    logits = s.lm_head(x)
    return logits, _ce(logits, targets)


def _sum_loss(s, idx, targets):
    logits = s.lm_head(s.trunk(s.embed(idx)))
    return logits, None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")


def _softmax_then_ce(s, idx, targets):
    logits = s.lm_head(s.trunk(s.embed(idx)))
    return logits, None if targets is None else F.cross_entropy(logits.softmax(-1).flatten(0, 1), targets.flatten())


def _shifted_again(s, idx, targets):  # targets are already the next tokens: shifting again skips one
    logits = s.lm_head(s.trunk(s.embed(idx)))
    return logits, None if targets is None else F.cross_entropy(logits[:, :-1].flatten(0, 1), targets[:, 1:].flatten())


def _logits_only(s, idx, targets):
    return s.lm_head(s.trunk(s.embed(idx)))


def _zero_loss_without_targets(s, idx, targets):
    logits = s.lm_head(s.trunk(s.embed(idx)))
    return logits, torch.tensor(0.0) if targets is None else _ce(logits, targets)


def _blocks_reversed(s, idx, targets):
    x = s.embed(idx)
    for block in reversed(s.transformer.h):
        x = block(x)
    logits = s.lm_head(s.transformer.ln_f(x))
    return logits, _ce(logits, targets)


def _softmax_output(s, idx, targets):
    probs = s.lm_head(s.trunk(s.embed(idx))).softmax(-1)
    return probs, _ce(probs, targets)


@pytest.mark.parametrize("impl, hint", [
    (gpt_class(tied=False), "tie the output layer"),
    (gpt_class(_no_positions), "position embeddings"),
    (gpt_class(ln_f=False), "no parameter `transformer.ln_f.weight`"),
    (gpt_class(_sum_loss), "not the sum"),
    (gpt_class(_softmax_then_ce), "do not softmax first"),
    (gpt_class(_shifted_again), None),
    (gpt_class(_logits_only), "a pair (logits, loss)"),
    (gpt_class(_zero_loss_without_targets), "(logits, None)"),
    (gpt_class(head_bias=True), "lm_head.bias"),
    (gpt_class(wpe_name="pos_emb"), "no parameter `transformer.wpe.weight`"),
    (gpt_class(_positions_off_by_one), None),
    (gpt_class(_ln_f_first), None),
    (gpt_class(_blocks_reversed), None),
    (gpt_class(_softmax_output), None),
])
def test_gpt_rejects(impl, hint):
    rejects("gpt.GPT", impl, hint)


def _trunk_no_ln(s, x):  # blocks without the final LayerNorm (ln_f exists but is never applied)
    for block in s.transformer.h:
        x = block(x)
    return x


def test_gpt_without_final_norm_gets_the_ln_f_hint():
    def fwd(s, idx, targets):
        logits = s.lm_head(_trunk_no_ln(s, s.embed(idx)))
        return logits, _ce(logits, targets)
    rejects("gpt.GPT", gpt_class(fwd), "final LayerNorm ln_f")


def test_gpt_accepts_other_correct_forms():
    def transposed_ce(s, idx, targets):  # cross-entropy over the class axis 1: the same mean
        logits = s.lm_head(s.trunk(s.embed(idx)))
        return logits, None if targets is None else F.cross_entropy(logits.transpose(1, 2), targets)

    assert check("gpt.GPT", gpt_class(), quiet=True)
    assert check("gpt.GPT", gpt_class(transposed_ce), quiet=True)


def test_probe_inputs_and_outputs_are_plain_data():
    # the grader sends inputs to a sandboxed process and reads outputs back as JSON + tensors
    from llmlab.checks.core import make_generator
    from llmlab.grading import serialize

    ex = REGISTRY["gpt.GPT"]
    for i, probe in enumerate(ex.probes):
        args = probe.inputs(make_generator(i))
        serialize.encode(args)
        serialize.encode(probe.run(ex.reference, *args))
