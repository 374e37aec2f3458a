"""Reading a submission's source for graded code that is llmlab's own reference."""

from __future__ import annotations

import ast


# ----------------------------------------------------------------------------- "just calls llmlab's reference"
def static_flags(cells: list[str], name: str) -> list[str]:
    """Read the notebook's source: is `name` bound to, wrapping or subclassing llmlab's own
    implementation of the same name? Catches `from llmlab.nn.attention import softmax`,
    `softmax = ref.softmax`, `def softmax(x, dim=-1): return ref.softmax(x, dim)`,
    `class MultiHeadAttention(ref.MultiHeadAttention)`, and dynamic imports of llmlab
    inside the graded code. (Deliberately obfuscated code can evade a reader; the grader
    says so in the security model.)"""
    trees = []
    for src in cells:
        try:
            trees.append(ast.parse(src))
        except (SyntaxError, ValueError):
            trees.append(None)  # the runner skips it too (magics are transformed there; a cell with them rarely defines a graded function)
    aliases: dict[str, str] = {}
    for tree in filter(None, trees):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "llmlab":
                        aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else "llmlab"
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "llmlab" and not node.level:
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    definition = None
    for tree in filter(None, trees):
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                definition = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and any(isinstance(t, ast.Name) and t.id == name
                                                                       for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
                definition = node
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
                definition = node
    if definition is None:
        return []
    flags = set()
    if isinstance(definition, (ast.Import, ast.ImportFrom)) and aliases.get(name, "").split(".")[0] == "llmlab":
        flags.add(f"`{name}` is imported from llmlab ({aliases[name]}), not written in the notebook")
    for node in ast.walk(definition):
        dotted = _dotted(node)
        if dotted:
            root, *rest = dotted.split(".")
            if root in aliases:
                full = ".".join([aliases[root], *rest])
                if full.split(".")[-1] == name and not full.startswith("llmlab.checks"):
                    flags.add(f"`{name}` uses llmlab's own {full}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "llmlab" in node.value:
            flags.add(f"`{name}` loads the llmlab package by name ({node.value[:40]!r})")
    return sorted(flags)


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None
