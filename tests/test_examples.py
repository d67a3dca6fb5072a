"""The example scripts end to end, the recipes, the model card and the (intercepted) Hub push."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from trl import ModelConfig, TrlParser

from hf_unlearn import UnlearningConfig
from hf_unlearn.config import UnlearningScriptArguments

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes" / "tofu").glob("*.yaml"))
sys.path.insert(0, str(REPO / "examples"))


def parse(argv):
    return TrlParser((UnlearningScriptArguments, UnlearningConfig, ModelConfig)).parse_args_and_config(args=argv)


def test_there_is_a_recipe_per_method_and_optimizer():
    from hf_unlearn.methods import METHODS

    # and the one-shot influence step, in its GradDiff form
    assert {p.stem for p in RECIPES} == ({f"{m}_{o}" for m in METHODS for o in ("adamw", "sophia")}
                                          | {"grad_diff_influence"})


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_parses_without_unknown_keys(recipe):
    # --use_cpu: the recipes ask for bf16 (GPU runs); on this CPU-only machine TrainingArguments needs it.
    script, args, model_args = parse(["--config", str(recipe), "--use_cpu", "true"])
    method, optimizer = recipe.stem.rsplit("_", 1)
    assert args.unlearn_method == method and args.unlearn_optimizer == optimizer
    raw = yaml.safe_load(recipe.read_text())
    for key, value in raw.items():  # every key landed in one of the three dataclasses, with its value
        holder = next(obj for obj in (script, args, model_args) if hasattr(obj, key))
        got = getattr(holder, key)
        assert (got.value if hasattr(got, "value") else got) == value, key


def test_unknown_recipe_key_is_named(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("unlearn_method: npo\nnpo_betta: 0.2\noutput_dir: x\n")
    with pytest.raises(ValueError, match="npo_betta"):
        parse(["--config", str(recipe)])


@pytest.fixture
def target_setup(tmp_path, synthetic_splits, tokenizer, make_model):
    """A tiny 'target' model folder, a synthetic TOFU folder and a retain reference (the target's own eval)."""
    from hf_unlearn.offline.synthetic import write_tofu
    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu
    from hf_unlearn.eval.runner import write_results

    data = write_tofu(tmp_path / "data", synthetic_splits)
    model_dir = tmp_path / "target"
    model = make_model()
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    per_sample, summary = evaluate_tofu(model, tokenizer, str(data), forget_split="forget10", max_new_tokens=4,
                                        show_progress=False)
    write_results(tmp_path / "reference", per_sample, summary)
    return data, model_dir, tmp_path / "reference" / "tofu_eval.json"


def run_tofu_flags(data, model_dir, reference, output_dir, *extra):
    return ["--model_name_or_path", str(model_dir), "--dataset_name", str(data), "--forget_split", "forget10",
            "--retain_reference", str(reference), "--output_dir", str(output_dir), "--unlearn_method", "npo",
            "--unlearn_optimizer", "sophia", "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--learning_rate", "1e-3", "--eval_strategy", "steps", "--eval_steps", "1", "--eval_subsample", "4",
            "--max_new_tokens", "4", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true",
            "--hessian_update_interval", "1", *extra]


def test_run_tofu_end_to_end_with_accelerate_launch(tmp_path, target_setup):
    data, model_dir, reference = target_setup
    out = tmp_path / "unlearned"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(REPO / "examples" / "run_tofu.py"), *run_tofu_flags(data, model_dir, reference, out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "model.safetensors").is_file()
    summary = json.loads((out / "tofu_summary.json").read_text())
    assert 0.0 <= summary["forget_quality"] <= 1.0 and 0.0 <= summary["model_utility"] <= 1.0
    assert (out / "unlearning.png").stat().st_size > 1000
    history = json.loads((out / "tofu_history.json").read_text())
    assert len(history["history"] if isinstance(history, dict) else history) == 2  # eval at steps 1 and 2

    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert {"unlearning", "hf-unlearn", "npo", "sophia"} <= set(card.data.tags)
    assert card.data.library_name == "transformers"
    assert f"{summary['forget_quality']:.4g}" in card.text and "unlearning.png" in card.text
    assert "unlearn_method: npo" in card.text and "forget_split: forget10" in card.text
    assert model_dir.joinpath("README.md").exists() is False  # nothing written into the input model


def test_push_to_hub_sends_model_card_and_weights(tmp_path, target_setup, monkeypatch):
    """The Hub is unreachable here, so `huggingface_hub`'s repo creation and upload are intercepted and we
    check what would be sent: the model, the tokenizer, the card with its results, the plot."""
    import huggingface_hub
    import run_tofu

    data, model_dir, reference = target_setup
    sent = {}

    class FakeRepo:
        repo_id = "someone/tiny-unlearned"

    def fake_upload_folder(self, *, repo_id, folder_path, **kwargs):
        sent["repo_id"] = repo_id
        sent["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        sent["card"] = (Path(folder_path) / "README.md").read_text()
        return huggingface_hub.CommitInfo(commit_url="https://huggingface.co/someone/tiny-unlearned/commit/0", commit_message="m",
                                          commit_description="", oid="0" * 40)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: FakeRepo())
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload_folder)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_test")
    out = tmp_path / "pushed"
    run_tofu.main(run_tofu_flags(data, model_dir, reference, out, "--push_to_hub", "true",
                                 "--hub_model_id", "someone/tiny-unlearned"))
    assert sent["repo_id"] == "someone/tiny-unlearned"
    assert {"README.md", "model.safetensors", "tokenizer.json", "config.json", "unlearning.png",
            "tofu_summary.json"} <= set(sent["files"])
    assert "hf_fake_token_for_test" not in sent["card"]
    assert "## Results (TOFU evaluation)" in sent["card"] and "| metric | before | after |" in sent["card"]
    assert "\n# tiny-unlearned\n" in sent["card"]  # titled after the repository, not the output folder
    assert "npo_beta: 0.1" in sent["card"] and "sophia_rho" in sent["card"] and "simnpo_beta" not in sent["card"]


