"""Lesson 13's machinery on tiny models: the chat template's special tokens, the vocabulary extension that
keeps the old logits, the SFT variants' labels, greedy responses batched by length equal to one at a time,
and few-shot scoring with a shared prefix equal to running each whole prompt (the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmlab.generate.fewshot import LABEL_WORDS, QUESTION, draw_shots, label_logprobs, prompt_parts
from llmlab.generate.instruct import qa_report, respond
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.models.smollm2 import chat_prompt
from llmlab.text.knowledge import KnowledgeBase
from llmlab.text.sentiment import Review
from llmlab.text.tokenizers import CharTokenizer
from llmlab.train.instruct import IGNORE, ChatTokenizer, SFTVariant, extend_vocab, lead_sentence, make_example, summary_user_text

CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,?:\n'"


def tiny_gpt(V: int, T: int = 64, seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=16, bias=False, pos_encoding="rope")
    return GPT(GPTConfig(**{**cfg, **kw})).eval()


@pytest.fixture(scope="module")
def tok():
    return ChatTokenizer(CharTokenizer(CHARS, byte_fallback=False))


def test_special_tokens_are_one_id_each_and_round_trip(tok):
    text = "<|user|>Where was Kalo born?<|assistant|>Tavira<|end|>"
    ids = tok.encode(text)
    n = len(CHARS)
    assert ids[0] == tok.user_id == n and tok.assistant_id == n + 1 and ids[-1] == tok.eos_id == n + 2
    assert ids.count(tok.assistant_id) == 1 and tok.decode(ids) == text
    assert tok.prompt("Hi?") == [tok.user_id, *tok.base.encode("Hi?"), tok.assistant_id]
    assert tok.knows("Hello.") and not tok.knows("héllo")
    with pytest.raises(ValueError, match="base"):
        ChatTokenizer(object())


def test_extend_vocab_keeps_every_old_logit_and_starts_new_rows_at_the_mean():
    old = tiny_gpt(20, T=32)
    new = extend_vocab(old, 3, block_size=48)
    assert new.config.vocab_size == 23 and new.config.block_size == 48
    x = torch.randint(20, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(new(x)[0][..., :20], old(x)[0], rtol=0, atol=1e-6)  # the same weights: float32 rounding only
    w = new.transformer.wte.weight
    torch.testing.assert_close(w[20:], old.transformer.wte.weight.mean(0).expand(3, -1))
    assert new.lm_head.weight is new.transformer.wte.weight  # still tied
    with pytest.raises(ValueError, match="n_new"):
        extend_vocab(old, -1)
    with pytest.raises(ValueError, match="only a RoPE model"):
        extend_vocab(tiny_gpt(20, pos_encoding="learned"), 1, block_size=99)


@pytest.mark.parametrize("variant", [SFTVariant(), SFTVariant(mask_prompt=False), SFTVariant(eos_in_loss=False)])
def test_variants_change_only_their_labels(variant):
    x, y = make_example([5, 6, 7], [8, 9], eos_id=2, variant=variant)
    assert x.tolist() == [5, 6, 7, 8, 9]
    want = [6, 7, 8, 9, 2]
    if variant.mask_prompt:
        want[:2] = [IGNORE, IGNORE]
    if not variant.eos_in_loss:
        want[-1] = IGNORE
    assert y.tolist() == want


def test_lead_sentence_and_summary_prompt():
    assert lead_sentence("Return the value.  More text here.\n\nAnd more.") == "Return the value."
    assert lead_sentence("No full stop\nat all\n\nSecond paragraph.") == "No full stop at all"
    assert lead_sentence("Call os.path.join(a, b). Then go.") == "Call os.path.join(a, b)."
    assert summary_user_text("a  b\n c " * 10, 11) == "Summarize:\na b c a b c"


def test_respond_batched_by_length_equals_one_at_a_time(tok):
    model = tiny_gpt(tok.vocab_size, T=64)
    prompts = [tok.prompt(q) for q in ("Who?", "Why not?", "How?", "Where?", "Why not?")]
    texts, stopped = respond(model, tok, prompts, max_new_tokens=6)
    for p, t, s in zip(prompts, texts, stopped):
        one, s1 = respond(model, tok, [p], max_new_tokens=6)
        assert (one[0], s1[0]) == (t, s)
    assert texts[1] == texts[4]


def test_qa_report_scores_an_oracle_and_the_baseline(tok, monkeypatch):
    kb = KnowledgeBase.generate(6, seed=0)
    qas = kb.questions(kb.people, held_out_template=False)
    import llmlab.generate.instruct as ev

    monkeypatch.setattr(ev, "respond", lambda model, tok, prompts, n: ([q.answer for q in qas], [True] * len(qas)))
    rep = qa_report(None, tok, qas, kb.majority_answer(qas))
    assert rep["em"][0] == 1.0 and rep["f1"][0] == 1.0 and rep["stop_rate"] == 1.0
    base = kb.majority_answer(qas)
    assert rep["baseline_em"][0] == pytest.approx(np.mean([base[q.fact.relation] == q.answer for q in qas]))


# ----------------------------------------------------------------------------- few-shot prompting
REVIEWS = [Review(f"review {i} was {'great' if i % 2 else 'awful'}", i % 2, "test") for i in range(20)]


def test_shots_are_label_balanced_and_drawn_from_train():
    for k in (0, 1, 2, 4, 8):
        shots = draw_shots(REVIEWS, k, seed=3)
        assert len(shots) == k and all(s in REVIEWS for s in shots) and len(set(shots)) == k
        assert abs(sum(s.label for s in shots) - k / 2) <= 0.5
    with pytest.raises(ValueError, match="k=-1"):
        draw_shots(REVIEWS, -1)
    with pytest.raises(ValueError, match="label 0"):
        draw_shots(REVIEWS[:4], 8)


def test_prompt_parts_join_to_the_chat_template():
    shots = draw_shots(REVIEWS, 2, seed=0)
    prefix, suffix = prompt_parts(shots, "A fine phone.")
    assert prefix + suffix == chat_prompt(
        [m for s in shots for m in ({"role": "user", "content": f"{QUESTION}\nReview: {s.text}"}, {"role": "assistant", "content": LABEL_WORDS[s.label]})]
        + [{"role": "user", "content": f"{QUESTION}\nReview: A fine phone."}])
    assert prefix == prompt_parts(shots, "Another one entirely.")[0] and suffix.startswith(" A fine phone.<|im_end|>")
    assert prefix.endswith("Answer with one word.\nReview:")


def test_shared_prefix_scores_equal_whole_prompts():
    """The oracle: each prompt run alone through GPT.forward. A grouped-query model (H_kv < H) as SmolLM2."""
    model = tiny_gpt(50, T=64, n_head=4, n_kv_head=2, n_embd=32)
    g = torch.Generator().manual_seed(0)
    prefix = torch.randint(50, (11,), generator=g).tolist()
    suffixes = [torch.randint(50, (n,), generator=g).tolist() for n in (3, 7, 1, 5, 7)]
    labels = [4, 9]
    got = label_logprobs(model, prefix, suffixes, labels, batch_size=2)  # (5, 2), batches of 2 with padding
    with torch.no_grad():
        want = torch.stack([model(torch.tensor([prefix + s]))[0][0, -1].log_softmax(-1)[labels] for s in suffixes])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)  # float32, another order of the same sums: ~1e-6


def test_prefix_and_suffix_tokenize_as_the_whole_prompt_with_smollm2s_tokenizer():
    """Sharing the prefix is exact only if BPE splits prefix + suffix where the two meet: it does, since the
    prefix ends in "Review:" and each suffix starts with a space (a new pre-tokenizer chunk)."""
    from llmlab.generate.fewshot import label_token_ids
    from llmlab.models.smollm2 import SmolTokenizer, default_cache

    path = default_cache() / "tokenizer.json"
    if not path.is_file():
        pytest.skip("SmolLM2's tokenizer is not in the course cache (llmlab prepare builds it)")
    smol = SmolTokenizer.from_file(path)
    shots = draw_shots(REVIEWS, 4, seed=1)
    for text in ("Great phone!", "don't buy it... it broke.", "5 stars", "Ünïcödé ✓ works", "(no) 'quotes'"):
        prefix, suffix = prompt_parts(shots, text)
        assert smol.encode(prefix) + smol.encode(suffix) == smol.encode(prefix + suffix), text
    neg, pos = label_token_ids(smol)
    assert smol.decode([neg]) != smol.decode([pos])
