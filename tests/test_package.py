"""The package as a whole: `import llmlab` and `llmlab doctor` without torch, a CLI that imports
only the chosen sub-command, the TOML reader's Python 3.10 fallback, and what the wheel ships."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def _python(code: str, tmp_path, hide: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter where each module in `hide` fails to import."""
    for name in hide:
        d = tmp_path / "hidden" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "__init__.py").write_text(f"raise ImportError('simulated: {name} is not installed')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "hidden"), str(ROOT)]))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


def test_import_llmlab_and_doctor_without_torch(tmp_path):
    r = _python("import llmlab, sys; print(llmlab.__version__, 'torch' in sys.modules)", tmp_path, hide=("torch",))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0.1.0", "False"]
    r = _python("import sys; from llmlab.cli import main; sys.exit(main(['doctor', '--no-compile']))", tmp_path, hide=("torch",))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "torch" in r.stdout and "MISSING" in r.stdout
    assert "torch is missing: run `make setup` (it installs the CPU build, torch==2.13.0)" in r.stderr


def test_llmlab_attributes_come_from_device_lazily():
    import llmlab
    from llmlab import device

    assert llmlab.fast_mode is device.fast_mode and llmlab.get_device is device.get_device
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        llmlab.nope  # noqa: B018


@pytest.mark.parametrize("argv, absent", [
    (["exercises"], ["llmlab.grading", "llmlab.train.cli", "llmlab.generate.cli", "llmlab.doctor"]),
    (["doctor", "--no-compile"], ["llmlab.grading", "llmlab.checks", "llmlab.train", "llmlab.course", "llmlab.models"]),
    (["--help"], ["llmlab.grading", "llmlab.checks", "llmlab.train", "llmlab.course", "llmlab.doctor", "torch"]),
])
def test_the_cli_imports_only_the_chosen_command(tmp_path, argv, absent):
    code = ("import sys\nfrom llmlab.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('llmlab', 'torch')))))" % argv)
    r = _python(code, tmp_path)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split()[-200:])
    assert not [m for m in absent if m in loaded or any(x.startswith(m + ".") for x in loaded)], loaded


def test_toml_reader_falls_back_to_tomli_before_python_311(monkeypatch, tmp_path):
    """llmlab.config reads TOML with tomllib on 3.11+, tomli on 3.10: the 3.10 branch, forced here."""
    pytest.importorskip("tomli", reason="tomli is in the dev extra; `make setup-dev` installs it")
    import llmlab.config as config

    monkeypatch.setattr(sys, "version_info", (3, 10, 14, "final", 0))
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on 3.10: there is no tomllib
    try:
        fallback = importlib.reload(config)
        assert fallback.tomllib.__name__ == "tomli"
        (tmp_path / "c.toml").write_text('[train]\nmax_steps = 3\nlr = 1e-3\n')
        assert fallback.load_toml(tmp_path / "c.toml") == {"train": {"max_steps": 3, "lr": 0.001}}
        assert fallback.parse_value("true") is True and fallback.parse_value("bf16") == "bf16"
    finally:
        monkeypatch.undo()
        importlib.reload(config)
    assert config.tomllib.__name__ == "tomllib"


def test_pyproject_lists_only_files_that_exist():
    from llmlab.config import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pkg, patterns in meta.get("tool", {}).get("setuptools", {}).get("package-data", {}).items():
        for pattern in patterns:
            assert list((ROOT / pkg.replace(".", "/")).glob(pattern)), f"package-data {pkg}: {pattern!r} matches no file"
    assert meta["project"]["requires-python"] == ">=3.10"


def test_the_library_imports_without_the_jupyter_stack(tmp_path):
    """jupyterlab, ipykernel, ipywidgets and nbclient are the `lab` extra: the library itself
    (models, training, checks, grader, plots) imports without them; widgets ask for them when shown."""
    code = "import llmlab.train, llmlab.generate.sampling, llmlab.checks, llmlab.grading, llmlab.viz.attention, llmlab.course; print('ok')"
    r = _python(code, tmp_path, hide=("jupyterlab", "ipykernel", "ipywidgets", "nbclient"))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_the_lab_extra_is_part_of_the_dev_extra():
    from llmlab.config import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"jupyterlab>=4.0", "ipykernel>=6.0", "ipywidgets>=8.0", "nbclient>=0.9"} <= set(extras["lab"])
    assert "llmlab[lab]" in extras["dev"]  # `make test` installs the course's Jupyter stack too
