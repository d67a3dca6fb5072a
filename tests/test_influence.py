"""One-shot influence unlearning (`--unlearn_optimizer influence`): the optimizer's update by hand, the trainer's
update by hand in float64 (gradients and the empirical Hessian from an independent loss), the GNB path, LoRA,
resume, and the config's refusals."""

import pytest
import torch
from transformers import TrainerCallback

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.optim import InfluenceStep


def influence_args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, learning_rate=0.5,
                num_train_epochs=1, max_grad_norm=0.0, logging_steps=1, disable_tqdm=True, seed=0, report_to=[],
                unlearn_method="grad_diff", unlearn_optimizer="influence", influence_damping=0.05)
    base.update(kw)
    return UnlearningConfig(**base)


# --- the optimizer alone --------------------------------------------------------------------------

@pytest.mark.parametrize("squared", [True, False])
def test_step_is_the_mean_gradient_over_the_damped_mean_hessian(squared):
    """Three steps, each with one Hessian fold (scale s_t) and one gradient g_t; the parameter moves only at the
    last step, by -lr * mean(g) / (max(mean(est), 0) + damping), est = s*e*e (squared) or s*e (may be < 0)."""
    gen = torch.Generator().manual_seed(0)
    theta0 = torch.randn(7, generator=gen, dtype=torch.float64)
    grads = [torch.randn(7, generator=gen, dtype=torch.float64) for _ in range(3)]
    estimates = [torch.randn(7, generator=gen, dtype=torch.float64) for _ in range(3)]
    scales = [2.0, 3.0, 5.0]
    lr, damping = 0.3, 0.1
    param = torch.nn.Parameter(theta0.clone())
    opt = InfluenceStep([param], lr=lr, damping=damping)
    for t in range(3):
        param.grad = estimates[t].clone()
        with opt.collecting_hessian(scale=scales[t], squared=squared):
            opt.step()
        param.grad = grads[t].clone()
        opt.apply_on_step = t == 2
        opt.step()
        if t < 2:
            assert torch.equal(param.detach(), theta0)  # accumulates only
    mean_g = sum(grads) / 3
    mean_h = sum(s * (e * e if squared else e) for s, e in zip(scales, estimates)) / 3
    if not squared:
        assert (mean_h < 0).any()  # the clamp is exercised
    expected = theta0 - lr * mean_g / (mean_h.clamp_min(0) + damping)
    torch.testing.assert_close(param.detach(), expected, rtol=1e-12, atol=1e-12)
    assert opt.applied and opt.hessian_updates == 3


def test_damping_must_be_positive():
    with pytest.raises(ValueError, match="damping must be a finite number > 0"):
        InfluenceStep([torch.nn.Parameter(torch.zeros(2))], lr=1.0, damping=0.0)


# --- through the trainer ----------------------------------------------------------------------------

def _nll(model, part):
    """Mean CE over the answer tokens of a batch part, written out (not the library's loss)."""
    logits = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits[:, :-1]
    labels = part["labels"][:, 1:]
    mask = labels != -100
    logp = torch.log_softmax(logits, -1)
    picked = logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return -(picked * mask).sum() / mask.sum()


def _run_capturing_batches(trainer):
    batches = []
    original = trainer.compute_loss

    def capture(model, inputs, *a, **k):
        if model.training:
            batches.append({part: {key: v.clone() for key, v in inputs[part].items()} for part in ("forget", "retain")})
        return original(model, inputs, *a, **k)

    trainer.compute_loss = capture
    trainer.train()
    return batches


def test_trainer_update_equals_the_influence_step_by_hand_in_float64(tmp_path, tokenizer, make_model, forget_retain):
    """grad_diff + the empirical estimator, float64: theta1 = theta0 - lr * mean_t g_t / (mean_t S*g_t*g_t + damping),
    with g_t = grad of (-NLL_f + NLL_r) on step t's batch, recomputed here from an independent NLL."""
    from hf_unlearn.optim import EMPIRICAL_SCALE

    forget, retain = forget_retain
    model, start = make_model().double(), make_model().double()
    trainer = UnlearningTrainer(model=model, args=influence_args(tmp_path, hessian_estimator="empirical"),
                                forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)
    batches = _run_capturing_batches(trainer)
    assert len(batches) == 3 == trainer.state.global_step  # 10 forget rows, 4 per step
    params = [p for p in start.parameters()]
    grads = []
    for batch in batches:
        loss = -_nll(start, batch["forget"]) + _nll(start, batch["retain"])
        grads.append(torch.autograd.grad(loss, params, allow_unused=True))
    lr, damping = 0.5, 0.05
    checked = 0
    for i, (name, after) in enumerate(model.named_parameters()):
        per_step = [g[i] for g in grads if g[i] is not None]
        if not per_step:
            continue
        mean_g = sum(per_step) / len(per_step)
        mean_h = sum(EMPIRICAL_SCALE * g * g for g in per_step) / len(per_step)
        expected = params[i].detach() - lr * mean_g / (mean_h + damping)
        torch.testing.assert_close(after.detach(), expected, rtol=1e-9, atol=1e-10, msg=name)
        checked += 1
    assert checked == len(params)
    moved = max((a - b).abs().max().item() for a, b in zip(model.parameters(), start.parameters()))
    assert moved > 1e-3


