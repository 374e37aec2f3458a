"""Chapter 07's checks: each passes the reference and the code of solutions/07_training.ipynb,
and rejects a bank of wrong implementations written the way learners write them (not copies
of the checks' own `Mistake`s), with the right hint where the mistake is a known one."""

from __future__ import annotations

import math

import torch

from _checks import assert_chapter, rejects
from llmlab.checks import check, load_all

load_all()
IDS = ["training.get_batch", "training.lr_at", "training.train_step"]


def test_chapter_contract():
    assert_chapter(IDS, "07_training.ipynb")


# ----------------------------------------------------------------------------- get_batch: correct variants pass
def test_get_batch_written_with_a_python_loop_passes():
    """Any uniform sampler passes, not only the reference's exact draws."""
    def get_batch(data, block_size, batch_size, generator=None):
        xs, ys = [], []
        for _ in range(batch_size):
            i = int(torch.randint(0, len(data) - block_size, (1,), generator=generator))
            xs.append(data[i : i + block_size])
            ys.append(data[i + 1 : i + 1 + block_size])
        return torch.stack(xs), torch.stack(ys)

    assert check("training.get_batch", get_batch, quiet=True)


# ----------------------------------------------------------------------------- get_batch: wrong ones fail
def _gb(starts, x_of=lambda d, s, T: d[s : s + T], y_of=lambda d, s, T: d[s + 1 : s + 1 + T]):
    def get_batch(data, block_size, batch_size, generator=None):
        ss = starts(len(data), block_size, batch_size, generator)
        return torch.stack([x_of(data, s, block_size) for s in ss]), torch.stack([y_of(data, s, block_size) for s in ss])
    return get_batch


def _uniform(N, T, B, g):
    return torch.randint(N - T, (B,), generator=g).tolist()


def test_y_not_shifted_is_rejected():
    rejects("training.get_batch", _gb(_uniform, y_of=lambda d, s, T: d[s : s + T]), hint="y must be the *next* tokens")


def test_y_shifted_by_two_is_rejected():
    def starts(N, T, B, g):
        return torch.randint(N - T - 1, (B,), generator=g).tolist()
    rejects("training.get_batch", _gb(starts, y_of=lambda d, s, T: d[s + 2 : s + 2 + T]), hint=None)


def test_last_window_never_sampled_is_rejected():
    def starts(N, T, B, g):  # the "safe" -1
        return torch.randint(0, N - T - 1, (B,), generator=g).tolist()
    rejects("training.get_batch", _gb(starts), hint="the last window is never drawn")


def test_window_overrun_is_rejected():
    def get_batch(data, block_size, batch_size, generator=None):
        ix = torch.randint(len(data) - block_size + 1, (batch_size,), generator=generator)
        x = torch.stack([data[i : i + block_size] for i in ix])
        y = torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])  # short last row: stack raises
        return x, y
    e = rejects("training.get_batch", get_batch)
    assert "past the end" in str(e) or "one past the end" in str(e)


