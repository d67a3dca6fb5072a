"""The GNB refresh built on the training step's own forward (`hf_unlearn.optim.refresh`) gives the same h and the
same trained weights as the refresh with a forward of its own, and the separate refresh is kept where reuse would
not be the same computation."""

import pytest
import torch

import hf_unlearn.trainer as trainer_module
from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.data.pairing import build_unlearning_dataset
from hf_unlearn.optim import (HessianEstimator, RefreshContext, can_reuse_step_forward, get_estimator,
                              recording_logits)


def _train(tmp_path, tokenizer, model, pairs, reuse: bool, monkeypatch, **kw):
    """4 steps, refresh at steps 0 and 2, float64; counts the forwards of the trained model with gradients."""
    settings = dict(per_device_train_batch_size=4, learning_rate=1e-3, max_steps=4, seed=0, unlearn_optimizer="sophia",
                    hessian_update_interval=2, sophia_beta2=0.5, lr_scheduler_type="constant", report_to=[],
                    disable_tqdm=True, save_strategy="no", logging_steps=1)
    args = UnlearningConfig(output_dir=str(tmp_path), **{**settings, **kw})
    trainer = UnlearningTrainer(model=model.double(), args=args, train_dataset=pairs, processing_class=tokenizer)
    if not reuse:
        monkeypatch.setattr(trainer_module, "can_reuse_step_forward", lambda *a, **k: False)
    forwards = []
    handle = trainer.model.register_forward_hook(lambda *a: forwards.append(torch.is_grad_enabled()))
    try:
        trainer.train()
    finally:
        handle.remove()
        monkeypatch.undo()
    return trainer, sum(forwards)


@pytest.mark.parametrize("method, extra, forwards", [
    # forget + retain each micro-batch; the separate refresh forwards both again on the first micro-batch, twice
    ("grad_diff", {"gradient_accumulation_steps": 2, "per_device_train_batch_size": 2}, (16, 20)),
    ("npo", {}, (8, 12)),
    ("ga", {}, (6, 8)),  # GA forwards only forget: the refresh forwards the retain rows itself
])
def test_refresh_on_the_step_forward_matches_the_separate_refresh(tmp_path, tokenizer, make_model, forget_retain,
                                                                   monkeypatch, method, extra, forwards):
    forget, retain = forget_retain
    pairs = build_unlearning_dataset(tokenizer, forget.select(range(8)), retain, seed=0)  # GA too: retain rows
    runs = {reuse: _train(tmp_path / str(reuse), tokenizer, make_model(), pairs, reuse, monkeypatch,
                          unlearn_method=method, **extra) for reuse in (True, False)}
    (reused, reused_forwards), (separate, separate_forwards) = runs[True], runs[False]
    assert reused.refresh_path == "step_forward" and separate.refresh_path == "own_forward"
    assert (reused_forwards, separate_forwards) == forwards
    assert reused.sophia.hessian_updates == separate.sophia.hessian_updates == 2
    for (name, a), (_, b) in zip(reused.model.named_parameters(), separate.model.named_parameters()):
        h_a, h_b = reused.sophia.state[a]["hessian"], separate.sophia.state[b]["hessian"]
        assert h_a.abs().max() > 0, name
        # Bitwise: the same forward, and the same backward ops in the same order, on the same rows.
        assert torch.equal(h_a, h_b) and torch.equal(a, b), name
    losses = [[h["loss"] for h in run.state.log_history if "loss" in h] for run in (reused, separate)]
    assert len(losses[0]) == 4 and losses[0] == losses[1]
    start = make_model().double().state_dict()
    assert all(not torch.equal(p, start[n]) for n, p in reused.model.named_parameters() if "proj" in n)  # trained


def test_lora_npo_records_the_student_and_not_the_adapters_off_reference(tokenizer, make_model):
    """Under LoRA the reference is the same module with adapters off, called on the same tensors: only the
    forward with gradients (the student's) is kept, and only the first of a part."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(make_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                    init_lora_weights=False))
    ids = torch.randint(3, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    part = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    keep_all = HessianEstimator()  # keeps the whole logits
    with recording_logits(model, {"forget": part, "retain": {**part, "input_ids": ids.clone()}}, keep_all) as recorded:
        with torch.no_grad(), model.disable_adapter():
            reference = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
        student = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
        model(input_ids=part["input_ids"], attention_mask=part["attention_mask"])  # a second one: not kept
        model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], output_hidden_states=True)
    assert list(recorded) == ["forget"] and recorded["forget"] is student
    assert not torch.equal(reference, student)
    with recording_logits(model, {"forget": part}, keep_all) as recorded:
        model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], output_hidden_states=True)
    assert recorded == {}  # called with something else besides the batch part's tensors


def _ctx(world=1, fraction=1.0):
    return RefreshContext(seed=0, step=0, rank=0, world=world, device=torch.device("cpu"), batch_fraction=fraction,
                          unlearning_loss=None, sum_over_processes=lambda n: n)


def test_the_separate_refresh_is_kept_where_reuse_would_not_be_the_same_computation(make_model):
    gnb = get_estimator("gnb")
    model = make_model()
    assert can_reuse_step_forward(model, gnb, _ctx(), wrapped=False)
    assert not can_reuse_step_forward(model, gnb, _ctx(), wrapped=True)  # DDP / DeepSpeed / DataParallel
    assert not can_reuse_step_forward(model, gnb, _ctx(world=2), wrapped=False)
    assert not can_reuse_step_forward(model, gnb, _ctx(fraction=0.5), wrapped=False)
    assert not can_reuse_step_forward(model, get_estimator("hutchinson"), _ctx(), wrapped=False)
    assert not can_reuse_step_forward(make_model(attention_dropout=0.1), gnb, _ctx(), wrapped=False)
    with_dropout_module = make_model()
    with_dropout_module.model.layers[0].mlp.act_fn = torch.nn.Sequential(torch.nn.SiLU(), torch.nn.Dropout(0.1))
    assert not can_reuse_step_forward(with_dropout_module, gnb, _ctx(), wrapped=False)
    model.activation_checkpointing_enable() if hasattr(model, "activation_checkpointing_enable") else model.gradient_checkpointing_enable()
    assert not can_reuse_step_forward(model, gnb, _ctx(), wrapped=False)


def test_a_trainer_keeping_dropout_refreshes_with_its_own_forward(tmp_path, tokenizer, make_model, forget_retain):
    forget, retain = forget_retain
    args = UnlearningConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=1, report_to=[],
                            unlearn_method="grad_diff", unlearn_optimizer="sophia", disable_dropout=False,
                            disable_tqdm=True, save_strategy="no", logging_steps=1)
    trainer = UnlearningTrainer(model=make_model(attention_dropout=0.1), args=args, forget_dataset=forget,
                                retain_dataset=retain, processing_class=tokenizer)
    trainer.train()
    assert trainer.refresh_path == "own_forward"
