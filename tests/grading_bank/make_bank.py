"""The grader's test bank: one submission per way a class of notebooks goes wrong, with the
grade each must get. tests/test_grading.py grades the whole bank in one run and checks
every row; to look at the notebooks themselves:

    .venv/bin/python tests/grading_bank/make_bank.py /tmp/bank      # writes one file per student

The assignment is chapter 03's four attention exercises (10 points):
softmax 2, causal_mask 1, scaled_dot_product_attention 3, MultiHeadAttention 4.
Each case lists its expected score per exercise and phrases its feedback must contain.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

EXERCISES = ["attention.softmax", "attention.causal_mask", "attention.scaled_dot_product_attention", "attention.MultiHeadAttention"]
SM, CM, SDPA, MHA = EXERCISES

IMPORTS = """\
import math
import torch
import torch.nn.functional as F
from torch import nn
from llmlab.checks import check"""

SOFTMAX = """\
def softmax(x, dim=-1):
    m = x.amax(dim=dim, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # a row of -inf stays -inf
    e = (x - m).exp()
    return e / e.sum(dim=dim, keepdim=True)
check("attention.softmax", softmax)"""

CAUSAL_MASK = """\
def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).tril()
check("attention.causal_mask", causal_mask)"""

SDPA_CODE = """\
def scaled_dot_product_attention(q, k, v, mask=None):
    s = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return F.softmax(s, dim=-1) @ v
check("attention.scaled_dot_product_attention", scaled_dot_product_attention)"""

MHA_CODE = """\
class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, n_heads, causal=True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError("d_model must be divisible by n_heads")
        self.H, self.causal = n_heads, causal
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.H, C // self.H).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-2, -1) / math.sqrt(C // self.H)
        if self.causal:
            s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        y = F.softmax(s, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))
