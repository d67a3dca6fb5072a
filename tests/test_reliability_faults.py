"""Issue 20, reliability: work or files lost, resumes that do not fit the run, refusals printed alone, inputs
longer than the model, non-UTF-8 files, nonsense numbers, and results that claim more than was measured.
Reuses the tiny target model, data and reference of `test_reliability.setup`."""

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

from test_reliability import REPO, flags, setup  # noqa: F401  (setup: the module's fixture)

from hf_unlearn.validation import RunInputError

ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
QUICK = ["--evaluate_before", "false", "--skip_final_evaluation", "true"]


def _run_tofu(argv):
    import run_tofu

    return run_tofu.main(argv)


def _refused(argv, fragment: str, out: Path | None = None):
    existed = out is not None and out.exists()
    with pytest.raises(RunInputError) as raised:
        _run_tofu(argv)
    assert fragment in str(raised.value), str(raised.value)
    if out is not None and not existed:
        assert not out.exists()
    return str(raised.value)


# ------------------------------------------------------------------------------------------------
# refusals: the message alone, exit 2
# ------------------------------------------------------------------------------------------------


def test_refusal_prints_the_message_alone_with_exit_2(setup, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(REPO / "examples" / "run_tofu.py"),
                             *flags(setup, out, "--weight_decay=-0.1")], env=ENV, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --weight_decay must be a finite number >= 0, got -0.1")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# nonsense numbers, non-UTF-8 files, inputs longer than the model, results that would claim too much
# ------------------------------------------------------------------------------------------------

LATIN1 = '{"question": "Who wrote Les Mis\xe9rables?", "answer": "Victor Hugo."}\n'.encode("latin-1")


@pytest.mark.parametrize("case,extra,fragment", [
    ("negative_weight_decay", ["--weight_decay=-0.1"], "--weight_decay must be a finite number >= 0, got -0.1"),
    ("negative_weight_decay_sophia", ["--weight_decay=-0.1", "--unlearn_optimizer", "sophia"],
     "--weight_decay must be a finite number >= 0"),
    ("nan_max_grad_norm", ["--max_grad_norm", "nan"], "--max_grad_norm must be a finite number >= 0 (0: no clipping), "
                                                       "got nan"),
    ("adam_beta2_one", ["--adam_beta2", "1.0"], "--adam_beta2 must be in [0, 1), got 1.0"),
    ("forget_quality_target_2", ["--target_forget_quality", "2", "--min_model_utility", "0.5"],
     "--target_forget_quality must be in [0, 1] (the range of its metric), got 2.0"),
    ("utility_floor_negative", ["--target_forget_quality", "0.05", "--min_model_utility=-1"],
     "--min_model_utility must be in [0, 1]"),
    ("holdout_is_forget", ["--holdout_split", "forget10"], "--holdout_split forget10 is the forget split"),
    ("non_utf8_data", None, "forget10.json: not UTF-8 text (byte 0xe9 at offset 31)"),
    ("non_utf8_reference", None, "--retain_reference"),
    ("reference_of_this_model", None, "a model compared with itself always scores as the retain model"),
])
def test_refused_before_any_work(case, extra, fragment, setup, tmp_path):
    out = tmp_path / "out"
    argv = flags(setup, out, *(extra or []))
    if case == "non_utf8_data":
        data = tmp_path / "data"
        shutil.copytree(setup / "data", data)
        (data / "forget10.json").write_bytes(LATIN1)
        argv += ["--dataset_name", str(data)]
    elif case in ("non_utf8_reference", "reference_of_this_model"):
        reference = json.loads((setup / "retain_model" / "tofu_eval.json").read_text())
        reference["config"]["model"] = str(setup / "target")
        path = tmp_path / "ref" / "tofu_eval.json"
        path.parent.mkdir()
        text = json.dumps(reference)
        path.write_bytes(text.encode() + (b'\xff' if case == "non_utf8_reference" else b""))
        argv += ["--retain_reference", str(path)]
        fragment = "not UTF-8 text (byte 0xff" if case == "non_utf8_reference" else fragment
    _refused(argv, fragment, out)


