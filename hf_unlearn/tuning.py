"""The tuner: a multi-objective hyperparameter search of an unlearning run, on `Trainer.hyperparameter_search`
with optuna (the `tune` extra: ``pip install hf-unlearn[tune]``).

Each trial takes a learning rate (log scale), a length (epochs, or steps when the run has ``--max_steps``)
and the method's weights from the search space, trains a fresh copy of the model, evaluates it with the
benchmark and records its point: (the benchmark's forget metric, its utility metric), e.g. TOFU's forget
quality and model utility. The output folder holds

* ``tuning.db``: the optuna study (sqlite). A second call with the same folder continues it: trials that
  finished count, a trial that was running when the process died runs again with the same settings;
* ``pareto_front.json`` and ``pareto_front.png``: every trial, the Pareto front and the chosen trial;
* ``trials/trial-NNN/``: the model of each trial on the current front (dominated ones are deleted as the
  search goes, unless ``--hp_keep_all_models``);
* ``chosen_model/``: the chosen trial's model, with a card that lists every trial's settings.

A trial whose loss becomes non-finite (divergence) is pruned (optuna state PRUNED), never fatal.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .hub import recipe_of, unlearning_model_card
from .models.reference import is_peft_model
from .reporting import markdown_table
from .trainer import UnlearningTrainer
from .validation import RunInputError

logger = logging.getLogger(__name__)

STUDY_FILE = "tuning.db"
STUDY_NAME = "hf-unlearn"
FRONT_FILE = "pareto_front.json"
PLOT_FILE = "pareto_front.png"
TRIALS_DIR = "trials"
CHOSEN_DIR = "chosen_model"
INSTALL_HINT = "The tuner needs optuna: pip install 'hf-unlearn[tune]' (or pip install optuna)."


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise RunInputError(INSTALL_HINT) from None
    return optuna


@dataclass
class TunerArguments:
    """Flags of `examples/tune.py`: the number of trials, the search space, how the trial is chosen."""

    hp_trials: int = field(default=8, metadata={"help": "N: how many trials the study has in the end (a resumed "
                                                        "study runs the missing ones). Default 8."})
    hp_learning_rate: str | None = field(
        default=None, metadata={"help": "LOW,HIGH: learning-rate range, searched on a log scale. Default: "
                                        "--learning_rate / 10 to --learning_rate * 10."})
    hp_epochs: str | None = field(
        default=None, metadata={"help": "LOW,HIGH: whole epochs. Default: --num_train_epochs / 2 (at least 1) to "
                                        "--num_train_epochs * 2. Not with --max_steps (use --hp_max_steps)."})
    hp_max_steps: str | None = field(
        default=None, metadata={"help": "LOW,HIGH: optimizer steps (searched instead of epochs). Default with "
                                        "--max_steps S: S / 2 (at least 1) to S * 2."})
    hp_forget_weight: str | None = field(
        default=None, metadata={"help": "LOW,HIGH: gamma, the forget weight, log scale. Default: not searched."})
    hp_retain_weight: str | None = field(
        default=None, metadata={"help": "LOW,HIGH: alpha, the retain weight, log scale. Default: the method's alpha "
                                        "/ 4 to alpha * 4 when it has a retain term; 'none' to keep it fixed."})
    hp_min_model_utility: float | None = field(
        default=None, metadata={"help": "The chosen trial: the best forget metric on the front among trials with at "
                                        "least this utility. Default: --hp_utility_fraction of the starting model's."})
    hp_utility_fraction: float = field(
        default=0.9, metadata={"help": "Default utility floor of the chosen trial, as a fraction of the starting "
                                       "model's utility. Default 0.9."})
    hp_keep_all_models: bool = field(
        default=False, metadata={"help": "Keep every trial's model in trials/ (default: only the Pareto front's)."})


@dataclass(frozen=True)
class Dimension:
    """One searched `UnlearningConfig` field: a range, on a log scale or of whole numbers."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def suggest(self, trial):
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


