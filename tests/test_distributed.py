"""Several processes: DDP and DeepSpeed ZeRO-2/3 on 2 CPU ranks give the one-process results.

Three launches (`accelerate launch --config_file recipes/accelerate/{ddp,zero2,zero3}.yaml
--num_processes 2 tests/distributed_worker.py ...`, gloo on CPU, DeepSpeed with DS_ACCELERATOR=cpu)
each train several small jobs; the one-process baselines run `run_job` of the same worker in this
process. Global batch 4 everywhere: 2 ranks x 2 rows against 1 process x 4 rows, or against
1 process x 2 rows x 2 accumulation steps where the loss is a token mean (see below).

Why GradDiff is compared with 2 x 2 accumulation and not with 4 rows at once: its NLL terms are means
over the answer tokens of one micro-batch (the trainer's convention, also under gradient
accumulation), and each rank's batch is a micro-batch; with unequal answer lengths the mean of two
2-row means is not the mean over 4 rows (here that differs by up to 3% in the loss). NPO's loss is a
mean over sequences, so its 2 x 2 run equals 1 x 4 exactly, and the Sophia jobs use it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
RECIPES = REPO / "recipes" / "accelerate"
LAUNCH_TIMEOUT = 420

HAS_GLOO = torch.distributed.is_available() and torch.distributed.is_gloo_available()
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None
needs_gloo = pytest.mark.skipif(not HAS_GLOO, reason="torch.distributed with the gloo backend is not available")
needs_deepspeed = pytest.mark.skipif(not (HAS_GLOO and HAS_DEEPSPEED), reason="deepspeed (and gloo) not installed")

FULL_NUMEL = 115_008  # tiny Llama: vocab 512, hidden 64, 2 layers, intermediate 128, tied embeddings
LORA_NUMEL = 2 * 2 * (4 * 64 + 64 * 4)  # r=4 on q_proj and v_proj of 2 layers
CLIPPED = 1e-3  # max_grad_norm of the Sophia jobs: a refresh clipped like a step would shrink h by orders

NPO = dict(method="npo", optimizer="sophia", retain_weight=0.0)
# the one-shot influence step: NPO's loss (a mean over sequences, so 2 ranks x 2 rows = 1 x 4), a GNB refresh on
# each of the 5 steps, the update at the last
INFLUENCE = {**NPO, "optimizer": "influence", "max_grad_norm": 0.0}
# PDU: epsilon just under the tiny model's retain NLL (~6.2), so lambda moves on every step
PDU = dict(method="pdu", retain_weight=1.0, method_args=dict(pdu_retain_bound=6.0, pdu_dual_step_size=0.5))
JOBS = {
    "ddp.yaml": [
        dict(name="gd_adamw", save_model=True, evaluate=True),
        dict(name="npo_sophia", max_grad_norm=CLIPPED, **NPO),
        dict(name="npo_hutch", estimator="hutchinson", **NPO),
        dict(name="lora_npo_sophia", lora=True, **NPO),
        dict(name="pdu_adamw", **PDU),
    ],
    "zero2.yaml": [
        dict(name="gd_adamw"),
        dict(name="npo_sophia", max_grad_norm=CLIPPED, **NPO),
        dict(name="npo_hutch", estimator="hutchinson", **NPO),
        dict(name="lora_npo_hutch", lora=True, estimator="hutchinson", **NPO),
        dict(name="npo_influence", **INFLUENCE),
    ],
    "zero3.yaml": [
        # loaded with from_pretrained after the arguments, as a script does: partitioned by zero.Init at load
        dict(name="npo_sophia", max_grad_norm=CLIPPED, save_model=True, **NPO),
        # built in memory: still whole when the trainer copies it for the reference
        dict(name="npo_empirical", estimator="empirical", load="build", **NPO),
        dict(name="npo_sophia_ga2", per_device_batch=1, grad_accum=2, max_grad_norm=CLIPPED, **NPO),
        dict(name="lora_undial", method="undial", optimizer="sophia", lora=True),
        dict(name="lora_npo_adamw", lora=True, **{**NPO, "optimizer": "adamw"}),
        dict(name="gd_adamw"),
        # GradDiff: the refresh samples forget and retain rows
        dict(name="gd_sophia", optimizer="sophia", max_grad_norm=CLIPPED),
        dict(name="npo_hutch", estimator="hutchinson", expect_error="--hessian_estimator gnb", **NPO),
        dict(name="lora_npo_influence", lora=True, **INFLUENCE),
    ],
}
BASELINES = [
    dict(name="gd_adamw_ga2", per_device_batch=2, grad_accum=2),
    dict(name="gd_adamw_bs4", per_device_batch=4),
    dict(name="npo_sophia", per_device_batch=4, max_grad_norm=CLIPPED, **NPO),
    dict(name="npo_hutch", per_device_batch=4, estimator="hutchinson", **NPO),
    dict(name="npo_empirical", per_device_batch=4, estimator="empirical", **NPO),
    dict(name="npo_sophia_ga2", per_device_batch=2, grad_accum=2, max_grad_norm=CLIPPED, **NPO),
    dict(name="lora_npo_sophia", per_device_batch=4, lora=True, **NPO),
    dict(name="lora_npo_hutch", per_device_batch=4, lora=True, estimator="hutchinson", **NPO),
    dict(name="lora_npo_adamw", per_device_batch=4, lora=True, **{**NPO, "optimizer": "adamw"}),
    dict(name="gd_sophia", per_device_batch=4, optimizer="sophia", max_grad_norm=CLIPPED),
    dict(name="pdu_adamw_ga2", per_device_batch=2, grad_accum=2, **PDU),
    dict(name="npo_influence", per_device_batch=4, **INFLUENCE),
    dict(name="lora_npo_influence", per_device_batch=4, lora=True, **INFLUENCE),
]


def _worker_module():
    spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tokenizer):
    from hf_unlearn.offline.synthetic import write_synthetic_tofu
    from hf_unlearn.offline.tiny import build_tiny_llama

    root = tmp_path_factory.mktemp("distributed")
    tokenizer.save_pretrained(root / "tokenizer")
    build_tiny_llama(tokenizer, seed=0, **_worker_module().MODEL).save_pretrained(root / "model")
    write_synthetic_tofu(root / "tofu", num_authors=20, questions_per_author=5, seed=0)
    return root


def _launch(config: str, workspace: Path) -> tuple[dict, Path]:
    out = workspace / config.replace(".yaml", "")
    out.mkdir()
    spec = {"tokenizer": str(workspace / "tokenizer"), "model_dir": str(workspace / "model"),
            "tofu_dir": str(workspace / "tofu"), "output_dir": str(out), "jobs": JOBS[config]}
    (out / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(RECIPES / config),
           "--num_processes", "2", "--main_process_port", str(_free_port()),
           str(WORKER), str(out / "spec.json"), str(out / "result.json")]
    try:
        proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired as err:
        output = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        pytest.fail(f"{config}: the 2-process launch did not finish in {LAUNCH_TIMEOUT}s:\n{output[-3000:]}")
    if proc.returncode != 0 or not (out / "result.json").exists():
        pytest.fail(f"{config}: the 2-process launch failed (exit {proc.returncode}):\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return json.loads((out / "result.json").read_text()), out


@pytest.fixture(scope="module")
def baselines(workspace):
    worker = _worker_module()
    out = workspace / "one_process"
    out.mkdir()
    records = {job["name"]: worker.run_job(job, str(workspace / "tokenizer"), str(out),
                                           model_dir=str(workspace / "model")) for job in BASELINES}
    return records, out


@pytest.fixture(scope="module")
def ddp(workspace):
    return _launch("ddp.yaml", workspace)


@pytest.fixture(scope="module")
def zero2(workspace):
    return _launch("zero2.yaml", workspace)


@pytest.fixture(scope="module")
def zero3(workspace):
    return _launch("zero3.yaml", workspace)


# --- helpers ---------------------------------------------------------------------------------
def _max_rel(actual, expected, floor=0.0) -> float:
    assert len(actual) == len(expected) > 0
    return max(abs(a - e) / max(abs(e), floor, 1e-12) for a, e in zip(actual, expected))


def _ranks(result: dict, name: str) -> list[dict]:
    records = sorted(result[name], key=lambda r: r["rank"])
    assert [r["rank"] for r in records] == [0, 1] and all(r["world"] == 2 for r in records)
    return records


def _state_rel_error(path_a: Path, path_b: Path, keys=("exp_avg", "hessian")) -> float:
    """Largest relative difference of the whole m and h of any parameter between two snapshots."""
    a, b = torch.load(path_a), torch.load(path_b)
    assert a.keys() == b.keys() and len(a) > 0
    worst = 0.0
    for name in a:
        for key in keys:
            x, y = a[name][key].double(), b[name][key].double()
            assert x.shape == y.shape, name
            worst = max(worst, float((x - y).abs().max() / y.abs().max().clamp_min(1e-30)))
    return worst


def _check_sophia_against_one_process(run, base, name, base_name=None, loss_rtol=1e-5):
    result, out = run
    records, base_out = base
    expected = records[base_name or name]
    ranks = _ranks(result, name)
    for rec in ranks:
        assert rec["losses"] == ranks[0]["losses"]  # every rank logs the gathered loss
        assert rec["refresh_steps"] == expected["refresh_steps"] == [0, 3]
        assert rec["refresh_path"] == "own_forward"  # several processes: the refresh's own forward and backward
        assert rec["hessian_updates"] == expected["hessian_updates"]
        assert rec["learning_rates"] == pytest.approx(expected["learning_rates"], rel=1e-9)
    assert _max_rel(ranks[0]["losses"], expected["losses"]) < loss_rtol
    # The whole h and m (gathered from the ranks' shards under ZeRO) after the first optimizer step.
    assert _state_rel_error(out / f"{name}_state.pt", base_out / f"{base_name or name}_state.pt") < 1e-4
    return ranks, expected


def _check_engine_counters(ranks, steps=5, global_batch=4):
    # Refreshes go through engine.step(); the trainer hides them from the engine's bookkeeping.
    for rec in ranks:
        assert rec["engine"]["global_steps"] == steps
        assert rec["engine"]["micro_steps"] == steps
        assert rec["engine"]["global_samples"] == steps * global_batch
        assert rec["engine"]["skipped_steps"] == 0


def _check_half_state(ranks, full_state):
    # Each rank holds only its shard of m and h (or Adam's m and v): half, up to DeepSpeed's alignment padding.
    for rec in ranks:
        assert 0.49 * full_state <= rec["state_numel"] <= 0.51 * full_state, rec["state_numel"]
    assert full_state <= sum(rec["state_numel"] for rec in ranks) <= 1.01 * full_state


# --- data order ------------------------------------------------------------------------------
@needs_gloo
def test_ddp_sees_the_one_process_batches_and_pairs(ddp, baselines):
    """2 ranks x 2 rows cover the same 4 (forget, retain) pairs per step, in order, as 1 process x 4 rows,
    also across epochs (8 forget rows, 2 steps an epoch): the pairing is a function of (seed, epoch, index)."""
    result, _ = ddp
    records, _ = baselines
    ranks = _ranks(result, "gd_adamw")
    steps = [r0 + r1 for r0, r1 in zip(ranks[0]["batches"], ranks[1]["batches"])]
    assert steps == records["gd_adamw_bs4"]["batches"]
    micro = records["gd_adamw_ga2"]["batches"]
    assert steps == [micro[2 * i] + micro[2 * i + 1] for i in range(5)]
    assert len({tuple(b) for b in steps}) == 5  # epochs 2 and 3 draw new pairs


# --- AdamW: DDP and ZeRO-2 equal one process ------------------------------------------------
@needs_gloo
def test_ddp_graddiff_adamw_matches_one_process(ddp, baselines):
    _check_graddiff_adamw(ddp, baselines, full_state=2 * FULL_NUMEL, sharded=False)


@needs_deepspeed
def test_zero2_graddiff_adamw_matches_one_process(zero2, baselines):
    ranks = _check_graddiff_adamw(zero2, baselines, full_state=2 * FULL_NUMEL, sharded=True)
    _check_engine_counters(ranks)


def _check_graddiff_adamw(run, base, full_state, sharded):
    result, out = run
    records, base_out = base
    expected = records["gd_adamw_ga2"]
    ranks = _ranks(result, "gd_adamw")
    assert ranks[0]["optimizer"] == "AdamW"
    steps = [r0 + r1 for r0, r1 in zip(ranks[0]["batches"], ranks[1]["batches"])]
    assert steps == records["gd_adamw_bs4"]["batches"]
    # GradDiff's loss is -NLL_forget + NLL_retain, which passes near 0: compare each term to 1e-4 relative,
    # and the sum to 1e-4 of the terms' size.
    for key in ("forget_loss", "retain_loss"):
        assert _max_rel(ranks[0]["terms"][key], expected["terms"][key]) < 1e-4, key
    scale = [abs(f) + abs(r) for f, r in zip(expected["terms"]["forget_loss"], expected["terms"]["retain_loss"])]
    assert all(abs(a - e) <= 1e-4 * s for a, e, s in zip(ranks[0]["losses"], expected["losses"], scale))
    assert len(ranks[0]["losses"]) == 5 and ranks[0]["losses"] != records["gd_adamw_bs4"]["losses"]
    final, reference = torch.load(out / "gd_adamw_weights.pt"), torch.load(base_out / "gd_adamw_ga2_weights.pt")
    assert max(float((final[k] - reference[k]).abs().max()) for k in reference) < 1e-5
    if sharded:
        _check_half_state(ranks, full_state)
    else:
        assert all(rec["state_numel"] == full_state for rec in ranks)
    return ranks


@needs_gloo
def test_ddp_pdu_dual_variable_matches_one_process_with_accumulation(ddp, baselines):
    """PDU's lambda is updated once per optimizer step from the retain losses of every micro-batch of every rank:
    2 ranks x 2 rows give the lambdas (and weights) of 1 process x 2 rows x 2 accumulation steps."""
    result, out = ddp
    records, base_out = baselines
    expected = records["pdu_adamw_ga2"]["retain_weights"]
    ranks = _ranks(result, "pdu_adamw")
    assert len(expected) == 5 and len(set(expected)) == 5  # lambda moved on every step
    for rec in ranks:  # every rank applies the same update
        assert _max_rel(rec["retain_weights"], expected) < 1e-6
    final, reference = torch.load(out / "pdu_adamw_weights.pt"), torch.load(base_out / "pdu_adamw_ga2_weights.pt")
    assert max(float((final[k] - reference[k]).abs().max()) for k in reference) < 1e-5


# --- SophiaG ---------------------------------------------------------------------------------
@needs_gloo
def test_ddp_sophia_gnb_and_hutchinson_match_one_process(ddp, baselines):
    for name, numel in (("npo_sophia", FULL_NUMEL), ("npo_hutch", FULL_NUMEL), ("lora_npo_sophia", LORA_NUMEL)):
        ranks, expected = _check_sophia_against_one_process(ddp, baselines, name)
        assert all(rec["state_numel"] == expected["state_numel"] == 2 * numel for rec in ranks)
        # One process with GNB builds the refresh on the step's own forward: the two paths agree.
        assert expected["refresh_path"] == ("own_forward" if "hutch" in name else "step_forward")


@needs_deepspeed
def test_zero2_sophia_gnb_and_hutchinson_shard_state_and_match_one_process(zero2, baselines):
    for name, numel in (("npo_sophia", FULL_NUMEL), ("npo_hutch", FULL_NUMEL), ("lora_npo_hutch", LORA_NUMEL)):
        ranks, expected = _check_sophia_against_one_process(zero2, baselines, name)
        assert expected["state_numel"] == 2 * numel
        _check_half_state(ranks, expected["state_numel"])
        _check_engine_counters(ranks)


@needs_deepspeed
def test_zero3_sophia_gnb_with_sharded_reference_matches_one_process(zero3, baselines):
    ranks, expected = _check_sophia_against_one_process(zero3, baselines, "npo_sophia")
    assert ranks[0]["losses"][0] == pytest.approx(20 * math.log(2), rel=1e-6)  # NPO at step 0: (2/beta) log 2
    for rec in ranks:
        assert rec["partitioned_at_init"]  # reference built by the zero.Init + gathered-copy path
        assert rec["reference"] == "DeepSpeedEngine"
        assert rec["reference_answer_head"] is True  # its LM head ran on the answer positions only
    _check_half_state(ranks, expected["state_numel"])
    _check_engine_counters(ranks)


@needs_deepspeed
def test_zero2_and_zero3_lora_influence_step_match_one_process(zero2, zero3, baselines, workspace):
    """The one-shot influence step under ZeRO-2 (whole model) and ZeRO-3 (LoRA): a refresh on every step, each
    rank's shard of the mean gradient and mean h, the update at the last step only: the one-process result."""
    from safetensors.torch import load_file

    records, base_out = baselines
    start = load_file(workspace / "model" / "model.safetensors")
    for (result, out), name in ((zero2, "npo_influence"), (zero3, "lora_npo_influence")):
        expected = records[name]
        ranks = _ranks(result, name)
        for rec in ranks:
            assert rec["optimizer"] == expected["optimizer"] == "InfluenceStep"
            assert rec["refresh_steps"] == expected["refresh_steps"] == [0, 1, 2, 3, 4]
            assert rec["hessian_updates"] == expected["hessian_updates"] == 5
            assert rec["learning_rates"] == [1e-3] * 5  # constant: the one update's scale
        assert _max_rel(ranks[0]["losses"], expected["losses"]) < 1e-5
        assert _state_rel_error(out / f"{name}_state.pt", base_out / f"{name}_state.pt") < 1e-4
        final, reference = torch.load(out / f"{name}_weights.pt"), torch.load(base_out / f"{name}_weights.pt")
        if name.startswith("lora"):
            moved = {k: v for k, v in reference.items() if "lora_B" in k}  # zero at the start
        else:
            moved = {k: reference[k] - start[k] for k in reference if k in start}
        assert moved and max(float(v.abs().max()) for v in moved.values()) > 1e-4
        scale = max(float(v.abs().max()) for v in moved.values())
        assert max(float((final[k] - reference[k]).abs().max()) for k in reference) < 1e-4 * scale


