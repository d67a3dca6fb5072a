"""`UnlearningTrainer`: a `transformers.Trainer` whose loss makes a model forget.

A training step, whole:

1. the collator hands a nested batch ``{"forget": ..., "retain": ..., "idk": ...}``;
2. if the Hessian refresh callback says a refresh is due (SophiaG), `training_step` first estimates
   the Hessian diagonal on this batch and leaves no gradient behind;
3. `compute_loss` looks the method up in the registry: ``L = gamma * F + alpha * R``; its terms are
   logged;
4. Trainer does backward, clipping and the optimizer step (AdamW, or SophiaG from `create_optimizer`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from pathlib import Path
from collections import defaultdict

import numpy as np
import torch
from transformers import AutoModelForCausalLM, Trainer, TrainerCallback

from .callbacks import HessianRefreshCallback
from .config import UnlearningConfig
from .data.formatting import IGNORE_INDEX, resolve_prompt_template
from .data.pairing import UnlearningCollator, UnlearningPairs, build_unlearning_dataset
from .methods import get_method
from .models.dropout import disable_dropout
from .models.reference import ReferenceModel, freeze, is_peft_model
from .optim import SophiaG, gnb_loss, hutchinson_diagonal, EMPIRICAL_SCALE

logger = logging.getLogger(__name__)


class _DatasetEpochCallback(TrainerCallback):
    """Tells the dataset which epoch starts, so that the forget->retain pairing (a function of the epoch) is the
    same for any number of processes.

    accelerate's `DataLoaderShard.set_epoch` forwards the epoch to the dataset only when the batch sampler is
    not sharded: with one process the pairs change every epoch, with several they would stay those of epoch 0.
    At `on_epoch_begin`, before the epoch's first batch is drawn, `state.epoch` is the number of epochs done
    (a whole number; or, when resuming mid-epoch, that number plus a fraction).
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor((state.epoch or 0.0) + 1e-9))


