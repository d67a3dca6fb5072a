"""P9: MUSE's six-way evaluation on the synthetic MUSE corpus: GA, NPO, UNDIAL x AdamW / SophiaG.

The corpus: `hf_unlearn.offline.muse_synthetic` (16 forget, 16 retain1, 16 retain2, 16 holdout articles).
The models (cached under ``<output_dir>/cache/muse-<settings hash>/``): tiny-llama (`MODEL_SIZE`) with the
preset's tokenizer trained on the corpus; the *target* fine-tuned on forget + retain1 + retain2 text, the
*retrain* model on retain1 + retain2 only (windows of `WINDOW` tokens, every token trained). The retrain
model's ``muse_eval.json`` is the reference that gives PrivLeak. Each method then unlearns raw/forget from
the target (retain corpus raw/retain1 where the method uses one) and is evaluated on every item.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from . import common as C

ID = "P9"
MEASURE = "MUSE six-way table on the synthetic corpus: GA, NPO, UNDIAL x AdamW / SophiaG"
TARGET = "report (VerbMem/KnowMem forget down, KnowMem retain kept, PrivLeak near 0)"
METHODS = ("ga", "npo", "undial")
OPTIMIZERS = ("adamw", "sophia")
MODEL_SIZE = "default"  # hidden 256, 4 layers (hf_unlearn.pipeline.TINY_SIZES)
WINDOW = 256
CORPUS = dict(num_forget=16, num_retain1=16, num_retain2=16, num_holdout=16, seed=0)
# = README's finetune_muse commands (seed 42: TrainingArguments' default, also the model's initialisation).
FINETUNE = dict(num_train_epochs=80, learning_rate=2e-3, per_device_train_batch_size=8, warmup_steps=0.05, seed=42)
EVAL = dict(verbmem_max_new_tokens=128, knowmem_max_new_tokens=32, batch_size=32)
# lr 1e-3: at 1e-4 GA forgot nothing in 5 epochs (forget NLL 0.050 -> 0.050; VerbMem stayed 1.0), as in P6.
UNLEARN = dict(num_train_epochs=5, per_device_train_batch_size=4, learning_rate=1e-3, weight_decay=0.01)
SMOKE_CORPUS = dict(num_forget=4, num_retain1=4, num_retain2=4, num_holdout=4, seed=0)
SMOKE_FINETUNE = dict(max_steps=2, learning_rate=3e-3, per_device_train_batch_size=8, seed=0)
SMOKE_EVAL = dict(verbmem_max_new_tokens=4, knowmem_max_new_tokens=4, batch_size=32)
SMOKE_UNLEARN = dict(max_steps=1, per_device_train_batch_size=4, learning_rate=1e-4, weight_decay=0.01)
SMOKE_RUNS = (("ga", "adamw"), ("npo", "sophia"), ("undial", "adamw"))  # each method and each optimizer once
COLUMNS = ("forget_verbmem_rouge", "forget_knowmem_rouge", "retain_knowmem_rouge", "privleak", "mia_min_k_auc",
           "extraction_strength", "exact_memorization")


def settings(ctx: C.BenchContext) -> dict:
    return {"corpus": SMOKE_CORPUS if ctx.smoke else CORPUS, "size": C.model_size(ctx, MODEL_SIZE),
            "vocab_size": 512 if ctx.smoke else 4096, "window": 64 if ctx.smoke else WINDOW,
            "finetune": SMOKE_FINETUNE if ctx.smoke else FINETUNE, "eval": SMOKE_EVAL if ctx.smoke else EVAL,
            "unlearn": SMOKE_UNLEARN if ctx.smoke else UNLEARN}


def _key(values) -> str:
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


def cache_dir(ctx: C.BenchContext) -> Path:
    """The corpus, the models and their evaluations: a function of every setting but the unlearning ones."""
    return ctx.cache_dir / f"muse-{_key({k: v for k, v in settings(ctx).items() if k != 'unlearn'})}"


def ensure_models(ctx: C.BenchContext) -> dict:
    """The corpus, the target and retrain models and their evaluations (the retrain's is the reference)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    from hf_unlearn.data.muse import load_texts, muse_strings
    from hf_unlearn.data.text import encode_documents
    from hf_unlearn.eval.benchmarks.muse import evaluate_muse
    from hf_unlearn.eval.runner import write_results
    from hf_unlearn.offline.tiny import build_tiny_llama, train_tokenizer
    from hf_unlearn.offline.muse_synthetic import write_muse
    from hf_unlearn.pipeline import EncodedDataset, finetune

    wanted, root = settings(ctx), cache_dir(ctx)
    data = root / "data"
    if not (data / "raw" / "forget.json").is_file():
        write_muse(data, **wanted["corpus"])
    info = {"data": str(data), "seconds": {}}
    for name, splits in (("retrain", ("retain1", "retain2")), ("target", ("forget", "retain1", "retain2"))):
        out = root / name
        if not (out / "model.safetensors").is_file():
            tokenizer = train_tokenizer(muse_strings(str(data)), vocab_size=wanted["vocab_size"])
            model = build_tiny_llama(tokenizer, seed=wanted["finetune"]["seed"], **wanted["size"])
            texts = [t for s in splits for t in load_texts(str(data), s)]
            args = TrainingArguments(output_dir=str(ctx.scratch / f"p9_{name}"), report_to="none", disable_tqdm=True,
                                     save_strategy="no", logging_steps=10_000, use_cpu=True, **wanted["finetune"])
            start = time.perf_counter()
            trainer = finetune(model, tokenizer, EncodedDataset(encode_documents(tokenizer, texts, wanted["window"])),
                               args)
            info["seconds"][f"finetune_{name}"] = time.perf_counter() - start
            tokenizer.save_pretrained(str(out))
            trainer.save_model(str(out))
        if not (out / "muse_summary.json").is_file():
            model, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
            start = time.perf_counter()
            per_sample, summary = evaluate_muse(model, tokenizer, str(data), retain_reference=info.get("reference"),
                                                show_progress=False, **wanted["eval"])
            info["seconds"][f"evaluate_{name}"] = time.perf_counter() - start
            write_results(out, per_sample, summary, "muse")
            C.log(f"[P9] {name} evaluated in {info['seconds'][f'evaluate_{name}']:.0f}s: " + row(summary))
        info[name] = str(out)
        info[f"{name}_summary"] = json.loads((out / "muse_summary.json").read_text())
        if name == "retrain":
            info["reference"] = str(out / "muse_eval.json")
    return info


def row(summary: dict) -> str:
    return ", ".join(f"{k} {C.fmt(summary.get(k))}" for k in COLUMNS)


def unlearn(ctx: C.BenchContext, info: dict, method: str, optimizer: str) -> dict:
    """One unlearning run from the target (cached as runs/<method>_<optimizer>.json): its summary and timings."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.data.muse import load_texts
    from hf_unlearn.eval.benchmarks.muse import evaluate_muse

    wanted = settings(ctx)
    path = cache_dir(ctx) / f"runs-{_key(wanted['unlearn'])}" / f"{method}_{optimizer}.json"
    if path.is_file():
        return json.loads(path.read_text())
    tokenizer = AutoTokenizer.from_pretrained(info["target"])
    as_rows = lambda split: datasets.Dataset.from_dict({"text": load_texts(info["data"], split)})  # noqa: E731
    args = C.unlearning_config(ctx.scratch / f"p9_{method}_{optimizer}", unlearn_method=method,
                               unlearn_optimizer=optimizer, max_length=wanted["window"], **wanted["unlearn"])
    trainer = UnlearningTrainer(model=AutoModelForCausalLM.from_pretrained(info["target"]), args=args,
                                forget_dataset=as_rows("raw/forget"), retain_dataset=as_rows("raw/retain1"),
                                processing_class=tokenizer, dataset_columns={"text_column": "text"})
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    _, summary = evaluate_muse(trainer.model, tokenizer, info["data"], retain_reference=info["reference"],
                               show_progress=False, **wanted["eval"])
    result = {"summary": summary, "train_seconds": seconds, "eval_seconds": time.perf_counter() - start,
              "steps": trainer.state.global_step}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    C.log(f"[P9] {method} + {optimizer}: {row(summary)} ({seconds:.0f}s)")
    return result


def run(ctx: C.BenchContext) -> dict:
    info = ensure_models(ctx)
    table = {"target": info["target_summary"], "retrain": info["retrain_summary"]}
    runs = {}
    for method, optimizer in SMOKE_RUNS if ctx.smoke else [(m, o) for m in METHODS for o in OPTIMIZERS]:
        result = unlearn(ctx, info, method, optimizer)
        table[f"{method}/{optimizer}"] = result["summary"]
        runs[f"{method}/{optimizer}"] = {k: result[k] for k in ("train_seconds", "eval_seconds", "steps")}
    lines = ["| model | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(C.fmt(s.get(k)) for k in COLUMNS) + " |" for name, s in table.items()]
    C.log("\n".join(lines))
    value = table["npo/sophia"]["forget_verbmem_rouge"]
    return C.write_result(
        ctx, ID, measure=MEASURE, value=value, target=TARGET, passed=None,
        display=f"VerbMem target {C.fmt(table['target']['forget_verbmem_rouge'])} -> NPO+SophiaG {C.fmt(value)}",
        numbers={"table": {name: {k: s.get(k) for k in COLUMNS} for name, s in table.items()}, "runs": runs,
                 "seconds": info["seconds"], "markdown": "\n".join(lines)},
        settings=settings(ctx),
        notes=["privleak = MUSE's PrivLeak, (A - A_retrain) / A_retrain * 100 with MUSE's Min-K% AUC A = 1 - "
               "mia_min_k_auc: ~0 = like the retrained model, strongly negative (to -100) = under-unlearning, positive "
               "= over-unlearning; the retrain row is the reference (evaluated before it exists: null). mia_min_k_auc: "
               "1 = every forget text scores as a member, 0.5 = chance.",
               "The synthetic articles open with a fact box of Question/Answer lines (hf_unlearn.offline.muse_synthetic): "
               "a tiny model trained from scratch has no pretraining to answer questions about prose."],
    )
