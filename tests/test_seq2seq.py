"""The encoder-decoder, its decoding and its training objectives: CrossAttention equals
torch.nn.MultiheadAttention and the course's MultiHeadAttention(cross=True); the model ignores
source padding and is causal in the target; forward's loss is teacher forcing's cross-entropy;
beam search equals an exhaustive search on a tiny vocabulary; a few Trainer steps learn."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from llmlab.generate.seq2seq import beam_search, greedy_decode, prefix_greedy_decode
from llmlab.models import MODELS, build_model
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.models.seq2seq import CrossAttention, EncoderDecoder, EncoderMemory, Seq2SeqConfig, alignment_hits, cross_attention, shift_right
from llmlab.nn.attention import MultiHeadAttention
from llmlab.train import TrainConfig, Trainer
from llmlab.train.seq2seq import PrefixTranslation, Translation

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed=0, V=11, **kw) -> EncoderDecoder:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=V, block_size=16, n_encoder_layer=2, n_decoder_layer=2, n_head=2, n_embd=16) | kw
    m = EncoderDecoder(Seq2SeqConfig(**cfg)).eval()
    with torch.no_grad():  # decisive logits: the untrained init is nearly uniform
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return m


def test_shift_right():
    assert shift_right(torch.tensor([[5, 6, 2], [7, 2, 0]]), 1).tolist() == [[1, 5, 6], [1, 7, 2]]
    with pytest.raises(ValueError, match="tgt"):
        shift_right(torch.tensor([1, 2]), 1)


def test_cross_attention_equals_torch_multihead_attention():
    torch.manual_seed(0)
    C, H = 12, 3
    ours, theirs = CrossAttention(C, H), torch.nn.MultiheadAttention(C, H, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    x, mem = torch.randn(2, 5, C), torch.randn(2, 7, C)
    is_token = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    want, _ = theirs(x, mem, mem, key_padding_mask=~is_token)
    torch.testing.assert_close(ours(x, mem, is_token), want, atol=1e-6, rtol=1e-5)  # float32 rounding only
    torch.testing.assert_close(ours(x, mem), theirs(x, mem, mem)[0], atol=1e-6, rtol=1e-5)


def test_cross_attention_equals_the_course_multihead_attention_cross():
    torch.manual_seed(1)
    C, H = 8, 2
    ours, course = CrossAttention(C, H), MultiHeadAttention(C, H, causal=False, cross=True)
    with torch.no_grad():
        course.q_proj.weight.copy_(ours.q_proj.weight)
        course.q_proj.bias.copy_(ours.q_proj.bias)
        course.kv_proj.weight.copy_(torch.cat([ours.k_proj.weight, ours.v_proj.weight]))
        course.kv_proj.bias.copy_(torch.cat([ours.k_proj.bias, ours.v_proj.bias]))
        course.c_proj.weight.copy_(ours.out_proj.weight)
        course.c_proj.bias.copy_(ours.out_proj.bias)
    x, mem = torch.randn(3, 6, C), torch.randn(3, 4, C)
    is_token = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(ours(x, mem, is_token), course(x, memory=mem, key_padding_mask=~is_token), atol=1e-6, rtol=1e-5)


def test_model_is_registered_and_rebuilds_from_its_config():
    m = _model()
    assert MODELS["EncoderDecoder"] == (EncoderDecoder, Seq2SeqConfig)
    m2 = build_model(m.config.to_dict(), "EncoderDecoder")
    m2.load_state_dict(m.state_dict())
    src, tgt = torch.randint(3, 11, (2, 5)), torch.randint(3, 11, (2, 4))
    torch.testing.assert_close(m2.eval()(src, tgt)[0], m(src, tgt)[0], atol=0, rtol=0)
    with pytest.raises(ValueError, match="n_embd"):
        Seq2SeqConfig(n_embd=10, n_head=4)
    with pytest.raises(ValueError, match="pad_id, bos_id, eos_id"):
        Seq2SeqConfig(bos_id=0)


def test_source_padding_changes_nothing_and_the_decoder_is_causal():
    m = _model()
    src, tgt = torch.randint(3, 11, (1, 5)), torch.randint(3, 11, (1, 6))
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], dim=1)  # pad_id 0 on the right
    torch.testing.assert_close(m.decode(tgt, m.encode(padded)), m.decode(tgt, m.encode(src)), atol=1e-5, rtol=1e-5)
    other = tgt.clone()
    other[0, 4:] = 3  # change the last two target tokens: logits before them stay
    torch.testing.assert_close(m.decode(other, m.encode(src))[:, :4], m.decode(tgt, m.encode(src))[:, :4], atol=1e-6, rtol=1e-6)


def test_forward_is_teacher_forcing_with_padding_ignored():
    m = _model()
    src = torch.tensor([[4, 5, 6], [7, 8, 0]])
    tgt = torch.tensor([[5, 6, 7, 2], [9, 2, 0, 0]])
    logits, loss = m(src, tgt)
    want = m.decode(torch.tensor([[1, 5, 6, 7], [1, 9, 2, 0]]), m.encode(src))
    torch.testing.assert_close(logits, want)
    real = tgt != 0
    torch.testing.assert_close(loss, F.cross_entropy(want[real], tgt[real]))


def test_greedy_decode_is_beam_search_of_width_one_and_stops_per_row():
    m = _model(seed=3)
    src = torch.randint(3, 11, (5, 4))
    greedy = greedy_decode(m, src, 1, 2, 9)
    assert greedy == beam_search(m, src, 1, 2, 9, beam_size=1, alpha=0.0)
    for row, s in zip(greedy, src):  # each row is what one-at-a-time decoding of its source gives
        assert greedy_decode(m, s[None], 1, 2, 9) == [row]
        assert 1 not in row and 2 not in row and len(row) <= 9


def _logp(m, src, seq, eos=None):
    """log p(seq [+ eos] | src) under the model, summed over the tokens."""
    full = seq + ([eos] if eos is not None else [])
    lp = F.log_softmax(m.decode(torch.tensor([[1] + full[:-1]]), m.encode(src)), -1)[0]  # (T, V)
    return sum(lp[t, tok].item() for t, tok in enumerate(full))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_finds_the_exhaustive_best_on_a_tiny_vocabulary(alpha):
    m = _model(seed=5, V=5)  # words 3 and 4 (and the specials, which an untrained model may write too)
    src = torch.tensor([[3, 4, 3]])
    L, words = 3, [0, 1, 3, 4]
    ended = [list(s) for n in range(L) for s in itertools.product(words, repeat=n)]  # up to L - 1 words, then <eos>
    scored = [(_logp(m, src, c, 2) / (len(c) + 1) ** alpha, c) for c in ended]
    scored += [(_logp(m, src, list(s)) / L ** alpha, list(s)) for s in itertools.product(words, repeat=L)]  # no <eos> within L
    best = max(scored)[1]
    # a beam as wide as the whole search space keeps every candidate: it must find the best one
    assert beam_search(m, src, 1, 2, L, beam_size=len(scored), alpha=alpha) == [best]


def test_beam_search_validates():
    m = _model()
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(m, torch.ones(1, 2, dtype=torch.long), 1, 2, 3, beam_size=0)
    with pytest.raises(ValueError, match="alpha"):
        beam_search(m, torch.ones(1, 2, dtype=torch.long), 1, 2, 3, alpha=-1)
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(m, torch.ones(1, 2, dtype=torch.long), 1, 2, -1)


def _copy_task(n, seed):
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        s = torch.randint(3, 9, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g).tolist()
        pairs.append((s, s[::-1]))  # reverse the source
    return pairs


def test_translation_objective_learns_to_reverse():
    torch.manual_seed(0)
    m = EncoderDecoder(Seq2SeqConfig(vocab_size=9, block_size=8, n_encoder_layer=1, n_decoder_layer=1, n_head=2, n_embd=32))
    obj = Translation(_copy_task(400, 0), _copy_task(50, 1))
    tc = TrainConfig(max_steps=150, batch_size=32, lr=3e-3, eval_interval=150, eval_iters=2, progress=False, device="cpu")
    before = obj.evaluate(m, 32, 2)["val_loss"]
    res = Trainer(m, obj, tc).fit()
    assert res.metrics["val_loss"] < before / 3 and res.metrics["val_accuracy"] > 0.8
    src, tgt = obj.collate(obj.train, torch.tensor([0, 1]))
    assert (tgt == 2).sum() == 2 and src.shape[0] == 2  # one <eos> per target
    with pytest.raises(ValueError, match="EncoderDecoder"):
        Trainer(GPT(GPTConfig(vocab_size=9, block_size=8, n_layer=1, n_head=1, n_embd=8)), obj, tc)
    with pytest.raises(ValueError, match="pad_id"):
        Translation([([0, 3], [3])], [([3], [3])])


def test_prefix_translation_masks_the_source_and_decodes():
    obj = PrefixTranslation([([4, 5, 6], [7, 8])], [([4], [5])])
    x, y = obj.collate(obj.train, torch.tensor([0]))
    assert x.tolist() == [[4, 5, 6, 1, 7, 8]] and y.tolist() == [[-100, -100, -100, 7, 8, 2]]
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=9, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    out = prefix_greedy_decode(gpt, [[4, 5], [6, 7, 8], [3, 3]], 1, 2, 4)
    idx = torch.tensor([[6, 7, 8, 1]])
    first = gpt(idx)[0][0, -1].argmax().item()
    assert len(out) == 3 and (out[1][:1] == [first] or first == 2)


def test_cross_attention_weights_and_alignment_hits():
    m = _model()
    src, tgt = torch.randint(3, 11, (2, 5)), torch.randint(3, 11, (2, 4))
    ws = cross_attention(m, src, tgt)
    assert len(ws) == 2 and ws[0].shape == (2, 2, 4, 5)
    torch.testing.assert_close(ws[1].sum(-1), torch.ones(2, 2, 4))
    w = torch.zeros(1, 2, 3, 4)
    w[0, :, 0, 2] = w[0, :, 1, 0] = w[0, :, 2, 3] = 1.0
    assert alignment_hits(w, [[2, -1, 1]]) == [(1, 2)]  # position 1 unaligned; position 2 looks at 3, not 1
    mem = m.encode(src)
    assert isinstance(mem, EncoderMemory) and mem.index_select(torch.tensor([1, 1, 0])).states.shape == (3, 5, 16)
    assert math.isfinite(m(src, tgt)[1].item())


def test_plots_draw_and_validate():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmlab.viz.seq2seq import plot_cross_attention, plot_intervals

    w = torch.softmax(torch.randn(3, 4), -1)
    ax = plot_cross_attention(w, list("abcd"), list("xyz"), [1, -1, 3])
    assert len(ax.patches) == 2 and [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]
    with pytest.raises(ValueError, match="weights"):
        plot_cross_attention(w, list("abc"), list("xyz"))
    ax = plot_intervals({"a": (50.0, 40.0, 60.0), "b": (70.0, 65.0, 72.0)}, "BLEU")
    assert [round(p.get_height(), 6) for p in ax.patches] == [50.0, 70.0]
    with pytest.raises(ValueError, match="results"):
        plot_intervals({}, "BLEU")
    plt.close("all")
