"""`llmlab train` / `llmlab sample`, the shipped configs, and config errors that name the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmlab.cli import main
from llmlab.models.gpt import count_parameters
from llmlab.train.cli import load_config, override_keys

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))
SMOKE = str(ROOT / "configs" / "smoke.toml")



def test_train_resume_and_sample(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--config", SMOKE, "--out_dir", str(out), "--progress", "false", "--eval_interval", "2", "--eval_iters", "1"]
    assert main([*args, "--max_steps", "3"]) == 0
    assert "done: 3 steps" in capsys.readouterr().out
    assert (out / "ckpt.pt").is_file() and (out / "tokenizer.json").is_file()
    # the same run, continued to 5 steps (the schedule now ends at 5: a new plan, same state)
    assert main([*args, "--max_steps", "5", "--resume"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4]
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(out / "ckpt.pt"), "--prompt", "The ", "--max_new_tokens", "12", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("The ") and len(text.rstrip("\n")) >= 4  # prompt + 12 characters (some may be newlines)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_are_valid(path):
    cfg = load_config(path)
    assert cfg.train.out_dir and cfg.data.corpus


def test_the_required_configs_exist_with_their_recipes():
    names = {p.stem for p in CONFIGS}
    assert {"smoke", "laptop", "shakespeare_char", "gpt2_small"} <= names
    classic = load_config(ROOT / "configs" / "shakespeare_char.toml")
    assert (classic.model["n_layer"], classic.model["n_head"], classic.model["n_embd"], classic.model["block_size"]) == (6, 6, 384, 256)
    assert classic.data.corpus == "tinyshakespeare" and classic.data.tokenizer == "char"
    gpt2 = load_config(ROOT / "configs" / "gpt2_small.toml")
    m = gpt2.model
    n = count_parameters(m["vocab_size"], m["block_size"], m["n_layer"], m["n_embd"])
    assert 123e6 < n < 125e6  # GPT-2 small (124M with the padded vocabulary)
    smoke = load_config(ROOT / "configs" / "smoke.toml")
    assert smoke.data.corpus == "python-docs" and smoke.train.max_steps <= 50  # offline, seconds


def test_overrides_are_typed_and_sectioned(tmp_path):
    cfg = load_config(SMOKE, {"train.lr": "1", "model.n_layer": "3", "train.dtype": "bf16", "train.out_dir": "/tmp/x y",
                              "train.compile": "true", "data.corpus": "python-docs"})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.model["n_layer"] == 3 and cfg.train.dtype == "bf16" and cfg.train.out_dir == "/tmp/x y" and cfg.train.compile is True
    keys = override_keys()
    assert keys["max_steps"] == "train.max_steps" and keys["n_layer"] == "model.n_layer"
    assert "block_size" not in keys and {"model.block_size", "train.block_size"} <= set(keys)


def run_err(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    return capsys.readouterr().err


def test_wrong_values_name_the_setting(capsys):
    assert "dtype='fp8'" in run_err(capsys, "train", "--config", SMOKE, "--dtype", "fp8")
    assert "n_embd=32 is not divisible by n_head=5" in run_err(capsys, "train", "--config", SMOKE, "--model.n_head", "5")
    assert "seed=1000.0 in [train]: expected an integer" in run_err(capsys, "train", "--config", SMOKE, "--seed", "1e3")
    assert "write --model.block_size or --train.block_size" in run_err(capsys, "train", "--config", SMOKE, "--block_size", "8")
    assert "val_fraction=1.5" in run_err(capsys, "train", "--config", SMOKE, "--val_fraction", "1.5")
    assert "dropout='high' in [model]: expected a number" in run_err(capsys, "train", "--config", SMOKE, "--dropout", "high")
    assert "bias=1 in [model]: expected true or false" in run_err(capsys, "train", "--config", SMOKE, "--bias", "1")


def test_unknown_flag_is_named(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--config", SMOKE, "--max_stepz", "3"])
    assert e.value.code == 2 and "unrecognized arguments: --max_stepz" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no abbreviations: --max is not --max_steps
        main(["train", "--config", SMOKE, "--max", "3"])
    assert "--max" in capsys.readouterr().err


def test_bad_config_files_are_named(tmp_path, capsys):
    bad_key = tmp_path / "bad_key.toml"
    bad_key.write_text("[train]\nmax_step = 3\n")
    err = run_err(capsys, "train", "--config", str(bad_key))
    assert "bad_key.toml" in err and "unknown setting 'max_step' in [train] (did you mean 'max_steps'?)" in err
    bad_section = tmp_path / "bad_section.toml"
    bad_section.write_text("[optim]\nlr = 3\n")
    assert "config section [optim]" in run_err(capsys, "train", "--config", str(bad_section))
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("[train\nlr = 3\n")
    assert "bad.toml': not valid TOML" in run_err(capsys, "train", "--config", str(bad_toml))
    assert "no such file" in run_err(capsys, "train", "--config", str(tmp_path / "nope.toml"))
    assert "no such file" in run_err(capsys, "sample", "--checkpoint", str(tmp_path / "nope.pt"))
    bpe = tmp_path / "bpe.toml"
    bpe.write_text('[data]\ntokenizer = "bpe"\n')
    assert "vocab_size=None: tokenizer='bpe' needs" in run_err(capsys, "train", "--config", str(bpe))
