"""A benchmark lives in one place: a toy benchmark registered here, from outside the package, with its own
evaluate / check / options / card rows / plot metrics / sequential requests, runs in the during-training callback,
the model card, the plots, a sequential run and examples/run_tofu.py --benchmark toyqa, while no package or
script file names it (the number of non-test files one must touch to add a benchmark: 0)."""

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pytest
import torch

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.eval import benchmarks as B
from hf_unlearn.sequential import SequentialRequests

REPO = Path(__file__).resolve().parents[1]
NAME = "toyqa"
FORGET_LABEL = "Toy forget NLL (nats, higher = more forgotten)"
KEEP_LABEL = "Toy keep probability (utility)"


def _rows(dataset_name, split, subsample=None):
    path = Path(dataset_name) / f"{split}.json"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[:subsample] if subsample else rows


def _nll(model, tokenizer, rows) -> list[float]:
    """Mean token NLL of each "question answer" text under `model`."""
    device = next(model.parameters()).device
    losses = []
    with torch.no_grad():
        for row in rows:
            ids = tokenizer(f"{row['question']} {row['answer']}", return_tensors="pt").input_ids.to(device)
            losses.append(float(model(input_ids=ids, labels=ids).loss))
    return losses


@dataclass
class ToyOptions:
    dataset_name: str = field(default=None, metadata={"help": "A folder of <split>.json question/answer files."})
    forget_split: str = field(default="forget10", metadata={"help": "The split whose NLL should rise."})
    keep_split: str = field(default="retain90", metadata={"help": "The split whose probability should hold."})
    subsample: int = field(default=None, metadata={"help": "First N rows of each split."})


def toy_check(dataset_name=None, forget_split="forget10", keep_split="retain90", subsample=None):
    for split in (forget_split, keep_split):
        if dataset_name is None or not (Path(dataset_name) / f"{split}.json").is_file():
            raise FileNotFoundError(f"toyqa needs {split}.json in --dataset_name ({dataset_name}).")
    return dict(dataset_name=dataset_name, forget_split=forget_split, keep_split=keep_split, subsample=subsample)


def toy_evaluate(model, tokenizer, *, batch_size, show_progress, template=None, dataset_name, forget_split="forget10",
                 keep_split="retain90", subsample=None):
    forget = _nll(model, tokenizer, _rows(dataset_name, forget_split, subsample))
    keep = _nll(model, tokenizer, _rows(dataset_name, keep_split, subsample))
    summary = {"toy_forget_nll": sum(forget) / len(forget), "toy_keep_prob": math.exp(-sum(keep) / len(keep))}
    per_sample = {"format": "toyqa-eval", "forget_split": forget_split, "forget_nll": forget, "keep_nll": keep}
    return per_sample, summary


class ToyRequests(SequentialRequests):
    """Each request forgets one split file; evaluated on it (the keep split: utility)."""

    name = NAME
    key_columns = ("question", "answer")
    card_metrics = ("toy_forget_nll", "toy_keep_prob")

    def __init__(self, dataset_name, keep_split="retain90", subsample=None):
        self.dataset_name, self.keep_split, self.subsample = dataset_name, keep_split, subsample

    def load(self, split, role="forget"):
        return datasets.Dataset.from_list(_rows(self.dataset_name, split))

    def default_retain(self, eval_split):
        return self.keep_split

    def check_evaluation(self, eval_split):
        toy_check(self.dataset_name, eval_split, self.keep_split)

    def check_reference(self, reference, eval_split, number):
        if json.loads(Path(reference).read_text()).get("format") != "toyqa-eval":
            raise ValueError(f"--retain_references entry {number} ({reference}) is not a toyqa evaluation.")

    def evaluate(self, model, tokenizer, eval_split, reference, template=None):
        return toy_evaluate(model, tokenizer, batch_size=1, show_progress=False, dataset_name=self.dataset_name,
                            forget_split=eval_split, keep_split=self.keep_split, subsample=self.subsample)


@pytest.fixture(scope="module")
def toy():
    bench = B.register_benchmark(B.Benchmark(
        name=NAME, description="Toy: NLL of the forget split, probability of the keep split.", evaluate=toy_evaluate,
        check=toy_check, options=ToyOptions, eval_file="toyqa_eval.json", summary_file="toyqa_summary.json",
        history_file="toyqa_history.json", summary_keys=("toy_forget_nll", "toy_keep_prob"),
        forget_metric="toy_forget_nll", utility_metric="toy_keep_prob", metric_range=(0.0, 1e6),
        card_rows=(("toy_forget_nll", FORGET_LABEL), ("toy_keep_prob", KEEP_LABEL)),
        plot_metrics=("toy_forget_nll", "toy_keep_prob"), log_scale=("toy_forget_nll",), sequential=ToyRequests))
    yield bench
    del B._REGISTRY[NAME]


