"""The whole pipeline on a fresh machine with no network: `make demo`.

1. data: a synthetic TOFU-format set of fictitious authors (or real TOFU with --tofu_dir);
2. `finetune_tofu.py`: a tiny target model (trained on `full`) and retain model (`retain90`, whose
   evaluation is the forget-quality reference);
3. `run_tofu.py`: GradDiff and NPO with AdamW and with SophiaG, and UNDIAL, each evaluated;
4. one results table (forget quality, model utility, time per run) and a plot.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
# Training from scratch amplifies the last bit of every float sum, and those bits depend on the CPU kernels
# (torch's own dispatch: AVX512 / AVX2 / default; MKL's) and on the thread count (2026-12-04, one machine: 30
# AdamW steps of the demo's model give three different weight hashes under AVX512, AVX2 and default dispatch,
# and another with 2 threads). The demo's runs pin all three, to what every x86-64 CPU of the last decade has.
PINNED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OMP_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}
RUNS = [("grad_diff", "adamw"), ("grad_diff", "sophia"), ("npo", "adamw"), ("npo", "sophia"), ("undial", "adamw")]


def run(script: str, *flags) -> float:
    command = [sys.executable, str(EXAMPLES / script), *map(str, flags)]
    print("\n$ " + " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, **PINNED_ENV})
    return time.perf_counter() - start


def environment() -> dict:
    """What the table depends on beyond the code and the data: the pinned settings and the builds used."""
    import platform

    import tokenizers
    import torch
    import transformers

    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           env={**os.environ, **PINNED_ENV}, capture_output=True, text=True)
    return {**PINNED_ENV, "cpu_capability_used": probe.stdout.strip(), "machine": platform.machine(),
            "processor": platform.processor(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_out")
    parser.add_argument("--tofu_dir", default=None, help="real TOFU folder (JSON lines) instead of synthetic data")
    parser.add_argument("--num_authors", type=int, default=40, help="synthetic authors (forget10 = the last 10%%)")
    parser.add_argument("--questions_per_author", type=int, default=10)
    parser.add_argument("--finetune_epochs", type=float, default=20)
    parser.add_argument("--finetune_lr", type=float, default=3e-3)
    parser.add_argument("--unlearn_epochs", type=float, default=5)
    parser.add_argument("--unlearn_lr", type=float, default=2e-4)
    parser.add_argument("--eval_subsample", type=int, default=20,
                        help="questions per split in the evaluations during training (the final one uses all)")
    parser.add_argument("--tiny_size", default="demo", choices=["demo", "default"],
                        help="demo: hidden 128, 4 layers; default: the tiny-llama preset (hidden 256)")
    args = parser.parse_args()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    if args.tofu_dir:
        data = Path(args.tofu_dir)
    else:
        from hf_unlearn.offline.synthetic import write_synthetic_tofu

        data = write_synthetic_tofu(out / "data", num_authors=args.num_authors,
                                    questions_per_author=args.questions_per_author, seed=0)
    # --overwrite_output_dir: the demo's folders are its own, so `make demo` can run again
    common = ["--dataset_name", data, "--report_to", "none", "--save_strategy", "no", "--seed", 0,
              "--disable_tqdm", "true", "--overwrite_output_dir", "true"]
    size = ["--tiny_size", args.tiny_size]
    finetune = ["--model_name_or_path", "tiny-llama", "--num_train_epochs", args.finetune_epochs,
                "--learning_rate", args.finetune_lr, "--lr_scheduler_type", "cosine", "--warmup_steps", 0.05,
                "--per_device_train_batch_size", 16, "--logging_steps", 50, *size, *common]
    timings = {"target": run("finetune_tofu.py", "--split", "full", "--output_dir", out / "target", *finetune),
               "retain": run("finetune_tofu.py", "--split", "retain90", "--output_dir", out / "retain", *finetune)}

    rows = []
    for method, optimizer in RUNS:
        name = f"{method}_{optimizer}"
        seconds = run(
            "run_tofu.py", "--model_name_or_path", out / "target", "--forget_split", "forget10",
            "--retain_reference", out / "retain" / "tofu_eval.json", "--output_dir", out / "runs" / name,
            "--unlearn_method", method, "--unlearn_optimizer", optimizer, "--learning_rate", args.unlearn_lr,
            "--num_train_epochs", args.unlearn_epochs, "--per_device_train_batch_size", 8,
            "--lr_scheduler_type", "constant", "--eval_strategy", "epoch", "--logging_steps", 5,
            "--hessian_update_interval", 10, "--eval_subsample", args.eval_subsample, *common,
        )
        info = json.loads((out / "runs" / name / "run_info.json").read_text())
        rows.append(dict(method=method, optimizer=optimizer, forget_quality=info["after"]["forget_quality"],
                         model_utility=info["after"]["model_utility"], forget_rouge=info["after"]["forget_rouge"],
                         train_s=info["train_seconds"], run_s=seconds, history=out / "runs" / name))

    from hf_unlearn.reporting import markdown_table, plot_runs

    before = json.loads((out / "runs" / "_".join(RUNS[0]) / "run_info.json").read_text())["before"]
    retain = json.loads((out / "retain" / "tofu_summary.json").read_text())
    reference = [dict(method="(target, before)", optimizer="–", forget_quality=before.get("forget_quality"),
                      model_utility=before["model_utility"], forget_rouge=before["forget_rouge"],
                      train_s=timings["target"]),
                 dict(method="(retain model)", optimizer="–", forget_quality=1.0, model_utility=retain["model_utility"],
                      forget_rouge=retain["forget_rouge"], train_s=timings["retain"])]
    table = markdown_table(reference + rows, ["method", "optimizer", "forget_quality", "model_utility",
                                              "forget_rouge", "train_s", "run_s"])
    plot = plot_runs([(f"{r['method']}+{r['optimizer']}", r["history"]) for r in rows], out / "unlearning.png")
    wall = time.perf_counter() - start
    env = environment()
    (out / "results.md").write_text(f"{table}\n\nData: {data}; total wall time {wall:.0f}s\n\nEnvironment: "
                                    + ", ".join(f"{k}={v}" for k, v in env.items()) + "\n")
    (out / "environment.json").write_text(json.dumps(env, indent=2))
    (out / "results.json").write_text(json.dumps([{k: str(v) if isinstance(v, Path) else v for k, v in r.items()}
                                                  for r in reference + rows], indent=2))
    print(f"\n{table}\n\nplot: {plot}\ntotal wall time: {wall:.0f}s ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
