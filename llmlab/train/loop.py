"""Training: one loop for a laptop CPU, one GPU, or several GPUs (DDP under torchrun), for any objective.

    result = train(GPTConfig(...), tc, train_ids, val_ids)        # next-token prediction, the shorthand
    result = Trainer(model, objective, tc).fit()                  # any objective (llmlab.train.objectives)
    result.model, result.history, result.final_val_loss, result.metrics

The objective says what is learned: how a batch is drawn, how it becomes a loss, what to
evaluate. `Trainer(model, tc, train_ids, val_ids)` means `Trainer(model, NextToken(train_ids,
val_ids, tc.block_size, seed=tc.seed), tc)`: the second argument is a TrainConfig, so the two
after it are the data. Everything else is the loop's and the same for every objective:

Each step: the learning rate from `optim.lr_at` (warmup, then cosine), `grad_accum`
micro-batches through `optim.train_step` (autocast, scaled backward, clipping, AdamW) with
the objective's loss, and, every `eval_interval` steps, the objective's evaluation and an
atomic checkpoint (`checkpoint.py`) that holds the objective's state (its data position) too.
Losses stay on the device and are read once per `log_interval` steps: reading a GPU tensor
waits for the GPU, and waiting every step would idle it. A non-finite loss stops the run
with a clear error before it can overwrite the last good checkpoint.

Batches and DDP: every process draws the *same* examples from the objective's generator
(seeded alike on all ranks) and keeps its own slice, so two processes with `batch_size=b`
take exactly the step one process takes with `2b`. `batch_size` is per process and per
micro-batch: a step sees batch_size * grad_accum * world_size examples.

The `llmlab train` command and the TOML configs live in llmlab.train.cli; `llmlab sample` in llmlab.generate.cli.
Left out on purpose: FSDP/tensor parallelism, data loaders over files bigger than memory,
several objectives in one run (multi-task mixing), per-objective optimizers or schedules.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from llmlab.config import is_int, reject_unknown
from llmlab.device import DEVICES, get_device, seed_everything
from llmlab.models import ClassifierConfig, GPTConfig, build_model
from llmlab.train.checkpoint import load_checkpoint, model_class, objective_state, rng_state, save_checkpoint, set_rng_state
from llmlab.train.objectives import NextToken, Objective
from llmlab.train.optim import DTYPES, autocast_context, lr_at, make_optimizer, maybe_compile, resolve_amp_dtype, set_lr, train_step

DEVICE_KINDS = ("auto", *DEVICES)


class NonFiniteLoss(FloatingPointError):
    """The training loss became inf or nan: the run stopped, the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    max_steps: int = 1000  # optimizer steps (the schedule decays to min_lr at max_steps)
    batch_size: int = 16  # examples (sequences) per micro-batch, per process
    block_size: int | None = None  # next-token shorthand: context length of the windows; None = the model's
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    min_lr: float | None = None  # floor of the cosine; None = lr / 10
    warmup_steps: int | None = None  # linear warmup; None = 5% of max_steps
    weight_decay: float = 0.1  # on matrices only (see optim.param_groups)
    beta1: float = 0.9  # AdamW momentum
    beta2: float = 0.95  # AdamW second moment; GPT-3 used 0.95, small char models like 0.99
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 = no clipping
    grad_accum: int = 1  # micro-batches per optimizer step
    eval_interval: int = 100  # validate (and checkpoint) every this many steps, and at the end
    eval_iters: int = 20  # validation batches (of batch_size) per evaluation
    log_interval: int = 10  # read losses from the device every this many steps
    ckpt_interval: int | None = None  # checkpoint every this many steps; None = eval_interval
    device: str = "auto"  # "auto" (cuda > mps > cpu, or $LLMLAB_DEVICE), "cuda", "cuda:1", "mps", "cpu"
    dtype: str = "fp32"  # "fp32", "bf16" (autocast), "fp16" (autocast + GradScaler), "auto"
    compile: bool = False  # torch.compile the model (falls back to eager where unsupported)
    seed: int = 1337  # model init, dropout; the batch order of the next-token shorthand
    out_dir: str | None = None  # checkpoints and metrics.jsonl go here; None = keep nothing
    resume: bool = False  # continue from out_dir/ckpt.pt when it exists
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "eval_interval", "eval_iters", "log_interval"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise ValueError(f"{name}={v!r}: expected a positive integer")
        for name in ("block_size", "ckpt_interval"):
            v = getattr(self, name)
            if v is not None and (not is_int(v) or v < 1):
                raise ValueError(f"{name}={v!r}: expected a positive integer (or None)")
        if self.warmup_steps is not None and (not is_int(self.warmup_steps) or not 0 <= self.warmup_steps <= self.max_steps):
            raise ValueError(f"warmup_steps={self.warmup_steps!r}: expected an integer in 0..max_steps={self.max_steps}")
        if not is_int(self.seed):
            raise ValueError(f"seed={self.seed!r}: expected an integer")
        for name in ("lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip"):
            v = getattr(self, name)
            if v is None and name == "min_lr":
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}={v!r}: expected a finite number >= 0")
            setattr(self, name, float(v))
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr}: expected a positive learning rate")
        if self.min_lr is not None and self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr}: expected at most lr={self.lr}")
        for name in ("beta1", "beta2"):
            if getattr(self, name) >= 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected a number in [0, 1)")
        if self.dtype not in (*DTYPES, "auto"):
            raise ValueError(f"dtype={self.dtype!r}: expected one of {', '.join(map(repr, (*DTYPES, 'auto')))}")
        if not isinstance(self.device, str) or self.device.split(":")[0] not in DEVICE_KINDS:
            raise ValueError(f"device={self.device!r}: expected one of {', '.join(DEVICE_KINDS)} (e.g. 'cuda:0')")
        for name in ("compile", "resume", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}: expected true or false")
        if self.out_dir is not None:
            self.out_dir = str(self.out_dir)

    # the schedule, with the None defaults resolved
    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    @property
    def warmup(self) -> int:
        return self.max_steps // 20 if self.warmup_steps is None else self.warmup_steps

    def lr_at(self, step: int) -> float:
        return lr_at(step, max_lr=self.lr, min_lr=self.final_lr, warmup_steps=self.warmup, max_steps=self.max_steps)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        reject_unknown(cls, d, "train")
        return cls(**d)


