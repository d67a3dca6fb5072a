"""Fixed-seed behaviour check: the same seed gives the same weights and TOFU numbers before and after a refactor.

    OMP_NUM_THREADS=1 python -m bench.fixed_seed_check --output_dir /tmp/before   # on the old commit
    OMP_NUM_THREADS=1 python -m bench.fixed_seed_check --output_dir /tmp/after    # on the new one
    python -m bench.fixed_seed_check --compare /tmp/before /tmp/after

Each run trains a tiny random Llama for a few steps on synthetic TOFU-format data (fixed seeds
everywhere) and saves the final weights (safetensors), the logged losses and, for the two runs the
architecture issue names (GradDiff + SophiaG-GNB, UNDIAL + AdamW), the TOFU summary and per-question
file. The other runs cover every method and every Hessian estimator, weights and losses only.
`--compare` reports, per run, whether every tensor and every number is bit-identical.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

# (name, UnlearningConfig overrides, evaluate on TOFU?)
RUNS = (
    ("grad_diff_sophia_gnb", dict(unlearn_method="grad_diff", unlearn_optimizer="sophia", hessian_update_interval=2,
                                  learning_rate=1e-3), True),
    ("undial_adamw", dict(unlearn_method="undial", learning_rate=1e-3), True),
    ("ga_adamw", dict(unlearn_method="ga"), False),
    ("kl_sophia_hutchinson", dict(unlearn_method="kl", unlearn_optimizer="sophia", hessian_estimator="hutchinson",
                                  hessian_update_interval=2), False),
    ("npo_sophia_empirical", dict(unlearn_method="npo", unlearn_optimizer="sophia", hessian_estimator="empirical"),
     False),
    ("simnpo_sophia_gnb_half", dict(unlearn_method="simnpo", unlearn_optimizer="sophia", hessian_update_interval=2,
                                    hessian_batch_fraction=0.5), False),
    ("idk_nll_adamw", dict(unlearn_method="idk_nll"), False),
    ("idk_dpo_adamw", dict(unlearn_method="idk_dpo"), False),
    ("undial_retain_kl_adamw", dict(unlearn_method="undial", retain_weight=0.5, retain_loss_type="kl"), False),
    ("rmu_adamw", dict(unlearn_method="rmu", rmu_layer=0, learning_rate=1e-2), False),
    # The refresh paths of the training step: RMU's forwards keep no logits (the refresh forwards itself);
    # with gradient accumulation the refresh runs on the first micro-batch.
    ("rmu_sophia_gnb", dict(unlearn_method="rmu", rmu_layer=0, unlearn_optimizer="sophia", hessian_update_interval=2,
                            learning_rate=1e-3), False),
    ("grad_diff_sophia_gnb_accumulated", dict(unlearn_method="grad_diff", unlearn_optimizer="sophia",
                                              per_device_train_batch_size=1, gradient_accumulation_steps=2,
                                              hessian_update_interval=2, learning_rate=1e-3), False),
)


def _imports():
    try:  # after the refactor
        from hf_unlearn.offline.synthetic import write_synthetic_tofu
        from hf_unlearn.offline.tiny import build_tiny_llama, tofu_corpus, train_tokenizer
    except ImportError:  # before it
        from hf_unlearn.data.synthetic import write_synthetic_tofu
        from hf_unlearn.models.tiny import build_tiny_llama, tofu_corpus, train_tokenizer
    return write_synthetic_tofu, build_tiny_llama, tofu_corpus, train_tokenizer


def _evaluate(model, tokenizer, data, reference=None):
    options = dict(dataset_name=data, forget_split="forget10", retain_reference=reference, subsample=4,
                   max_new_tokens=8, batch_size=4, show_progress=False)
    try:
        from hf_unlearn.eval.benchmarks import get_benchmark
    except ImportError:
        from hf_unlearn.eval.tofu import evaluate_tofu

        return evaluate_tofu(model, tokenizer, **options)
    return get_benchmark("tofu").evaluate(model, tokenizer, **options)


def run(output_dir: Path) -> None:
    import datasets
    import torch
    from safetensors.torch import save_file

    from hf_unlearn import UnlearningConfig, UnlearningTrainer
    from hf_unlearn.data.tofu import load_split

    datasets.disable_progress_bars()
    torch.set_num_threads(1)
    write_synthetic_tofu, build_tiny_llama, tofu_corpus, train_tokenizer = _imports()
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "tofu")
        write_synthetic_tofu(data, num_authors=10, questions_per_author=4, seed=0)
        tokenizer = train_tokenizer(tofu_corpus(data), vocab_size=512)
        forget, retain = load_split(data, "forget10"), load_split(data, "retain90")
        # The untrained model's per-question file stands in for a retain model's: forget_quality and privleak
        # are then computed too.
        reference, _ = _evaluate(build_tiny_llama(tokenizer, seed=1, hidden_size=64, num_hidden_layers=2,
                                                  num_attention_heads=2, intermediate_size=128), tokenizer, data)
        for name, overrides, evaluate in RUNS:
            model = build_tiny_llama(tokenizer, seed=0, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=128, attn_implementation="eager")
            args = UnlearningConfig(**{
                "output_dir": str(Path(tmp) / name), "per_device_train_batch_size": 2, "max_steps": 4,
                "logging_steps": 1, "disable_tqdm": True, "report_to": [], "seed": 0, "learning_rate": 1e-4,
                **overrides})
            trainer = UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                                        processing_class=tokenizer)
            trainer.train()
            out = output_dir / name
            out.mkdir(exist_ok=True)
            save_file({k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
                      str(out / "model.safetensors"))
            logs = [{k: v for k, v in h.items() if k not in ("train_runtime", "train_samples_per_second",
                                                              "train_steps_per_second")}
                    for h in trainer.state.log_history]
            (out / "log_history.json").write_text(json.dumps(logs, indent=1))
            if evaluate:
                per_sample, summary = _evaluate(trainer.model, tokenizer, data, reference)
                (out / "tofu_summary.json").write_text(json.dumps(summary, indent=1))
                (out / "tofu_eval.json").write_text(json.dumps(per_sample, indent=1))
            print(f"[fixed_seed_check] {name}: done")


def _same_json(a, b, path=""):
    """Differences between two JSON values (exact, NaN == NaN); paths of the differing leaves. The data
    folder's name (a temporary directory) is not compared."""
    if path.endswith("/config/dataset_name"):
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = [f"{path}/{k}: only in one" for k in set(a) ^ set(b)]
        for k in a.keys() & b.keys():
            diffs += _same_json(a[k], b[k], f"{path}/{k}")
        return diffs
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _same_json(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def compare(before: Path, after: Path) -> int:
    from safetensors.torch import load_file

    failures = 0
    for name, _, _ in RUNS:
        a, b = before / name, after / name
        wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
        differing = [k for k in wa if k not in wb or not (wa[k].shape == wb[k].shape and wa[k].equal(wb[k]))]
        worst = max((float((wa[k] - wb[k]).abs().max()) for k in differing if k in wb and wa[k].shape == wb[k].shape),
                    default=0.0)
        diffs = _same_json(json.loads((a / "log_history.json").read_text()),
                           json.loads((b / "log_history.json").read_text()), "log")
        for file in ("tofu_summary.json", "tofu_eval.json"):
            if (a / file).exists() or (b / file).exists():
                diffs += _same_json(json.loads((a / file).read_text()), json.loads((b / file).read_text()), file)
        ok = not differing and not diffs
        failures += not ok
        print(f"{name:28s} weights: {'identical' if not differing else f'{len(differing)} tensors differ (max {worst:.3g})'}"
              f"; logs/eval: {'identical' if not diffs else f'{len(diffs)} differences'}")
        for d in diffs[:5]:
            print("    ", d)
    print("bit-identical" if not failures else f"{failures} run(s) differ")
    return int(failures > 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.compare:
        return compare(*args.compare)
    if args.output_dir is None:
        parser.error("give --output_dir (to run) or --compare BEFORE AFTER")
    run(args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
