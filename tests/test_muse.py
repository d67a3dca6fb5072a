"""MUSE: metric functions against hand computations, the loaders on both layouts, text windowing, the
evaluation and `run_muse.py` end to end."""

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from hf_unlearn.data.formatting import IGNORE_INDEX
from hf_unlearn.data.muse import load_muse_split, load_texts, muse_strings, parse_split
from hf_unlearn.data.text import encode_documents, window_ids
from hf_unlearn.eval import metrics as M
from hf_unlearn.offline.muse_synthetic import generate_muse, write_muse
from hf_unlearn.offline.muse_synthetic import main as muse_synthetic_main

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))


# --- metrics -----------------------------------------------------------------------------------
def test_rouge_l_f1_by_hand():
    # LCS(the cat sat on the mat, the cat is on the mat) = 5 of 6 tokens each: P = R = F1 = 5/6.
    assert M.rouge_l_f1(["the cat sat on the mat"], ["the cat is on the mat"]) == pytest.approx([5 / 6])
    # LCS(a b c, a x c d) = 2: P = 2/3, R = 2/4, F1 = 2PR/(P+R) = 4/7.
    assert M.rouge_l_f1(["a b c"], ["a x c d"]) == pytest.approx([4 / 7])
    # No stemmer (MUSE), unlike TOFU's stemmed recall.
    assert M.rouge_l_f1(["running"], ["run"]) == [0.0]
    assert M.rouge_l_recall(["running"], ["run"]) == [1.0]
    with pytest.raises(ValueError, match="2 predictions vs 1 references"):
        M.rouge_l_f1(["a", "b"], ["a"])


def test_knowmem_stop_string_cut():
    assert M.cut_at_stop_strings("Paris\n\nQuestion: Where?") == "Paris"
    assert M.cut_at_stop_strings(" Rome\nQuestion: Who?") == "Rome"
    assert M.cut_at_stop_strings("Oslo Question: x") == "Oslo"
    assert M.cut_at_stop_strings("A Question: B\n\nC") == "A"  # the earliest stop string wins
    assert M.cut_at_stop_strings(" no stop here ") == "no stop here"


def test_privleak_sign_and_scale():
    # metrics.privleak takes AUCs in mia_auc's orientation (1 = forget texts all score as members) and works
    # on MUSE's AUC, 1 - that: (A - A_ref) / A_ref * 100.
    assert M.privleak(0.75, 0.5) == pytest.approx(-50.0)  # forget set stands out more: under-unlearning
    assert M.privleak(0.25, 0.5) == pytest.approx(50.0)  # less than for the retrained model: over-unlearning
    assert M.privleak(0.6, 0.6) == 0.0
    assert M.privleak(1.0, 0.2) == pytest.approx(-100.0)  # fully memorised: MUSE's -100
    with pytest.raises(ValueError, match="undefined"):
        M.privleak(0.5, 1.0)
    # Min-K% AUC convention: members (forget) scoring lower than non-members gives AUC 1.
    assert M.mia_auc([1.0, 2.0], [3.0, 4.0]) == 1.0


# --- loaders ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus():
    return generate_muse(num_forget=4, num_retain1=4, num_retain2=4, num_holdout=4, seed=0)


@pytest.fixture(scope="module")
def muse_dir(tmp_path_factory, corpus):
    return write_muse(tmp_path_factory.mktemp("muse") / "data", corpus)


def test_synthetic_corpus_is_deterministic_and_shaped(corpus):
    assert generate_muse(num_forget=4, num_retain1=4, num_retain2=4, num_holdout=4, seed=0) == corpus
    assert generate_muse(num_forget=4, num_retain1=4, num_retain2=4, num_holdout=4, seed=1) != corpus
    forget = corpus["raw"]["forget"]
    assert [len(corpus["scal"][f"forget_{k}"]) for k in range(1, 5)] == [1, 2, 3, 4]
    assert corpus["scal"]["forget_4"] == forget  # nested
    assert sum((corpus["sust"][f"forget_{k}"] for k in range(1, 5)), []) == forget  # disjoint quarters
    for row, text in zip(corpus["verbmem"]["forget"], forget):
        assert row["prompt"] + row["gt"] == text
    for row, text in zip(corpus["knowmem"]["forget_qa"], forget):
        assert row["question"] in text and row["answer"] in text
    assert not set(forget) & set(corpus["raw"]["holdout"])


