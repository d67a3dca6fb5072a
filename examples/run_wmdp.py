"""Unlearn hazardous knowledge (WMDP) with RMU, NPO or UNDIAL; evaluate WMDP and MMLU through lm-eval.

    accelerate launch examples/run_wmdp.py --config recipes/wmdp/rmu_adamw.yaml

Offline, on the made-up WMDP-format set and a tiny model that has learnt it:

    python -m hf_unlearn.offline.wmdp_synthetic --output_dir wmdp_data --model_dir wmdp_target
    python examples/run_wmdp.py --config recipes/wmdp/rmu_adamw.yaml --model_name_or_path wmdp_target \
        --dtype float32 --bf16 false --dataset_name wmdp_data --rmu_layer 2 --output_dir wmdp_rmu \
        --forget_corpora wmdp_data/corpora/bio-forget-corpus.jsonl,wmdp_data/corpora/cyber-forget-corpus.jsonl \
        --retain_corpora wmdp_data/corpora/wikitext.jsonl

Flags: `UnlearningConfig` (TrainingArguments + unlearning), `WMDPScriptArguments` (hf_unlearn/config.py: data,
evaluation) and TRL's `ModelConfig` (model, dtype, LoRA). A YAML recipe holds the same flags. This is
`examples/unlearn.py` with --benchmark wmdp as the default.
"""

import sys

import unlearn
from hf_unlearn.config import WMDPScriptArguments  # noqa: F401  (its flags, as before)
from hf_unlearn.validation import run_script


def make_parser():
    return unlearn.make_parser("wmdp")


def main(argv=None):
    """`unlearn.py` with --benchmark wmdp by default; returns (before, after), the summaries of the evaluations."""
    return unlearn.main(argv, default="wmdp", prog="run_wmdp")


if __name__ == "__main__":
    sys.exit(run_script(main))