def parse_range(text: str, flag: str, *, integer: bool = False) -> tuple[float, float]:
    """'LOW,HIGH' -> (low, high), both finite and > 0, low <= high (whole numbers for `integer`)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        low, high = (int(p) if integer else float(p) for p in parts)
    except ValueError:
        kind = "two whole numbers" if integer else "two numbers"
        raise RunInputError(f"--{flag} {text!r}: give {kind} LOW,HIGH (e.g. --{flag} "
                            f"{'1,8' if integer else '1e-6,1e-4'}).") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or low > high:
        raise RunInputError(f"--{flag} {text!r}: need 0 < LOW <= HIGH, both finite.")
    return low, high


def search_space(args, method, tuner: TunerArguments) -> tuple[Dimension, ...]:
    """The searched dimensions of a run with `args` (an `UnlearningConfig`) and `method`; a bad range raises."""
    settings = method.settings_from(args)
    if tuner.hp_learning_rate:
        low, high = parse_range(tuner.hp_learning_rate, "hp_learning_rate")
    else:
        low, high = args.learning_rate / 10, args.learning_rate * 10
    dims = [Dimension("learning_rate", low, high, log=True)]
    if args.max_steps > 0 or tuner.hp_max_steps:
        if tuner.hp_epochs:
            raise RunInputError("--hp_epochs with --max_steps: steps override epochs. Search --hp_max_steps, or drop "
                                "--max_steps to search epochs.")
        steps = args.max_steps if args.max_steps > 0 else 1
        low, high = (parse_range(tuner.hp_max_steps, "hp_max_steps", integer=True) if tuner.hp_max_steps
                     else (max(1, steps // 2), steps * 2))
        dims.append(Dimension("max_steps", low, high, integer=True))
    else:
        epochs = max(1, round(args.num_train_epochs))
        low, high = (parse_range(tuner.hp_epochs, "hp_epochs", integer=True) if tuner.hp_epochs
                     else (max(1, epochs // 2), epochs * 2))
        dims.append(Dimension("num_train_epochs", low, high, integer=True))
    if tuner.hp_forget_weight:
        dims.append(Dimension("forget_weight", *parse_range(tuner.hp_forget_weight, "hp_forget_weight"), log=True))
    retain_text = (tuner.hp_retain_weight or "").strip().lower()
    if retain_text and retain_text != "none":
        if not method.uses_retain:
            raise RunInputError(f"--hp_retain_weight: {method.name} has no retain term; drop the flag.")
        dims.append(Dimension("retain_weight", *parse_range(tuner.hp_retain_weight, "hp_retain_weight"), log=True))
    elif not retain_text and method.needs_retain(settings) and settings.retain_weight > 0:
        dims.append(Dimension("retain_weight", settings.retain_weight / 4, settings.retain_weight * 4, log=True))
    if isinstance(tuner.hp_trials, bool) or not isinstance(tuner.hp_trials, int) or tuner.hp_trials < 1:
        raise RunInputError(f"--hp_trials must be a whole number >= 1, got {tuner.hp_trials}.")
    if not 0 < tuner.hp_utility_fraction <= 1:
        raise RunInputError(f"--hp_utility_fraction must be in (0, 1], got {tuner.hp_utility_fraction}.")
    return tuple(dims)


# ------------------------------------------------------------------------------------------------
# the front and the chosen trial
# ------------------------------------------------------------------------------------------------


def pareto_front(points: Sequence[tuple[float, float]], maximize: tuple[bool, bool] = (True, True)) -> list[int]:
    """Indices of the non-dominated `points` (in order): no other point is at least as good in both coordinates
    and better in one. `maximize` says which way each coordinate is better. Equal points are all kept."""
    signs = [1.0 if m else -1.0 for m in maximize]
    oriented = [tuple(s * v for s, v in zip(signs, p)) for p in points]

    def dominates(a, b):
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [i for i, p in enumerate(oriented) if not any(dominates(q, p) for q in oriented)]


def choose(front: Sequence[dict], utility_floor: float | None, forget_higher_is_better: bool) -> tuple[dict, str]:
    """The chosen trial of the front (records with `forget` and `utility`): the best forget metric among those
    with utility >= `utility_floor` (all, without a floor); when none reaches it, the one with the best utility."""
    if not front:
        raise ValueError("No completed trial: nothing to choose from (every trial was pruned?).")
    sign = 1.0 if forget_higher_is_better else -1.0
    eligible = [r for r in front if utility_floor is None or r["utility"] >= utility_floor]
    if eligible:
        best = max(eligible, key=lambda r: (sign * r["forget"], r["utility"]))
        why = ("the best forget metric on the front" if utility_floor is None else
               f"the best forget metric on the front with utility >= {utility_floor:.4g}")
        return best, why
    best = max(front, key=lambda r: (r["utility"], sign * r["forget"]))
    return best, f"no front trial keeps utility >= {utility_floor:.4g}: the front's best utility"


# ------------------------------------------------------------------------------------------------
# the trainer of the trials
# ------------------------------------------------------------------------------------------------


class TuningTrainer(UnlearningTrainer):
    """`UnlearningTrainer` for `hyperparameter_search`: every trial starts from `model_init()` (a fresh copy of the
    starting model), takes its method settings from the trial's flags, is scored by the benchmark, and saves its
    model into ``trials/``. A non-finite loss or model prunes the trial."""

    def __init__(self, *args, model_init: Callable[[], torch.nn.Module], benchmark, eval_kwargs: dict,
                 keep_all_models: bool = False, card_flags: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # Set after construction: Trainer refuses a model and a model_init together, and UnlearningTrainer builds
        # its pairs, reference and prompt format from the model it is given.
        self.model_init = model_init
        self.benchmark = benchmark
        self.eval_kwargs = eval_kwargs
        self.keep_all_models = keep_all_models
        self.card_flags = card_flags or {}

    @property
    def search_dir(self) -> Path:
        return Path(self.args.output_dir)

    def trial_dir(self, number: int) -> Path:
        return self.search_dir / TRIALS_DIR / f"trial-{number:03d}"

    def _hp_search_setup(self, trial) -> None:
        super()._hp_search_setup(trial)
        if trial is None or self.hp_search_backend is None:
            return
        # The trial's weights and the fresh model: settings, setup and reference as UnlearningTrainer.__init__
        # makes them for the model it is given.
        for terms in self._terms.values():  # a pruned trial's last (non-finite) terms are not this trial's
            terms.clear()
        peft = is_peft_model(self.model)
        self.settings = self.method.settings_from(self.args)
        if self.method.setup is not None:
            self.settings = self.method.setup(self.model, self.settings, seed=self.args.seed, is_peft=peft)
        self.reference = self._build_reference(None, peft)

    def train(self, resume_from_checkpoint=None, trial=None, **kwargs):
        try:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)
        except FloatingPointError as err:
            if trial is None or self.hp_search_backend is None:
                raise
            self._prune(trial, str(err))

    def _prune(self, trial, reason: str):
        optuna = import_optuna()
        trial.set_user_attr("pruned_reason", reason[:500])
        logger.warning("Trial %d pruned: %s", trial.number, reason)
        print(f"[tune] trial {trial.number} pruned: {reason[:200]}")
        raise optuna.TrialPruned(reason)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        trial = getattr(self, "_trial", None)
        if trial is None or self.hp_search_backend is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            self._prune(trial, "non-finite weights after training (diverged)")
        _, summary = self.benchmark.evaluate(self.model, self.processing_class, template=self.prompt_template,
                                             **self.eval_kwargs)
        values = objective_values(summary, self.benchmark)
        if not all(v is not None and math.isfinite(v) for v in values):
            self._prune(trial, f"non-finite {self.benchmark.forget_metric}/{self.benchmark.utility_metric} {values}")
        trial.set_user_attr("summary", summary)
        trial.set_user_attr("recipe", recipe_of(self.args, self.card_flags))
        self.save_model(str(self.trial_dir(trial.number)))
        if not self.keep_all_models:
            self._delete_dominated(trial, values)
        print(f"[tune] trial {trial.number}: {dict(trial.params)} -> {self.benchmark.forget_metric}="
              f"{values[0]:.4g}, {self.benchmark.utility_metric}={values[1]:.4g}")
        return summary

    def _delete_dominated(self, trial, values) -> None:
        """Models of trials off the front (this trial's point included) are deleted: only the front's are kept."""
        optuna = import_optuna()
        done = [(t.number, tuple(t.values)) for t in trial.study.get_trials(deepcopy=False,
                                                                               states=(optuna.trial.TrialState.COMPLETE,))]
        done.append((trial.number, tuple(values)))
        front = {done[i][0] for i in pareto_front([p for _, p in done], directions_of(self.benchmark))}
        for number, _ in done:
            if number not in front and self.trial_dir(number).is_dir():
                shutil.rmtree(self.trial_dir(number))


def directions_of(benchmark) -> tuple[bool, bool]:
    """Which way is better for (forget metric, utility metric): True = higher."""
    return (benchmark.forget_metric_higher_is_better, True)


def objective_values(summary: dict, benchmark) -> list[float | None]:
    values = [summary.get(benchmark.forget_metric), summary.get(benchmark.utility_metric)]
    return [None if v is None else float(v) for v in values]


# ------------------------------------------------------------------------------------------------
# the study: created or resumed, run, summarised
# ------------------------------------------------------------------------------------------------


def open_study(output_dir: Path, benchmark, config: dict, seed: int):
    """The study in `output_dir` (created, or loaded when it exists: then `config` must match the stored one).
    Trials left RUNNING by a process that died are marked FAIL and queued again with the same settings.
    Returns (study, sampler seed: `seed` + the number of trials so far, so a resumed search draws new points)."""
    optuna = import_optuna()
    storage = f"sqlite:///{output_dir / STUDY_FILE}"
    directions = ["maximize" if up else "minimize" for up in directions_of(benchmark)]
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, directions=directions, load_if_exists=True)
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", config)
    elif stored != config:
        changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
        raise RunInputError(f"{output_dir} holds a search with other settings ({', '.join(changed)}): resume it with "
                            "the same flags, or pass --overwrite_output_dir to start a new search there.")
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
        print(f"[tune] trial {trial.number} was interrupted: it runs again with the same settings")
    return study, seed + len(study.trials)


def finished_trials(study) -> int:
    optuna = import_optuna()
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def trial_records(study, benchmark) -> list[dict]:
    """Every finished trial as a JSON-able record: number, state, settings, forget/utility values, summary."""
    records = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name not in ("COMPLETE", "PRUNED"):
            continue
        values = list(t.values) if t.values else [None, None]
        records.append({"trial": t.number, "state": t.state.name.lower(), "settings": dict(t.params),
                        "forget": values[0], "utility": values[1],
                        "summary": t.user_attrs.get("summary"), "recipe": t.user_attrs.get("recipe"),
                        "pruned_reason": t.user_attrs.get("pruned_reason")})
    return records


def summarise_search(output_dir: Path, study, benchmark, before: dict | None, tuner: TunerArguments) -> dict:
    """pareto_front.json and pareto_front.png in `output_dir`; returns the JSON's content."""
    from .eval.runner import atomic_json

    records = trial_records(study, benchmark)
    complete = [r for r in records if r["state"] == "complete"]
    front = [complete[i] for i in pareto_front([(r["forget"], r["utility"]) for r in complete],
                                               directions_of(benchmark))]
    floor = tuner.hp_min_model_utility
    before_utility = (before or {}).get(benchmark.utility_metric)
    if floor is None and before_utility is not None:
        floor = tuner.hp_utility_fraction * before_utility
    chosen, why = choose(front, floor, benchmark.forget_metric_higher_is_better) if front else (None, "no trial completed")
    result = {
        "benchmark": benchmark.name, "forget_metric": benchmark.forget_metric,
        "utility_metric": benchmark.utility_metric,
        "forget_higher_is_better": benchmark.forget_metric_higher_is_better,
        "before": before, "utility_floor": floor, "chosen_trial": chosen["trial"] if chosen else None,
        "chosen_because": why, "front": [r["trial"] for r in front], "trials": records,
    }
    atomic_json(output_dir / FRONT_FILE, result)
    plot_front(result, output_dir / PLOT_FILE)
    return result


def plot_front(result: dict, path: Path) -> Path:
    """Every completed trial (forget metric against utility), the front joined, the chosen trial starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    complete = [r for r in result["trials"] if r["state"] == "complete"]
    front = [r for r in complete if r["trial"] in result["front"]]
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    ax.scatter([r["utility"] for r in complete], [r["forget"] for r in complete], s=18, color="tab:gray",
               label="trial")
    for r in complete:
        ax.annotate(str(r["trial"]), (r["utility"], r["forget"]), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ordered = sorted(front, key=lambda r: r["utility"])
    ax.plot([r["utility"] for r in ordered], [r["forget"] for r in ordered], "-o", color="tab:blue", markersize=5,
            label="Pareto front")
    before = result.get("before") or {}
    if before.get(result["forget_metric"]) is not None and before.get(result["utility_metric"]) is not None:
        ax.plot(before[result["utility_metric"]], before[result["forget_metric"]], "s", color="black", markersize=8,
                label="starting model")
    chosen = next((r for r in complete if r["trial"] == result["chosen_trial"]), None)
    if chosen is not None:
        ax.plot(chosen["utility"], chosen["forget"], "*", color="tab:red", markersize=14,
                label=f"chosen (trial {chosen['trial']})")
    if result["utility_floor"] is not None:
        ax.axvline(result["utility_floor"], color="tab:green", linestyle=":", linewidth=1, label="utility floor")
    if result["forget_metric"] == "forget_quality":  # a p-value: orders of magnitude apart
        ax.set_yscale("log")
    better = "higher" if result["forget_higher_is_better"] else "lower"
    ax.set_xlabel(f"{result['utility_metric']} (higher is better)")
    ax.set_ylabel(f"{result['forget_metric']} ({better} is better)")
    ax.set_title(f"{result['benchmark'].upper()}: {len(complete)} trials, front of {len(front)}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def search_card_section(result: dict, dims: Sequence[Dimension]) -> str:
    """The card's table of every trial: its settings, its point, whether it is on the front, which was chosen."""
    names = [d.name for d in dims]
    rows = []
    for r in result["trials"]:
        mark = "chosen" if r["trial"] == result["chosen_trial"] else ("front" if r["trial"] in result["front"] else "")
        settings = {k: f"{v:.3g}" if isinstance(v, float) else v for k, v in r["settings"].items()}
        rows.append({"trial": r["trial"], "state": r["state"], **settings, result["forget_metric"]: r["forget"],
                     result["utility_metric"]: r["utility"], "": mark})
    table = markdown_table(rows, ["trial", "state", *names, result["forget_metric"], result["utility_metric"], ""])
    space = ", ".join(f"`{d.name}` in [{d.low:.3g}, {d.high:.3g}]" + (" (log)" if d.log else "") for d in dims)
    return "\n".join([
        "## Hyperparameter search", "",
        f"{len(result['trials'])} trials (optuna, multi-objective: {result['forget_metric']} and "
        f"{result['utility_metric']}) over {space}. This model is trial {result['chosen_trial']}: "
        f"{result['chosen_because']}. Pruned trials diverged (non-finite loss).", "",
        f"![Pareto front]({PLOT_FILE})", "", table, ""])


def write_chosen_model(output_dir: Path, result: dict, dims: Sequence[Dimension], *, trainer: TuningTrainer,
                       base_model: str, dataset_name: str, forget_split: str, retain_split: str | None) -> Path | None:
    """Copies the chosen trial's model to ``chosen_model/`` and writes its card (the chosen recipe and results,
    every trial's settings)."""
    if result["chosen_trial"] is None:
        return None
    source = output_dir / TRIALS_DIR / f"trial-{result['chosen_trial']:03d}"
    if not source.is_dir():
        raise FileNotFoundError(f"The chosen trial's model {source} is missing (deleted by hand?): rerun the search in "
                                "a new folder.")
    target = output_dir / CHOSEN_DIR
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    shutil.copy(output_dir / PLOT_FILE, target / PLOT_FILE)
    chosen = next(r for r in result["trials"] if r["trial"] == result["chosen_trial"])
    card = unlearning_model_card(
        model_name=f"{trainer.method.name}-{trainer.args.unlearn_optimizer}-tuned-trial-{chosen['trial']}",
        base_model=base_model, method=trainer.method.name, optimizer=trainer.args.unlearn_optimizer,
        dataset_name=dataset_name, forget_split=forget_split, retain_split=retain_split, recipe=chosen["recipe"] or {},
        library_name="peft" if (target / "adapter_config.json").is_file() else "transformers",
        results=chosen["summary"], results_before=result.get("before"), benchmark=result["benchmark"].upper(),
        extra_tags=["hyperparameter-search"],
        prompt_template=trainer.prompt_template.to_dict() if trainer.prompt_template is not None else None,
    )
    text = str(card).rstrip() + "\n\n" + search_card_section(result, dims)
    (target / "README.md").write_text(text, encoding="utf-8")
    return target


def run_search(trainer: TuningTrainer, dims: Sequence[Dimension], tuner: TunerArguments, config: dict,
               card: dict) -> dict:
    """The whole search with `trainer` (a `TuningTrainer`): the study opened or resumed in its output folder,
    the starting model evaluated once, the missing trials run through `Trainer.hyperparameter_search`, the front
    written, the chosen model copied. `card`: base_model, dataset_name, forget_split, retain_split."""
    optuna = import_optuna()
    output_dir = Path(trainer.args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    benchmark = trainer.benchmark
    study, sampler_seed = open_study(output_dir, benchmark, config, trainer.args.seed)
    before = study.user_attrs.get("before")
    if before is None:
        _, before = benchmark.evaluate(trainer.model, trainer.processing_class, template=trainer.prompt_template,
                                       **trainer.eval_kwargs)
        study.set_user_attr("before", before)
    missing = tuner.hp_trials - finished_trials(study)
    if missing > 0:
        print(f"[tune] {finished_trials(study)} of {tuner.hp_trials} trials done; running {missing}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        trainer.hyperparameter_search(
            hp_space=lambda trial: {d.name: d.suggest(trial) for d in dims},
            compute_objective=lambda metrics: objective_values(metrics, benchmark),
            n_trials=missing, direction=["maximize" if up else "minimize" for up in directions_of(benchmark)],
            backend="optuna", storage=f"sqlite:///{output_dir / STUDY_FILE}", study_name=STUDY_NAME,
            load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        )
    result = summarise_search(output_dir, study, benchmark, before, tuner)
    write_chosen_model(output_dir, result, dims, trainer=trainer, **card)
    return result


def search_config(args, model_args, script, dims: Sequence[Dimension], benchmark) -> dict:
    """What a resumed search must share with the stored one: model, data, method, benchmark and search space."""
    fixed = {k: v for k, v in recipe_of(args).items() if k not in {d.name for d in dims}}
    return json.loads(json.dumps({
        "model": model_args.model_name_or_path, "dataset": script.dataset_name, "forget_split": script.forget_split,
        "benchmark": benchmark.name, "space": [dataclasses.asdict(d) for d in dims], "fixed": fixed,
        "eval_subsample": script.eval_subsample,
    }, default=str))

