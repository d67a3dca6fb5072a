"""bench/gpu.sh's logic without a GPU: the ~1B config really is ~1B parameters, and a dry run (tiny
Llama, synthetic data, CPU) of the training and evaluation measurements writes complete results."""

import json
import math
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu.sh")]).returncode == 0


def test_llama_1b_config_has_about_a_billion_parameters(tokenizer):
    from transformers import AutoModelForCausalLM

    from bench.gpu import model_config

    config = model_config(tokenizer, dry_run=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters())
    # 32000*2048 tied embeddings + 16 layers x (2*2048^2 + 2*2048*512 + 3*2048*8192 + 2*2048) + 2048
    assert n == 32000 * 2048 + 16 * (2 * 2048**2 + 2 * 2048 * 512 + 3 * 2048 * 8192 + 2 * 2048) + 2048
    assert 1.0e9 < n < 1.1e9


def test_dry_run_writes_train_and_eval_results(tmp_path):
    from bench.gpu import main, table

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--dry-run", "--output_dir", str(tmp_path), "--methods", "undial",
                     "--optimizers", "sophia"]) == 0
        assert main(["eval", "--dry-run", "--output_dir", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    train = json.loads((tmp_path / "train_single.json").read_text())
    assert train["dry_run"] is True and [(r["method"], r["optimizer"]) for r in train["records"]] == [
        ("undial", "sophia")]
    for r in train["records"]:
        assert r["steps_timed"] == 2 and math.isfinite(r["steps_per_s"]) and r["steps_per_s"] > 0
        assert r["peak_memory_bytes"] is None and r["parameters"] > 0  # CPU: no CUDA allocator
    ev = json.loads((tmp_path / "eval.json").read_text())["records"][0]
    assert ev["questions"] == 10  # 5 splits x 2 questions of the synthetic data
    assert ev["generation"]["pool"]["waste"] == 0.0 and ev["generation"]["generate"]["row_steps"] > 0
    lines = table(str(tmp_path)).splitlines()
    assert lines[2].startswith("| single device | undial | sophia |") and "questions/s" in lines[-1]