@needs_deepspeed
def test_zero3_empirical_estimator_and_reference_from_a_whole_model(zero3, baselines):
    result, out = zero3
    records, base_out = baselines
    expected = records["npo_empirical"]
    ranks = _ranks(result, "npo_empirical")
    assert not ranks[0]["partitioned_at_init"] and ranks[0]["reference"] == "DeepSpeedEngine"
    assert ranks[0]["hessian_updates"] == expected["hessian_updates"] == 5  # h from every step's own gradient
    assert _max_rel(ranks[0]["losses"], expected["losses"]) < 1e-5
    assert _state_rel_error(out / "npo_empirical_state.pt", base_out / "npo_empirical_state.pt") < 1e-4
    _check_half_state(ranks, expected["state_numel"])
    _check_engine_counters(ranks)


@needs_deepspeed
def test_zero3_refresh_with_gradient_accumulation(zero3, baselines):
    """1 row x 2 accumulation steps x 2 ranks against 2 rows x 2 steps in one process: the refresh forces an
    accumulation boundary on the first micro-batch and restores the engine's counters."""
    ranks, _ = _check_sophia_against_one_process(zero3, baselines, "npo_sophia_ga2")
    _check_engine_counters(ranks)


@needs_deepspeed
def test_zero3_graddiff_adamw_and_sophia_on_forget_and_retain(zero3, baselines):
    ranks = _check_graddiff_adamw(zero3, baselines, full_state=2 * FULL_NUMEL, sharded=True)
    _check_engine_counters(ranks)
    # GradDiff + SophiaG: the refresh samples labels on forget and retain rows. Its h after the first step comes
    # from the step-0 refresh alone, on the global batch of 4 pairs: the one-process h with 4 rows. (m and the
    # loss are token means per micro-batch, so they follow 2 x 2, not 1 x 4; see the module docstring.)
    result, out = zero3
    records, base_out = baselines
    ranks = _ranks(result, "gd_sophia")
    assert all(rec["refresh_steps"] == [0, 3] and rec["hessian_updates"] == 2 for rec in ranks)
    assert all(math.isfinite(x) for x in ranks[0]["losses"]) and len(ranks[0]["losses"]) == 5
    assert _state_rel_error(out / "gd_sophia_state.pt", base_out / "gd_sophia_state.pt", keys=("hessian",)) < 1e-4
    _check_half_state(ranks, records["gd_sophia"]["state_numel"])
    _check_engine_counters(ranks)


