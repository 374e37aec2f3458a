"""llmlab.train.sft: the layout of an instruction example, the padding, and the objective's loss
being the mean over the step's response tokens however the step is split."""

from __future__ import annotations

import pytest
import torch

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.train.sft import IGNORE, InstructionTuning, build_example, collate


def test_build_example_shifts_masks_the_prompt_and_keeps_the_first_response_token_and_eos():
    x, y = build_example([5, 6, 7], [8, 9], eos_id=2)
    assert x.tolist() == [5, 6, 7, 8, 9] and y.tolist() == [IGNORE, IGNORE, 8, 9, 2]
    x, y = build_example([5, 6, 7], [8, 9], eos_id=2, mask_prompt=False)
    assert y.tolist() == [6, 7, 8, 9, 2]
    assert build_example([5], [], eos_id=2)[1].tolist() == [2]  # an empty response still learns to stop
    with pytest.raises(ValueError, match="prompt_ids: expected at least one token"):
        build_example([], [1], eos_id=2)


def test_collate_pads_on_the_right_with_pad_and_ignore():
    a, b = build_example([5, 6], [7], 2), build_example([5, 6, 7, 8], [9, 10], 2)
    x, y, is_token = collate([a, b], pad_id=0)
    assert x.tolist() == [[5, 6, 7, 0, 0, 0], [5, 6, 7, 8, 9, 10]]
    assert y.tolist() == [[IGNORE, 7, 2, IGNORE, IGNORE, IGNORE], [IGNORE, IGNORE, IGNORE, 9, 10, 2]]
    assert is_token.tolist() == [[True] * 3 + [False] * 3, [True] * 6]


def examples(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        p = torch.randint(3, 20, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist()
        r = torch.randint(3, 20, (int(torch.randint(0, 5, (1,), generator=g)),), generator=g).tolist()
        out.append(build_example(p, r, eos_id=2))
    return out


def grads(model, obj, n_micro, world_size=1):
    """The summed gradient of one step as the loop takes it: each micro-batch's loss / n_micro, every rank."""
    model.zero_grad()
    for rank in range(world_size):
        obj.generator.manual_seed(obj.seed)
        for batch in obj.batches(4 // (n_micro * world_size), n_micro, world_size, rank):
            (obj.loss(model, batch) / n_micro / world_size).backward()  # / world_size: DDP's average
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_the_step_is_the_same_however_it_is_split():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=1, n_head=2, n_embd=8)).double()
    obj = InstructionTuning(examples(30), examples(5, 1), pad_id=0)
    obj.bind(model)
    one = grads(model, obj, 1)
    torch.testing.assert_close(grads(model, obj, 2), one, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grads(model, obj, 2, world_size=2), one, rtol=1e-12, atol=1e-14)
    # the loss of one batch is the mean over its response tokens
    obj.generator.manual_seed(obj.seed)
    x, y, norm = obj.batches(4)[0]
    logits = model(x)[0]
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 20), y.reshape(-1), ignore_index=IGNORE)
    torch.testing.assert_close(obj.loss(model, (x, y, norm)), want, rtol=1e-12, atol=0)


def test_training_learns_the_responses():
    from llmlab.train.loop import TrainConfig, train

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=32))
    data = [build_example([3, 4, 5 + i % 4], [10 + i % 4, 15], eos_id=2) for i in range(32)]  # the answer depends on the prompt's last token
    obj = InstructionTuning(data, data[:8], pad_id=0)
    obj.bind(model)
    before = obj.evaluate(model, 8, 1)["val_loss"]
    train(model, obj, TrainConfig(max_steps=150, batch_size=8, lr=3e-3, eval_interval=1000, eval_iters=1, warmup_steps=0, progress=False))
    after = obj.evaluate(model, 8, 1)["val_loss"]
    assert before > 2.0 and after < 0.1


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="pad_id=-1: expected a token id"):
        InstructionTuning(examples(2), examples(2), pad_id=-1)
    with pytest.raises(ValueError, match=r"examples\[0\]: inputs of 2 tokens but labels of 1"):
        collate([(torch.tensor([1, 2]), torch.tensor([1]))], 0)
    obj = InstructionTuning(examples(2), examples(2), pad_id=0)
    with pytest.raises(ValueError, match="model: InstructionTuning expected an llmlab.models.gpt.GPT"):
        obj.bind(torch.nn.Linear(2, 2))