# ----------------------------------------------------------------------------- processes and devices
@dataclass
class Dist:
    """Where this process sits in a (possibly one-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owned: bool = False  # we called init_process_group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> tuple[Dist, torch.device]:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group:
    NCCL on CUDA (one GPU per process, cuda:LOCAL_RANK), gloo on the CPU. One process: no group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = get_device(None if device == "auto" else device)
    if world <= 1 and not dist.is_initialized():
        return Dist(), dev
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    elif dev.type == "mps":
        raise ValueError("device='mps': several processes (WORLD_SIZE > 1) need 'cuda' or 'cpu'")
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Dist(dist.get_rank(), dist.get_world_size(), local, owned), dev


# ----------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict]  # one dict per step: step, train_loss, lr, tokens_per_s (+ val_loss, ... after evals)
    final_val_loss: float
    checkpoint: Path | None = None
    stopped: str | None = None  # why the run ended early ("SIGTERM", "callback"), else None
    metrics: dict = field(default_factory=dict)  # the last evaluation: {"val_loss": ..., "val_accuracy": ...}


class Trainer:
    """Holds one run's state; `fit()` trains to max_steps. `train()` is the short way in.

        Trainer(model, objective, tc)                 any objective (llmlab.train.objectives)
        Trainer(model, tc, train_ids, val_ids)        next-token prediction (NextToken)

    model: an nn.Module, or a config that builds one (GPTConfig, ClassifierConfig), seeded by
    tc.seed. tokenizer: saved in the checkpoint so `llmlab sample` can decode. callbacks:
    functions `cb(trainer, record)` called after every step (losses are then read every step);
    one that returns True stops the run (with a checkpoint). handle_signals: on SIGTERM, finish
    the step, checkpoint and stop (the CLI turns it on; a notebook kernel keeps its handlers).
    """

    def __init__(self, model: nn.Module | GPTConfig | ClassifierConfig, *args, tokenizer=None, extra_config: dict | None = None,
                 plot: bool = False, callbacks=(), handle_signals: bool = False):
        self.objective, self.tc = _objective_and_config(args)
        tc = self.tc
        self.dist, self.device = setup_distributed(tc.device)
        seed_everything(tc.seed + self.dist.rank)  # ranks differ only in their dropout masks
        if not isinstance(model, nn.Module):
            model = build_model(model)  # a GPTConfig, a ClassifierConfig (else a ValueError naming them)
        self.objective.bind(model)  # the data fits the model: vocabulary, context length, classes
        self.model = model.to(self.device)
        self.amp_dtype = resolve_amp_dtype(tc.dtype, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.optimizer = make_optimizer(self.model, tc.lr, tc.weight_decay, (tc.beta1, tc.beta2), device=self.device)
        self.step, self.history, self.stop_reason = 0, [], None
        self.tokenizer, self.extra_config = tokenizer, extra_config or {}
        self.callbacks, self.handle_signals = list(callbacks), handle_signals
        self.out_dir = Path(tc.out_dir) if tc.out_dir else None
        self.ckpt_path = self.out_dir / "ckpt.pt" if self.out_dir else None
        if tc.resume and self.ckpt_path and self.ckpt_path.is_file():
            self._resume(load_checkpoint(self.ckpt_path))  # to the CPU: load_state_dict copies to the device
        self.net = maybe_compile(self.model, self.device) if tc.compile else self.model  # eval uses this
        self.ddp = self.net
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.ddp = DDP(self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.plot = LossPlot() if plot and self.dist.is_main else None

    # --- data
    def batches(self) -> list[tuple[torch.Tensor, ...]]:
        """This rank's grad_accum micro-batches of the next step, on the device (all ranks draw the same examples)."""
        tc, d, pin = self.tc, self.dist, self.device.type == "cuda"
        drawn = self.objective.batches(tc.batch_size, tc.grad_accum, d.world_size, d.rank)
        return [tuple(_to(t, self.device, pin) for t in batch) for batch in drawn]

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The objective's metrics on its validation batches (the same every time): {"val_loss": ..., ...}."""
        self.net.eval()
        with autocast_context(self.device.type, self.amp_dtype):
            metrics = self.objective.evaluate(self.net, self.tc.batch_size, self.tc.eval_iters)
        self.net.train()
        if not isinstance(metrics, dict) or "val_loss" not in metrics:
            raise ValueError(f"{type(self.objective).__name__}.evaluate: expected a dict with 'val_loss', got {metrics!r}")
        return metrics

    # --- checkpoints
    def state_dict(self) -> dict:
        rngs = [None] * self.dist.world_size
        if self.dist.world_size > 1:
            dist.all_gather_object(rngs, rng_state())
        else:
            rngs = [rng_state()]
        config = getattr(self.model, "config", None)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "step": self.step,
            "config": {"model": config.to_dict() if config is not None else None, "model_class": type(self.model).__name__,
                       "train": self.tc.to_dict(), **self.extra_config},
            "data": {"objective": type(self.objective).__name__, "state": self.objective.state_dict(), "world_size": self.dist.world_size},
            "rng": rngs,
            "extra": {"tokenizer": self.tokenizer.to_dict() if self.tokenizer is not None else None},
        }

    def save(self) -> Path | None:
        state = self.state_dict()  # every rank joins the RNG gather
        if self.dist.is_main and self.ckpt_path:
            save_checkpoint(state, self.ckpt_path)
        return self.ckpt_path

    def _resume(self, ck: dict) -> None:
        where = f"resume: the checkpoint in {self.ckpt_path} is for another model"
        saved_class, now_class = model_class(ck), type(self.model).__name__
        if saved_class != now_class:
            raise ValueError(f"{where}: it holds a {saved_class}, this run trains a {now_class}")
        saved, now = ck["config"]["model"] or {}, self.model.config.to_dict() if hasattr(self.model, "config") else {}
        diff = {k: (saved.get(k), v) for k, v in now.items() if saved.get(k) != v}
        if diff:
            raise ValueError(f"{where}; differing settings (saved, now): {diff}")
        saved_objective = ck["data"].get("objective", "NextToken")  # older checkpoints: next-token prediction
        if saved_objective != type(self.objective).__name__:
            raise ValueError(f"resume: the checkpoint in {self.ckpt_path} was trained with objective {saved_objective}, "
                             f"this run uses {type(self.objective).__name__}")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.scaler is not None and ck["scaler"] is not None:
            self.scaler.load_state_dict(ck["scaler"])
        self.step = ck["step"]
        self.objective.load_state_dict(objective_state(ck))
        if len(ck["rng"]) == self.dist.world_size:
            set_rng_state(ck["rng"][self.dist.rank])
        else:  # another number of processes: dropout masks cannot continue exactly
            warnings.warn(f"resume: checkpoint written by {len(ck['rng'])} process(es), now {self.dist.world_size}; reseeding", stacklevel=2)
            seed_everything(self.tc.seed + self.dist.rank + self.step)
        self.history = [r for r in _read_jsonl(self.out_dir / "metrics.jsonl") if r["step"] < self.step]

    # --- the loop
    def fit(self) -> TrainResult:
        tc, main = self.tc, self.dist.is_main
        ckpt_every = tc.ckpt_interval or tc.eval_interval
        if main and self.out_dir:  # metrics of steps after the checkpoint were lost with the crash: drop them
            _write_jsonl(self.out_dir / "metrics.jsonl", self.history)
        bar = _progress_bar(tc.max_steps, self.step, enabled=tc.progress and main)
        old_handler = self._install_sigterm()
        pending: list[tuple[int, float, torch.Tensor, int]] = []  # (step, lr, loss on the device, tokens)
        t0, metrics = time.perf_counter(), {}
        self.net.train()
        try:
            while self.step < tc.max_steps and self.stop_reason is None:
                s = self.step
                lr = tc.lr_at(s)
                set_lr(self.optimizer, lr)
                batches = self.batches()
                loss = train_step(self.ddp, self.optimizer, batches, self.scaler, tc.grad_clip, self.amp_dtype, loss_fn=self.objective.loss)
                pending.append((s, lr, loss, sum(self.objective.tokens(b) for b in batches)))
                self.step = s + 1
                done = self.step == tc.max_steps
                evaluate = done or self.step % tc.eval_interval == 0
                save = self.ckpt_path is not None and (done or self.step % ckpt_every == 0)
                local_stop = self.stop_reason is not None and self.dist.world_size == 1
                if not (len(pending) >= tc.log_interval or evaluate or save or local_stop or self.callbacks):
                    continue
                records = self._flush(pending, time.perf_counter() - t0)  # raises on inf/nan
                pending, t0 = [], time.perf_counter()
                if evaluate:
                    metrics = self.evaluate()
                    records[-1].update(metrics)
                    t0 = time.perf_counter()  # evaluation time is not training throughput
                self.history.extend(records)
                if main:
                    self._report(records, bar)
                for cb in self.callbacks:
                    if cb(self, records[-1]):
                        self.stop_reason = "callback"
                if self.stop_reason is not None and self.ckpt_path is not None and not save:
                    save = True  # stopping early (SIGTERM / callback): keep where we are
                if save:
                    self.save()
            if self.stop_reason and main:
                where = f"; checkpoint at {self.ckpt_path}, continue with resume=True (--resume)" if self.ckpt_path else ""
                print(f"stopped by {self.stop_reason} after step {self.step}{where}", file=sys.stderr)
        finally:
            bar.close()
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)
            if self.dist.owned:
                dist.destroy_process_group()
        if self.plot:
            self.plot.update(self.history, final=True)
        if not metrics and self.stop_reason is None and self.step >= tc.max_steps:
            metrics = self.evaluate()  # resumed at max_steps: nothing trained, still report
        return TrainResult(self.model, self.history, metrics.get("val_loss", math.nan), self.ckpt_path, self.stop_reason, metrics)

    def _flush(self, pending, seconds: float) -> list[dict]:
        losses = torch.stack([p[2] for p in pending]).float()  # still on the device
        tokens = sum(p[3] for p in pending)
        if self.dist.world_size > 1:  # log the mean over ranks, so every rank sees the same numbers
            extra = torch.tensor([float(tokens), float(self.stop_reason is not None)], device=losses.device)
            both = torch.cat([losses, extra])
            dist.all_reduce(both)
            losses, (tokens, stop) = both[:-2] / self.dist.world_size, both[-2:].tolist()  # tokens of all ranks: padding differs
            if stop > 0 and self.stop_reason is None:
                self.stop_reason = "SIGTERM"
        values = losses.tolist()  # the one device -> host sync of this interval
        tps = tokens / max(seconds, 1e-9)
        for (s, _, _, _), v in zip(pending, values):
            if not math.isfinite(v):
                raise NonFiniteLoss(self._nonfinite_message(s, v))
        return [{"step": s, "train_loss": v, "lr": lr, "tokens_per_s": tps} for (s, lr, _, _), v in zip(pending, values)]

    def _nonfinite_message(self, step: int, value: float) -> str:
        if self.ckpt_path is not None and self.ckpt_path.is_file():
            kept = f"The last good checkpoint is kept at {self.ckpt_path} (step {torch.load(self.ckpt_path, weights_only=True, map_location='cpu')['step']})."
        else:
            kept = "No checkpoint was written (set out_dir to keep one)."
        hint = "fp16 overflows easily: try dtype='bf16' or 'fp32'" if self.amp_dtype == torch.float16 else "try a lower lr, more warmup_steps or grad_clip=1.0"
        return f"step {step}: the training loss is {value} (not finite), so training stopped. {kept} Usual causes: a learning rate too high, or {hint}."

    def _report(self, records: list[dict], bar) -> None:
        last = records[-1]
        if self.out_dir:
            with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
        post = {"loss": f"{last['train_loss']:.4f}", "lr": f"{last['lr']:.2e}", "tok/s": f"{last['tokens_per_s']:,.0f}"}
        if "val_loss" in last:
            post["val"] = f"{last['val_loss']:.4f}"
        post.update({k[4:]: f"{v:.4f}" for k, v in last.items() if k.startswith("val_") and k != "val_loss"})  # val_accuracy -> accuracy
        bar.set_postfix(post, refresh=False)
        bar.update(len(records))
        if self.plot:
            self.plot.update(self.history)

    def _install_sigterm(self):
        """SIGTERM (a scheduler pre-empting us, `kill`): finish the step, checkpoint, stop."""
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return None

        def on_sigterm(signum, frame):
            self.stop_reason = "SIGTERM"

        return signal.signal(signal.SIGTERM, on_sigterm)


