"""PDU's dual variable lambda (the retain weight): one update per optimizer step from that step's mean retain
loss, clamped at 0, held during the warm-up epochs, and carried across a checkpoint resume. (2 processes =
1 process with accumulation: tests/test_distributed.py, test_ddp_pdu_dual_variable_matches_one_process...)"""

import pytest
import torch

from hf_unlearn import UnlearningConfig, UnlearningTrainer


def _trainer(tmp_path, tokenizer, make_model, forget_retain, **kw):
    forget, retain = forget_retain
    args = dict(output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=2,
                learning_rate=1e-3, logging_steps=1, seed=0, unlearn_method="pdu", report_to=[],
                disable_tqdm=True, retain_weight=1.0, pdu_dual_step_size=0.5)
    args.update(kw)
    return UnlearningTrainer(model=make_model(seed=0), args=UnlearningConfig(**args), forget_dataset=forget,
                             retain_dataset=retain, processing_class=tokenizer)


def _logged(trainer, key):
    return [h[key] for h in trainer.state.log_history if "loss" in h]


def test_lambda_follows_the_step_mean_retain_loss_and_is_clamped_at_zero(tmp_path, tokenizer, make_model,
                                                                        forget_retain):
    # epsilon 6.3 sits inside the range of the tiny model's retain NLL: lambda goes up and down, and with
    # lambda 0.01 at the start the first decrease clamps it to 0
    trainer = _trainer(tmp_path, tokenizer, make_model, forget_retain, max_steps=6, retain_weight=0.01,
                       pdu_retain_bound=6.3, pdu_dual_step_size=5.0)
    seen = []
    record = trainer.dual_callback.record
    trainer.dual_callback.record = lambda value: (seen.append(float(value)), record(value))
    trainer.train()
    history = trainer.dual_callback.history
    # 10 forget rows in micro-batches of 2: an epoch is 5 micro-batches, so steps of 2, 2 and 1 (the epoch's
    # last step accumulates what is left)
    sizes = [2, 2, 1, 2, 2, 1]
    assert len(seen) == sum(sizes) and len(history) == 6
    lam, start, means = 0.01, 0, []
    for step, size in enumerate(sizes):
        means.append(sum(seen[start:start + size]) / size)  # the step's micro-batches, by hand
        start += size
        lam = max(0.0, lam + 5.0 * (means[-1] - 6.3))
        assert history[step] == pytest.approx(lam, rel=1e-12, abs=1e-15)
    assert 0.0 in history and max(history) > 0.0, history  # clamped once, raised again
    # the logged retain loss is the same per-step mean (an independent path: Trainer's logs)
    assert _logged(trainer, "retain_loss") == pytest.approx(means, rel=1e-6)
    assert _logged(trainer, "retain_weight") == pytest.approx(history, rel=1e-12)


def test_lambda_is_held_during_the_warmup_epochs(tmp_path, tokenizer, make_model, forget_retain):
    trainer = _trainer(tmp_path, tokenizer, make_model, forget_retain, num_train_epochs=2,
                       pdu_dual_warmup_epochs=1, pdu_retain_bound=0.0)
    trainer.train()
    steps_per_epoch = trainer.state.max_steps // 2
    history = trainer.dual_callback.history
    assert history[:steps_per_epoch] == [1.0] * steps_per_epoch  # epoch 1: no update
    assert all(b > a for a, b in zip(history[steps_per_epoch - 1:], history[steps_per_epoch:]))  # R > 0 = eps


def test_lambda_survives_a_checkpoint_resume(tmp_path, tokenizer, make_model, forget_retain):
    common = dict(max_steps=4, pdu_retain_bound=6.2, save_strategy="steps", save_steps=2)
    whole = _trainer(tmp_path / "whole", tokenizer, make_model, forget_retain, **common)
    whole.train()
    first = _trainer(tmp_path / "resumed", tokenizer, make_model, forget_retain, **common)
    first.train()
    assert first.dual_callback.history == whole.dual_callback.history
    # a fresh trainer (lambda back at its start) resumed from step 2 continues from the saved lambda
    resumed = _trainer(tmp_path / "resumed", tokenizer, make_model, forget_retain, **common)
    assert resumed.settings.retain_weight == 1.0
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-2"))
    assert resumed.dual_callback.history == pytest.approx(whole.dual_callback.history[2:], rel=1e-6)
    assert resumed.settings.retain_weight == pytest.approx(whole.settings.retain_weight, rel=1e-6)
    assert len(set(whole.dual_callback.history)) == 4


def test_pdu_refuses_a_negative_dual_step(tmp_path):
    with pytest.raises(ValueError, match="pdu_dual_step_size must be >= 0"):
        UnlearningConfig(output_dir=str(tmp_path), unlearn_method="pdu", pdu_dual_step_size=-1.0, report_to=[])
