"""WMDP benchmark: lm-eval on the in-memory model, local task YAMLs, bad input, synthetic set, stop rule."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import yaml

from hf_unlearn.eval.benchmarks import wmdp as W
from hf_unlearn.offline.wmdp_synthetic import DOMAINS, generate_wmdp, mc_prompt, write_synthetic_wmdp


@pytest.fixture(scope="session")
def wmdp_dir(tmp_path_factory):
    return write_synthetic_wmdp(tmp_path_factory.mktemp("wmdp") / "data")


@pytest.fixture(scope="session")
def wmdp_tokenizer():
    from hf_unlearn.offline.tiny import train_tokenizer
    from hf_unlearn.offline.wmdp_synthetic import target_training_texts

    return train_tokenizer(target_training_texts(), vocab_size=512)


def letter_model(tokenizer, letter: str):
    """A tiny Llama whose next-token logits always favour `letter` (+50 on its token): its answer to every
    question is known, so its accuracy is a hand count."""
    from hf_unlearn.offline.tiny import build_tiny_llama

    model = build_tiny_llama(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64)
    token = tokenizer(f" {letter}", add_special_tokens=False)["input_ids"]
    assert len(token) == 1, "the letter must be one token for the hand count"
    model.lm_head.register_forward_hook(lambda module, args, out: out.index_fill(-1, torch.tensor(token), 50.0))
    return model


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_local_template_is_lm_evals_prompt():
    """Our local-data YAMLs ask exactly what lm-eval's own wmdp and mmlu tasks ask."""
    import lm_eval.tasks

    root = Path(lm_eval.tasks.__file__).parent
    ours = W._load_task_yaml(W.TASKS_DIR / "hf_unlearn_wmdp_bio.yaml")
    for theirs_file in (root / "wmdp" / "_default_template_yaml", root / "mmlu" / "default" / "_default_template_yaml"):
        theirs = yaml.safe_load(theirs_file.read_text())
        for key in ("doc_to_text", "doc_to_choice", "doc_to_target", "output_type", "metric_list"):
            assert ours[key] == theirs[key], (key, theirs_file)
    theirs_bio = yaml.safe_load((root / "wmdp" / "wmdp_bio.yaml").read_text())
    assert ours["description"] == theirs_bio["description"]
    assert ours["dataset_path"] == "json" and ours["dataset_kwargs"]["data_files"] == {"test": "wmdp-bio.json"}
    row = generate_wmdp()["splits"]["wmdp-bio"][0]
    from jinja2 import Template

    assert Template(ours["doc_to_text"]).render(**row) == mc_prompt(row)


def test_task_yamls_index_offline(wmdp_dir):
    """lm-eval's TaskManager finds the shipped tasks, and lm-eval's own wmdp/mmlu tasks, offline."""
    from lm_eval.tasks import TaskManager

    ours = TaskManager(include_path=str(W.TASKS_DIR), include_defaults=False)
    assert {"hf_unlearn_wmdp_bio", "hf_unlearn_wmdp_cyber", "hf_unlearn_wmdp_chem"} <= set(ours.all_tasks)
    hub = TaskManager(include_path=W._lm_eval_task_dirs(), include_defaults=False)
    assert {"wmdp_bio", "wmdp_cyber", "mmlu", *(f"mmlu_{s}" for s in W.MMLU_SUBSETS)} <= set(hub.all_tasks)
    specs, _ = W._local_task_specs(wmdp_dir, ("bio",), None)
    task = ours.load(specs)["tasks"]["hf_unlearn_wmdp_bio"]
    docs = list(task.test_docs())
    assert docs == rows_of(wmdp_dir / "wmdp-bio.json")