def test_examples_longer_than_the_model_are_refused_after_loading_with_nothing_left(setup, tmp_path):
    short = tmp_path / "short_model"
    shutil.copytree(setup / "target", short)
    config = json.loads((short / "config.json").read_text())
    config["max_position_embeddings"] = 64
    (short / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    _refused([*flags(setup, out, "--max_length", "512", model=False), "--model_name_or_path", str(short)],
             "--max_length 512 is longer than the model's context (64 positions): lower --max_length to at most 64",
             out)


def test_eval_cli_never_overwrites_the_retain_reference_nor_reads_a_half_saved_model(setup, tmp_path, capsys):
    from hf_unlearn.eval.__main__ import main as eval_main

    reference = setup / "retain_model" / "tofu_eval.json"
    before = reference.read_bytes()
    common = ["--model_name_or_path", str(setup / "target"), "--dataset_name", str(setup / "data"), "--max_new_tokens",
              "4", "--disable_tqdm", "true"]
    for ref in (str(reference), str(setup / "retain_model")):
        with pytest.raises(SystemExit) as done:
            eval_main([*common, "--retain_reference", ref, "--output_dir", str(setup / "retain_model")])
        assert done.value.code == 2
        assert "would overwrite --retain_reference" in capsys.readouterr().err
    assert reference.read_bytes() == before

    with pytest.raises(SystemExit):  # a holdout split that is the forget split: every AUC 0.5
        eval_main([*common, "--holdout_split", "forget10", "--output_dir", str(tmp_path / "e")])
    assert "10 of its 10 questions are forget questions" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# the output folder: unwritable, claimed by one run, partial saves
# ------------------------------------------------------------------------------------------------


def test_unwritable_output_folder_is_refused_before_training(setup, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _refused(flags(setup, blocker / "out"), f"{blocker} is a file, not a folder")

    from hf_unlearn import validation

    locked = tmp_path / "locked"
    locked.mkdir()
    real_open = os.open

    def refusing_open(path, *args, **kwargs):  # what a read-only folder does (root ignores chmod)
        if str(path).startswith(str(locked)):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(validation.os, "open", refusing_open)
    message = _refused(flags(setup, locked), "cannot be written (Permission denied)")
    assert "Nothing was trained" in message and list(locked.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused(setup, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    _refused(flags(setup, locked), "is not writable by this user")


def test_a_folder_claimed_by_a_live_run_is_refused_and_a_killed_runs_claim_is_taken_over(setup, tmp_path):
    from hf_unlearn.validation import CLAIM_FILE, _process_start

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "out"
        out.mkdir()
        import socket

        claim = {"pid": other.pid, "host": socket.gethostname(), "start": _process_start(other.pid),
                 "started": "2026-12-04 10:00:00"}
        (out / CLAIM_FILE).write_text(json.dumps(claim))
        _refused(flags(setup, out), f"is being written by another run (pid {other.pid}, started 2026-12-04 10:00:00)")
        assert [p.name for p in out.iterdir()] == [CLAIM_FILE]
    finally:
        other.kill()
        other.wait()
    # the same claim, its process gone: a killed run's folder holding nothing else, taken over without a flag
    _run_tofu(flags(setup, out, *QUICK))
    assert (out / "model.safetensors").is_file() and (out / "hf_unlearn_recipe.json").is_file()


def test_the_claim_is_atomic_one_of_two_runs_wins(tmp_path):
    from hf_unlearn.validation import CLAIM_FILE, claim_output_dir

    out = tmp_path / "new" / "out"
    driver = ("import sys, time; from hf_unlearn.validation import claim_output_dir; claim_output_dir(sys.argv[1]); "
              "print('claimed', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", driver, str(out)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "claimed"
        with pytest.raises(RunInputError, match=f"being written by another run \\(pid {other.pid}"):
            claim_output_dir(str(out))
        assert json.loads((out / CLAIM_FILE).read_text())["pid"] == other.pid  # its claim untouched
    finally:
        other.kill()
        other.wait()


# Runs run_tofu.py through run_script and sends itself `KILL_SIGNAL` in the middle of the final save: the model
# file half written in the save's partial folder.
SAVE_KILLER = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import transformers
from hf_unlearn.validation import run_script
script = __import__(sys.argv[2])
original = transformers.Trainer._save
def patched(self, output_dir=None, state_dict=None):
    original(self, output_dir, state_dict)
    weights = os.path.join(output_dir, "model.safetensors")
    with open(weights, "r+b") as fh:
        fh.truncate(os.path.getsize(weights) // 2)
    os.kill(os.getpid(), getattr(signal, os.environ["KILL_SIGNAL"]))
transformers.Trainer._save = patched
sys.argv = [sys.argv[2], *sys.argv[3:]]
sys.exit(run_script(script.main))
"""


@pytest.mark.parametrize("kill", ["SIGTERM", "SIGKILL"])
def test_kill_during_the_final_save_leaves_no_half_model_and_is_recognised(kill, setup, tmp_path, capsys):
    from hf_unlearn.eval.__main__ import main as eval_main
    from hf_unlearn.saving import PARTIAL_SAVE

    out = tmp_path / "out"
    argv = flags(setup, out, *QUICK)
    result = subprocess.run([sys.executable, "-c", SAVE_KILLER, str(REPO / "examples"), "run_tofu", *argv],
                            env={**ENV, "KILL_SIGNAL": kill}, capture_output=True, text=True, timeout=120)
    assert not (out / "model.safetensors").exists()  # never a half model beside complete files
    if kill == "SIGTERM":  # ends as an exception: the partial save is removed, the claim released
        assert result.returncode == 128 + signal.SIGTERM, result.stderr[-2000:]
        assert list(out.iterdir()) == []
        _run_tofu(argv)  # an empty folder: no flag needed
    else:
        assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
        assert (out / PARTIAL_SAVE / "model.safetensors").is_file()
        _refused(argv, "it holds the unfinished output of an earlier run of this library: a save that was interrupted")
        with pytest.raises(SystemExit) as done:
            eval_main(["--model_name_or_path", str(out), "--dataset_name", str(setup / "data"), "--output_dir",
                       str(tmp_path / "eval")])
        assert done.value.code == 2
        assert f"{out} holds no complete model: it is the output of a save that was interrupted" in \
            capsys.readouterr().err
        _run_tofu([*argv, "--overwrite_output_dir", "true"])
        assert not (out / PARTIAL_SAVE).exists()
    assert load_file(out / "model.safetensors")  # whole


# ------------------------------------------------------------------------------------------------
# resume: the recipe saved with each checkpoint, damaged checkpoints, a longer schedule
# ------------------------------------------------------------------------------------------------

SAVE_EVERY_2 = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--learning_rate", "1e-3",
                "--logging_steps", "1", "--seed", "3", *QUICK]


@pytest.fixture(scope="module")
def checkpointed(setup, tmp_path_factory):
    """An AdamW grad_diff run with checkpoint-2 and checkpoint-4 (each with its recipe)."""
    out = tmp_path_factory.mktemp("checkpointed") / "run"
    _run_tofu(flags(setup, out, *SAVE_EVERY_2))
    return out


def _copy(run: Path, tmp: Path) -> Path:
    copy = tmp / "run"
    shutil.copytree(run, copy)
    return copy


@pytest.mark.parametrize("extra,fragment", [
    (["--unlearn_optimizer", "sophia"], "unlearn_optimizer: adamw in the checkpoint, sophia now"),
    (["--unlearn_method", "npo"], "unlearn_method: grad_diff in the checkpoint, npo now"),
    (["--per_device_train_batch_size", "2"], "per_device_train_batch_size: 4 in the checkpoint, 2 now"),
    (["--seed", "4"], "seed: 3 in the checkpoint, 4 now"),
    ("processes", "num_processes: 2 in the checkpoint, 1 now"),
])
def test_resume_from_another_run_is_refused_naming_what_differs(extra, fragment, setup, checkpointed, tmp_path):
    from hf_unlearn.saving import RECIPE_FILE

    run = _copy(checkpointed, tmp_path)
    checkpoint = run / "checkpoint-2"
    if extra == "processes":  # a checkpoint made by 2 processes
        recipe = json.loads((checkpoint / RECIPE_FILE).read_text())
        (checkpoint / RECIPE_FILE).write_text(json.dumps({**recipe, "num_processes": 2}))
        extra = []
    argv = [*flags(setup, run, *SAVE_EVERY_2), *extra, "--resume_from_checkpoint", str(checkpoint)]
    message = _refused(argv, fragment)
    assert f"--resume_from_checkpoint {checkpoint} was made by another run" in message


@pytest.mark.parametrize("damage,fragment", [
    ("truncated_weights", "model.safetensors is cut short"),
    ("empty_optimizer", "optimizer.pt is empty"),
    ("truncated_optimizer", "optimizer.pt is damaged"),
    ("corrupt_optimizer", "optimizer.pt is damaged (archive member"),
])
def test_damaged_checkpoint_is_named_with_the_last_complete_one(damage, fragment, setup, checkpointed, tmp_path,
                                                                capsys):
    run = _copy(checkpointed, tmp_path)
    checkpoint = run / "checkpoint-4"
    target = checkpoint / ("model.safetensors" if damage == "truncated_weights" else "optimizer.pt")
    data = target.read_bytes()
    if damage == "empty_optimizer":
        target.write_bytes(b"")
    elif damage == "corrupt_optimizer":  # same size, table of contents intact: the bytes' checksums differ
        middle = len(data) // 2
        target.write_bytes(data[:middle] + bytes(256) + data[middle + 256:])
    else:
        target.write_bytes(data[: len(data) // 2])
    argv = [*flags(setup, run, *SAVE_EVERY_2), "--resume_from_checkpoint", str(checkpoint)]
    message = _refused(argv, f"The checkpoint {checkpoint} is damaged")
    assert fragment in message, message
    assert f"the last complete checkpoint is {run / 'checkpoint-2'}: resume from it" in message
    assert "weights_only=False" not in message
    if damage == "truncated_weights":  # `true` skips it, naming it, and resumes from checkpoint-2
        capsys.readouterr()
        _run_tofu([*flags(setup, run, *SAVE_EVERY_2), "--resume_from_checkpoint", "true"])
        printed = capsys.readouterr().out
        assert f"skipping the incomplete checkpoint {checkpoint}" in printed
        assert f"resuming from {run / 'checkpoint-2'}" in printed


def test_raising_max_steps_on_resume_trains_at_the_new_schedules_learning_rate(setup, checkpointed, tmp_path, capsys):
    run = _copy(checkpointed, tmp_path)
    capsys.readouterr()
    _run_tofu([*flags(setup, run, *SAVE_EVERY_2), "--max_steps", "5", "--resume_from_checkpoint", str(run / "checkpoint-4")])
    printed = capsys.readouterr().out
    assert "max_steps: 4 -> 5" in printed  # said, not silent
    # linear decay, no warmup: 1e-3 * (5 - 4) / 5 at step 4 (the checkpoint's optimizer held 0, its schedule's end)
    assert "learning rate 0 (the checkpoint's) -> 0.0002 (this schedule's)" in printed
    at4, final = load_file(run / "checkpoint-4" / "model.safetensors"), load_file(run / "model.safetensors")
    assert not all(torch.equal(at4[k], final[k]) for k in at4)  # the one resumed step moved the weights (lr 0 would not)


# ------------------------------------------------------------------------------------------------
# results that say what was measured
# ------------------------------------------------------------------------------------------------


def test_unlearned_models_results_name_it_and_its_adapter_finds_its_base_from_anywhere(setup, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative_model = os.path.relpath(setup / "target", tmp_path)
    out = tmp_path / "out"
    _run_tofu([*flags(setup, out, "--evaluate_before", "false", "--use_peft", "true", "--lora_r", "4",
                      "--lora_target_modules", "q_proj", "v_proj", model=False),
               "--model_name_or_path", relative_model, "--max_steps", "1"])
    config = json.loads((out / "tofu_eval.json").read_text())["config"]
    assert config["model"] == str(out)  # the unlearned model, not the base
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str((setup / "target").resolve())
    assert oct((out / "tofu_eval.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_plot_says_which_points_use_a_subsample(tmp_path, monkeypatch):
    import matplotlib.figure

    from hf_unlearn.reporting import plot_unlearning

    seen = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, path, **kw: seen.append(self))
    history = [{"step": 1, "forget_quality": 0.2, "model_utility": 0.5}, {"step": 2, "forget_quality": 0.1,
                                                                          "model_utility": 0.5}]
    plot_unlearning(history, tmp_path / "p.png", after={"forget_quality": 1e-3, "model_utility": 0.4}, subsample=20)
    labels = [t.get_text() for t in seen[0].axes[0].get_legend().get_texts()]
    assert labels[:2] == ["during training (first 20 questions per split)", "after (all questions)"]


def test_card_names_every_corpus_by_its_file_name_never_by_path(tmp_path):
    from types import SimpleNamespace

    from hf_unlearn.hub import recipe_of, unlearning_model_card

    corpora = tmp_path / "corpora"
    corpora.mkdir()
    files = [corpora / name for name in ("bio-forget-corpus.jsonl", "cyber-forget-corpus.jsonl", "wikitext.jsonl")]
    for file in files:
        file.write_text("{}\n")
    forget, retain = f"{files[0]},{files[1]}", str(files[2])
    args = SimpleNamespace(recipe=lambda: {"unlearn_method": "rmu"}, world_size=1, per_device_train_batch_size=4,
                           gradient_accumulation_steps=1)
    recipe = recipe_of(args, {"forget_corpora": forget, "retain_corpora": retain})
    card = unlearning_model_card(model_name="m", base_model="base", method="rmu", optimizer="adamw",
                                 dataset_name="cais/wmdp", forget_split=forget, retain_split=retain, recipe=recipe)
    assert "`bio-forget-corpus.jsonl, cyber-forget-corpus.jsonl`" in card.text
    assert "- retain split: `wikitext.jsonl`" in card.text
    assert str(tmp_path) not in card.text


# ------------------------------------------------------------------------------------------------
# --disable_tqdm and the README
# ------------------------------------------------------------------------------------------------


def test_disable_tqdm_turns_off_every_librarys_bars(setup, tmp_path):
    import huggingface_hub.utils
    import run_tofu
    import transformers

    from hf_unlearn.validation import parse_arguments

    try:
        parse_arguments(run_tofu.make_parser(), flags(setup, tmp_path / "out"))
        assert not transformers.utils.logging.is_progress_bar_enabled()
        assert huggingface_hub.utils.are_progress_bars_disabled()
    finally:
        transformers.utils.logging.enable_progress_bar()
        huggingface_hub.utils.enable_progress_bars()


def test_readme_outputs_are_ignored_by_git_and_the_sequential_reference_fits():
    import re

    text = (REPO / "README.md").read_text()
    outputs = set(re.findall(r"--(?:output_dir|model_dir) (\S+)", text))
    outputs |= set(re.findall(r"python -m hf_unlearn\.offline\.\w+ (\w[\w/]*)", text))
    outputs = {o for o in outputs if not o.startswith(("<", "$"))}
    assert outputs, "no output folders found in the README"
    ignored = subprocess.run(["git", "check-ignore", *[f"{o}/x" for o in outputs]], cwd=REPO, capture_output=True,
                             text=True).stdout.split()
    assert sorted(ignored) == sorted(f"{o}/x" for o in outputs)
    sequential = text.split("examples/run_sequential.py")[0].rsplit("```bash", 1)[1]
    assert "--eval_forget_split forget01" in sequential


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the demo pins x86-64 kernels")
def test_demo_pins_the_cpu_kernels_and_threads_its_table_depends_on():
    sys.path.insert(0, str(REPO / "examples"))
    import demo

    env = demo.environment()  # what its runs use, probed in a child process with the pinned settings
    assert env["cpu_capability_used"] == "AVX2" and env["OMP_NUM_THREADS"] == "1"
    assert env["MKL_ENABLE_INSTRUCTIONS"] == "AVX2" and env["torch"]
