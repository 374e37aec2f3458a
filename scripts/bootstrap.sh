#!/usr/bin/env bash
# Create (or reuse) the course's virtual environment and install llmlab into it.
#   scripts/bootstrap.sh          the course: llmlab[lab] (JupyterLab, widgets, torch)
#   scripts/bootstrap.sh dev      the course plus the test tools: llmlab[dev] (which includes [lab])
# Environment knobs:
#   PYTHON=python3.12             the interpreter that creates the venv (>= 3.10)
#   LLMLAB_VENV=.venv             where the venv lives
#   LLMLAB_TORCH="torch==2.13.0"  what to install when the venv has no torch yet
#   TORCH_INDEX_URL=...           e.g. https://download.pytorch.org/whl/cpu for a small CPU-only
#                                 torch, or a CUDA index; a torch already in the venv is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-lab}
PYTHON=${PYTHON:-python3}
VENV=${LLMLAB_VENV:-.venv}
TORCH_SPEC=${LLMLAB_TORCH:-torch==2.13.0}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "bootstrap: $PYTHON not found; install Python >= 3.10 or set PYTHON=/path/to/python3" >&2
  exit 1
fi
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
  echo "bootstrap: llmlab needs Python >= 3.10, but $PYTHON is $("$PYTHON" --version 2>&1); set PYTHON=..." >&2
  exit 1
}
if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
# torch first, pinned, so that nothing below pulls a multi-GB CUDA build by accident.
# A torch that is already there (your own CUDA or ROCm build) is kept.
if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
  echo "bootstrap: installing $TORCH_SPEC"
  "${PIP[@]}" "$TORCH_SPEC" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
stamp="$VENV/.llmlab-installed-$extra"
fresh() { [ -f "$1" ] && ! [ pyproject.toml -nt "$1" ] && ! [ scripts/no-deps.txt -nt "$1" ]; }
# The dev install includes the course install: `make lab` after `make test` installs nothing (and never
# reinstalls llmlab under a test run that is using it).
if ! fresh "$stamp" && ! { [ "$extra" = lab ] && fresh "$VENV/.llmlab-installed-dev"; }; then
  echo "bootstrap: installing llmlab[$extra] (editable)"
  "${PIP[@]}" -e ".[$extra]"
  # data and weights packages, without their dependencies (see scripts/no-deps.txt)
  mapfile -t nodeps < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' scripts/no-deps.txt | grep -v '^$')
  if [ "${#nodeps[@]}" -gt 0 ]; then
    echo "bootstrap: installing ${nodeps[*]} (--no-deps)"
    "${PIP[@]}" --no-deps "${nodeps[@]}"
  fi
  touch "$stamp"
fi
# The course's JupyterLab defaults (overrides.d: defaults, not the user's own settings, which still win):
# no "get notified about official Jupyter news?" toast and no update check; the course runs offline.
lab_defaults="$VENV/share/jupyter/lab/settings/overrides.d/llmlab.json"
if ! cmp -s scripts/lab-overrides.json "$lab_defaults" 2>/dev/null; then
  mkdir -p "$(dirname "$lab_defaults")"
  cp scripts/lab-overrides.json "$lab_defaults"
fi
# The caches the second half reads (SmolLM2's dequantised weights, the tokenizer vocabularies): built
# once from installed packages (~20 s the first time, seconds after), so no lesson pays for them.
"$VENV/bin/python" -m llmlab prepare || echo "bootstrap: some caches are not ready (see above); the lessons that need them say so" >&2
