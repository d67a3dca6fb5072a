"""`UnlearningConfig`: every unlearning knob, as a `transformers.TrainingArguments` subclass.

Like TRL's `DPOConfig`, it parses from the command line (`HfArgumentParser` / `TrlParser`) and from
YAML recipes, and every field's help names the source of its default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from transformers import TrainingArguments
from trl import ModelConfig

from .data.formatting import PromptTemplateArguments
from .methods import METHODS, get_method, hyperparameters, method_names
from .optim.estimators import estimator_names

UNLEARN_OPTIMIZERS = ("adamw", "sophia", "influence")
#: The optimizers that read a Hessian-diagonal estimate (`--hessian_estimator`), refreshed by the trainer.
SECOND_ORDER_OPTIMIZERS = ("sophia", "influence")
#: Where influence unlearning comes from (the --help of --unlearn_optimizer, the README).
INFLUENCE_SOURCE = ("SOUL (arXiv 2404.18239), its section on influence unlearning; influence functions: Koh & Liang "
                    "2017 (arXiv 1703.04730); influence unlearning as a baseline: Jia et al. 2023 (arXiv 2304.04934)")


def _default_weights(kind: str) -> str:
    """'1.0; simnpo 0.125 from <source>': the methods' default weights, for the help of --forget_weight/--retain_weight."""
    others = [f"{m.name} {getattr(m, f'default_{kind}_weight')} from {m.weights_source}" for m in METHODS.values()
              if getattr(m, f"default_{kind}_weight") != 1.0]
    return "; ".join(["1.0", *others])


# The methods' own flags (--npo_beta, --undial_beta, ...), each defined once with its method in hf_unlearn/methods/.
MethodArguments = dataclasses.make_dataclass(
    "MethodArguments",
    [(h.name, h.type, field(default=h.default, metadata={"help": h.help})) for h in hyperparameters().values()],
)
MethodArguments.__module__ = __name__


@dataclass
class SophiaArguments:
    """SophiaG's flags (SOUL): read only with ``--unlearn_optimizer sophia``; the estimator's (`hessian_estimator`,
    `hessian_batch_fraction`) also with ``--unlearn_optimizer influence``."""

    hessian_estimator: str = field(
        default="gnb",
        metadata={"help": "SophiaG's Hessian estimate: 'gnb' (Gauss-Newton-Bartlett, Sophia-G, the default), "
                          "'hutchinson' (Sophia-H) or 'empirical' (S*g*g every step: SOUL's released code)."},
    )
    hessian_update_interval: int = field(
        default=10, metadata={"help": "k: refresh the Hessian every k optimizer steps. Default 10 (Sophia repo)."}
    )
    hessian_batch_fraction: float = field(
        default=1.0,
        metadata={"help": "Fraction of each batch's rows (forget and retain alike) that the GNB refresh samples from. "
                          "GNB is unbiased for any number of tokens and h is an EMA over refreshes, so 0.5 halves "
                          "the refresh's forward and backward for a noisier estimate. Default 1.0: the whole batch."},
    )
    sophia_rho: float = field(default=0.04, metadata={"help": "SophiaG rho. Default 0.04 (Sophia repo; SOUL)."})
    sophia_beta1: float = field(default=0.965, metadata={"help": "SophiaG beta1. Default 0.965 (Sophia repo)."})
    sophia_beta2: float = field(default=0.99, metadata={"help": "SophiaG beta2. Default 0.99 (Sophia repo)."})


@dataclass
class InfluenceArguments:
    """The one-shot influence step's flag: read only with ``--unlearn_optimizer influence``."""

    influence_damping: float = field(
        default=1e-3,
        metadata={"help": "lambda, added to the Hessian diagonal of the one-shot influence step theta <- theta - lr * "
                          "g / (max(h, 0) + lambda) (the damped Hessian of influence functions, Koh & Liang 2017). "
                          "Default 1e-3."},
    )


# TrainingArguments flags that shape an unlearning run: its recipe holds them beside the unlearning flags.
TRAINING_RECIPE_FIELDS = (
    "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
    "weight_decay", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "max_grad_norm", "seed", "bf16", "fp16",
)


