"""examples/run_wmdp.py end to end on the synthetic set, its recipes, and the WMDP stop rule of the callback."""

import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from trl import ModelConfig, TrlParser

from hf_unlearn import UnlearningConfig

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes" / "wmdp").glob("*.yaml"))
sys.path.insert(0, str(REPO / "examples"))

import run_wmdp  # noqa: E402


def docstring_commands(module) -> list[list[str]]:
    """The shell commands of a docstring (continuation lines joined), as argv lists."""
    text = module.__doc__.replace("\\\n", " ")
    return [shlex.split(line.strip()) for line in text.splitlines() if line.strip().startswith(("python ", "accelerate "))]


def test_there_is_a_recipe_per_method_and_optimizer():
    assert {p.stem for p in RECIPES} == {f"{m}_{o}" for m in ("rmu", "npo", "undial", "wga", "satimp", "ceu", "pdu")
                                          for o in ("adamw", "sophia")}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_wmdp_recipe_parses_without_unknown_keys(recipe):
    parser = TrlParser((run_wmdp.WMDPScriptArguments, UnlearningConfig, ModelConfig))
    script, args, model_args = parser.parse_args_and_config(args=["--config", str(recipe), "--use_cpu", "true"])
    method, optimizer = recipe.stem.rsplit("_", 1)
    assert args.unlearn_method == method and args.unlearn_optimizer == optimizer
    for key, value in yaml.safe_load(recipe.read_text()).items():
        holder = next(obj for obj in (script, args, model_args) if hasattr(obj, key))
        got = getattr(holder, key)
        assert (got.value if hasattr(got, "value") else got) == value, key
    if method == "rmu":  # the RMU paper's Zephyr-7B settings (rmu/unlearn.py README command)
        assert (args.rmu_layer, args.rmu_steering_coeff, args.retain_weight, args.learning_rate) == (7, 6.5, 1200, 5e-5)
        assert (args.per_device_train_batch_size, args.max_steps) == (4, 150)


def test_run_wmdp_docstring_commands_end_to_end(tmp_path, monkeypatch):
    """The docstring's offline commands, as written (plus speed flags), from a fresh folder."""
    from hf_unlearn.offline import wmdp_synthetic

    monkeypatch.chdir(tmp_path)
    make_data, run = [c for c in docstring_commands(run_wmdp) if c[0] == "python"]
    assert make_data[:3] == ["python", "-m", "hf_unlearn.offline.wmdp_synthetic"]
    wmdp_synthetic.main(make_data[3:] + ["--epochs", "1"])
    assert run[:2] == ["python", "examples/run_wmdp.py"]
    argv = [str(REPO / a) if a.startswith("recipes/") else a for a in run[2:]]
    before, after = run_wmdp.main(argv + [
        "--max_steps", "2", "--per_device_train_batch_size", "2", "--eval_strategy", "steps", "--eval_steps", "1",
        "--eval_subsample", "4", "--max_wmdp_acc", "1.0", "--min_mmlu_acc", "0.0", "--use_cpu", "true",
        "--report_to", "none", "--disable_tqdm", "true"])
    out = tmp_path / "wmdp_rmu"
    summary = json.loads((out / "wmdp_summary.json").read_text())
    assert summary == {k: v for k, v in after.items() if k != "eval_seconds"}
    assert summary["wmdp_bio_n"] == 40 and summary["mmlu_n"] == 90 and before["wmdp_bio_n"] == 40
    per_sample = json.loads((out / "wmdp_eval.json").read_text())
    assert len(per_sample["wmdp_cyber"]) == 40
    history = json.loads((out / "wmdp_history.json").read_text())
    # the stop rule (every WMDP accuracy <= 1.0, MMLU >= 0) is met at the first evaluation: training stops there
    assert [h["step"] for h in history["history"]] == [1]
    assert history["history"][0]["metrics"]["subsample"] == 4
    assert (out / "model.safetensors").is_file()
    card = (out / "README.md").read_text()
    assert "## Results (WMDP evaluation)" in card and f"| WMDP-Bio accuracy (lm-eval, chance 0.25) | " \
        f"{before['wmdp_bio_acc']:.4g} | {after['wmdp_bio_acc']:.4g} |" in card


def readme_wmdp_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    block = text.split("### WMDP", 1)[1].split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [shlex.split(line.split("  #")[0]) for line in block.splitlines() if line.strip().startswith(("python", "accel"))]


def test_readme_wmdp_lines_are_the_tested_ones(tmp_path):
    """The README's offline WMDP lines are the docstring's (run above) plus the evaluation CLI, run here."""
    readme = readme_wmdp_commands()
    assert readme[:3] == docstring_commands(run_wmdp)
    cli = readme[3]
    assert cli[:4] == ["python", "-m", "hf_unlearn.eval", "--benchmark"]
    from hf_unlearn.eval.__main__ import main as eval_main
    from hf_unlearn.offline.wmdp_synthetic import write_synthetic_wmdp
    from hf_unlearn.offline.tiny import build_tiny_llama, train_tokenizer
    from hf_unlearn.offline.wmdp_synthetic import target_training_texts

    write_synthetic_wmdp(tmp_path / "wmdp_data")
    tokenizer = train_tokenizer(target_training_texts(), vocab_size=400)
    build_tiny_llama(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64).save_pretrained(tmp_path / "wmdp_rmu")
    tokenizer.save_pretrained(tmp_path / "wmdp_rmu")
    argv = [str(tmp_path / a) if a.startswith("wmdp_") else a for a in cli[3:]]
    assert eval_main(argv + ["--subsample", "3", "--disable_tqdm", "true"]) == 0
    summary = json.loads((tmp_path / "wmdp_eval" / "wmdp_summary.json").read_text())
    assert summary["wmdp_bio_n"] == 3 and summary["mmlu_n"] == 3 * 6 and summary["subsample"] == 3


def test_corpora_local_files_and_offline_hub_names(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    from hf_unlearn.data.wmdp import load_corpora, load_corpus

    (tmp_path / "forget.jsonl").write_text('{"text": "alpha beta"}\n{"text": ""}\n{"text": "gamma"}\n')
    (tmp_path / "retain.txt").write_text("first document\n\nsecond document\n")
    assert load_corpora(f"{tmp_path / 'forget.jsonl'},{tmp_path / 'retain.txt'}") == [
        "alpha beta", "gamma", "first document", "second document"]
    assert load_corpus(str(tmp_path / "forget.jsonl"), min_length=5) == ["alpha beta"]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: row 1 has no string 'text' field \(found: \['body'\]\)"):
        load_corpus(str(tmp_path / "bad.jsonl"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="Unknown corpus 'bio-corpus'"):
        load_corpus("bio-corpus")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match=r"cais/wmdp-bio-forget-corpus.*It is gated.*give a local file"):
        load_corpus("bio-forget-corpus")
