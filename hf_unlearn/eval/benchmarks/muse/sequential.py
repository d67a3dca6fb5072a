"""MUSE's side of a sequential run (:mod:`hf_unlearn.sequential`): text splits as requests (sust: one after
another; scal: each from the original model), each evaluated six ways by `evaluate_muse`."""

from __future__ import annotations


import datasets

from ....sequential import SequentialRequests
from . import check_muse, evaluate_muse


class MuseRequests(SequentialRequests):
    """MUSE text splits (``sust/forget_k``, ``scal/forget_k``, any ``config/split``); the six-way MUSE
    evaluation after every request (it reads the fixed verbmem / knowmem / privleak splits, so every
    request is evaluated on the same questions; reference k is the retrain model's muse_eval.json)."""

    name = "muse"
    key_columns = ("text",)
    card_metrics = ("forget_verbmem_rouge", "forget_knowmem_rouge", "retain_knowmem_rouge", "privleak")

    def __init__(self, dataset_name: str, *, retain_split: str = "raw/retain1", batch_size: int = 32,
                 verbmem_max_new_tokens: int = 128, knowmem_max_new_tokens: int = 32, show_progress: bool = True):
        self.dataset_name = dataset_name
        self.retain_split = retain_split
        self.eval_kwargs = dict(batch_size=batch_size, verbmem_max_new_tokens=verbmem_max_new_tokens,
                                knowmem_max_new_tokens=knowmem_max_new_tokens, show_progress=show_progress)
        self._checked = False

    def default_mode(self, splits: list[str]) -> str:
        """sust (disjoint batches) is sequential; scal (nested sizes) is each from the original model."""
        from ....data.muse import parse_split

        configs = {parse_split(split)[0] for split in splits}
        return "independent" if configs == {"scal"} else "disjoint"

    def load(self, split: str, role: str = "forget") -> datasets.Dataset:
        from ....data.muse import load_texts

        return datasets.Dataset.from_dict({"text": load_texts(self.dataset_name, split)})

    def default_retain(self, eval_split: str) -> str:
        return self.retain_split

    def check_evaluation(self, eval_split: str) -> None:
        if not self._checked:  # the same splits for every request
            check_muse(self.dataset_name, verbmem_max_new_tokens=self.eval_kwargs["verbmem_max_new_tokens"],
                       knowmem_max_new_tokens=self.eval_kwargs["knowmem_max_new_tokens"])
            self._checked = True

    def check_reference(self, reference: str, eval_split: str, number: int) -> None:
        """A MUSE evaluation (not TOFU's) of the same privleak texts."""
        try:
            check_muse(self.dataset_name, retain_reference=reference)
        except (ValueError, FileNotFoundError) as err:
            raise ValueError(f"--retain_references entry {number} ({reference}): {err}") from None

    def evaluate(self, model, tokenizer, eval_split: str, reference: str | None, template=None):
        return evaluate_muse(model, tokenizer, self.dataset_name, retain_reference=reference, **self.eval_kwargs)