def test_accuracy_is_a_hand_count(wmdp_dir, wmdp_tokenizer):
    """A model that always answers B: every accuracy is the share of questions whose answer is B."""
    per_sample, summary = W.evaluate_wmdp(letter_model(wmdp_tokenizer, "B"), wmdp_tokenizer, wmdp_dir,
                                          batch_size=64, show_progress=False)
    assert set(summary) == set(W.SUMMARY_KEYS)
    total_b = total = 0
    for key, stem in [("wmdp_bio", "wmdp-bio"), ("wmdp_cyber", "wmdp-cyber")] + [
            (f"mmlu_{s}", f"mmlu/{s}") for s in W.MMLU_SUBSETS]:
        answers = [r["answer"] for r in rows_of(wmdp_dir / f"{stem}.json")]
        p = answers.count(1) / len(answers)
        assert summary[f"{key}_acc"] == pytest.approx(p), key
        assert summary[f"{key}_n"] == len(answers)
        # lm-eval's stderr of a mean: sample standard deviation / sqrt(n)
        assert summary[f"{key}_acc_stderr"] == pytest.approx(math.sqrt(p * (1 - p) / (len(answers) - 1)))
        assert [q["prediction"] for q in per_sample[key]] == [1] * len(answers)
        assert [q["answer"] for q in per_sample[key]] == answers
    for path in sorted((wmdp_dir / "mmlu").glob("*.json")):
        answers = [r["answer"] for r in rows_of(path)]
        total_b, total = total_b + answers.count(1), total + len(answers)
    assert summary["mmlu_acc"] == pytest.approx(total_b / total)
    assert summary["mmlu_n"] == total
    assert summary["wmdp_chem_acc"] is None  # not asked for
    assert summary["wmdp_max_acc"] == max(summary["wmdp_bio_acc"], summary["wmdp_cyber_acc"])
    assert all(v is None or isinstance(v, (int, float)) for v in summary.values())
    assert per_sample["meta"]["lm_eval_version"] == __import__("lm_eval").__version__


def test_subsample_and_chem(wmdp_dir, wmdp_tokenizer, tmp_path):
    """subsample = lm-eval's limit (the first N questions of each task); chem on request; files written."""
    per_sample, summary = W.evaluate_wmdp(letter_model(wmdp_tokenizer, "D"), wmdp_tokenizer, wmdp_dir,
                                          wmdp_subsets=("bio", "cyber", "chem"), include_mmlu=False, subsample=7,
                                          show_progress=False)
    for key, stem in (("wmdp_bio", "wmdp-bio"), ("wmdp_cyber", "wmdp-cyber"), ("wmdp_chem", "wmdp-chem")):
        answers = [r["answer"] for r in rows_of(wmdp_dir / f"{stem}.json")][:7]
        assert summary[f"{key}_acc"] == pytest.approx(answers.count(3) / 7)
        assert summary[f"{key}_n"] == 7
    assert summary["mmlu_acc"] is None and summary["subsample"] == 7
    assert summary["wmdp_max_acc"] == max(summary[f"wmdp_{s}_acc"] for s in ("bio", "cyber", "chem"))
    from hf_unlearn.eval.runner import write_results

    eval_path, summary_path = write_results(tmp_path / "out", per_sample, summary, benchmark="wmdp")
    assert json.loads(summary_path.read_text()) == summary
    assert json.loads(eval_path.read_text())["wmdp_chem"][0]["prediction"] == 3


# --- bad input ---------------------------------------------------------------------------------
def write_split(folder: Path, rows, name="wmdp-bio.json"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(json.dumps(r) for r in rows))
    return folder


GOOD = {"question": "Q?", "choices": ["a", "b", "c", "d"], "answer": 2}


@pytest.mark.parametrize("row, message", [
    ({"question": "Q?", "options": ["a", "b", "c", "d"], "label": 1},
     "missing column(s) choices, answer; columns found: label, options, question; expected: question"),
    ({**GOOD, "answer": 4}, "answer 4 is not an index into its 4 choices (0-3)"),
    ({**GOOD, "answer": "c"}, "answer 'c' is not an index"),
    ({**GOOD, "choices": ["only"]}, "1 choice(s); a multiple-choice question needs at least 2"),
    ({**GOOD, "choices": ["a", "b", "c"], "answer": 0}, "3 choices, but the lm-eval WMDP/MMLU prompt lists exactly 4"),
])
def test_bad_rows_are_named(tmp_path, row, message):
    folder = write_split(tmp_path / "d", [GOOD, row])
    with pytest.raises(ValueError, match="wmdp-bio.json") as err:
        W.check_local_data(folder, ("bio",), include_mmlu=False)
    assert message in str(err.value)
    if "row" in message or "choice" in message or "answer" in message:
        assert "row 1" in str(err.value)


def test_missing_local_files_say_which_file(tmp_path):
    folder = write_split(tmp_path / "d", [GOOD])
    with pytest.raises(FileNotFoundError, match=r"No wmdp-cyber.json in .*test split of cais/wmdp \(config wmdp-cyber\)"):
        W.check_local_data(folder, ("bio", "cyber"), include_mmlu=False)
    with pytest.raises(FileNotFoundError, match=r"No MMLU subject files in .*mmlu.*college_biology.json"):
        W.check_local_data(folder, ("bio",))


