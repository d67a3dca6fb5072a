"""The membership attacks that need more than the evaluated model's token log-probs: gradient norm (one backward
per answer) and reference model (a second model's losses). Their scores follow `metrics`' convention: lower =
more member-like, so `metrics.mia_auc` reads them like the loss / zlib / Min-K% scores.

* gradient norm (Duan et al. 2024, arXiv 2402.17012; open-unlearning's `GradNormAttack`): the mean over the
  trainable parameter tensors of ||d loss / d W||_p, loss = the answer's mean NLL. Members sit nearer a minimum:
  smaller gradients. (open-unlearning returns minus this norm; docs/conventions.md.)
* reference (likelihood ratio, open-unlearning's `ReferenceAttack`): the answer's mean NLL under the evaluated
  model minus that under a reference model (the retain model by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from .runner import gather, shard
from .scoring import _encode_pairs, _model_device, dist_rank_world, score_sequences

__all__ = ["AttackOptions", "gradient_norm_scores", "qa_attack_scores", "reference_attack_scores",
           "sequence_attack_scores", "sequence_gradient_norms"]


@dataclass
class AttackOptions:
    """The two attacks' flags of ``python -m hf_unlearn.eval`` (TOFU's and MUSE's options inherit them)."""

    mia_gradnorm: bool = field(
        default=True,
        metadata={"help": "Run the gradient-norm membership attack (one backward per forget and holdout answer, or "
                          "MUSE privleak text). Default on; off under ZeRO-3."},
    )
    mia_reference_model: Optional[str] = field(
        default=None,
        metadata={"help": "Model (folder or Hub id) of the reference-model membership attack (target loss minus "
                          "reference loss). Default: the retain (MUSE: retrain) reference's own losses, when "
                          "--retain_reference is given."},
    )


def _mean_nll(model, ids: list[int], n_prompt: int, include_eos: bool, device) -> torch.Tensor:
    """Mean NLL of the answer tokens (and the closing EOS with `include_eos`) of one encoded pair, with grad."""
    input_ids = torch.tensor([ids], device=device)
    logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits[0]
    end = len(ids) if include_eos else len(ids) - 1  # the last token is the EOS that closes the answer
    rows = logits[n_prompt - 1: end - 1]
    logp = torch.log_softmax(rows.float() if rows.dtype in (torch.float16, torch.bfloat16) else rows, -1)
    return -logp.gather(-1, input_ids[0, n_prompt:end].unsqueeze(-1)).mean()


def gradient_norm_scores(model, tokenizer, pairs: Sequence[tuple[str, str]], *, include_eos: bool = False,
                         p: float = 2.0, template=None) -> np.ndarray:
    """[N] gradient-norm attack scores of the (question, answer) pairs, one backward each
    (`sequence_gradient_norms` on their encodings)."""
    return sequence_gradient_norms(model, _encode_pairs(tokenizer, pairs, template), include_eos=include_eos, p=p)


def sequence_gradient_norms(model, encoded: Sequence[tuple[list[int], int]], *, include_eos: bool = False,
                            p: float = 2.0) -> np.ndarray:
    """[N] gradient-norm attack scores of tokenised sequences ``(ids, n_context)``: the tokens after the context
    are scored, the last one (the closing EOS) only with `include_eos`.

    Gradients go through `torch.autograd.grad` on the trainable parameters: no `.grad` is written, so an
    evaluation during training leaves the accumulated gradients alone. Dropout is off (eval mode)."""
    if p not in (1, 2, float("inf")):
        raise ValueError(f"gradient_norm_scores: p must be 1, 2 or inf, got {p}")
    params = [w for w in model.parameters() if w.requires_grad]
    if not params:
        raise ValueError("gradient_norm_scores: the model has no trainable parameters to take gradients of.")
    device, was_training = _model_device(model), model.training
    model.eval()
    out = np.empty(len(encoded), dtype=np.float64)
    try:
        with torch.enable_grad():
            for i, (ids, n_prompt) in enumerate(encoded):
                grads = torch.autograd.grad(_mean_nll(model, ids, n_prompt, include_eos, device), params,
                                            allow_unused=True)
                norms = [g.detach().double().norm(p) for g in grads if g is not None]
                out[i] = float(torch.stack(norms).mean())
    finally:
        model.train(was_training)
    return out