def test_gnb_refreshes_every_step_and_moves_only_at_the_last(tmp_path, tokenizer, make_model, forget_retain):
    """GNB: one refresh per optimizer step, h = the mean of the refreshes' estimates, no move before the last step;
    the final update is -lr * m / (h + damping) with m the hand-computed mean gradient (the refresh leaves no
    gradient behind)."""
    forget, retain = forget_retain
    model, start = make_model().double(), make_model().double()
    snapshots = []

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            snapshots.append([p.detach().clone() for p in model.parameters()])

    trainer = UnlearningTrainer(model=model, args=influence_args(tmp_path), forget_dataset=forget,
                                retain_dataset=retain, processing_class=tokenizer, callbacks=[Snapshot()])
    batches = _run_capturing_batches(trainer)
    opt = trainer.sophia
    assert trainer.hessian_callback.refresh_steps == [0, 1, 2] and opt.hessian_updates == 3
    for snapshot in snapshots[:-1]:
        assert all(torch.equal(a, b) for a, b in zip(snapshot, start.parameters()))
    params = list(start.parameters())
    grads = [torch.autograd.grad(-_nll(start, b["forget"]) + _nll(start, b["retain"]), params) for b in batches]
    for i, (p, p0) in enumerate(zip(model.parameters(), params)):
        mean_g = sum(g[i] for g in grads) / 3
        state = opt.state[p]
        torch.testing.assert_close(state["exp_avg"], mean_g, rtol=1e-9, atol=1e-12)
        assert (state["hessian"] >= 0).all()
        torch.testing.assert_close(p.detach(), p0.detach() - 0.5 * mean_g / (state["hessian"] + 0.05),
                                   rtol=1e-9, atol=1e-12)
    assert [h["influence/refreshes"] for h in trainer.state.log_history if "loss" in h] == [1, 2, 3]


def test_lora_moves_only_the_adapters(tmp_path, tokenizer, make_model, forget_retain):
    from peft import LoraConfig, get_peft_model

    forget, retain = forget_retain
    model = get_peft_model(make_model(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_alpha=8,
                                                    lora_dropout=0.0, init_lora_weights=False))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = UnlearningTrainer(model=model, args=influence_args(tmp_path), forget_dataset=forget,
                                retain_dataset=retain, processing_class=tokenizer)
    trainer.train()
    assert trainer.sophia.applied
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name]) != (name in trainable), name  # adapters moved, nothing else


class KillAfter(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= self.step


def test_resume_from_a_mid_run_checkpoint_gives_the_same_update(tmp_path, tokenizer, make_model, forget_retain):
    forget, retain = forget_retain
    kwargs = dict(forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)
    common = dict(save_strategy="steps", save_steps=1, hessian_estimator="empirical")
    full = UnlearningTrainer(model=make_model(), args=influence_args(tmp_path / "a", **common), **kwargs)
    full.train()
    resumed = UnlearningTrainer(model=make_model(), args=influence_args(tmp_path / "b", **common),
                                callbacks=[KillAfter(2)], **kwargs)
    resumed.train()  # "killed" after the step-2 checkpoint, before the update
    assert not resumed.sophia.applied
    again = UnlearningTrainer(model=make_model(seed=7), args=influence_args(tmp_path / "b", **common), **kwargs)
    again.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-2"))
    assert again.sophia.applied
    for (name, a), (_, b) in zip(full.model.named_parameters(), again.model.named_parameters()):
        assert torch.equal(a, b), name


def test_config_refuses_what_would_change_the_update(tmp_path):
    with pytest.raises(ValueError) as err:
        UnlearningConfig(output_dir=str(tmp_path), unlearn_optimizer="influence", num_train_epochs=3,
                         max_grad_norm=1.0, influence_damping=0.0)
    text = str(err.value)
    assert "set --max_grad_norm 0" in text and "set --num_train_epochs 1" in text
    assert "influence_damping must be > 0" in text
    args = influence_args(tmp_path, max_steps=2, num_train_epochs=5)  # --max_steps bounds the pass instead
    recipe = args.recipe()
    assert recipe["influence_damping"] == 0.05 and recipe["hessian_estimator"] == "gnb"
    assert "sophia_rho" not in recipe and "hessian_update_interval" not in recipe
    assert "influence_damping" not in UnlearningConfig(output_dir=str(tmp_path), unlearn_optimizer="sophia").recipe()
