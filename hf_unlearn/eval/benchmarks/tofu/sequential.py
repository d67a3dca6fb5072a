"""TOFU's side of a sequential run (:mod:`hf_unlearn.sequential`): question/answer splits as requests, each
evaluated by `evaluate_tofu` on its evaluation split against its retain model's reference."""

from __future__ import annotations


import datasets

from ....data.tofu import default_splits
from ....sequential import SequentialRequests
from . import EVAL_FILE, FORMAT_NAME, evaluate_tofu, load_reference, resolve_splits


class TofuRequests(SequentialRequests):
    """TOFU question/answer splits; evaluation `evaluate_tofu` on the request's evaluation split."""

    name = "tofu"
    card_metrics = ("forget_quality", "model_utility", "forget_rouge")

    def __init__(self, dataset_name: str, *, key_columns=("question", "answer"), holdout_split: str | None = None,
                 batch_size: int = 32, max_new_tokens: int = 200, subsample: int | None = None,
                 show_progress: bool = True):
        self.dataset_name = dataset_name
        self.key_columns = tuple(key_columns)
        self.holdout_split = holdout_split
        self.eval_kwargs = dict(batch_size=batch_size, max_new_tokens=max_new_tokens, subsample=subsample,
                                show_progress=show_progress)

    def default_mode(self, splits: list[str]) -> str:
        return "cumulative"  # forget01 < forget05 < forget10

    def load(self, split: str, role: str = "forget") -> datasets.Dataset:
        """A split, every row checked (a bad row is named by file and line)."""
        from ....validation import load_checked_split

        flag = "--forget_splits" if role == "forget" else "--retain_split"
        return load_checked_split(self.dataset_name, split, self.key_columns, role, flag)

    def check_evaluation(self, eval_split: str) -> None:
        """The evaluation splits of `eval_split` exist and their rows are sound."""
        from ....validation import RunInputError, tofu_evaluation_files

        holdout = resolve_splits(eval_split, self.holdout_split)["holdout"]
        if tofu_evaluation_files(self.dataset_name, eval_split, holdout) is None:
            raise RunInputError(f"{self.dataset_name} has no {eval_split}_perturbed split: the evaluation after the "
                                f"request on {eval_split} needs it (and retain_perturbed, real_authors_perturbed, "
                                "world_facts_perturbed).")

    def default_retain(self, eval_split: str) -> str | None:
        return default_splits(eval_split)[0]

    def check_reference(self, reference: str, eval_split: str, number: int) -> None:
        """A reference must be a TOFU per-question file evaluated on this request's evaluation split."""
        data = load_reference(reference)  # names the file and what it lacks
        found = data.get("format")
        if found is not None and found != FORMAT_NAME:
            raise ValueError(f"--retain_references entry {number} ({reference}) is a {found!r} file, not a TOFU "
                             f"evaluation ({EVAL_FILE}): give the retain model's TOFU evaluation on {eval_split}.")
        config = data.get("config") or {}
        split = config.get("forget_split")
        if split is not None and split.removesuffix("_perturbed") != eval_split:
            raise ValueError(
                f"--retain_references entry {number} ({reference}) was evaluated on {split!r}, but request {number} "
                f"is evaluated on {eval_split!r}: give the reference made on {eval_split} (for TOFU the retain model "
                f"of that split, e.g. {self.default_retain(eval_split) or 'its retain model'}).")
        holdout = resolve_splits(eval_split, self.holdout_split)["holdout"]
        if "holdout_split" in config and config["holdout_split"] != holdout:
            raise ValueError(
                f"--retain_references entry {number} ({reference}) was evaluated with holdout split "
                f"{config['holdout_split']!r}, but request {number} would use {holdout!r}"
                + (" (--holdout_split)" if self.holdout_split else "") + ": leave --holdout_split unset, so that "
                "each request uses its own split's holdout, or give references made with the same holdout split.")

    def evaluate(self, model, tokenizer, eval_split: str, reference: str | None, template=None):
        return evaluate_tofu(model, tokenizer, self.dataset_name, eval_split, holdout_split=self.holdout_split,
                             retain_reference=reference, template=template, **self.eval_kwargs)