@pytest.fixture
def data(tmp_path, synthetic_splits):
    """The synthetic TOFU folder (so run_tofu.py takes it) plus two disjoint toy request splits."""
    from hf_unlearn.offline.synthetic import write_tofu

    splits = dict(synthetic_splits)
    splits["toy_a"], splits["toy_b"] = splits["forget10"][:5], splits["forget10"][5:]
    return write_tofu(tmp_path / "data", splits)


def _row(label, before, after):
    return f"| {label} | {before:.4g} | {after:.4g} |"


def test_no_package_or_script_file_names_the_toy(toy):
    """Adding the toy touched no non-test file: nothing outside tests/ names it."""
    named = [p for folder in ("hf_unlearn", "examples", "docs") for p in (REPO / folder).rglob("*")
             if p.is_file() and p.suffix in (".py", ".md", ".yaml") and NAME in p.read_text(errors="ignore")]
    assert named == []
    from hf_unlearn import hub

    assert ("toy_forget_nll", FORGET_LABEL) in hub.RESULT_ROWS  # the derived table sees it
    assert B.get_benchmark("tofu").card_rows[0][0] == "forget_quality"
    with pytest.raises(ValueError, match=r"card or plot metric\(s\) \['toy_typo'\] not in summary_keys"):
        B.register_benchmark(dataclasses.replace(toy, name="toy2", plot_metrics=("toy_typo",)))


def test_callback_card_and_plot(toy, data, tmp_path, make_model, tokenizer):
    from hf_unlearn.eval.callback import ForgetQualityCallback
    from hf_unlearn.hub import unlearning_model_card
    from hf_unlearn.reporting import plot_unlearning

    model = make_model()
    _, before = toy_evaluate(model, tokenizer, batch_size=1, show_progress=False, dataset_name=str(data), subsample=3)
    args = UnlearningConfig(output_dir=str(tmp_path / "run"), unlearn_method="ga", per_device_train_batch_size=2,
                            learning_rate=1e-2, report_to="none", logging_steps=1, disable_tqdm=True, max_steps=2,
                            eval_strategy="steps", eval_steps=1)
    evaluation = ForgetQualityCallback(benchmark=NAME, dataset_name=str(data), subsample=3)
    trainer = UnlearningTrainer(model=model, args=args, processing_class=tokenizer, callbacks=[evaluation],
                                forget_dataset=datasets.Dataset.from_list(_rows(data, "forget10")))
    trainer.train()
    logged = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert [h["step"] for h in logged] == [1, 2] and all(f"{NAME}/toy_forget_nll" in h for h in logged)
    history = json.loads((tmp_path / "run" / "toyqa_history.json").read_text())
    assert [h["metrics"]["toy_forget_nll"] for h in history["history"]] == [h[f"{NAME}/toy_forget_nll"] for h in logged]

    metrics = trainer.evaluate()  # the benchmark inside UnlearningTrainer.evaluate, its value recomputable
    _, after = toy_evaluate(trainer.model, tokenizer, batch_size=1, show_progress=False, dataset_name=str(data),
                            subsample=3)
    assert metrics[f"eval_{NAME}/toy_forget_nll"] == pytest.approx(after["toy_forget_nll"])
    assert after["toy_forget_nll"] > before["toy_forget_nll"]  # gradient ascent raised it

    trainer.create_model_card(results=after, results_before=before)  # the trainer's benchmark gives the rows
    card = (tmp_path / "run" / "README.md").read_text()
    assert "## Results (TOYQA evaluation)" in card
    assert _row(FORGET_LABEL, before["toy_forget_nll"], after["toy_forget_nll"]) in card
    assert _row(KEEP_LABEL, before["toy_keep_prob"], after["toy_keep_prob"]) in card
    assert "Forget quality" not in card  # no other benchmark's rows
    card = str(unlearning_model_card(model_name="m", base_model=None, method="ga", optimizer="adamw",
                                     dataset_name=str(data), forget_split="forget10", retain_split=None, recipe={},
                                     results=after, plot_file="p.png", benchmark=NAME))
    assert "## Toy forget nll vs toy keep prob during training" in card

    plot = plot_unlearning([{"step": h["step"], **h["metrics"]} for h in history["history"]], tmp_path / "p.png",
                           before, after, benchmark=NAME)
    assert plot.stat().st_size > 5000


