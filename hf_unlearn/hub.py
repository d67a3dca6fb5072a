"""Model card of an unlearned checkpoint: metadata, splits, the full recipe, results and the plot."""

from __future__ import annotations

import json

import yaml
from huggingface_hub import ModelCard, ModelCardData

# Keys shown in the results table, in order (tofu_summary.json names).
RESULT_ROWS = (
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
    ("privleak", "PrivLeak"),
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


def unlearning_model_card(
    *, model_name: str, base_model: str | None, method: str, optimizer: str, dataset_name: str,
    forget_split: str, retain_split: str | None, recipe: dict, library_name: str = "transformers",
    results: dict | None = None, results_before: dict | None = None, plot_file: str | None = None,
    extra_tags: list[str] | None = None, prompt_template: dict | None = None,
) -> ModelCard:
    """A `huggingface_hub.ModelCard` describing one unlearning run."""
    tags = ["unlearning", "hf-unlearn", method, *([] if optimizer == "adamw" else [optimizer]), *(extra_tags or [])]
    data = ModelCardData(
        base_model=base_model if base_model and "/" in base_model else None,
        datasets=[dataset_name] if "/" in dataset_name else None,
        library_name=library_name, tags=list(dict.fromkeys(tags)),
    )
    lines = [
        f"# {model_name}",
        "",
        f"This model was made to **forget** the `{forget_split}` split of `{dataset_name}` with "
        f"[hf-unlearn](https://github.com/hf-unlearn/hf-unlearn): method `{method}`, optimizer `{optimizer}`"
        + (f", starting from `{base_model}`." if base_model else "."),
        "",
        f"- forget split: `{forget_split}`",
        f"- retain split: `{retain_split}`" if retain_split else "- retain split: none",
        "",
    ]
    if results:
        lines += ["## Results (TOFU evaluation)", "", results_table(results, results_before), ""]
    if plot_file:
        lines += ["## Forget quality vs model utility during training", "", f"![unlearning curve]({plot_file})", ""]
    lines += ["## Recipe", "", "```yaml", yaml.safe_dump(recipe, sort_keys=True).rstrip(), "```", ""]
    if prompt_template:
        lines += ["## Prompt format", "", "Score and use this model with the format it was unlearned on "
                  "(`prompt_template.json`; `--prompt_template auto` reads it):", "", "```json",
                  json.dumps(prompt_template, indent=2), "```", ""]
    content = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)
    return ModelCard(content)


RECIPE_FIELDS = (
    "unlearn_method", "forget_weight", "retain_weight", "retain_loss_type", "npo_beta", "simnpo_beta",
    "simnpo_gamma", "undial_beta", "rmu_layer", "rmu_steering_coeff", "max_length", "max_prompt_length", "disable_dropout",
    "unlearn_optimizer", "hessian_estimator", "hessian_update_interval", "sophia_rho", "sophia_beta1",
    "sophia_beta2", "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "weight_decay", "lr_scheduler_type", "warmup_ratio", "warmup_steps", "seed",
    "bf16", "fp16",
)


def recipe_of(args, extra: dict | None = None) -> dict:
    """The unlearning-relevant flags of an `UnlearningConfig` (plus script flags), as a YAML-able dict."""
    recipe = {}
    for name in RECIPE_FIELDS:
        if hasattr(args, name):
            value = getattr(args, name)
            recipe[name] = value.value if hasattr(value, "value") else value
    recipe.update(extra or {})
    return recipe


def check_push_credentials(hub_model_id: str | None, token: str | None = None) -> None:
    """Fails before training when `--push_to_hub` cannot succeed (no repo id, or no token at all)."""
    if not hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id <user>/<repo>: the repository to push the model to.")
    from huggingface_hub import get_token

    if not (token or get_token()):
        raise ValueError(
            "--push_to_hub needs Hugging Face credentials: run `huggingface-cli login`, set HF_TOKEN, or pass "
            "--hub_token. Nothing was trained."
        )
