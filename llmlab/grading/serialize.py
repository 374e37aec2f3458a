"""Plain data across the sandbox boundary: tagged JSON for structure, safetensors for tensors.

The grader sends probe inputs to the student's process and reads the outputs back in
this format, never with pickle (unpickling runs code chosen by whoever wrote the bytes)
and never with `torch.load`. Only these types cross, in either direction:

    torch.Tensor (dense, CPU; no subclasses) | int | float | bool | str | None | list | tuple | dict

JSON cannot tell a tuple from a list, cannot key a dict by an int or a tuple and has no
nan/inf, so those are tagged:

    (1, 2.0)                -> {"$tuple": [1, 2.0]}
    {(1, 2): 3}             -> {"$dict": [[{"$tuple": [1, 2]}, 3]]}   (every dict: keeps key types and order)
    float("nan")            -> {"$float": "nan"}
    tensor                  -> {"$tensor": "t0"}                      (bytes in the safetensors file)

`decode` is the strict side: it rebuilds only the types above, checks every tag, and
bounds sizes, so whatever the student's process wrote can at worst fail to decode.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

MAX_JSON_BYTES = 4 << 20  # structure of one exercise's outputs: a few KB in practice
MAX_TENSOR_BYTES = 64 << 20  # all tensors of one exercise's outputs
MAX_DEPTH = 32
MAX_ITEMS = 100_000
ALLOWED_DTYPES = {
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool,
}


class SerializationError(ValueError):
    """A value that is not plain data (or a file that does not hold plain data)."""


def encode(obj: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """obj -> (JSON-able structure, {name: tensor}). Raises SerializationError for anything
    that is not exactly one of the allowed types (a Tensor subclass or an object with a
    custom __eq__ is refused, not converted)."""
    tensors: dict[str, torch.Tensor] = {}
    count = [0]

    def enc(x: Any, depth: int) -> Any:
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
            raise SerializationError(f"value nested deeper than {MAX_DEPTH} or with more than {MAX_ITEMS} items")
        t = type(x)
        if t is torch.Tensor or t is torch.nn.Parameter:
            if x.layout != torch.strided or x.is_quantized or x.is_complex() or x.dtype not in ALLOWED_DTYPES:
                raise SerializationError(f"tensor with layout {x.layout} and dtype {x.dtype} is not plain data")
            name = f"t{len(tensors)}"
            # a plain, contiguous CPU copy: no views, no autograd graph, no subclass
            tensors[name] = x.detach().cpu().contiguous().clone()
            return {"$tensor": name}
        if t is bool or t is int or t is str or x is None:
            return x
        if t is float:
            return x if math.isfinite(x) else {"$float": repr(x)}
        if t is list:
            return [enc(v, depth + 1) for v in x]
        if t is tuple:
            return {"$tuple": [enc(v, depth + 1) for v in x]}
        if t is dict:
            return {"$dict": [[enc(k, depth + 1), enc(v, depth + 1)] for k, v in x.items()]}
        raise SerializationError(f"a {t.__module__}.{t.__qualname__} is not plain data (expected a tensor, number, bool, str, list, tuple or dict)")

    return enc(obj, 0), tensors


def decode(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `encode`, strict: unknown tags, missing tensors, or wrong types raise."""
    used: set[str] = set()
    count = [0]

    def dec(x: Any, depth: int) -> Any:
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
            raise SerializationError(f"value nested deeper than {MAX_DEPTH} or with more than {MAX_ITEMS} items")
        t = type(x)
        if t is bool or t is int or t is float or t is str or x is None:
            return x
        if t is list:
            return [dec(v, depth + 1) for v in x]
        if t is dict and len(x) == 1:
            (tag, val), = x.items()
            if tag == "$tensor" and type(val) is str and val in tensors:
                used.add(val)
                return tensors[val]
            if tag == "$tuple" and type(val) is list:
                return tuple(dec(v, depth + 1) for v in val)
            if tag == "$float" and val in ("nan", "inf", "-inf"):
                return float(val)
            if tag == "$dict" and type(val) is list and all(type(p) is list and len(p) == 2 for p in val):
                out = {}
                for k, v in val:
                    k = dec(k, depth + 1)
                    try:
                        hash(k)
                    except TypeError:
                        raise SerializationError(f"dict key of type {type(k).__name__} is not hashable") from None
                    out[k] = dec(v, depth + 1)
                return out
        raise SerializationError(f"unexpected value in serialized data: {str(x)[:80]!r}")

    return dec(data, 0)


def dumps(obj: Any) -> tuple[bytes, bytes]:
    """obj -> (json bytes, safetensors bytes)."""
    from safetensors.torch import save

    structure, tensors = encode(obj)
    return json.dumps(structure, allow_nan=False).encode(), save(tensors)


def loads(json_bytes: bytes, tensor_bytes: bytes) -> Any:
    """(json bytes, safetensors bytes) -> obj, refusing oversized or malformed input."""
    from safetensors.torch import load

    if len(json_bytes) > MAX_JSON_BYTES:
        raise SerializationError(f"structure is {len(json_bytes)} bytes, more than the limit {MAX_JSON_BYTES}")
    if len(tensor_bytes) > MAX_TENSOR_BYTES:
        raise SerializationError(f"tensors take {len(tensor_bytes)} bytes, more than the limit {MAX_TENSOR_BYTES}")
    try:
        structure = json.loads(json_bytes.decode("utf-8"), parse_constant=_no_constant)
        tensors = load(tensor_bytes) if tensor_bytes else {}
    except SerializationError:
        raise
    except Exception as e:  # truncated or forged bytes: a plain error, never code execution
        raise SerializationError(f"could not read serialized data: {type(e).__name__}: {str(e)[:120]}") from None
    for name, t in tensors.items():
        if type(t) is not torch.Tensor or t.dtype not in ALLOWED_DTYPES:
            raise SerializationError(f"tensor {name!r} has dtype {t.dtype}, not one of the allowed dtypes")
    return decode(structure, tensors)


def _no_constant(name: str):
    raise SerializationError(f"bare {name} in JSON (non-finite floats are tagged)")


def write(path_stem: Path, obj: Any) -> None:
    """Write obj as PATH.json + PATH.safetensors, atomically (a reader never sees half a file)."""
    js, st = dumps(obj)
    for suffix, data in ((".safetensors", st), (".json", js)):  # json last: its presence means complete
        tmp = path_stem.with_name(path_stem.name + suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path_stem.with_name(path_stem.name + suffix))


def read(path_stem: Path) -> Any:
    js, st = (path_stem.with_name(path_stem.name + s) for s in (".json", ".safetensors"))
    for p, limit in ((js, MAX_JSON_BYTES), (st, MAX_TENSOR_BYTES)):
        if not p.is_file():
            raise SerializationError(f"{p.name} is missing")
        if p.stat().st_size > limit:
            raise SerializationError(f"{p.name} is {p.stat().st_size} bytes, more than the limit {limit}")
    return loads(js.read_bytes(), st.read_bytes())
