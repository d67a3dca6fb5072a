"""The TOFU evaluation runner: batched scoring, generation, summary, reference files, CLI, callback.

Data: the first rows of the real TOFU splits (../shared/data/tofu), copied into a temporary folder.
Model: a tiny Llama trained for a few steps on the retain rows, so that it generates real words.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from scipy import stats

from hf_unlearn.data.formatting import encode_qa
from hf_unlearn.data.pairing import UnlearningCollator, build_unlearning_dataset
from hf_unlearn.eval import metrics as M
from hf_unlearn.eval.__main__ import main
from hf_unlearn.eval.callback import ForgetQualityCallback
from hf_unlearn.eval.scoring import generate_answers, score_answers
from hf_unlearn.eval.benchmarks.tofu import EVAL_FILE, SUMMARY_FILE, SUMMARY_KEYS, evaluate_tofu
from hf_unlearn.eval.runner import read_results, write_results
from hf_unlearn.offline.tiny import build_tiny_llama, tofu_corpus, train_tokenizer

REAL_TOFU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tofu"
SLICE_SPLITS = (
    "forget10_perturbed", "holdout10", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed",
    "forget05_perturbed", "holdout05",
)
N_ROWS = 8
PUBLIC_KEYS = {
    "forget_quality", "model_utility", "forget_truth_ratio", "forget_prob", "forget_rouge", "retain_prob",
    "retain_rouge", "retain_truth_ratio", "ra_prob", "ra_rouge", "ra_truth_ratio", "wf_prob", "wf_rouge",
    "wf_truth_ratio", "mia_loss_auc", "mia_zlib_auc", "mia_min_k_auc", "mia_min_k_plus_plus_auc", "mia_gradnorm_auc",
    "mia_reference_auc", "privleak",
    "extraction_strength", "exact_memorization",
}
EVAL_KW = dict(max_new_tokens=8, show_progress=False)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The models here are tiny: one intra-op thread is as fast, and far faster when the two cores are
    shared with other processes (OpenMP threads then wait on each other). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_rows(folder: Path, name: str, rows: list[dict]) -> None:
    with open(folder / f"{name}.json", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def _read_rows(name: str, n: int) -> list[dict]:
    with open(REAL_TOFU / f"{name}.json", encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh)]


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory):
    if not REAL_TOFU.is_dir():
        pytest.skip(f"real TOFU data not found at {REAL_TOFU}")
    folder = tmp_path_factory.mktemp("tofu_slice")
    for name in SLICE_SPLITS:
        _write_rows(folder, name, _read_rows(name, N_ROWS))
    return folder


@pytest.fixture(scope="module")
def tok(slice_dir):
    return train_tokenizer(tofu_corpus(slice_dir), vocab_size=512)


@pytest.fixture(scope="module")
def model(tok, slice_dir):
    """A tiny "retain model": fitted for a few steps to the retain answers only (so it generates words
    and forget vs holdout are both unseen)."""
    m = build_tiny_llama(tok, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    rows = _read_rows("retain_perturbed", N_ROWS)
    encoded = [encode_qa(tok, r["question"], r["answer"]) for r in rows]
    batch = UnlearningCollator(tok).pad([{"input_ids": e.input_ids, "labels": e.labels} for e in encoded])
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    torch.manual_seed(0)
    m.train()
    for _ in range(30):
        loss = m(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    m.eval()
    return m


@pytest.fixture(scope="module")
def base_eval(model, tok, slice_dir):
    return evaluate_tofu(model, tok, str(slice_dir), batch_size=8, **EVAL_KW)


@pytest.fixture(scope="module")
def reference_file(base_eval, tmp_path_factory):
    out = tmp_path_factory.mktemp("retain_eval")
    eval_path, _ = write_results(out, *base_eval)
    return eval_path


def _manual_avg_nll(model, tok, question, answer):
    ex = encode_qa(tok, question, answer)
    ids = torch.tensor([ex.input_ids])
    labels = torch.tensor([ex.labels])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    logp = torch.log_softmax(logits[0, :-1].double(), dim=-1)
    target = labels[0, 1:]
    keep = target != -100
    picked = logp[keep].gather(-1, target[keep][:, None]).squeeze(-1)
    return float(-picked.mean()), logits, labels


# --------------------------------------------------------------------------------------------
# scoring and generation
# --------------------------------------------------------------------------------------------


def test_batched_scores_match_an_unbatched_forward(model, tok, slice_dir):
    rows = _read_rows("forget10_perturbed", N_ROWS)
    pairs = [(r["question"], a) for r in rows for a in [r["answer"], r["paraphrased_answer"], *r["perturbed_answer"]]]
    scores = score_answers(model, tok, pairs, batch_size=16, with_token_stats=True, show_progress=False)
    assert len(scores) == len(pairs)
    for k in (0, 9, len(pairs) - 1):  # spread over different batches and padding amounts
        q, a = pairs[k]
        want, logits, labels = _manual_avg_nll(model, tok, q, a)
        assert scores[k].avg_nll == pytest.approx(want, abs=1e-5)
        assert scores[k].prob == pytest.approx(math.exp(-want), rel=1e-5)
        ex = encode_qa(tok, q, a)
        assert scores[k].num_tokens == ex.num_answer_tokens  # answer tokens + the closing EOS
        assert ex.input_ids[-1] == tok.eos_token_id
        # Per-token values without the final EOS equal the reference token-level helpers.
        lp, mask = M.answer_token_logprobs(logits, labels)
        mkpp, _ = M.min_k_plus_plus_token_scores(logits, labels)
        correct, _ = M.argmax_correct(logits, labels)
        no_eos = M.drop_final_token(mask)[0]
        assert scores[k].token_logprobs.shape == (ex.num_answer_tokens - 1,)
        np.testing.assert_allclose(scores[k].token_logprobs, lp[0][no_eos].numpy(), atol=1e-5)
        np.testing.assert_allclose(scores[k].min_k_plus_plus, mkpp[0][no_eos].numpy(), atol=1e-4)
        np.testing.assert_array_equal(scores[k].correct, correct[0][no_eos].numpy())
    # Without the token statistics only the averages come back; they do not change.
    plain = score_answers(model, tok, pairs[:5], batch_size=2, show_progress=False)
    assert plain[0].token_logprobs is None
    assert [s.avg_nll for s in plain] == pytest.approx([s.avg_nll for s in scores[:5]], abs=1e-5)


def test_generation_is_greedy_and_leaves_tokenizer_and_mode_alone(model, tok):
    rows = _read_rows("forget10_perturbed", 4)
    questions = [r["question"] for r in rows]
    side = tok.padding_side
    model.train()
    batched = generate_answers(model, tok, questions, batch_size=4, max_new_tokens=6, show_progress=False)
    assert model.training  # training mode restored
    model.eval()
    single = [generate_answers(model, tok, [q], batch_size=1, max_new_tokens=6, show_progress=False)[0]
              for q in questions]
    assert batched == single
    assert tok.padding_side == side
    assert any(text for text in batched)
    # The same as an unpadded greedy decode of the first question.
    from hf_unlearn.data.formatting import encode_prompt

    ids = torch.tensor([encode_prompt(tok, questions[0])])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                         pad_token_id=tok.pad_token_id)
    new = out[0, ids.shape[1]:].tolist()
    if tok.eos_token_id in new:
        new = new[: new.index(tok.eos_token_id)]
    assert batched[0] == tok.decode(new, skip_special_tokens=True).strip()


# --------------------------------------------------------------------------------------------
# the runner
# --------------------------------------------------------------------------------------------


def test_aggregates_do_not_depend_on_batch_size(model, tok, slice_dir, base_eval):
    per8, sum8 = base_eval
    model.train()
    per1, sum1 = evaluate_tofu(model, tok, str(slice_dir), batch_size=1, **EVAL_KW)
    assert model.training
    model.eval()
    for key in PUBLIC_KEYS:
        if sum8[key] is None:
            assert sum1[key] is None
        else:
            assert abs(sum1[key] - sum8[key]) <= 1e-5, key
    for split in ("forget", "retain", "real_authors", "world_facts"):
        assert [r["generation"] for r in per1[split]] == [r["generation"] for r in per8[split]]
    assert sum8["retain_rouge"] > 0  # the fitted model produces answer words


def test_summary_follows_the_definitions(base_eval):
    per, summary = base_eval
    assert set(summary) >= PUBLIC_KEYS
    assert [len(per[k]) for k in ("forget", "retain", "real_authors", "world_facts", "holdout")] == [N_ROWS] * 5
    forget, retain = per["forget"], per["retain"]
    assert summary["forget_prob"] == pytest.approx(np.mean([math.exp(-r["avg_nll"]) for r in forget]), rel=1e-12)
    for r in forget + retain:
        assert r["truth_ratio"] == pytest.approx(math.exp(r["paraphrased_avg_nll"] - np.mean(r["perturbed_avg_nll"])))
        assert len(r["perturbed_avg_nll"]) == 5
    r_forget = np.array([r["truth_ratio"] for r in forget])
    assert summary["forget_truth_ratio"] == pytest.approx(np.mean(np.minimum(r_forget, 1 / r_forget)))
    r_retain = np.array([r["truth_ratio"] for r in retain])
    assert summary["retain_truth_ratio"] == pytest.approx(np.mean(np.maximum(0, 1 - r_retain)))
    for r in per["real_authors"]:
        p_true = math.exp(-r["avg_nll"])
        p_pert = [math.exp(-x) for x in r["perturbed_avg_nll"]]
        assert len(p_pert) == 3
        assert r["normalised_prob"] == pytest.approx(p_true / (p_true + sum(p_pert)))
        # For real authors the true answer stands in for the paraphrase.
        assert r["truth_ratio"] == pytest.approx(math.exp(r["avg_nll"] - np.mean(r["perturbed_avg_nll"])))
    assert summary["ra_prob"] == pytest.approx(np.mean([r["normalised_prob"] for r in per["real_authors"]]))
    nine = [summary[k] for k in ("retain_prob", "retain_rouge", "retain_truth_ratio", "ra_prob", "ra_rouge",
                                 "ra_truth_ratio", "wf_prob", "wf_rouge", "wf_truth_ratio")]
    expected_mu = 0.0 if min(nine) == 0 else stats.hmean(nine)
    assert summary["model_utility"] == pytest.approx(expected_mu)
    # MIA: LOSS score is the avg-NLL without the EOS, so it differs from avg_nll; AUC from the per-question scores.
    assert summary["mia_loss_auc"] == pytest.approx(
        M.mia_auc([r["mia_loss"] for r in forget], [r["mia_loss"] for r in per["holdout"]]))
    assert any(abs(r["mia_loss"] - r["avg_nll"]) > 1e-6 for r in forget)
    assert summary["forget_quality"] is None and summary["privleak"] is None
    assert 0 <= summary["extraction_strength"] <= 1 and 0 <= summary["exact_memorization"] <= 1


def test_results_round_trip(base_eval, tmp_path):
    per, summary = base_eval
    out = tmp_path / "nested" / "eval"
    eval_path, summary_path = write_results(out, per, summary)
    assert eval_path == out / EVAL_FILE and summary_path == out / SUMMARY_FILE
    assert sorted(p.name for p in out.iterdir()) == sorted([EVAL_FILE, SUMMARY_FILE])  # no temp files left
    per2, summary2 = read_results(out)
    assert summary2 == summary
    assert per2 == json.loads(json.dumps(per))
    assert per2["forget"][3]["generation"] == per["forget"][3]["generation"]
    assert per2["holdout"][5]["mia_min_k"] == per["holdout"][5]["mia_min_k"]
    assert set(summary2) >= PUBLIC_KEYS and set(SUMMARY_KEYS) == PUBLIC_KEYS


def test_own_reference_gives_forget_quality_one_and_no_privleak(model, tok, slice_dir, reference_file):
    per, summary = evaluate_tofu(model, tok, str(slice_dir), retain_reference=reference_file, batch_size=8, **EVAL_KW)
    assert summary["forget_quality"] == pytest.approx(1.0, abs=1e-12)
    assert summary["privleak"] == pytest.approx(0.0, abs=1e-9)
    # A subsample is compared with the same first questions of the (full) reference.
    _, sub = evaluate_tofu(model, tok, str(slice_dir), retain_reference=json.loads(reference_file.read_text()),
                           batch_size=8, subsample=4, **EVAL_KW)
    assert sub["forget_quality"] == pytest.approx(1.0, abs=1e-12)
    # A different model is farther from the reference: p-value from the two truth-ratio samples.
    other = build_tiny_llama(tok, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                             seed=5)
    per_o, sum_o = evaluate_tofu(other, tok, str(slice_dir), retain_reference=reference_file, batch_size=8, **EVAL_KW)
    ref = json.loads(reference_file.read_text())
    want = stats.ks_2samp([r["truth_ratio"] for r in per_o["forget"]], [r["truth_ratio"] for r in ref["forget"]]).pvalue
    assert sum_o["forget_quality"] == pytest.approx(want) and want < 1.0


# --------------------------------------------------------------------------------------------
# bad input: clear errors before any model call (model=None proves it)
# --------------------------------------------------------------------------------------------


def test_reference_from_another_split_names_the_first_differing_question(tok, slice_dir, reference_file):
    first_forget05 = _read_rows("forget05_perturbed", 1)[0]["question"]
    with pytest.raises(ValueError, match="different forget questions") as err:
        evaluate_tofu(None, tok, str(slice_dir), forget_split="forget05", retain_reference=reference_file, **EVAL_KW)
    assert "question 0" in str(err.value) and first_forget05 in str(err.value)
    ref = json.loads(reference_file.read_text())
    ref["forget"][2]["question"] = "Who wrote this test?"
    with pytest.raises(ValueError, match="first difference at question 2") as err:
        evaluate_tofu(None, tok, str(slice_dir), retain_reference=ref, **EVAL_KW)
    assert "Who wrote this test?" in str(err.value)
    ref = json.loads(reference_file.read_text())
    ref["holdout"][1]["question"] = "Who held this out?"
    with pytest.raises(ValueError, match="different holdout questions .*first difference at question 1"):
        evaluate_tofu(None, tok, str(slice_dir), retain_reference=ref, **EVAL_KW)
    ref = json.loads(reference_file.read_text())
    ref["forget"] = ref["forget"][:1]
    with pytest.raises(ValueError, match="has only 1 forget questions"):
        evaluate_tofu(None, tok, str(slice_dir), retain_reference=ref, **EVAL_KW)
    with pytest.raises(ValueError, match="not a per-question file"):
        evaluate_tofu(None, tok, str(slice_dir), retain_reference={"summary": {}}, **EVAL_KW)


def test_missing_column_is_named_with_the_columns_found(tok, slice_dir, tmp_path):
    for name in SLICE_SPLITS:
        (tmp_path / f"{name}.json").write_text((slice_dir / f"{name}.json").read_text())
    rows = _read_rows("forget10_perturbed", 3)
    _write_rows(tmp_path, "forget10_perturbed", [{k: v for k, v in r.items() if k != "perturbed_answer"} for r in rows])
    with pytest.raises(ValueError) as err:
        evaluate_tofu(None, tok, str(tmp_path), **EVAL_KW)
    msg = str(err.value)
    assert "'forget10_perturbed'" in msg and "'perturbed_answer'" in msg
    assert "columns found: question, answer, paraphrased_answer, paraphrased_question" in msg
    (tmp_path / "forget10_perturbed.json").write_text("")
    with pytest.raises(ValueError, match="'forget10_perturbed'.* is empty"):
        evaluate_tofu(None, tok, str(tmp_path), **EVAL_KW)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"subsample": 0}, "subsample must be a positive integer"),
    ],
)
def test_bad_numbers_are_refused(tok, slice_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_tofu(None, tok, str(slice_dir), **{**EVAL_KW, **kwargs})


def test_tokenizer_without_pad_pads_with_eos_and_without_eos_is_refused(model, tok, slice_dir, base_eval):
    no_pad = copy.deepcopy(tok)
    no_pad.pad_token = None
    assert no_pad.pad_token_id is None
    per, summary = evaluate_tofu(model, no_pad, str(slice_dir), batch_size=8, subsample=3, **EVAL_KW)
    assert no_pad.pad_token is None  # not modified
    for a, b in zip(per["forget"], base_eval[0]["forget"][:3]):
        assert a["avg_nll"] == pytest.approx(b["avg_nll"], abs=1e-5)
        assert a["generation"] == b["generation"]
    bare = copy.deepcopy(no_pad)
    bare.eos_token = None
    with pytest.raises(ValueError, match=r"tokenizer.pad_token = tokenizer.eos_token"):
        evaluate_tofu(None, bare, str(slice_dir), **EVAL_KW)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def test_cli_writes_results_and_refuses_to_write_into_the_model(model, tok, slice_dir, tmp_path, capsys):
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    out = tmp_path / "eval"
    args = ["--model_name_or_path", str(model_dir), "--dataset_name", str(slice_dir), "--forget_split", "forget10",
            "--per_device_eval_batch_size", "4", "--max_new_tokens", "8", "--subsample", "4", "--disable_tqdm", "true",
            "--dtype", "float32"]
    assert main(args + ["--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "forget_quality" in printed and "n/a" in printed and "wall time:" in printed
    summary = json.loads((out / SUMMARY_FILE).read_text())
    per = json.loads((out / EVAL_FILE).read_text())
    assert set(summary) >= PUBLIC_KEYS and len(per["forget"]) == 4
    assert summary["forget_prob"] == pytest.approx(np.mean([r["prob"] for r in per["forget"]]))
    before = sorted(p.name for p in model_dir.iterdir())
    for bad in (model_dir, model_dir / "eval"):
        with pytest.raises(SystemExit):
            main(args + ["--output_dir", str(bad)])
        assert "the evaluation never writes into the model" in capsys.readouterr().err
    assert sorted(p.name for p in model_dir.iterdir()) == before


# --------------------------------------------------------------------------------------------
# callback
# --------------------------------------------------------------------------------------------


def _trainer(model, tok, slice_dir, out, callback, **config):
    from hf_unlearn.config import UnlearningConfig
    from hf_unlearn.trainer import UnlearningTrainer

    forget = datasets.Dataset.from_list(
        [{"question": r["question"], "answer": r["answer"]} for r in _read_rows("forget10_perturbed", 4)]
    )
    config = {"max_steps": 4, **config}
    args = UnlearningConfig(output_dir=str(out), unlearn_method="ga", per_device_train_batch_size=2,
                            learning_rate=1e-4, report_to="none", logging_steps=1, use_cpu=True, seed=0, **config)
    eval_dataset = None
    if args.eval_strategy != "no":  # Trainer refuses an eval strategy without an eval dataset
        eval_dataset = build_unlearning_dataset(tok, forget)
    trainer = UnlearningTrainer(model=copy.deepcopy(model), args=args, forget_dataset=forget, processing_class=tok,
                                eval_dataset=eval_dataset, callbacks=[callback])
    callback.attach(trainer)
    return trainer


def test_callback_logs_and_stops_under_its_rule(model, tok, slice_dir, reference_file, tmp_path):
    cb = ForgetQualityCallback(str(slice_dir), retain_reference=reference_file, subsample=4, batch_size=8,
                               max_new_tokens=8, target_forget_quality=0.0, min_model_utility=0.0)
    trainer = _trainer(model, tok, slice_dir, tmp_path / "run", cb, eval_strategy="steps", eval_steps=1,
                       save_strategy="steps", save_steps=1)
    trainer.train()
    assert trainer.state.global_step == 1
    history = json.loads((tmp_path / "run" / "tofu_history.json").read_text())
    assert len(history["history"]) == 1
    entry = history["history"][0]
    assert entry["step"] == 1 and set(entry["metrics"]) >= PUBLIC_KEYS
    assert history["best_step"] == 1
    assert history["best_checkpoint"] == str(tmp_path / "run" / "checkpoint-1")
    assert trainer.state.best_model_checkpoint is None  # Trainer's: no metric_for_best_model was set
    logged = [h for h in trainer.state.log_history if "tofu/forget_quality" in h]
    assert len(logged) == 1 and logged[0]["step"] == 1
    for key in ("tofu/model_utility", "tofu/forget_truth_ratio", "tofu/forget_rouge", "tofu/forget_prob",
                "tofu/mia_min_k_auc", "tofu/privleak"):
        assert key in logged[0]
    assert logged[0]["tofu/forget_quality"] == entry["metrics"]["forget_quality"]
    assert "eval_forget_loss" in logged[0]  # one evaluation: the unlearning losses and TOFU in one entry
    # The training-loss entries do not carry the TOFU metrics, nor the reverse.
    assert not any(k.startswith("tofu/") for h in trainer.state.log_history if "loss" in h for k in h)
    assert "forget_loss" not in logged[0] and "loss" not in logged[0]


def test_callback_with_unreachable_target_runs_every_step_on_its_own_schedule(model, tok, slice_dir,
                                                                              reference_file, tmp_path):
    history_path = tmp_path / "hist" / "h.json"
    cb = ForgetQualityCallback(str(slice_dir), retain_reference=reference_file, subsample=4, batch_size=8,
                               max_new_tokens=8, target_forget_quality=0.0, min_model_utility=1.0,
                               eval_steps=0.5, history_path=history_path)
    with pytest.warns(FutureWarning, match="deprecated"):  # the callback's own schedule becomes the Trainer's
        trainer = _trainer(model, tok, slice_dir, tmp_path / "run", cb)  # args.eval_strategy == "no"
    trainer.train()
    assert trainer.state.global_step == 4
    history = json.loads(history_path.read_text())
    assert [h["step"] for h in history["history"]] == [2, 4]  # 0.5 of max_steps=4 -> every 2 steps
    assert history["best_checkpoint"] is None and trainer.state.best_model_checkpoint is None  # nothing saved
    assert history["best_step"] is None  # no evaluation reaches the utility floor of 1 (targets stay in [0, 1])
    assert len([h for h in trainer.state.log_history if "tofu/forget_quality" in h]) == 2
    assert not (tmp_path / "run" / "tofu_history.json").exists()


def test_callback_epoch_schedule_without_reference_logs_but_never_stops(model, tok, slice_dir, tmp_path):
    cb = ForgetQualityCallback(str(slice_dir), subsample=2, batch_size=8, max_new_tokens=4)
    trainer = _trainer(model, tok, slice_dir, tmp_path / "run", cb, max_steps=-1, num_train_epochs=2,
                       eval_strategy="epoch")
    trainer.train()
    assert trainer.state.global_step == 4  # 4 forget rows, batch 2, 2 epochs
    history = json.loads((tmp_path / "run" / "tofu_history.json").read_text())
    assert [h["step"] for h in history["history"]] == [2, 4]
    assert [h["epoch"] for h in history["history"]] == [1.0, 2.0]
    assert history["history"][0]["metrics"]["forget_quality"] is None
    assert history["best_step"] is None and history["rule"] is None  # no reference: no best by forget quality
    logged = [h for h in trainer.state.log_history if "tofu/model_utility" in h]
    assert len(logged) == 2 and "tofu/forget_quality" not in logged[0]  # None values are not logged


def test_callback_arguments_are_checked(slice_dir, reference_file):
    with pytest.raises(ValueError, match="needs both target_forget_quality and min_model_utility"):
        ForgetQualityCallback(str(slice_dir), retain_reference=reference_file, target_forget_quality=0.05)
    with pytest.raises(ValueError, match="needs both"):
        ForgetQualityCallback(str(slice_dir), retain_reference=reference_file, min_model_utility=0.5)
    with pytest.raises(ValueError, match="needs retain_reference"):
        ForgetQualityCallback(str(slice_dir), target_forget_quality=0.05, min_model_utility=0.5)
    with pytest.raises(FileNotFoundError):
        ForgetQualityCallback(str(slice_dir), retain_reference=str(reference_file) + ".missing")


# --------------------------------------------------------------------------------------------
# several processes
# --------------------------------------------------------------------------------------------

_TWO_RANKS = r'''
import json, multiprocessing as mp, os, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu
from hf_unlearn.eval.runner import write_results

model_dir, data_dir, work = sys.argv[1], sys.argv[2], sys.argv[3]
model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
tok = AutoTokenizer.from_pretrained(model_dir)

def run(rank):
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method="file://" + os.path.join(work, "store"),
                                         rank=rank, world_size=2)
    per, summary = evaluate_tofu(model, tok, data_dir, batch_size=3, subsample=7, max_new_tokens=8,
                                 show_progress=False)
    write_results(os.path.join(work, f"written-by-{rank}"), per, summary)
    with open(os.path.join(work, f"rank{rank}.json"), "w") as fh:
        json.dump({"summary": summary, "per_sample": per}, fh)
    torch.distributed.destroy_process_group()

procs = [mp.get_context("fork").Process(target=run, args=(r,)) for r in range(2)]
for p in procs: p.start()
for p in procs: p.join(120)
sys.exit(max(abs(p.exitcode if p.exitcode is not None else 1) for p in procs))
'''


def test_two_processes_give_the_one_process_numbers(model, tok, slice_dir, tmp_path):
    import subprocess
    import sys

    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    script = tmp_path / "two_ranks.py"
    script.write_text(_TWO_RANKS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, str(script), str(model_dir), str(slice_dir), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]  # every rank returns the same values
    per1, one = evaluate_tofu(model, tok, str(slice_dir), batch_size=3, subsample=7, **EVAL_KW)
    for key in PUBLIC_KEYS:  # 7 questions over 2 ranks: uneven shards, one padded
        if one[key] is None:
            assert ranks[0]["summary"][key] is None
        else:
            assert abs(ranks[0]["summary"][key] - one[key]) <= 1e-5, key
    for split in ("forget", "retain", "real_authors", "world_facts", "holdout"):
        got = ranks[0]["per_sample"][split]
        assert [r["question"] for r in got] == [r["question"] for r in per1[split]]  # original order
        assert [r["avg_nll"] for r in got] == pytest.approx([r["avg_nll"] for r in per1[split]], abs=1e-5)
        if split != "holdout":
            assert [r["generation"] for r in got] == [r["generation"] for r in per1[split]]
    assert (tmp_path / "written-by-0" / EVAL_FILE).is_file()
    assert not (tmp_path / "written-by-1").exists()  # only rank 0 writes
