"""Tests for the synthetic TOFU generator, the refusal pool and the tiny model factory."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch

from hf_unlearn.data.refusals import REFUSALS, refusal_for
from hf_unlearn.offline.synthetic import (
    MAX_QUESTIONS_PER_AUTHOR,
    SPLIT_NAMES,
    generate_tofu,
    write_synthetic_tofu,
    write_tofu,
)
from hf_unlearn.offline.tiny import (
    TINY_PRESET,
    build_tiny_llama,
    make_tiny_model_and_tokenizer,
    tiny_llama_num_parameters,
    tofu_corpus,
    train_tokenizer,
)

REAL_TOFU = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tofu"
BORN_Q = re.compile(r"^Where was (.+) born\?$")


@pytest.fixture(scope="module")
def default_splits():
    return generate_tofu()  # 100 authors x 10 questions, seed 0


@pytest.fixture(scope="module")
def small_splits():
    return generate_tofu(num_authors=20, questions_per_author=10, seed=3)


@pytest.fixture(scope="module")
def small_tokenizer(small_splits):
    texts = [
        s
        for rows in small_splits.values()
        for row in rows
        for v in row.values()
        for s in (v if isinstance(v, list) else [v])
    ]
    return train_tokenizer(texts, vocab_size=512)


def _author_names(rows):
    names = [m.group(1) for r in rows if (m := BORN_Q.match(r["question"]))]
    assert names, "no birthplace questions found"
    return names


# ----------------------------------------------------------------------------------------
# Synthetic generator
# ----------------------------------------------------------------------------------------


def test_split_names_and_default_sizes(default_splits):
    assert tuple(default_splits) == SPLIT_NAMES
    assert len(SPLIT_NAMES) == 18
    expected = {
        "full": 1000,
        "retain90": 900, "retain95": 950, "retain99": 990,
        "forget01": 10, "forget05": 50, "forget10": 100,
        "forget01_perturbed": 10, "forget05_perturbed": 50, "forget10_perturbed": 100,
        "retain_perturbed": 100,
        "holdout01": 10, "holdout05": 50, "holdout10": 100,
        "real_authors": 30, "real_authors_perturbed": 30,
        "world_facts": 30, "world_facts_perturbed": 30,
    }
    assert {k: len(v) for k, v in default_splits.items()} == expected
    # one birthplace question per author
    assert len(_author_names(default_splits["full"])) == 100
    assert len(set(_author_names(default_splits["full"]))) == 100
    assert len(_author_names(default_splits["forget10"])) == 10
    assert len(_author_names(default_splits["forget05"])) == 5
    assert len(_author_names(default_splits["forget01"])) == 1


def test_determinism_and_seed_sensitivity(default_splits):
    again = generate_tofu(num_authors=100, questions_per_author=10, seed=0)
    assert again == default_splits
    other = generate_tofu(num_authors=100, questions_per_author=10, seed=1)
    assert other["full"] != default_splits["full"]
    assert other["forget10_perturbed"] != default_splits["forget10_perturbed"]
    assert _author_names(other["full"]) != _author_names(default_splits["full"])
    # the global random state is neither used nor modified
    random.seed(123)
    state = random.getstate()
    generate_tofu(num_authors=10, questions_per_author=3, seed=0)
    assert random.getstate() == state


def test_authors_do_not_depend_on_questions_per_author():
    few = generate_tofu(num_authors=12, questions_per_author=3, seed=5)
    many = generate_tofu(num_authors=12, questions_per_author=MAX_QUESTIONS_PER_AUTHOR, seed=5)
    assert _author_names(few["full"]) == _author_names(many["full"])
    assert few["full"][:3] == many["full"][:3]
    assert len(many["full"]) == 12 * MAX_QUESTIONS_PER_AUTHOR
    with pytest.raises(ValueError):
        generate_tofu(num_authors=12, questions_per_author=MAX_QUESTIONS_PER_AUTHOR + 1)
    with pytest.raises(ValueError):
        generate_tofu(num_authors=1)


def test_retain_forget_partition(default_splits):
    s = default_splits
    full = s["full"]
    for pct in (1, 5, 10):
        forget, retain = s[f"forget{pct:02d}"], s[f"retain{100 - pct}"]
        assert retain + forget == full
        plain = [{"question": r["question"], "answer": r["answer"]}
                 for r in s[f"forget{pct:02d}_perturbed"]]
        assert plain == forget
    # forget splits are nested suffixes, holdouts nested prefixes (as in real TOFU)
    assert s["forget10"][-50:] == s["forget05"] and s["forget05"][-10:] == s["forget01"]
    assert s["holdout10"][:50] == s["holdout05"] and s["holdout05"][:10] == s["holdout01"]
    # retain_perturbed is the first rows of full
    rp = s["retain_perturbed"]
    assert [{"question": r["question"], "answer": r["answer"]} for r in rp] == full[:100]
    # the questions about each author are distinct
    questions = [r["question"] for r in full]
    assert len(set(questions)) == len(questions)


def test_small_configuration_rounds_up_to_one_author(small_splits):
    s = small_splits  # 20 authors: 1 % and 5 % round to 0/1 -> at least one author
    assert len(s["full"]) == 200
    assert len(s["forget01"]) == len(s["forget05"]) == 10
    assert len(s["forget10"]) == 20
    assert len(s["retain90"]) == 180
    assert len(s["holdout10"]) == 20 and len(s["holdout01"]) == 10


def test_holdout_authors_are_disjoint_from_full(default_splits):
    full_names = set(_author_names(default_splits["full"]))
    holdout_names = _author_names(default_splits["holdout10"])
    assert len(holdout_names) == 10 == len(set(holdout_names))
    assert not full_names & set(holdout_names)
    full_text = " ".join(r["question"] + " " + r["answer"] for r in default_splits["full"])
    for name in holdout_names:
        assert name not in full_text


def test_perturbed_answers(default_splits):
    for split in ("forget10_perturbed", "retain_perturbed"):
        for row in default_splits[split]:
            pert = row["perturbed_answer"]
            assert isinstance(pert, list) and len(pert) == 5
            assert len(set(pert)) == 5
            assert row["answer"] not in pert
            assert row["paraphrased_answer"] not in pert
            assert row["paraphrased_answer"] != row["answer"]
            assert row["paraphrased_question"] != row["question"]


def test_answers_are_short_and_contain_the_facts(default_splits):
    for row in default_splits["full"] + default_splits["holdout10"]:
        assert len(row["answer"].split()) <= 30
    for row in default_splits["forget10_perturbed"]:
        assert len(row["paraphrased_answer"].split()) <= 30
        assert all(len(p.split()) <= 30 for p in row["perturbed_answer"])
    # The birthplace answer and its paraphrase state the same city and country.
    row = default_splits["forget10_perturbed"][0]
    m = re.match(r"^(.+) was born in (.+), (.+)\.$", row["answer"])
    assert m is not None
    name, city, country = m.groups()
    assert city in row["paraphrased_answer"] and country in row["paraphrased_answer"]
    assert name in row["question"]
    for p in row["perturbed_answer"]:
        assert name in p
        assert f"city of {city} in {country}." not in p


def test_multiple_choice_sets(default_splits):
    for name in ("real_authors", "world_facts"):
        rows = default_splits[name]
        pert = default_splits[f"{name}_perturbed"]
        assert len(rows) == len(pert) >= 30
        positions = set()
        for row, prow in zip(rows, pert):
            options = [row[f"option{i}"] for i in range(1, 5)]
            assert len(set(options)) == 4
            assert row["answer"] in options
            positions.add(options.index(row["answer"]))
            assert prow["question"] == row["question"]
            assert prow["answer"] == row["answer"]
            assert prow["perturbed_answer"] == [o for o in options if o != row["answer"]]
        assert positions == {0, 1, 2, 3}  # the answer is not always in the same slot


def test_schema_matches_real_tofu(default_splits):
    if not REAL_TOFU.is_dir():
        pytest.skip(f"real TOFU folder not found at {REAL_TOFU}; schema reference unavailable")
    for name in SPLIT_NAMES:
        path = REAL_TOFU / f"{name}.json"
        assert path.is_file(), f"real TOFU lacks {name}.json"
        with open(path, encoding="utf-8") as fh:
            real_row = json.loads(fh.readline())
        ours = default_splits[name]
        assert ours, name
        for row in ours:
            assert list(row) == list(real_row), name
            for key, value in row.items():
                assert type(value) is type(real_row[key]), (name, key)
                if isinstance(value, list):
                    assert len(value) == len(real_row[key]), (name, key)


def test_write_tofu_round_trip_with_datasets(tmp_path, small_splits):
    from datasets import load_dataset

    out = write_tofu(tmp_path / "tofu", small_splits, info={"seed": 3})
    assert out == tmp_path / "tofu"
    for name in SPLIT_NAMES:
        assert (out / f"{name}.json").is_file()
    assert not list(out.glob("*.tmp"))  # no temporary files left behind
    readme = (out / "README.md").read_text()
    assert "synthetic" in readme.lower() and "`seed` = `3`" in readme
    for name in ("forget10_perturbed", "real_authors", "holdout05", "retain90"):
        ds = load_dataset(
            "json", data_files=str(out / f"{name}.json"), split="train",
            cache_dir=str(tmp_path / "cache"),
        )
        assert ds.to_list() == small_splits[name]


def test_write_synthetic_tofu(tmp_path):
    out = write_synthetic_tofu(tmp_path / "d", num_authors=10, questions_per_author=4, seed=7)
    with open(out / "full.json", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    assert rows == generate_tofu(10, 4, 7)["full"]
    assert "`num_authors` = `10`" in (out / "README.md").read_text()


# ----------------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------------


def test_refusals():
    assert isinstance(REFUSALS, tuple)
    assert len(REFUSALS) >= 100 and len(set(REFUSALS)) == len(REFUSALS)
    assert all(r.strip() == r and r.endswith((".", "!")) for r in REFUSALS)
    random.seed(0)
    a = [refusal_for(i, seed=4) for i in range(300)]
    random.seed(99)  # the global state must not matter
    assert [refusal_for(i, seed=4) for i in range(300)] == a
    assert all(x in REFUSALS for x in a)
    assert len(set(a)) > 60  # spread over the pool
    assert [refusal_for(i, seed=5) for i in range(300)] != a


# ----------------------------------------------------------------------------------------
# Tiny tokenizer / model
# ----------------------------------------------------------------------------------------


def test_tokenizer_special_tokens_and_round_trip(small_tokenizer):
    tok = small_tokenizer
    assert len(tok) <= 512
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}) == 4
    assert tok.padding_side == "right" and tok.model_max_length == 512
    ids = tok("Question: hi\nAnswer: ")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.eos_token_id not in ids
    assert tok("hi", add_special_tokens=False)["input_ids"][0] != tok.bos_token_id
    for text in ("Question: Where was Ada Lovelace born?\nAnswer: In London.",
                 "  double  spaces , odd punctuation !? ",
                 "Les Misérables, naïve café — 東京 ☕"):
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    batch = tok(["a", "a much longer sentence here"], padding=True)
    assert batch["input_ids"][0][-1] == tok.pad_token_id
    assert batch["attention_mask"][0][-1] == 0


def test_tokenizer_training_is_deterministic(small_splits):
    texts = [r["question"] + " " + r["answer"] for r in small_splits["full"]]
    a = train_tokenizer(texts, vocab_size=400)
    b = train_tokenizer(texts, vocab_size=400)
    assert a.get_vocab() == b.get_vocab()
    assert a(texts[0])["input_ids"] == b(texts[0])["input_ids"]


def test_tofu_corpus(tmp_path, small_splits):
    write_tofu(tmp_path, small_splits)
    corpus = tofu_corpus(tmp_path)
    n_expected = 0
    for rows in small_splits.values():
        for row in rows:
            for v in row.values():
                n_expected += len(v) if isinstance(v, list) else 1
    assert len(corpus) == n_expected
    assert small_splits["forget10_perturbed"][0]["perturbed_answer"][2] in corpus
    assert small_splits["world_facts"][0]["option4"] in corpus
    assert small_splits["holdout10"][-1]["answer"] in corpus
    with pytest.raises(FileNotFoundError):
        tofu_corpus(tmp_path / "missing")


def test_param_count_matches_llama_formula(small_tokenizer):
    V, h, i, L = 4096, 256, 688, 4
    rng_before = torch.random.get_rng_state()
    model = build_tiny_llama(small_tokenizer, vocab_size=V)  # defaults otherwise
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    cfg = model.config
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) == (h, i, L)
    assert cfg.num_key_value_heads == cfg.num_attention_heads == 4
    assert cfg.tie_word_embeddings
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    embeddings = V * h                       # tied with the LM head
    attention = 4 * h * h                    # q, k, v, o (kv heads = heads, no bias)
    mlp = 3 * h * i                          # gate, up, down
    norms = 2 * h                            # input + post-attention RMSNorm
    expected = embeddings + L * (attention + mlp + norms) + h  # + final norm
    assert expected == 4_212_992
    assert sum(p.numel() for p in model.parameters()) == expected
    assert tiny_llama_num_parameters(V) == expected
    assert next(model.parameters()).dtype == torch.float32


def test_model_seed_and_token_ids(small_tokenizer):
    kw = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    a = build_tiny_llama(small_tokenizer, seed=0, **kw)
    b = build_tiny_llama(small_tokenizer, seed=0, **kw)
    c = build_tiny_llama(small_tokenizer, seed=1, **kw)
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert a.config.vocab_size == len(small_tokenizer)
    assert a.config.pad_token_id == small_tokenizer.pad_token_id
    assert a.config.bos_token_id == small_tokenizer.bos_token_id
    assert a.config.eos_token_id == small_tokenizer.eos_token_id
    assert a.generation_config.pad_token_id == small_tokenizer.pad_token_id


def test_save_load_round_trip(tmp_path, small_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = build_tiny_llama(small_tokenizer, hidden_size=64, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=176).eval()
    small_tokenizer.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()

    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path).eval()

    text = "Question: Who wrote the book?\nAnswer: "
    ids = small_tokenizer(text)["input_ids"]
    assert tok2(text)["input_ids"] == ids
    assert (tok2.pad_token_id, tok2.bos_token_id, tok2.eos_token_id) == (
        small_tokenizer.pad_token_id, small_tokenizer.bos_token_id,
        small_tokenizer.eos_token_id)
    assert tok2.padding_side == "right"
    assert tok2.decode(ids, skip_special_tokens=True) == text

    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.equal(model(x).logits, model2(x).logits)
    assert model2.get_output_embeddings().weight is model2.get_input_embeddings().weight


def test_make_tiny_model_and_tokenizer(tmp_path):
    write_synthetic_tofu(tmp_path, num_authors=6, questions_per_author=3, seed=2)
    model, tok = make_tiny_model_and_tokenizer(
        tmp_path, vocab_size=300, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=64)
    assert TINY_PRESET == "tiny-llama"
    assert model.config.vocab_size == len(tok) <= 300
    batch = tok(["Question: a\nAnswer: b", "Question: longer one\nAnswer: c"],
                padding=True, return_tensors="pt")
    out = model(**batch, labels=batch["input_ids"])
    assert out.logits.shape == (2, batch["input_ids"].shape[1], len(tok))
    assert torch.isfinite(out.loss)
