"""The training step owns SophiaG's Hessian refresh: a subclass that overrides `compute_loss` still gets h refreshed
(on the step's logits when its outputs hand them on, else with the refresh's own forward), one that skips the
refresh gets an error before the optimizer step, and `refresh_path` names the path that ran."""

import pytest
import torch

import hf_unlearn.trainer as trainer_module
from hf_unlearn import SophiaG, UnlearningConfig, UnlearningTrainer


class PassesOutputsOn(UnlearningTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        return (loss, outputs) if return_outputs else loss


class DropsOutputs(UnlearningTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return super().compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)


class OwnLoss(UnlearningTrainer):
    """The ordinary Trainer way, not calling super: gradient ascent on the forget answers."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        part = inputs["forget"]
        outputs = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], labels=part["labels"])
        return (-outputs.loss, outputs) if return_outputs else -outputs.loss


class SkipsTheRefresh(UnlearningTrainer):
    def training_step(self, model, inputs, num_items_in_batch=None):
        inputs = self._prepare_inputs(inputs)
        loss = self.compute_loss(model, inputs)
        loss.backward()
        return loss.detach()


def _train(tmp_path, tokenizer, make_model, forget_retain, cls=UnlearningTrainer, monkeypatch=None, **kw):
    """float64, refreshes at steps 0 and 2 of 4; with `monkeypatch`, the refresh never reuses the step's forward."""
    forget, retain = forget_retain
    settings = dict(per_device_train_batch_size=2, learning_rate=1e-3, max_steps=4, seed=0, unlearn_method="grad_diff",
                    unlearn_optimizer="sophia", hessian_update_interval=2, sophia_beta2=0.5, report_to=[],
                    lr_scheduler_type="constant", disable_tqdm=True, save_strategy="no", logging_steps=1)
    args = UnlearningConfig(output_dir=str(tmp_path / cls.__name__ / str(monkeypatch is None)), **{**settings, **kw})
    trainer = cls(model=make_model().double(), args=args, forget_dataset=forget.select(range(8)),
                  retain_dataset=retain, processing_class=tokenizer)
    if monkeypatch is not None:
        monkeypatch.setattr(trainer_module, "can_reuse_step_forward", lambda *a, **k: False)
    try:
        trainer.train()
    finally:
        if monkeypatch is not None:
            monkeypatch.undo()
    return trainer


def _assert_same_h_and_weights(a, b):
    for (name, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        h_a, h_b = a.sophia.state[p]["hessian"], b.sophia.state[q]["hessian"]
        assert h_a.abs().max() > 0, name  # never h = 0
        assert torch.equal(h_a, h_b) and torch.equal(p, q), name


@pytest.mark.parametrize("cls, path", [(PassesOutputsOn, "step_forward"), (DropsOutputs, "own_forward")])
def test_a_compute_loss_override_calling_super_trains_as_the_plain_trainer(tmp_path, tokenizer, make_model,
                                                                         forget_retain, cls, path):
    plain = _train(tmp_path, tokenizer, make_model, forget_retain)
    subclass = _train(tmp_path, tokenizer, make_model, forget_retain, cls)
    assert (plain.refresh_path, subclass.refresh_path) == ("step_forward", path)
    assert subclass.sophia.hessian_updates == 2 and subclass.hessian_callback.refresh_steps == [0, 2]
    _assert_same_h_and_weights(subclass, plain)  # bitwise: the same h on the step's logits or on its own forward


def test_a_compute_loss_override_of_its_own_gets_its_hessian_refreshed(tmp_path, tokenizer, make_model,
                                                                      forget_retain, monkeypatch):
    """No method call, no logits handed back: the refresh forwards itself, after the step's forward; h and the
    weights are those of the refresh run before the step's forward."""
    own = _train(tmp_path, tokenizer, make_model, forget_retain, OwnLoss)
    before = _train(tmp_path, tokenizer, make_model, forget_retain, OwnLoss, monkeypatch)
    assert own.refresh_path == before.refresh_path == "own_forward"
    assert own.sophia.hessian_updates == 2 and own.hessian_callback.refresh_steps == [0, 2]
    _assert_same_h_and_weights(own, before)
    assert [h["loss"] for h in own.state.log_history if "loss" in h] == \
        [h["loss"] for h in before.state.log_history if "loss" in h]


def test_a_training_step_override_that_skips_the_refresh_stops_before_the_optimizer_step(
        tmp_path, tokenizer, make_model, forget_retain):
    forget, retain = forget_retain
    args = UnlearningConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=2, report_to=[],
                            unlearn_method="grad_diff", unlearn_optimizer="sophia", disable_tqdm=True,
                            save_strategy="no")
    trainer = SkipsTheRefresh(model=make_model(), args=args, forget_dataset=forget, retain_dataset=retain,
                              processing_class=tokenizer)
    start = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    with pytest.raises(RuntimeError, match=r"Hessian refresh was due at step 0 but did not run.*"
                                           r"super\(\)\.training_step"):
        trainer.train()
    assert trainer.state.global_step == 0 and trainer.hessian_callback.refresh_steps == []
    # SophiaG never stepped on h = 0
    assert all(torch.equal(p, start[name]) for name, p in trainer.model.named_parameters())


@pytest.mark.parametrize("method, path, folds", [("rmu", "own_forward", False), ("grad_diff", "step_forward", True)])
def test_refresh_path_names_the_path_that_ran(tmp_path, tokenizer, make_model, forget_retain, monkeypatch, method,
                                              path, folds):
    """RMU's forwards read a decoder layer and keep no logits: its refresh forwards itself (SophiaG's Hessian-mode
    step, no per-gradient fold on the step's graph), bitwise the refresh run before the step's forward."""
    folded = []
    fold = SophiaG.fold_gradient
    monkeypatch.setattr(SophiaG, "fold_gradient", lambda self, p, group: (folded.append(p), fold(self, p, group)))
    kw = dict(unlearn_method=method, rmu_layer=0) if method == "rmu" else dict(unlearn_method=method)
    trainer = _train(tmp_path, tokenizer, make_model, forget_retain, **kw)
    assert trainer.refresh_path == path and bool(folded) == folds
    assert trainer.sophia.hessian_updates == 2
    if method == "rmu":
        separate = _train(tmp_path, tokenizer, make_model, forget_retain, monkeypatch=monkeypatch, **kw)
        trained = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]
        assert trained and all("down_proj" in n for n, _ in trained)
        for (name, p), (_, q) in zip(trained, [(n, q) for n, q in separate.model.named_parameters() if q.requires_grad]):
            h_a, h_b = trainer.sophia.state[p]["hessian"], separate.sophia.state[q]["hessian"]
            assert h_a.abs().max() > 0 and torch.equal(h_a, h_b) and torch.equal(p, q), name
