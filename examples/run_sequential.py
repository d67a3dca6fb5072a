"""Unlearn several requests one after another (TOFU: forget01, then forget05, then forget10), evaluating the
model after each request against that request's retain model.

    accelerate launch examples/run_sequential.py --config recipes/tofu/sequential/undial_adamw.yaml \
        --model_name_or_path <target model> \
        --retain_references <retain99>/tofu_eval.json,<retain95>/tofu_eval.json,<retain90>/tofu_eval.json \
        --output_dir sequential_out

MUSE (sust: each request from the previous one; scal: each from the target, --sequential_mode independent):

    python examples/run_sequential.py --benchmark muse --dataset_name <MUSE folder> --model_name_or_path <target> \
        --forget_splits sust/forget_1,sust/forget_2,sust/forget_3,sust/forget_4 \
        --retain_references <retrain>/muse_eval.json,<retrain>/muse_eval.json,<retrain>/muse_eval.json,<retrain>/muse_eval.json \
        --output_dir sust_out

Request k trains on the rows no earlier request had (forget05 minus forget01, ...), starting from request
k-1's model with a fresh optimizer, and is evaluated on split k (everything forgotten so far). Flags: those
of run_tofu.py plus `SequentialArguments` (--forget_splits, --retain_references, --sequential_mode).
Output: request_<k>_<split>/ (model, evaluation, card), sequential_summary.json, sequential.png, README.md.
"""

import sys
from pathlib import Path

import datasets
from transformers import AutoModelForCausalLM
from trl import TrlParser, get_peft_config

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.config import ModelArguments, MuseScriptArguments, UnlearningScriptArguments
from hf_unlearn.data.muse import muse_strings
from hf_unlearn.entry import benchmark_of  # --benchmark read first: it decides the data flags' defaults
from hf_unlearn.hub import check_push_credentials, recipe_of
from hf_unlearn.methods import get_method
from hf_unlearn.offline.tiny import TINY_PRESET
from hf_unlearn.pipeline import load_model_and_tokenizer, use_gloo_on_cpu
from hf_unlearn.sequential import (PLOT_FILE, MuseRequests, SequentialArguments, TofuRequests, plan_requests,
                                   resolve_resume_flag,
                                   run_requests, sequential_model_card, split_list)
from hf_unlearn.validation import (RunInputError, check_attention, check_context, check_dataset_source,
                                   check_lora_flags, check_model_source, check_output_dir, check_training_numbers,
                                   config_file_of, parse_arguments, run_script)