@needs_deepspeed
def test_zero3_refuses_hutchinson_with_the_fix(zero3):
    result, _ = zero3
    for rec in result["npo_hutch"]:
        assert "--hessian_estimator gnb" in rec["error"] and "ZeRO-3" in rec["error"]


@needs_deepspeed
def test_zero3_lora_undial_runs_with_adapters_off_reference(zero3, workspace):
    from safetensors.torch import load_file

    result, out = zero3
    ranks = _ranks(result, "lora_undial")
    for rec in ranks:
        assert rec["reference"] == "PeftModel" and rec["optimizer"] == "SophiaG"
        assert rec["reference_answer_head"] is True
        assert rec["trainable_numel"] == LORA_NUMEL
        assert rec["refresh_steps"] == [0, 3] and rec["hessian_updates"] == 2
        assert len(rec["losses"]) == 5 and all(math.isfinite(x) for x in rec["losses"])
    _check_half_state(ranks, 2 * LORA_NUMEL)
    _check_engine_counters(ranks)
    weights = torch.load(out / "lora_undial_weights.pt")
    assert any(float(w.abs().max()) > 0 for k, w in weights.items() if "lora_B" in k)  # adapters trained
    initial = load_file(str(workspace / "model" / "model.safetensors"))
    base = {k.replace("base_model.model.", "").replace(".base_layer", ""): w
            for k, w in weights.items() if "lora_" not in k}
    assert set(initial) <= set(base) | {"lm_head.weight"}
    for name, w in initial.items():
        if name in base:
            assert torch.equal(base[name], w), name  # the base model stays frozen


