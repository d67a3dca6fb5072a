"""Unlearn with any method x optimizer on TOFU, MUSE or WMDP, evaluate before, during and after, and optionally push.

    python examples/unlearn.py --benchmark tofu --config recipes/tofu/npo_sophia.yaml \
        --model_name_or_path <target model> --retain_reference <retain model>/tofu_eval.json

--benchmark tofu (default) | muse | wmdp picks the data and evaluation flags (`hf_unlearn.entry`: each benchmark's
script arguments, checks, training data and card); --benchmark none trains on TOFU-format data without evaluation.
`--benchmark B --help` lists B's flags. run_tofu.py, run_muse.py and run_wmdp.py are this script with their
benchmark as the default.
"""

import json
import sys
import time
from pathlib import Path

import datasets
from trl import TrlParser, get_peft_config

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.config import ModelArguments
from hf_unlearn.entry import benchmark_of, get_script_spec
from hf_unlearn.eval.benchmarks import get_benchmark
from hf_unlearn.eval.callback import ForgetQualityCallback
from hf_unlearn.eval.runner import write_results
from hf_unlearn.hub import check_push_credentials
from hf_unlearn.methods import get_method
from hf_unlearn.pipeline import describe_parameters, load_model_and_tokenizer, use_gloo_on_cpu
from hf_unlearn.reporting import plot_unlearning
from hf_unlearn.validation import (
    RunInputError, check_attention, check_context, config_file_of, parse_arguments, removed_on_failure, run_script,
)


def make_parser(benchmark: str = "tofu") -> TrlParser:
    spec = get_script_spec(benchmark)
    return TrlParser((spec.arguments, UnlearningConfig, ModelArguments), **spec.parser_options)


def main(argv=None, default: str = "tofu", prog: str = "unlearn"):
    """One run; returns (before, after), the summaries of the evaluations (None where not evaluated)."""
    argv = sys.argv[1:] if argv is None else argv
    name = benchmark_of(argv, default)
    spec = get_script_spec(name, default)
    try:
        script, args, model_args = parse_arguments(make_parser(spec.name), argv)
    except RunInputError as err:  # another benchmark's flags: say whose flags these are
        if "not used by the HfArgumentParser" not in str(err):
            raise
        raise RunInputError(f"{err} (--benchmark {name} takes the flags of {spec.arguments.__name__}: see "
                            f"--benchmark {name} --help)") from None
    use_gloo_on_cpu(args)
    datasets.disable_progress_bars()

    # Everything that can fail does so here, before any evaluation or training, with nothing written.
    method = get_method(args.unlearn_method)
    run = spec.validate(script, args, model_args, needs_retain=method.needs_retain(method.settings_from(args)),
                        presets=spec.presets, config_file=config_file_of(argv))
    if args.push_to_hub:
        check_push_credentials(args.hub_model_id, args.hub_token)
    main_process = args.process_index == 0
    for note in run.notes if main_process else ():
        print(f"[{prog}] {note}")
    benchmark = get_benchmark(script.benchmark) if run.eval_options is not None else None
    eval_kwargs = dict(batch_size=args.per_device_eval_batch_size, show_progress=not args.disable_tqdm,
                       **(run.eval_options or {}))
    final_subsample = getattr(script, "final_eval_subsample", None)

    def evaluate(trainer, tokenizer):
        start = time.perf_counter()
        per_sample, summary = benchmark.evaluate(trainer.model, tokenizer, template=trainer.prompt_template,
                                                 **{**eval_kwargs, "subsample": final_subsample})
        return per_sample, {**summary, "eval_seconds": time.perf_counter() - start} if spec.timed else summary

    with removed_on_failure(args.output_dir, main_process):
        model, tokenizer = load_model_and_tokenizer(
            model_args.model_name_or_path, script.dataset_name, dtype=model_args.dtype,
            trust_remote_code=script.trust_remote_code, revision=model_args.model_revision, seed=args.seed,
            attn_implementation=model_args.attn_implementation, gguf_file=model_args.gguf_file,
            tiny_corpus=spec.tiny_corpus(script) if model_args.model_name_or_path in spec.presets else None,
        )
        check_attention(args, model)
        check_context(model, args.max_length)
        callbacks = []
        if benchmark is not None and args.eval_strategy != "no":
            target, floor = (getattr(script, flag) for flag in spec.stop_rule)
            callbacks.append(ForgetQualityCallback(benchmark=benchmark, target_forget_quality=target,
                                                   min_model_utility=floor,
                                                   **{**eval_kwargs, "subsample": script.eval_subsample}))
        trainer = UnlearningTrainer(
            model=model, args=args, forget_dataset=run.forget, retain_dataset=run.retain, processing_class=tokenizer,
            peft_config=get_peft_config(model_args), callbacks=callbacks, dataset_columns=spec.columns(script),
        )
        for callback in callbacks:
            callback.attach(trainer)
        if trainer.is_world_process_zero():
            print(f"[{prog}] {args.unlearn_method} + {args.unlearn_optimizer}{spec.describe(script, args, run, trainer)}"
                  f"{describe_parameters(trainer.model)}" + (f"; resuming from {run.resume_from}" if run.resume_from else ""))
        # Inside the guard: a failing first evaluation takes back the output folder as a failing load does.
        before = evaluate(trainer, tokenizer)[1] if benchmark is not None and script.evaluate_before else None

    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=run.resume_from)
    train_seconds = time.perf_counter() - start
    trainer.save_model()

    after = None
    if benchmark is not None and not script.skip_final_evaluation:
        per_sample, after = evaluate(trainer, tokenizer)
        if trainer.is_world_process_zero():
            write_results(args.output_dir, per_sample, {k: v for k, v in after.items() if k != "eval_seconds"},
                          benchmark)
    card = {}
    if trainer.is_world_process_zero():
        output_dir = Path(args.output_dir)
        history = [{"step": h["step"], **h["metrics"]} for h in callbacks[0].history] if callbacks else []
        drawn = benchmark is not None and any(h.get(benchmark.forget_metric) is not None
                                              for h in [*history, before or {}, after or {}])
        plot = plot_unlearning(history, output_dir / "unlearning.png", before, after,
                               title=f"{args.unlearn_method} + {args.unlearn_optimizer}",
                               subsample=script.eval_subsample, final_subsample=final_subsample,
                               benchmark=benchmark) if drawn else None
        (output_dir / "run_info.json").write_text(json.dumps(
            {"train_seconds": train_seconds, "before": before, "after": after}, indent=2))
        card = dict(  # for the card written here and the one push_to_hub writes again
            base_model=model_args.model_name_or_path, dataset_name=script.dataset_name, results=after,
            results_before=before, plot_file=plot.name if plot else None, **spec.card(script, args, run, trainer))
        trainer.create_model_card(**card)
        shown = [k for k in spec.summary_keys if after and after.get(k) is not None
                 and (not spec.summary_change or (before and before.get(k) is not None))]
        summary = ", ".join(f"{k} {before[k]:.3f} -> {after[k]:.3f}" if spec.summary_change else f"{k}={after[k]:.4g}"
                            for k in shown)
        print(f"[{prog}] trained in {train_seconds:.1f}s; {summary}; wrote {output_dir}")
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"hf-unlearn: {args.unlearn_method} on {spec.pushed(script)}", **card)
    return before, after


if __name__ == "__main__":
    sys.exit(run_script(main))
