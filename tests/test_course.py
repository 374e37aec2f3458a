"""The exercise pipeline: solutions/ -> exercises/ (stubs, cleared outputs, kept metadata, no drift)."""

from __future__ import annotations

import json

import nbformat
import pytest

from llmlab import course


def _nb(*cells, **meta):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    nb.metadata.update(meta)
    return nb


SOLVED = '''def softmax(x, dim=-1):
    """Docstring stays."""
    ### BEGIN SOLUTION
    e = (x - x.amax(dim, keepdim=True)).exp()
    return e / e.sum(dim, keepdim=True)
    ### END SOLUTION

check("attention.softmax", softmax)'''


def test_strip_solutions_keeps_indentation_and_the_rest():
    out, n = course.strip_solutions(SOLVED)
    assert n == 1
    assert out.splitlines() == [
        "def softmax(x, dim=-1):",
        '    """Docstring stays."""',
        "    # YOUR CODE HERE",
        "    raise NotImplementedError()",
        "",
        'check("attention.softmax", softmax)',
    ]
    ns: dict = {"check": lambda *a: None}
    exec(out, ns)  # the stub is valid Python...
    with pytest.raises(NotImplementedError):  # ...and raises what the checks expect
        ns["softmax"](1)


@pytest.mark.parametrize(
    "src, where",
    [
        ("### BEGIN SOLUTION\nx = 1\n", "never closed"),
        ("x = 1\n### END SOLUTION\n", "without a matching"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another"),
    ],
)
def test_unbalanced_markers_are_clear_errors(src, where):
    with pytest.raises(course.NotebookError, match=where):
        course.strip_solutions(src, "nb.ipynb, cell 3")


def test_make_exercise_clears_outputs_keeps_metadata_and_leaves_source_alone():
    code = nbformat.v4.new_code_cell(SOLVED, execution_count=4, outputs=[nbformat.v4.new_output("stream", text="✔\n")])
    code.metadata["tags"] = ["keep-me"]
    nb = _nb(nbformat.v4.new_markdown_cell("# Title"), code, llmlab={"assignment": "03_attention", "exercises": ["attention.softmax"]})
    before = nbformat.writes(nb)
    ex = course.make_exercise(nb, "03_attention.ipynb")
    assert nbformat.writes(nb) == before  # the solutions notebook is not modified
    cell = ex.cells[1]
    assert cell.outputs == [] and cell.execution_count is None
    assert cell.metadata["tags"] == ["keep-me"]
    assert "amax" not in cell.source and "raise NotImplementedError()" in cell.source
    assert ex.metadata["llmlab"]["exercises"] == ["attention.softmax"]
    assert ex.metadata["llmlab"]["generated_from"] == "solutions/03_attention.ipynb"
    assert ex.cells[0].source == "# Title"


def test_written_answers_in_markdown_are_replaced_and_invisible_in_the_solution():
    answer = ("**Question.** Why divide by the square root of D?\n\n<!-- BEGIN SOLUTION -->\n"
              "**Model answer.** The dot product of two random D-vectors has variance D.\n<!-- END SOLUTION -->\nMore text.")
    nb = _nb(nbformat.v4.new_markdown_cell(answer), nbformat.v4.new_code_cell(SOLVED))
    ex = course.make_exercise(nb, "03_attention.ipynb")
    assert ex.cells[0].source == "**Question.** Why divide by the square root of D?\n\n" + course.ANSWER_STUB + "\nMore text."
    assert "variance" not in nbformat.writes(ex)
    # the markers are HTML comments: the rendered solutions notebook shows no marker text
    assert all(line.startswith("<!--") and line.endswith("-->") for line in answer.splitlines() if "SOLUTION" in line)
    with pytest.raises(course.NotebookError, match="cell 0.*never closed"):
        course.make_exercise(_nb(nbformat.v4.new_markdown_cell("<!-- BEGIN SOLUTION -->\nanswer"), nbformat.v4.new_code_cell(SOLVED)), "x.ipynb")
    # a code marker in markdown (e.g. quoted in prose) is not a region
    quoted = "Write your code between `### BEGIN SOLUTION` and `### END SOLUTION`."
    assert course.make_exercise(_nb(nbformat.v4.new_markdown_cell(quoted), nbformat.v4.new_code_cell(SOLVED)), "x.ipynb").cells[0].source == quoted


def test_notebook_without_solution_region_is_refused():
    with pytest.raises(course.NotebookError, match="nothing for a student"):
        course.make_exercise(_nb(nbformat.v4.new_code_cell("x = 1")), "x.ipynb")


def _course(tmp_path, source=SOLVED):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "llmlab").mkdir()
    nbformat.write(_nb(nbformat.v4.new_code_cell(source)), str(tmp_path / "solutions" / "03_attention.ipynb"))
    return tmp_path


def test_build_then_check_detects_hand_edits_missing_and_orphans(tmp_path):
    root = _course(tmp_path)
    assert course.build(root, check=True) == ["exercises/03_attention.ipynb is missing"]
    assert course.build(root) == []
    assert course.build(root, check=True) == []
    ex = root / "exercises" / "03_attention.ipynb"
    ex.write_text(ex.read_text().replace("YOUR CODE HERE", "I solved it here"))
    assert "differs" in course.build(root, check=True)[0]
    course.build(root)
    assert course.build(root, check=True) == []
    (root / "exercises" / "99_orphan.ipynb").write_text(ex.read_text())
    assert course.build(root, check=True) == ["exercises/99_orphan.ipynb has no source in solutions/"]
    course.build(root)
    assert not (root / "exercises" / "99_orphan.ipynb").exists()


def test_malformed_solutions_notebook_names_the_file(tmp_path):
    root = _course(tmp_path)
    (root / "solutions" / "04_broken.ipynb").write_text('{"cells": [')
    with pytest.raises(course.NotebookError, match="04_broken.ipynb: not a readable Jupyter notebook"):
        course.build(root)


def test_cli_check_exit_codes(tmp_path, capsys):
    from llmlab.cli import main

    root = _course(tmp_path)
    assert main(["course", "build", "--check", "--root", str(root)]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["course", "build", "--root", str(root)]) == 0
    assert main(["course", "build", "--check", "--root", str(root)]) == 0


def test_repository_exercises_are_in_sync_with_solutions(root):
    """exercises/ must be exactly what `llmlab course build` makes of solutions/."""
    assert course.build(root, check=True) == []


def test_every_solutions_notebook_declares_registered_exercises(root):
    from llmlab.checks import REGISTRY, load_all

    load_all()
    for path in sorted((root / "solutions").glob("*.ipynb")):
        meta = json.loads(path.read_text())["metadata"].get("llmlab", {})
        assert meta.get("assignment") == path.stem, f"{path.name}: metadata.llmlab.assignment should be {path.stem!r}"
        ids = meta.get("exercises")
        assert ids, f"{path.name}: metadata.llmlab.exercises is empty"
        unknown = [i for i in ids if i not in REGISTRY]
        assert not unknown, f"{path.name}: exercises {unknown} are not registered in llmlab.checks"
        source = "\n".join(c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in json.loads(path.read_text())["cells"])
        for i in ids:
            assert f'check("{i}"' in source, f"{path.name}: exercise {i} is declared but never checked in the notebook"
