"""``python -m bench.conventions``: the size of each definition difference listed in docs/conventions.md,
on a small case: a tiny float64 Llama trained for 60 AdamW steps on the synthetic TOFU `full` split (so its
answers are peaked, as a fine-tuned target's are), 4 forget / retain rows; the reference is that model with 2%
noise on its weights. Prints one markdown table: ours, theirs, relative difference; then how closely each MIA
attack of the TOFU evaluation matches the reference evaluator's, with and without ``--mia_include_eos``.

The "theirs" formulas are written out here from the reference evaluator (open-unlearning), the original TOFU
code and the WMDP code, as docs/conventions.md describes them.
"""

from __future__ import annotations

import copy
import math
import tempfile
import zlib
from pathlib import Path

import numpy as np

import torch
import torch.nn.functional as F

from hf_unlearn.data.formatting import IGNORE_INDEX, encode_prompt, encode_qa, resolve_prompt_template
from hf_unlearn.data.pairing import UnlearningCollator
from hf_unlearn.data.refusals import refusal_for
from hf_unlearn.eval.scoring import score_answers
from hf_unlearn.methods import losses
from hf_unlearn.methods.idk import dpo_loss
from hf_unlearn.methods.npo import simnpo_loss
from hf_unlearn.methods.rmu import rmu_forget_loss
from hf_unlearn.methods.undial import soft_cross_entropy, undial_target
from hf_unlearn.models.layers import decoder_layer_output
from hf_unlearn.offline.synthetic import generate_tofu
from hf_unlearn.offline.tiny import build_tiny_llama, train_tokenizer


