"""FSDP2 (recipes/accelerate/fsdp2.yaml). accelerate runs FSDP only on accelerators (on a CPU-only machine it
falls back to plain multi-CPU data parallel), so FSDP training is not run here; SophiaG under FSDP is refused
before the first step, naming ZeRO-2/3."""

from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "accelerate" / "fsdp2.yaml"


def test_fsdp2_recipe_is_an_fsdp2_accelerate_config():
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(RECIPE))
    assert config.distributed_type == "FSDP" and config.fsdp_config["fsdp_version"] == 2
    assert config.num_processes == 2


def test_sophia_under_fsdp_is_refused_with_the_fix(monkeypatch, tmp_path, tokenizer, make_model, forget_retain):
    from hf_unlearn import UnlearningConfig, UnlearningTrainer

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch` with an FSDP config exports
    forget, retain = forget_retain
    args = UnlearningConfig(output_dir=str(tmp_path / "out"), unlearn_method="npo", unlearn_optimizer="sophia",
                            report_to=[], use_cpu=True)
    with pytest.raises(ValueError, match="not supported under FSDP.*ZeRO-2 or ZeRO-3.*zero2.yaml"):
        UnlearningTrainer(model=make_model(), args=args, forget_dataset=forget, retain_dataset=retain,
                          processing_class=tokenizer)
    assert not (tmp_path / "out").exists()  # nothing written
    args = UnlearningConfig(output_dir=str(tmp_path / "out"), unlearn_method="npo", report_to=[], use_cpu=True)
    UnlearningTrainer(model=make_model(), args=args, forget_dataset=forget, retain_dataset=retain,
                      processing_class=tokenizer)  # AdamW under FSDP is Trainer's own path
