"""Unlearn MUSE text (News or Books) with any method x optimizer, evaluate six ways, and optionally push.

    accelerate launch examples/run_muse.py --config recipes/muse/npo_sophia.yaml \
        --model_name_or_path <target model> --retain_reference <retrain model>/muse_eval.json

Flags: those of `run_tofu.py` (`UnlearningConfig`, TRL's `ModelConfig`) with MUSE's data defaults
(`MuseScriptArguments`: --forget_split raw/forget or scal/forget_k or sust/forget_k, --retain_split
raw/retain1). Documents are cut into windows of --max_length tokens, every token trained. This is
`examples/unlearn.py` with --benchmark muse as the default.
"""

import sys

import unlearn
from hf_unlearn.validation import run_script


def make_parser():
    return unlearn.make_parser("muse")


def main(argv=None):
    """`unlearn.py` with --benchmark muse by default; returns the summary after training (None: not evaluated)."""
    return unlearn.main(argv, default="muse", prog="run_muse")[1]


if __name__ == "__main__":
    sys.exit(run_script(main))
