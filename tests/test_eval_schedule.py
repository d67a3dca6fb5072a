"""The benchmark evaluation on Trainer's own schedule: `UnlearningTrainer.evaluate()` computes the unlearning
losses and runs the benchmark once, in one metrics dict that `metric_for_best_model` / `load_best_model_at_end`
and the stop rule read. A benchmark registered here scores from a list, so every value is known in advance."""

import json
from dataclasses import dataclass, field

import pytest
import torch
from safetensors.torch import load_file
from transformers import Trainer, TrainerCallback, TrainingArguments

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.eval import benchmarks as B
from hf_unlearn.eval.callback import ForgetQualityCallback, StopRuleCallback


@dataclass
class ListOptions:
    scores: tuple = field(default=(1.0,), metadata={"help": "The leak of evaluation 1, 2, ..."})
    reference: str = field(default=None, metadata={"help": "Needed by the leak (as TOFU's retain reference)."})


def _list_evaluate(model, tokenizer, *, batch_size, show_progress, template=None, scores, reference=None):
    _list_evaluate.calls += 1
    leak = scores[_list_evaluate.calls - 1] if reference is not None else None
    return {}, {"leak": leak, "utility": 1.0}


@pytest.fixture
def listed():
    bench = B.register_benchmark(B.Benchmark(
        name="listed", description="Scores from a list.", evaluate=_list_evaluate,
        check=lambda scores=(1.0,), reference=None: {"scores": tuple(scores), "reference": reference},
        options=ListOptions, eval_file="listed_eval.json", summary_file="listed_summary.json",
        history_file="listed_history.json", summary_keys=("leak", "utility"), forget_metric="leak",
        utility_metric="utility", forget_metric_needs="reference", forget_metric_higher_is_better=False))
    _list_evaluate.calls = 0
    yield bench
    del B._REGISTRY["listed"]


class _CountEvaluations(TrainerCallback):
    def __init__(self):
        self.metrics = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.metrics.append((state.global_step, dict(metrics)))


def _trainer(tmp_path, make_model, tokenizer, forget_retain, callbacks, **config):
    args = UnlearningConfig(output_dir=str(tmp_path / "run"), unlearn_method="ga", per_device_train_batch_size=2,
                            learning_rate=1e-3, report_to="none", logging_steps=1, disable_tqdm=True,
                            **{"max_steps": 3, "eval_strategy": "steps", "eval_steps": 1, **config})
    return UnlearningTrainer(model=make_model(), args=args, forget_dataset=forget_retain[0], processing_class=tokenizer,
                             callbacks=callbacks)


def test_one_benchmark_evaluation_per_evaluation_step(listed, tmp_path, make_model, tokenizer, forget_retain):
    counter = _CountEvaluations()
    evaluation = ForgetQualityCallback(benchmark="listed", scores=(0.9, 0.8, 0.7), reference="r")
    trainer = _trainer(tmp_path, make_model, tokenizer, forget_retain, [evaluation, counter], max_steps=5,
                       eval_steps=2)
    assert trainer.benchmark_evaluation is evaluation and trainer.eval_dataset is trainer.train_dataset
    trainer.train()
    # Steps 2 and 4 by eval_steps, 5 as the last step: one evaluate() each, one benchmark run each.
    assert [step for step, _ in counter.metrics] == [2, 4, 5] and _list_evaluate.calls == 3
    for (_, metrics), leak in zip(counter.metrics, (0.9, 0.8, 0.7)):  # the losses and the benchmark, one dict
        assert metrics["eval_listed/leak"] == leak and metrics["eval_listed/utility"] == 1.0
        assert {"eval_loss", "eval_forget_loss"} <= set(metrics)
    logged = [h for h in trainer.state.log_history if "eval_loss" in h]  # one log entry per evaluation
    assert [h["step"] for h in logged] == [2, 4, 5] and [h["listed/leak"] for h in logged] == [0.9, 0.8, 0.7]
    assert not any("eval_listed/leak" in h or ("listed/leak" in h and "eval_loss" not in h)
                   for h in trainer.state.log_history)
    history = json.loads((tmp_path / "run" / "listed_history.json").read_text())
    assert [h["step"] for h in history["history"]] == [2, 4, 5] and history["best_step"] == 5
    # Several eval datasets: the losses of each, the benchmark once, under evaluate()'s own prefix.
    evaluation.options["scores"] += (0.6,)
    metrics = trainer.evaluate({"a": trainer.train_dataset, "b": trainer.train_dataset})
    assert _list_evaluate.calls == 4 and metrics["eval_listed/leak"] == 0.6
    assert {"eval_a_loss", "eval_b_loss"} <= set(metrics) and not any(k.startswith("eval_a_listed") for k in metrics)


@pytest.mark.parametrize("metric, greater_is_better, best_step", [("listed/leak", False, 2),
                                                                   ("eval_listed/leak", True, 3)])