def train(model: nn.Module | GPTConfig | ClassifierConfig, *args, plot: bool = False, **kwargs) -> TrainResult:
    """Train `model` (or a fresh one built from its config, seeded by tc.seed) and return the result.

        train(model, tc, train_ids, val_ids)     next-token prediction on 1-D LongTensors of token ids
        train(model, objective, tc)              any objective (llmlab.train.objectives)

    kwargs go to `Trainer` (tokenizer=, callbacks=, handle_signals=, extra_config=)."""
    return Trainer(model, *args, plot=plot, **kwargs).fit()


def _objective_and_config(args: tuple) -> tuple[Objective, TrainConfig]:
    """(objective, tc) from Trainer's positional arguments: (objective, tc), or the next-token
    shorthand (tc, train_ids, val_ids), recognised by the TrainConfig in first place."""
    if len(args) == 3 and isinstance(args[0], TrainConfig):
        tc, train_data, val_data = args
        return NextToken(train_data, val_data, tc.block_size, seed=tc.seed), tc
    if len(args) == 2 and isinstance(args[1], TrainConfig):
        objective, tc = args
        if tc.block_size is not None:
            raise ValueError(f"block_size={tc.block_size}: TrainConfig.block_size is for the next-token shorthand; "
                             f"give the objective its own (NextToken(..., block_size=)) and leave it None")
        if not isinstance(objective, Objective):
            raise ValueError(f"objective: expected an llmlab.train.objectives.Objective (NextToken, Classification, a subclass), "
                             f"got {type(objective).__name__}")
        return objective, tc
    kinds = ", ".join(type(a).__name__ for a in args)
    raise ValueError(f"Trainer(model, {kinds}): expected (model, objective, TrainConfig) or (model, TrainConfig, train_ids, val_ids)")