def make_parser(benchmark: str = "tofu") -> TrlParser:
    script_arguments = MuseScriptArguments if benchmark == "muse" else UnlearningScriptArguments
    return TrlParser((SequentialArguments, script_arguments, UnlearningConfig, ModelArguments))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    sequential, script, args, model_args = parse_arguments(make_parser(benchmark_of(argv)), argv)
    use_gloo_on_cpu(args)
    datasets.disable_progress_bars()
    muse = script.benchmark == "muse"

    # Everything that can fail does so before the first step, with nothing written.
    if script.benchmark not in ("tofu", "muse"):
        raise RunInputError(f"run_sequential.py runs --benchmark tofu or muse (each request is evaluated), not "
                            f"{script.benchmark!r}.")
    if script.retain_reference:
        raise RunInputError("run_sequential.py takes one reference per request: give --retain_references, not "
                            "--retain_reference.")
    if (script.text_column and not muse) or script.skip_final_evaluation:
        raise RunInputError("run_sequential.py evaluates every request on its benchmark: drop --text_column / "
                            "--skip_final_evaluation.")
    check_training_numbers(args)
    check_lora_flags(model_args)
    check_model_source(model_args.model_name_or_path, (TINY_PRESET,), model_args.gguf_file)
    check_dataset_source(script.dataset_name)
    references = split_list(sequential.retain_references)
    # --resume_from_checkpoint true continues a sequential run in --output_dir (finished requests are kept).
    resume = resolve_resume_flag(args.resume_from_checkpoint)
    inputs = {"model folder": model_args.model_name_or_path, "dataset folder": script.dataset_name,
              "recipe": config_file_of(argv), **{f"reference {i}": r for i, r in enumerate(references, start=1)}}
    check_output_dir(args.output_dir, inputs, overwrite=script.overwrite_output_dir or resume,
                     resume_from=args.output_dir if resume else None)
    if args.push_to_hub:
        check_push_credentials(args.hub_model_id, args.hub_token)
    method = get_method(args.unlearn_method)
    if muse:
        benchmark = MuseRequests(script.dataset_name, retain_split=script.retain_split,
                                 batch_size=args.per_device_eval_batch_size, verbmem_max_new_tokens=script.max_new_tokens,
                                 knowmem_max_new_tokens=script.knowmem_max_new_tokens, show_progress=not args.disable_tqdm)
    else:
        benchmark = TofuRequests(script.dataset_name, key_columns=(script.question_column, script.answer_column),
                                 holdout_split=script.holdout_split, batch_size=args.per_device_eval_batch_size,
                                 max_new_tokens=script.max_new_tokens, show_progress=not args.disable_tqdm)
    requests = plan_requests(benchmark, split_list(sequential.forget_splits), references,
                             mode=sequential.sequential_mode, retain_split=script.retain_split,
                             needs_retain=method.needs_retain(method.settings_from(args)))

    load = dict(dtype=model_args.dtype, trust_remote_code=script.trust_remote_code, revision=model_args.model_revision,
                seed=args.seed, attn_implementation=model_args.attn_implementation, gguf_file=model_args.gguf_file,
                tiny_corpus=muse_strings(script.dataset_name) if muse and model_args.model_name_or_path == TINY_PRESET
                else None)
    original, tokenizer = load_model_and_tokenizer(model_args.model_name_or_path, script.dataset_name, **load)
    check_attention(args, original)
    check_context(original, args.max_length)
    peft_config = get_peft_config(model_args)
    dtype = original.dtype

    def load_model(chain):
        """The original model after the finished requests in `chain` (LoRA: each folder's adapter merged)."""
        nonlocal original
        if chain and peft_config is None:
            return AutoModelForCausalLM.from_pretrained(chain[-1], dtype=dtype,
                                                        trust_remote_code=script.trust_remote_code)
        # The loaded original is handed out once (training changes it in place); later requests reload it.
        model = original if original is not None else load_model_and_tokenizer(
            model_args.model_name_or_path, script.dataset_name, **load)[0]
        original = None
        for folder in chain:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, folder).merge_and_unload()
        return model

    def make_trainer(model, request_args, request):
        retain = benchmark.load(request.retain_split, "retain") if request.retain_split else None
        return UnlearningTrainer(
            model=model, args=request_args, forget_dataset=request.forget, retain_dataset=retain,
            processing_class=tokenizer, peft_config=peft_config,
            dataset_columns=dict(text_column="text") if muse else dict(question_column=script.question_column,
                                                                        answer_column=script.answer_column))

    recipe = recipe_of(args, {**{k: v for k, v in vars(script).items() if v is not None},
                              **{k: v for k, v in vars(sequential).items() if v is not None}})

    def write_card(done, before, folder):
        card = sequential_model_card(
            done, before, model_name=folder.name, base_model=model_args.model_name_or_path,
            method=args.unlearn_method, optimizer=args.unlearn_optimizer, dataset_name=script.dataset_name,
            recipe=recipe, metrics=benchmark.card_metrics,
            plot_file=PLOT_FILE if folder == Path(args.output_dir) else None,
            library_name="peft" if peft_config else "transformers")
        card.save(str(folder / "README.md"))

    result = run_requests(requests, benchmark, load_model=load_model, tokenizer=tokenizer, args=args,
                          make_trainer=make_trainer, evaluate_before=script.evaluate_before, card=write_card,
                          resume=resume)
    final = f"{args.output_dir}/{requests[-1].folder}"
    print(f"[run_sequential] {len(requests)} requests; after each: " + "; ".join(
        f"{k} {result['metrics'].get(k)}" for k in benchmark.card_metrics) + f"; final model in {final}")
    if args.push_to_hub:  # the final model, with the card that lists every request
        from huggingface_hub import HfApi

        api = HfApi(token=args.hub_token)
        repo = api.create_repo(args.hub_model_id, private=args.hub_private_repo, exist_ok=True)
        api.upload_folder(repo_id=repo.repo_id, folder_path=final,
                          commit_message=f"hf-unlearn: {args.unlearn_method}, {len(requests)} sequential requests")
    return result


if __name__ == "__main__":
    sys.exit(run_script(main))
