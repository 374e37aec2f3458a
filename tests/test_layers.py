"""The package's layers: every import inside llmlab points down (or stays in its own package),
and no module imports itself round a cycle.

    layer 0  llmlab.config | llmlab.cache | llmlab.device        (no llmlab imports at all)
    layer 1  llmlab, the package                                 (fast_mode, get_device, ... from device)
    layer 2  llmlab.text (tokenizers, corpora, batches) | llmlab.nn (attention, positions, norms, MLP, block, hooks)
    layer 3  llmlab.models (gpt, classifier)
    layer 4  llmlab.train (optim, checkpoint, objectives, loop, cli)
    layer 5  llmlab.generate (sampling, cli)
    layer 6  llmlab.viz
    layer 7  llmlab.checks
    layer 8  llmlab.course
    layer 9  llmlab.grading | llmlab.doctor | llmlab.prepare
    layer 10 llmlab.cli;  layer 11 llmlab.__main__

The rule: a module may import a module of a lower layer, or one of its own package (llmlab.nn.block
-> llmlab.nn.attention). Two packages of one layer (text | nn) never import each other. Every
import counts, including those inside functions (a lazy import up the stack is still upward).
Private names (_x) are not imported from another module.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "llmlab"
LAYERS = [
    ["llmlab.config", "llmlab.cache", "llmlab.device", "llmlab.stats"],
    ["llmlab"],  # the package: `from llmlab import fast_mode` (lazily from llmlab.device)
    ["llmlab.text", "llmlab.nn"],
    ["llmlab.models"],
    ["llmlab.train"],
    ["llmlab.generate"],
    ["llmlab.viz"],
    ["llmlab.checks"],
    ["llmlab.course"],
    ["llmlab.grading", "llmlab.doctor", "llmlab.prepare"],
    ["llmlab.cli"],
    ["llmlab.__main__"],
]


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = modules()


def group(name: str) -> str:
    """The unit a layer is made of: llmlab.nn.block -> llmlab.nn; llmlab.config -> llmlab.config."""
    parts = name.split(".")
    return ".".join(parts[:2])


def layer(name: str) -> int:
    g = group(name)
    for i, names in enumerate(LAYERS):
        if g in names:
            return i
    raise AssertionError(f"{name}: not placed in any layer of tests/test_layers.py (add it to LAYERS)")


def imports(name: str) -> list[tuple[str, int, list[str]]]:
    """(imported llmlab module, line, names taken from it) for every import in module `name`."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, []) for a in node.names if a.name.split(".")[0] == "llmlab"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "llmlab":
                continue
            for a in node.names:  # `from llmlab.nn import attention`: the submodule, if it is one
                sub = f"{base}.{a.name}"
                if sub in MODULES:
                    found.append((sub, node.lineno, []))
                else:
                    found.append((base, node.lineno, [a.name]))
    return found


def test_every_module_has_a_layer():
    for name in MODULES:
        layer(name)


def test_imports_point_down_the_layers():
    bad = []
    for name in MODULES:
        for target, line, _ in imports(name):
            if target not in MODULES:
                bad.append(f"{name}:{line} imports {target}, which does not exist")
            elif group(target) != group(name) and layer(target) >= layer(name):
                bad.append(f"{name} (layer {layer(name)}):{line} imports {target} (layer {layer(target)})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = {name: {t for t, _, _ in imports(name) if t in MODULES and t != name} for name in MODULES}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_private_names_stay_in_their_module():
    bad = [f"{name}:{line} imports {n} from {target}" for name in MODULES for target, line, names in imports(name)
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def test_the_checker_catches_what_it_should(tmp_path, monkeypatch):
    """The rule itself can fail: an upward import and a cycle planted in a scratch copy are caught."""
    import shutil

    fake = tmp_path / "llmlab"
    shutil.copytree(PKG, fake, ignore=shutil.ignore_patterns("__pycache__"))
    (fake / "nn" / "attention.py").write_text((fake / "nn" / "attention.py").read_text() + "\nfrom llmlab.train import loop\n")
    (fake / "config.py").write_text((fake / "config.py").read_text() + "\nimport llmlab.cache\n")
    (fake / "cache.py").write_text((fake / "cache.py").read_text() + "\nfrom llmlab import config\n")
    import sys

    me = sys.modules[__name__]
    monkeypatch.setattr(me, "ROOT", tmp_path)
    monkeypatch.setattr(me, "PKG", fake)
    monkeypatch.setattr(me, "MODULES", modules())
    try:
        test_imports_point_down_the_layers()
    except AssertionError as e:
        assert "llmlab.nn.attention (layer 2)" in str(e) and "llmlab.train.loop (layer 4)" in str(e)
    else:
        raise AssertionError("an upward import was not caught")
    try:
        test_no_import_cycles()
    except AssertionError as e:
        assert "llmlab.cache <-> llmlab.config" in str(e)
    else:
        raise AssertionError("a cycle was not caught")