def test_loaders_on_hub_names_and_github_release_names(tmp_path, muse_dir, corpus):
    release = shutil.copytree(muse_dir, tmp_path / "release")
    for config, ours, theirs in (("knowmem", "retain_qa", "retain2_qa"), ("knowmem", "retain_qa_icl", "retain2_qa_icl"),
                                 ("privleak", "retain", "retain2")):
        (release / config / f"{ours}.json").rename(release / config / f"{theirs}.json")
    (release / "raw" / "holdout.json").unlink()
    (release / "raw" / "holdout.txt").write_text("One whole book.\nSecond line.", encoding="utf-8")
    for folder in (muse_dir, release):
        retain_qa = load_muse_split(str(folder), "knowmem/retain_qa")
        assert retain_qa.column_names == ["question", "answer"] and retain_qa.to_list() == corpus["knowmem"]["retain_qa"]
        assert load_texts(str(folder), "privleak/retain") == corpus["privleak"]["retain"]
        assert load_texts(str(folder), "sust/forget_2") == corpus["sust"]["forget_2"]
        assert load_muse_split(str(folder), "verbmem/forget").to_list() == corpus["verbmem"]["forget"]
    assert load_texts(str(release), "holdout") == ["One whole book.\nSecond line."]  # bare name = raw/<name>
    assert "One whole book.\nSecond line." in muse_strings(str(release))


