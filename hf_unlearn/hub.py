"""Model card of an unlearned checkpoint: metadata, splits, the full recipe, results and the plot."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from huggingface_hub import ModelCard, ModelCardData

# Keys shown in the results table, in order (tofu_summary.json, muse_summary.json and wmdp_summary.json names).
RESULT_ROWS = (
    ("wmdp_bio_acc", "WMDP-Bio accuracy (lm-eval, chance 0.25)"),
    ("wmdp_cyber_acc", "WMDP-Cyber accuracy (lm-eval, chance 0.25)"),
    ("wmdp_chem_acc", "WMDP-Chem accuracy (lm-eval, chance 0.25)"),
    ("mmlu_acc", "MMLU accuracy (lm-eval, utility)"),
    ("mmlu_college_biology_acc", "MMLU college biology"),
    ("mmlu_virology_acc", "MMLU virology"),
    ("mmlu_college_computer_science_acc", "MMLU college computer science"),
    ("mmlu_computer_security_acc", "MMLU computer security"),
    ("forget_verbmem_rouge", "VerbMem on forget (ROUGE-L F1)"),
    ("forget_knowmem_rouge", "KnowMem on forget (ROUGE-L F1)"),
    ("retain_knowmem_rouge", "KnowMem on retain (ROUGE-L F1, utility)"),
    ("forget_quality", "Forget quality (KS p-value vs retain model)"),
    ("model_utility", "Model utility (hmean of 9)"),
    ("forget_truth_ratio", "Forget truth ratio"),
    ("forget_prob", "Forget probability"),
    ("forget_rouge", "Forget ROUGE-L recall"),
    ("retain_prob", "Retain probability"),
    ("retain_rouge", "Retain ROUGE-L recall"),
    ("retain_truth_ratio", "Retain truth ratio"),
    ("ra_prob", "Real authors probability"),
    ("ra_rouge", "Real authors ROUGE-L recall"),
    ("ra_truth_ratio", "Real authors truth ratio"),
    ("wf_prob", "World facts probability"),
    ("wf_rouge", "World facts ROUGE-L recall"),
    ("wf_truth_ratio", "World facts truth ratio"),
    ("privleak", "PrivLeak (MUSE's sign: ~0 like the retrained model, < 0 under-, > 0 over-unlearning)"),
    ("mia_min_k_auc", "Min-K% MIA AUC, forget vs holdout (1 = forget texts all member-like, 0.5 = chance)"),
    ("extraction_strength", "Extraction strength"),
    ("exact_memorization", "Exact memorisation"),
)


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def results_table(after: dict, before: dict | None = None) -> str:
    header = "| metric | before | after |\n|---|---|---|" if before else "| metric | value |\n|---|---|"
    rows = []
    for key, label in RESULT_ROWS:
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
    extra_tags: list[str] | None = None, prompt_template: dict | None = None, benchmark: str = "TOFU",
    gguf_source: dict | None = None,
) -> ModelCard:
    """A `huggingface_hub.ModelCard` describing one unlearning run.

    It says only what is known: Hub ids in the metadata only when they are Hub ids (local files are named
    as local, by folder name, never by path), results and a plot only when there are some, and without
    results no claim that anything was forgotten."""
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
    if evaluated:
        lines += [f"## Results ({benchmark} evaluation)", "", results_table(results, results_before), ""]
    else:
        lines += ["## Results", "", "This model was not evaluated after training: how much it forgot is not known.", ""]
    if plot_file:
        lines += ["## Forget quality vs model utility during training", "", f"![unlearning curve]({plot_file})", ""]
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
