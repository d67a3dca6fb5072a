"""``python -m bench.influence_tiny``: the one-shot influence step next to GradDiff x AdamW / SophiaG on the tests'
tiny synthetic setup (about a minute on one CPU core; not part of ``make bench``).

A 2-layer Llama (hidden 64) memorises synthetic TOFU ``full`` (20 authors x 5 questions); a second one learns
``retain90`` only (the forget answers are then as unfamiliar as they should end up). Each run unlearns
``forget10`` (10 rows) from the memorising model and reports the mean answer NLL on forget10 and on retain90:
forgetting raises the first towards the retain model's, utility keeps the second low.
"""

from __future__ import annotations

import argparse
import tempfile

import datasets
import torch

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.data.formatting import encode_qa
from hf_unlearn.data.pairing import UnlearningCollator
from hf_unlearn.methods import losses
from hf_unlearn.offline.synthetic import generate_tofu
from hf_unlearn.offline.tiny import build_tiny_llama, train_tokenizer

def runs(dampings, estimator):
    """(label, config overrides) of each unlearning run."""
    return [
        ("GradDiff x AdamW, lr 1e-3, 5 epochs", dict(unlearn_optimizer="adamw", learning_rate=1e-3,
                                                     num_train_epochs=5)),
        ("GradDiff x SophiaG, lr 1e-3, 5 epochs", dict(unlearn_optimizer="sophia", learning_rate=1e-3,
                                                       num_train_epochs=5, hessian_update_interval=1)),
        *[(f"influence ({estimator}), lr 1, damping {d:g}",
           dict(unlearn_optimizer="influence", learning_rate=1.0, num_train_epochs=1, max_grad_norm=0.0,
                weight_decay=0.0, influence_damping=d, hessian_estimator=estimator)) for d in dampings],
    ]


def _batch(tok, rows):
    encoded = [encode_qa(tok, r["question"], r["answer"]) for r in rows]
    return UnlearningCollator(tok).pad([{"input_ids": e.input_ids, "labels": e.labels} for e in encoded])


@torch.no_grad()
def answer_nll(model, tok, rows) -> float:
    part = _batch(tok, rows)
    return float(losses.nll(model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits,
                            part["labels"]))


def fit(tok, rows, steps: int, seed: int = 0):
    torch.manual_seed(seed)
    model = build_tiny_llama(tok, seed=seed, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=128)
    data = _batch(tok, rows)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(steps):
        index = torch.randperm(len(rows), generator=torch.Generator().manual_seed(step))[:16]
        part = {k: v[index] for k, v in data.items()}
        losses.nll(model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits,
                   part["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def main(argv=None) -> list[tuple[str, float, float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train_steps", type=int, default=400)
    parser.add_argument("--dampings", default="0.1,0.3,1,10", help="Comma-separated influence dampings.")
    parser.add_argument("--hessian_estimator", default="gnb")
    args = parser.parse_args(argv)
    splits = generate_tofu(num_authors=20, questions_per_author=5, seed=0)
    tok = train_tokenizer([r[k] for rows in splits.values() for r in rows for k in ("question", "answer")],
                          vocab_size=512)
    forget, retain = splits["forget10"], splits["retain90"]
    target = fit(tok, splits["full"], args.train_steps)
    retain_model = fit(tok, retain, args.train_steps)
    table = [("target (memorised full)", answer_nll(target, tok, forget), answer_nll(target, tok, retain)),
             ("retain model (never saw forget10)", answer_nll(retain_model, tok, forget),
              answer_nll(retain_model, tok, retain))]
    state = {k: v.clone() for k, v in target.state_dict().items()}
    for label, overrides in runs([float(d) for d in args.dampings.split(",")], args.hessian_estimator):
        target.load_state_dict(state)
        with tempfile.TemporaryDirectory() as out:
            config = dict(output_dir=out, per_device_train_batch_size=4, unlearn_method="grad_diff", seed=0,
                          disable_tqdm=True, report_to=[], logging_steps=100, lr_scheduler_type="constant")
            trainer = UnlearningTrainer(model=target, args=UnlearningConfig(**{**config, **overrides}),
                                        forget_dataset=datasets.Dataset.from_list(forget),
                                        retain_dataset=datasets.Dataset.from_list(retain), processing_class=tok)
            trainer.train()
        target.eval()
        table.append((label, answer_nll(target, tok, forget), answer_nll(target, tok, retain)))
    print(f"{'model':44s} {'forget10 NLL':>13s} {'retain90 NLL':>13s}")
    for label, f, r in table:
        print(f"{label:44s} {f:13.3f} {r:13.3f}")
    return table


if __name__ == "__main__":
    main()
