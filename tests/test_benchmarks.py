"""The evaluation layer's registry: TOFU is one entry; the callback, the CLI and run_tofu take any entry by name."""

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hf_unlearn.eval import benchmarks as B
from hf_unlearn.eval.benchmarks.tofu import EVAL_FILE, HISTORY_FILE, SUMMARY_FILE, SUMMARY_KEYS, TOFU, evaluate_tofu

REPO = Path(__file__).resolve().parents[1]


def test_tofu_is_the_default_registered_entry_and_none_means_no_benchmark():
    assert B.DEFAULT_BENCHMARK == "tofu" and B.get_benchmark("tofu") is TOFU and "tofu" in B.benchmark_names()
    assert (TOFU.eval_file, TOFU.summary_file, TOFU.history_file) == (EVAL_FILE, SUMMARY_FILE, HISTORY_FILE) == (
        "tofu_eval.json", "tofu_summary.json", "tofu_history.json")
    assert TOFU.summary_keys == SUMMARY_KEYS and TOFU.evaluate is evaluate_tofu
    assert (TOFU.forget_metric, TOFU.utility_metric) == ("forget_quality", "model_utility")
    assert B.get_benchmark("none") is None
    with pytest.raises(ValueError, match=r"Unknown benchmark 'tofoo': choose one of tofu.*'none'"):
        B.get_benchmark("tofoo")
    with pytest.raises(ValueError, match="already registered"):
        B.register_benchmark(TOFU)
    with pytest.raises(ValueError, match=r"headline metric\(s\) \['accuracy'\] not in summary_keys"):
        B.register_benchmark(dataclasses.replace(TOFU, name="other", forget_metric="accuracy"))


def test_tofu_check_fails_without_a_model(tmp_path):
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        TOFU.check(dataset_name=str(tmp_path), max_new_tokens=0)
    with pytest.raises(FileNotFoundError):
        TOFU.check(dataset_name=str(tmp_path))  # no splits there


def test_script_arguments_take_a_benchmark_name():
    from hf_unlearn.config import UnlearningScriptArguments

    assert UnlearningScriptArguments().benchmark == "tofu"
    assert UnlearningScriptArguments(benchmark="none").benchmark == "none"
    with pytest.raises(ValueError, match="Unknown benchmark 'wdmp'"):
        UnlearningScriptArguments(benchmark="wdmp")


# --- a second benchmark, registered for these tests only: the core must take it as it takes TOFU ---------
@dataclass
class ToyOptions:
    level: float = field(default=1.0, metadata={"help": "Scale of the toy score."})


def _toy_check(level=1.0):
    if level <= 0:
        raise ValueError(f"--level must be > 0, got {level}.")
    return {"level": level}


def _toy_evaluate(model, tokenizer, *, batch_size, show_progress, template=None, level):
    _toy_evaluate.calls += 1
    summary = {"leak": level / _toy_evaluate.calls, "utility": 1.0}  # falls with every evaluation
    return {"calls": _toy_evaluate.calls, "batch_size": batch_size}, summary


@pytest.fixture
def toy():
    bench = B.register_benchmark(B.Benchmark(
        name="toy", description="A toy.", evaluate=_toy_evaluate, check=_toy_check, options=ToyOptions,
        eval_file="toy_eval.json", summary_file="toy_summary.json", history_file="toy_history.json",
        summary_keys=("leak", "utility"), forget_metric="leak", utility_metric="utility",
        forget_metric_higher_is_better=False))
    _toy_evaluate.calls = 0
    yield bench
    del B._REGISTRY["toy"]


def test_callback_runs_any_benchmark_and_stops_on_its_headline(toy, tmp_path, tokenizer, make_model, forget_retain):
    from hf_unlearn import UnlearningConfig, UnlearningTrainer
    from hf_unlearn.eval.callback import ForgetQualityCallback

    with pytest.raises(ValueError, match="--level must be > 0"):
        ForgetQualityCallback(benchmark="toy", level=0)
    callback = ForgetQualityCallback(benchmark="toy", level=1.0, target_forget_quality=0.4, min_model_utility=0.5,
                                     eval_steps=1)
    args = UnlearningConfig(output_dir=str(tmp_path / "run"), unlearn_method="ga", per_device_train_batch_size=2,
                            max_steps=6, learning_rate=1e-4, report_to="none", logging_steps=1, disable_tqdm=True)
    trainer = UnlearningTrainer(model=make_model(), args=args, forget_dataset=forget_retain[0],
                                processing_class=tokenizer, callbacks=[callback])
    callback.attach(trainer)
    trainer.train()
    # leak = 1, 1/2, 1/3: lower is better, so the rule (leak <= 0.4, utility >= 0.5) is met at the third evaluation.
    assert trainer.state.global_step == 3
    history = json.loads((tmp_path / "run" / "toy_history.json").read_text())
    assert history["level"] == 1.0 and [h["step"] for h in history["history"]] == [1, 2, 3]
    assert history["best_step"] == 3 and history["best_metrics"]["leak"] == pytest.approx(1 / 3)
    logged = [h for h in trainer.state.log_history if "toy/leak" in h]
    assert [h["toy/leak"] for h in logged] == pytest.approx([1, 1 / 2, 1 / 3])
    assert not (tmp_path / "run" / "tofu_history.json").exists()


def test_cli_takes_the_benchmark_by_name_with_its_own_flags(toy, tmp_path, tokenizer, make_model, capsys):
    from hf_unlearn.eval.__main__ import main

    model_dir = tmp_path / "model"
    make_model().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "eval"
    flags = ["--benchmark", "toy", "--model_name_or_path", str(model_dir), "--output_dir", str(out),
             "--per_device_eval_batch_size", "3"]
    assert main(flags + ["--level", "2"]) == 0
    assert json.loads((out / "toy_summary.json").read_text()) == {"leak": 2.0, "utility": 1.0}
    assert json.loads((out / "toy_eval.json").read_text()) == {"calls": 1, "batch_size": 3}
    for bad, message in ((["--level", "-1"], "--level must be > 0"), (["--forget_split", "forget10"], "forget_split")):
        with pytest.raises(SystemExit):  # checked before the model is loaded; TOFU's flags are not toy's
            main(flags + bad)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--benchmark", "nope", "--model_name_or_path", str(model_dir), "--output_dir", str(out)])
    assert "Unknown benchmark 'nope'" in capsys.readouterr().err


def test_run_tofu_with_benchmark_none_trains_without_evaluating(tmp_path, synthetic_splits, tokenizer, make_model):
    sys.path.insert(0, str(REPO / "examples"))
    import run_tofu
    from hf_unlearn.offline.synthetic import write_tofu

    data = write_tofu(tmp_path / "data", synthetic_splits)
    model_dir = tmp_path / "target"
    make_model().save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "out"
    flags = ["--model_name_or_path", str(model_dir), "--dataset_name", str(data), "--output_dir", str(out),
             "--max_steps", "1", "--per_device_train_batch_size", "2", "--report_to", "none", "--disable_tqdm", "true"]
    assert run_tofu.main(flags + ["--benchmark", "none", "--eval_strategy", "steps", "--eval_steps", "1"]) is None
    assert (out / "model.safetensors").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith("tofu_")]
