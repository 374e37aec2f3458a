"""The `llmlab sample` command: text from a checkpoint written by `llmlab train`.

    llmlab sample --checkpoint out/smoke/ckpt.pt --prompt "The"
"""

from __future__ import annotations

from pathlib import Path

import torch

from llmlab.device import get_device
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.train.checkpoint import load_checkpoint


def configure_sample(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a ckpt.pt written by llmlab train")
    parser.add_argument("--prompt", default="\n", help="text to continue")
    parser.add_argument("--max_new_tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", default="auto")


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """(model, tokenizer) from a checkpoint written by `llmlab train`."""
    from llmlab.text.tokenizers import Tokenizer

    ck = load_checkpoint(path, map_location="cpu")
    model = GPT(GPTConfig.from_dict(ck["config"]["model"]))
    model.load_state_dict(ck["model"])
    tok = ck.get("extra", {}).get("tokenizer")
    if tok is None:
        raise ValueError(f"checkpoint={str(path)!r} holds no tokenizer (it was written by train() without tokenizer=)")
    return model.to(device).eval(), Tokenizer.from_dict(tok)


def run_sample(args) -> int:
    from llmlab.generate.sampling import generate_text

    device = get_device(None if args.device == "auto" else args.device)
    model, tok = load_model(args.checkpoint, device)
    print(generate_text(model, tok, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed, device=device))
    return 0