def test_hub_loader_asks_for_config_and_split(monkeypatch):
    calls = []

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict({"prompt": ["p"], "gt": ["g"], "extra": [1]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    rows = load_muse_split("muse-bench/MUSE-News", "verbmem/forget")
    assert calls == [("muse-bench/MUSE-News", "verbmem", "forget")] and rows.column_names == ["prompt", "gt"]


def test_loader_errors_name_what_exists(tmp_path, muse_dir):
    with pytest.raises(ValueError, match="Unknown MUSE config 'rawx'; MUSE configs: raw, verbmem, knowmem"):
        parse_split("rawx/forget")
    with pytest.raises(ValueError, match="Unknown split 'forget_5' of MUSE config 'sust'; its splits: forget_1"):
        parse_split("sust/forget_5")
    partial = shutil.copytree(muse_dir, tmp_path / "partial")
    (partial / "sust" / "forget_3.json").unlink()
    with pytest.raises(FileNotFoundError, match="No split 'forget_3' in .*sust.*Splits found there: forget_1, forget_2, "
                                                "forget_4"):
        load_texts(str(partial), "sust/forget_3")
    shutil.rmtree(partial / "scal")
    with pytest.raises(FileNotFoundError, match="No MUSE config folder 'scal'.*found: knowmem, privleak, raw, sust"):
        load_texts(str(partial), "scal/forget_1")
    rows = json.loads((partial / "knowmem" / "forget_qa.json").read_text())
    del rows[1]["answer"]
    (partial / "knowmem" / "forget_qa.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=r"knowmem/forget_qa .*rows \[1\] have no string 'answer'"):
        load_muse_split(str(partial), "knowmem/forget_qa")
    with pytest.raises(ValueError, match="not text"):
        load_texts(str(muse_dir), "knowmem/forget_qa")


# --- windowing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_length", [2, 3, 7, 64, 4096])
def test_windows_train_every_token_once(max_length):
    rng = random.Random(max_length)
    for length in (1, 2, max_length - 1, max_length, max_length + 1, 3 * max_length + 2, 50):
        ids = [rng.randrange(5, 100) for _ in range(max(1, length))]
        with_bos = window_ids(ids, max_length, context_id=1)
        assert all(len(w.input_ids) <= max_length and w.input_ids[0] == 1 and w.labels[0] == IGNORE_INDEX
                   for w in with_bos)
        assert [t for w in with_bos for t in w.labels[1:]] == ids  # every token a label exactly once, in order
        assert all(w.input_ids[1:] == w.labels[1:] for w in with_bos)  # no prompt mask
        without = window_ids(ids, max_length, context_id=None)
        assert all(len(w.input_ids) <= max_length and w.labels[0] == IGNORE_INDEX for w in without)
        assert [t for w in without for t in w.labels[1:]] == ids[1:]  # only the document's first token has no predictor
        for previous, window in zip(without, without[1:]):
            assert window.input_ids[0] == previous.input_ids[-1]  # context = the previous window's last token


def test_encode_documents_closes_each_document(tokenizer):
    docs = ["A first short document.", "A second one, a little longer than the first document."]
    windows = encode_documents(tokenizer, docs, max_length=5)
    labels = [t for w in windows for t in w.labels if t != IGNORE_INDEX]
    expected = [t for d in docs for t in tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]]
    assert labels == expected
    assert sum(len(w.labels) - 1 for w in windows) == len(expected)


@pytest.mark.parametrize("method", ["ga", "grad_diff", "kl", "npo", "simnpo", "idk_nll", "idk_dpo", "undial", "rmu"])
def test_every_method_trains_on_text_windows(tmp_path, tokenizer, make_model, method):
    from hf_unlearn import UnlearningConfig, UnlearningTrainer

    forget = datasets.Dataset.from_dict({"text": ["The forget document is long enough to need several windows here."]})
    retain = datasets.Dataset.from_dict({"text": ["A retain document.", "Another retain document, also short."]})
    args = UnlearningConfig(output_dir=str(tmp_path), unlearn_method=method, max_length=8, max_steps=1,
                            per_device_train_batch_size=2, learning_rate=1e-3, report_to="none", use_cpu=True,
                            rmu_layer=1, disable_tqdm=True)
    trainer = UnlearningTrainer(model=make_model(), args=args, forget_dataset=forget, retain_dataset=retain,
                                processing_class=tokenizer, dataset_columns={"text_column": "text"})
    pairs = trainer.train_dataset
    doc = tokenizer(forget["text"][0], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert len(pairs) == -(-len(doc) // 7)  # windows of 1 context + 7 trained tokens
    assert [t for i in range(len(pairs)) for t in pairs[i]["forget"]["labels"][1:]] == doc
    if method in ("idk_nll", "idk_dpo"):
        idk = pairs[0]["idk"]
        assert idk["input_ids"][:4] == pairs[0]["forget"]["input_ids"][:4] and idk["labels"][:4] == [IGNORE_INDEX] * 4
    before = [p.detach().clone() for p in trainer.model.parameters() if p.requires_grad]
    assert math.isfinite(trainer.train().training_loss)
    after = [p.detach() for p in trainer.model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))  # one step moved the weights


# --- evaluation --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def muse_model(muse_dir):
    from hf_unlearn.offline.tiny import build_tiny_llama, train_tokenizer

    tokenizer = train_tokenizer(muse_strings(str(muse_dir)), vocab_size=512)
    model = build_tiny_llama(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=256)
    return model, tokenizer


def evaluate(model, tokenizer, muse_dir, **kw):
    from hf_unlearn.eval.benchmarks.muse import evaluate_muse

    return evaluate_muse(model, tokenizer, str(muse_dir), verbmem_max_new_tokens=6, knowmem_max_new_tokens=4,
                         show_progress=False, **kw)


def test_evaluation_keys_privleak_and_left_cut(muse_dir, muse_model):
    from hf_unlearn.eval.benchmarks.muse import SUMMARY_KEYS, keep_end, summarise

    model, tokenizer = muse_model
    per_sample, summary = evaluate(model, tokenizer, muse_dir)
    assert tuple(summary) == SUMMARY_KEYS and summary["privleak"] is None and summary["num_truncated_prompts"] == 0
    assert [len(per_sample[k]) for k in ("verbmem_forget", "knowmem_forget", "privleak_forget", "privleak_holdout")] \
        == [4, 4, 4, 4]
    assert summary["forget_verbmem_rouge"] == pytest.approx(sum(r["rouge_l_f1"] for r in per_sample["verbmem_forget"]) / 4)
    assert all(0.0 <= summary[k] <= 1.0 for k in ("mia_loss_auc", "mia_min_k_auc", "extraction_strength"))
    # Against its own reference, PrivLeak is 0; against a reference with AUC 1 - or 0.5 - it is as defined.
    _, self_ref = evaluate(model, tokenizer, muse_dir, retain_reference=per_sample)
    assert self_ref["privleak"] == 0.0 and self_ref["retrain_min_k_auc"] == summary["mia_min_k_auc"]
    assert summarise(per_sample, 0.5)["privleak"] == pytest.approx((0.5 - summary["mia_min_k_auc"]) / 0.5 * 100)
    # A context too short for the prompts: they are cut from the left (keeping BOS and the end), and counted.
    per_cut, cut = evaluate(model, tokenizer, muse_dir, max_context=40)
    assert cut["num_truncated_prompts"] == sum(r["truncated"] for k in ("verbmem_forget", "knowmem_forget",
                                                                      "knowmem_retain", "privleak_forget",
                                                                      "privleak_holdout") for r in per_cut[k]) > 0
    assert keep_end([1, 5, 6, 7, 8], 3, bos_id=1) == ([1, 7, 8], True)
    assert keep_end([5, 6, 7], 3, bos_id=1) == ([5, 6, 7], False)


def test_reference_from_another_benchmark_or_corpus_is_refused(tmp_path, muse_dir, muse_model):
    from hf_unlearn.eval.benchmarks.muse import check_muse

    model, tokenizer = muse_model
    per_sample, _ = evaluate(model, tokenizer, muse_dir, subsample=2)
    check_muse(str(muse_dir), retain_reference=per_sample, subsample=2)  # the same texts: accepted
    tofu = tmp_path / "tofu_eval.json"
    tofu.write_text(json.dumps({"format": "hf-unlearn/tofu-eval", "forget": []}))
    with pytest.raises(ValueError, match="not a MUSE evaluation .*'hf-unlearn/tofu-eval'"):
        check_muse(str(muse_dir), retain_reference=str(tofu))
    other = write_muse(tmp_path / "other", num_forget=4, num_retain1=4, num_retain2=4, num_holdout=4, seed=3)
    with pytest.raises(ValueError, match="scored other privleak/forget texts .*first difference at text 0"):
        check_muse(str(other), retain_reference=per_sample, subsample=2)
    with pytest.raises(ValueError, match="subsample must be a positive integer"):
        check_muse(str(muse_dir), subsample=0)


# --- parity with MUSE's official code (muse_bench), written out from its definitions ---------------------
def official_privleak_text_scores(model, tokenizer, text: str) -> dict:
    """muse_bench's privleak `inference`: the text tokenised with BOS, the model's own mean loss ("PPL"), that
    over the zlib size of the whole text, and minus the mean of the lowest int(n * 0.4) token log-probs."""
    import zlib

    ids = torch.tensor([tokenizer.encode(text)])
    with torch.no_grad():
        out = model(ids, labels=ids)
    logp = torch.log_softmax(out.logits[0, :-1].double(), -1).gather(-1, ids[0, 1:, None]).squeeze(-1).numpy()
    k = int(len(logp) * 0.4)
    return {"loss": out.loss.item(), "zlib": out.loss.item() / len(zlib.compress(bytes(text, "utf-8"))),
            "min_k": float(-np.mean(np.sort(logp)[:k]))}


def official_auc(forget: list, holdout: list) -> float:
    """muse_bench's `sweep`: ROC on the negated score, forget = label 0, holdout = label 1."""
    from sklearn.metrics import auc, roc_curve

    fpr, tpr, _ = roc_curve(np.array([0] * len(forget) + [1] * len(holdout)), -np.array(forget + holdout))
    return float(auc(fpr, tpr))


def official_verbmem(model, tokenizer, prompt: str, gt: str, max_new_tokens: int) -> tuple[str, str]:
    """muse_bench's verbmem: the reference is gt tokenised WITH the BOS, cut to max_new_tokens, decoded without
    special tokens; the output is model.generate's greedy continuation, decoded the same way."""
    decode = dict(skip_special_tokens=True, clean_up_tokenization_spaces=True)
    input_ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=True).input_ids
    gt_ids = tokenizer(gt, return_tensors="pt", add_special_tokens=True).input_ids[:, :max_new_tokens]
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.batch_decode(out[:, input_ids.shape[1]:], **decode)[0], tokenizer.batch_decode(gt_ids, **decode)[0]


@pytest.fixture(scope="module")
def memorising_pair(muse_dir, muse_model):
    """A "retrain" model (the untrained fixture) and an "unlearned" one that has seen the forget texts (a few
    steps on them), so that MUSE's forget-vs-holdout AUCs are far from 0.5 and from each other."""
    import copy

    retrain, tokenizer = muse_model
    memorised = copy.deepcopy(retrain)
    optimizer = torch.optim.AdamW(memorised.parameters(), lr=1e-2)
    texts = load_texts(str(muse_dir), "privleak/forget")
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    memorised.train()
    for _ in range(15):
        optimizer.zero_grad()
        memorised(**batch, labels=labels).loss.backward()
        optimizer.step()
    memorised.eval()
    return memorised, retrain, tokenizer


def test_privleak_matches_the_official_code_in_sign_scale_and_orientation(muse_dir, memorising_pair):
    memorised, retrain, tokenizer = memorising_pair
    official_auc_of = {}
    for name, model in (("memorised", memorised), ("retrain", retrain)):
        per_sample, _ = evaluate(model, tokenizer, muse_dir)
        scores = {key: [official_privleak_text_scores(model, tokenizer, row["text"])
                        for row in load_muse_split(str(muse_dir), f"privleak/{key.split('_')[1]}").to_list()]
                  for key in ("privleak_forget", "privleak_holdout")}
        for key, rows in scores.items():  # per-text scores: ours = the official ones (float32 model)
            for ours, theirs in zip(per_sample[key], rows):
                assert ours["mia_loss"] == pytest.approx(theirs["loss"], rel=1e-5)
                assert ours["mia_zlib"] == pytest.approx(theirs["zlib"], rel=1e-5)
                assert ours["mia_min_k"] == pytest.approx(theirs["min_k"], rel=1e-5)
        official_auc_of[name] = official_auc([r["min_k"] for r in scores["privleak_forget"]],
                                             [r["min_k"] for r in scores["privleak_holdout"]])
        if name == "retrain":
            reference = per_sample
    # Orientation: MUSE's AUC is 1 - ours; it falls towards 0 as the forget texts are memorised.
    _, summary = evaluate(memorised, tokenizer, muse_dir, retain_reference=reference)
    assert official_auc_of["memorised"] == pytest.approx(1 - summary["mia_min_k_auc"], abs=1e-12)
    assert official_auc_of["retrain"] == pytest.approx(1 - summary["retrain_min_k_auc"], abs=1e-12)
    assert official_auc_of["memorised"] < 0.2 < official_auc_of["retrain"]
    official = (official_auc_of["memorised"] - official_auc_of["retrain"]) / official_auc_of["retrain"] * 100
    assert summary["privleak"] == pytest.approx(official, abs=1e-9)
    assert summary["privleak"] < -50  # memorised: strongly negative, MUSE's under-unlearning
    # The earlier formula, relative to the un-negated AUC, had the opposite sign (and another scale).
    before = (summary["mia_min_k_auc"] - summary["retrain_min_k_auc"]) / summary["retrain_min_k_auc"] * 100
    assert before > 0


def test_zlib_normaliser_is_the_whole_text_also_when_cut(muse_dir, muse_model):
    import zlib

    model, tokenizer = muse_model
    per_sample, summary = evaluate(model, tokenizer, muse_dir, max_context=40)
    texts = load_texts(str(muse_dir), "privleak/forget")
    cut = [i for i, r in enumerate(per_sample["privleak_forget"]) if r["truncated"]]
    assert cut  # the 40-token context cuts these texts
    for i in cut:
        record = per_sample["privleak_forget"][i]
        assert record["mia_zlib"] == pytest.approx(record["mia_loss"] / len(zlib.compress(texts[i].encode())), rel=1e-12)


def test_verbmem_reference_and_generation_match_the_official_code(muse_dir, muse_model):
    from hf_unlearn.eval.benchmarks.muse import verbmem_reference_ids

    model, tokenizer = muse_model
    n = 6
    per_sample, _ = evaluate(model, tokenizer, muse_dir)
    rows = load_muse_split(str(muse_dir), "verbmem/forget").to_list()
    assert tokenizer("x", add_special_tokens=True)["input_ids"][0] == tokenizer.bos_token_id  # the cut counts a BOS
    for row, ours in zip(rows, per_sample["verbmem_forget"]):
        output, reference = official_verbmem(model, tokenizer, row["prompt"], row["gt"], n)
        assert ours["gt"] == reference and ours["generation"] == output
        assert ours["rouge_l_f1"] == M.rouge_l_f1([output], [reference])[0]
        # MUSE's reference holds n - 1 text tokens (the BOS takes one of the n); the earlier cut kept n.
        assert len(verbmem_reference_ids(tokenizer, row["gt"], n)) == n - 1
        before = tokenizer.decode(tokenizer(row["gt"], add_special_tokens=False)["input_ids"][:n], skip_special_tokens=True)
        assert before != reference and before.startswith(reference.rstrip())


# --- the scripts: the README's MUSE commands, as users run them (with a few steps and short generations) ---
README_OVERRIDES = {
    "hf_unlearn.offline.muse_synthetic": ["--num_forget", "4", "--num_retain1", "4", "--num_retain2", "4",
                                          "--num_holdout", "4"],
    "finetune_muse.py": ["--max_steps", "2", "--tiny_size", "demo", "--max_new_tokens", "4", "--knowmem_max_new_tokens",
                         "4", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true"],
    "run_muse.py": ["--max_steps", "2", "--max_new_tokens", "4", "--knowmem_max_new_tokens", "4", "--logging_steps", "1",
                    "--report_to", "none", "--disable_tqdm", "true", "--hessian_update_interval", "1",
                    "--eval_strategy", "steps", "--eval_steps", "1", "--eval_subsample", "2"],
    "hf_unlearn.eval": ["--verbmem_max_new_tokens", "4", "--knowmem_max_new_tokens", "4", "--disable_tqdm", "true"],
}


def readme_muse_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    block = text.split("### MUSE (News, Books)", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    joined = block.replace("\\\n", " ")
    return [line.split() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    """Runs the README's MUSE block in a fresh folder: the synthetic corpus, finetune_muse (target and retrain),
    run_muse through `accelerate launch`, and `python -m hf_unlearn.eval --benchmark muse`."""
    import finetune_muse

    from hf_unlearn.eval.__main__ import main as eval_main

    root = tmp_path_factory.mktemp("readme_muse")
    outputs = {}
    for command in readme_muse_commands():
        key = next(k for k in README_OVERRIDES if k in command or any(a.endswith(k) for a in command))
        argv = [a for a in command if a not in ("python", "-m", "accelerate", "launch")]
        argv = [str(root / a) if a.startswith(("data/", "outputs/")) else a for a in argv] + README_OVERRIDES[key]
        if key == "hf_unlearn.offline.muse_synthetic":
            muse_synthetic_main(argv[1:])
        elif key == "finetune_muse.py":
            finetune_muse.main(argv[1:])
        elif key == "hf_unlearn.eval":
            assert eval_main(argv[1:]) == 0
        else:  # accelerate launch, as a user runs it
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
            launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
                      "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                      str(REPO / argv[0]), *argv[1:]]
            result = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300, cwd=root)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            outputs["run_muse"] = result.stdout
    return root, outputs


def test_readme_muse_commands_end_to_end(readme_run):
    root, outputs = readme_run
    assert [c[:3] for c in readme_muse_commands()][:2] == [["python", "-m", "hf_unlearn.offline.muse_synthetic"],
                                                           ["python", "examples/finetune_muse.py", "--model_name_or_path"]]
    target, reference, out = root / "outputs" / "muse_target", root / "outputs" / "muse_retrain" / "muse_eval.json", \
        root / "outputs" / "muse_npo_sophia"
    assert "[run_muse] npo + sophia on raw/forget" in outputs["run_muse"] and "privleak=" in outputs["run_muse"]
    summary = json.loads((out / "muse_summary.json").read_text())
    retrain_auc = M.mia_auc(*[[r["mia_min_k"] for r in json.loads(reference.read_text())[k]]
                              for k in ("privleak_forget", "privleak_holdout")])
    assert summary["retrain_min_k_auc"] == retrain_auc
    assert summary["privleak"] == pytest.approx(M.privleak(summary["mia_min_k_auc"], retrain_auc))
    assert (out / "model.safetensors").is_file() and json.loads((out / "run_info.json").read_text())["before"]
    card = (out / "README.md").read_text()
    assert "unlearn_method: npo" in card and "## Results (MUSE evaluation)" in card and "VerbMem on forget" in card
    assert not (target / "README.md").exists()  # nothing written into the input model
    # The during-training callback evaluated MUSE (the first 2 items of each split) at steps 1 and 2.
    history = json.loads((out / "muse_history.json").read_text())
    history = history["history"] if isinstance(history, dict) else history
    assert [h["step"] for h in history] == [1, 2]
    assert 0.0 <= history[-1]["metrics"]["forget_verbmem_rouge"] <= 1.0
    # The evaluation CLI on the unlearned model gives the numbers run_muse wrote.
    cli = json.loads((root / "outputs" / "muse_eval" / "muse_summary.json").read_text())
    assert cli.keys() == summary.keys()
    assert all(cli[k] == pytest.approx(v) if isinstance(v, float) else cli[k] == v for k, v in summary.items())


def run_muse_flags(muse_dir, target, reference, output_dir, *extra):
    return ["--model_name_or_path", str(target), "--dataset_name", str(muse_dir), "--retain_reference", str(reference),
            "--output_dir", str(output_dir), "--max_steps", "1", "--report_to", "none", *extra]


def test_bad_run_muse_inputs_fail_before_anything_is_written(tmp_path, readme_run):
    import run_muse

    root, _ = readme_run
    muse_dir, target = root / "data" / "muse", root / "outputs" / "muse_target"
    reference = root / "outputs" / "muse_retrain" / "muse_eval.json"
    out = tmp_path / "never"
    cases = [
        (["--forget_split", "sust/forget_9"], ValueError, "Unknown split 'forget_9' of MUSE config 'sust'"),
        (["--retain_split", "knowmem/retain_qa"], ValueError, "not text"),
        (["--max_length", "4096"], ValueError, "longer than the model's context"),
    ]
    tofu_reference = tmp_path / "tofu_eval.json"
    tofu_reference.write_text(json.dumps({"format": "hf-unlearn/tofu-eval", "forget": [{"question": "q"}]}))
    for extra, error, message in cases:
        with pytest.raises(error, match=message):
            run_muse.main(run_muse_flags(muse_dir, target, reference, out, *extra))
        assert not out.exists()
    with pytest.raises(ValueError, match="not a MUSE evaluation"):
        run_muse.main(run_muse_flags(muse_dir, target, tofu_reference, out))
    assert not out.exists()


MUSE_RECIPES = sorted((REPO / "recipes" / "muse").glob("*.yaml"))


def test_there_is_a_muse_recipe_per_method_and_optimizer():
    from hf_unlearn.methods import METHODS

    # and the one-shot influence step, in its GradDiff form
    assert {p.stem for p in MUSE_RECIPES} == ({f"{m}_{o}" for m in METHODS for o in ("adamw", "sophia")}
                                          | {"grad_diff_influence"})


@pytest.mark.parametrize("recipe", MUSE_RECIPES, ids=lambda p: p.stem)
def test_every_muse_recipe_parses_with_muse_data(recipe):
    import yaml
    from trl import ModelConfig, TrlParser

    from hf_unlearn import UnlearningConfig
    from hf_unlearn.config import MuseScriptArguments

    script, args, model_args = TrlParser((MuseScriptArguments, UnlearningConfig, ModelConfig)).parse_args_and_config(
        args=["--config", str(recipe), "--use_cpu", "true"])
    assert parse_split(script.forget_split) == ("raw", "forget") and parse_split(script.retain_split) == ("raw", "retain1")
    assert script.dataset_name == "muse-bench/MUSE-News" and args.max_length == 2048 and script.max_new_tokens == 128
    raw = yaml.safe_load(recipe.read_text())
    for key, value in raw.items():  # every key landed in one of the three dataclasses, with its value
        holder = next(obj for obj in (script, args, model_args) if hasattr(obj, key))
        got = getattr(holder, key)
        assert (got.value if hasattr(got, "value") else got) == value, key
