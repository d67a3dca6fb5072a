"""Sequential unlearning requests: the plan (rows per request, bad inputs), the bookkeeping of a run (request k
trains on exactly its rows, starts from request k-1's weights with a fresh optimizer, writes its own
evaluation), resume, and examples/run_sequential.py end to end through `accelerate launch`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
SPLITS = ("forget01", "forget05", "forget10")
RECIPE = REPO / "recipes" / "tofu" / "sequential" / "undial_adamw.yaml"


@pytest.fixture(scope="module")
def seq_setup(tmp_path_factory):
    """30 synthetic authors x 2 questions (forget01/05/10 = 1/2/3 authors = 2/4/6 rows), a tiny target and
    one reference per forget split (the target's own evaluation: the bookkeeping, not the numbers, is tested)."""
    from hf_unlearn.offline.synthetic import generate_tofu, write_tofu
    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu
    from hf_unlearn.eval.runner import write_results
    from hf_unlearn.offline.tiny import build_tiny_llama, train_tokenizer

    root = tmp_path_factory.mktemp("sequential")
    splits = generate_tofu(num_authors=30, questions_per_author=2, seed=0)
    data = write_tofu(root / "data", splits)
    tokenizer = train_tokenizer([r[k] for rows in splits.values() for r in rows for k in ("question", "answer")],
                                vocab_size=300)
    model = build_tiny_llama(tokenizer, seed=0, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=64)
    model.save_pretrained(root / "target")
    tokenizer.save_pretrained(root / "target")
    references = []
    for split in SPLITS:
        per_sample, summary = evaluate_tofu(model, tokenizer, str(data), split, max_new_tokens=2, show_progress=False)
        write_results(root / f"ref_{split}", per_sample, summary)
        references.append(str(root / f"ref_{split}" / "tofu_eval.json"))
    return dict(root=root, data=str(data), splits=splits, target=str(root / "target"), references=references)


def flags(setup, output_dir, *extra, splits=SPLITS, references=None, method="npo", optimizer="sophia"):
    references = setup["references"] if references is None else references
    return ["--model_name_or_path", setup["target"], "--dataset_name", setup["data"],
            "--forget_splits", ",".join(splits), "--retain_references", ",".join(references),
            "--output_dir", str(output_dir), "--unlearn_method", method, "--unlearn_optimizer", optimizer,
            "--max_steps", "2", "--per_device_train_batch_size", "2", "--learning_rate", "1e-3",
            "--hessian_update_interval", "1", "--max_new_tokens", "2", "--report_to", "none",
            "--disable_tqdm", "true", "--logging_steps", "1", "--use_cpu", "true", *extra]


def questions(rows):
    return [row["question"] for row in rows]


def test_plan_forgets_cumulative_tofu_sets_in_disjoint_requests(seq_setup):
    from hf_unlearn.sequential import TofuRequests, plan_requests

    s = seq_setup["splits"]
    plan = plan_requests(TofuRequests(seq_setup["data"]), list(SPLITS), seq_setup["references"])
    # forget01, then forget05 minus forget01, then forget10 minus forget05 (compared by content)
    expected = [questions(s["forget01"]),
                [q for q in questions(s["forget05"]) if q not in questions(s["forget01"])],
                [q for q in questions(s["forget10"]) if q not in questions(s["forget05"])]]
    assert [questions(r.forget.to_list()) for r in plan] == expected
    assert [len(r.forget) for r in plan] == [2, 2, 2] and [r.already_forgotten for r in plan] == [0, 2, 4]
    assert [r.eval_split for r in plan] == list(SPLITS)  # measured on the cumulative set
    assert [r.retain_split for r in plan] == ["retain99", "retain95", "retain90"]
    assert all(r.continues for r in plan)
    independent = plan_requests(TofuRequests(seq_setup["data"]), list(SPLITS), mode="independent")
    assert [len(r.forget) for r in independent] == [2, 4, 6] and not any(r.continues for r in independent)


def test_bad_sequential_inputs_fail_before_anything_is_written(seq_setup, tmp_path):
    import run_sequential

    root, refs = seq_setup["root"], seq_setup["references"]
    again = root / "forget01_again.json"  # the same rows as forget01, as a data file
    again.write_text("".join(json.dumps(r) + "\n" for r in seq_setup["splits"]["forget01"]))
    foreign = tmp_path / "muse_eval.json"  # another benchmark's file, shaped like a reference
    foreign.write_text(json.dumps({**json.loads(Path(refs[0]).read_text()), "format": "hf-unlearn/muse-eval"}))
    cases = [
        (dict(references=refs[:2]), "--forget_splits has 3 requests .* --retain_references has 2 files"),
        (dict(splits=("forget01", str(again)), references=refs[:2]),
         "Request 2 .* has no rows left: all 2 were forgotten by earlier requests"),
        (dict(splits=("forget05", "forget01"), references=refs[1::-1]), "needs growing splits, but 'forget01' lacks"),
        (dict(references=[refs[0], refs[2], refs[1]]),
         "entry 2 .* was evaluated on 'forget10', but request 2 is evaluated on 'forget05'"),
        (dict(references=[str(foreign), refs[1], refs[2]]), "is a 'hf-unlearn/muse-eval' file, not a TOFU evaluation"),
        (dict(extra=("--sequential_mode", "disjoint")), "disjoint needs requests that share no row, but 'forget05' has 2"),
        (dict(extra=("--retain_split", "retain99")), "Retain split 'retain99' of request 2 holds 2 rows that requests"),
        (dict(extra=("--holdout_split", "holdout10")), "entry 1 .* with holdout split 'holdout01', but request 1 would"),
        (dict(extra=("--config", str(RECIPE), "--retain_reference", refs[0])), "give --retain_references, not"),
    ]
    for i, (case, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        with pytest.raises(ValueError, match=message):
            run_sequential.main(flags(seq_setup, out, *case.get("extra", ()), splits=case.get("splits", SPLITS),
                                      references=case.get("references")))
        assert not out.exists(), message


def test_each_request_trains_its_rows_from_the_previous_weights_and_resumes(seq_setup, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    import run_sequential
    from hf_unlearn import UnlearningTrainer

    seen = []

    class Spy(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
            seen[-1]["optimizer_state"] = len(optimizer.state)

    class SpyTrainer(UnlearningTrainer):
        def __init__(self, model=None, forget_dataset=None, **kwargs):
            seen.append({"questions": list(forget_dataset["question"]), "output_dir": kwargs["args"].output_dir,
                         "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}})
            super().__init__(model=model, forget_dataset=forget_dataset, callbacks=[Spy()], **kwargs)

    monkeypatch.setattr(run_sequential, "UnlearningTrainer", SpyTrainer)
    out = tmp_path / "seq"
    result = run_sequential.main(flags(seq_setup, out, "--evaluate_before", "false"))
    plan_rows = [questions(seq_setup["splits"]["forget01"])]
    plan_rows += [[q for q in questions(seq_setup["splits"][b]) if q not in questions(seq_setup["splits"][a])]
                  for a, b in zip(SPLITS, SPLITS[1:])]
    assert [s["questions"] for s in seen] == plan_rows  # request k trains on exactly its rows
    assert [s["optimizer_state"] for s in seen] == [0, 0, 0]  # SophiaG starts fresh each request
    target = load_file(Path(seq_setup["target"]) / "model.safetensors")
    folders = [out / f"request_{k}_{split}" for k, split in enumerate(SPLITS, start=1)]
    for k, spy in enumerate(seen):  # request k starts from request k-1's saved weights (request 1: the target)
        start = target if k == 0 else load_file(folders[k - 1] / "model.safetensors")
        assert all(torch.equal(spy["weights"][name], start[name]) for name in start)
        assert Path(spy["output_dir"]) == folders[k]
    assert not any(torch.equal(seen[2]["weights"][name], target[name]) for name in target if "proj" in name)
    for k, split in enumerate(SPLITS):  # each request writes its own evaluation, on the cumulative set
        per_sample = json.loads((folders[k] / "tofu_eval.json").read_text())
        assert per_sample["config"]["forget_split"] == split
        assert len(per_sample["forget"]) == len(seq_setup["splits"][split])
        summary = json.loads((folders[k] / "tofu_summary.json").read_text())
        assert result["metrics"]["forget_quality"][k] == summary["forget_quality"]
    saved = json.loads((out / "sequential_summary.json").read_text())
    assert saved["finished"] == 3 and [r["rows"] for r in saved["requests"]] == [2, 2, 2]
    assert all(len(values) == 3 for values in saved["metrics"].values())
    assert (out / "sequential.png").stat().st_size > 5000
    card = (out / "README.md").read_text()
    assert "## Sequential unlearning requests (3)" in card and "| 2 | forget05 | 2 (+2 forgotten earlier) |" in card

    # Resume: finished requests are not run again; an unfinished one restarts from its predecessor's weights.
    (folders[2] / "sequential_request.json").unlink()
    seen.clear()
    again = run_sequential.main(flags(seq_setup, out, "--evaluate_before", "false", "--resume_from_checkpoint", "true"))
    assert [s["questions"] for s in seen] == [plan_rows[2]]
    request_2 = load_file(folders[1] / "model.safetensors")
    assert all(torch.equal(seen[0]["weights"][name], request_2[name]) for name in request_2)
    assert again["metrics"]["forget_quality"][:2] == result["metrics"]["forget_quality"][:2]
    with pytest.raises(ValueError, match="holds a finished request of another plan"):
        run_sequential.main(flags(seq_setup, out, "--resume_from_checkpoint", "true", splits=("forget05", "forget10"),
                                  references=seq_setup["references"][1:]))
    with pytest.raises(ValueError, match="is not empty"):  # without --resume_from_checkpoint: a new run, refused
        run_sequential.main(flags(seq_setup, out))


def test_run_sequential_with_accelerate_launch(seq_setup, tmp_path):
    out = tmp_path / "launched"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(REPO / "examples" / "run_sequential.py"), "--config", str(RECIPE),
               *flags(seq_setup, out, "--dtype", "float32", "--bf16", "false", splits=SPLITS[:2],
                      references=seq_setup["references"][:2], method="undial", optimizer="adamw")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "sequential_summary.json").read_text())
    assert [r["split"] for r in summary["requests"]] == ["forget01", "forget05"]
    assert all(0.0 <= fq <= 1.0 for fq in summary["metrics"]["forget_quality"])
    assert (out / "request_2_forget05" / "model.safetensors").is_file()


def test_plan_muse_sust_is_sequential_and_scal_independent(seq_setup, tmp_path):
    from hf_unlearn.offline.muse_synthetic import generate_muse, write_muse
    from hf_unlearn.sequential import MuseRequests, plan_requests

    corpus = generate_muse(num_forget=8, num_retain1=2, num_retain2=2, num_holdout=2, seed=0)
    muse = MuseRequests(str(write_muse(tmp_path / "muse", corpus)))
    sust = plan_requests(muse, [f"sust/forget_{k}" for k in range(1, 5)], needs_retain=True)
    assert [r.forget["text"] for r in sust] == [corpus["sust"][f"forget_{k}"] for k in range(1, 5)]
    assert all(r.continues for r in sust) and {r.retain_split for r in sust} == {"raw/retain1"}
    scal = plan_requests(muse, [f"scal/forget_{k}" for k in range(1, 5)], needs_retain=False)
    assert [len(r.forget) for r in scal] == [2, 4, 6, 8] and not any(r.continues for r in scal)
    with pytest.raises(ValueError, match="disjoint needs requests that share no row, but 'scal/forget_2' has 2"):
        plan_requests(muse, ["scal/forget_1", "scal/forget_2"], mode="disjoint", needs_retain=False)
    with pytest.raises(ValueError, match="entry 1 .* is not a MUSE evaluation"):  # a TOFU reference
        plan_requests(muse, ["sust/forget_1"], [seq_setup["references"][0]], needs_retain=False)


def test_run_sequential_on_muse_sust(tmp_path):
    """The docstring's MUSE line on the synthetic corpus: sust requests one after another, each evaluated six ways."""
    import run_sequential

    from hf_unlearn.data.muse import muse_strings
    from hf_unlearn.eval.benchmarks.muse import evaluate_muse
    from hf_unlearn.eval.runner import write_results
    from hf_unlearn.offline.muse_synthetic import generate_muse, write_muse
    from hf_unlearn.offline.tiny import build_tiny_llama, train_tokenizer

    corpus = generate_muse(num_forget=4, num_retain1=2, num_retain2=2, num_holdout=2, seed=0)
    data = write_muse(tmp_path / "muse", corpus)
    tokenizer = train_tokenizer(muse_strings(str(data)), vocab_size=300)
    model = build_tiny_llama(tokenizer, seed=0, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=256)
    model.save_pretrained(tmp_path / "target")
    tokenizer.save_pretrained(tmp_path / "target")
    per_sample, summary = evaluate_muse(model, tokenizer, str(data), verbmem_max_new_tokens=2, knowmem_max_new_tokens=2,
                                        show_progress=False)
    write_results(tmp_path / "retrain", per_sample, summary, benchmark="muse")  # stands in for the retrain reference
    reference = str(tmp_path / "retrain" / "muse_eval.json")
    out = tmp_path / "sust"
    result = run_sequential.main([
        "--benchmark", "muse", "--dataset_name", str(data), "--model_name_or_path", str(tmp_path / "target"),
        "--forget_splits", "sust/forget_1,sust/forget_2", "--retain_references", f"{reference},{reference}",
        "--output_dir", str(out), "--unlearn_method", "npo", "--max_steps", "1", "--per_device_train_batch_size", "2",
        "--max_length", "64", "--max_new_tokens", "2", "--knowmem_max_new_tokens", "2", "--evaluate_before", "false",
        "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true"])
    assert [r["split"] for r in result["requests"]] == ["sust/forget_1", "sust/forget_2"]
    assert [r["rows"] for r in result["requests"]] == [1, 1] and result["requests"][0]["retain_split"] == "raw/retain1"
    second = json.loads((out / "request_2_sust_forget_2" / "sequential_request.json").read_text())
    assert second["started_from"] == "request_1_sust_forget_1"
    for k, folder in enumerate(("request_1_sust_forget_1", "request_2_sust_forget_2")):
        summary = json.loads((out / folder / "muse_summary.json").read_text())
        assert summary["privleak"] == result["metrics"]["privleak"][k] and summary["privleak"] is not None
    card = (out / "README.md").read_text()
    assert "forget_verbmem_rouge" in card and "## Results (MUSE evaluation)" in card  # the requests' benchmark


def test_lora_requests_continue_from_the_merged_adapters(seq_setup, tmp_path, monkeypatch):
    """With --use_peft each request saves an adapter; the next request starts from the target with every earlier
    adapter merged in order (and trains a new adapter on top)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import run_sequential
    from hf_unlearn import UnlearningTrainer

    starts = []

    class SpyTrainer(UnlearningTrainer):
        def __init__(self, model=None, **kwargs):
            starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            super().__init__(model=model, **kwargs)

    monkeypatch.setattr(run_sequential, "UnlearningTrainer", SpyTrainer)
    out = tmp_path / "lora"
    run_sequential.main(flags(seq_setup, out, "--use_peft", "true", "--lora_r", "2", "--lora_target_modules", "q_proj",
                              "v_proj", "--evaluate_before", "false", splits=SPLITS[:2],
                              references=seq_setup["references"][:2], method="ga", optimizer="adamw"))
    assert (out / "request_1_forget01" / "adapter_model.safetensors").is_file()
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(seq_setup["target"]),
                                       out / "request_1_forget01").merge_and_unload().state_dict()
    assert all(torch.equal(starts[1][name], merged[name]) for name in merged)
    target = AutoModelForCausalLM.from_pretrained(seq_setup["target"]).state_dict()
    assert not torch.equal(starts[1]["model.layers.0.self_attn.q_proj.weight"],
                           target["model.layers.0.self_attn.q_proj.weight"])
