"""Unlearn a TOFU forget split with any method x optimizer, evaluate, plot, and optionally push.

    accelerate launch examples/run_tofu.py --config recipes/tofu/npo_sophia.yaml \
        --model_name_or_path <target model> --retain_reference <retain model>/tofu_eval.json

Flags: `UnlearningConfig` (TrainingArguments + unlearning), `UnlearningScriptArguments` (data/eval)
and TRL's `ModelConfig` (model, dtype, LoRA: --use_peft --lora_r 8 ...). A YAML recipe holds the same flags.
This is `examples/unlearn.py` with --benchmark tofu as the default.
"""

import sys

import unlearn
from hf_unlearn.entry import card_flags  # noqa: F401  (tune.py's import)
from hf_unlearn.validation import run_script


def make_parser():
    return unlearn.make_parser("tofu")


def main(argv=None):
    """`unlearn.py` with --benchmark tofu by default; returns the summary after training (None: not evaluated)."""
    return unlearn.main(argv, default="tofu", prog="run_tofu")[1]


if __name__ == "__main__":
    sys.exit(run_script(main))