def _setup(seed: int = 0, train_steps: int = 60):
    splits = generate_tofu(num_authors=20, questions_per_author=5, seed=seed)
    tok = train_tokenizer([r[k] for rows in splits.values() for r in rows for k in ("question", "answer")],
                          vocab_size=512)
    model = build_tiny_llama(tok, seed=seed, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=128).double()
    full = _batch(tok, splits["full"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(train_steps):
        rows = slice((step * 16) % len(splits["full"]), (step * 16) % len(splits["full"]) + 16)
        part = {k: v[rows] for k, v in full.items()}
        loss = losses.nll(model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits,
                          part["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    reference = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.02 * p.abs().mean() * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return splits, tok, model, reference


def _batch(tok, rows, answers=None):
    collate = UnlearningCollator(tok)
    enc = [encode_qa(tok, r["question"], a) for r, a in zip(rows, answers or [r["answer"] for r in rows])]
    return collate.pad([{"input_ids": e.input_ids, "labels": e.labels} for e in enc])


def _logits(model, part):
    with torch.no_grad():
        return model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits


def _undial_all_positions(logits, teacher, labels, beta):
    """open-unlearning's compute_undial_loss: every shifted position of the padded batch, -100 labels included
    (as an index, -100 picks vocabulary entry V-100)."""
    z, t, y = logits[:, :-1], teacher[:, :-1], labels[:, 1:]
    mask = torch.zeros_like(t)
    mask[torch.arange(t.shape[0])[:, None, None], torch.arange(t.shape[1])[None, :, None], y.unsqueeze(-1)] = 1.0
    target = F.softmax(t - beta * mask, -1)
    return F.cross_entropy(z.reshape(-1, z.shape[-1]), target.reshape(-1, t.shape[-1]))


def _rel(ours: float, theirs: float) -> str:
    return "0" if ours == theirs else f"{abs(theirs - ours) / max(abs(ours), 1e-300):.3g}"


def measure(seed: int = 0, train_steps: int = 60) -> list[tuple[str, str, str, str]]:
    splits, tok, model, reference = _setup(seed, train_steps)
    forget, retain = splits["forget10"][:4], splits["retain90"][:4]
    f, r = _batch(tok, forget), _batch(tok, retain)
    idk = _batch(tok, forget, [refusal_for(i, seed) for i in range(len(forget))])
    rows = []

    # KL retain term: answer tokens vs every position (batchmean over B*T rows)
    z, zr = _logits(model, r), _logits(reference, r)
    ours = losses.kl_on_answers(z, losses.answer_rows(zr, r["labels"]), r["labels"]).item()
    theirs = losses.kl_all_positions(z, zr).item()
    rows.append(("KL retain (retain_kl_positions answer / all)", f"{ours:.5g}", f"{theirs:.5g}", _rel(ours, theirs)))

    # UNDIAL: mean over answer tokens vs over every shifted position
    z, zt = _logits(model, f), _logits(reference, f)
    target = undial_target(losses.answer_rows(zt, f["labels"]), losses.answer_labels(f["labels"]), 10.0)
    ours = soft_cross_entropy(z, target, f["labels"]).item()
    theirs = _undial_all_positions(z, zt, f["labels"], 10.0).item()
    rows.append(("UNDIAL forget loss (beta 10): answer tokens / all positions", f"{ours:.5g}", f"{theirs:.5g}",
                 _rel(ours, theirs)))

    # IdkDPO: DPO loss without / with the 2/beta factor
    beta = 0.1
    seq = lambda m, p: losses.sequence_nll(_logits(m, p), p["labels"])  # noqa: E731
    ours = dpo_loss(seq(model, idk), seq(model, f), seq(reference, idk), seq(reference, f), beta).item()
    theirs = 2 / beta * ours
    rows.append(("IdkDPO forget loss (beta 0.1): -log sigma / x 2/beta", f"{ours:.5g}", f"{theirs:.5g}",
                 _rel(ours, theirs)))

    # SimNPO margin: paper's gamma outside beta vs open-unlearning's delta inside
    seq_f, lengths = seq(model, f), losses.answer_lengths(f["labels"])
    b, margin = 4.5, 1.0
    ours = simnpo_loss(seq_f, lengths, b, margin).item()
    theirs = (-(2 / b) * F.logsigmoid(b * (seq_f / lengths - margin))).mean().item()
    rows.append(("SimNPO (beta 4.5, margin 1): gamma outside / delta inside beta", f"{ours:.5g}", f"{theirs:.5g}",
                 _rel(ours, theirs)))

    # RMU forget term at the last layer (c = 20): token mean over the batch / per-row means / all positions
    control = 20 * torch.rand(model.config.hidden_size, generator=torch.Generator().manual_seed(seed),
                              dtype=torch.float64)
    control = control * 20 / control.norm()
    with torch.no_grad():
        h = decoder_layer_output(model, 1, lambda: model(input_ids=f["input_ids"], attention_mask=f["attention_mask"]))
    mask = f["labels"] != IGNORE_INDEX
    sq = ((h - control) ** 2).mean(-1)  # [B, T]
    ours = rmu_forget_loss(h, mask, control).item()
    per_row = ((sq * mask).sum(1) / mask.sum(1)).mean().item()
    wmdp = sq.mean().item()
    rows.append(("RMU forget (layer L-1, c 20): answer-token mean / open-unlearning per-row mean", f"{ours:.5g}",
                 f"{per_row:.5g}", _rel(ours, per_row)))
    rows.append(("RMU forget: answer-token mean / WMDP mean over all positions", f"{ours:.5g}", f"{wmdp:.5g}",
                 _rel(ours, wmdp)))

    # MIA loss score: mean NLL over answer tokens without / with the final EOS
    scores = score_answers(model, tok, [(x["question"], x["answer"]) for x in splits["forget10"][:20]],
                           with_token_stats=True, show_progress=False)
    without = [float(-s.token_logprobs.mean()) for s in scores]
    with_eos = [s.avg_nll for s in scores]
    mean_rel = sum(abs(a - b) / a for a, b in zip(without, with_eos)) / len(scores)
    rows.append(("MIA loss score, 20 forget answers: without / with EOS (mean per answer)",
                 f"{sum(without) / len(without):.5g}", f"{sum(with_eos) / len(with_eos):.5g}", f"{mean_rel:.3g}"))
    # Prompt masking of whole-text templates: longest common prefix vs len(tokenize(prompt)) (open-unlearning)
    qa = resolve_prompt_template(tok, "question_answer")
    differ = scored_ours = scored_theirs = 0
    for x in splits["forget10"]:
        e = encode_qa(tok, x["question"], x["answer"], template=qa)
        n_prompt = len(encode_prompt(tok, x["question"], template=qa))
        ours_n = sum(label != IGNORE_INDEX for label in e.labels)
        theirs_n = len(e.input_ids) - n_prompt
        differ += ours_n != theirs_n
        scored_ours, scored_theirs = scored_ours + ours_n, scored_theirs + theirs_n
    n = len(splits["forget10"])
    rows.append((f"question_answer scored tokens, {n} forget rows: common prefix / len(prompt ids)",
                 str(scored_ours), str(scored_theirs), f"{differ}/{n} rows"))
    # The original TOFU code scores the answer tag ("Answer: ") too.
    tag = len(tok("Answer:", add_special_tokens=False)["input_ids"])
    rows.append(("question_answer: original TOFU code also scores the 'Answer:' tag", "0 tag tokens",
                 f"{tag} per row", "-"))
    # The default plain format tokenises prompt and answer apart; the reference evaluator tokenises them whole.
    plain = resolve_prompt_template(tok, "plain")
    same = sum(encode_qa(tok, x["question"], x["answer"], template=plain).input_ids ==
               encode_qa(tok, x["question"], x["answer"], template=qa).input_ids for x in splits["forget10"])
    rows.append(("plain (default, apart) vs question_answer (whole): identical token ids", f"{same}/{n} rows",
                 "", ""))
    return rows


def peer_mia_scores(model, tokenizer, question: str, answer: str) -> dict:
    """The reference evaluator's (open-unlearning) four attacks on one QA pair, written from its code: the loss
    attack is evaluate_probability's avg_loss over every labelled token (answer + EOS); zlib divides it by the
    zlib size of the answer; Min-K% and Min-K%++ read tokenwise_(vocab_)logprobs, which drop the last labelled
    token (the EOS), with k = 0.4 and num_k = max(1, int(n * k))."""
    example = encode_qa(tokenizer, question, answer)
    ids, labels = torch.tensor([example.input_ids]), torch.tensor([example.labels])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
    targets, labelled = labels[0, 1:], (labels[0, 1:] != -100)
    token_lp = logp[labelled].gather(-1, targets[labelled, None]).squeeze(-1)
    vocab = logp[labelled][:-1]
    mu = (vocab.exp() * vocab).sum(-1)
    sigma = ((vocab.exp() * vocab.square()).sum(-1) - mu.square()).clamp_min(1e-6).sqrt()
    loss = float(-token_lp.mean())

    def min_k(values):
        values = np.sort(values.numpy())
        return float(-values[: max(1, int(len(values) * 0.4))].mean())

    return {"mia_loss": loss, "mia_zlib": loss / len(zlib.compress(answer.encode("utf-8"))),
            "mia_min_k": min_k(token_lp[:-1]), "mia_min_k_plus_plus": min_k((token_lp[:-1] - mu) / sigma)}


ATTACKS = ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus")


def mia_include_eos_agreement(seed: int = 0, train_steps: int = 60) -> dict[bool, dict[str, float]]:
    """Largest per-question |ours - the reference evaluator's| of each MIA attack, with --mia_include_eos on
    (True) and off (False), over the forget10 and holdout10 questions of the synthetic TOFU."""
    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu
    from hf_unlearn.offline.synthetic import write_synthetic_tofu

    _, tok, model, _ = _setup(seed, train_steps)
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "tofu"
        write_synthetic_tofu(data, num_authors=20, questions_per_author=5, seed=seed)
        out = {}
        for flag in (True, False):
            per_sample, _ = evaluate_tofu(model, tok, str(data), forget_split="forget10", mia_include_eos=flag,
                                          max_new_tokens=2, show_progress=False)
            records = per_sample["forget"] + per_sample["holdout"]
            peer = [peer_mia_scores(model, tok, r["question"], r["answer"]) for r in records]
            out[flag] = {name: max(abs(r[name] - p[name]) for r, p in zip(records, peer)) for name in ATTACKS}
    return out


def main() -> None:
    torch.set_num_threads(1)
    print("| difference | ours | theirs | relative |\n|---|---|---|---|")
    for row in measure():
        print("| " + " | ".join(row) + " |")
    agreement = mia_include_eos_agreement()
    print("\n| attack: max per-question abs(ours - reference evaluator) | --mia_include_eos | without |\n|---|---|---|")
    for name in ATTACKS:
        print(f"| {name} | {agreement[True][name]:.2g} | {agreement[False][name]:.2g} |")


if __name__ == "__main__":
    main()