check("attention.MultiHeadAttention", MultiHeadAttention)"""

CORRECT = [IMPORTS, SOFTMAX, CAUSAL_MASK, SDPA_CODE, MHA_CODE]
FULL = {SM: 2, CM: 1, SDPA: 3, MHA: 4}


def others_full(**scores) -> dict:
    """Full marks except the exercises named (by short key: sm, cm, sdpa, mha)."""
    keys = {"sm": SM, "cm": CM, "sdpa": SDPA, "mha": MHA}
    return {**FULL, **{keys[k]: v for k, v in scores.items()}}


@dataclass
class Case:
    name: str  # the student's name: the file is NAME.ipynb unless `filename` says otherwise
    why: str  # what it tries, in words
    expected: dict[str, float]  # exercise id -> points
    cells: list[str] | None = None  # code cells; None with `raw`
    raw: bytes | None = None  # the file's bytes, for what is not a valid notebook
    filename: str | None = None
    feedback: list[str] = field(default_factory=list)  # phrases the student's feedback must contain
    flagged: bool = False
    needs: str | None = None  # an isolation layer the case needs to be safe/meaningful: "process_cap", "landlock", "network"

    def write(self, folder: Path) -> Path:
        path = folder / (self.filename or f"{self.name}.ipynb")
        if self.raw is not None:
            path.write_bytes(self.raw)
        else:
            nb = new_notebook(cells=[new_markdown_cell(f"# 03_attention: {self.name}")] + [new_code_cell(c) for c in self.cells])
            nb.metadata["llmlab"] = {"assignment": "03_attention", "exercises": EXERCISES}
            nbformat.write(nb, str(path))
        return path


def _replace(cells: list[str], old: str, new: str | list[str]) -> list[str]:
    out = []
    for c in cells:
        if c == old:
            out.extend([new] if isinstance(new, str) else new)
        else:
            out.append(c)
    return out


STUB = "def {name}(*args, **kwargs):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
CELLS_ESCAPE = [
    "blocked = []\nimport os",
    # each attempt in its own cell: a refused one raises, the grader records it, the rest still run
    "blocked.append('read /etc/passwd')\nopen('/etc/passwd').read()\nblocked.pop()",
    "blocked.append('list /')\nos.listdir('/')\nblocked.pop()",
    "blocked.append('list other submissions')\nos.listdir('../..')\nblocked.pop()",
    "blocked.append('read the grader environment')\nopen(f'/proc/{os.getppid()}/environ').read()\nblocked.pop()",
    "blocked.append('write /tmp')\nopen('/tmp/llmlab_bank_escaped.txt', 'w').write('pwned')\nblocked.pop()",
    "blocked.append('write ..')\nopen('../escaped.txt', 'w').write('pwned')\nblocked.pop()",
]

CASES: list[Case] = [
    # ------------------------------------------------------------------ honest students
    Case("honest_correct", "every exercise right", FULL, CORRECT, feedback=["Score: 10 / 10"]),
    Case("honest_partly_wrong", "softmax without the max trick, a mask without its diagonal, MHA without c_proj",
         {SM: 1.5, CM: 0, SDPA: 3, MHA: 1.6},  # MHA: 2 of 5 cases (causality, the ValueError) x 4 points
         _replace(_replace(_replace(CORRECT,
             SOFTMAX, "def softmax(x, dim=-1):\n    return x.exp() / x.exp().sum(dim=dim, keepdim=True)"),
             CAUSAL_MASK, "def causal_mask(T):\n    return torch.ones(T, T, dtype=torch.bool).tril(-1)"),
             MHA_CODE, MHA_CODE.replace("return self.c_proj(y.transpose(1, 2).reshape(B, T, C))", "return y.transpose(1, 2).reshape(B, T, C)")),
         feedback=["stable for large logits", "subtract the maximum", "keep the diagonal", "output projection c_proj"]),
    Case("untouched_exercise_notebook", "hands in the exercise notebook as given out",
         {e: 0 for e in EXERCISES},
         [IMPORTS] + [STUB.format(name=n) for n in ("softmax", "causal_mask", "scaled_dot_product_attention")]
         + ["class MultiHeadAttention(nn.Module):\n    def __init__(self, d_model, n_heads, causal=True):\n"
            "        super().__init__()\n        raise NotImplementedError()"],
         feedback=["not implemented yet"]),
    # ------------------------------------------------------------------ gaming the comparison
    # nothing scores: even "leaves its input unchanged" compares the output with the reference
    Case("eq_always_true", "returns objects that claim to equal anything: __eq__ -> True, a Tensor subclass, numpy arrays, a giant tensor",
         {SM: 0, CM: 0, SDPA: 0, MHA: 0},
         [IMPORTS,
          "class Anything:\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n    shape = property(lambda self: (3, 4, 5))\n"
          "def softmax(x, dim=-1):\n    return Anything()",
          "class Sneaky(torch.Tensor):\n    def __eq__(self, other): return torch.ones_like(other, dtype=torch.bool)\n"
          "def causal_mask(T):\n    return torch.zeros(T, T, dtype=torch.bool).as_subclass(Sneaky)",
          "import numpy as np\ndef scaled_dot_product_attention(q, k, v, mask=None):\n    return np.zeros(q.shape[:-1] + v.shape[-1:])",
          "class MultiHeadAttention(nn.Module):\n    def __init__(self, d_model, n_heads, causal=True):\n        super().__init__()\n"
          "        self.c_attn, self.c_proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)\n"
          "    def forward(self, x):\n        return torch.zeros(16, 1024, 1024)  # 64 MB: more than a result file may hold"],
         feedback=["not plain data"]),
    Case("patches_the_checker", "replaces llmlab's comparison functions and torch.allclose in its own process, hands in softmax = identity",
         others_full(sm=0),
         CORRECT[:1] + ["import llmlab.checks.core as core\ncore.compare_tensors = lambda *a, **k: None\ncore.CheckFailed = Exception\n"
                        "torch.allclose = lambda *a, **k: True\ntorch.testing.assert_close = lambda *a, **k: None\n"
                        "def softmax(x, dim=-1):\n    return x.clone()"] + CORRECT[2:],
         feedback=["values differ"]),
    # ------------------------------------------------------------------ the course's own reference
    Case("calls_the_reference", "hands in llmlab's implementations: an alias, a wrapper, an import, a subclass",
         {e: 0 for e in EXERCISES},
         [IMPORTS + "\nfrom llmlab.nn import attention as ref",
          "softmax = ref.softmax",
          "def causal_mask(T):\n    return ref.causal_mask(T)",
          "from llmlab.nn.attention import scaled_dot_product_attention",
          "class MultiHeadAttention(ref.MultiHeadAttention):\n    pass"],
         feedback=["flagged", "llmlab"], flagged=True),
    Case("hides_the_reference", "reaches llmlab through importlib and a variable, inside otherwise own code",
         others_full(sm=0),
         CORRECT[:1] + ["import importlib\ndef softmax(x, dim=-1):\n"
                        "    impl = importlib.import_module('llmlab.nn.attention')\n    return impl.softmax(x, dim)"] + CORRECT[2:],
         feedback=["flagged"], flagged=True),
    # ------------------------------------------------------------------ broken notebooks and files
    Case("syntax_error", "a syntax error in the cell that defines softmax", others_full(sm=0),
         _replace(CORRECT, SOFTMAX, SOFTMAX.replace("def softmax(x, dim=-1):", "def softmax(x, dim=-1)")),
         feedback=["SyntaxError", "no function named `softmax`"]),
    Case("renamed_functions", "calls its functions my_softmax and Attention", others_full(sm=0, mha=0),
         _replace(_replace(CORRECT, SOFTMAX, SOFTMAX.replace("softmax(", "my_softmax(").replace("check(\"attention.softmax\", my_softmax)", "")),
                  MHA_CODE, MHA_CODE.replace("class MultiHeadAttention", "class MultiHeadAttn").replace(", MultiHeadAttention)", ", MultiHeadAttn)")),
         feedback=["`my_softmax`", "renamed", "no class named `MultiHeadAttention`"]),
    Case("missing_functions", "only did the first exercise", {SM: 2, CM: 0, SDPA: 0, MHA: 0}, CORRECT[:2],
         feedback=["no function named `causal_mask`"]),
    Case("truncated_notebook", "upload cut off halfway", {e: 0 for e in EXERCISES},
         raw=nbformat.writes(new_notebook(cells=[new_code_cell(c) for c in CORRECT])).encode()[:700], feedback=["not valid JSON"]),
    Case("not_a_notebook", "a PDF instead of the notebook", {e: 0 for e in EXERCISES},
         raw=b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n", filename="not_a_notebook.pdf", feedback=["not a Jupyter notebook"]),
    Case("empty_file", "a 0-byte .ipynb", {e: 0 for e in EXERCISES}, raw=b"", feedback=["empty"]),
    Case("empty_notebook", "a notebook without cells", {e: 0 for e in EXERCISES}, cells=[], feedback=["no code"]),
    # ------------------------------------------------------------------ hanging, dying, exhausting
    Case("infinite_loop_cell", "a `while True: pass` cell after correct answers", FULL,
         CORRECT + ["while True:\n    pass"], feedback=["infinite loop", "run again without it"]),
    Case("infinite_loop_function", "softmax never returns", others_full(sm=0),
         _replace(CORRECT, SOFTMAX, "def softmax(x, dim=-1):\n    while True:\n        pass"), feedback=["limit per cell"]),
    Case("exits_in_cells", "sys.exit(), exit(), os._exit(0) and SIGKILL to itself, between correct answers", FULL,
         CORRECT[:3] + ["import sys\nsys.exit(3)", "exit()", "import os\nos._exit(0)"] + CORRECT[3:]
         + ["import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"],
         feedback=["SystemExit", "ended the process"]),
    Case("exits_in_function", "scaled_dot_product_attention calls os._exit(1)", others_full(sdpa=0),
         _replace(CORRECT, SDPA_CODE, "import os\ndef scaled_dot_product_attention(q, k, v, mask=None):\n    os._exit(1)"),
         feedback=["ended the process"]),
    Case("memory_bomb", "allocates 64 GB at once, then grows a list until memory runs out", FULL,
         CORRECT + ["x = bytearray(64 * 2**30)", "hog = []\nwhile True:\n    hog.append(bytearray(50 * 2**20))"],
         feedback=["MemoryError"]),
    Case("fork_bomb", "forks until the process limit stops it", FULL,
         CORRECT + ["import os\nwhile True:\n    os.fork()"], feedback=["code cell 5"], needs="process_cap"),
    Case("many_children", "starts 100 sleeping children and leaves them behind", FULL,
         CORRECT + ["import os, time\nfor _ in range(100):\n    if os.fork() == 0:\n        time.sleep(600)\n        os._exit(0)"]),
    Case("output_flood", "prints 200 MB and writes 64 MB straight to the stdout file descriptor", FULL,
         CORRECT + ["for _ in range(200_000):\n    print('x' * 1000)", "import os\nfor _ in range(64):\n    os.write(1, b'y' * 2**20)"],
         feedback=["File too large"]),
    # ------------------------------------------------------------------ reaching outside the sandbox
    Case("escapes_the_folder", "reads and writes outside its folder; softmax is right only if every attempt was refused", FULL,
         CELLS_ESCAPE + CORRECT + ["if len(blocked) != 6:  # an attempt that worked popped its entry\n    softmax = lambda x, dim=-1: x"],
         feedback=["PermissionError"], needs="landlock"),
    Case("network_and_secrets", "opens sockets (also via _socket, past the Python-level block) and reads secrets; "
         "each exercise is right only if that attempt failed", FULL,
         CORRECT + ["import os\nif os.environ.get('LLMLAB_BANK_SECRET') or len(os.environ) > 30:\n    softmax = lambda x, dim=-1: x",
                    "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 22), timeout=1)\n    causal_mask = None\nexcept OSError:\n    pass",
                    "import _socket\ns = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)\ns.sendto(b'grades?', ('8.8.8.8', 53))\n"
                    "scaled_dot_product_attention = None"],
         feedback=["Network is unreachable"], needs="network"),
]


def build(folder: Path, cases: list[Case] | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [c.write(folder) for c in (CASES if cases is None else cases)]


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "grading_bank_out")
    for p in build(out):
        print(p)