def test_metric_for_best_model_and_load_best_model_at_end_read_the_benchmark(
        metric, greater_is_better, best_step, listed, tmp_path, make_model, tokenizer, forget_retain):
    scores = (0.5, 0.2, 0.7)
    trainer = _trainer(tmp_path, make_model, tokenizer, forget_retain,
                       [ForgetQualityCallback(benchmark="listed", scores=scores, reference="r")],
                       save_strategy="steps", save_steps=1, metric_for_best_model=metric,
                       greater_is_better=greater_is_better, load_best_model_at_end=True)
    trainer.train()
    best = tmp_path / "run" / f"checkpoint-{best_step}"
    assert trainer.state.best_model_checkpoint == str(best) and trainer.state.best_metric == scores[best_step - 1]
    saved = load_file(best / "model.safetensors")
    other = load_file(tmp_path / "run" / f"checkpoint-{5 - best_step}" / "model.safetensors")
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in saved)  # the best checkpoint's weights were loaded
    assert not all(torch.equal(state[k], other[k]) for k in other)


def test_stop_rule_stops_at_the_first_evaluation_that_meets_it(listed, tmp_path, make_model, tokenizer, forget_retain):
    evaluation = ForgetQualityCallback(benchmark="listed", scores=(0.5, 0.3, 0.2, 0.1), reference="r",
                                       target_forget_quality=0.2, min_model_utility=0.5)
    trainer = _trainer(tmp_path, make_model, tokenizer, forget_retain, [evaluation], max_steps=6)
    assert evaluation.rule in trainer.callback_handler.callbacks
    trainer.train()
    assert trainer.state.global_step == 3 and _list_evaluate.calls == 3  # leak 0.2 <= 0.2 at the third

    rule = StopRuleCallback("listed", target_forget_quality=0.2, min_model_utility=0.5)
    for leak, utility, stops in ((0.2, 0.5, True), (0.21, 1.0, False), (0.1, 0.49, False), (None, 1.0, False)):
        control = trainer.control.__class__()
        rule.on_evaluate(trainer.args, trainer.state, control,
                         metrics={"eval_listed/utility": utility, **({} if leak is None else {"eval_listed/leak": leak})})
        assert control.should_training_stop is stops, (leak, utility)


def test_wiring_mistakes_are_refused_with_the_fix(listed, tmp_path, make_model, tokenizer, forget_retain):
    def evaluation(**kw):
        return ForgetQualityCallback(benchmark="listed", scores=(0.5, 0.4), **kw)

    with pytest.raises(ValueError, match=r"listed has no summary key 'nope'; choose one of listed/leak, listed/utility"):
        _trainer(tmp_path, make_model, tokenizer, forget_retain, [evaluation()], metric_for_best_model="listed/nope")
    with pytest.raises(ValueError, match="needs the benchmark option reference"):
        _trainer(tmp_path, make_model, tokenizer, forget_retain, [evaluation()], metric_for_best_model="listed/leak")
    with pytest.raises(ValueError, match=r"'listed/leak' is a listed metric, but this trainer evaluates no benchmark"):
        _trainer(tmp_path, make_model, tokenizer, forget_retain, [], metric_for_best_model="listed/leak").train()
    with pytest.raises(ValueError, match="one benchmark evaluation"):
        _trainer(tmp_path, make_model, tokenizer, forget_retain, [evaluation(), evaluation()])
    with pytest.raises(ValueError, match="one evaluation schedule, the Trainer's"):
        _trainer(tmp_path, make_model, tokenizer, forget_retain, [evaluation(eval_steps=2)])
    plain = Trainer(model=make_model(), args=TrainingArguments(output_dir=str(tmp_path / "plain"), report_to=[]))
    with pytest.raises(TypeError, match="runs inside UnlearningTrainer.evaluate"):
        evaluation().attach(plain)
    plain.add_callback(evaluation())
    with pytest.raises(RuntimeError, match="pass it in UnlearningTrainer"):
        plain.callback_handler.on_train_begin(plain.args, plain.state, plain.control)


def test_the_callbacks_own_schedule_is_deprecated_and_becomes_the_trainers(listed, tmp_path, make_model, tokenizer,
                                                                          forget_retain):
    with pytest.warns(FutureWarning, match="evaluated on the Trainer's schedule"):
        trainer = _trainer(tmp_path, make_model, tokenizer, forget_retain,
                           [ForgetQualityCallback(benchmark="listed", scores=(0.5, 0.4), eval_steps=2)],
                           max_steps=4, eval_strategy="no")
    assert trainer.args.eval_strategy == "steps" and trainer.args.eval_steps == 2
    trainer.train()
    assert _list_evaluate.calls == 2 and [h["step"] for h in trainer.state.log_history if "listed/utility" in h] == [2, 4]
