"""Issue 22, item 1: one unlearning entry point (examples/unlearn.py over `hf_unlearn.entry`'s script specs).
Resume through the script is bit-identical for every benchmark's data, a benchmark with its own evaluation data
on TOFU-format data is refused with the flag to give, and each benchmark's "before" evaluation and refusals go
through the same clean-up guard and `run_script`. Reuses `test_reliability`'s tiny target, data and kill helper."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from test_reliability import REPO, RESUME_FLAGS, _killed_run, _losses, flags, setup  # noqa: F401  (setup: fixture)

from hf_unlearn.validation import RunInputError

ENV_PATH = {"PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def wmdp_setup(tmp_path_factory):
    """The synthetic WMDP set (questions, MMLU, corpora) and a tiny model with a tokenizer trained on its texts."""
    from hf_unlearn.offline.tiny import build_tiny_llama, train_tokenizer
    from hf_unlearn.offline.wmdp_synthetic import target_training_texts, write_synthetic_wmdp

    root = tmp_path_factory.mktemp("entry_wmdp")
    write_synthetic_wmdp(root / "wmdp_data")
    tokenizer = train_tokenizer(target_training_texts(), vocab_size=400)
    build_tiny_llama(tokenizer, seed=0, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64).save_pretrained(root / "target")
    tokenizer.save_pretrained(root / "target")
    return root


@pytest.fixture(scope="module")
def muse_setup(tmp_path_factory):
    """A small synthetic MUSE corpus and a tiny model with a tokenizer trained on it."""
    from hf_unlearn.data.muse import muse_strings
    from hf_unlearn.offline.muse_synthetic import generate_muse, write_muse
    from hf_unlearn.offline.tiny import build_tiny_llama, train_tokenizer

    root = tmp_path_factory.mktemp("entry_muse")
    data = write_muse(root / "muse", generate_muse(num_forget=4, num_retain1=4, num_retain2=2, num_holdout=2, seed=0))
    tokenizer = train_tokenizer(muse_strings(str(data)), vocab_size=300)
    build_tiny_llama(tokenizer, seed=0, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=256).save_pretrained(root / "target")
    tokenizer.save_pretrained(root / "target")
    return root


def muse_flags(root, out, *extra) -> list[str]:
    return ["--benchmark", "muse", "--model_name_or_path", str(root / "target"), "--dataset_name", str(root / "muse"),
            "--output_dir", str(out), "--per_device_train_batch_size", "2", "--max_length", "32", "--use_cpu", "true",
            "--report_to", "none", "--disable_tqdm", "true", *extra]


def wmdp_flags(root, out, *extra) -> list[str]:
    corpora = root / "wmdp_data" / "corpora"
    return ["--benchmark", "wmdp", "--model_name_or_path", str(root / "target"), "--dataset_name",
            str(root / "wmdp_data"), "--forget_corpora", str(corpora / "bio-forget-corpus.jsonl"),
            "--retain_corpora", str(corpora / "wikitext.jsonl"), "--output_dir", str(out),
            "--per_device_train_batch_size", "2", "--max_length", "64", "--use_cpu", "true", "--report_to", "none",
            "--disable_tqdm", "true", *extra]


@pytest.mark.parametrize("benchmark", ["tofu", "muse", "wmdp"])
def test_killed_unlearn_resumes_bit_identically(benchmark, request, tmp_path, capsys):
    """Killed right after checkpoint-2, resumed with `--resume_from_checkpoint true` (refused by run_wmdp.py
    before the entry point): the model and the losses are those of the run that was never killed."""
    import unlearn

    root = request.getfixturevalue({"tofu": "setup", "muse": "muse_setup", "wmdp": "wmdp_setup"}[benchmark])
    make_flags = {"tofu": lambda r, out, *extra: flags(r, out, "--benchmark", "tofu", *extra),
                  "muse": muse_flags, "wmdp": wmdp_flags}[benchmark]
    make = lambda out: make_flags(root, out, *RESUME_FLAGS)  # noqa: E731
    start = root / "target" / "model.safetensors"
    unlearn.main(make(tmp_path / "whole"))
    killed = tmp_path / "killed"
    _killed_run("unlearn", make(killed), "after_checkpoint", 2)
    assert (killed / "checkpoint-2" / "trainer_state.json").is_file() and not (killed / "checkpoint-4").exists()
    capsys.readouterr()
    unlearn.main([*make(killed), "--resume_from_checkpoint", "true"])  # into its own folder: no other flag
    assert f"; resuming from {killed / 'checkpoint-2'}" in capsys.readouterr().out

    whole, resumed = load_file(tmp_path / "whole" / "model.safetensors"), load_file(killed / "model.safetensors")
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not all(torch.equal(whole[k], load_file(start)[k]) for k in whole)  # and it did train
    assert _losses(killed / "checkpoint-6") == _losses(tmp_path / "whole" / "checkpoint-6")


def test_wmdp_on_tofu_data_is_refused_naming_the_flags(setup, tmp_path):
    """--benchmark wmdp evaluates WMDP's own data: given TOFU-format data it is refused (never trained without
    evaluation, as `none`), with nothing written, on every path that could reach it."""
    import run_tofu
    import unlearn

    from hf_unlearn.validation import parse_arguments, validate_unlearning_run

    out = tmp_path / "out"
    tofu_only = ["--model_name_or_path", str(setup / "target"), "--dataset_name", str(setup / "data"),
                 "--output_dir", str(out), "--use_cpu", "true", "--report_to", "none"]
    for main in (unlearn.main, run_tofu.main):
        with pytest.raises(RunInputError, match="holds TOFU-format data.*--forget_corpora"):
            main(["--benchmark", "wmdp", *tofu_only])
        assert not out.exists()
    with pytest.raises(RunInputError, match="--benchmark wmdp takes the flags of WMDPScriptArguments"):
        run_tofu.main(flags(setup, out, "--benchmark", "wmdp"))  # TOFU's --forget_split: not a WMDP flag
    # The TOFU script arguments themselves (tune.py, library callers): refused, not silently `none`.
    script, args, model_args = parse_arguments(run_tofu.make_parser(), flags(setup, out, "--benchmark", "wmdp"))
    with pytest.raises(RunInputError, match="examples/unlearn.py --benchmark wmdp"):
        validate_unlearning_run(script, args, model_args, needs_retain=True)
    assert not out.exists()


def test_a_failing_before_evaluation_leaves_no_folder(wmdp_setup, tmp_path, monkeypatch):
    """run_wmdp.py's evaluation before training runs inside the clean-up guard, as every benchmark's does."""
    import run_wmdp

    from hf_unlearn.eval import benchmarks

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setitem(benchmarks._REGISTRY, "wmdp", dataclasses.replace(benchmarks.get_benchmark("wmdp"),
                                                                          evaluate=broken))
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="evaluation failed"):
        run_wmdp.main(wmdp_flags(wmdp_setup, out, "--max_steps", "1"))
    assert not out.exists()


def test_run_wmdp_refusal_prints_the_message_alone(wmdp_setup, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(REPO / "examples" / "run_wmdp.py"),
                             *wmdp_flags(wmdp_setup, out, "--max_wmdp_acc", "2")], env={**os.environ, **ENV_PATH},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "max_wmdp_acc" in result.stderr
    assert not out.exists()
