"""Chapter 07's checks: each passes the reference and the code of solutions/07_training.ipynb,
and rejects a bank of wrong implementations written the way learners write them (not copies
of the checks' own `Mistake`s), with the right hint where the mistake is a known one."""

from __future__ import annotations

import math

import torch

from _checks import assert_chapter, rejects
from llmlab.checks import check, load_all

load_all()
IDS = ["training.get_batch", "training.lr_at", "training.train_step", "training.adamw_step"]


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


# ----------------------------------------------------------------------------- adamw_step: correct variants pass
def test_adamw_in_place_on_clones_the_way_torch_writes_it_passes():
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        beta1, beta2 = betas
        p, m, v = param.clone(), exp_avg.clone(), exp_avg_sq.clone()
        p.mul_(1 - lr * weight_decay)
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
        denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
        p.addcdiv_(m, denom, value=-lr / bc1)
        return p, m, v
    assert check("training.adamw_step", adamw_step, quiet=True)


def test_adamw_with_the_papers_folded_step_size_and_scaled_eps_passes():
    """Kingma & Ba's "more efficient" order: lr * sqrt(bc2) / bc1 as one step size. It is the same
    update only if eps is scaled by sqrt(bc2) too: lr m/bc1 / (sqrt(v/bc2) + eps) = lr sqrt(bc2)/bc1 * m / (sqrt(v) + eps sqrt(bc2))."""
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        b1, b2 = betas
        m = exp_avg * b1 + grad * (1 - b1)
        v = exp_avg_sq * b2 + grad.pow(2) * (1 - b2)
        sqrt_bc2 = math.sqrt(1 - b2 ** step)
        step_size = lr * sqrt_bc2 / (1 - b1 ** step)
        new = param - lr * weight_decay * param - step_size * m / (torch.sqrt(v) + eps * sqrt_bc2)
        return new, m, v
    assert check("training.adamw_step", adamw_step, quiet=True)


# ----------------------------------------------------------------------------- adamw_step: wrong answers are rejected
def test_adamw_updating_the_inputs_in_place_is_rejected():
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        b1, b2 = betas
        param.mul_(1 - lr * weight_decay)
        exp_avg.mul_(b1).add_(grad, alpha=1 - b1)
        exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (exp_avg_sq / (1 - b2 ** step)).sqrt() + eps
        param.sub_(lr * (exp_avg / (1 - b1 ** step)) / denom)
        return param, exp_avg, exp_avg_sq
    e = rejects("training.adamw_step", adamw_step)
    assert e.probe == "leaves its inputs unchanged" and "in place" in e.message


def test_adamw_adding_decay_to_the_gradient_is_rejected():
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        b1, b2 = betas
        grad = grad.add(param, alpha=weight_decay)  # "weight decay"
        m = b1 * exp_avg + (1 - b1) * grad
        v = b2 * exp_avg_sq + (1 - b2) * grad ** 2
        update = (m / (1 - b1 ** step)) / ((v / (1 - b2 ** step)).sqrt() + eps)
        return param - lr * update, m, v
    rejects("training.adamw_step", adamw_step, hint="L2 regularisation")


def test_adamw_correcting_only_the_first_moment_is_rejected():
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        b1, b2 = betas
        param = param * (1 - lr * weight_decay)
        m = b1 * exp_avg + (1 - b1) * grad
        v = b2 * exp_avg_sq + (1 - b2) * grad ** 2
        return param - lr * (m / (1 - b1 ** step)) / (v.sqrt() + eps), m, v
    e = rejects("training.adamw_step", adamw_step)
    assert "the new param" in e.message


def test_adamw_eps_under_the_root_is_rejected():
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        beta1, beta2 = betas
        param = param - lr * weight_decay * param
        exp_avg = beta1 * exp_avg + (1 - beta1) * grad
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
        m_hat, v_hat = exp_avg / (1 - beta1 ** step), exp_avg_sq / (1 - beta2 ** step)
        return param - lr * m_hat / torch.sqrt(v_hat + eps), exp_avg, exp_avg_sq
    rejects("training.adamw_step", adamw_step, hint="eps goes outside the square root")


def test_adamw_decaying_the_updated_parameter_is_rejected():
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        b1, b2 = betas
        m = b1 * exp_avg + (1 - b1) * grad
        v = b2 * exp_avg_sq + (1 - b2) * grad ** 2
        new_param = param - lr * (m / (1 - b1 ** step)) / (torch.sqrt(v / (1 - b2 ** step)) + eps)
        new_param = new_param - lr * weight_decay * new_param
        return new_param, m, v
    rejects("training.adamw_step", adamw_step, hint="decay the parameter before the Adam update")


def test_adamw_decay_without_the_learning_rate_is_rejected():
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        b1, b2 = betas
        param = param - weight_decay * param
        m = exp_avg * b1 + grad * (1 - b1)
        v = exp_avg_sq * b2 + grad.square() * (1 - b2)
        return param - lr * (m / (1 - b1 ** step)) / ((v / (1 - b2 ** step)).sqrt() + eps), m, v
    rejects("training.adamw_step", adamw_step, hint="scaled by the learning rate")


def test_adamw_folded_step_size_without_scaling_eps_is_rejected():
    """The paper's efficient form with eps left as it is: in effect eps / sqrt(1 - beta2 ** step), 30 times eps on step 1."""
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        b1, b2 = betas
        m = exp_avg * b1 + grad * (1 - b1)
        v = exp_avg_sq * b2 + grad.pow(2) * (1 - b2)
        step_size = lr * math.sqrt(1 - b2 ** step) / (1 - b1 ** step)
        return param * (1 - lr * weight_decay) - step_size * m / (v.sqrt() + eps), m, v
    e = rejects("training.adamw_step", adamw_step)
    assert "the new param values differ" in e.message


def test_adamw_swapped_betas_are_rejected():
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        beta2, beta1 = betas  # unpacked the wrong way round
        param = param * (1 - lr * weight_decay)
        m = beta1 * exp_avg + (1 - beta1) * grad
        v = beta2 * exp_avg_sq + (1 - beta2) * grad ** 2
        return param - lr * (m / (1 - beta1 ** step)) / ((v / (1 - beta2 ** step)).sqrt() + eps), m, v
    rejects("training.adamw_step", adamw_step)


def test_adamw_returning_the_states_in_the_wrong_order_is_rejected():
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        b1, b2 = betas
        m = b1 * exp_avg + (1 - b1) * grad
        v = b2 * exp_avg_sq + (1 - b2) * grad ** 2
        p = param * (1 - lr * weight_decay) - lr * (m / (1 - b1 ** step)) / ((v / (1 - b2 ** step)).sqrt() + eps)
        return p, v, m
    e = rejects("training.adamw_step", adamw_step)
    assert "exp_avg values differ" in e.message


def test_adamw_abs_instead_of_square_is_rejected():
    def adamw_step(param, grad, exp_avg, exp_avg_sq, step, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        b1, b2 = betas
        m = b1 * exp_avg + (1 - b1) * grad
        v = b2 * exp_avg_sq + (1 - b2) * grad.abs()
        p = param * (1 - lr * weight_decay) - lr * (m / (1 - b1 ** step)) / ((v / (1 - b2 ** step)).sqrt() + eps)
        return p, m, v
    rejects("training.adamw_step", adamw_step)