def test_sequential_run(toy, data, tmp_path, make_model, tokenizer):
    from transformers import AutoModelForCausalLM

    from hf_unlearn.sequential import PLOT_FILE, plan_requests, run_requests, sequential_model_card, sequential_requests

    requests = sequential_requests(NAME, str(data), subsample=3)
    assert isinstance(requests, ToyRequests)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "hf-unlearn/tofu-eval"}))
    with pytest.raises(ValueError, match="entry 1 .* is not a toyqa evaluation"):
        plan_requests(requests, ["toy_a"], [str(tmp_path / "bad.json")])
    with pytest.raises(ValueError, match="disjoint needs requests that share no row"):  # the base default mode
        plan_requests(requests, ["toy_a", "forget10"])
    with pytest.raises(ValueError, match="'wmdp' has no sequential mode"):
        sequential_requests("wmdp", str(data))
    plan = plan_requests(requests, ["toy_a", "toy_b"])
    assert [len(r.forget) for r in plan] == [5, 5] and [r.retain_split for r in plan] == ["retain90"] * 2

    top = tmp_path / "seq"
    args = UnlearningConfig(output_dir=str(top), unlearn_method="grad_diff", per_device_train_batch_size=2,
                            learning_rate=1e-2, report_to="none", logging_steps=1, disable_tqdm=True, max_steps=2)

    def load_model(chain):
        return AutoModelForCausalLM.from_pretrained(chain[-1]) if chain else make_model()

    def make_trainer(model, request_args, request):
        return UnlearningTrainer(model=model, args=request_args, processing_class=tokenizer, forget_dataset=request.forget,
                                 retain_dataset=requests.load(request.retain_split, "retain"))

    def card(done, before, folder):
        sequential_model_card(done, before, model_name=folder.name, base_model=None, method="grad_diff",
                              optimizer="adamw", dataset_name=str(data), recipe={}, metrics=requests.card_metrics,
                              plot_file=PLOT_FILE if folder == top else None  # benchmark: from the records
                              ).save(str(folder / "README.md"))

    result = run_requests(plan, requests, load_model=load_model, tokenizer=tokenizer, args=args,
                          make_trainer=make_trainer, card=card)
    assert result["benchmark"] == NAME and result["finished"] == 2
    for k, request in enumerate(plan):  # the toy's metric per request, as its own result files say, recomputable
        summary = json.loads((top / request.folder / "toyqa_summary.json").read_text())
        assert result["metrics"]["toy_forget_nll"][k] == summary["toy_forget_nll"]
        model = AutoModelForCausalLM.from_pretrained(top / request.folder)
        assert summary["toy_forget_nll"] == pytest.approx(
            sum(_nll(model, tokenizer, _rows(data, request.split, 3))) / 3)
    assert (top / PLOT_FILE).stat().st_size > 5000
    text = (top / "README.md").read_text()
    before, after = result["before"], json.loads((top / plan[-1].folder / "toyqa_summary.json").read_text())
    assert "## Results (TOYQA evaluation)" in text and "Forget quality" not in text
    assert _row(FORGET_LABEL, before["toy_forget_nll"], after["toy_forget_nll"]) in text
    assert f"| 2 | toy_b | 5 | toy_b | {after['toy_forget_nll']:.4g} | {after['toy_keep_prob']:.4g} |" in text


def test_run_tofu_takes_the_toy_by_name(toy, data, tmp_path, make_model, tokenizer):
    """--benchmark choices come from the registry: run_tofu.py runs the toy as it runs TOFU."""
    sys.path.insert(0, str(REPO / "examples"))
    import run_tofu

    model_dir = tmp_path / "target"
    make_model().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "unlearned"
    after = run_tofu.main([
        "--benchmark", NAME, "--model_name_or_path", str(model_dir), "--dataset_name", str(data),
        "--forget_split", "forget10", "--output_dir", str(out), "--unlearn_method", "ga", "--unlearn_optimizer",
        "adamw", "--max_steps", "2", "--per_device_train_batch_size", "4", "--learning_rate", "1e-2",
        "--eval_strategy", "steps", "--eval_steps", "1", "--eval_subsample", "3", "--final_eval_subsample", "3",
        "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true"])
    summary = json.loads((out / "toyqa_summary.json").read_text())
    assert summary == after and set(summary) == {"toy_forget_nll", "toy_keep_prob"}
    assert len(json.loads((out / "toyqa_history.json").read_text())["history"]) == 2
    before = json.loads((out / "run_info.json").read_text())["before"]
    card = (out / "README.md").read_text()
    assert "## Results (TOYQA evaluation)" in card
    assert _row(FORGET_LABEL, before["toy_forget_nll"], after["toy_forget_nll"]) in card
