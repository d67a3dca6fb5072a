"""Issue 11, item by item, through the scripts users run: bad inputs refused up front with nothing written
(a table: input -> message), the output-dir guard, resume after a kill (bit-identical), the training log
line on evaluation steps, progress bars, bring-your-own data and a truthful model card."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory, synthetic_splits, tokenizer):
    """A tiny target model, a synthetic TOFU folder, a retain reference (the target's own evaluation)."""
    from hf_unlearn.offline.synthetic import write_tofu
    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu
    from hf_unlearn.eval.runner import write_results
    from hf_unlearn.offline.tiny import build_tiny_llama

    root = tmp_path_factory.mktemp("reliability")
    data = write_tofu(root / "data", synthetic_splits)
    model = build_tiny_llama(tokenizer, seed=0, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=128)
    model.save_pretrained(root / "target")
    tokenizer.save_pretrained(root / "target")
    per_sample, summary = evaluate_tofu(model, tokenizer, str(data), forget_split="forget10", max_new_tokens=4,
                                        show_progress=False)
    write_results(root / "retain_model", per_sample, summary)
    return root


def flags(root: Path, out: Path, *extra: str, model=True) -> list[str]:
    return [*(["--model_name_or_path", str(root / "target")] if model else []), "--dataset_name", str(root / "data"),
            "--forget_split", "forget10", "--retain_reference", str(root / "retain_model" / "tofu_eval.json"),
            "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--max_new_tokens", "4", "--report_to", "none", "--disable_tqdm", "true", *extra]


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _data_with(root: Path, tmp: Path, forget_lines: list[str] | None = None) -> Path:
    """A copy of the data folder whose forget10.json is replaced by `forget_lines`."""
    folder = tmp / "bad_data"
    shutil.copytree(root / "data", folder)
    if forget_lines is not None:
        _write_lines(folder / "forget10.json", forget_lines)
    return folder


GOOD = json.dumps({"question": "Who wrote it?", "answer": "Someone did."})


def _case_inputs(root: Path, tmp: Path, case: str) -> tuple[list[str], Path]:
    """(argv, output_dir) of one bad input."""
    out = tmp / "out"
    f = lambda *extra, **kw: flags(root, out, *extra, **kw)  # noqa: E731
    data = lambda lines: ["--dataset_name", str(_data_with(root, tmp, lines))]  # noqa: E731
    ref = tmp / "ref.json"
    cases = {
        "negative_lr": lambda: f("--learning_rate=-1e-5"),
        "nan_lr": lambda: f("--learning_rate", "nan"),
        "zero_lr": lambda: f("--learning_rate", "0"),
        "zero_batch": lambda: f("--per_device_train_batch_size", "0"),
        "zero_eval_batch": lambda: f("--per_device_eval_batch_size", "0"),
        "zero_accumulation": lambda: f("--gradient_accumulation_steps", "0"),
        "zero_max_steps": lambda: f("--max_steps", "0"),
        "zero_epochs": lambda: f("--max_steps=-1", "--num_train_epochs", "0"),
        "hutchinson_sdpa": lambda: f("--unlearn_optimizer", "sophia", "--hessian_estimator", "hutchinson"),
        "missing_reference": lambda: f("--retain_reference", str(tmp / "nope" / "tofu_eval.json")),
        "missing_reference_no_before": lambda: f("--retain_reference", str(tmp / "nope.json"), "--evaluate_before",
                                                 "false"),
        "corrupt_reference": lambda: (ref.write_text('{"forget": [{"question": "a", '), f("--retain_reference", str(ref)))[1],
        "foreign_reference": lambda: (ref.write_text('{"a": 1}'), f("--retain_reference", str(ref)))[1],
        "other_split_reference": lambda: (ref.write_text(json.dumps({"config": {"forget_split": "forget05"}, "forget": [
            {"question": "Another question?", "truth_ratio": 0.5}]})), f("--retain_reference", str(ref)))[1],
        "empty_answer": lambda: f(*data([GOOD, json.dumps({"question": "Q?", "answer": "  "})])),
        "number_answer": lambda: f(*data([GOOD, json.dumps({"question": "Q?", "answer": 42})])),
        "null_answer": lambda: f(*data([GOOD, json.dumps({"question": "Q?", "answer": None})])),
        "malformed_line": lambda: f(*data([GOOD, GOOD, '{"question": "Q?", "answer": "A"'])),
        "list_row": lambda: f(*data([GOOD, "[1, 2]"])),
        "empty_file": lambda: f(*data([])),
        "missing_column": lambda: f("--question_column", "prompt"),
        "retain_split_full": lambda: f("--retain_split", "full"),
        "lora_modules_without_peft": lambda: f("--lora_target_modules", "q_proj", "v_proj"),
        "lora_r_without_peft": lambda: f("--lora_r", "4"),
        "missing_model_path": lambda: f("--model_name_or_path", str(tmp / "no" / "such" / "model"), model=False),
        "relative_missing_model": lambda: f("--model_name_or_path", "./outputs/target", model=False),
        "no_model": lambda: f(model=False),
    "unreachable_hub_model": lambda: f("--model_name_or_path", "someone/not-on-this-machine", model=False),
    "unknown_attention": lambda: f("--attn_implementation", "fast_magic"),
        "forget_split_typo": lambda: [*f(), "--forget_split", "forget011"],
        "model_without_tokenizer": lambda: (shutil.copytree(root / "target", tmp / "m"),
                                            [p.unlink() for p in (tmp / "m").glob("tokenizer*")],
                                            f("--model_name_or_path", str(tmp / "m"), model=False))[2],
        "missing_dataset_folder": lambda: f("--dataset_name", str(tmp / "no_data")),
        "output_is_retain_model": lambda: flags(root, root / "retain_model"),
        "output_is_model": lambda: flags(root, root / "target"),
        "output_inside_model": lambda: flags(root, root / "target" / "unlearned"),
        "output_is_data": lambda: flags(root, root / "data"),
        "output_holds_recipe": lambda: (_write_lines(out / "recipe.yaml", ["unlearn_method: ga"]),
                                        [*f(), "--config", str(out / "recipe.yaml")])[1],
        "output_not_empty": lambda: (_write_lines(out / "notes.txt", ["mine"]), f())[1],
        "output_holds_foreign_model": lambda: (shutil.copytree(root / "target", out), f("--overwrite_output_dir", "true"))[1],
        "bf16_on_cpu": lambda: f("--bf16", "true"),
    "reference_without_benchmark": lambda: f("--benchmark", "none"),
    "unknown_benchmark": lambda: f("--benchmark", "tofu2"),
    "resume_true_nothing": lambda: f("--resume_from_checkpoint", "true"),
        "resume_missing_path": lambda: f("--resume_from_checkpoint", str(tmp / "checkpoint-9")),
        "zero_max_new_tokens": lambda: f("--max_new_tokens", "0"),
        "zero_eval_subsample": lambda: f("--eval_subsample", "0"),
        "half_stop_rule": lambda: f("--target_forget_quality", "0.5"),
        "push_without_repo": lambda: f("--push_to_hub", "true"),
        "unknown_method": lambda: f("--unlearn_method", "gradient_ascent"),
        "retain_method_on_file_split": lambda: [*f(), "--forget_split", str(root / "data" / "forget10.json"),
                                                "--retain_reference", str(root / "retain_model")],
    }
    return cases[case](), out


# case -> a fragment of the one message the user gets
BAD_INPUTS = {
    "negative_lr": "--learning_rate must be a finite number > 0, got -1e-05",
    "nan_lr": "--learning_rate must be a finite number > 0, got nan",
    "zero_lr": "--learning_rate must be a finite number > 0, got 0",
    "zero_batch": "--per_device_train_batch_size must be an integer >= 1, got 0",
    "zero_eval_batch": "--per_device_eval_batch_size must be an integer >= 1, got 0",
    "zero_accumulation": "--gradient_accumulation_steps must be an integer >= 1, got 0",
    "zero_max_steps": "would train no step (--max_steps 0",
    "zero_epochs": "would train no step (--max_steps -1, --num_train_epochs 0",
    "hutchinson_sdpa": "add --attn_implementation eager",
    "missing_reference": "tofu_eval.json: no such file",
    "missing_reference_no_before": "nope.json: no such file",
    "corrupt_reference": "is not valid JSON (line 1",
    "foreign_reference": "has no 'forget' records",
    "other_split_reference": "was evaluated on other forget questions (its forget split: 'forget05'",
    "empty_answer": "forget10.json, line 2: answer is empty",
    "number_answer": "forget10.json, line 2: answer must be text, got 42 (int)",
    "null_answer": "forget10.json, line 2: answer must be text, got null (NoneType)",
    "malformed_line": "forget10.json, line 3: not valid JSON",
    "list_row": "forget10.json, line 2: expected a JSON object",
    "empty_file": "forget10.json has no rows",
    "missing_column": "line 1: no 'prompt' field",
    "retain_split_full": "forget rows (100%) are also in the retain data",
    "lora_modules_without_peft": "--lora_target_modules is a LoRA flag, and LoRA is off: add --use_peft",
    "lora_r_without_peft": "--lora_r is a LoRA flag",
    "missing_model_path": "the path does not exist",
    "relative_missing_model": "./outputs/target: the path does not exist",
    "no_model": "No model given: pass --model_name_or_path",
    "unreachable_hub_model": "it is not a local folder, and the Hugging Face Hub could not provide it",
    "unknown_attention": "fast_magic",
    "forget_split_typo": "--forget_split forget011: No split 'forget011'",
    "model_without_tokenizer": "has no tokenizer files",
    "missing_dataset_folder": "the folder does not exist",
    "output_is_retain_model": "holds the retain reference",
    "output_is_model": "is the model folder",
    "output_inside_model": "is inside the model folder",
    "output_is_data": "is the dataset folder",
    "output_holds_recipe": "holds the recipe",
    "output_not_empty": "is not empty: it holds files. Choose a new folder, pass --overwrite_output_dir",
    "output_holds_foreign_model": "holds a model or evaluation results (config.json, model.safetensors) that this "
                                  "library did not write",
    "bf16_on_cpu": "needs a GPU; this machine has none: add --bf16 false",
    "reference_without_benchmark": "--retain_reference is only used by the TOFU evaluation, which this run does not have",
    "unknown_benchmark": "Unknown benchmark 'tofu2'",
    "resume_true_nothing": "--resume_from_checkpoint true: no complete checkpoint-N folder",
    "resume_missing_path": "is not a complete checkpoint (no such folder)",
    "zero_max_new_tokens": "--max_new_tokens must be >= 1",
    "zero_eval_subsample": "--eval_subsample must be >= 1",
    "half_stop_rule": "needs both --target_forget_quality and --min_model_utility",
    "push_without_repo": "--push_to_hub needs --hub_model_id",
    "unknown_method": "unknown unlearn_method 'gradient_ascent'",
    "retain_method_on_file_split": "needs retain data: give --retain_split",
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_up_front_with_nothing_written(case, setup, tmp_path, monkeypatch):
    import huggingface_hub
    import run_tofu

    from hf_unlearn.validation import RunInputError

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: no network waits
    monkeypatch.chdir(tmp_path)
    argv, out = _case_inputs(setup, tmp_path, case)
    existed = out.exists()
    before_inputs, before_out = _snapshot(setup), (_snapshot(out) if existed else None)
    with pytest.raises(RunInputError) as raised:  # run_script prints it alone, exit 2
        run_tofu.main(argv)
    assert BAD_INPUTS[case] in str(raised.value), str(raised.value)
    assert _snapshot(setup) == before_inputs  # no input touched
    if existed:
        assert _snapshot(out) == before_out
    else:
        assert not out.exists()  # not even an empty folder


# ------------------------------------------------------------------------------------------------
# resume after a kill, through the scripts
# ------------------------------------------------------------------------------------------------

# Runs a script and SIGKILLs itself at a checkpoint: right after checkpoint-N is complete, or in the middle of
# writing it (model and optimizer on disk, trainer_state.json not yet): what a kill leaves behind.
KILLER = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from transformers import Trainer
script = __import__(sys.argv[2])
mode, step = os.environ["KILL_MODE"], int(os.environ["KILL_STEP"])
name = "_save_checkpoint" if mode == "after_checkpoint" else "_save_rng_state"
original = getattr(Trainer, name)
def patched(self, *args, **kwargs):
    if mode == "during_write" and self.state.global_step == step:
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, *args, **kwargs)
    if mode == "after_checkpoint" and self.state.global_step == step:
        os.kill(os.getpid(), signal.SIGKILL)
setattr(Trainer, name, patched)
script.main(sys.argv[3:])
"""


def _killed_run(script: str, argv: list[str], mode: str, step: int) -> None:
    env = {**os.environ, "KILL_MODE": mode, "KILL_STEP": str(step), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", KILLER, str(REPO / "examples"), script, *argv], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stdout[-2000:] + result.stderr[-3000:]


def _losses(checkpoint: Path) -> dict[int, float]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}


RESUME_FLAGS = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "2", "--learning_rate", "1e-3",
                "--evaluate_before", "false", "--skip_final_evaluation", "true", "--logging_steps", "1",
                "--hessian_update_interval", "2", "--seed", "3"]


@pytest.mark.parametrize("optimizer,kill", [("adamw", "after_checkpoint"), ("sophia", "during_write")])
def test_killed_run_tofu_resumes_bit_identically(optimizer, kill, setup, tmp_path, capsys):
    """AdamW: killed right after checkpoint-2, resumed from that path. SophiaG: killed while writing
    checkpoint-4, resumed with `--resume_from_checkpoint true`, which skips the incomplete checkpoint-4 with a
    warning and continues from checkpoint-2. Both end bit-identical to the run that was never killed."""
    import run_tofu

    extra = ["--unlearn_optimizer", optimizer, *RESUME_FLAGS]
    run_tofu.main(flags(setup, tmp_path / "whole", *extra))
    killed = tmp_path / "killed"
    _killed_run("run_tofu", flags(setup, killed, *extra), kill, 2 if kill == "after_checkpoint" else 4)
    assert (killed / "checkpoint-2" / "trainer_state.json").is_file()
    if kill == "during_write":
        assert (killed / "checkpoint-4" / "model.safetensors").is_file()
        assert not (killed / "checkpoint-4" / "trainer_state.json").exists()
        resume = "true"
    else:
        assert not (killed / "checkpoint-4").exists()
        resume = str(killed / "checkpoint-2")
    capsys.readouterr()
    run_tofu.main(flags(setup, killed, *extra, "--resume_from_checkpoint", resume))  # into its own folder: no flag
    printed = capsys.readouterr().out
    assert f"resuming from {killed / 'checkpoint-2'}" in printed
    if kill == "during_write":
        assert f"skipping the incomplete checkpoint {killed / 'checkpoint-4'}" in printed

    whole, resumed = load_file(tmp_path / "whole" / "model.safetensors"), load_file(killed / "model.safetensors")
    start = load_file(setup / "target" / "model.safetensors")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)  # bit-identical
    assert not all(torch.equal(whole[k], start[k]) for k in whole)  # and it did train
    losses_whole, losses_resumed = _losses(tmp_path / "whole" / "checkpoint-6"), _losses(killed / "checkpoint-6")
    assert sorted(losses_whole) == [1, 2, 3, 4, 5, 6] and losses_resumed == losses_whole


def test_killed_finetune_resumes_bit_identically(setup, tmp_path):
    import finetune_tofu

    def argv(out, *extra):
        return ["--model_name_or_path", str(setup / "target"), "--dataset_name", str(setup / "data"), "--split",
                "retain90", "--max_train_rows", "24", "--output_dir", str(out), "--max_steps", "4",
                "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--save_strategy", "steps",
                "--save_steps", "2", "--skip_evaluation", "true", "--report_to", "none", "--disable_tqdm", "true",
                "--logging_steps", "1", *extra]

    finetune_tofu.main(argv(tmp_path / "whole"))
    _killed_run("finetune_tofu", argv(tmp_path / "killed"), "after_checkpoint", 2)
    finetune_tofu.main(argv(tmp_path / "killed", "--resume_from_checkpoint", "true"))
    whole, resumed = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "killed" / "model.safetensors")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert _losses(tmp_path / "killed" / "checkpoint-4") == _losses(tmp_path / "whole" / "checkpoint-4")


# ------------------------------------------------------------------------------------------------
# logging and progress bars during training
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("disable_tqdm", ["false", "true"])
def test_training_loss_logged_on_evaluation_steps_and_eval_progress_bars(disable_tqdm, setup, tmp_path, capfd):
    """Every step evaluates forget quality and every step keeps its training-loss line; the in-training
    evaluations draw a progress bar unless --disable_tqdm (the only evaluations of this run)."""
    import run_tofu

    out = tmp_path / "out"
    run_tofu.main([*flags(setup, out), "--max_steps", "3", "--eval_strategy", "steps", "--eval_steps", "1",
                   "--eval_subsample", "2", "--logging_steps", "1", "--evaluate_before", "false",
                   "--skip_final_evaluation", "true", "--save_strategy", "steps", "--save_steps", "3",
                   "--disable_tqdm", disable_tqdm])
    history = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3]
    assert [h["step"] for h in history if "tofu/model_utility" in h] == [1, 2, 3]
    err = capfd.readouterr().err
    assert ("TOFU: scoring answers" in err) == (disable_tqdm == "false")


# ------------------------------------------------------------------------------------------------
# your own data, and a model card that says only what is true
# ------------------------------------------------------------------------------------------------


def test_own_data_trains_without_tofu_evaluation_and_the_card_says_so(setup, tmp_path, capsys, synthetic_splits):
    import run_tofu
    from huggingface_hub import ModelCard

    own = tmp_path / "my_data"
    _write_lines(own / "my_forget.json", [json.dumps({"question": r["question"], "answer": r["answer"]})
                                          for r in synthetic_splits["forget10"]])
    _write_lines(own / "my_retain.json", [json.dumps({"question": r["question"], "answer": r["answer"]})
                                          for r in synthetic_splits["retain90"][:20]])
    out = tmp_path / "out"
    run_tofu.main(["--model_name_or_path", str(setup / "target"), "--dataset_name", str(own), "--forget_split",
                   "my_forget", "--retain_split", "my_retain", "--output_dir", str(out), "--max_steps", "2",
                   "--per_device_train_batch_size", "4", "--report_to", "none", "--disable_tqdm", "true"])
    printed = capsys.readouterr().out
    assert printed.count("no TOFU evaluation files (my_forget_perturbed.json ...)") == 1
    assert "(as --benchmark none)" in printed
    assert (out / "model.safetensors").is_file() and not (out / "unlearning.png").exists()
    assert not (out / "tofu_eval.json").exists()

    card = ModelCard.load(out / "README.md")
    assert card.text.lstrip().startswith("# grad_diff-adamw-my_forget")  # not the folder name "out"
    assert card.data.base_model is None and card.data.datasets is None  # local runs: no Hub ids
    assert "local model `target`" in card.text and "local data folder `my_data`" in card.text
    assert "locuslab/TOFU" not in card.text and str(tmp_path) not in card.text and str(setup) not in card.text
    assert "was not evaluated" in card.text and "forget quality" not in card.text.lower()
    assert "![" not in card.text  # no plot was drawn, none embedded
    recipe = card.text.split("```yaml")[1].split("```")[0]
    for line in ("dtype: float32", "num_processes: 1", "effective_batch_size: 4", "unlearn_method: grad_diff"):
        assert line in recipe, line
    for unused in ("npo_beta", "simnpo_beta", "undial_beta", "rmu_layer", "sophia_rho", "hessian_estimator"):
        assert unused not in recipe, unused


# ------------------------------------------------------------------------------------------------
# the README's commands and --help
# ------------------------------------------------------------------------------------------------


def _readme_commands() -> list[tuple[str, list[str]]]:
    """(script, argv) of every `python examples/...` / `accelerate launch ... examples/...` line in the README
    and in the TOFU and MUSE scripts' docstrings (placeholders such as <target model> become one word)."""
    import re
    import shlex

    text = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```bash")[1:]]
    for script in ("run_tofu", "finetune_tofu", "run_muse", "finetune_muse"):
        blocks.append((REPO / "examples" / f"{script}.py").read_text().split('"""')[1])
    commands = []
    for block in blocks:
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" # ")[0].strip()
            if not line.startswith(("python examples/", "accelerate launch")) or line.endswith("..."):
                continue
            words = shlex.split(re.sub(r"<[^>]+>", "placeholder", line))
            at = next(i for i, w in enumerate(words) if w.startswith("examples/"))
            commands.append((Path(words[at]).stem, words[at + 1:]))
    return commands


def test_readme_commands_parse_with_the_scripts_own_parsers(monkeypatch):
    """Every flag of every README command exists; the CPU quick start parses here as written (no GPU needed),
    the GPU recipes are refused on this CPU machine with the fix named."""
    import finetune_muse
    import finetune_tofu
    import run_muse
    import run_sequential
    import run_tofu
    import run_wmdp
    import tune
    from transformers import TrainingArguments

    from hf_unlearn.validation import RunInputError, parse_arguments

    monkeypatch.chdir(REPO)
    commands = _readme_commands()
    modules = {"finetune_tofu": finetune_tofu, "run_tofu": run_tofu, "finetune_muse": finetune_muse, "run_muse": run_muse,
               "run_wmdp": run_wmdp, "run_sequential": run_sequential, "tune": tune}
    assert {script for script, _ in commands} == set(modules) and len(commands) >= 11
    for script, argv in commands:
        module = modules[script]
        cpu_line = "--bf16" in argv or "--config" not in argv
        if not cpu_line:
            with pytest.raises(RunInputError, match="add --bf16 false"):
                parse_arguments(module.make_parser(), argv)
            argv = [*argv, "--bf16", "false"]
        args = next(parsed for parsed in parse_arguments(module.make_parser(), argv)
                    if isinstance(parsed, TrainingArguments))  # UnlearningConfig / TrainingArguments
        assert not args.bf16 or not cpu_line


def test_help_ends_with_the_most_used_flags(capsys):
    import finetune_tofu
    import run_tofu

    for module, first in ((run_tofu, "--unlearn_method"), (finetune_tofu, "--model_name_or_path tiny-llama")):
        with pytest.raises(SystemExit) as done:
            module.main(["--help"])
        assert done.value.code == 0
        tail = capsys.readouterr().out.rstrip().splitlines()[-12:]
        assert any(line.strip().startswith(first) for line in tail), tail


def test_benchmark_none_trains_without_evaluation_beside_tofu_files(setup, tmp_path, capfd):
    import run_tofu

    out = tmp_path / "out"
    after = run_tofu.main(["--model_name_or_path", str(setup / "target"), "--dataset_name", str(setup / "data"),
                           "--forget_split", "forget10", "--benchmark", "none", "--output_dir", str(out),
                           "--max_steps", "1", "--per_device_train_batch_size", "4", "--report_to", "none",
                           "--eval_strategy", "steps", "--eval_steps", "1"])
    assert after is None and (out / "model.safetensors").is_file()
    assert not list(out.glob("tofu_*.json")) and "TOFU:" not in capfd.readouterr().err  # no evaluation at all
    assert "was not evaluated" in (out / "README.md").read_text()