@needs_deepspeed
def test_zero3_lora_npo_adamw_matches_one_process(zero3, baselines):
    result, out = zero3
    records, base_out = baselines
    expected = records["lora_npo_adamw"]
    ranks = _ranks(result, "lora_npo_adamw")
    assert ranks[0]["reference"] == "PeftModel" and ranks[0]["optimizer"] == "AdamW"
    assert _max_rel(ranks[0]["losses"], expected["losses"]) < 1e-5
    final, reference = torch.load(out / "lora_npo_adamw_weights.pt"), torch.load(base_out / "lora_npo_adamw_weights.pt")
    assert final.keys() == reference.keys()
    assert max(float((final[k] - reference[k]).abs().max()) for k in reference) < 1e-5
    _check_half_state(ranks, expected["state_numel"])
    _check_engine_counters(ranks)


@needs_deepspeed
def test_zero3_checkpoint_loads_with_plain_from_pretrained(zero3, baselines, workspace):
    from transformers import AutoModelForCausalLM

    _, out = zero3
    _, base_out = baselines
    model = AutoModelForCausalLM.from_pretrained(out / "npo_sophia_model")
    gathered = torch.load(out / "npo_sophia_weights.pt")
    params = dict(model.named_parameters())
    assert params.keys() == gathered.keys()
    for name, w in gathered.items():
        assert torch.equal(params[name].detach(), w), name
    one_process = torch.load(base_out / "npo_sophia_weights.pt")
    initial = AutoModelForCausalLM.from_pretrained(workspace / "model").state_dict()
    assert max(float((gathered[k] - one_process[k]).abs().max()) for k in gathered) < 1e-4
    assert max(float((gathered[k] - initial[k]).abs().max()) for k in gathered) > 1e-3  # it did train


