"""The tuner (`hf_unlearn.tuning`, `examples/tune.py`): the front and the choice by hand, the search space and its
errors, and a search end to end on a tiny model: a diverging trial pruned, the front, the chosen model's card,
and a resumed search that reruns an interrupted trial."""

import json
import sys
from pathlib import Path

import pytest

from hf_unlearn import UnlearningConfig
from hf_unlearn.methods import get_method
from hf_unlearn.tuning import Dimension, TunerArguments, choose, pareto_front, search_space
from hf_unlearn.validation import RunInputError

optuna = pytest.importorskip("optuna")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from test_examples import target_setup  # noqa: E402,F401  (the tiny target model, data and retain reference)


def test_pareto_front_by_hand():
    # Both higher-is-better: (0.4, 0.4) is dominated by (0.5, 0.5); the two equal points both stay.
    points = [(0.9, 0.1), (0.5, 0.5), (0.4, 0.4), (0.1, 0.9), (0.5, 0.5)]
    assert pareto_front(points) == [0, 1, 3, 4]
    # Forget metric lower-is-better (MUSE VerbMem): (0.2, 0.4) loses to (0.1, 0.4) (lower forget, same utility).
    assert pareto_front([(0.2, 0.5), (0.1, 0.4), (0.3, 0.6), (0.2, 0.4)], (False, True)) == [0, 1, 2]
    assert pareto_front([]) == []


def test_the_chosen_trial_is_the_best_forget_metric_above_the_utility_floor():
    front = [{"trial": 0, "forget": 0.9, "utility": 0.1}, {"trial": 1, "forget": 0.5, "utility": 0.5},
             {"trial": 2, "forget": 0.1, "utility": 0.9}]
    assert choose(front, 0.45, True)[0]["trial"] == 1
    assert choose(front, None, True)[0]["trial"] == 0
    assert choose(front, 0.45, False)[0]["trial"] == 2  # lower forget metric better: 0.1 among utility >= 0.45
    chosen, why = choose(front, 0.95, True)
    assert chosen["trial"] == 2 and "no front trial keeps utility >= 0.95" in why
    with pytest.raises(ValueError, match="every trial was pruned"):
        choose([], None, True)


def test_search_space_defaults_and_bad_ranges(tmp_path):
    args = UnlearningConfig(output_dir=str(tmp_path), learning_rate=1e-4, max_steps=4, report_to="none")
    dims = search_space(args, get_method("grad_diff"), TunerArguments())
    assert dims == (Dimension("learning_rate", 1e-5, 1e-3, log=True), Dimension("max_steps", 2, 8, integer=True),
                    Dimension("retain_weight", 0.25, 4.0, log=True))
    epochs = UnlearningConfig(output_dir=str(tmp_path), num_train_epochs=5, report_to="none")
    dims = search_space(epochs, get_method("ga"), TunerArguments(hp_forget_weight="0.5,2", hp_learning_rate="1e-6,1e-4"))
    assert dims == (Dimension("learning_rate", 1e-6, 1e-4, log=True), Dimension("num_train_epochs", 2, 10, integer=True),
                    Dimension("forget_weight", 0.5, 2.0, log=True))  # ga: no retain term, no retain weight
    assert [d.name for d in search_space(args, get_method("npo"), TunerArguments(hp_retain_weight="none"))] == \
        ["learning_rate", "max_steps"]
    for tuner, message in [
        (TunerArguments(hp_learning_rate="1e-3,1e-5"), "need 0 < LOW <= HIGH"),
        (TunerArguments(hp_learning_rate="fast"), "give two numbers LOW,HIGH"),
        (TunerArguments(hp_max_steps="2.5,4"), "give two whole numbers"),
        (TunerArguments(hp_epochs="1,3"), "--hp_epochs with --max_steps"),
        (TunerArguments(hp_trials=0), "--hp_trials must be a whole number >= 1"),
        (TunerArguments(hp_utility_fraction=1.5), "--hp_utility_fraction must be in"),
    ]:
        with pytest.raises(RunInputError, match=message):
            search_space(args, get_method("grad_diff"), tuner)
    with pytest.raises(RunInputError, match="ga has no retain term"):
        search_space(args, get_method("ga"), TunerArguments(hp_retain_weight="0.5,2"))


