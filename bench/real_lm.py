"""The real-LM quality bench: SmolLM2-135M-Instruct (from its PyPI wheel), a TOFU target/retain pair fine-tuned from
it with its own chat template, and the seeds' claims measured on that pair as Pareto fronts.

    python -m bench.real_lm pair     # build (or load) the pair and print the three TOFU summaries
    python -m bench.real_lm grid     # the unlearning grid, cached run by run (an interrupted grid resumes)
    python -m bench.real_lm report   # fronts, verdicts and plots from the cached runs (writes bench/results/R*.json)

The pair (cached in ``bench/results/cache/real-pair-<settings hash>/``, never committed):

* ``base``: SmolLM2-135M-Instruct dequantized from ``SmolLM2-135M-Instruct.Q4_1.gguf`` (``make real-model``);
* ``target``: base fine-tuned (full, answer-only loss, ``--prompt_template chat``) on forget01 (40 rows, 2 authors)
  plus `RETAIN_ROWS` retain rows; ``retain``: base fine-tuned the same way on those retain rows alone. The retain
  rows are the first rows of ``retain_perturbed`` (the retain questions TOFU's evaluation scores), so model utility
  measures what both models learnt. Fine-tuning runs at a constant learning rate until the target's forget ROUGE-L
  recall reaches `FORGET_ROUGE_GOAL` (checked every `CHECK_EVERY` epochs); the retain model then gets the same epochs.
* the evaluation: forget01 whole (40 questions), the other splits subsampled to their first 40 questions.

Every unlearning run's record is cached under ``runs/<settings hash>.json`` in the pair's folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from . import common as C

REAL_MODEL_DIR = C.REPO / "outputs" / "smollm2-135m-instruct"
FORGET_SPLIT = "forget01"
RETAIN_ROWS = 40
TEMPLATE = "chat"
FINETUNE = dict(learning_rate=3e-4, per_device_train_batch_size=8, lr_scheduler_type="constant_with_warmup",
                warmup_steps=5, weight_decay=0.0, seed=0, bf16=True)
# bf16 autocast (float32 weights) for training and evaluation: the CPU here has AMX, where it halves a step's time;
# the papers' GPU runs use bf16 too. Every model of the bench (base, pair, unlearned) is scored the same way.
AUTOCAST = "bfloat16"
MAX_EPOCHS = 8
CHECK_EVERY = 1
FORGET_ROUGE_GOAL = 0.95
EVAL = dict(forget_split=FORGET_SPLIT, subsample=40, max_new_tokens=200, batch_size=40)  # + mia_gradnorm=False
UNLEARN = dict(num_train_epochs=3, per_device_train_batch_size=8, weight_decay=0.01, bf16=True)  # 15 steps on forget01
LEARNING_RATES = (1e-5, 1e-4, 1e-3)
SEEDS = (0, 1)
# The one-shot influence step (`--unlearn_optimizer influence`, GradDiff form, GNB Hessian) next to GradDiff x
# AdamW/SophiaG: one pass over forget01 (5 steps, a refresh on each), one damped step of scale 1 at the end. Its
# settings replace UNLEARN's (one epoch, no weight decay, no clipping: the step is defined on the mean gradient).
INFLUENCE_DAMPINGS = (1.0, 0.1, 0.01)
INFLUENCE_UNLEARN = dict(num_train_epochs=1, weight_decay=0.0, max_grad_norm=0.0)


def settings() -> dict:
    return {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "forget_split": FORGET_SPLIT, "retain_rows": RETAIN_ROWS,
            "template": TEMPLATE, "finetune": FINETUNE, "max_epochs": MAX_EPOCHS, "check_every": CHECK_EVERY,
            "forget_rouge_goal": FORGET_ROUGE_GOAL, "eval": EVAL, "autocast": AUTOCAST}


def key(values: dict) -> str:
    return hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]


def pair_dir(results: Path) -> Path:
    return results / "cache" / f"real-pair-{key(settings())}"


def ensure_base_model() -> Path:
    """``outputs/smollm2-135m-instruct`` (what ``make real-model`` writes), converted here if missing."""
    if not (REAL_MODEL_DIR / "model.safetensors").is_file():
        sys.path.insert(0, str(C.REPO / "examples"))
        from convert_gguf import main as convert

        if convert(["--output_dir", str(REAL_MODEL_DIR)]) != 0:
            raise SystemExit("could not convert the GGUF model")
    return REAL_MODEL_DIR


def _template(tokenizer):
    from hf_unlearn.data.formatting import resolve_prompt_template

    return resolve_prompt_template(tokenizer, TEMPLATE)


def training_rows(member: str):
    import datasets

    folder = str(C.TOFU_DIR)
    retain = C.load_rows(folder, "retain_perturbed", RETAIN_ROWS).select_columns(["question", "answer"])
    if member == "retain":
        return retain
    forget = C.load_rows(folder, FORGET_SPLIT).select_columns(["question", "answer"])
    return datasets.concatenate_datasets([forget, retain])


def autocast():
    import torch

    return torch.autocast("cpu", dtype=getattr(torch, AUTOCAST))


def forget_rouge(model, tokenizer, template) -> float:
    from hf_unlearn.eval.metrics import rouge_l_recall
    from hf_unlearn.eval.scoring import generate_answers

    rows = C.load_rows(str(C.TOFU_DIR), FORGET_SPLIT)
    with autocast():
        answers = generate_answers(model, tokenizer, rows["question"], batch_size=EVAL["batch_size"],
                                   max_new_tokens=EVAL["max_new_tokens"], show_progress=False, template=template)
    scores = rouge_l_recall(answers, rows["answer"])
    return sum(scores) / len(scores)


def _save(model, tokenizer, template, out: Path) -> None:
    partial = out.with_name(f".{out.name}.partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    template.save(partial)
    os.replace(partial, out)  # written beside, renamed when complete: a killed build leaves no half model


def finetune_member(cache: Path, member: str, epochs: int | None = None, save_each_epoch: bool = False) -> dict:
    """Fine-tunes `member` ("target": until the forget ROUGE goal, at most MAX_EPOCHS; "retain": `epochs`).

    `save_each_epoch` keeps ``<member>-epoch-K`` after every epoch: under a constant learning rate the model after K
    epochs of a longer run is the model of a K-epoch run, so the retain model can train beside the target and be
    picked at the target's epoch count afterwards."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    from hf_unlearn.pipeline import AnswerOnlyDataset, FlatCollator

    base = ensure_base_model()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    template = _template(tokenizer)
    checks: list[dict] = []

    class StopAtGoal(TrainerCallback):
        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            epoch = round(state.epoch)
            if save_each_epoch:
                _save(model, tokenizer, template, cache / f"{member}-epoch-{epoch}")
                (cache / f"{member}-epoch-{epoch}" / "finetune.json").write_text(json.dumps(
                    {"epochs": epoch, "steps": state.global_step, "seconds": time.perf_counter() - start}))
            if member != "target" or epoch < 2 or epoch % CHECK_EVERY:
                return
            rouge = forget_rouge(model, tokenizer, template)
            checks.append({"epoch": epoch, "forget_rouge": rouge, "seconds": time.perf_counter() - start})
            C.log(f"[real_lm] target after epoch {epoch}: forget ROUGE-L recall {rouge:.3f}")
            if rouge >= FORGET_ROUGE_GOAL:
                control.should_training_stop = True

    args = TrainingArguments(output_dir=str(cache / f"scratch-{member}"), report_to="none", disable_tqdm=True,
                             save_strategy="no", logging_steps=5, use_cpu=True,
                             num_train_epochs=epochs or MAX_EPOCHS, **FINETUNE)
    rows = training_rows(member)
    C.log(f"[real_lm] fine-tuning {member} on {len(rows)} rows, at most {args.num_train_epochs} epochs")
    start = time.perf_counter()
    trainer = Trainer(model=model, args=args, train_dataset=AnswerOnlyDataset(tokenizer, rows, template=template),
                      data_collator=FlatCollator(tokenizer), processing_class=tokenizer,
                      callbacks=[StopAtGoal()])
    trainer.train()
    seconds = time.perf_counter() - start
    if not save_each_epoch:
        _save(trainer.model, tokenizer, template, cache / member)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"epochs": round(trainer.state.epoch), "steps": trainer.state.global_step, "seconds": seconds,
            "final_train_loss": losses[-1] if losses else None, "checks": checks}


