"""Command line evaluation on a registered benchmark: ``python -m hf_unlearn.eval`` (console script
``hf-unlearn-eval``). ``--benchmark tofu`` is the default; ``--benchmark NAME --help`` lists NAME's own flags.

Example (TOFU; evaluate the retain model first: its ``tofu_eval.json`` is the reference)::

    python -m hf_unlearn.eval --model_name_or_path retain_model --dataset_name locuslab/TOFU \\
        --forget_split forget10 --output_dir eval/retain
    python -m hf_unlearn.eval --model_name_or_path unlearned_model --dataset_name locuslab/TOFU \\
        --forget_split forget10 --retain_reference eval/retain/tofu_eval.json --output_dir eval/unlearned

Several GPUs: ``torchrun --nproc_per_node N -m hf_unlearn.eval ...`` shards the questions over the
processes; the numbers are those of one process and rank 0 writes the files.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..data.formatting import PromptTemplateArguments, resolve_prompt_template
from . import metrics as M
from .benchmarks import DEFAULT_BENCHMARK, benchmark_names, get_benchmark

_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class EvalArguments:
    model_name_or_path: str = field(
        metadata={"help": "Model to evaluate: a local folder (save_pretrained), a Hub id, or a .gguf file "
                          "(dequantized on load). The tokenizer is loaded from the same place."}
    )
    output_dir: str = field(
        metadata={"help": "Folder for the benchmark's per-sample and summary files (TOFU: tofu_eval.json, for the "
                          "retain model the reference file, and tofu_summary.json). Created if missing; must not be "
                          "the model folder or inside it."}
    )
    benchmark: str = field(
        default=DEFAULT_BENCHMARK,
        metadata={"help": f"Benchmark to evaluate on: {', '.join(benchmark_names())}. Default {DEFAULT_BENCHMARK}. "
                          "Its own flags follow (--benchmark NAME --help lists them)."},
    )
    per_device_eval_batch_size: int = field(
        default=32, metadata={"help": "Answers per forward pass and prompts per generate call. Default 32."}
    )
    gguf_file: Optional[str] = field(
        default=None, metadata={"help": "GGUF file inside --model_name_or_path (a folder or Hub repo), dequantized on "
                                        "load. A .gguf path given as --model_name_or_path needs no --gguf_file."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model code from the model folder / Hub repo. Default off."}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": f"Weights dtype: {', '.join(_DTYPES)}. Default auto (the checkpoint's dtype)."},
    )
    device: Optional[str] = field(
        default=None,
        metadata={"help": "Device, e.g. cuda, cuda:1, cpu. Default: this process's GPU when there is one, else cpu."},
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bars."})


def _check_inputs(args: EvalArguments, benchmark, benchmark_args) -> None:
    """The result files never replace an input (the retain reference above all); the model folder is whole."""
    from ..validation import check_model_source

    out = Path(args.output_dir).expanduser().resolve()
    written = {out / benchmark.eval_file, out / benchmark.summary_file}
    for name, value in vars(benchmark_args).items():
        if not isinstance(value, str) or not value:
            continue
        given = Path(value).expanduser()
        if given.is_dir() and name == "retain_reference":
            given = given / benchmark.eval_file
        if given.exists() and given.resolve() in written:
            raise ValueError(f"--output_dir {args.output_dir} would overwrite --{name} {value} with this evaluation's "
                             f"{given.name}: choose another --output_dir.")
    model_dir = Path(args.model_name_or_path).expanduser()
    if model_dir.is_file():  # a .gguf file: its folder is protected
        model_dir = model_dir.parent
    if not model_dir.is_dir():
        return  # a Hub id: nothing local to protect
    check_model_source(args.model_name_or_path)
    model_dir = model_dir.resolve()
    if out == model_dir or model_dir in out.parents:
        where = "the model folder" if out == model_dir else "inside the model folder"
        raise ValueError(
            f"--output_dir {args.output_dir!r} is {where} {str(model_dir)!r}: the evaluation never writes into the "
            "model it reads. Choose another folder."
        )


def _check_args(args: EvalArguments, benchmark, benchmark_args) -> None:
    if args.per_device_eval_batch_size <= 0:
        raise ValueError(f"--per_device_eval_batch_size must be > 0, got {args.per_device_eval_batch_size}.")
    if args.dtype not in _DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(_DTYPES)}, got {args.dtype!r}.")
    _check_inputs(args, benchmark, benchmark_args)


def _setup_distributed():
    """Under torchrun, join the process group (NCCL on GPUs, gloo on CPU); returns the device."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def format_summary(summary: dict) -> str:
    """The summary as a two-column text table."""
    width = max(len(k) for k in summary)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 12}"]
    for key, value in summary.items():
        text = "n/a" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))
        lines.append(f"{key:<{width}}  {text}")
    if any(key.startswith("mia_") or key == "privleak" for key in summary):
        lines.append("\n" + M.PRIVACY_READING)
    return "\n".join(lines)


