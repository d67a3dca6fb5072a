"""SophiaG inside UnlearningTrainer: refresh schedule, clean gradients, exact resume, LoRA state."""

import math

import pytest
import torch
from transformers import TrainerCallback

from hf_unlearn import SophiaG, UnlearningConfig, UnlearningTrainer


def sophia_args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, learning_rate=1e-3, max_steps=6,
                logging_steps=1, disable_tqdm=True, seed=0, unlearn_method="grad_diff", unlearn_optimizer="sophia",
                hessian_update_interval=2, lr_scheduler_type="constant")
    base.update(kw)
    return UnlearningConfig(**base)


class GradCapture(TrainerCallback):
    def __init__(self):
        self.grads = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})


@pytest.mark.parametrize("accumulation", [1, 4])
def test_refresh_happens_at_intended_optimizer_steps(tmp_path, tokenizer, make_model, forget_retain, accumulation):
    forget, retain = forget_retain
    trainer = UnlearningTrainer(
        model=make_model(), args=sophia_args(tmp_path, gradient_accumulation_steps=accumulation, max_steps=7,
                                             hessian_update_interval=3),
        forget_dataset=forget.select(range(8)), retain_dataset=retain, processing_class=tokenizer,
    )
    calls = []
    original = trainer._refresh_hessian
    trainer._refresh_hessian = lambda model, inputs, *rest: (calls.append(trainer.state.global_step),
                                                             original(model, inputs, *rest))
    trainer.train()
    assert calls == [0, 3, 6]  # before the first step, then every k optimizer steps, once per step
    assert trainer.sophia.hessian_updates == 3
    assert trainer.hessian_callback.refresh_steps == [0, 3, 6]
    logged = [h for h in trainer.state.log_history if "sophia/refreshes" in h]
    assert [h["sophia/refreshes"] for h in logged[:7]] == [1, 1, 1, 2, 2, 2, 3]
    assert all(0.0 <= h["sophia/win_rate"] <= 1.0 for h in logged)


def test_refresh_leaves_no_gradient_behind(tmp_path, tokenizer, make_model, forget_retain):
    """The first step's gradient is the same with a refresh (SophiaG, k=1) as without one (AdamW)."""
    forget, retain = forget_retain
    captured = {}
    for optimizer in ("sophia", "adamw"):
        capture = GradCapture()
        UnlearningTrainer(model=make_model(), args=sophia_args(tmp_path, unlearn_optimizer=optimizer, max_steps=1,
                                                               hessian_update_interval=1),
                          forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer,
                          callbacks=[capture]).train()
        captured[optimizer] = capture.grads[0]
    assert captured["sophia"].keys() == captured["adamw"].keys()
    for name, grad in captured["adamw"].items():
        assert torch.equal(captured["sophia"][name], grad), name


@pytest.mark.parametrize("estimator", ["gnb", "empirical"])
def test_kill_and_resume_is_bit_identical(tmp_path, tokenizer, make_model, forget_retain, estimator):
    forget, retain = forget_retain
    kwargs = dict(forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)
    common = dict(hessian_estimator=estimator, max_steps=6, save_strategy="steps", save_steps=3)

    full = UnlearningTrainer(model=make_model(), args=sophia_args(tmp_path / "a", **common), **kwargs)
    full.train()

    interrupted = UnlearningTrainer(model=make_model(), args=sophia_args(tmp_path / "b", **common), **kwargs)
    interrupted.args.max_steps = 3  # "killed" right after the step-3 checkpoint
    interrupted.train()
    resumed = UnlearningTrainer(model=make_model(seed=123), args=sophia_args(tmp_path / "b", **common), **kwargs)
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-3"))

    for (name, a), (_, b) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(a, b), name
    assert resumed.sophia.hessian_updates == full.sophia.hessian_updates


def test_empirical_estimator_refreshes_every_step_from_the_training_gradient(tmp_path, tokenizer, make_model,
                                                                             forget_retain):
    forget, retain = forget_retain
    capture = GradCapture()
    trainer = UnlearningTrainer(model=make_model(), args=sophia_args(tmp_path, hessian_estimator="empirical",
                                                                     max_steps=2, sophia_beta2=0.9),
                                forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer,
                                callbacks=[capture])
    trainer.train()
    assert trainer.hessian_callback is None and trainer.sophia.hessian_updates == 2
    name, param = next((n, p) for n, p in trainer.model.named_parameters() if n.endswith("down_proj.weight"))
    g1, g2 = capture.grads[0][name].double(), capture.grads[1][name].double()
    expected = 0.9 * (0.1 * 5120 * g1 * g1) + 0.1 * 5120 * g2 * g2
    assert torch.allclose(trainer.sophia.state[param]["hessian"].double(), expected, rtol=1e-5, atol=1e-12)


