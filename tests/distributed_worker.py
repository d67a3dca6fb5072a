"""Worker of tests/test_distributed.py: trains tiny Llamas with UnlearningTrainer and reports what it saw.

    accelerate launch --config_file recipes/accelerate/zero2.yaml --num_processes 2 \
        tests/distributed_worker.py SPEC.json RESULT.json

SPEC is ``{"tokenizer": DIR, "model_dir": DIR, "output_dir": DIR, "tofu_dir": DIR or null, "jobs": [JOB, ...]}``;
every JOB (see `DEFAULTS`) is trained in turn in the same processes. RESULT gets, per job and per rank:
the logged losses and learning rates, the refresh steps, the optimizer state held by the rank, the
DeepSpeed engine's counters, the composition of every micro-batch; rank 0 also writes the full
SophiaG h and m after the first optimizer step (``<job>_state.pt``), the trained weights
(``<job>_weights.pt``), and optionally the saved model and a TOFU evaluation. The test suite runs
`run_job` in its own process for the one-process baselines, so both sides share this code.

The data, tokenizer and model are those of tests/conftest.py: synthetic TOFU with 20 authors, a
512-token BPE tokenizer and a 2-layer Llama with hidden size 64 initialised from seed 0 (both saved
once by the test and passed as folders, so every process starts from byte-identical files).

On CPU the training arguments need one setting the launcher cannot give (see `cpu_flags`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import traceback
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402

from hf_unlearn import UnlearningConfig, UnlearningTrainer  # noqa: E402
from hf_unlearn.data.pairing import UnlearningCollator  # noqa: E402
from hf_unlearn.offline.synthetic import generate_tofu  # noqa: E402
from hf_unlearn.models.reference import is_zero3_partitioned  # noqa: E402
from hf_unlearn.offline.tiny import build_tiny_llama  # noqa: E402

MODEL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)

DEFAULTS = dict(
    name="job",
    method="grad_diff",
    optimizer="adamw",
    estimator="gnb",
    interval=3,
    per_device_batch=2,
    grad_accum=1,
    max_steps=5,
    lr=1e-3,
    max_grad_norm=1.0,
    retain_weight=None,
    lora=False,
    forget_rows=8,  # a multiple of every global batch used, so no rank ever wraps around the data
    save_model=False,
    evaluate=False,
    snapshot_step=1,  # record full SophiaG state after this many optimizer steps
    expect_error=None,  # substring of a ValueError the trainer must raise instead of training
    load="pretrained",  # from_pretrained(model_dir) after the arguments, as a script does; "build": in memory
    method_args={},  # the method's own flags (e.g. PDU's bound and dual step)
)


def rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def splits():
    data = generate_tofu(num_authors=20, questions_per_author=5, seed=0)
    import datasets

    return datasets.Dataset.from_list(data["forget10"]), datasets.Dataset.from_list(data["retain90"])


class RecordingCollator(UnlearningCollator):
    """Remembers a digest of every example it batches, in order: the composition of each micro-batch."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.batches: list[list[str]] = []

    def __call__(self, examples):
        self.batches.append([_digest(e) for e in examples])
        return super().__call__(examples)


def _digest(example: dict) -> str:
    text = "|".join(f"{part}:{','.join(map(str, example[part]['input_ids']))}" for part in sorted(example))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def inner_optimizer(optimizer):
    while hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


def state_numel(optimizer) -> int:
    """Elements of the per-coordinate optimizer state (m and h, or Adam's m and v) held by this process."""
    inner = inner_optimizer(optimizer)
    keys = ("exp_avg", "hessian", "exp_avg_sq")
    return sum(v.numel() for state in inner.state.values() for k, v in state.items() if k in keys)


def full_numel(p: torch.nn.Parameter) -> int:
    return int(getattr(p, "ds_numel", p.numel()))


