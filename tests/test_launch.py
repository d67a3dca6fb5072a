"""The README's multi-process launch lines, run as users run them: `accelerate launch --config_file
recipes/accelerate/zero{2,3}.yaml examples/run_tofu.py ...` on 2 CPU processes (DS_ACCELERATOR=cpu),
with the script's defaults (grad_diff + AdamW, an evaluation before and after training) and without
`--ddp_backend gloo`: the script chooses gloo on CPU itself.

ZeRO-3 partitions the weights at load, before any engine exists, so the "before" evaluation runs on
partitioned placeholders; it must give what one process gives on the whole model. The ZeRO-3 run also
evaluates during training (forget-quality callback through the engine's hooks).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes" / "accelerate"


@pytest.fixture(scope="module")
def launch_workspace(tmp_path_factory, tokenizer):
    from hf_unlearn.offline.synthetic import write_synthetic_tofu
    from hf_unlearn.offline.tiny import build_tiny_llama

    root = tmp_path_factory.mktemp("launch")
    model = build_tiny_llama(tokenizer, seed=0, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=128)
    model.save_pretrained(root / "target")
    tokenizer.save_pretrained(root / "target")
    # 10 authors x 2 questions: forget10 is one author, every evaluation split is a handful of questions.
    write_synthetic_tofu(root / "tofu", num_authors=10, questions_per_author=2, seed=0)
    return root


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(recipe: str, workspace: Path, out: Path, *extra: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(RECIPES / recipe),
               "--num_processes", str(processes), "--main_process_port", str(_free_port()),
               str(REPO / "examples" / "run_tofu.py"),
               "--model_name_or_path", str(workspace / "target"), "--dataset_name", str(workspace / "tofu"),
               "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "2",
               "--max_new_tokens", "16", "--report_to", "none", *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)


def _single_process_summary(workspace: Path) -> dict:
    from transformers import AutoTokenizer

    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu

    model = AutoModelForCausalLM.from_pretrained(workspace / "target")
    tokenizer = AutoTokenizer.from_pretrained(workspace / "target")
    return evaluate_tofu(model, tokenizer, str(workspace / "tofu"), forget_split="forget10", max_new_tokens=16,
                         show_progress=False)[1]


@pytest.mark.parametrize("recipe", ["zero3.yaml", "zero2.yaml"])
def test_readme_deepspeed_launch_with_default_flags(recipe, launch_workspace, tmp_path):
    out = tmp_path / "unlearned"
    extra = ["--eval_strategy", "steps", "--eval_steps", "1", "--eval_subsample", "2"] if recipe == "zero3.yaml" else []
    result = _launch(recipe, launch_workspace, out, *extra)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]

    # The script picked gloo on CPU and said so once; the parameter count is the whole model's, not a shard's.
    assert log.count("using --ddp_backend gloo") == 1
    numel = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(launch_workspace / "target").parameters())
    assert f"{numel / 1e6:.2f}M parameters ({numel / 1e6:.2f}M trainable)" in log
    assert log.count("[run_tofu] grad_diff + adamw") == 1  # rank 0 only: the ranks form one process group

    info = json.loads((out / "run_info.json").read_text())
    reference = _single_process_summary(launch_workspace)
    for key in ("forget_prob", "retain_prob", "ra_truth_ratio", "wf_rouge", "model_utility"):
        assert info["before"][key] == pytest.approx(reference[key], rel=1e-4, abs=1e-6), key
    assert info["after"]["forget_prob"] != pytest.approx(reference["forget_prob"], rel=1e-6)  # it trained
    saved = load_file(out / "model.safetensors")  # gathered on save: whole tensors, not a rank's partition
    whole = AutoModelForCausalLM.from_pretrained(launch_workspace / "target").state_dict()
    assert saved and all(tensor.shape == whole[name].shape for name, tensor in saved.items())
    if recipe == "zero3.yaml":
        history = json.loads((out / "tofu_history.json").read_text())["history"]
        assert [h["step"] for h in history] == [1, 2]


@pytest.mark.parametrize("recipe, processes", [("ddp.yaml", 2), ("single.yaml", 1), ("fsdp2.yaml", 2)])
def test_readme_launch_under_ddp_single_and_fsdp2_recipes(recipe, processes, launch_workspace, tmp_path):
    """The other recipes of recipes/accelerate/ with the script's defaults (before/after evaluation). On a
    CPU-only machine accelerate runs fsdp2.yaml as plain data parallel (it shards only on accelerators), so its
    case checks the README's launch line, not FSDP sharding."""
    out = tmp_path / "unlearned"
    # No --use_cpu: on a CPU-only machine the script forms the process group itself (one line says so).
    result = _launch(recipe, launch_workspace, out, processes=processes)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert log.count("[run_tofu] grad_diff + adamw") == 1  # rank 0 only: the ranks form one process group
    assert log.count("using --use_cpu true") == (processes > 1)
    info = json.loads((out / "run_info.json").read_text())
    reference = _single_process_summary(launch_workspace)
    for key in ("forget_prob", "retain_prob", "model_utility"):
        assert info["before"][key] == pytest.approx(reference[key], rel=1e-4, abs=1e-6), key
    assert info["after"]["forget_prob"] != pytest.approx(reference["forget_prob"], rel=1e-6)  # it trained