def test_non_uniform_starts_are_rejected():
    def starts(N, T, B, g):  # a triangular distribution: the mean of two uniforms
        a = torch.randint(N - T, (B,), generator=g)
        b = torch.randint(N - T, (B,), generator=g)
        return ((a + b) // 2).tolist()
    e = rejects("training.get_batch", _gb(starts))
    assert "not equally often" in str(e)


def test_starts_only_at_block_boundaries_are_rejected():
    def get_batch(data, block_size, batch_size, generator=None):  # cut the corpus into chunks, pick chunks
        n_chunks = (len(data) - 1) // block_size
        c = torch.randint(n_chunks, (batch_size,), generator=generator)
        x = torch.stack([data[i * block_size : (i + 1) * block_size] for i in c])
        y = torch.stack([data[i * block_size + 1 : (i + 1) * block_size + 1] for i in c])
        return x, y
    rejects("training.get_batch", get_batch, hint="not only at multiples of block_size")


def test_ignoring_the_generator_is_rejected():
    def get_batch(data, block_size, batch_size, generator=None):
        ix = torch.randint(len(data) - block_size, (batch_size,))  # global RNG
        idx = ix[:, None] + torch.arange(block_size)
        return data[idx], data[idx + 1]
    rejects("training.get_batch", get_batch, hint="generator is ignored")


def test_returning_positions_instead_of_tokens_is_rejected():
    def get_batch(data, block_size, batch_size, generator=None):
        ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
        idx = ix[:, None] + torch.arange(block_size)
        return idx, idx + 1
    rejects("training.get_batch", get_batch)


def test_float_tokens_are_rejected():
    def get_batch(data, block_size, batch_size, generator=None):
        ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
        idx = ix[:, None] + torch.arange(block_size)
        return data[idx].float(), data[idx + 1].float()
    rejects("training.get_batch", get_batch, hint=None)


# ----------------------------------------------------------------------------- lr_at
def _lr(body):
    def lr_at(step, *, max_lr, min_lr, warmup_steps, max_steps):
        return body(step, max_lr, min_lr, warmup_steps, max_steps)
    return lr_at


def _cos(s, hi, lo, w, m):
    return lo + 0.5 * (1 + math.cos(math.pi * (s - w) / (m - w))) * (hi - lo)


def test_warmup_from_zero_is_rejected():
    impl = _lr(lambda s, hi, lo, w, m: hi * s / w if s < w else (lo if s > m else _cos(s, hi, lo, w, m)))
    rejects("training.lr_at", impl, hint="warmup is off by one")


def test_ratio_divided_by_max_steps_is_rejected():
    impl = _lr(lambda s, hi, lo, w, m: hi * (s + 1) / w if s < w else (lo if s > m else lo + 0.5 * (1 + math.cos(math.pi * (s - w) / m)) * (hi - lo)))
    rejects("training.lr_at", impl)


def test_linear_decay_is_rejected():
    impl = _lr(lambda s, hi, lo, w, m: hi * (s + 1) / w if s < w else max(lo, hi - (hi - lo) * (s - w) / (m - w)))
    rejects("training.lr_at", impl, hint="not a straight line")


def test_decay_to_zero_is_rejected():
    impl = _lr(lambda s, hi, lo, w, m: hi * (s + 1) / w if s < w else (lo if s > m else 0.5 * (1 + math.cos(math.pi * (s - w) / (m - w))) * hi))
    rejects("training.lr_at", impl, hint="must end at min_lr")


def test_cosine_over_the_whole_run_is_rejected():
    impl = _lr(lambda s, hi, lo, w, m: hi * (s + 1) / w if s < w else (lo if s > m else lo + 0.5 * (1 + math.cos(math.pi * s / m)) * (hi - lo)))
    rejects("training.lr_at", impl, hint="must start at warmup_steps")


def test_zero_after_the_end_is_rejected():
    impl = _lr(lambda s, hi, lo, w, m: hi * (s + 1) / w if s < w else (0.0 if s > m else _cos(s, hi, lo, w, m)))
    rejects("training.lr_at", impl)


def test_returning_a_tensor_is_accepted_but_a_list_is_not():
    good = _lr(lambda s, hi, lo, w, m: torch.tensor(hi * (s + 1) / w if s < w else (lo if s >= m else _cos(s, hi, lo, w, m)), dtype=torch.float64))
    assert check("training.lr_at", good, quiet=True)
    bad = _lr(lambda s, hi, lo, w, m: [hi])
    rejects("training.lr_at", bad)


# ----------------------------------------------------------------------------- train_step
def _ts(loop):
    def train_step(model, optimizer, batches, grad_clip=0.0):
        return loop(model, optimizer, batches, grad_clip)
    return train_step


def test_sum_of_losses_without_dividing_is_rejected():
    def loop(model, opt, batches, clip):
        opt.zero_grad()
        total = 0
        for x, y in batches:
            total = total + model(x, y)[1]
        (total / len(batches)).backward()  # right gradient...
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return total.item()  # ...but the sum is reported as the loss
    rejects("training.train_step", _ts(loop), hint="not their sum")


def test_backward_of_undivided_losses_is_rejected():
    def loop(model, opt, batches, clip):
        opt.zero_grad()
        losses = []
        for x, y in batches:
            loss = model(x, y)[1]
            loss.backward()
            losses.append(loss.item())
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return sum(losses) / len(losses)
    rejects("training.train_step", _ts(loop), hint="divide each micro-batch's loss")


def test_stepping_after_every_micro_batch_is_rejected():
    def loop(model, opt, batches, clip):
        losses = []
        for x, y in batches:
            opt.zero_grad()
            loss = model(x, y)[1]
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            losses.append(loss.item())
        return sum(losses) / len(losses)
    rejects("training.train_step", _ts(loop))


def test_forgetting_zero_grad_is_rejected():
    def loop(model, opt, batches, clip):
        losses = []
        for x, y in batches:
            loss = model(x, y)[1] / len(batches)
            loss.backward()
            losses.append(loss.item() * len(batches))
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return sum(losses) / len(losses)
    rejects("training.train_step", _ts(loop), hint="optimizer.zero_grad() at the start")


def test_ignoring_grad_clip_is_rejected():
    def loop(model, opt, batches, clip):
        opt.zero_grad()
        losses = []
        for x, y in batches:
            loss = model(x, y)[1]
            (loss / len(batches)).backward()
            losses.append(loss.item())
        opt.step()
        return sum(losses) / len(losses)
    rejects("training.train_step", _ts(loop), hint="clip the total gradient norm")


def test_clipping_each_parameter_separately_is_rejected():
    def loop(model, opt, batches, clip):
        opt.zero_grad()
        losses = []
        for x, y in batches:
            loss = model(x, y)[1]
            (loss / len(batches)).backward()
            losses.append(loss.item())
        if clip > 0:
            for p in model.parameters():  # per-tensor norms: changes the direction of the update
                torch.nn.utils.clip_grad_norm_([p], clip)
        opt.step()
        return sum(losses) / len(losses)
    rejects("training.train_step", _ts(loop))


def test_returning_a_0d_tensor_is_accepted():
    def loop(model, opt, batches, clip):
        opt.zero_grad()
        total = torch.zeros(())
        for x, y in batches:
            loss = model(x, y)[1] / len(batches)
            loss.backward()
            total += loss.detach()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return total
    assert check("training.train_step", _ts(loop), quiet=True)