@dataclass
class UnlearningConfig(TrainingArguments, PromptTemplateArguments, MethodArguments, SophiaArguments,
                       InfluenceArguments):
    r"""Training arguments for [`UnlearningTrainer`].

    Inherits every `TrainingArguments` flag, the prompt-format flags of `PromptTemplateArguments`
    (`--prompt_template` ...), the methods' own flags (`MethodArguments`, from their definitions in
    `hf_unlearn/methods/`: `--npo_beta`, `--undial_beta`, ...), SophiaG's (`SophiaArguments`) and the influence
    step's (`InfluenceArguments`). Defaults that differ from `TrainingArguments`:
    `learning_rate=1e-5`, `num_train_epochs=5`, `lr_scheduler_type="linear"`, `warmup_steps=0`,
    `weight_decay=0.01` (TOFU's unlearning recipe: lr 1e-5, 5 epochs, wd 0.01),
    `remove_unused_columns=False` (batches are nested), `logging_steps=5`, `save_strategy="no"`,
    `per_device_eval_batch_size=32` (batched TOFU evaluation).
    """

    # --- method -----------------------------------------------------------------------------
    unlearn_method: str = field(
        default="grad_diff",
        metadata={"help": "Unlearning objective, one of " + "; ".join(f"{m.name}: {m.paper}" for m in METHODS.values())
                          + ". Default grad_diff (TOFU's strongest simple baseline, Maini et al. 2024)."},
    )
    forget_weight: float | None = field(
        default=None,
        metadata={"help": "gamma, the weight of the forget term. Default: the method's own "
                          f"({_default_weights('forget')})."},
    )
    retain_weight: float | None = field(
        default=None,
        metadata={"help": "alpha, the weight of the retain term. Default: the method's own "
                          f"({_default_weights('retain')})."},
    )
    retain_loss_type: str = field(
        default="nll",
        metadata={"help": "Retain term R: 'nll' (NLL on retain answers) or 'kl' (KL(p_ref || p_theta) on retain "
                          "answer tokens). Default nll (TOFU's grad_diff)."},
    )
    retain_kl_positions: str = field(
        default="answer",
        metadata={"help": "Positions the KL retain term averages over: 'answer' (retain answer tokens, as the TOFU "
                          "paper defines it) or 'all' (every position of the padded batch, prompt and padding "
                          "included: open-unlearning's compute_kl_divergence, for comparable numbers). Default answer."},
    )
    max_length: int = field(
        default=512,
        metadata={"help": "Max tokens of prompt + answer. Default 512 (open-unlearning TOFU)."},
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={"help": "Max prompt tokens; longer prompts keep their end (TRL's keep_end). Default None: prompts "
                          "are never cut, and a prompt that leaves no room for its answer is an error."},
    )
    disable_dropout: bool = field(
        default=True,
        metadata={"help": "Set every dropout probability of the policy and of the reference to 0 (as TRL's "
                          "disable_dropout, default True there too): dropout would make the forget loss and the "
                          "reference's targets noisy. Matters for models trained with dropout (OPT, GPT-2, phi)."},
    )
    pairing_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of the forget->retain pairing; default: `seed`."},
    )

    # --- optimizer (SOUL) ----------------------------------------------------------------------
    unlearn_optimizer: str = field(
        default="adamw",
        metadata={"help": "'adamw' defers to Trainer and its `optim` flag; 'sophia' injects SophiaG (SOUL, arXiv "
                          "2404.18239); 'influence' is one-shot influence unlearning (" + INFLUENCE_SOURCE + "): the "
                          "method's gradient and the --hessian_estimator's Hessian diagonal, each averaged over one "
                          "pass over the forget set (a refresh every step), then one step theta <- theta - lr * g / "
                          "(max(h, 0) + --influence_damping) at the last step (learning rate constant, no weight "
                          "decay; needs --max_grad_norm 0 and --num_train_epochs 1 or --max_steps). Default adamw."},
    )

    # --- TrainingArguments defaults changed for unlearning ---------------------------------------
    learning_rate: float = field(default=1e-5, metadata={"help": "Default 1e-5 (TOFU unlearning)."})
    num_train_epochs: float = field(default=5.0, metadata={"help": "Default 5 (TOFU unlearning)."})
    weight_decay: float = field(default=0.01, metadata={"help": "Default 0.01 (TOFU unlearning)."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: unlearning batches are nested {'forget': ..., 'retain': ...}."}
    )
    logging_steps: float = field(default=5, metadata={"help": "Default 5."})
    save_strategy: str = field(default="no", metadata={"help": "Default 'no' (save at the end only)."})
    per_device_eval_batch_size: int = field(
        default=32,
        metadata={"help": "Questions per forward pass and per generate call in the TOFU evaluations. Default 32 "
                          "(bench P4: 2.3x the throughput of one question at a time)."},
    )

    def __post_init__(self):
        super().__post_init__()
        problems = []
        if self.unlearn_method not in METHODS:
            problems.append(f"unknown unlearn_method {self.unlearn_method!r}; known: {', '.join(method_names())}")
        if self.retain_loss_type not in ("nll", "kl"):
            problems.append(f"retain_loss_type must be 'nll' or 'kl', got {self.retain_loss_type!r}")
        if self.retain_kl_positions not in ("answer", "all"):
            problems.append(f"retain_kl_positions must be 'answer' or 'all', got {self.retain_kl_positions!r}")
        if self.unlearn_optimizer not in UNLEARN_OPTIMIZERS:
            problems.append(f"unknown unlearn_optimizer {self.unlearn_optimizer!r}; known: {', '.join(UNLEARN_OPTIMIZERS)}")
        if self.hessian_estimator not in estimator_names():
            problems.append(f"unknown hessian_estimator {self.hessian_estimator!r}; known: {', '.join(estimator_names())}")
        for name in ("forget_weight", "retain_weight", "sophia_rho", "sophia_beta1", "sophia_beta2",
                     "influence_damping"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                problems.append(f"{name} must be a finite number, got {value}")
        problems += [p for h in hyperparameters().values() if (p := h.problem(getattr(self, h.name)))]
        if not 0.0 < self.hessian_batch_fraction <= 1.0:
            problems.append(f"hessian_batch_fraction must be in (0, 1], got {self.hessian_batch_fraction}")
        elif self.hessian_batch_fraction != 1.0 and self.hessian_estimator != "gnb":
            problems.append(f"hessian_batch_fraction {self.hessian_batch_fraction} applies to --hessian_estimator gnb "
                            f"only, not {self.hessian_estimator!r}: leave it at 1.0")
        if self.hessian_update_interval < 1:
            problems.append(f"hessian_update_interval must be >= 1, got {self.hessian_update_interval}")
        if self.unlearn_optimizer == "sophia":
            if self.sophia_rho <= 0:
                problems.append(f"sophia_rho must be > 0, got {self.sophia_rho}")
            for name in ("sophia_beta1", "sophia_beta2"):
                if not 0.0 <= getattr(self, name) < 1.0:
                    problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
            if self.learning_rate <= 0:
                problems.append(f"learning_rate must be > 0 for SophiaG, got {self.learning_rate}")
        if self.unlearn_optimizer == "influence":
            problems += self._influence_problems()
        if self.max_length < 2:
            problems.append(f"max_length must be >= 2, got {self.max_length}")
        elif self.max_prompt_length is not None and not 1 <= self.max_prompt_length < self.max_length:
            problems.append(f"need 1 <= max_prompt_length < max_length, got {self.max_prompt_length} / {self.max_length}")
        if problems:
            raise ValueError("Invalid UnlearningConfig: " + "; ".join(problems) + ".")

    def _influence_problems(self) -> list[str]:
        """What keeps the one-shot influence step from being the update it is defined as."""
        problems = []
        if not self.influence_damping > 0:
            problems.append(f"influence_damping must be > 0 (it is added to the Hessian before dividing), got "
                            f"{self.influence_damping}")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate (the influence step's scale) must be > 0, got {self.learning_rate}")
        if self.max_grad_norm and self.max_grad_norm > 0:
            problems.append("unlearn_optimizer='influence' averages the gradients of every step before its one "
                            f"update, and clipping each of them (max_grad_norm {self.max_grad_norm}) would change that "
                            "mean: set --max_grad_norm 0")
        if self.max_steps <= 0 and self.num_train_epochs != 1:
            problems.append(f"unlearn_optimizer='influence' takes one pass over the forget set and one update at its "
                            f"end, not {self.num_train_epochs} epochs: set --num_train_epochs 1 (or --max_steps N for "
                            "the first N steps)")
        return problems

    def recipe(self) -> dict:
        """The flags that define this run (the model card's recipe): the unlearning flags it uses (its method's
        own, the retain flags only with a retain term, SophiaG's only with SophiaG) and `TRAINING_RECIPE_FIELDS`."""
        method = get_method(self.unlearn_method)
        unused = set(hyperparameters()) - {h.name for h in method.hyperparameters}
        settings = method.settings_from(self)
        if not method.needs_retain(settings):
            unused |= {"retain_weight", "retain_loss_type"}
        if not (method.needs_retain(settings) and settings.retain_loss_type == "kl"):
            unused.add("retain_kl_positions")
        if self.unlearn_optimizer not in SECOND_ORDER_OPTIMIZERS:
            unused |= {f.name for f in dataclasses.fields(SophiaArguments)}
        elif self.unlearn_optimizer == "influence":  # refreshed every step; no SophiaG update
            unused |= {"hessian_update_interval", "sophia_rho", "sophia_beta1", "sophia_beta2"}
        if self.unlearn_optimizer != "influence":
            unused |= {f.name for f in dataclasses.fields(InfluenceArguments)}
        inherited = {f.name for cls in (TrainingArguments, PromptTemplateArguments) for f in dataclasses.fields(cls)}
        names = [f.name for f in dataclasses.fields(self) if f.name not in inherited] + list(TRAINING_RECIPE_FIELDS)
        return {name: getattr(getattr(self, name), "value", getattr(self, name)) for name in names
                if name not in unused and hasattr(self, name)}  # (warmup_ratio is gone in recent transformers)


@dataclass
class UnlearningScriptArguments:
    """Data and evaluation flags of `examples/run_tofu.py` (TRL-style names)."""

    benchmark: str = field(
        default="tofu",
        metadata={"help": "Benchmark evaluated before, during and after training: a registered name "
                          "(hf_unlearn.eval.benchmarks; tofu is the default), or 'none' for no benchmark evaluation "
                          "(bring-your-own data). muse and wmdp bring their own data flags (hf_unlearn.entry): "
                          "--benchmark muse --help lists them."},
    )
    dataset_name: str = field(
        default="locuslab/TOFU",
        metadata={"help": "Hub dataset id or local folder of JSON-lines splits (e.g. ../shared/data/tofu)."},
    )
    forget_split: str = field(default="forget10", metadata={"help": "Split (or data file) to forget."})
    retain_split: str | None = field(
        default=None, metadata={"help": "Split (or data file) to keep. Default: the TOFU match (forget10 -> retain90)."}
    )
    holdout_split: str | None = field(
        default=None, metadata={"help": "Never-trained split for privacy metrics. Default: forget10 -> holdout10."}
    )
    question_column: str = field(default="question", metadata={"help": "Question column name."})
    answer_column: str = field(default="answer", metadata={"help": "Answer column name."})
    text_column: str | None = field(
        default=None, metadata={"help": "Use a single text column instead of question/answer (no TOFU evaluation)."}
    )
    retain_reference: str | None = field(
        default=None,
        metadata={"help": "tofu_eval.json of the retain model (written by finetune_tofu.py or hf_unlearn.eval): enables "
                          "forget quality and the forget-quality callback."},
    )
    eval_subsample: int | None = field(
        default=None, metadata={"help": "Evaluate during training on the first N questions of each split (speed)."}
    )
    final_eval_subsample: int | None = field(
        default=None,
        metadata={"help": "Evaluate before and after training on the first N questions of each split only (the retain "
                          "model's reference must cover the same forget questions). Default: every question."},
    )
    max_new_tokens: int = field(default=200, metadata={"help": "Greedy generation length for ROUGE (TOFU: 200)."})
    mia_include_eos: bool = field(
        default=False,
        metadata={"help": "TOFU evaluation: the MIA loss and zlib scores include the closing EOS, as the reference "
                          "evaluator computes them (its Min-K%% and Min-K%%++ leave it out, as ours always do). "
                          "Default off: answer tokens only (docs/conventions.md)."},
    )
    target_forget_quality: float | None = field(
        default=None, metadata={"help": "Stop when forget quality reaches this while utility stays >= min_model_utility."}
    )
    min_model_utility: float | None = field(default=None, metadata={"help": "Model-utility floor of the stop rule."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run model code from the Hub repo. Off by default: only enable for repos you trust."}
    )
    evaluate_before: bool = field(default=True, metadata={"help": "Also evaluate the starting model (card: before/after)."})
    skip_final_evaluation: bool = field(default=False, metadata={"help": "Skip the TOFU evaluation after training."})
    allow_overlap: bool = field(
        default=False,
        metadata={"help": "Accept forget rows that are also retain rows (more than 5%% is refused without it)."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace the contents of a non-empty --output_dir (an earlier run's output). Not needed to "
                          "resume into it with --resume_from_checkpoint."},
    )

    def __post_init__(self):
        from .eval.benchmarks import get_benchmark

        get_benchmark(self.benchmark)  # an unknown name fails here, listing the registered ones


@dataclass
class MuseScriptArguments(UnlearningScriptArguments):
    """Data and evaluation flags of `examples/run_muse.py`: run_tofu's flags with MUSE's defaults."""

    dataset_name: str = field(
        default="muse-bench/MUSE-News",
        metadata={"help": "muse-bench/MUSE-News, muse-bench/MUSE-Books, or a local folder in MUSE's GitHub release "
                          "layout (<dir>/<config>/<split>.json)."},
    )
    forget_split: str = field(
        default="raw/forget",
        metadata={"help": "Text to forget: raw/forget, or one request of scal/forget_1..4 or sust/forget_1..4."},
    )
    retain_split: str | None = field(default="raw/retain1", metadata={"help": "Text to keep. Default raw/retain1."})
    text_column: str | None = field(
        default="text", metadata={"help": "Column of the forget/retain documents (MUSE: text)."}
    )
    retain_reference: str | None = field(
        default=None,
        metadata={"help": "muse_eval.json of the retrain model (examples/finetune_muse.py --train_splits "
                          "retain1,retain2): enables privleak."},
    )
    max_new_tokens: int = field(
        default=128, metadata={"help": "VerbMem continuation length, and the gt cut (MUSE: 128)."}
    )
    knowmem_max_new_tokens: int = field(default=32, metadata={"help": "KnowMem answer length (MUSE: 32)."})
    benchmark: str = field(
        default="muse", metadata={"help": "muse (the six-way evaluation before, during and after training) or none."}
    )


@dataclass
class WMDPScriptArguments:
    """Data and evaluation flags of `examples/run_wmdp.py` (`unlearn.py --benchmark wmdp`): the training text comes
    from corpora, the evaluation from WMDP's own data (--dataset_name)."""

    dataset_name: str = field(default="cais/wmdp", metadata={
        "help": "WMDP evaluation data: cais/wmdp or a folder with wmdp-bio.json, wmdp-cyber.json, mmlu/<subject>.json."})
    mmlu_dataset_name: str | None = field(default=None, metadata={
        "help": "cais/mmlu or a folder of <subject>.json. Default: <dataset_name>/mmlu for a folder, else cais/mmlu."})
    wmdp_subsets: str = field(default="bio,cyber", metadata={"help": "WMDP subsets to evaluate (bio,cyber,chem)."})
    forget_corpora: str = field(default="bio-forget-corpus,cyber-forget-corpus", metadata={
        "help": "Comma-separated forget corpora: local .jsonl/.txt files or cais/wmdp-corpora names (bio-forget-corpus "
                "is gated: give its local file)."})
    retain_corpora: str = field(default="wikitext", metadata={
        "help": "Comma-separated retain corpora: local files, wikitext (wikitext-2-raw-v1) or *-retain-corpus."})
    min_text_length: int = field(default=0, metadata={"help": "Drop texts of at most this many characters (RMU min_len)."})
    eval_subsample: int | None = field(default=None, metadata={
        "help": "Evaluate during training on the first N questions of every task (speed)."})
    max_wmdp_acc: float | None = field(default=None, metadata={
        "help": "Stop rule: stop once every WMDP subset's accuracy is <= this (chance: 0.25) ..."})
    min_mmlu_acc: float | None = field(default=None, metadata={"help": "... while MMLU accuracy stays >= this."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run model code from the Hub repo."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an earlier run's output_dir."})
    evaluate_before: bool = field(default=True, metadata={"help": "Also evaluate the starting model."})
    skip_final_evaluation: bool = field(default=False, metadata={"help": "Skip the evaluation after training."})
    benchmark: str = field(
        default="wmdp", metadata={"help": "wmdp (WMDP and MMLU before, during and after training) or none."}
    )


@dataclass
class ModelArguments(ModelConfig):
    """TRL's `ModelConfig` (model, dtype, LoRA flags) plus `--gguf_file`, as transformers' `from_pretrained` has it.

    A GGUF model is given either as ``--model_name_or_path path/to/model.gguf`` or as the folder plus
    ``--gguf_file NAME``; it is dequantized on load and saved as an ordinary safetensors model."""

    gguf_file: str | None = field(
        default=None,
        metadata={"help": "GGUF file inside --model_name_or_path (a folder), dequantized on load (needs the gguf "
                          "package). A path ending in .gguf given as --model_name_or_path needs no --gguf_file."},
    )
