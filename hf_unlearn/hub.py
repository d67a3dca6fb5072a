"""Model card of an unlearned checkpoint: metadata, splits, the full recipe, results and the plot."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from huggingface_hub import ModelCard, ModelCardData

def _all_rows() -> tuple[tuple[str, str], ...]:
    from .eval.benchmarks import registered

    rows = {}
    for entry in registered():
        for key, label in entry.card_rows:
            rows.setdefault(key, label)
    return tuple(rows.items())


def __getattr__(name: str):
    # RESULT_ROWS, every registered benchmark's card rows in registration order (each benchmark declares its
    # own as `Benchmark.card_rows`); computed on access, so a benchmark registered later is in it.
    if name == "RESULT_ROWS":
        return _all_rows()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _benchmark(benchmark):
    """(entry or None, title) of a card's `benchmark`: an entry, a registered name in any case, or None."""
    from .eval.benchmarks import DEFAULT_BENCHMARK, Benchmark, benchmark_names, get_benchmark

    if isinstance(benchmark, Benchmark):
        return benchmark, benchmark.title
    if benchmark is None:
        return None, get_benchmark(DEFAULT_BENCHMARK).title
    name = str(benchmark).lower()  # scripts name theirs "MUSE", as the title shows it
    entry = get_benchmark(name) if name in benchmark_names() else None
    return entry, entry.title if entry is not None else str(benchmark)


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def results_table(after: dict, before: dict | None = None, benchmark=None) -> str:
    """The card's results table: the rows of `benchmark` (entry or name; None: every registered benchmark's)
    whose keys `after` holds."""
    entry, _ = _benchmark(benchmark)
    header = "| metric | before | after |\n|---|---|---|" if before else "| metric | value |\n|---|---|"
    rows = []
    for key, label in entry.card_rows if entry is not None else _all_rows():
        if key not in after:
            continue
        if before:
            rows.append(f"| {label} | {_cell(before.get(key))} | {_cell(after.get(key))} |")
        else:
            rows.append(f"| {label} | {_cell(after.get(key))} |")
    return "\n".join([header, *rows])


def is_hub_id(name: str | None) -> bool:
    """`user/repo` (or a bare repo name) that is not a path on this machine."""
    if not name or Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        return False
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name))


def split_names(value: str) -> str:
    """A split, data file or comma-separated list of them as the card names them: local files by their last part
    ("bio.jsonl, cyber.jsonl"), never by path."""
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    return ", ".join(Path(p).name if Path(p).suffix or Path(p).expanduser().exists() else p for p in parts)


def _source(name: str | None, what: str) -> str:
    if not name:
        return f"no {what}"
    return f"`{name}` (Hugging Face Hub)" if is_hub_id(name) else f"local {what} `{Path(name).name}`"


def unlearning_model_card(
    *, model_name: str, base_model: str | None, method: str, optimizer: str, dataset_name: str,
    forget_split: str, retain_split: str | None, recipe: dict, library_name: str = "transformers",
    results: dict | None = None, results_before: dict | None = None, plot_file: str | None = None,
    extra_tags: list[str] | None = None, prompt_template: dict | None = None, benchmark=None,
    gguf_source: dict | None = None,
) -> ModelCard:
    """A `huggingface_hub.ModelCard` describing one unlearning run.

    It says only what is known: Hub ids in the metadata only when they are Hub ids (local files are named
    as local, by folder name, never by path), results and a plot only when there are some, and without
    results no claim that anything was forgotten. `benchmark` (its entry or registered name) gives the results
    table's rows and title; None: every registered benchmark's rows, titled as the default benchmark."""
    tags = ["unlearning", "hf-unlearn", method, *([] if optimizer == "adamw" else [optimizer]), *(extra_tags or [])]
    data = ModelCardData(
        base_model=base_model if is_hub_id(base_model) else None,
        datasets=[dataset_name] if is_hub_id(dataset_name) else None,
        library_name=library_name, tags=list(dict.fromkeys(tags)),
    )
    forget_name = split_names(forget_split)
    retain_name = split_names(retain_split) if retain_split else None
    evaluated = bool(results) and any(isinstance(v, (int, float)) for v in results.values())
    lines = [
        f"# {model_name}",
        "",
        f"Unlearning run of [hf-unlearn](https://github.com/hf-unlearn/hf-unlearn): method `{method}`, optimizer "
        f"`{optimizer}`, trained to forget `{forget_name}`"
        + (f" while keeping `{retain_name}`." if retain_name else "."),
        "",
        f"- base model: {_source(base_model, 'model')}"
        + (f", dequantized from the GGUF file `{gguf_source['file']}` (quantization "
           f"{gguf_source.get('quantization') or 'unknown'}, architecture {gguf_source.get('architecture') or 'unknown'})"
           if gguf_source else ""),
        f"- data: {_source(dataset_name, 'data folder')}",
        f"- forget split: `{forget_name}`",
        f"- retain split: `{retain_name}`" if retain_name else "- retain split: none",
        "",
    ]
    entry, title = _benchmark(benchmark)
    if evaluated:
        lines += [f"## Results ({title} evaluation)", "", results_table(results, results_before, entry), ""]
    else:
        lines += ["## Results", "", "This model was not evaluated after training: how much it forgot is not known.", ""]
    if plot_file:  # the run plot: the benchmark's forget metric against its utility metric
        from .eval.benchmarks import DEFAULT_BENCHMARK, get_benchmark

        drawn = entry or get_benchmark(DEFAULT_BENCHMARK)
        axes = " vs ".join(key.replace("_", " ") for key in (drawn.forget_metric, drawn.utility_metric))
        lines += [f"## {axes.capitalize()} during training", "", f"![unlearning curve]({plot_file})", ""]
    lines += ["## Recipe", "", "```yaml", yaml.safe_dump(recipe, sort_keys=True).rstrip(), "```", ""]
    if prompt_template:
        lines += ["## Prompt format", "", "Score and use this model with the format it was unlearned on "
                  "(`prompt_template.json`; `--prompt_template auto` reads it):", "", "```json",
                  json.dumps(prompt_template, indent=2), "```", ""]
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)
    return ModelCard(content)


def recipe_of(args, extra: dict | None = None) -> dict:
    """The flags that define the run (`UnlearningConfig.recipe`: those its method and optimizer use), what the
    run really was (processes, effective batch), plus script flags, as a YAML-able dict."""
    recipe = args.recipe()
    if hasattr(args, "world_size"):
        recipe["num_processes"] = args.world_size
        recipe["effective_batch_size"] = (args.per_device_train_batch_size * args.gradient_accumulation_steps
                                          * args.world_size)
    for key, value in (extra or {}).items():  # local paths by their last part, as in the card's text
        recipe[key] = split_names(value) if isinstance(value, str) and any(
            Path(p.strip()).expanduser().exists() for p in value.split(",") if p.strip()) else value
    return recipe


def check_push_credentials(hub_model_id: str | None, token: str | None = None) -> None:
    """Fails before training when `--push_to_hub` cannot succeed (no repo id, or no token at all)."""
    from .validation import RunInputError

    if not hub_model_id:
        raise RunInputError("--push_to_hub needs --hub_model_id <user>/<repo>: the repository to push the model to.")
    from huggingface_hub import get_token

    if not (token or get_token()):
        raise RunInputError(
            "--push_to_hub needs Hugging Face credentials: run `hf auth login`, set HF_TOKEN, or pass "
            "--hub_token. Nothing was trained."
        )