class StateSnapshot(TrainerCallback):
    """After `step` optimizer steps, the whole m and h of every trainable parameter (gathered under ZeRO)."""

    def __init__(self, trainer, step: int):
        self.trainer, self.step, self.state = trainer, step, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step != self.step or self.trainer.sophia is None:
            return
        snapshot = {}
        module = self.trainer.accelerator.unwrap_model(self.trainer.model_wrapped)
        if self.trainer.is_deepspeed_enabled:
            from deepspeed.utils import safe_get_full_optimizer_state

            zero = self.trainer.model_wrapped.optimizer
            if hasattr(zero, "_hp_optimizer_states_linked"):
                # ZeRO-1/2 link each parameter to its slice of the optimizer state after the first step of
                # param group 0, before the other groups have any state: link again now that all have.
                zero._hp_optimizer_states_linked = False
                zero._lazy_init_hp_params_optimizer_state()
            for name, p in module.named_parameters():
                if p.requires_grad:  # collective under ZeRO-3: every rank walks the same list
                    snapshot[name] = {key: safe_get_full_optimizer_state(p, key).detach().cpu().clone()
                                      for key in ("exp_avg", "hessian")}
        else:
            sophia = self.trainer.sophia
            for name, p in module.named_parameters():
                if p.requires_grad:
                    snapshot[name] = {key: sophia.state[p][key].detach().cpu().clone()
                                      for key in ("exp_avg", "hessian")}
        self.state = snapshot


def full_weights(trainer) -> dict[str, torch.Tensor]:
    """Every parameter, whole (gathered from the ZeRO-3 partitions); collective under ZeRO-3."""
    module = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    weights = {}
    for name, p in module.named_parameters():
        if hasattr(p, "ds_id"):
            import deepspeed

            with deepspeed.zero.GatheredParameters([p]):
                weights[name] = p.detach().cpu().clone()
        else:
            weights[name] = p.detach().cpu().clone()
    return weights


def cpu_flags() -> dict:
    """What a CPU-only launch needs: `use_cpu` for DDP (accelerate then picks gloo and wraps the model in
    DDP), an explicit `ddp_backend="gloo"` for DeepSpeed (with neither, accelerate finds no backend on a
    machine without GPUs and counts one process, though DeepSpeed has started two)."""
    if torch.cuda.is_available() or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return {}
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return {"ddp_backend": "gloo"}
    return {"use_cpu": True}


def build_trainer(job: dict, tokenizer, output_dir: Path, model_dir: str | None):
    """Like a training script: arguments first, then the model (from `model_dir`, or built in memory)."""
    forget, retain = splits()
    forget = forget.select(range(job["forget_rows"]))
    args = UnlearningConfig(
        output_dir=str(output_dir / job["name"]), per_device_train_batch_size=job["per_device_batch"],
        gradient_accumulation_steps=job["grad_accum"], max_steps=job["max_steps"], learning_rate=job["lr"],
        logging_steps=1, seed=0, unlearn_method=job["method"], unlearn_optimizer=job["optimizer"],
        hessian_estimator=job["estimator"], hessian_update_interval=job["interval"],
        retain_weight=job["retain_weight"], lr_scheduler_type="linear", disable_tqdm=True,
        max_grad_norm=job["max_grad_norm"], dataloader_num_workers=0, report_to="none", save_strategy="no",
        **job["method_args"], **cpu_flags(),
    )
    # Hutchinson differentiates twice; PyTorch's fused attention kernels have no second derivative.
    extra = {"attn_implementation": "eager"} if job["estimator"] == "hutchinson" else {}
    if job["load"] == "pretrained":
        # Under an accelerate-launched ZeRO-3 run this loads the model already partitioned (deepspeed.zero.Init),
        # because TrainingArguments has registered the DeepSpeed config with transformers.
        model = AutoModelForCausalLM.from_pretrained(model_dir, **extra)
    else:
        model = build_tiny_llama(tokenizer, seed=0, **MODEL, **extra)
    partitioned = is_zero3_partitioned(model)
    peft_config = None
    if job["lora"]:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer = UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                                processing_class=tokenizer, data_collator=RecordingCollator(tokenizer),
                                peft_config=peft_config)
    return trainer, partitioned


