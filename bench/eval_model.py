"""The held-out evaluation model of P4: a Llama of the issue's shape trained briefly on real TOFU.

Shape (issue 16's figure): hidden 256, 4 layers, 4 heads, intermediate 768, vocabulary 4096 (the BPE of
`common.tokenizer_for`), context 256, untied embeddings: 5.5 M parameters.  It is built from a config and
fine-tuned on TOFU ``full`` + the general-knowledge QA (as `finetune_tofu.py` does for tiny-llama) with
`hf_unlearn.pipeline.finetune`, so that its answers end at EOS at realistic lengths; no test or other
bench trains on it or tunes against it.  Cached under ``<output_dir>/cache/eval-model-<hash>/`` (not for git).

    python -m bench.eval_model --output_dir bench/results      # build (or find) it; prints its folder
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from . import common as C

SHAPE = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
             intermediate_size=768, max_position_embeddings=256, tie_word_embeddings=False)
TRAIN = dict(num_train_epochs=2, learning_rate=3e-3, per_device_train_batch_size=32, seed=0,
             lr_scheduler_type="cosine", warmup_steps=0.05, max_length=256)
# A second stage from the first one's weights: after stage 1 (train loss 5.9) the model still repeated
# "the" up to the 200-token cap; a model whose answers end at EOS is what the bench needs.
STAGE2 = dict(TRAIN, num_train_epochs=2, learning_rate=2e-3, seed=1)


def folder(ctx: C.BenchContext, stages: tuple[dict, ...] | None = None) -> Path:
    stages = (TRAIN, STAGE2) if stages is None else stages
    recipe = [SHAPE, TRAIN] if len(stages) == 1 else [SHAPE, *stages]
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return ctx.cache_dir / f"eval-model-{key}"


def build_untrained(tokenizer, seed: int = 0):
    """The issue's Llama shape from a config, sized for ``tokenizer`` (no download)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **SHAPE)
    return LlamaForCausalLM(config)


def ensure(ctx: C.BenchContext, stages: tuple[dict, ...] | None = None) -> Path:
    """The trained model's folder (trains each stage once, ~20 min each on 2 shared cores)."""
    from transformers import AutoModelForCausalLM, TrainingArguments

    from hf_unlearn.pipeline import finetune, with_general_knowledge

    stages = (TRAIN, STAGE2) if stages is None else stages
    out = folder(ctx, stages)
    if (out / "config.json").is_file():
        return out
    data, _ = C.data_dir(ctx)
    tokenizer = C.tokenizer_for(data, 4096)
    if len(stages) == 1:
        model = build_untrained(tokenizer)
    else:
        model = AutoModelForCausalLM.from_pretrained(ensure(ctx, stages[:-1]))
    rows = with_general_knowledge(C.load_rows(data, "full"), data)
    train = dict(stages[-1])
    max_length = train.pop("max_length")
    args = TrainingArguments(output_dir=str(ctx.scratch / "eval-model"), report_to=[], save_strategy="no",
                             logging_steps=20, weight_decay=0.01, train_sampling_strategy="group_by_length",
                             disable_tqdm=True, **train)
    trainer = finetune(model, tokenizer, rows, args, max_length=max_length)
    tmp = out.with_name(out.name + ".tmp")
    trainer.save_model(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    (tmp / "eval_model.json").write_text(json.dumps({"shape": SHAPE, "stages": stages, "rows": len(rows),
                                                     "train_loss": trainer.train_output.training_loss}, indent=1))
    tmp.rename(out)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.eval_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="bench/results")
    a = parser.parse_args()
    print(ensure(C.BenchContext(output_dir=Path(a.output_dir))))