def evaluate(model_dir: Path, reference: Path | None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return evaluate_model(model, tokenizer, reference)


def evaluate_model(model, tokenizer, reference):
    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu

    start = time.perf_counter()
    with autocast():
        per_sample, summary = evaluate_tofu(model, tokenizer, str(C.TOFU_DIR), EVAL["forget_split"],
                                            retain_reference=reference, batch_size=EVAL["batch_size"],
                                            max_new_tokens=EVAL["max_new_tokens"], subsample=EVAL["subsample"],
                                            show_progress=False, template=_template(tokenizer),
                                            mia_gradnorm=False)  # 80 backward passes of 135 M: left out here
    return per_sample, summary, time.perf_counter() - start


def ensure_pair(results: Path) -> dict:
    from hf_unlearn.eval.runner import write_results

    cache = pair_dir(results)
    done = cache / "pair.json"
    if done.is_file():
        return json.loads(done.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "settings.json").write_text(json.dumps(settings(), indent=1))
    info = json.loads((cache / "progress.json").read_text()) if (cache / "progress.json").is_file() else {}

    def save_progress():
        (cache / "progress.json").write_text(json.dumps(C._clean(info), indent=1))

    if not (cache / "target" / "model.safetensors").is_file():
        info["target_finetune"] = finetune_member(cache, "target")
        save_progress()
    if not (cache / "retain" / "model.safetensors").is_file():
        epochs = info["target_finetune"]["epochs"]
        early = cache / f"retain-epoch-{epochs}"  # trained beside the target (`retain-epochs`)
        if (early / "finetune.json").is_file():
            info["retain_finetune"] = json.loads((early / "finetune.json").read_text())
            os.replace(early, cache / "retain")
        else:
            info["retain_finetune"] = finetune_member(cache, "retain", epochs=epochs)
        save_progress()
    for name, folder, reference in (("retain", cache / "retain", None),
                                    ("base", ensure_base_model(), cache / "retain" / "tofu_eval.json"),
                                    ("target", cache / "target", cache / "retain" / "tofu_eval.json")):
        if f"{name}_summary" in info:
            continue
        per_sample, summary, seconds = evaluate(folder, reference)
        if name != "base":
            write_results(folder, per_sample, summary)
        info[f"{name}_summary"], info[f"{name}_eval_seconds"] = summary, seconds
        save_progress()
        C.log(f"[real_lm] {name}: model utility {summary['model_utility']:.4f}, forget ROUGE "
              f"{summary['forget_rouge']:.3f}, forget quality {summary['forget_quality']}, eval {seconds:.0f}s")
    info.update(target=str(cache / "target"), retain=str(cache / "retain"),
                reference=str(cache / "retain" / "tofu_eval.json"))
    done.write_text(json.dumps(C._clean(info), indent=1))
    return info


# --- the grid -----------------------------------------------------------------------------------------------------


def grid_specs() -> list[dict]:
    """SOUL (GradDiff, NPO x AdamW, SophiaG), the one-shot influence step, and UNDIAL (UNDIAL, NPO, GA with AdamW)
    over LEARNING_RATES, in the order that makes an interrupted grid most useful: seed 0 of GradDiff at the smallest learning rate, the
    influence step (cheap: 5 steps) beside it, the rest of GradDiff's seed 0 (one comparison whole), then seed 0 of NPO (in both claims) and UNDIAL, then GA, then the other
    seeds of the SOUL grid."""
    first = SEEDS[0]

    def soul(method, seed):
        return [dict(method=method, optimizer=o, learning_rate=lr, seed=seed) for lr in LEARNING_RATES
                for o in ("adamw", "sophia")]

    gd = soul("grad_diff", first)
    specs = gd[:2] + influence_specs() + gd[2:] + soul("npo", first)
    specs += [dict(method="undial", optimizer="adamw", learning_rate=lr, seed=first) for lr in LEARNING_RATES]
    specs += [dict(method="ga", optimizer="adamw", learning_rate=lr, seed=first) for lr in LEARNING_RATES]
    specs += [spec for seed in SEEDS[1:] for m in ("npo", "grad_diff") for spec in soul(m, seed)]
    return specs


def influence_specs() -> list[dict]:
    return [dict(method="grad_diff", optimizer="influence", learning_rate=1.0, seed=SEEDS[0], influence_damping=d)
            for d in INFLUENCE_DAMPINGS]


def unlearn_settings(spec: dict) -> dict:
    """The training flags of a run: UNLEARN, or the influence step's own (+ its damping)."""
    if spec["optimizer"] != "influence":
        return UNLEARN
    return {**UNLEARN, **INFLUENCE_UNLEARN, "influence_damping": spec["influence_damping"]}


def run_path(results: Path, spec: dict) -> Path:
    return pair_dir(results) / "runs" / f"{key(dict(spec, unlearn=unlearn_settings(spec), eval=EVAL))}.json"


def unlearn(results: Path, pair: dict, spec: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_unlearn import UnlearningTrainer

    path = run_path(results, spec)
    if path.is_file():
        return json.loads(path.read_text())
    folder = str(C.TOFU_DIR)
    tokenizer = AutoTokenizer.from_pretrained(pair["target"])
    model = AutoModelForCausalLM.from_pretrained(pair["target"], dtype=torch.float32)
    forget = C.load_rows(folder, FORGET_SPLIT)
    retain = C.load_rows(folder, "retain_perturbed", RETAIN_ROWS).select_columns(["question", "answer"])
    args = C.unlearning_config(pair_dir(results) / "scratch-unlearn", unlearn_method=spec["method"],
                               unlearn_optimizer=spec["optimizer"], learning_rate=spec["learning_rate"],
                               seed=spec["seed"], logging_steps=5, prompt_template=TEMPLATE, **unlearn_settings(spec))
    trainer = UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                                processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    _, summary, eval_seconds = evaluate_model(trainer.model, tokenizer, pair["reference"])
    record = {"settings": dict(spec, unlearn=unlearn_settings(spec), eval=EVAL), "summary": summary, "train_seconds": train_seconds,
              "eval_seconds": eval_seconds, "steps": trainer.state.global_step}
    if trainer.sophia is not None:
        record["sophia"] = {"win_rate": trainer.sophia.win_rate, "hessian_refreshes": trainer.sophia.hessian_updates}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(C._clean(record), indent=1))
    os.replace(tmp, path)
    C.log(f"[real_lm] {spec}: forget quality {summary['forget_quality']:.3g}, model utility "
          f"{summary['model_utility']:.4f}, forget ROUGE {summary['forget_rouge']:.3f} "
          f"(train {train_seconds:.0f}s, eval {eval_seconds:.0f}s)")
    return record


def _worker(results: Path, pair: dict, threads: int, specs: list[dict]) -> None:
    import torch

    torch.set_num_threads(threads)
    C.quiet()
    for spec in specs:
        unlearn(results, pair, spec)


def run_grid(results: Path, workers: int) -> None:
    """Every missing run, in `workers` processes (each takes every `workers`-th spec, in the grid's order)."""
    import concurrent.futures
    import multiprocessing

    pair = ensure_pair(results)
    missing = [s for s in grid_specs() if not run_path(results, s).is_file()]
    C.log(f"[real_lm] grid: {len(grid_specs())} runs, {len(missing)} to run in {workers} process(es)")
    if workers <= 1:
        _worker(results, pair, 2, missing)
        return
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        jobs = [pool.submit(_worker, results, pair, 1, missing[i::workers]) for i in range(workers)]
        for job in jobs:
            job.result()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_lm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("pair", "retain-epochs", "grid", "report"),
                        help="retain-epochs: train the retain model for MAX_EPOCHS beside the target, keeping every "
                             "epoch (the pair then takes the one at the target's epoch count)")
    parser.add_argument("--output_dir", default="bench/results", help="Results folder (default bench/results).")
    parser.add_argument("--workers", type=int, default=2, help="Grid runs side by side (default 2, 1 thread each).")
    args = parser.parse_args(argv)
    C.quiet()
    results = Path(args.output_dir)
    if args.command == "pair":
        info = ensure_pair(results)
        for name in ("base", "retain", "target"):
            s = info[f"{name}_summary"]
            print(name, {k: s.get(k) for k in ("model_utility", "forget_quality", "forget_rouge", "retain_rouge",
                                               "real_authors_rouge", "world_facts_rouge")})
    elif args.command == "retain-epochs":
        finetune_member(pair_dir(results), "retain", epochs=MAX_EPOCHS, save_each_epoch=True)
    elif args.command == "grid":
        run_grid(results, args.workers)
    else:
        from .real_lm_report import report

        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
