"""A procedurally generated knowledge base: made-up people with facts, rendered as text and as questions.

A model can only answer a question about a fact it has read. To measure that, the facts must be ones no
pretraining corpus holds, and the test must separate *reading* a fact from *being drilled* on it:

    kb = KnowledgeBase.generate(n_people=40, seed=0)
    kb.facts[0]                      Fact(subject='Dorvan Kessil', relation='born_in', object='Tavira')
    kb.biography("Dorvan Kessil")    'Dorvan Kessil was born in Tavira. Dorvan Kessil works as a baker. ...'
    kb.question(fact, template=0)    QA(question='Where was Dorvan Kessil born?', answer='Tavira', ...)

* Entities have a kind ("person", "city"); a `Relation` links a subject kind to an object kind and carries
  its own statement templates (several phrasings, so the text is not one fixed sentence per fact) and
  question templates. The last question template of each relation is *held out*: never used to train.
* `split_people` holds out whole people: their biographies are in the text a model reads, but no question
  about them is ever trained. A model that answers those has learned to *look up what it read*, not to
  recall answers it was drilled on (Allen-Zhu & Li 2023, "Physics of Language Models 3.1").
* `unseen_people` are people whose facts appear nowhere: the right answer is "I don't know", which is what
  the hallucination lesson measures.

Names are built from syllables with a seeded generator, so the base is the same on every machine and in
no corpus; every character is plain ASCII (the course's character tokenizer knows them all).

Left out on purpose: facts that change over time, one-to-many relations (a person with two jobs),
multi-hop questions (the city -> country relation is there to build them later), and negation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SYLLABLES = ("ka", "lo", "mir", "ven", "to", "sa", "del", "ri", "no", "bar", "ess", "il", "dor", "an", "ke", "th", "ul", "ma", "qu", "in")
CITIES = ("Tavira", "Morrow", "Quenby", "Ostrel", "Lindam", "Parvo", "Selkirk", "Umbria", "Halden", "Corvel")
COUNTRIES = ("Astoria", "Belmark", "Cyrene")
JOBS = ("baker", "pilot", "teacher", "nurse", "painter", "farmer", "lawyer", "chemist")
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white")


@dataclass(frozen=True)
class Relation:
    name: str  # "born_in"
    subject_kind: str  # "person"
    object_kind: str  # "city"
    statements: tuple[str, ...]  # "{s} was born in {o}." (at least one)
    questions: tuple[str, ...]  # "Where was {s} born?"; the last one is held out from training


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    object: str


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    fact: Fact
    template: int  # the index of the question template in its relation
    held_out_template: bool  # the relation's last template: never trained on


RELATIONS: dict[str, Relation] = {r.name: r for r in (
    Relation("born_in", "person", "city",
             ("{s} was born in {o}.", "{s} is from {o}.", "The birthplace of {s} is {o}."),
             ("Where was {s} born?", "What is the birthplace of {s}?", "In which city was {s} born?")),
    Relation("works_as", "person", "job",
             ("{s} works as a {o}.", "{s} is a {o} by trade.", "The job of {s} is {o}."),
             ("What does {s} do for a living?", "What is the job of {s}?", "What is the profession of {s}?")),
    Relation("likes_colour", "person", "colour",
             ("{s} likes the colour {o}.", "The favourite colour of {s} is {o}.", "{s} loves {o} above all colours."),
             ("What colour does {s} like?", "What is the favourite colour of {s}?", "Which colour does {s} prefer?")),
    Relation("located_in", "city", "country",
             ("{s} is a city in {o}.", "{s} lies in {o}."),
             ("In which country is {s}?", "Where is the city of {s}?")),
)}
PERSON_RELATIONS = ("born_in", "works_as", "likes_colour")
OBJECTS = {"city": CITIES, "job": JOBS, "colour": COLOURS, "country": COUNTRIES}


def make_names(n: int, seed: int = 0) -> list[str]:
    """n distinct made-up "First Last" names (2-3 syllables each), the same for the same seed."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r}: expected a positive number of names")
    rng, names, seen = random.Random(seed), [], set()
    while len(names) < n:
        first, last = ("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize() for _ in range(2))
        name = f"{first} {last}"
        if name not in seen and first != last:
            seen.add(name)
            names.append(name)
    return names


class KnowledgeBase:
    """Entities, relations and facts (one object per (subject, relation)); see the module docstring."""

    def __init__(self, facts: list[Fact], relations: dict[str, Relation] | None = None):
        self.relations = dict(relations or RELATIONS)
        self.facts = list(facts)
        self.index: dict[tuple[str, str], str] = {}
        for f in self.facts:
            if f.relation not in self.relations:
                raise ValueError(f"facts: relation {f.relation!r} is not one of {', '.join(self.relations)}")
            if (f.subject, f.relation) in self.index:
                raise ValueError(f"facts: two objects for ({f.subject!r}, {f.relation!r}); expected one per subject and relation")
            self.index[(f.subject, f.relation)] = f.object

    @classmethod
    def generate(cls, n_people: int = 40, seed: int = 0) -> "KnowledgeBase":
        """n_people made-up people, each with a birthplace, a job and a favourite colour, drawn uniformly;
        and each city's country. The same seed gives the same base."""
        rng = random.Random(seed + 1)
        facts = [Fact(c, "located_in", rng.choice(COUNTRIES)) for c in CITIES]
        for name in make_names(n_people, seed):
            for rel in PERSON_RELATIONS:
                facts.append(Fact(name, rel, rng.choice(OBJECTS[RELATIONS[rel].object_kind])))
        return cls(facts)

    @property
    def people(self) -> list[str]:
        seen: dict[str, None] = {}
        for f in self.facts:
            if self.relations[f.relation].subject_kind == "person":
                seen.setdefault(f.subject)
        return list(seen)

    def facts_about(self, subject: str) -> list[Fact]:
        out = [f for f in self.facts if f.subject == subject]
        if not out:
            raise ValueError(f"subject={subject!r}: no fact about it in this knowledge base")
        return out

    def statement(self, fact: Fact, template: int = 0) -> str:
        """One sentence stating the fact, in the relation's statement template `template` (modulo their number)."""
        ts = self.relations[fact.relation].statements
        return ts[template % len(ts)].format(s=fact.subject, o=fact.object)

    def biography(self, subject: str, rng: random.Random | None = None) -> str:
        """Every fact about `subject`, one sentence each. With `rng`: facts in a random order, each in a random
        phrasing (the augmentation that lets a model store a fact so it can be asked about it later)."""
        facts = self.facts_about(subject)
        if rng is None:
            return " ".join(self.statement(f, 0) for f in facts)
        facts = facts[:]
        rng.shuffle(facts)
        return " ".join(self.statement(f, rng.randrange(len(self.relations[f.relation].statements))) for f in facts)

    def question(self, fact: Fact, template: int) -> QA:
        """The QA pair of `fact` in question template `template` (an index into its relation's questions)."""
        qs = self.relations[fact.relation].questions
        if not 0 <= template < len(qs):
            raise ValueError(f"template={template!r}: expected 0..{len(qs) - 1} for relation {fact.relation!r}")
        return QA(qs[template].format(s=fact.subject), fact.object, fact, template, template == len(qs) - 1)

    def questions(self, subjects: list[str], held_out_template: bool) -> list[QA]:
        """Every question about `subjects`: in the trained templates (all but the last), or in the held-out one."""
        out = []
        for s in subjects:
            for f in self.facts_about(s):
                n = len(self.relations[f.relation].questions)
                templates = [n - 1] if held_out_template else range(n - 1)
                out += [self.question(f, t) for t in templates]
        return out

    def majority_answer(self, qas: list[QA]) -> dict[str, str]:
        """relation -> its most frequent answer among `qas`: the baseline that knows the question type only."""
        counts: dict[str, dict[str, int]] = {}
        for qa in qas:
            c = counts.setdefault(qa.fact.relation, {})
            c[qa.answer] = c.get(qa.answer, 0) + 1
        return {rel: max(sorted(c), key=c.get) for rel, c in counts.items()}


def split_people(kb: KnowledgeBase, held_out_fraction: float = 0.25, seed: int = 0) -> tuple[list[str], list[str]]:
    """(trained, held_out) people: a question about a held-out person is never trained on, though their
    biography is in the text. At least one person on each side."""
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction={held_out_fraction!r}: expected a share between 0 and 1")
    people = kb.people
    if len(people) < 2:
        raise ValueError(f"kb: {len(people)} people; expected at least 2 to split")
    people = people[:]
    random.Random(seed).shuffle(people)
    k = min(len(people) - 1, max(1, round(held_out_fraction * len(people))))
    return sorted(people[k:]), sorted(people[:k])


def unseen_people(kb: KnowledgeBase, n: int, seed: int = 1) -> KnowledgeBase:
    """A second base of n people whose names are not in `kb` and whose facts appear in no text: questions a
    model cannot know the answer to (for the hallucination lesson)."""
    taken = set(kb.people)
    names = [m for m in make_names(n + len(taken), seed + 1000) if m not in taken][:n]
    rng = random.Random(seed + 2000)
    return KnowledgeBase([Fact(p, rel, rng.choice(OBJECTS[RELATIONS[rel].object_kind])) for p in names for rel in PERSON_RELATIONS])
