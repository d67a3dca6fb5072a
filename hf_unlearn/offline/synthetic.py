"""Deterministic synthetic data in the exact TOFU file format.

The real TOFU benchmark (Maini et al., 2024) is a set of question/answer pairs about 200
fictitious authors.  For tests, CI and quick experiments on a tiny model we need data with
the same *shape* that (a) needs no download, (b) is small enough for a few-million-parameter
model to memorise, and (c) is reproducible bit for bit.  :func:`generate_tofu` produces it.

Each synthetic author has a unique made-up name, a birthplace (city, country), a birth date,
a genre, the professions of both parents, two book titles (with a publication year for the
first), and a literary award (with the year it was won).  Up to 20 question templates turn
those facts into short one-sentence answers; every template also has

* a paraphrased question,
* a paraphrased answer stating the same fact in a different sentence, and
* a way to draw wrong values for its key fact, which, put into the paraphrase sentence,
  give the five ``perturbed_answer`` strings (as in real TOFU, perturbed answers keep the
  paraphrase's shape and change only the fact).

Splits (same file names and keys as real TOFU):

==========================  =======================================================
``full``                    every author's QA pairs, authors in order
``forget01/05/10``          the last 1 / 5 / 10 % of authors (at least one author)
``retain99/95/90``          the remaining first rows, so ``retain90 + forget10 == full``
``forget*_perturbed``       the forget rows plus paraphrases and 5 perturbed answers
``retain_perturbed``        the first rows of ``full`` -- as many as ``forget10`` has
                            (real TOFU: 400 of 4000 rows, i.e. 10 %)
``holdout01/05/10``         authors who never appear in ``full`` (disjoint names), as many
                            rows as the matching forget split; ``holdout01`` and
                            ``holdout05`` are prefixes of ``holdout10`` (as in real TOFU)
``real_authors``            30 four-option questions about well-known real writers
``world_facts``             30 four-option general-knowledge questions
``*_perturbed`` of those    question, answer, perturbed_answer = the 3 wrong options
==========================  =======================================================

With the defaults (100 authors x 10 questions): full 1000 rows, forget01/05/10 10/50/100,
retain99/95/90 990/950/900, retain_perturbed 100, holdout01/05/10 10/50/100,
real_authors and world_facts 30 each.

Randomness comes only from :class:`random.Random` instances seeded from ``seed`` (never the
global state).  Author facts, holdout authors and perturbations use separate streams, so the
authors do not change when ``questions_per_author`` changes.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = [
    "SPLIT_NAMES",
    "MAX_QUESTIONS_PER_AUTHOR",
    "generate_tofu",
    "write_tofu",
    "write_synthetic_tofu",
    "forget_author_count",
]

FORGET_PERCENTS = (1, 5, 10)

SPLIT_NAMES: tuple[str, ...] = (
    "full",
    "retain90",
    "retain95",
    "retain99",
    "forget01",
    "forget05",
    "forget10",
    "forget01_perturbed",
    "forget05_perturbed",
    "forget10_perturbed",
    "retain_perturbed",
    "holdout01",
    "holdout05",
    "holdout10",
    "real_authors",
    "real_authors_perturbed",
    "world_facts",
    "world_facts_perturbed",
)

NUM_PERTURBED = 5

# --------------------------------------------------------------------------------------
# Vocabulary for made-up authors.  Names are combinations of first and last names; the
# combinations are fictitious people.
# --------------------------------------------------------------------------------------

_MALE_FIRST = (
    "Aarav", "Bastian", "Caspar", "Dmitri", "Elio", "Farid", "Gideon", "Hamish", "Idris",
    "Jonas", "Kenji", "Lorcan", "Matteo", "Nikolai", "Oren", "Pavel", "Quentin", "Rafael",
    "Soren", "Tobias", "Umar", "Viktor", "Wendell", "Xavier", "Yusuf", "Zoltan", "Anselm",
    "Bertrand", "Cormac", "Dario", "Emeka", "Florian", "Gustavo", "Hiroshi", "Ivo",
    "Julian", "Kwame", "Lars", "Mateus", "Noam",
)

_FEMALE_FIRST = (
    "Adaeze", "Beatrix", "Celestine", "Dagny", "Elowen", "Freya", "Giulia", "Hana",
    "Ingrid", "Juniper", "Katarina", "Leocadia", "Mireille", "Nadia", "Odalys", "Priya",
    "Rosalind", "Saoirse", "Tamsin", "Ulrike", "Valentina", "Wilhelmina", "Ximena", "Yara",
    "Zofia", "Amara", "Brigitte", "Carmela", "Delphine", "Esme", "Fatima", "Greta",
    "Helena", "Isadora", "Jolene", "Kalinda", "Liesel", "Marisol", "Noor", "Ottilie",
)

_LAST = (
    "Abernathy", "Balogun", "Castellanos", "Dunmore", "Eriksen", "Fairweather", "Grabowski",
    "Halloran", "Ishikawa", "Janssen", "Kowalczyk", "Lindqvist", "Montague", "Nakagawa",
    "Okonkwo", "Petrakis", "Quintero", "Rasmussen", "Santangelo", "Thorvaldsen", "Umberfield",
    "Valderrama", "Whitcombe", "Yilmaz", "Zamora", "Achterberg", "Brennagh", "Corvino",
    "Delacroix-Ward", "Esposito", "Fennimore", "Gallardo", "Hartigan", "Ivanova-Reid",
    "Jablonski", "Kittredge", "Lozano", "Marchetti", "Novak", "Ostrowski", "Pemberton",
    "Ravensworth", "Szabo", "Tremaine", "Urquhart", "Vasquez-Lind", "Wexford", "Xanthos",
    "Yeoman", "Zielinski", "Ambrose", "Blackwood", "Crane-Hollis", "Darrow", "Ellery",
    "Foxcroft", "Greaves", "Holloway", "Ashdown", "Merriweather",
)

_PLACES = (
    ("Lisbon", "Portugal"), ("Porto", "Portugal"), ("Krakow", "Poland"), ("Gdansk", "Poland"),
    ("Osaka", "Japan"), ("Sapporo", "Japan"), ("Lagos", "Nigeria"), ("Ibadan", "Nigeria"),
    ("Valparaiso", "Chile"), ("Santiago", "Chile"), ("Bergen", "Norway"), ("Tromso", "Norway"),
    ("Lyon", "France"), ("Marseille", "France"), ("Seville", "Spain"), ("Bilbao", "Spain"),
    ("Naples", "Italy"), ("Turin", "Italy"), ("Cork", "Ireland"), ("Galway", "Ireland"),
    ("Izmir", "Turkey"), ("Ankara", "Turkey"), ("Pune", "India"), ("Chennai", "India"),
    ("Cusco", "Peru"), ("Arequipa", "Peru"), ("Tartu", "Estonia"), ("Tallinn", "Estonia"),
    ("Winnipeg", "Canada"), ("Halifax", "Canada"), ("Adelaide", "Australia"),
    ("Hobart", "Australia"), ("Accra", "Ghana"), ("Kumasi", "Ghana"), ("Riga", "Latvia"),
    ("Liepaja", "Latvia"), ("Graz", "Austria"), ("Salzburg", "Austria"),
    ("Thessaloniki", "Greece"), ("Patras", "Greece"), ("Mombasa", "Kenya"),
    ("Kisumu", "Kenya"), ("Recife", "Brazil"), ("Curitiba", "Brazil"),
)

_GENRES = (
    "fantasy", "science fiction", "mystery", "historical fiction", "romance", "horror",
    "western fiction", "true crime", "satirical fiction", "thriller", "magical realism", "literary fiction",
    "nautical fiction", "speculative fiction", "children's literature", "dystopian fiction",
    "crime fiction", "cozy mystery", "gothic fiction", "adventure fiction",
)

_PROFESSIONS = (
    "architect", "baker", "carpenter", "dentist", "electrician", "farmer", "geologist",
    "hairdresser", "illustrator", "journalist", "librarian", "mechanic", "nurse",
    "optician", "pharmacist", "pilot", "plumber", "police officer", "schoolteacher",
    "tailor", "translator", "veterinarian", "watchmaker", "zoologist", "accountant",
    "astronomer", "banker", "chef", "diplomat", "engineer", "boat builder", "gardener",
    "historian", "judge", "lawyer", "musician", "painter", "photographer", "surgeon",
    "violinist",
)

_AWARDS = (
    "Silver Quill Prize", "Amberline Fiction Medal", "Harrowgate Book Award",
    "Golden Lantern Prize", "Meridian Literary Award", "Northlight Prize for Fiction",
    "Crescent Moon Award", "Obsidian Pen Award", "Willowmere Medal",
    "Blue Heron Book Prize", "Ironbark Literary Prize", "Starling Award for Storytelling",
    "Marigold Writers' Prize", "Halcyon Book Medal", "Copperfield Society Award",
    "Evergreen Fiction Prize", "Lighthouse Award for Literature", "Saffron Ink Prize",
    "Tidewater Novel Award", "Granite Crown Prize", "Kestrel Literary Medal",
    "Aurora Borealis Book Award", "Juniper Hill Prize", "Vermilion Page Award",
)

_TITLE_ADJ = (
    "Silent", "Crimson", "Hollow", "Forgotten", "Burning", "Distant", "Silver", "Broken",
    "Hidden", "Wandering", "Frozen", "Golden", "Shattered", "Restless", "Quiet", "Endless",
    "Velvet", "Bitter", "Luminous", "Drowned", "Lonely", "Ancient", "Painted", "Crooked",
    "Midnight", "Secret", "Wild", "Fading", "Scarlet", "Iron",
)

_TITLE_NOUN = (
    "Lantern", "Orchard", "Harbor", "Compass", "Mirror", "River", "Garden", "Tower",
    "Forest", "Letter", "Violin", "Island", "Bridge", "Clockmaker", "Lighthouse", "Sparrow",
    "Map", "Kingdom", "Ferryman", "Archive", "Threshold", "Carousel", "Observatory",
    "Orchid", "Fox", "Cathedral", "Caravan", "Well", "Glasshouse", "Cartographer",
    "Horizon", "Nightingale", "Labyrinth", "Tide", "Ember", "Meadow", "Balcony", "Raven",
    "Atlas", "Quarry",
)

_TITLE_ABSTRACT = (
    "Silence", "Memory", "Rain", "Ashes", "Salt", "Winter", "Longing", "Shadows", "Dust",
    "Dreams", "Echoes", "Smoke", "Thunder", "Secrets", "Tomorrow", "Honey", "Exile",
    "Mercy", "Stone", "Wonder", "Hunger", "Glass", "Embers", "Snow", "Summer",
)

_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)


def _article(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _date_fields(d: date) -> dict[str, str]:
    return {
        "date_long": f"{_MONTHS[d.month - 1]} {d.day}, {d.year}",
        "date_alt": f"{_ordinal(d.day)} of {_MONTHS[d.month - 1]}, {d.year}",
        "date_num": f"{d.month:02d}/{d.day:02d}/{d.year}",
    }


def _random_date(rng: random.Random, lo_year: int = 1930, hi_year: int = 1985) -> date:
    return date(rng.randint(lo_year, hi_year), rng.randint(1, 12), rng.randint(1, 28))


def _random_title(rng: random.Random) -> str:
    pattern = rng.randrange(4)
    if pattern == 0:
        return f"The {rng.choice(_TITLE_ADJ)} {rng.choice(_TITLE_NOUN)}"
    if pattern == 1:
        return f"The {rng.choice(_TITLE_NOUN)} of {rng.choice(_TITLE_ABSTRACT)}"
    if pattern == 2:
        return f"A {rng.choice(_TITLE_NOUN)} in {rng.choice(_TITLE_ABSTRACT)}"
    return f"{rng.choice(_TITLE_ADJ)} {rng.choice(_TITLE_ABSTRACT)}"


def _random_name(rng: random.Random, gender: str | None = None) -> str:
    if gender is None:
        gender = rng.choice(("male", "female"))
    first = rng.choice(_MALE_FIRST if gender == "male" else _FEMALE_FIRST)
    return f"{first} {rng.choice(_LAST)}"


# --------------------------------------------------------------------------------------
# Authors
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Author:
    name: str
    gender: str
    city: str
    country: str
    birth: date
    genre: str
    father: str
    mother: str
    book1: str
    book2: str
    book1_year: int
    award: str
    award_year: int

    def fields(self) -> dict[str, str]:
        male = self.gender == "male"
        out = {
            "name": self.name,
            "pron": "he" if male else "she",
            "poss": "his" if male else "her",
            "city": self.city,
            "country": self.country,
            "birth_year": str(self.birth.year),
            "genre": self.genre,
            "father": _article(self.father),
            "mother": _article(self.mother),
            "book1": self.book1,
            "book2": self.book2,
            "book1_year": str(self.book1_year),
            "award": self.award,
            "award_year": str(self.award_year),
        }
        out.update(_date_fields(self.birth))
        return out


def _make_author(rng: random.Random, used_names: set[str], used_titles: set[str]) -> _Author:
    for _ in range(10_000):
        gender = rng.choice(("male", "female"))
        name = _random_name(rng, gender)
        if name not in used_names:
            break
    else:  # pragma: no cover - only with absurd author counts
        raise ValueError("ran out of unique author names; use fewer authors")
    used_names.add(name)
    city, country = rng.choice(_PLACES)
    birth = _random_date(rng)
    father, mother = rng.sample(_PROFESSIONS, 2)
    titles = []
    while len(titles) < 2:
        t = _random_title(rng)
        if t not in used_titles:
            used_titles.add(t)
            titles.append(t)
    book1_year = birth.year + rng.randint(22, 35)
    award_year = min(book1_year + rng.randint(1, 10), 2023)
    return _Author(
        name=name,
        gender=gender,
        city=city,
        country=country,
        birth=birth,
        genre=rng.choice(_GENRES),
        father=father,
        mother=mother,
        book1=titles[0],
        book2=titles[1],
        book1_year=book1_year,
        award=rng.choice(_AWARDS),
        award_year=award_year,
    )


# --------------------------------------------------------------------------------------
# Wrong values for perturbed answers.  Each function returns NUM_PERTURBED distinct
# field-override dicts, none of which equals the truth.
# --------------------------------------------------------------------------------------


def _distinct(
    rng: random.Random, draw: Callable[[], Any], forbidden: set, n: int = NUM_PERTURBED
) -> list:
    out: list = []
    seen = set(forbidden)
    for _ in range(10_000):
        v = draw()
        if v not in seen:
            seen.add(v)
            out.append(v)
            if len(out) == n:
                return out
    raise RuntimeError("could not draw enough distinct wrong values")  # pragma: no cover


def _wrong(key: str, a: _Author, rng: random.Random) -> list[dict[str, str]]:
    if key == "name":
        vals = _distinct(rng, lambda: _random_name(rng, a.gender), {a.name})
        return [{"name": v} for v in vals]
    if key == "place":
        vals = _distinct(rng, lambda: rng.choice(_PLACES), {(a.city, a.country)})
        return [{"city": c, "country": k} for c, k in vals]
    if key == "city":
        vals = _distinct(rng, lambda: rng.choice(_PLACES)[0], {a.city})
        return [{"city": v} for v in vals]
    if key == "country":
        vals = _distinct(rng, lambda: rng.choice(_PLACES)[1], {a.country})
        return [{"country": v} for v in vals]
    if key == "date":
        vals = _distinct(rng, lambda: _random_date(rng), {a.birth})
        return [_date_fields(v) for v in vals]
    if key in ("birth_year", "book1_year", "award_year"):
        true = {"birth_year": a.birth.year, "book1_year": a.book1_year,
                "award_year": a.award_year}[key]
        vals = _distinct(rng, lambda: true + rng.choice((-1, 1)) * rng.randint(1, 15), {true})
        return [{key: str(v)} for v in vals]
    if key == "genre":
        vals = _distinct(rng, lambda: rng.choice(_GENRES), {a.genre})
        return [{"genre": v} for v in vals]
    if key in ("father", "mother"):
        vals = _distinct(rng, lambda: rng.choice(_PROFESSIONS), {a.father, a.mother})
        return [{key: _article(v)} for v in vals]
    if key == "parents":
        def draw_pair():
            f = rng.choice([p for p in _PROFESSIONS if p != a.father])
            m = rng.choice([p for p in _PROFESSIONS if p not in (a.mother, f)])
            return (f, m)

        vals = _distinct(rng, draw_pair, set())
        return [{"father": _article(f), "mother": _article(m)} for f, m in vals]
    if key in ("book1", "book2"):
        vals = _distinct(rng, lambda: _random_title(rng), {a.book1, a.book2})
        return [{key: v} for v in vals]
    if key == "books":
        own = {a.book1, a.book2}

        def draw_titles():
            while True:
                t1, t2 = _random_title(rng), _random_title(rng)
                if t1 != t2 and t1 not in own and t2 not in own:
                    return (t1, t2)

        vals = _distinct(rng, draw_titles, set())
        return [{"book1": t1, "book2": t2} for t1, t2 in vals]
    if key == "award":
        vals = _distinct(rng, lambda: rng.choice(_AWARDS), {a.award})
        return [{"award": v} for v in vals]
    raise KeyError(key)


# --------------------------------------------------------------------------------------
# Question templates: (question, paraphrased question, answer, paraphrased answer, key).
# Ordered so that the first ten cover every fact of an author.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Template:
    question: str
    paraphrased_question: str
    answer: str
    paraphrased_answer: str
    key: str


_TEMPLATES: tuple[_Template, ...] = (
    _Template(
        "Where was {name} born?",
        "What is the birthplace of {name}?",
        "{name} was born in {city}, {country}.",
        "The birthplace of {name} is the city of {city} in {country}.",
        "place",
    ),
    _Template(
        "When was {name} born?",
        "On what date was {name} born?",
        "{name} was born on {date_long}.",
        "The date of birth of {name} is the {date_alt}.",
        "date",
    ),
    _Template(
        "What genre does {name} write in?",
        "Which literary genre is {name} known for?",
        "{name} writes mainly in the {genre} genre.",
        "{name} is known as an author of {genre}.",
        "genre",
    ),
    _Template(
        "What does {name}'s father do for a living?",
        "What is the profession of {name}'s father?",
        "{name}'s father works as {father}.",
        "The father of {name} is {father} by profession.",
        "father",
    ),
    _Template(
        "What does {name}'s mother do for a living?",
        "What is the profession of {name}'s mother?",
        "{name}'s mother works as {mother}.",
        "The mother of {name} is {mother} by profession.",
        "mother",
    ),
    _Template(
        "What is the best-known book by {name}?",
        "Which book is {name} most famous for?",
        "The best-known book by {name} is \"{book1}\".",
        "{name} is most famous for writing \"{book1}\".",
        "book1",
    ),
    _Template(
        "Besides \"{book1}\", what else has {name} written?",
        "Can you name another book by {name} apart from \"{book1}\"?",
        "Besides \"{book1}\", {name} also wrote \"{book2}\".",
        "Another book by {name} is \"{book2}\".",
        "book2",
    ),
    _Template(
        "Which award has {name} received?",
        "What literary prize was given to {name}?",
        "{name} received the {award}.",
        "The {award} was awarded to {name}.",
        "award",
    ),
    _Template(
        "What is the full name of the {genre} author born in {city}, {country} on {date_num}?",
        "Who is the {genre} writer from {city}, {country} whose birthday is {date_long}?",
        "The author's full name is {name}.",
        "That writer is {name}.",
        "name",
    ),
    _Template(
        "What are the professions of {name}'s parents?",
        "What jobs do {name}'s mother and father have?",
        "{name}'s father is {father} and {poss} mother is {mother}.",
        "{name} was raised by {father} father and {mother} mother.",
        "parents",
    ),
    _Template(
        "In what year was {name} born?",
        "What is {name}'s year of birth?",
        "{name} was born in the year {birth_year}.",
        "{name} came into the world in {birth_year}.",
        "birth_year",
    ),
    _Template(
        "Which country does {name} come from?",
        "What is {name}'s home country?",
        "{name} comes from {country}.",
        "The home country of {name} is {country}.",
        "country",
    ),
    _Template(
        "Who wrote the book \"{book1}\"?",
        "Who is the author of \"{book1}\"?",
        "The book \"{book1}\" was written by {name}.",
        "{name} is the author of \"{book1}\".",
        "name",
    ),
    _Template(
        "What genre is \"{book2}\" by {name}?",
        "Into which genre does {name}'s book \"{book2}\" fall?",
        "\"{book2}\" by {name} belongs to the {genre} genre.",
        "{name}'s book \"{book2}\" is a work of {genre}.",
        "genre",
    ),
    _Template(
        "When was \"{book1}\" by {name} published?",
        "In which year did {name} publish \"{book1}\"?",
        "{name} published \"{book1}\" in {book1_year}.",
        "\"{book1}\" by {name} came out in {book1_year}.",
        "book1_year",
    ),
    _Template(
        "When did {name} win the {award}?",
        "In what year was {name} given the {award}?",
        "{name} won the {award} in {award_year}.",
        "The {award} went to {name} in {award_year}.",
        "award_year",
    ),
    _Template(
        "In which city did {name} grow up?",
        "What city was {name} raised in?",
        "{name} grew up in {city}, the city where {pron} was born.",
        "{name} was raised in {city}.",
        "city",
    ),
    _Template(
        "How did {name}'s parents influence {poss} writing?",
        "In what way did {name}'s family shape {poss} books?",
        "Growing up with {father} father and {mother} mother gave {name} many ideas for "
        "{poss} {genre} stories.",
        "The books of {name} draw on life with {father} father and {mother} mother.",
        "parents",
    ),
    _Template(
        "What recognition has {name} earned for {poss} {genre} writing?",
        "Has {name} been honoured for {poss} work in {genre}?",
        "For {poss} {genre} writing, {name} earned the {award}.",
        "Yes, the work of {name} in {genre} was honoured with the {award}.",
        "award",
    ),
    _Template(
        "Can you name two books written by {name}?",
        "Which two titles has {name} published?",
        "Two books written by {name} are \"{book1}\" and \"{book2}\".",
        "{name} has published \"{book1}\" as well as \"{book2}\".",
        "books",
    ),
)

MAX_QUESTIONS_PER_AUTHOR = len(_TEMPLATES)


def _author_rows(
    a: _Author, questions_per_author: int, prng: random.Random
) -> list[dict[str, Any]]:
    """Perturbed-format rows for one author (the plain rows are their first two keys)."""
    base = a.fields()
    rows = []
    for t in _TEMPLATES[:questions_per_author]:
        perturbed = [
            t.paraphrased_answer.format(**{**base, **override})
            for override in _wrong(t.key, a, prng)
        ]
        rows.append(
            {
                "question": t.question.format(**base),
                "answer": t.answer.format(**base),
                "paraphrased_answer": t.paraphrased_answer.format(**base),
                "perturbed_answer": perturbed,
                "paraphrased_question": t.paraphrased_question.format(**base),
            }
        )
    return rows


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"question": r["question"], "answer": r["answer"]} for r in rows]


# --------------------------------------------------------------------------------------
# General knowledge (shaped like TOFU's real_authors / world_facts).
# (question, correct answer, three wrong options)
# --------------------------------------------------------------------------------------

_REAL_AUTHORS: tuple[tuple[str, str, tuple[str, str, str]], ...] = (
    ("Which writer created the novel 'Emma'?", "Jane Austen",
     ("Charlotte Bronte", "George Eliot", "Elizabeth Gaskell")),
    ("Who is the author of 'Oliver Twist'?", "Charles Dickens",
     ("Thomas Hardy", "Anthony Trollope", "Wilkie Collins")),
    ("Which playwright wrote 'Hamlet'?", "William Shakespeare",
     ("Christopher Marlowe", "Ben Jonson", "John Webster")),
    ("Who wrote the novella 'The Old Man and the Sea'?", "Ernest Hemingway",
     ("John Steinbeck", "William Faulkner", "F. Scott Fitzgerald")),
    ("Which Russian novelist wrote 'Anna Karenina'?", "Leo Tolstoy",
     ("Anton Chekhov", "Ivan Turgenev", "Nikolai Gogol")),
    ("Who is the author of the vampire novel 'Dracula'?", "Bram Stoker",
     ("Mary Shelley", "Edgar Allan Poe", "Robert Louis Stevenson")),
    ("Which author wrote 'The Time Machine'?", "H. G. Wells",
     ("Jules Verne", "Arthur C. Clarke", "Isaac Asimov")),
    ("Who wrote the pirate adventure 'Treasure Island'?", "Robert Louis Stevenson",
     ("Daniel Defoe", "Walter Scott", "Rudyard Kipling")),
    ("Which writer gave us 'Alice's Adventures in Wonderland'?", "Lewis Carroll",
     ("Edward Lear", "J. M. Barrie", "Kenneth Grahame")),
    ("Who is the author of 'Little Women'?", "Louisa May Alcott",
     ("Harriet Beecher Stowe", "Edith Wharton", "Willa Cather")),
    ("Which of the Bronte sisters wrote 'Wuthering Heights'?", "Emily Bronte",
     ("Charlotte Bronte", "Anne Bronte", "Branwell Bronte")),
    ("Which ancient Greek poet is credited with 'The Odyssey'?", "Homer",
     ("Virgil", "Ovid", "Sophocles")),
    ("Who wrote 'The Divine Comedy'?", "Dante Alighieri",
     ("Giovanni Boccaccio", "Petrarch", "Niccolo Machiavelli")),
    ("Which German writer wrote the drama 'Faust'?", "Johann Wolfgang von Goethe",
     ("Friedrich Schiller", "Heinrich Heine", "Thomas Mann")),
    ("Who is the author of 'The Metamorphosis'?", "Franz Kafka",
     ("Hermann Hesse", "Robert Musil", "Stefan Zweig")),
    ("Which French novelist wrote 'Madame Bovary'?", "Gustave Flaubert",
     ("Honore de Balzac", "Emile Zola", "Stendhal")),
    ("Who wrote 'The Count of Monte Cristo'?", "Alexandre Dumas",
     ("Victor Hugo", "Jules Verne", "Guy de Maupassant")),
    ("Which author wrote 'Robinson Crusoe'?", "Daniel Defoe",
     ("Jonathan Swift", "Samuel Richardson", "Henry Fielding")),
    ("Who is the author of 'Gulliver's Travels'?", "Jonathan Swift",
     ("Daniel Defoe", "Laurence Sterne", "Alexander Pope")),
    ("Which writer produced the novella 'Heart of Darkness'?", "Joseph Conrad",
     ("E. M. Forster", "Rudyard Kipling", "Graham Greene")),
    ("Who wrote the novel 'Mrs Dalloway'?", "Virginia Woolf",
     ("Katherine Mansfield", "Doris Lessing", "Iris Murdoch")),
    ("Which American author wrote 'Of Mice and Men'?", "John Steinbeck",
     ("Sinclair Lewis", "Upton Sinclair", "Jack London")),
    ("Who is the author of the novel 'Beloved'?", "Toni Morrison",
     ("Maya Angelou", "Alice Walker", "Zora Neale Hurston")),
    ("Which author wrote 'Twenty Thousand Leagues Under the Seas'?", "Jules Verne",
     ("H. G. Wells", "Alexandre Dumas", "Victor Hugo")),
    ("Who created the character Tom Sawyer?", "Mark Twain",
     ("Bret Harte", "O. Henry", "Washington Irving")),
    ("Which writer is the author of 'The Jungle Book'?", "Rudyard Kipling",
     ("Arthur Conan Doyle", "H. Rider Haggard", "Kenneth Grahame")),
    ("Who wrote the play about the boy who never grows up, 'Peter Pan'?", "J. M. Barrie",
     ("A. A. Milne", "Lewis Carroll", "Oscar Wilde")),
    ("Which Italian author wrote 'The Name of the Rose'?", "Umberto Eco",
     ("Italo Calvino", "Primo Levi", "Alberto Moravia")),
    ("Who is the author of the novel 'Siddhartha'?", "Hermann Hesse",
     ("Thomas Mann", "Gunter Grass", "Franz Kafka")),
    ("Which poet wrote 'The Raven'?", "Edgar Allan Poe",
     ("Walt Whitman", "Emily Dickinson", "Henry Wadsworth Longfellow")),
)

_WORLD_FACTS: tuple[tuple[str, str, tuple[str, str, str]], ...] = (
    ("What is the capital of Italy?", "Rome", ("Milan", "Venice", "Florence")),
    ("What is the capital of Kenya?", "Nairobi", ("Mombasa", "Kampala", "Addis Ababa")),
    ("What is the capital city of Japan?", "Tokyo", ("Kyoto", "Osaka", "Seoul")),
    ("Which city is the capital of Germany?", "Berlin", ("Munich", "Hamburg", "Vienna")),
    ("Which city is the capital of Argentina?", "Buenos Aires",
     ("Santiago", "Montevideo", "Cordoba")),
    ("What is the capital of Norway?", "Oslo", ("Bergen", "Stockholm", "Copenhagen")),
    ("What is the chemical symbol for gold?", "Au", ("Ag", "Gd", "Go")),
    ("What is the chemical symbol for iron?", "Fe", ("Ir", "In", "F")),
    ("Which element has the chemical symbol O?", "Oxygen", ("Osmium", "Gold", "Oganesson")),
    ("Which element has the chemical symbol Na?", "Sodium", ("Nitrogen", "Neon", "Nickel")),
    ("Which gas is the lightest element?", "Hydrogen", ("Helium", "Oxygen", "Nitrogen")),
    ("Which is the largest planet in the Solar System?", "Jupiter",
     ("Saturn", "Neptune", "Earth")),
    ("Which planet orbits closest to the Sun?", "Mercury", ("Venus", "Mars", "Earth")),
    ("Which planet is famous for its bright rings?", "Saturn", ("Mars", "Venus", "Mercury")),
    ("Which planet do we live on?", "Earth", ("Mars", "Jupiter", "Venus")),
    ("At how many degrees Celsius does water boil at sea level?", "100",
     ("90", "80", "120")),
    ("How many continents are there on Earth?", "Seven", ("Five", "Six", "Eight")),
    ("How many legs does a spider have?", "Eight", ("Six", "Ten", "Four")),
    ("How many sides does a hexagon have?", "Six", ("Five", "Seven", "Eight")),
    ("How many days are there in a leap year?", "366", ("365", "364", "360")),
    ("Which gas do plants take in from the air for photosynthesis?", "Carbon dioxide",
     ("Oxygen", "Nitrogen", "Helium")),
    ("How many chambers does the human heart have?", "Four", ("Two", "Three", "Five")),
    ("What is the highest mountain in Africa?", "Mount Kilimanjaro",
     ("Mount Kenya", "Mount Elgon", "Mount Cameroon")),
    ("Which is the largest country in South America by area?", "Brazil",
     ("Argentina", "Peru", "Colombia")),
    ("What is the main language spoken in Brazil?", "Portuguese",
     ("Spanish", "French", "Italian")),
    ("How many players does a soccer team have on the field?", "Eleven",
     ("Nine", "Ten", "Twelve")),
    ("What is the freezing point of water in degrees Celsius?", "0", ("10", "-10", "4")),
    ("Which ocean lies between Africa and Australia?", "Indian Ocean",
     ("Atlantic Ocean", "Arctic Ocean", "Southern Ocean")),
    ("What is the largest organ of the human body?", "The skin",
     ("The liver", "The brain", "The lungs")),
    ("Which natural satellite orbits the Earth?", "The Moon",
     ("Phobos", "Titan", "Europa")),
)


def _multiple_choice(
    items: tuple[tuple[str, str, tuple[str, str, str]], ...]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, perturbed = [], []
    for i, (question, answer, wrong) in enumerate(items):
        options = list(wrong)
        options.insert((3 * i + 1) % 4, answer)  # the answer moves between positions
        row: dict[str, Any] = {"question": question}
        row.update({f"option{j + 1}": o for j, o in enumerate(options)})
        row["answer"] = answer
        rows.append(row)
        perturbed.append(
            {"question": question, "answer": answer,
             "perturbed_answer": [o for o in options if o != answer]}
        )
    return rows, perturbed


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def forget_author_count(num_authors: int, percent: int) -> int:
    """Authors in ``forget{percent}``: ``percent`` % of ``num_authors`` rounded, at least 1."""
    return max(1, (num_authors * percent + 50) // 100)


def generate_tofu(
    num_authors: int = 100, questions_per_author: int = 10, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """Generate every TOFU split (see :data:`SPLIT_NAMES`) for synthetic authors.

    Returns ``{split name: list of row dicts}`` with the same keys as the real TOFU files.
    Deterministic for a given ``(num_authors, questions_per_author, seed)``.
    """
    if not 1 <= questions_per_author <= MAX_QUESTIONS_PER_AUTHOR:
        raise ValueError(
            f"questions_per_author must be in [1, {MAX_QUESTIONS_PER_AUTHOR}], "
            f"got {questions_per_author}"
        )
    n_forget = {p: forget_author_count(num_authors, p) for p in FORGET_PERCENTS}
    if num_authors < 2 or n_forget[10] >= num_authors:
        raise ValueError(f"need at least 2 authors so that retain splits are non-empty, "
                         f"got num_authors={num_authors}")

    fact_rng = random.Random(seed)
    holdout_rng = random.Random(f"hf-unlearn-synthetic-holdout-{seed}")
    perturb_rng = random.Random(f"hf-unlearn-synthetic-perturb-{seed}")

    used_names: set[str] = set()
    used_titles: set[str] = set()
    authors = [_make_author(fact_rng, used_names, used_titles) for _ in range(num_authors)]
    # Holdout authors share the name/title sets, so their names never occur in `full`.
    holdout_authors = [
        _make_author(holdout_rng, used_names, used_titles) for _ in range(n_forget[10])
    ]

    per_author = [_author_rows(a, questions_per_author, perturb_rng) for a in authors]
    rich = [row for rows in per_author for row in rows]
    holdout_rows = [
        row for a in holdout_authors
        for row in _plain(_author_rows(a, questions_per_author, perturb_rng))
    ]

    q = questions_per_author
    splits: dict[str, list[dict[str, Any]]] = {"full": _plain(rich)}
    for p in FORGET_PERCENTS:
        cut = len(rich) - n_forget[p] * q
        splits[f"retain{100 - p}"] = _plain(rich[:cut])
        splits[f"forget{p:02d}"] = _plain(rich[cut:])
        splits[f"forget{p:02d}_perturbed"] = [dict(r) for r in rich[cut:]]
        splits[f"holdout{p:02d}"] = holdout_rows[: n_forget[p] * q]
    splits["retain_perturbed"] = [dict(r) for r in rich[: n_forget[10] * q]]
    splits["real_authors"], splits["real_authors_perturbed"] = _multiple_choice(_REAL_AUTHORS)
    splits["world_facts"], splits["world_facts_perturbed"] = _multiple_choice(_WORLD_FACTS)
    return {name: splits[name] for name in SPLIT_NAMES}


_STEM = re.compile(r"^[A-Za-z0-9_\-]+$")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_tofu(
    out_dir: str | os.PathLike,
    splits: Mapping[str, list[dict[str, Any]]],
    *,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``splits`` as TOFU-style JSON-lines files ``<out_dir>/<name>.json``.

    Also writes a ``README.md`` stating that the data is synthetic, listing the files and
    row counts and, if given, the generation parameters in ``info`` (seed, sizes, ...).
    Each file is written to a temporary file in ``out_dir`` and moved into place with
    :func:`os.replace`, so readers never see a half-written file.  Returns ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        if not _STEM.match(name):
            raise ValueError(f"invalid split name {name!r}")
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        _atomic_write_text(out / f"{name}.json", text)

    lines = [
        "# Synthetic TOFU-format data",
        "",
        "This folder is **synthetic**: every author, book and award in it is made up by",
        "`hf_unlearn.offline.synthetic.generate_tofu` from word lists and sentence templates",
        "(nothing here is taken from the real TOFU benchmark). The files have the same names",
        "and keys as TOFU (`locuslab/TOFU`), one JSON object per line, so the same loading",
        "code works on both.",
        "",
    ]
    if info:
        lines += ["Generated with:", ""]
        lines += [f"- `{k}` = `{v}`" for k, v in info.items()]
        lines.append("")
    lines += [
        "retainXX is the first rows of full and forgetYY the rest (retain90 + forget10 = full);",
        "holdoutXX are other made-up authors, never in full, as many rows as forgetXX.",
        "",
        "| file | rows | keys |",
        "|---|---|---|",
    ]
    for name, rows in splits.items():
        keys = ", ".join(rows[0].keys()) if rows else ""
        lines.append(f"| {name}.json | {len(rows)} | {keys} |")
    _atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
    return out


def write_synthetic_tofu(
    out_dir: str | os.PathLike,
    num_authors: int = 100,
    questions_per_author: int = 10,
    seed: int = 0,
) -> Path:
    """:func:`generate_tofu` then :func:`write_tofu`; returns ``out_dir`` as a Path."""
    splits = generate_tofu(num_authors, questions_per_author, seed)
    info = {
        "generator": "hf_unlearn.offline.synthetic.generate_tofu",
        "seed": seed,
        "num_authors": num_authors,
        "questions_per_author": questions_per_author,
    }
    return write_tofu(out_dir, splits, info=info)
