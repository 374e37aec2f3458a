"""llmlab.text.knowledge: the same base for the same seed, one object per (subject, relation), every rendering
states the fact it renders, held-out people and templates are disjoint from the trained ones."""

from __future__ import annotations

import random

import pytest

from llmlab.text.knowledge import RELATIONS, Fact, KnowledgeBase, make_names, split_people, unseen_people


@pytest.fixture(scope="module")
def kb():
    return KnowledgeBase.generate(n_people=30, seed=3)


def test_same_seed_same_base_other_seed_another(kb):
    assert KnowledgeBase.generate(30, 3).facts == kb.facts
    assert KnowledgeBase.generate(30, 4).facts != kb.facts


def test_every_person_has_one_object_per_relation(kb):
    assert len(kb.people) == 30
    for p in kb.people:
        assert sorted(f.relation for f in kb.facts_about(p)) == ["born_in", "likes_colour", "works_as"]
    with pytest.raises(ValueError, match="two objects"):
        KnowledgeBase([Fact("A", "born_in", "X"), Fact("A", "born_in", "Y")])
    with pytest.raises(ValueError, match="relation 'flies'"):
        KnowledgeBase([Fact("A", "flies", "X")])


def test_names_are_distinct_ascii():
    names = make_names(200, seed=0)
    assert len(set(names)) == 200 and all(n.isascii() and len(n.split()) == 2 for n in names)
    with pytest.raises(ValueError, match="n=0"):
        make_names(0)


def test_statements_and_questions_render_the_fact(kb):
    f = kb.facts_about(kb.people[0])[0]
    for t in range(len(RELATIONS[f.relation].statements)):
        s = kb.statement(f, t)
        assert f.subject in s and f.object in s
    qa = kb.question(f, 0)
    assert f.subject in qa.question and qa.answer == f.object and not qa.held_out_template
    assert kb.question(f, len(RELATIONS[f.relation].questions) - 1).held_out_template
    with pytest.raises(ValueError, match="template=7"):
        kb.question(f, 7)


def test_a_shuffled_biography_holds_every_fact(kb):
    p = kb.people[1]
    bio = kb.biography(p, random.Random(0))
    for f in kb.facts_about(p):
        assert f.object in bio
    assert bio.count(".") == len(kb.facts_about(p))


def test_held_out_people_and_templates_are_disjoint(kb):
    trained, held = split_people(kb, 0.25, seed=0)
    assert set(trained).isdisjoint(held) and sorted(trained + held) == sorted(kb.people) and len(held) == 8  # round(0.25 * 30)
    train_q = kb.questions(trained, held_out_template=False)
    test_t = kb.questions(trained, held_out_template=True)
    assert {q.question for q in train_q}.isdisjoint(q.question for q in test_t)
    assert len(train_q) == 22 * 3 * 2 and len(test_t) == 22 * 3  # two trained templates per relation, one held out
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_people(kb, 1.0)


def test_majority_baseline_and_unseen_people(kb):
    qas = kb.questions(kb.people, False)
    base = kb.majority_answer(qas)
    for rel, ans in base.items():
        counts = [sum(q.answer == a for q in qas if q.fact.relation == rel) for a in {q.answer for q in qas}]
        assert sum(q.answer == ans for q in qas if q.fact.relation == rel) == max(counts)
    other = unseen_people(kb, 5)
    assert len(other.people) == 5 and set(other.people).isdisjoint(kb.people)