# --- evaluation ------------------------------------------------------------------------------
def _assert_same_values(a, b, path="") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            _assert_same_values(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_values(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) or (math.isnan(a) and math.isnan(b)), path
    else:
        assert a == b, path


@needs_gloo
def test_two_process_evaluation_equals_one_process(ddp, workspace):
    """Each rank scores a strided shard (3 questions per split: rank 1 gets one, plus padding); the gathered
    per-question values and the summary equal one process evaluating the same saved weights."""
    pytest.importorskip("hf_unlearn.eval.benchmarks.tofu")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu

    _, out = ddp
    gathered = json.loads((out / "gd_adamw_eval.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(out / "gd_adamw_model")
    tokenizer = AutoTokenizer.from_pretrained(workspace / "tokenizer")
    per_sample, summary = evaluate_tofu(model, tokenizer, str(workspace / "tofu"), forget_split="forget10",
                                        batch_size=1, max_new_tokens=6, subsample=3, show_progress=False)
    per_sample = json.loads(json.dumps(per_sample))
    per_sample["config"].pop("model"), gathered["per_sample"]["config"].pop("model")
    assert sum(len(v) for k, v in per_sample.items() if isinstance(v, list)) >= 12
    _assert_same_values(gathered["per_sample"], per_sample)
    _assert_same_values(gathered["summary"], json.loads(json.dumps(summary)))


# --- SophiaG under DeepSpeed's calling pattern (one process, no DeepSpeed needed) -------------
def _engine_style_step(opt, pattern: str, owned: list[list[torch.Tensor]]) -> None:
    """Calls `opt.step()` the way DeepSpeed's ZeRO optimizers do: once per param group, with `param_groups`
    swapped for a one-group list (ZeRO-1/2), or with every other group's `params` emptied (ZeRO-3, which also
    leaves them empty between steps)."""
    groups = opt.param_groups
    for i, group in enumerate(groups):
        if pattern == "zero2":
            opt.param_groups = [group]
            opt.step()
            opt.param_groups = groups
        else:
            for j, other in enumerate(groups):
                other["params"] = owned[j] if j == i else []
            opt.step()
            group["params"] = []


@pytest.mark.parametrize("pattern", ["zero2", "zero3"])
def test_sophia_bookkeeping_under_engine_calling_patterns(pattern):
    from hf_unlearn import SophiaG

    torch.manual_seed(0)
    init = [torch.randn(6), torch.randn(4)]
    grads = [[torch.randn(6), torch.randn(4)] for _ in range(3)]

    def make():
        params = [torch.nn.Parameter(t.clone()) for t in init]
        groups = [{"params": [params[0]]}, {"params": [params[1]], "weight_decay": 0.0}]
        return params, SophiaG(groups, lr=0.01, betas=(0.5, 0.5), rho=1.0, weight_decay=0.1)

    ref_params, ref = make()
    params, opt = make()
    owned = [[params[0]], [params[1]]]

    def set_grads(ps, gs):
        for p, g in zip(ps, gs):
            p.grad = g.clone()

    set_grads(ref_params, grads[0])
    set_grads(params, grads[0])
    with ref.collecting_hessian(scale=1.0):
        ref.step()
    with opt.collecting_hessian(scale=1.0):
        _engine_style_step(opt, pattern, owned)
    assert opt.hessian_updates == ref.hessian_updates == 1  # one block, one refresh, however many calls

    set_grads(ref_params, grads[1])
    set_grads(params, grads[1])
    ref.step()
    _engine_style_step(opt, pattern, owned)
    assert 0.0 < ref.win_rate < 1.0
    assert opt.win_rate == ref.win_rate
    assert opt.hessian_mean() == pytest.approx(ref.hessian_mean(), rel=1e-12)

    ref.empirical_hessian_scale = opt.empirical_hessian_scale = 2.0  # h refreshed inside every real step
    set_grads(ref_params, grads[2])
    set_grads(params, grads[2])
    ref.step()
    _engine_style_step(opt, pattern, owned)
    assert opt.hessian_updates == ref.hessian_updates == 2
    assert opt.win_rate == ref.win_rate
    for p, q in zip(params, ref_params):
        assert torch.equal(p, q)
        for key in ("exp_avg", "hessian", "step"):
            assert torch.equal(opt.state[p][key], ref.state[q][key])