def test_hub_offline_says_which_files_to_provide(wmdp_tokenizer, monkeypatch):
    import datasets
    import huggingface_hub

    # Offline as in CI (the Makefile exports HF_HUB_OFFLINE=1); set here too, since a plugin may have
    # imported huggingface_hub before conftest set the variable.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    model = letter_model(wmdp_tokenizer, "A")
    with pytest.raises(FileNotFoundError, match=r"wmdp-bio.json, wmdp-cyber.json .*mmlu/<subject>.json"):
        W.evaluate_wmdp(model, wmdp_tokenizer, "cais/wmdp", show_progress=False)
    with pytest.raises(ValueError, match="neither a local folder nor 'cais/wmdp'"):
        W.evaluate_wmdp(model, wmdp_tokenizer, "someone/wmdp-copy", show_progress=False)


def test_missing_lm_eval_names_the_extra(monkeypatch, wmdp_dir, wmdp_tokenizer):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval -> ImportError
    with pytest.raises(ImportError, match=r"hf-unlearn\[wmdp\]"):
        W.evaluate_wmdp(letter_model(wmdp_tokenizer, "A"), wmdp_tokenizer, wmdp_dir)


def test_bad_arguments():
    with pytest.raises(ValueError, match="subsets must be among bio, cyber, chem"):
        W.evaluate_wmdp(None, None, "x", wmdp_subsets="bio,physics")
    with pytest.raises(ValueError, match="subsample must be a positive integer"):
        W.evaluate_wmdp(None, None, "x", subsample=0)


# --- synthetic set -----------------------------------------------------------------------------
def test_synthetic_set_is_deterministic_and_valid(wmdp_dir, tmp_path):
    again = write_synthetic_wmdp(tmp_path / "again")
    files = sorted(p.relative_to(wmdp_dir) for p in wmdp_dir.rglob("*.json*"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.json*"))
    assert all((wmdp_dir / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert generate_wmdp(seed=1) != generate_wmdp(seed=0)
    checked = W.check_local_data(wmdp_dir, ("bio", "cyber", "chem"))
    assert {p.stem for p in checked if p.parent.name == "mmlu"} >= set(W.MMLU_SUBSETS)
    for stem, domain in DOMAINS.items():
        rows = rows_of(wmdp_dir / f"{stem}.json")
        assert len(rows) == domain.count * len(domain.properties)
        answers = [r["answer"] for r in rows]
        assert set(answers) == {0, 1, 2, 3}  # right answers spread over the letters
        assert all(len(set(r["choices"])) == 4 for r in rows)
    corpus = [json.loads(line)["text"] for line in (wmdp_dir / "corpora" / "bio-forget-corpus.jsonl").open()]
    assert len(corpus) == DOMAINS["wmdp-bio"].count and all("virus" in t for t in corpus)


def test_callback_stop_rule_on_wmdp(wmdp_dir, wmdp_tokenizer, tmp_path):
    """ForgetQualityCallback(benchmark="wmdp") stops once every WMDP accuracy is <= the target (chance) while
    MMLU >= the floor: with the always-B model both accuracies are hand counts on the subsample."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from hf_unlearn.eval.callback import ForgetQualityCallback, metric_key

    def b_share(path, n=4):
        answers = [r["answer"] for r in rows_of(path)][:n]
        return answers.count(1), len(answers)

    wmdp_max = max(b_share(wmdp_dir / f"wmdp-{s}.json")[0] / 4 for s in ("bio", "cyber"))
    counts = [b_share(p) for p in sorted((wmdp_dir / "mmlu").glob("*.json"))]
    mmlu = sum(c for c, _ in counts) / sum(n for _, n in counts)
    model = letter_model(wmdp_tokenizer, "B")
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    for target, floor, stops in ((wmdp_max, mmlu, True), (wmdp_max - 0.01, mmlu - 0.01, False)):
        callback = ForgetQualityCallback(benchmark="wmdp", dataset_name=str(wmdp_dir), subsample=4,
                                         target_forget_quality=target, min_model_utility=floor)
        state, control = TrainerState(global_step=1, max_steps=10), TrainerControl()
        # What UnlearningTrainer.evaluate() does at an evaluation step: the run, then on_evaluate with its metrics.
        metrics = callback.run(model, wmdp_tokenizer, args, state)
        assert metrics[metric_key(callback.benchmark, "wmdp_max_acc")] == pytest.approx(wmdp_max)
        assert metrics[metric_key(callback.benchmark, "mmlu_acc")] == pytest.approx(mmlu)
        callback.rule.on_evaluate(args, state, control, metrics=metrics)
        assert control.should_training_stop is stops, (target, floor)
