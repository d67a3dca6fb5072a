"""What only a GPU can measure (issue 16, item 5); driven by ``bench/gpu.sh``.

* ``train``: steps/s and peak memory of GradDiff, NPO and UNDIAL with AdamW and with SophiaG (GNB,
  k = 10) in bf16 on a Llama of about 1 B parameters built from a config (no download): hidden 2048,
  16 layers, 32 heads (8 KV heads), intermediate 8192, vocabulary 32000 (the first 4096 ids are the
  BPE trained on TOFU), tied embeddings: 1.04 B parameters.  One fixed batch of 8 forget10 rows, each
  with its seeded retain90 partner; 10 warm-up steps, then 20 timed steps (two whole SophiaG refresh
  periods), CUDA-synchronised at every step boundary.  Single device, or under ZeRO-3 when launched
  by ``accelerate launch --config_file recipes/accelerate/zero3.yaml`` (``--zero3``); peak memory is
  ``torch.cuda.max_memory_allocated`` (the largest over ranks under ZeRO-3).
* ``eval``: `evaluate_tofu` throughput (questions/s) of the same model in bf16 on real TOFU forget10
  (``--subsample`` questions of every split, greedy, 200 new tokens, batch 32), and generation alone
  with the row pool against ``model.generate`` batches (``strategy="pool"`` vs ``"generate"``).  A
  random 1 B model never emits EOS, so every answer runs 200 tokens there: this measures per-step
  cost, not padding waste (``--eval_model DIR`` evaluates a trained model instead).
* ``table``: the markdown table of the result files.

``--dry-run``: a tiny Llama (hidden 64, 2 layers) on synthetic TOFU, 3 steps, on whatever device is
there (CPU: float32, no peak memory): checks the logic without a GPU (tests/test_bench_gpu.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path

import torch

from . import common as C

LLAMA_1B = dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                intermediate_size=8192, max_position_embeddings=2048, tie_word_embeddings=True, vocab_size=32000)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
            intermediate_size=128, max_position_embeddings=512, tie_word_embeddings=True, vocab_size=None)
METHODS = ("grad_diff", "npo", "undial")
OPTIMIZERS = ("adamw", "sophia")


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _cuda() -> bool:
    return torch.cuda.is_available()


def _sync() -> None:
    if _cuda():
        torch.cuda.synchronize()


def model_config(tokenizer, dry_run: bool):
    from transformers import LlamaConfig

    shape = dict(TINY if dry_run else LLAMA_1B)
    shape["vocab_size"] = max(shape["vocab_size"] or 0, len(tokenizer))
    return LlamaConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, **shape)


def build_model(config, dtype: torch.dtype, seed: int = 0):
    """Random weights from the config, made on the GPU when there is one.  `from_config` honours
    ZeRO-3 (parameters partitioned at construction when the TrainingArguments ask for ZeRO-3)."""
    from transformers import AutoModelForCausalLM
    from transformers.integrations import is_deepspeed_zero3_enabled

    torch.manual_seed(seed)
    device = "cuda" if _cuda() and not is_deepspeed_zero3_enabled() else None
    if device:
        with torch.device(device):
            return AutoModelForCausalLM.from_config(config, dtype=dtype)
    return AutoModelForCausalLM.from_config(config, dtype=dtype)


def _timer():
    from transformers import TrainerCallback

    class SyncedStepTimer(TrainerCallback):
        """perf_counter time of each optimizer step, CUDA-synchronised at both ends."""

        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            _sync()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            self.times.append(time.perf_counter() - self._start)

    return SyncedStepTimer()


def _peak_bytes() -> int | None:
    if not _cuda():
        return None
    peak = torch.tensor([torch.cuda.max_memory_allocated()], device="cuda")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(peak, op=torch.distributed.ReduceOp.MAX)
    return int(peak.item())


def train_one(method: str, optimizer: str, tokenizer, config, dataset, args) -> dict:
    from hf_unlearn import UnlearningConfig, UnlearningTrainer

    bf16 = _cuda()
    warmup, steps = (1, 2) if args.dry_run else (args.warmup, args.steps)
    targs = UnlearningConfig(
        output_dir=str(Path(args.output_dir) / "scratch" / f"{method}-{optimizer}"), report_to="none",
        disable_tqdm=True, save_strategy="no", logging_steps=10_000, seed=0, dataloader_num_workers=0,
        unlearn_method=method, unlearn_optimizer=optimizer, per_device_train_batch_size=len(dataset),
        max_steps=warmup + steps, learning_rate=1e-5, bf16=bf16,
        # CPU (dry run): DeepSpeed needs gloo named explicitly; a single process needs use_cpu
        **({} if _cuda() else {"ddp_backend": "gloo"} if args.zero3 else {"use_cpu": True}),
    )
    if _cuda():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = build_model(config, torch.float32)  # fp32 master weights; bf16 autocast (Trainer's bf16=True)
    timer = _timer()
    trainer = UnlearningTrainer(model=model, args=targs, train_dataset=dataset, processing_class=tokenizer,
                                callbacks=[timer])
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start
    timed = timer.times[warmup:]
    record = {"method": method, "optimizer": optimizer, "zero3": bool(args.zero3), "bf16": bf16,
              "steps_timed": len(timed), "steps_per_s": len(timed) / sum(timed) if timed else None,
              "step_s_mean": sum(timed) / len(timed) if timed else None, "train_wall_s": total,
              "peak_memory_bytes": _peak_bytes(),
              "parameters": sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel() for p in model.parameters())}
    del trainer, model
    gc.collect()
    return record


def cmd_train(args) -> list[dict]:
    from hf_unlearn.data.pairing import build_unlearning_dataset  # noqa: F401  (import check before the runs)

    ctx = C.BenchContext(output_dir=Path(args.output_dir), smoke=args.dry_run)
    folder, data_kind = C.data_dir(ctx)
    tokenizer = C.tokenizer_for(folder, 512 if args.dry_run else 4096)
    config = model_config(tokenizer, args.dry_run)
    dataset = C.fixed_pairs(tokenizer, folder, 2 if args.dry_run else args.batch_size)
    records = []
    for method in args.methods.split(","):
        for optimizer in args.optimizers.split(","):
            try:
                record = train_one(method, optimizer, tokenizer, config, dataset, args)
            except Exception as err:  # report the others
                if args.dry_run:
                    raise
                record = {"method": method, "optimizer": optimizer, "zero3": bool(args.zero3), "error": repr(err)}
                if _cuda():
                    torch.cuda.empty_cache()
            record["data"] = data_kind
            records.append(record)
            if _rank() == 0:
                C.log(f"[gpu train{' zero3' if args.zero3 else ''}] {json.dumps(record)}")
    _write(args, f"train_{'zero3' if args.zero3 else 'single'}.json", records)
    return records


def cmd_eval(args) -> list[dict]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_unlearn.eval.scoring import DecodeStats, generate_answers
    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu

    ctx = C.BenchContext(output_dir=Path(args.output_dir), smoke=args.dry_run)
    folder, data_kind = C.data_dir(ctx)
    device = "cuda" if _cuda() else "cpu"
    dtype = torch.bfloat16 if _cuda() else torch.float32
    if args.eval_model:
        model = AutoModelForCausalLM.from_pretrained(args.eval_model, dtype=dtype).to(device)
        tokenizer = AutoTokenizer.from_pretrained(args.eval_model)
        kind = f"trained model {args.eval_model}"
    else:
        tokenizer = C.tokenizer_for(folder, 512 if args.dry_run else 4096)
        model = build_model(model_config(tokenizer, args.dry_run), dtype).to(device)
        kind = "random-init ~1B Llama (no EOS: 200 tokens per answer)" if not args.dry_run else "tiny random Llama"
    model.eval()
    max_new = 4 if args.dry_run else 200
    subsample = 2 if args.dry_run else args.subsample
    _sync()
    start = time.perf_counter()
    per_sample, summary = evaluate_tofu(model, tokenizer, folder, "forget10", batch_size=32, max_new_tokens=max_new,
                                        subsample=subsample, show_progress=False)
    _sync()
    seconds = time.perf_counter() - start
    questions = sum(per_sample["config"]["num_questions"].values())
    generated = [rec["question"] for key in ("forget", "retain", "real_authors", "world_facts")
                 for rec in per_sample.get(key, [])]
    gen = {}
    for strategy in ("generate", "pool", "generate", "pool"):
        stats = DecodeStats()
        _sync()
        t = time.perf_counter()
        generate_answers(model, tokenizer, generated, batch_size=32, max_new_tokens=max_new, show_progress=False,
                         strategy=strategy, stats=stats)
        _sync()
        gen.setdefault(strategy, {"seconds": [], "waste": stats.waste, "row_steps": stats.row_steps})
        gen[strategy]["seconds"].append(time.perf_counter() - t)
    record = {"model": kind, "data": data_kind, "dtype": str(dtype), "device": device, "subsample": subsample,
              "max_new_tokens": max_new, "questions": questions, "seconds": seconds,
              "questions_per_s": questions / seconds, "generation": gen,
              "generation_pool_speedup": min(gen["generate"]["seconds"]) / min(gen["pool"]["seconds"]),
              "peak_memory_bytes": _peak_bytes(), "model_utility": summary.get("model_utility")}
    C.log(f"[gpu eval] {json.dumps(record)}")
    _write(args, "eval.json", [record])
    return [record]


def _write(args, name: str, records: list[dict]) -> None:
    if _rank() != 0:
        return
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = C.machine_info()
    if _cuda():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
    (out / name).write_text(json.dumps({"records": records, "machine": info, "dry_run": args.dry_run}, indent=1))


def table(output_dir: str) -> str:
    out = Path(output_dir)
    lines = ["| setting | method | optimizer | steps/s | peak memory (GiB) |", "|---|---|---|---|---|"]
    for name in ("train_single.json", "train_zero3.json"):
        path = out / name
        if not path.is_file():
            continue
        for r in json.loads(path.read_text())["records"]:
            peak = r.get("peak_memory_bytes")
            sps = r.get("steps_per_s")
            lines.append(f"| {'ZeRO-3' if r.get('zero3') else 'single device'} | {r['method']} | {r['optimizer']} | "
                         + (f"{sps:.3g}" if sps else r.get("error", "n/a")) + " | "
                         + (f"{peak / 2**30:.2f}" if peak else "n/a") + " |")
    path = out / "eval.json"
    if path.is_file():
        r = json.loads(path.read_text())["records"][0]
        lines += ["", f"TOFU evaluation ({r['model']}, {r['dtype']}, {r['questions']} questions): "
                      f"{r['questions_per_s']:.3g} questions/s; generation pool vs generate: "
                      f"{r['generation_pool_speedup']:.2f}x"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("train", "eval", "table"))
    parser.add_argument("--output_dir", default="bench/results/gpu")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="Tiny model, synthetic data, 3 steps: the logic without a GPU.")
    parser.add_argument("--zero3", action="store_true", help="Launched under ZeRO-3 (accelerate launch ...).")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--batch_size", type=int, default=8, help="Forget rows per step (each with a retain row).")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--subsample", type=int, default=32, help="Questions of every TOFU split for `eval`.")
    parser.add_argument("--eval_model", default=None, help="Evaluate this saved model instead of the random 1B.")
    args = parser.parse_args(argv)
    if args.command == "table":
        print(table(args.output_dir))
        return 0
    C.quiet()
    if args.command == "train":
        cmd_train(args)
    else:
        cmd_eval(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