def tune_flags(data, model_dir, reference, out, *extra):
    return ["--model_name_or_path", str(model_dir), "--dataset_name", str(data), "--forget_split", "forget10",
            "--retain_reference", str(reference), "--output_dir", str(out), "--unlearn_method", "grad_diff",
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--learning_rate", "1e-3",
            "--eval_subsample", "4", "--max_new_tokens", "4", "--per_device_eval_batch_size", "64",
            "--report_to", "none", "--disable_tqdm", "true", "--hp_learning_rate", "1e-4,1e-2", "--hp_max_steps", "1,3",
            *extra]


@pytest.mark.filterwarnings("ignore:Fixed parameter learning_rate")
def test_tune_end_to_end_prunes_divergence_and_resumes(tmp_path, target_setup):  # noqa: F811
    import tune

    data, model_dir, reference = target_setup
    out = tmp_path / "tuned"
    out.mkdir()
    storage = f"sqlite:///{out / 'tuning.db'}"
    study = optuna.create_study(storage=storage, study_name="hf-unlearn", directions=["maximize", "maximize"])
    # Trial 0 diverges (AdamW at lr 1e8, outside the range: optuna takes a queued value as is; non-finite loss at
    # step 2); trial 1 is an ordinary run.
    study.enqueue_trial({"learning_rate": 1e8, "max_steps": 3, "retain_weight": 1.0})
    study.enqueue_trial({"learning_rate": 1e-3, "max_steps": 2, "retain_weight": 1.0})
    first = tune.main(tune_flags(data, model_dir, reference, out, "--hp_trials", "2"))
    states = {r["trial"]: r["state"] for r in first["trials"]}
    assert states == {0: "pruned", 1: "complete"}
    assert "became non-finite" in first["trials"][0]["pruned_reason"]
    assert first["chosen_trial"] == 1 and first["front"] == [1]

    # A trial left running by a process that died: the resumed search runs it again with the same settings.
    interrupted = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                             "max_steps": optuna.distributions.IntDistribution(1, 3),
                             "retain_weight": optuna.distributions.FloatDistribution(0.25, 4.0, log=True)})
    result = tune.main(tune_flags(data, model_dir, reference, out, "--hp_trials", "4"))
    trials = optuna.load_study(study_name="hf-unlearn", storage=storage).trials
    assert [t.state.name for t in trials] == ["PRUNED", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[3].params == interrupted.params and trials[3].user_attrs["rerun_of"] == 2
    assert len(result["trials"]) == 4 and {r["trial"] for r in result["trials"]} == {0, 1, 3, 4}

    # The front: the non-dominated completed trials, as optuna's own Pareto front has them.
    written = json.loads((out / "pareto_front.json").read_text())
    assert written == json.loads(json.dumps(result))
    complete = [r for r in result["trials"] if r["state"] == "complete"]
    assert sorted(result["front"]) == sorted(t.number for t in optuna.load_study(
        study_name="hf-unlearn", storage=storage).best_trials)
    for r in complete:
        assert (r["forget"], r["utility"]) == (r["summary"]["forget_quality"], r["summary"]["model_utility"])
        assert r["recipe"]["learning_rate"] == pytest.approx(r["settings"]["learning_rate"])
    kept = sorted(p.name for p in (out / "trials").iterdir())
    assert kept == [f"trial-{n:03d}" for n in sorted(result["front"])]  # only the front's models are kept
    assert (out / "pareto_front.png").stat().st_size > 1000

    card = (out / "chosen_model" / "README.md").read_text()
    assert (out / "chosen_model" / "model.safetensors").is_file()
    assert "## Hyperparameter search" in card and f"This model is trial {result['chosen_trial']}" in card
    for r in result["trials"]:  # every trial's settings are in the card
        assert f"| {r['trial']} | {r['state']} | {r['settings']['learning_rate']:.3g} |" in card

    # Other settings in the same folder are refused: a resumed search must be the same search.
    with pytest.raises(RunInputError, match="holds a search with other settings"):
        tune.main(tune_flags(data, model_dir, reference, out, "--hp_trials", "4", "--per_device_train_batch_size", "2"))


def test_bad_tune_inputs_fail_before_anything_is_written(tmp_path, target_setup):  # noqa: F811
    import tune

    data, model_dir, reference = target_setup
    out = tmp_path / "never"
    for extra, message in [(("--eval_strategy", "steps"), "each trial is scored once"),
                           (("--save_strategy", "steps"), "resumes trial by trial"),
                           (("--hp_learning_rate", "0,1"), "need 0 < LOW <= HIGH")]:
        with pytest.raises(RunInputError, match=message):
            tune.main(tune_flags(data, model_dir, reference, out, *extra))
    flags = tune_flags(data, model_dir, reference, out)
    without_reference = flags[:flags.index("--retain_reference")] + flags[flags.index("--retain_reference") + 2:]
    with pytest.raises(RunInputError, match="forget_quality, which needs --retain_reference"):
        tune.main(without_reference)
    assert not out.exists()


def test_tune_on_muse_minimises_verbmem(tmp_path):
    """MUSE's forget metric (VerbMem on forget) is lower-is-better: the study minimises it, the front is taken that
    way, and the chosen trial has the lowest VerbMem of the front's trials above the floor."""
    import tune

    from hf_unlearn.data.muse import muse_strings
    from hf_unlearn.offline.muse_synthetic import generate_muse, write_muse
    from hf_unlearn.offline.tiny import build_tiny_llama, train_tokenizer

    data = write_muse(tmp_path / "muse", generate_muse(num_forget=4, num_retain1=4, num_retain2=4, num_holdout=4, seed=0))
    tokenizer = train_tokenizer(muse_strings(str(data)), vocab_size=512)
    model = build_tiny_llama(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=256)
    model.save_pretrained(tmp_path / "target")
    tokenizer.save_pretrained(tmp_path / "target")
    out = tmp_path / "tuned"
    result = tune.main(["--benchmark", "muse", "--model_name_or_path", str(tmp_path / "target"), "--dataset_name",
                        str(data), "--output_dir", str(out), "--unlearn_method", "npo", "--max_steps", "1",
                        "--max_length", "64", "--per_device_train_batch_size", "2", "--eval_subsample", "2",
                        "--max_new_tokens", "4", "--knowmem_max_new_tokens", "4", "--report_to", "none",
                        "--disable_tqdm", "true", "--hp_trials", "2", "--hp_learning_rate", "1e-3,1e-1",
                        "--hp_min_model_utility", "0"])
    assert (result["forget_metric"], result["utility_metric"], result["forget_higher_is_better"]) == \
        ("forget_verbmem_rouge", "retain_knowmem_rouge", False)
    complete = [r for r in result["trials"] if r["state"] == "complete"]
    assert len(complete) == 2 and all(r["forget"] == r["summary"]["forget_verbmem_rouge"] for r in complete)
    front = [r for r in complete if r["trial"] in result["front"]]
    assert min(r["forget"] for r in complete) == min(r["forget"] for r in front)
    chosen = next(r for r in complete if r["trial"] == result["chosen_trial"])
    assert chosen["forget"] == min(r["forget"] for r in front)  # floor 0: the front's lowest VerbMem
    directions = optuna.load_study(study_name="hf-unlearn", storage=f"sqlite:///{out / 'tuning.db'}").directions
    assert [d.name for d in directions] == ["MINIMIZE", "MAXIMIZE"]
    assert "forget_verbmem_rouge" in (out / "chosen_model" / "README.md").read_text()