def test_bad_run_tofu_inputs_fail_before_training(tmp_path, target_setup, monkeypatch):
    import run_tofu

    data, model_dir, reference = target_setup
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no_hf_home"))
    with pytest.raises(ValueError, match="--push_to_hub needs --hub_model_id"):
        run_tofu.main(run_tofu_flags(data, model_dir, reference, tmp_path / "o1", "--push_to_hub", "true"))
    with pytest.raises(ValueError, match="needs Hugging Face credentials"):
        run_tofu.main(run_tofu_flags(data, model_dir, reference, tmp_path / "o2", "--push_to_hub", "true",
                                     "--hub_model_id", "a/b"))
    with pytest.raises(ValueError, match="is inside the model folder"):
        run_tofu.main(run_tofu_flags(data, model_dir, reference, model_dir / "unlearned"))
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
    assert not (model_dir / "unlearned").exists()


def test_vocabulary_mismatch_is_refused(tmp_path, tokenizer, make_model):
    from hf_unlearn.pipeline import load_model_and_tokenizer

    model = make_model(vocab_size=100)
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="tokenizer has 5\\d\\d tokens but the model's embedding matrix has 100 rows"):
        load_model_and_tokenizer(str(tmp_path / "m"))


def test_finetune_tiny_preset_on_a_slice_of_real_tofu(tmp_path, tofu_dir):
    import finetune_tofu

    out = tmp_path / "tiny_target"
    trainer = finetune_tofu.main([
        "--model_name_or_path", "tiny-llama", "--tiny_size", "demo", "--dataset_name", str(tofu_dir),
        "--split", "full", "--max_train_rows", "64", "--output_dir", str(out), "--num_train_epochs", "3",
        "--learning_rate", "3e-3", "--per_device_train_batch_size", "16", "--report_to", "none",
        "--save_strategy", "no", "--logging_steps", "1", "--skip_evaluation", "true", "--disable_tqdm", "true",
    ])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0]  # it learns
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(out)) == AutoModelForCausalLM.from_pretrained(out).config.vocab_size
