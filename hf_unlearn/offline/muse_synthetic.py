"""A deterministic synthetic corpus in MUSE's format (the GitHub release layout), for tests and demos.

Real MUSE-News is BBC articles; nothing can be downloaded here, so :func:`generate_muse` writes short
made-up news articles, each stating a few synthetic facts (an official of an organisation, the
cost of a project in a town, the year it finishes), preceded by a fact box that asks and answers them
(``Question: ...\nAnswer:  ...``, see `_fact_box`), and derives every MUSE split from them:

==================  ==========================================================================
raw/forget          the forget articles (the target model is trained on them, the retrain
                    model is not)
raw/retain1         retain articles (the unlearning methods' retain corpus)
raw/retain2         more retain articles (KnowMem on retain asks about them)
raw/holdout         articles no model is trained on
verbmem/forget      per forget article: ``prompt`` = its fact box and first sentences, ``gt``
                    = the rest
knowmem/forget_qa   one question per forget article (the fact asked rotates), ``answer``
knowmem/retain_qa   the same about retain2 articles
knowmem/*_qa_icl    3 few-shot questions about extra articles in no split
privleak/forget     = raw/forget (members); ``privleak/retain`` = raw/retain2; ``privleak/holdout``
                    = raw/holdout (non-members)
scal/forget_k       the first k quarters of raw/forget (nested)
sust/forget_k       the k-th quarter of raw/forget (pairwise disjoint)
==================  ==========================================================================

Every article has a unique town, official and organisation, so each question has one answer.
Randomness comes only from a `random.Random(seed)`; the same arguments give the same bytes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..data.muse import MUSE_SPLITS

_FIRST = ("Alma", "Bruno", "Cora", "Dario", "Edda", "Felix", "Greta", "Hugo", "Ines", "Jonah", "Kira", "Lionel",
          "Mara", "Nils", "Olga", "Pablo", "Rhea", "Silas", "Tilda", "Ulric", "Vera", "Wim", "Yael", "Zeno")
_LAST = ("Abbott", "Birch", "Crowley", "Dunlop", "Esterhazy", "Fenwick", "Gould", "Harrow", "Ingram", "Jessop",
         "Kettering", "Lomax", "Marlowe", "Norcross", "Oakes", "Pryce", "Quill", "Rook", "Sallow", "Thackeray",
         "Underhill", "Voss", "Wren", "Yarrow")
_TOWN_A = ("Ash", "Bram", "Cold", "Dun", "Elm", "Fern", "Glen", "Hol", "Iver", "Kel", "Lark", "Mill", "North",
           "Oak", "Pen", "Red", "Stan", "Thorn", "Wick", "Yew")
_TOWN_B = ("ford", "bury", "wick", "mouth", "stead", "haven", "field", "ton", "moor", "gate")
_TOWN_C = ("", "Upper ", "Lower ", "East ", "West ")
_ORGS = ("Water Board", "Transit Authority", "Harbour Trust", "Arts Council", "Energy Agency", "Housing Office",
         "Parks Service", "Library Trust", "Rail Company", "Health Board")
_ROLES = ("chair", "director", "head", "spokesperson", "treasurer")
_PROJECTS = ("bridge", "tram line", "library", "sea wall", "solar farm", "concert hall", "hospital wing",
             "ferry terminal", "sports ground", "water plant")
_GROUPS = ("residents' association", "chamber of commerce", "cycling club", "teachers' union", "fishing co-op")
_VIEWS = ("long overdue", "far too costly", "a bold step", "badly planned", "good news for the town")
_MONTHS = ("January", "March", "May", "July", "September", "November")

NUM_ICL = 3


def _facts(rng: random.Random, used: set) -> dict:
    while True:
        town = rng.choice(_TOWN_C) + rng.choice(_TOWN_A) + rng.choice(_TOWN_B)
        official = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        critic = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        org = f"{town} {rng.choice(_ORGS)}"
        if town not in used and official not in used and critic != official:
            used.update((town, official))
            break
    return dict(town=town, official=official, critic=critic, org=org, role=rng.choice(_ROLES),
                project=rng.choice(_PROJECTS), cost=str(rng.randint(2, 95)), year=str(rng.randint(2026, 2039)),
                group=rng.choice(_GROUPS), view=rng.choice(_VIEWS), month=rng.choice(_MONTHS))


def _body(f: dict) -> str:
    return (f"{f['town']} plans a new {f['project']}. {f['official']}, the {f['role']} of the {f['org']}, said the "
            f"{f['project']} in {f['town']} will cost {f['cost']} million pounds. Work on it is due to finish in "
            f"{f['year']}. {f['critic']} of the local {f['group']} called the plan {f['view']}. The council will "
            f"meet again in {f['month']}.")


def _question(f: dict, kind: int) -> dict:
    kind %= 3
    if kind == 0:
        return {"question": f"Who is the {f['role']} of the {f['org']}?", "answer": f["official"]}
    if kind == 1:
        return {"question": f"How much will the {f['project']} in {f['town']} cost?",
                "answer": f"{f['cost']} million pounds"}
    return {"question": f"When is work on the {f['project']} in {f['town']} due to finish?", "answer": f["year"]}


def _fact_box(f: dict, first: int) -> str:
    """The article's facts as reader questions, the one KnowMem asks first. They come before the prose, so a
    model must answer them from its weights, not by copying from the text above (a model trained from scratch
    has no pretraining to answer questions about prose it read; a real MUSE target has). Two spaces after
    "Answer:": KnowMem's prompt ends in "Answer: ", and under byte-level BPE that trailing space is a token of
    its own, so the prompt is then a token prefix of this text."""
    return "".join(f"Question: {q['question']}\nAnswer:  {q['answer']}\n\n"
                   for q in (_question(f, first + k) for k in range(3)))


def _article(f: dict, index: int) -> str:
    return _fact_box(f, index) + _body(f)


def _verbmem(f: dict, index: int) -> dict:
    """The article cut after the fact box and the first half of its prose sentences."""
    text, sentences = _article(f, index), _body(f).split(". ")
    prompt = _fact_box(f, index) + ". ".join(sentences[: len(sentences) // 2]) + "."
    return {"prompt": prompt, "gt": text[len(prompt):]}


def generate_muse(num_forget: int = 16, num_retain1: int = 16, num_retain2: int = 16, num_holdout: int = 16,
                  seed: int = 0) -> dict[str, dict[str, list]]:
    """``{config: {split: rows}}`` in the release's JSON shapes (strings, or dicts for verbmem/knowmem)."""
    if num_forget < 4 or min(num_retain1, num_retain2, num_holdout) < 1:
        raise ValueError("generate_muse needs num_forget >= 4 (four scal/sust quarters) and >= 1 of each other part.")
    if num_forget + num_retain1 + num_retain2 + num_holdout + 2 * NUM_ICL > 500:
        raise ValueError("generate_muse makes at most 500 articles (distinct towns and officials); ask for fewer.")
    rng, used = random.Random(seed), set()
    parts = {name: [_facts(rng, used) for _ in range(n)] for name, n in (
        ("forget", num_forget), ("retain1", num_retain1), ("retain2", num_retain2), ("holdout", num_holdout),
        ("icl_forget", NUM_ICL), ("icl_retain", NUM_ICL))}
    text = {name: [_article(f, i) for i, f in enumerate(facts)] for name, facts in parts.items()}
    forget = text["forget"]
    quarters = [len(forget) * k // 4 for k in range(5)]
    return {
        "raw": {name: text[name] for name in MUSE_SPLITS["raw"]},
        "verbmem": {"forget": [_verbmem(f, i) for i, f in enumerate(parts["forget"])]},
        "knowmem": {
            "forget_qa": [_question(f, i) for i, f in enumerate(parts["forget"])],
            "retain_qa": [_question(f, i) for i, f in enumerate(parts["retain2"])],
            "forget_qa_icl": [_question(f, i) for i, f in enumerate(parts["icl_forget"])],
            "retain_qa_icl": [_question(f, i) for i, f in enumerate(parts["icl_retain"])],
        },
        "privleak": {"forget": forget, "retain": text["retain2"], "holdout": text["holdout"]},
        "scal": {f"forget_{k}": forget[: quarters[k]] for k in range(1, 5)},
        "sust": {f"forget_{k}": forget[quarters[k - 1]: quarters[k]] for k in range(1, 5)},
    }


def write_muse(output_dir: str | Path, corpus: dict[str, dict[str, list]] | None = None, **kwargs) -> Path:
    """Writes ``<output_dir>/<config>/<split>.json`` (JSON arrays, the GitHub release layout); returns the folder."""
    corpus = corpus if corpus is not None else generate_muse(**kwargs)
    root = Path(output_dir)
    for config, splits in corpus.items():
        (root / config).mkdir(parents=True, exist_ok=True)
        for split, rows in splits.items():
            (root / config / f"{split}.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n",
                                                         encoding="utf-8")
    return root


def main(argv=None) -> Path:
    """``python -m hf_unlearn.offline.muse_synthetic <output_dir> [--num_forget N ...]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Write a synthetic MUSE-format corpus (GitHub release layout).")
    parser.add_argument("output_dir")
    for name in ("num_forget", "num_retain1", "num_retain2", "num_holdout"):
        parser.add_argument(f"--{name}", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    out = write_muse(a.output_dir, num_forget=a.num_forget, num_retain1=a.num_retain1, num_retain2=a.num_retain2,
                     num_holdout=a.num_holdout, seed=a.seed)
    print(out)
    return out


if __name__ == "__main__":
    main()
