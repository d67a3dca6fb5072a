"""The frozen reference (teacher) model that NPO, KL, IdkDPO, UNDIAL and RMU compare against.

* full fine-tuning: a frozen copy of the starting model (eval mode, no grad, outside the optimizer);
* PEFT: the trained model itself with its adapters disabled, so no second copy is held in memory;
* a model the user hands in (`ref_model=`), frozen the same way.

Several processes
-----------------
* DDP, DeepSpeed ZeRO-1/2: every rank holds a plain frozen copy (`frozen_copy`). Under DeepSpeed
  the copy is cast to the engine's compute dtype (bf16/fp16), as the trained model will be.
* DeepSpeed ZeRO-3: the copy is partitioned like the trained model, by a DeepSpeed engine of its
  own in inference mode (`deepspeed_sharded`): no optimizer, no scheduler, no optimizer offload,
  the same ZeRO-3 settings otherwise. Its forward gathers each layer's weights on the fly, so no
  rank ever holds the whole reference.
* LoRA/PEFT: adapters off, in every setting (the partitioned base weights are shared).

When the ZeRO-3 reference is built. The trainer builds it in `__init__`, before `Trainer.train()`
partitions the trained model (inside `accelerator.prepare`). Two cases:
* the model is still whole (built in memory, or loaded before the TrainingArguments existed): a
  deep copy handed to `deepspeed.initialize` gives the sharded reference at once (TRL prepares its
  reference models with `deepspeed.initialize` the same way);
* the model is already partitioned: it was loaded under `deepspeed.zero.Init`, which
  `from_pretrained` does whenever a ZeRO-3 config is registered with transformers; an accelerate
  ZeRO-3 launch registers it as soon as the TrainingArguments exist, even with
  ``zero3_init_flag: false``, so this is the usual case for a script. A deep copy would copy empty
  placeholders, so a new model of the same class is created partitioned (transformers'
  `_from_config` runs inside `deepspeed.zero.Init`) and every weight is copied into it within
  `deepspeed.zero.GatheredParameters`, one tensor at a time: the whole model never sits on one rank.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch

from . import heads


class ReferenceModel:
    """Calls a model without gradients; with `adapters_off`, inside `disable_adapter()`.

    `answer_logits` computes the LM head only at the positions that predict an answer token (what NPO,
    IdkDPO, UNDIAL and the answer-token KL read): `models.heads`.
    """

    def __init__(self, module: torch.nn.Module, adapters_off: bool = False):
        self.module = module
        self.adapters_off = adapters_off
        self._masked_head: bool | None = None  # heads.keeps_masked_positions, checked at the first call

    @classmethod
    def frozen_copy(cls, model: torch.nn.Module, device=None, dtype: torch.dtype | None = None) -> "ReferenceModel":
        clone = freeze(copy.deepcopy(model))
        if device is not None or dtype is not None:
            clone = clone.to(device=device, dtype=dtype)
        return cls(clone)

    @classmethod
    def adapters_disabled(cls, peft_model: torch.nn.Module) -> "ReferenceModel":
        return cls(peft_model, adapters_off=True)

    @classmethod
    def deepspeed_sharded(cls, model: torch.nn.Module, ds_config: dict, copy_model: bool = True) -> "ReferenceModel":
        """A frozen copy of `model` partitioned by a DeepSpeed ZeRO-3 engine in inference mode.

        Args:
            model: the (whole or already ZeRO-3-partitioned) model to copy.
            ds_config: the training run's DeepSpeed config; see `inference_config`.
            copy_model: False shards `model` itself (a reference model the user passed in).
        """
        import deepspeed

        config = inference_config(ds_config, model)
        if not copy_model:
            clone = model
        elif is_zero3_partitioned(model):
            clone = _partitioned_copy(model, config)
        else:
            clone = copy.deepcopy(model)
        freeze(clone)
        engine, *_ = deepspeed.initialize(model=clone, config=config)
        engine.eval()
        return cls(engine)

    def _context(self):
        return self.module.disable_adapter() if self.adapters_off else contextlib.nullcontext()

    @torch.no_grad()
    def __call__(self, part: dict, output_hidden_states: bool = False, **forward_kwargs):
        with self._context():
            return self.module(
                input_ids=part["input_ids"], attention_mask=part["attention_mask"],
                output_hidden_states=output_hidden_states, **forward_kwargs,
            )

    @torch.no_grad()
    def answer_logits(self, part: dict) -> torch.Tensor:
        """[N, V] the reference's logits at the positions that predict an answer token (`answer_rows` order)."""
        if self._masked_head is None:
            self._masked_head = heads.keeps_masked_positions(self.module)
        with self._context():
            return heads.answer_logits(self.module, part, masked=self._masked_head)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    model.requires_grad_(False)
    return model