def run_job(job: dict, tokenizer_dir: str, output_dir: str, tofu_dir: str | None = None,
            model_dir: str | None = None) -> dict:
    """Trains one job in this process (a rank of a launch, or the only process) and returns its record."""
    job = {**DEFAULTS, **job}
    output_dir = Path(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    try:
        trainer, partitioned = build_trainer(job, tokenizer, output_dir, model_dir)
    except ValueError as err:
        if job["expect_error"] and job["expect_error"] in str(err):
            rank, world = rank_world()
            return {"name": job["name"], "rank": rank, "world": world, "error": str(err)}
        raise
    if job["expect_error"]:
        raise AssertionError(f"{job['name']}: expected an error containing {job['expect_error']!r}")
    rank, world = rank_world()  # the process group exists once TrainingArguments has set up the devices
    record: dict = {"name": job["name"], "rank": rank, "world": world, "partitioned_at_init": partitioned}
    record["trainable_numel"] = sum(full_numel(p) for p in trainer.model.parameters() if p.requires_grad)
    record["reference"] = None if trainer.reference is None else type(trainer.reference.module).__name__
    snapshot = StateSnapshot(trainer, job["snapshot_step"])
    trainer.add_callback(snapshot)
    trainer.train()

    history = trainer.state.log_history
    record["losses"] = [h["loss"] for h in history if "loss" in h]
    # whether the reference's LM head ran on the answer positions only (models/heads.py), through any engine
    record["reference_answer_head"] = None if trainer.reference is None else trainer.reference._masked_head
    record["learning_rates"] = [h["learning_rate"] for h in history if "learning_rate" in h]
    record["terms"] = {key: [h[key] for h in history if "loss" in h and key in h]
                       for key in ("forget_loss", "retain_loss")}
    record["batches"] = trainer.data_collator.batches[: job["max_steps"] * job["grad_accum"]]
    record["state_numel"] = state_numel(trainer.optimizer)
    # PDU: the dual variable (retain weight) after every optimizer step
    record["retain_weights"] = None if trainer.dual_callback is None else trainer.dual_callback.history
    record["optimizer"] = type(inner_optimizer(trainer.optimizer)).__name__
    sophia = trainer.sophia
    if sophia is not None:
        record["hessian_updates"] = sophia.hessian_updates
        record["win_rate"] = sophia.win_rate
    if trainer.hessian_callback is not None:
        record["refresh_steps"] = list(trainer.hessian_callback.refresh_steps)
        record["refresh_path"] = trainer.refresh_path
    if trainer.is_deepspeed_enabled:
        engine = trainer.model_wrapped
        record["engine"] = {"global_steps": engine.global_steps, "micro_steps": engine.micro_steps,
                            "global_samples": engine.global_samples, "skipped_steps": engine.skipped_steps,
                            "zero_stage": engine.zero_optimization_stage()}
    weights = full_weights(trainer)
    if rank == 0:
        torch.save(weights, output_dir / f"{job['name']}_weights.pt")
        if snapshot.state is not None:
            torch.save(snapshot.state, output_dir / f"{job['name']}_state.pt")
    if job["save_model"]:
        trainer.save_model(str(output_dir / f"{job['name']}_model"))
    if job["evaluate"]:
        from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu

        model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
        per_sample, summary = evaluate_tofu(model, tokenizer, tofu_dir, forget_split="forget10", batch_size=1,
                                            max_new_tokens=6, subsample=3, show_progress=False)
        if rank == 0:
            (output_dir / f"{job['name']}_eval.json").write_text(json.dumps({"per_sample": per_sample,
                                                                             "summary": summary}))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return record


def skip_shm_kernel() -> None:
    """On CPU, DeepSpeed JIT-compiles a shared-memory all-reduce kernel when it starts its communication
    backend (minutes on 2 cores, when not cached). It serves only `inference_all_reduce`; training
    collectives go through torch.distributed (gloo), so the tests do without it."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true" and not torch.cuda.is_available():
        import deepspeed.comm.torch

        deepspeed.comm.torch.build_shm_op = lambda: None


def main(argv: list[str]) -> int:
    spec_path, result_path = argv
    skip_shm_kernel()
    spec = json.loads(Path(spec_path).read_text())
    records = []
    for job in spec["jobs"]:
        records.append(run_job(job, spec["tokenizer"], spec["output_dir"], spec.get("tofu_dir"),
                               spec.get("model_dir")))
    rank, world = rank_world()
    gathered = [records]
    if world > 1:
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, records)
    if rank == 0:
        by_job: dict[str, list] = {}
        for rank_records in gathered:
            for record in rank_records:
                by_job.setdefault(record["name"], []).append(record)
        Path(result_path).write_text(json.dumps(by_job, indent=1))
    if world > 1:
        # Tear the process group down before the interpreter exits: left to the exit handlers, gloo's threads
        # can still be running when their objects are destroyed ("terminate called without an active exception").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception:  # make the failing rank's traceback visible in the launcher's output
        traceback.print_exc()
        sys.exit(1)