def test_graddiff_and_npo_train_with_gnb_without_nan(tmp_path, tokenizer, make_model, forget_retain):
    forget, retain = forget_retain
    for method in ("grad_diff", "npo"):
        trainer = UnlearningTrainer(model=make_model(), args=sophia_args(tmp_path, unlearn_method=method, max_steps=12,
                                                                         hessian_update_interval=10),
                                    forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)
        trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        assert len(losses) == 12 and all(math.isfinite(x) for x in losses)
        assert trainer.sophia.hessian_updates == 2  # steps 0 and 10
        assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_lora_only_adapters_carry_optimizer_state(tmp_path, tokenizer, make_model, forget_retain):
    from peft import LoraConfig

    forget, retain = forget_retain
    trainer = UnlearningTrainer(model=make_model(), args=sophia_args(tmp_path, unlearn_method="npo", max_steps=2),
                                forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer,
                                peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    trainer.train()
    sophia = trainer.sophia
    assert isinstance(sophia, SophiaG)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    with_state = [names[id(p)] for p in sophia.state]
    assert with_state and all("lora_" in n for n in with_state)
    assert len(with_state) == sum(p.requires_grad for p in trainer.model.parameters())


def test_no_weight_decay_on_norms_and_bad_sophia_settings(tmp_path, tokenizer, make_model, forget_retain):
    forget, retain = forget_retain
    trainer = UnlearningTrainer(model=make_model(), args=sophia_args(tmp_path, max_steps=1),
                                forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)
    optimizer = trainer.create_optimizer()
    decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert decay and not any("norm" in names[i] for i in decay)
    for kw, message in [(dict(sophia_rho=0.0), "sophia_rho must be > 0"),
                        (dict(sophia_beta1=1.0), r"sophia_beta1 must be in \[0, 1\)"),
                        (dict(hessian_update_interval=0), "hessian_update_interval must be >= 1"),
                        (dict(hessian_estimator="exact"), "unknown hessian_estimator 'exact'"),
                        (dict(hessian_batch_fraction=0.0), r"hessian_batch_fraction must be in \(0, 1\]"),
                        (dict(hessian_batch_fraction=0.5, hessian_estimator="hutchinson"),
                         "applies to --hessian_estimator gnb only"),
                        (dict(learning_rate=0.0), "learning_rate must be > 0")]:
        with pytest.raises(ValueError, match=message):
            sophia_args(tmp_path, **kw)


def test_gnb_batch_fraction_samples_every_other_row_of_the_global_batch(tmp_path, tokenizer, make_model,
                                                                       forget_retain):
    """hessian_batch_fraction 0.5 on 4 rows: the GNB loss is the token-weighted sum over rows 1 and 3 (global
    indices g with floor((g+1)/2) > floor(g/2)) of CE against labels drawn with each row's own seed, and only
    those rows are forwarded."""
    from hf_unlearn.optim.hessian import sample_from_logits
    from hf_unlearn.optim.estimators import _row_seed

    forget, retain = forget_retain
    trainer = UnlearningTrainer(model=make_model(), args=sophia_args(tmp_path, per_device_train_batch_size=4,
                                                                     hessian_batch_fraction=0.5),
                                forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model = trainer.model
    forwarded = []
    hook = model.register_forward_hook(lambda module, args, kwargs, out: forwarded.append(kwargs["input_ids"].shape[0]),
                                       with_kwargs=True)
    with torch.no_grad():
        loss, count = trainer.estimator.estimate_loss(model, batch, trainer._refresh_context())
    hook.remove()
    assert forwarded == [2, 2]

    expected, tokens = 0.0, 0
    with torch.no_grad():
        for part_index, part in enumerate(("forget", "retain")):
            for row in (1, 3):
                labels = batch[part]["labels"][row]
                logits = model(input_ids=batch[part]["input_ids"][row:row + 1],
                               attention_mask=batch[part]["attention_mask"][row:row + 1]).logits[0]
                answer = labels[1:] != -100
                rows = logits[:-1][answer].double()
                uniforms = torch.rand(int(answer.sum()), generator=torch.Generator().manual_seed(
                    _row_seed(trainer.args.seed, trainer.state.global_step, part_index, row)))
                drawn = sample_from_logits(rows, uniforms)
                expected += torch.nn.functional.cross_entropy(rows, drawn, reduction="sum").item()
                tokens += int(answer.sum())
    assert count == tokens
    assert math.isclose(loss.item() * count, expected, rel_tol=1e-5)
