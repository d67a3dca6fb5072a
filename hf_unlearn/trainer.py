"""`UnlearningTrainer`: a `transformers.Trainer` whose loss makes a model forget.

A training step, whole:

1. the collator hands a nested batch ``{"forget": ..., "retain": ..., "idk": ...}``;
2. `compute_loss` calls the method: ``L = gamma * F + alpha * R``; its terms are logged;
3. if the Hessian refresh callback says a refresh is due (SophiaG), `training_step` estimates the
   Hessian diagonal on this batch, leaving no gradient behind: on the answer logits that step 2's own
   forward hands back (`compute_loss(..., return_outputs=True)`, one process, GNB), or else with a
   forward of its own, before step 2 (`hf_unlearn.optim.refresh`). A due refresh that did not run
   stops training before the optimizer step (`HessianRefreshCallback`);
4. Trainer does backward, clipping and the optimizer step (AdamW, or SophiaG from `create_optimizer`; or the
   one-shot influence step, which refreshes every step, accumulates, and moves the model at the last step only).

Evaluation, on Trainer's schedule (``eval_strategy`` / ``eval_steps``): `evaluate` computes the unlearning
losses on the eval dataset (the forget pairs by default) and, with a benchmark evaluation (a
`ForgetQualityCallback` among the callbacks), runs the benchmark once; both come back in one metrics
dict (``eval_loss``, ``eval_forget_loss``, ..., ``eval_tofu/forget_quality``, ...), which
``metric_for_best_model`` / ``load_best_model_at_end`` and the stop rule read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from pathlib import Path
from collections import defaultdict

import torch
from accelerate.utils.memory import clear_device_cache
from transformers import AutoModelForCausalLM, Trainer, TrainerCallback

from .callbacks import HessianRefreshCallback, InfluenceApplyCallback, RetainDualCallback
from .config import SECOND_ORDER_OPTIMIZERS, UnlearningConfig
from .data.formatting import resolve_prompt_template
from .data.pairing import UnlearningCollator, UnlearningPairs, build_unlearning_dataset
from .methods import get_method
from .models.dropout import disable_dropout
from .models.reference import ReferenceModel, freeze, is_peft_model
from .optim import (InfluenceStep, RefreshContext, SophiaG, can_reuse_step_forward, get_estimator,
                    recording_logits, refresh_hessian)
from .saving import ReliableSaveMixin

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


class LossOutputs(dict):
    """`UnlearningTrainer.compute_loss(..., return_outputs=True)`'s outputs: the loss's detached terms by name
    (`forget_loss`, `retain_loss`, ...), and `answer_logits`: on a step whose Hessian refresh can reuse the
    step's forward, what the refresh reads of the method's forward by batch part (else None)."""

    answer_logits: dict[str, torch.Tensor] | None = None


def _refuse_sophia_under_fsdp(args, fsdp_enabled: bool = False) -> None:
    """SophiaG's (and the influence step's) refresh folds the rank-averaged sampled gradient into h; under FSDP that
    needs FSDP's own reduce-scatter into a sharded h, which is not implemented (accelerate runs FSDP on accelerators
    only, so it cannot be tested on CPU): refused, naming the supported path."""
    fsdp = fsdp_enabled or bool(args.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if fsdp and args.unlearn_optimizer in SECOND_ORDER_OPTIMIZERS:
        raise ValueError(
            f"unlearn_optimizer={args.unlearn_optimizer!r} is not supported under FSDP: its Hessian refresh would "
            "need FSDP's own gradient reduction. Use DeepSpeed ZeRO-2 or ZeRO-3 (accelerate launch --config_file "
            "recipes/accelerate/zero2.yaml or zero3.yaml), which shard SophiaG's state per rank, or keep FSDP with "
            "--unlearn_optimizer adamw."
        )


class UnlearningTrainer(ReliableSaveMixin, Trainer):
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
            # The adapters' initial values come from the global RNG: seeded first, as Trainer seeds before it
            # builds a model, so that a LoRA run starts from the same adapters in every process and every run.
            from transformers.trainer_utils import enable_full_determinism, set_seed

            enable_full_determinism(args.seed) if args.full_determinism else set_seed(args.seed)
            model = get_peft_model(model, peft_config)
        if args.unlearn_optimizer in SECOND_ORDER_OPTIMIZERS and optimizers[0] is not None:
            raise ValueError(
                f"unlearn_optimizer={args.unlearn_optimizer!r} builds its optimizer itself, but an optimizer was "
                "passed to the trainer: drop `optimizers=` or set unlearn_optimizer='adamw'."
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
        # The benchmark `evaluate` runs beside the unlearning losses: set by `set_benchmark_evaluation`, which
        # Trainer.__init__'s own add_callback calls may reach, hence before it.
        self.benchmark_evaluation = None
        self._benchmark_pending = None  # during evaluate(): its metric prefix until the benchmark ran, then ""
        evaluations = [cb for cb in callbacks or () if getattr(cb, "runs_in_evaluate", False)]
        if len(evaluations) > 1:
            raise ValueError(f"{len(evaluations)} ForgetQualityCallbacks were given: UnlearningTrainer.evaluate() runs "
                             "one benchmark evaluation; pass one (several benchmarks: evaluate after training).")
        if (args.eval_strategy != "no" or evaluations) and kwargs.get("eval_dataset") is None:
            # Trainer needs something to evaluate on its schedule: the unlearning losses on the forget
            # pairs (logged as eval_forget_loss, ...); a benchmark evaluation adds its metrics to the same call.
            kwargs["eval_dataset"] = train_dataset

        super().__init__(
            model=model, args=args, train_dataset=train_dataset, processing_class=processing_class,
            data_collator=data_collator, callbacks=callbacks, optimizers=optimizers, **kwargs,
        )
        self._check_distributed_setup()
        for evaluation in evaluations:
            self.set_benchmark_evaluation(evaluation)
        if hasattr(train_dataset, "set_epoch"):
            self.add_callback(_DatasetEpochCallback(train_dataset))
        self.reference = self._build_reference(ref_model, peft)
        self._terms = {"train": defaultdict(list), "eval": defaultdict(list)}
        influence = args.unlearn_optimizer == "influence"
        second_order = args.unlearn_optimizer in SECOND_ORDER_OPTIMIZERS
        self.estimator = get_estimator(args.hessian_estimator) if second_order else None
        self.hessian_callback = None
        # The last refresh's: "step_forward" (built on the step's own logits) or "own_forward" (forwarded itself).
        self.refresh_path = None
        self._keep_answer_logits = False  # set by training_step around a loss whose forward the refresh reuses
        if self.estimator is not None and self.estimator.refreshes:
            # the influence step averages an estimate from every step (one pass over the forget set)
            self.hessian_callback = HessianRefreshCallback(1 if influence else args.hessian_update_interval)
            self.add_callback(self.hessian_callback)
        if influence:
            self.add_callback(InfluenceApplyCallback(lambda: self.sophia))
        self.dual_callback = None
        if self.method.dual is not None:
            self.dual_callback = RetainDualCallback(self.method.dual, self.settings, self._mean_over_processes)
            self.add_callback(self.dual_callback)

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
        """Fails early, with the fix, on FSDP / DeepSpeed settings SophiaG (or the influence step) cannot run under."""
        _refuse_sophia_under_fsdp(self.args, self.is_fsdp_enabled)
        config = self._deepspeed_config
        if config is None or self.args.unlearn_optimizer not in SECOND_ORDER_OPTIMIZERS:
            return
        if "optimizer" in config:
            raise ValueError(
                f"unlearn_optimizer={self.args.unlearn_optimizer!r} builds its optimizer itself, but the DeepSpeed "
                "config has an `optimizer` "
                "block, which would replace it: remove `optimizer` from the DeepSpeed config (keep `scheduler` "
                "out too, or use --lr_scheduler_type), or set --unlearn_optimizer adamw."
            )
        if self._zero_stage == 3 and get_estimator(self.args.hessian_estimator).double_backward:
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
        if self.args.unlearn_optimizer == "influence" and self.optimizer is None:
            self.optimizer_cls_and_kwargs = (InfluenceStep, {"lr": self.args.learning_rate,
                                                             "damping": self.args.influence_damping})
        optimizer = super().create_optimizer(model)
        if self.estimator is not None:
            self.estimator.configure(optimizer)
        return optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.args.unlearn_optimizer == "influence" and self.lr_scheduler is None:
            # The learning rate is the one update's scale, taken at the last step: a schedule would shrink it.
            from transformers import get_scheduler

            self.lr_scheduler = get_scheduler("constant", optimizer=optimizer or self.optimizer)
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    @property
    def sophia(self) -> SophiaG | None:
        """The optimizer that holds the Hessian estimate: SophiaG, or the influence step (a SophiaG subclass)."""
        optimizer = self.optimizer
        while optimizer is not None and not isinstance(optimizer, SophiaG):
            optimizer = getattr(optimizer, "optimizer", None)
        return optimizer

    # --- the step -------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The method's loss on a nested batch; with `return_outputs`, also a `LossOutputs`: its terms and, when
        `training_step` asks for them, the answer logits of the method's own forward, for the Hessian refresh."""
        keep = self._keep_answer_logits and model.training
        with recording_logits(model, inputs, self.estimator) if keep else contextlib.nullcontext() as answer_logits:
            loss, terms = self.method(model, inputs, self.reference, self.settings)
        mode = "train" if model.training else "eval"
        if self.dual_callback is not None and mode == "train":
            self.dual_callback.record(terms["retain_loss"])
        for key, value in terms.items():
            self._terms[mode][key].append(value)
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(
                f"The {self.method.name} loss became non-finite ({loss.item()}) at step {self.state.global_step} "
                f"(terms: { {k: float(v) for k, v in terms.items()} }). Gradient ascent is unbounded: lower "
                "--learning_rate, stop earlier, or use a bounded method (npo, simnpo, undial)."
            )
        if not return_outputs:
            return loss
        outputs = LossOutputs(terms)
        outputs.answer_logits = answer_logits
        return loss, outputs

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Trainer's step, and SophiaG's Hessian refresh on the first micro-batch of a step the
        `HessianRefreshCallback` marks due: on this step's own forward where `can_reuse_step_forward` allows it,
        else with a forward of its own before the step's."""
        if self.hessian_callback is None or not self.hessian_callback.refresh_due:
            return super().training_step(model, inputs, num_items_in_batch)
        if not can_reuse_step_forward(self.model, self.estimator, self._refresh_context(),
                                      wrapped=model is not self.model):
            self._refresh_hessian(model, self._prepare_inputs(inputs))
            return super().training_step(model, inputs, num_items_in_batch)
        return self._training_step_refreshing_on_its_forward(model, inputs, num_items_in_batch)

    def _training_step_refreshing_on_its_forward(self, model, inputs, num_items_in_batch):
        """`Trainer.training_step` where it is forward then backward (one process, the module unwrapped: no
        DataParallel, DeepSpeed or context parallelism, as `can_reuse_step_forward` requires), with the refresh
        between the two, on the answer logits `compute_loss` hands back. A `compute_loss` that hands none back (a
        subclass's own loss, RMU's hidden-state forwards) gets a refresh that forwards itself."""
        model.train()
        if callable(getattr(self.optimizer, "train", None)):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        with self.compute_loss_context_manager():
            self._keep_answer_logits = True
            try:
                result = self.compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
            finally:
                self._keep_answer_logits = False
            loss, outputs = result if isinstance(result, tuple) else (result, None)
            self._refresh_hessian(model, inputs, getattr(outputs, "answer_logits", None))
        del inputs, outputs, result
        if self.args.torch_empty_cache_steps is not None and self.state.global_step % self.args.torch_empty_cache_steps == 0:
            clear_device_cache()
        if not self.loss_is_scaled_for_ga:
            loss = loss / self.current_gradient_accumulation_steps
        self.accelerator.backward(loss)
        return loss.detach()

    def _refresh_hessian(self, model, inputs, step_logits=None) -> None:
        """SophiaG's Hessian refresh on this batch (`hf_unlearn.optim.refresh`), before the step's own backward;
        `step_logits`: the step's own answer logits by batch part, to build the estimate on."""
        model.train()
        ctx = dataclasses.replace(self._refresh_context(), step_logits=step_logits)
        self.refresh_path = refresh_hessian(model, inputs, self.sophia, self.estimator, ctx,
                                            autocast=self.compute_loss_context_manager,
                                            engine=model if self.is_deepspeed_enabled else None)
        self.hessian_callback.refreshed(self.state.global_step)

    def _refresh_context(self) -> RefreshContext:
        return RefreshContext(
            seed=self.args.seed, step=self.state.global_step, rank=self.accelerator.process_index,
            world=self.accelerator.num_processes, device=self.args.device,
            batch_fraction=self.args.hessian_batch_fraction,
            unlearning_loss=lambda module, batch: self.method(module, batch, self.reference, self.settings)[0],
            sum_over_processes=lambda n: int(self.accelerator.reduce(torch.tensor(n, device=self.args.device),
                                                                     "sum").item()),
        )

    def _mean_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes == 1:
            return value
        return self.accelerator.reduce(value.to(self.args.device), "mean")

    # --- evaluation -----------------------------------------------------------------------------
    def set_benchmark_evaluation(self, evaluation) -> None:
        """Makes `evaluation` (a `ForgetQualityCallback`) the benchmark that `evaluate` runs with the unlearning
        losses, adding it (and its stop rule) to the callbacks. Passing it in ``callbacks=`` or to `add_callback`,
        or calling its ``attach(trainer)``, comes here."""
        if self.benchmark_evaluation is not None and self.benchmark_evaluation is not evaluation:
            raise ValueError(
                f"This trainer already evaluates {self.benchmark_evaluation.benchmark.name!r}: evaluate() runs one "
                "benchmark evaluation; remove the other ForgetQualityCallback (several benchmarks: evaluate after "
                "training)."
            )
        self.benchmark_evaluation = evaluation
        if evaluation not in self.callback_handler.callbacks:
            self.callback_handler.add_callback(evaluation)
        evaluation._adopted_by(self)
        if self.eval_dataset is None:  # the unlearning losses of the same evaluate() call
            self.eval_dataset = self.train_dataset
        self._check_metric_for_best_model()

    def train(self, *args, **kwargs):
        self._check_metric_for_best_model()  # before the first step; a benchmark may be attached after __init__
        return super().train(*args, **kwargs)

    def add_callback(self, callback):
        super().add_callback(callback)
        if getattr(callback, "runs_in_evaluate", False) and callback is not self.benchmark_evaluation:
            self.set_benchmark_evaluation(callback)

    def _check_metric_for_best_model(self) -> None:
        """A `metric_for_best_model` of the benchmark (``tofu/...``) must be one its summary has, and computed."""
        metric = self.args.metric_for_best_model
        name = (metric or "").removeprefix("eval_")
        if "/" not in name:
            return
        prefix, key = name.split("/", 1)
        from .eval.benchmarks import benchmark_names

        evaluation = getattr(self, "benchmark_evaluation", None)
        bench = None if evaluation is None else evaluation.benchmark
        if prefix in benchmark_names() and (bench is None or bench.name != prefix):
            raise ValueError(f"metric_for_best_model={metric!r} is a {prefix} metric, but this trainer evaluates "
                             f"{'no benchmark' if bench is None else bench.name}: give a ForgetQualityCallback"
                             f"(benchmark={prefix!r}, ...) (scripts: --benchmark {prefix} with --eval_strategy), or "
                             "another metric_for_best_model.")
        if bench is None or prefix != bench.name:
            return
        if key not in bench.summary_keys:
            raise ValueError(f"metric_for_best_model={metric!r}: {bench.name} has no summary key {key!r}; choose one "
                             f"of {', '.join(f'{bench.name}/{k}' for k in bench.summary_keys)}.")
        needs = bench.forget_metric_needs
        if key == bench.forget_metric and needs is not None and self.benchmark_evaluation.options.get(needs) is None:
            raise ValueError(f"metric_for_best_model={metric!r} needs the benchmark option {needs}: without it "
                             f"{bench.name}'s {key} is not computed.")

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """Trainer's evaluation: the unlearning losses on `eval_dataset` (default: the forget pairs) and, with a
        benchmark evaluation, the benchmark's metrics (``<prefix>_<benchmark>/<key>``), run once per call."""
        if self.benchmark_evaluation is None or self._benchmark_pending is not None:  # none; or one eval dataset
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)    # of several (a nested call)
        self._benchmark_pending = metric_key_prefix
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._benchmark_pending = None

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self._benchmark_pending:
            # Here, not in evaluate(): Trainer logs the metrics and hands them to on_evaluate (the stop rule) and
            # to the best-checkpoint choice after this loop. Once per evaluate(), even over several eval datasets
            # (with evaluate()'s own prefix, not one dataset's).
            prefix, self._benchmark_pending = self._benchmark_pending, ""
            benchmark_metrics = self.benchmark_evaluation.run(
                self.model, self.processing_class, self.args, self.state, template=self.prompt_template,
                metric_key_prefix=prefix)
            clashes = sorted(set(benchmark_metrics) & set(output.metrics))
            if clashes:
                raise ValueError(f"The benchmark's metrics {clashes} clash with the evaluation's own metrics.")
            output.metrics.update(benchmark_metrics)
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def _save(self, output_dir: str | None = None, state_dict=None):
        super()._save(output_dir, state_dict)
        if self.prompt_template is not None and self.args.should_save:  # the format the model was trained on
            self.prompt_template.save(output_dir or self.args.output_dir)

    # --- model card -----------------------------------------------------------------------------
    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None,
                          tags: list[str] | None = None, *, base_model: str | None = None,
                          forget_split: str = "forget10", retain_split: str | None = None,
                          results: dict | None = None, results_before: dict | None = None,
                          plot_file: str | None = None, benchmark=None, script_args: dict | None = None,
                          **kwargs) -> None:
        """Writes README.md (the Hub model card) into `output_dir`. Scripts describe the run with the keywords
        (base model, splits, results before and after, plot file, script flags) and pass the same ones to
        `push_to_hub`, which hands them back here; whatever is missing is left out of the card. `benchmark`
        (entry or name) gives the results table's rows; default: the benchmark this trainer evaluates.
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
            benchmark=benchmark if benchmark is not None else getattr(self.benchmark_evaluation, "benchmark", None),
            prompt_template=self.prompt_template.to_dict() if self.prompt_template is not None else None,
            gguf_source=getattr(getattr(self.accelerator.unwrap_model(self.model), "config", None), "gguf_source", None),
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
        if mode == "eval" and self.benchmark_evaluation is not None:
            # The benchmark's metrics are logged under their names, tofu/forget_quality, ...: those
            # metric_for_best_model takes (Trainer adds the eval_ prefix of evaluate()'s metrics).
            prefix = f"eval_{self.benchmark_evaluation.benchmark.name}/"
            logs = {key.removeprefix("eval_") if key.startswith(prefix) else key: value for key, value in logs.items()}
        if mode == "train" and self.dual_callback is not None:
            logs["retain_weight"] = float(self.settings.retain_weight)  # PDU's lambda
        sophia = self.sophia
        if mode == "train" and sophia is not None:
            prefix = "influence" if isinstance(sophia, InfluenceStep) else "sophia"
            if prefix == "sophia":
                logs["sophia/win_rate"] = float(sophia.win_rate)
            logs[f"{prefix}/hessian_mean"] = sophia.hessian_mean()
            logs[f"{prefix}/refreshes"] = sophia.hessian_updates
        super().log(logs, start_time)