def reference_attack_scores(target_loss, reference_loss) -> np.ndarray:
    """[N] target mean NLL minus reference mean NLL, per answer (lower = more member-like)."""
    target, reference = np.asarray(target_loss, dtype=np.float64), np.asarray(reference_loss, dtype=np.float64)
    if target.shape != reference.shape:
        raise ValueError(f"reference attack: {target.size} target losses for {reference.size} reference losses")
    return target - reference


def _load_reference_model(reference_model, like):
    """A model object as is; a path or Hub id loaded like the evaluated model (dtype, device), frozen."""
    if not isinstance(reference_model, (str, bytes)) and hasattr(reference_model, "forward"):
        return reference_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(reference_model), dtype=getattr(like, "dtype", None))
    return model.to(_model_device(like)).eval().requires_grad_(False)


def qa_attack_scores(model, tokenizer, pairs: dict[str, list[tuple[str, str]]], target_loss: dict[str, list[float]],
                     *, include_eos: bool, template=None, gradnorm: bool = True, reference_model=None,
                     reference_loss: dict[str, list[float]] | None = None, batch_size: int = 32,
                     show_progress: bool = False) -> dict[str, dict[str, list[float]]]:
    """{split: {"mia_gradnorm": [...], "mia_reference": [...]}} for the question-answer `pairs` of each split:
    `sequence_attack_scores` on their encodings (prompt as context; the answer, and its closing EOS with
    `include_eos`, scored)."""
    encoded = {key: _encode_pairs(tokenizer, rows, template) for key, rows in pairs.items()}
    return sequence_attack_scores(model, tokenizer, encoded, target_loss, include_eos=include_eos, gradnorm=gradnorm,
                                  reference_model=reference_model, reference_loss=reference_loss,
                                  batch_size=batch_size, show_progress=show_progress)


def sequence_attack_scores(model, tokenizer, encoded: dict[str, list[tuple[list[int], int]]],
                           target_loss: dict[str, list[float]], *, include_eos: bool, gradnorm: bool = True,
                           reference_model=None, reference_loss: dict[str, list[float]] | None = None,
                           batch_size: int = 32, show_progress: bool = False) -> dict[str, dict[str, list[float]]]:
    """{split: {"mia_gradnorm": [...], "mia_reference": [...]}} for the tokenised sequences ``(ids, n_context)``
    of each split (the last token is the closing EOS, scored only with `include_eos`).

    Work is sharded over the processes like the other scores and gathered, so every rank returns the same.
    The reference attack reads `reference_model` (a model or a path: its losses are computed here) or else
    `reference_loss` (the reference model's own per-item losses, from its evaluation file); neither: left out.
    `target_loss` holds the evaluated model's per-item losses (the LOSS attack's scores, same EOS rule)."""
    rank, world = dist_rank_world()
    owned = {key: [i for i, real in shard(len(rows), rank, world) if real] for key, rows in encoded.items()}
    out: dict[str, dict[str, list[float]]] = {key: {} for key in encoded}
    if gradnorm:
        local = {}
        for key, idx in owned.items():
            scores = sequence_gradient_norms(model, [encoded[key][i] for i in idx], include_eos=include_eos)
            local.update({(key, i): float(s) for i, s in zip(idx, scores)})
        merged = gather(local)
        for key, rows in encoded.items():
            out[key]["mia_gradnorm"] = [merged[(key, i)] for i in range(len(rows))]
    if reference_model is not None:
        ref = _load_reference_model(reference_model, model)
        local = {}
        for key, idx in owned.items():
            scores = score_sequences(ref, tokenizer, [encoded[key][i] for i in idx], batch_size=batch_size,
                                     with_token_stats=True, show_progress=show_progress,
                                     desc="reference model: scoring")
            # the LOSS attack's rule: the scored tokens, and the closing EOS with include_eos (its avg_nll)
            local.update({(key, i): float(s.avg_nll if include_eos else -np.mean(s.token_logprobs))
                          for i, s in zip(idx, scores)})
        merged = gather(local)
        reference_loss = {key: [merged[(key, i)] for i in range(len(rows))] for key, rows in encoded.items()}
    if reference_loss is not None:
        for key in encoded:
            out[key]["mia_reference"] = reference_attack_scores(target_loss[key], reference_loss[key]).tolist()
    return out