def _chosen_benchmark(argv: Optional[list[str]]) -> str:
    """The --benchmark value, read before the full parser is built (its flags depend on it)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--benchmark", default=DEFAULT_BENCHMARK)
    return pre.parse_known_args(sys.argv[1:] if argv is None else argv)[0].benchmark


def main(argv: Optional[list[str]] = None) -> int:
    from transformers import HfArgumentParser

    name = _chosen_benchmark(argv)
    try:
        benchmark = get_benchmark(name)
        if benchmark is None:
            raise ValueError("--benchmark none evaluates nothing: choose one of " + ", ".join(benchmark_names()) + ".")
    except ValueError as exc:
        HfArgumentParser(EvalArguments, prog="hf-unlearn-eval").error(str(exc))
    parser = HfArgumentParser(
        (EvalArguments, PromptTemplateArguments, benchmark.options), prog="hf-unlearn-eval",
        description=f"Evaluation of a causal LM on a registered benchmark (hf-unlearn). {benchmark.description}",
    )
    args, prompt_args, benchmark_args, unknown = parser.parse_args_into_dataclasses(
        args=argv, return_remaining_strings=True)
    if unknown:
        parser.error(f"unrecognized arguments for --benchmark {benchmark.name}: {' '.join(unknown)} (see --help).")
    if args.disable_tqdm:
        from ..validation import disable_progress_bars

        disable_progress_bars()
    try:
        from ..validation import check_reference_model

        _check_args(args, benchmark, benchmark_args)
        options = benchmark.check(**dataclasses.asdict(benchmark_args))  # before any model is loaded
        if isinstance(options.get("retain_reference"), dict):
            check_reference_model(options["retain_reference"], args.model_name_or_path)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models.gguf import GGUFError, gguf_source, load_gguf
    from .runner import write_results
    from .scoring import dist_rank_world

    start = time.perf_counter()
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    device = torch.device(args.device) if args.device else _setup_distributed()
    owns_group = owns_group and torch.distributed.is_available() and torch.distributed.is_initialized()
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    gguf = gguf_source(args.model_name_or_path, args.gguf_file)
    if gguf is not None:
        try:
            model, tokenizer = load_gguf(*gguf, dtype=None if dtype == "auto" else dtype)
        except GGUFError as exc:
            parser.error(str(exc))
    else:
        tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
    try:  # auto: the format saved with the model, else the tokenizer's chat template, else plain
        template = resolve_prompt_template(tokenizer, model_dir=None if gguf else args.model_name_or_path,
                                           **prompt_args.prompt_template_fields())
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    if gguf is None:
        model = AutoModelForCausalLM.from_pretrained(
            args.model_name_or_path, trust_remote_code=args.trust_remote_code, dtype=dtype
        )
    model = model.to(device)
    model.eval()
    per_sample, summary = benchmark.evaluate(
        model, tokenizer, batch_size=args.per_device_eval_batch_size, show_progress=not args.disable_tqdm,
        template=template, **options,
    )
    eval_path, summary_path = write_results(args.output_dir, per_sample, summary, benchmark)
    rank, _ = dist_rank_world()
    if rank == 0:
        print(format_summary(summary))
        print(f"\nwrote {eval_path} and {summary_path}")
        print(f"wall time: {time.perf_counter() - start:.1f} s")
    if owns_group:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
