"""`evaluate` modules of the evaluation's metrics, for pipelines that score models themselves.

Each is a folder with its `evaluate.Metric` script, loaded with ``evaluate.load(path(name))`` (the `evaluate`
extra: ``pip install hf-unlearn[evaluate]``). Each computes its value with the same functions as
`hf_unlearn.eval` (`hf_unlearn.eval.metrics` and the benchmarks' own helpers), so it gives the number the
evaluation gives for the same per-question inputs (tests/test_evaluate_modules.py compares them).

=================  =======================================================  ==============================
module             inputs (one row per question / text)                     output
=================  =======================================================  ==============================
forget_quality     predictions: the model's forget truth ratios;            ``forget_quality`` (KS p-value)
                   references: the retain model's, same questions
truth_ratio        paraphrased_avg_nll, perturbed_avg_nll (a list);         ``truth_ratio`` (config
                   config ``forget`` or ``utility``                         ``forget``: mean min(R, 1/R);
                                                                            ``utility``: mean max(0, 1 - R)),
                                                                            ``truth_ratios`` (per question)
privleak           token_logprobs, reference_token_logprobs (answer /       ``privleak``, ``auc``,
                   text tokens), is_forget (1 forget, 0 holdout);           ``reference_auc`` (Min-K%, k 40%)
                   config ``tofu`` or ``muse``
verbmem_rouge      predictions: continuations; references: ``gt`` cut to    ``verbmem_rouge`` (mean ROUGE-L
                   the generation length                                    F1, no stemmer)
knowmem_rouge      predictions: raw generated answers (cut here at MUSE's   ``knowmem_rouge``
                   stop strings); references: the answers
=================  =======================================================  ==============================
"""

from pathlib import Path

MODULES = ("forget_quality", "truth_ratio", "privleak", "verbmem_rouge", "knowmem_rouge")


def path(name: str) -> str:
    """The folder of module `name` inside the installed package: ``evaluate.load(path("forget_quality"))``."""
    if name not in MODULES:
        raise ValueError(f"Unknown evaluate module {name!r}; known: {', '.join(MODULES)}.")
    return str(Path(__file__).resolve().parent / name)