def is_peft_model(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # peft is a dependency, but keep the check cheap and safe
        return False
    return isinstance(model, PeftModel)


def is_zero3_partitioned(model: torch.nn.Module) -> bool:
    """True when the parameters are ZeRO-3 placeholders (created under `deepspeed.zero.Init`)."""
    return any(hasattr(p, "ds_id") for p in model.parameters())


# Bucket sizes that depend on the model; Trainer fills them in `train()`, after our reference exists.
_SIZE_KEYS = ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold")


def inference_config(ds_config: dict, model: torch.nn.Module | None = None) -> dict[str, Any]:
    """The DeepSpeed config of a frozen ZeRO-3 reference, derived from the training run's config.

    Drops what only training needs (`optimizer`, `scheduler`, optimizer offload; an inference
    engine has no optimizer to give them to) and resolves the model-size "auto" entries that
    Trainer would only fill inside `train()`: from the model's hidden size as Trainer does, or
    DeepSpeed's defaults when the model has none. Other "auto" values left over (a config used
    before TrainingArguments processed it) are dropped so DeepSpeed's defaults apply.
    """
    config = copy.deepcopy(ds_config)
    config.pop("optimizer", None)
    config.pop("scheduler", None)
    zero = config.setdefault("zero_optimization", {})
    zero.pop("offload_optimizer", None)
    zero["stage"] = 3
    hidden = None
    if model is not None:
        model_config = getattr(model, "config", None)
        sizes = getattr(model_config, "hidden_sizes", None)
        hidden = max(sizes) if sizes else getattr(model_config, "hidden_size", None)
    if hidden is not None:
        resolved = {"reduce_bucket_size": hidden * hidden, "stage3_prefetch_bucket_size": int(0.9 * hidden * hidden),
                    "stage3_param_persistence_threshold": 10 * hidden}
        for key in _SIZE_KEYS:
            if zero.get(key) == "auto":
                zero[key] = resolved[key]
    if any(config.get(k) == "auto" for k in ("train_batch_size", "train_micro_batch_size_per_gpu",
                                             "gradient_accumulation_steps")):
        # Batch sizes are irrelevant to a forward-only engine, but DeepSpeed checks that they agree.
        for key in ("train_batch_size", "gradient_accumulation_steps"):
            config.pop(key, None)
        config["train_micro_batch_size_per_gpu"] = 1
    return _drop_auto(config)


def _drop_auto(node):
    if isinstance(node, dict):
        return {k: _drop_auto(v) for k, v in node.items() if not (isinstance(v, str) and v == "auto")}
    return node


def _partitioned_copy(model: torch.nn.Module, config: dict) -> torch.nn.Module:
    """A copy of a ZeRO-3-partitioned model, built partitioned and filled one gathered tensor at a time."""
    import deepspeed

    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    dtype = next(model.parameters()).dtype
    try:
        from transformers import PreTrainedModel
        from transformers.integrations import is_deepspeed_zero3_enabled
    except ImportError:  # pragma: no cover - transformers is a dependency
        PreTrainedModel, is_deepspeed_zero3_enabled = (), (lambda: False)
    if isinstance(model, PreTrainedModel) and is_deepspeed_zero3_enabled():
        # transformers' own constructor: inside deepspeed.zero.Init, with weight initialisation that copes with
        # partitioned parameters (a plain constructor call inside zero.Init does not).
        clone = type(model)._from_config(copy.deepcopy(model.config), dtype=dtype)
    else:
        with deepspeed.zero.Init(config_dict_or_path=config, dtype=dtype):
            clone = type(model)(copy.deepcopy(model.config))
    sources, targets = dict(model.named_parameters()), dict(clone.named_parameters())
    if sources.keys() != targets.keys():
        raise RuntimeError(
            f"Cannot copy the ZeRO-3-partitioned {type(model).__name__} for the reference model: a fresh "
            "instance has different parameters. Pass `ref_model=` explicitly, or load the model with "
            "zero3_init_flag: false so that it is still whole when the trainer is created."
        )
    for name, source in sources.items():
        target = targets[name]
        with deepspeed.zero.GatheredParameters([source, target], modifier_rank=0):
            if rank == 0:
                target.data.copy_(source.data)
    clone_buffers = dict(clone.named_buffers())
    for name, buffer in model.named_buffers():
        if name in clone_buffers:
            clone_buffers[name].data.copy_(buffer.data)
    return clone