def _refuse_sophia_under_fsdp(args, fsdp_enabled: bool = False) -> None:
    """SophiaG's refresh folds the rank-averaged sampled gradient into h; under FSDP that needs FSDP's own
    reduce-scatter into a sharded h, which is not implemented (accelerate runs FSDP on accelerators only, so it
    cannot be tested on CPU): refused, naming the supported path."""
    fsdp = fsdp_enabled or bool(args.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if fsdp and args.unlearn_optimizer == "sophia":
        raise ValueError(
            "unlearn_optimizer='sophia' is not supported under FSDP: SophiaG's Hessian refresh would need FSDP's own "
            "gradient reduction. Use DeepSpeed ZeRO-2 or ZeRO-3 (accelerate launch --config_file "
            "recipes/accelerate/zero2.yaml or zero3.yaml), which shard SophiaG's state per rank, or keep FSDP with "
            "--unlearn_optimizer adamw."
        )


def _row_seed(seed: int, step: int, part: int, row: int) -> int:
    """Seed of the GNB label draws of one row of the global batch: independent of the process count."""
    state = np.random.SeedSequence([v % 2**63 for v in (seed, step, part, row)]).generate_state(1, np.uint64)
    return int(state[0] >> 1)


class UnlearningTrainer(Trainer):
    """Trainer for unlearning: `args.unlearn_method` picks the loss, `args.unlearn_optimizer` the optimizer.

    Args:
        model: a causal LM, a `PeftModel`, or a model id / local path.
        args: an [`UnlearningConfig`].
        train_dataset: an [`UnlearningPairs`]; or give `forget_dataset` (and `retain_dataset`) as
            `datasets.Dataset`s with question/answer columns and the pairs are built here.
        ref_model: an explicit reference model; by default a frozen copy (or adapters-off under PEFT),
            built only when the method needs one.
        peft_config: a `peft.PeftConfig`, applied to `model` as TRL trainers do.
        dataset_columns: `question_column` / `answer_column` / `text_column` of forget and retain datasets.
    """

    loss_is_scaled_for_ga = False  # our losses are means over one micro-batch: Trainer divides by the GA steps

    def __init__(
        self,
        model=None,
        args: UnlearningConfig | None = None,
        train_dataset: UnlearningPairs | None = None,
        forget_dataset=None,
        retain_dataset=None,
        processing_class=None,
        data_collator=None,
        ref_model=None,
        peft_config=None,
        dataset_columns: dict | None = None,
        callbacks=None,
        optimizers=(None, None),
        **kwargs,
    ):
        if args is None:
            args = UnlearningConfig(output_dir="unlearning_output")
        if not isinstance(args, UnlearningConfig):
            raise TypeError(f"args must be an UnlearningConfig, got {type(args).__name__}.")
        _refuse_sophia_under_fsdp(args)
        if isinstance(model, str):
            model = AutoModelForCausalLM.from_pretrained(model)
        if peft_config is not None:
            from peft import get_peft_model

            if is_peft_model(model):
                raise ValueError("model is already a PeftModel: pass either a PeftModel or peft_config, not both.")
            model = get_peft_model(model, peft_config)
        if args.unlearn_optimizer == "sophia" and optimizers[0] is not None:
            raise ValueError(
                "unlearn_optimizer='sophia' builds SophiaG itself, but an optimizer was passed to the trainer: "
                "drop `optimizers=` or set unlearn_optimizer='adamw'."
            )

        if args.disable_dropout:  # before the reference is copied from the model: neither has dropout
            for module in (model, ref_model):
                if isinstance(module, torch.nn.Module):
                    disable_dropout(module)
        # One prompt format for the pairs, the evaluations during training and the saved model
        # (a model folder's saved prompt_template.json is the `auto` choice).
        self.prompt_template = None
        if processing_class is not None:
            self.prompt_template = resolve_prompt_template(
                processing_class, model_dir=getattr(getattr(model, "config", None), "_name_or_path", None),
                **args.prompt_template_fields())

        self.method = get_method(args.unlearn_method)
        self.settings = self.method.settings_from(args)
        peft = is_peft_model(model)
        if self.method.setup is not None:
            self.settings = self.method.setup(model, self.settings, seed=args.seed, is_peft=peft)

        if train_dataset is None:
            if forget_dataset is None:
                raise ValueError("Give train_dataset (UnlearningPairs) or forget_dataset (and retain_dataset).")
            train_dataset = build_unlearning_dataset(
                processing_class, forget_dataset,
                retain_dataset if self.method.needs_retain(self.settings) else None,
                needs_idk=self.method.needs_idk, max_length=args.max_length,
                max_prompt_length=args.max_prompt_length,
                seed=args.seed if args.pairing_seed is None else args.pairing_seed, template=self.prompt_template,
                **(dataset_columns or {}),
            )
        self._check_dataset(train_dataset)
        if data_collator is None:
            data_collator = UnlearningCollator(processing_class)
        if args.eval_strategy != "no" and kwargs.get("eval_dataset") is None:
            # Trainer needs something to evaluate on its schedule: the unlearning losses on the forget
            # pairs (logged as eval_forget_loss, ...); ForgetQualityCallback adds the TOFU metrics.
            kwargs["eval_dataset"] = train_dataset

        super().__init__(
            model=model, args=args, train_dataset=train_dataset, processing_class=processing_class,
            data_collator=data_collator, callbacks=callbacks, optimizers=optimizers, **kwargs,
        )
        self._check_distributed_setup()
        if hasattr(train_dataset, "set_epoch"):
            self.add_callback(_DatasetEpochCallback(train_dataset))
        self.reference = self._build_reference(ref_model, peft)
        self._terms = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.hessian_callback = None
        if args.unlearn_optimizer == "sophia" and args.hessian_estimator != "empirical":
            self.hessian_callback = HessianRefreshCallback(args.hessian_update_interval)
            self.add_callback(self.hessian_callback)

    # --- set-up ----------------------------------------------------------------------------------
    def _check_dataset(self, dataset) -> None:
        name = self.method.name
        if not isinstance(dataset, UnlearningPairs):
            return
        if self.method.needs_retain(self.settings) and not dataset.has_retain:
            raise ValueError(
                f"unlearn_method={name!r} needs retain data (retain weight alpha={self.settings.retain_weight}): "
                "give retain_dataset / --retain_split, or set --retain_weight 0, or use 'ga'."
            )
        if self.method.needs_idk and not dataset.has_idk:
            raise ValueError(f"unlearn_method={name!r} needs refusal answers: build the dataset with needs_idk=True.")

    # --- distributed set-up -----------------------------------------------------------------------
    @property
    def _deepspeed_config(self) -> dict | None:
        if not self.is_deepspeed_enabled:
            return None
        return self.accelerator.state.deepspeed_plugin.deepspeed_config

    @property
    def _zero_stage(self) -> int | None:
        config = self._deepspeed_config
        return None if config is None else int(config.get("zero_optimization", {}).get("stage", 0))

    def _check_distributed_setup(self) -> None:
        """Fails early, with the fix, on FSDP / DeepSpeed settings SophiaG cannot run under."""
        _refuse_sophia_under_fsdp(self.args, self.is_fsdp_enabled)
        config = self._deepspeed_config
        if config is None or self.args.unlearn_optimizer != "sophia":
            return
        if "optimizer" in config:
            raise ValueError(
                "unlearn_optimizer='sophia' builds SophiaG itself, but the DeepSpeed config has an `optimizer` "
                "block, which would replace it: remove `optimizer` from the DeepSpeed config (keep `scheduler` "
                "out too, or use --lr_scheduler_type), or set --unlearn_optimizer adamw."
            )
        if self._zero_stage == 3 and self.args.hessian_estimator == "hutchinson":
            raise ValueError(
                "--hessian_estimator hutchinson needs a double backward through whole parameters, which DeepSpeed "
                "ZeRO-3 (partitioned parameters) does not allow: use --hessian_estimator gnb (or empirical) with "
                "ZeRO-3, or Hutchinson with ZeRO-2 / DDP."
            )
        # DeepSpeed refuses client optimizers it has not tested unless told otherwise; transformers sets this
        # for any optimizer it creates, and so do we, explicitly, for SophiaG.
        config["zero_allow_untested_optimizer"] = True

    def _build_reference(self, ref_model, peft: bool):
        """Frozen reference: see `hf_unlearn.models.reference` for DDP / ZeRO-1/2 / ZeRO-3 / LoRA."""
        if not self.method.needs_reference(self.settings):
            return None
        if self._zero_stage == 3 and (ref_model is not None or not peft):
            # Built now, before train() partitions self.model: a deep copy of the whole model, or a gathered copy
            # when it was loaded already partitioned (zero.Init); see models/reference.py.
            return ReferenceModel.deepspeed_sharded(ref_model if ref_model is not None else self.model,
                                                    self._deepspeed_config, copy_model=ref_model is None)
        device = dtype = None
        if self.is_deepspeed_enabled:
            # Trainer leaves placement and the cast to bf16/fp16 to the engine, inside train().
            device, dtype = self.args.device, self.accelerator.state.deepspeed_plugin.hf_ds_config.dtype()
        if ref_model is not None:
            return ReferenceModel(freeze(ref_model).to(device=self.args.device, dtype=dtype))
        if peft:
            return ReferenceModel.adapters_disabled(self.model)
        return ReferenceModel.frozen_copy(self.model, device=device, dtype=dtype)

    def create_optimizer(self, model=None):
        if self.args.unlearn_optimizer == "sophia" and self.optimizer is None:
            self.optimizer_cls_and_kwargs = (SophiaG, {
                "lr": self.args.learning_rate, "betas": (self.args.sophia_beta1, self.args.sophia_beta2),
                "rho": self.args.sophia_rho, "weight_decay": self.args.weight_decay,
            })
        optimizer = super().create_optimizer(model)
        if self.args.unlearn_optimizer == "sophia" and self.args.hessian_estimator == "empirical":
            optimizer.empirical_hessian_scale = EMPIRICAL_SCALE
        return optimizer

    @property
    def sophia(self) -> SophiaG | None:
        optimizer = self.optimizer
        while optimizer is not None and not isinstance(optimizer, SophiaG):
            optimizer = getattr(optimizer, "optimizer", None)
        return optimizer

    # --- the step -------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, terms = self.method(model, inputs, self.reference, self.settings)
        mode = "train" if model.training else "eval"
        for key, value in terms.items():
            self._terms[mode][key].append(value)
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(
                f"The {self.method.name} loss became non-finite ({loss.item()}) at step {self.state.global_step} "
                f"(terms: { {k: float(v) for k, v in terms.items()} }). Gradient ascent is unbounded: lower "
                "--learning_rate, stop earlier, or use a bounded method (npo, simnpo, undial)."
            )
        return (loss, terms) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.hessian_callback is not None and self.hessian_callback.refresh_due:
            self.hessian_callback.refresh_due = False
            self._refresh_hessian(model, self._prepare_inputs(inputs))
        return super().training_step(model, inputs, num_items_in_batch)

    def _refresh_hessian(self, model, inputs) -> None:
        """Estimates diag(H) on this batch and folds it into SophiaG's h; leaves no gradient behind.

        The estimate goes through SophiaG's Hessian mode (`SophiaG.collecting_hessian`): inside it,
        `step()` folds whatever sits in the gradients into h (``scale * g*g`` for GNB, ``g`` for
        Hutchinson's ``u*Hu``) and leaves the parameters, m and the step count alone. So h is
        refreshed by the same `step()` call, on the same tensors, as the real update.

        One process: backward the estimate loss, `sophia.step()` in Hessian mode, zero the grads.

        DDP: the backward runs under `no_sync()` (the refresh runs on the first micro-batch, maybe
        inside Trainer's own `no_sync`, and must not leave a half-reduced bucket behind), then the
        gradients are averaged across ranks by hand, then the Hessian-mode step.

        DeepSpeed (ZeRO-1/2/3): DeepSpeed gives the client optimizer flat fp32 partitions of the
        parameters (ZeRO-2 keeps them in ``param_groups``; ZeRO-3 swaps each sub-group in and out
        around its `step()`), reduces and partitions the gradients inside the engine, and calls the
        client `step()` itself. The refresh uses that same path: the estimate loss is backpropagated
        with ``engine.backward`` and ``engine.step()`` runs inside Hessian mode, so the engine
        reduce-scatters the gradient and each rank folds into h exactly the shard of m and h it
        owns. Around that one engine step the trainer
        * forces a gradient-accumulation boundary (`set_gradient_accumulation_boundary(True)`), so
          the engine reduces and steps even when gradient_accumulation_steps > 1; the refresh runs
          on the first micro-batch of an optimizer step, when no real gradient has accumulated yet;
        * turns gradient clipping off (engine config and the ZeRO optimizer's ``clip_grad``): a
          clipped sampled gradient would bias ĥ = B·ĝ⊙ĝ;
        * detaches the engine's LR scheduler (Trainer steps its own, but a DeepSpeed-config one
          would tick);
        * restores the engine's ``global_steps``, ``global_samples``, ``micro_steps`` and
          ``skipped_steps`` and the boundary flag afterwards, so the refresh is invisible to the
          engine's bookkeeping. With fp16 loss scaling an overflowing refresh is skipped by the
          engine (h keeps its old value) and lowers the loss scale, as an overflowing step would.
        Hutchinson cannot double-backward through the engine: u⊙Hu is computed with plain autograd
        on the unwrapped module (ZeRO-1/2 keep whole parameters on every rank), then the surrogate
        ``sum <p, stop_grad(u⊙Hu)>``, whose gradient is u⊙Hu, goes through the engine in Hessian mode
        with squared=False. ZeRO-3 has no whole parameters and is refused in `__init__`.

        Randomness and scale. GNB samples the labels of row r of the global batch with a generator
        seeded by (seed, step, part, r), so the draws do not depend on the number of processes, and
        the local loss is scaled by world_size / B_global: after the ranks' gradients are averaged,
        ĝ is the mean over all B_global sampled tokens, exactly as in one process with the whole
        batch, and h gets scale B_global. Hutchinson's u is drawn from (seed, step) alike on every
        rank, so averaging u⊙H_r u over ranks gives u⊙H u of the averaged loss.
        """
        sophia = self.sophia
        model.train()
        generator = torch.Generator(device=self.args.device)
        # A function of (seed, step): a resumed run draws the same u as an uninterrupted one.
        generator.manual_seed(self.args.seed * 1_000_003 + self.state.global_step)
        if self.is_deepspeed_enabled:
            self._refresh_hessian_deepspeed(model, inputs, sophia, generator)
            return
        distributed = self.accelerator.num_processes > 1 and hasattr(model, "no_sync")
        with model.no_sync() if distributed else contextlib.nullcontext():
            with self.compute_loss_context_manager():
                if self.args.hessian_estimator == "gnb":
                    estimate_loss, scale = self._gnb_loss(model, inputs)
                    estimate_loss.backward()
                    squared = True
                else:  # hutchinson
                    loss, _ = self.method(model, inputs, self.reference, self.settings)
                    # Model order, as under DeepSpeed (whose optimizer holds flat partitions): u is the same draw.
                    params = [p for p in model.parameters() if p.requires_grad]
                    for param, diagonal in zip(params, hutchinson_diagonal(loss, params, generator)):
                        param.grad = diagonal
                    scale, squared = 1.0, False
        self._average_gradients_across_processes(sophia)
        with sophia.collecting_hessian(scale=scale, squared=squared):
            sophia.step()
        model.zero_grad(set_to_none=True)

    def _refresh_hessian_deepspeed(self, engine, inputs, sophia, generator) -> None:
        with self.compute_loss_context_manager():
            if self.args.hessian_estimator == "gnb":
                estimate_loss, scale = self._gnb_loss(engine, inputs)
                squared = True
            else:  # hutchinson; ZeRO-3 was refused in __init__
                module = engine.module  # not the engine's forward: its backward hooks would fire on autograd.grad
                loss, _ = self.method(module, inputs, self.reference, self.settings)
                params = [p for p in module.parameters() if p.requires_grad]
                diagonals = hutchinson_diagonal(loss, params, generator)
                del loss
                estimate_loss = sum((p * d.to(p.dtype)).sum() for p, d in zip(params, diagonals))
                scale, squared = 1.0, False
        self._engine_hessian_step(engine, sophia, estimate_loss, scale, squared)

    @staticmethod
    def _engine_hessian_step(engine, sophia, loss, scale: float, squared: bool) -> None:
        """One `engine.backward` + `engine.step()` in SophiaG's Hessian mode, invisible to the engine's counters."""
        zero_optimizer = engine.optimizer
        counters = {name: getattr(engine, name) for name in
                    ("global_steps", "global_samples", "micro_steps", "skipped_steps")}
        boundary = getattr(engine, "_is_gradient_accumulation_boundary", None)
        clip_config = engine._config.gradient_clipping
        clip_optimizer = getattr(zero_optimizer, "clip_grad", None)
        scheduler = engine.lr_scheduler
        try:
            engine._config.gradient_clipping = 0.0
            if clip_optimizer is not None:
                zero_optimizer.clip_grad = 0.0
            engine.lr_scheduler = None
            engine.set_gradient_accumulation_boundary(True)
            with sophia.collecting_hessian(scale=scale, squared=squared):
                engine.backward(loss, scale_wrt_gas=False)
                engine.step()
        finally:
            for name, value in counters.items():
                setattr(engine, name, value)
            engine._is_gradient_accumulation_boundary = boundary
            if boundary is not None and hasattr(zero_optimizer, "set_gradient_accumulation_boundary"):
                zero_optimizer.set_gradient_accumulation_boundary(boundary)
            engine._config.gradient_clipping = clip_config
            if clip_optimizer is not None:
                zero_optimizer.clip_grad = clip_optimizer
            engine.lr_scheduler = scheduler

    def _gnb_loss(self, model, inputs):
        """Sampled-label GNB loss, scaled so that the rank-averaged gradient is ĝ over the global batch.

        Returns ``(loss, B)`` with B the number of sampled tokens on all processes together.
        """
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        fraction = self.args.hessian_batch_fraction
        total, count = None, 0
        for part_index, part in enumerate(("forget", "retain")):
            if part not in inputs:
                continue
            batch = inputs[part]
            rows = batch["labels"].shape[0]
            # Rows kept by --hessian_batch_fraction, chosen by their index g in the global batch (evenly
            # spaced: floor((g+1)f) > floor(g f)), so the choice, like the draws, does not depend on the
            # process count.
            first = rank * rows
            kept = [r for r in range(rows)
                    if math.floor((first + r + 1) * fraction) > math.floor((first + r) * fraction)]
            forward_rows = kept or [0]  # a rank with nothing kept still takes part in the backward
            if len(forward_rows) < rows:
                batch = {key: value[forward_rows] if torch.is_tensor(value) else value for key, value in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"]
            if total is None:
                total = logits.sum() * 0.0  # a rank without answer tokens still takes part in the backward
            if not kept:
                continue
            # One uniform per answer token, drawn row by row from a generator seeded by the row's global
            # index: the labels drawn do not depend on how the batch is split over processes.
            answer_tokens = (labels[:, 1:] != IGNORE_INDEX).sum(-1).tolist()
            uniforms = [torch.rand(n, generator=torch.Generator().manual_seed(
                _row_seed(self.args.seed, self.state.global_step, part_index, rank * rows + row)))
                for row, n in zip(kept, answer_tokens) if n]
            if uniforms:
                loss, n = gnb_loss(logits, labels, uniforms=torch.cat(uniforms).to(logits.device))
                total, count = total + loss * n, count + n
        global_count = int(self.accelerator.reduce(torch.tensor(count, device=self.args.device), "sum").item())
        if total is None or global_count == 0:
            raise ValueError(
                f"The Hessian refresh at step {self.state.global_step} found no answer tokens in the batch (every "
                "label is -100): GNB has nothing to sample. Check the data, or use --hessian_estimator empirical."
            )
        return total * (world / global_count), global_count

    def _average_gradients_across_processes(self, sophia) -> None:
        if self.accelerator.num_processes == 1:
            return
        world = self.accelerator.num_processes
        for group in sophia.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    # SUM then divide: gloo (CPU) has no ReduceOp.AVG.
                    torch.distributed.all_reduce(param.grad, op=torch.distributed.ReduceOp.SUM)
                    param.grad.div_(world)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        super().save_model(output_dir, _internal_call)
        if self.prompt_template is not None and self.args.should_save:  # the format the model was trained on
            self.prompt_template.save(output_dir or self.args.output_dir)

    # --- model card -----------------------------------------------------------------------------
    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None,
                          tags: list[str] | None = None, *, base_model: str | None = None,
                          forget_split: str = "forget10", retain_split: str | None = None,
                          results: dict | None = None, results_before: dict | None = None,
                          plot_file: str | None = None, benchmark: str = "TOFU", script_args: dict | None = None,
                          **kwargs) -> None:
        """Writes README.md (the Hub model card) into `output_dir`. Scripts describe the run with the keywords
        (base model, splits, results before and after, plot file, script flags) and pass the same ones to
        `push_to_hub`, which hands them back here; whatever is missing is left out of the card.
        """
        if not self.is_world_process_zero():
            return
        from .hub import recipe_of, unlearning_model_card

        card = unlearning_model_card(
            model_name=model_name or Path(self.args.output_dir).name,
            base_model=base_model, method=self.method.name, optimizer=self.args.unlearn_optimizer,
            dataset_name=dataset_name or "locuslab/TOFU", forget_split=forget_split, retain_split=retain_split,
            recipe=recipe_of(self.args, script_args),
            library_name="peft" if is_peft_model(self.model) else "transformers",
            results=results, results_before=results_before, plot_file=plot_file, extra_tags=tags,
            benchmark=benchmark,
            prompt_template=self.prompt_template.to_dict() if self.prompt_template is not None else None,
        )
        card.save(str(Path(self.args.output_dir) / "README.md"))

    # --- logging --------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if "loss" in logs or not any(k.startswith("eval_") for k in logs) else "eval"
        prefix = "" if mode == "train" else "eval_"
        keys = sorted(self._terms[mode])
        if keys:
            means = torch.stack([torch.stack(self._terms[mode][key]).float().mean() for key in keys])
            if self.accelerator.num_processes > 1:  # over every rank's micro-batches, as Trainer does for `loss`
                means = self.accelerator.reduce(means, "mean")
            for key, value in zip(keys, means.tolist()):
                logs[f"{prefix}{key}"] = value
        self._terms[mode].clear()
        sophia = self.sophia
        if mode == "train" and sophia is not None:
            logs["sophia/win_rate"] = float(sophia.win_rate)
            logs["sophia/hessian_mean"] = sophia.hessian_mean()
            logs["sophia/refreshes"] = sophia.hessian_updates
        super().log(logs, start_time)