def _to(t: torch.Tensor, device: torch.device, pin: bool) -> torch.Tensor:
    return t.pin_memory().to(device, non_blocking=True) if pin else t.to(device)


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True, desc="train")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


class LossPlot:
    """A loss curve that redraws in place in a notebook (IPython display handle); elsewhere a no-op."""

    def __init__(self, min_seconds: float = 1.0):
        import matplotlib.pyplot as plt

        self.fig, self.ax = plt.subplots(figsize=(7, 3.5))
        plt.close(self.fig)  # we show it through the display handle only, not once more at cell end
        self.handle, self.last, self.min_seconds = None, 0.0, min_seconds
        try:
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is not None:
                self.handle = display(self.fig, display_id=True)
        except ImportError:
            pass

    def draw(self, history: list[dict]) -> None:
        ax = self.ax
        ax.clear()
        ax.plot([r["step"] for r in history], [r["train_loss"] for r in history], lw=1, label="train")
        val = [r for r in history if "val_loss" in r]
        if val:
            ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", ms=3, label="validation")
        ax.set(xlabel="step", ylabel="cross-entropy loss (nats)", title="Training loss")
        ax.legend()

    def update(self, history: list[dict], final: bool = False) -> None:
        if self.handle is None or not history or (not final and time.perf_counter() - self.last < self.min_seconds):
            return
        self.draw(history)
        self.handle.update(self.fig)
        self.last = time.perf_counter()
