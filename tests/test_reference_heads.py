"""The reference (teacher) forwards compute the LM head on the answer positions only (`models.heads`), with the
same values as the full logits they replaced: per method through the trainer's own reference and batch, under
PEFT (adapters off), with final logit soft-capping, and the fallback for forwards that cannot take a mask."""

import pytest
import torch
import transformers as tf
from transformers.modeling_outputs import CausalLMOutput

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.answer_tokens import answer_rows, predicts_answer
from hf_unlearn.models import heads
from hf_unlearn.models.reference import ReferenceModel

TIGHT = dict(rtol=1e-12, atol=1e-13)


class HeadRows:
    """Records the number of rows each call of an LM head projects."""

    def __init__(self, head: torch.nn.Module):
        self.rows = []
        self.handle = head.register_forward_hook(lambda m, args, out: self.rows.append(args[0].shape[:-1].numel()))


def full_logit_rows(model, part):
    """The reference's answer rows as they were computed before: the whole forward, then the selection."""
    with torch.no_grad():
        return answer_rows(model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits,
                           part["labels"])


def a_part(vocab, seed=0, batch=3, width=9):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, width), generator=gen)
    labels = ids.clone()
    labels[:, :4] = -100
    labels[1, 3:] = -100  # no answer in row 1 at all
    labels[2, 1:] = ids[2, 1:]
    labels[0, -2:] = -100  # padding after row 0's answer
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


@pytest.mark.parametrize("method,retain_loss_type", [("undial", "nll"), ("npo", "nll"), ("kl", "kl"),
                                                     ("idk_dpo", "nll"), ("grad_diff", "kl")])
def test_method_loss_and_gradient_equal_the_full_logits_reference(method, retain_loss_type, tmp_path, tokenizer,
                                                                  make_model, forget_retain):
    forget, retain = forget_retain
    args = UnlearningConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, unlearn_method=method,
                            retain_loss_type=retain_loss_type, retain_weight=1.0, seed=0, report_to=[])
    trainer = UnlearningTrainer(model=make_model(seed=0).double(), args=args, forget_dataset=forget,
                                retain_dataset=retain, processing_class=tokenizer, ref_model=make_model(seed=1).double())
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    full = ReferenceModel(trainer.reference.module)
    full._masked_head = False  # today's path: logits at every position, rows selected after

    results = {}
    for name, reference in (("answer_only", trainer.reference), ("full", full)):
        trainer.model.zero_grad()
        rows = HeadRows(reference.module.lm_head)
        loss, logs = trainer.method(trainer.model, batch, reference, trainer.settings)
        loss.backward()
        rows.handle.remove()
        results[name] = (loss.detach(), logs, [p.grad.clone() for p in trainer.model.parameters()], rows.rows)

    loss, logs, grads, head_rows = results["answer_only"]
    full_loss, full_logs, full_grads, full_head_rows = results["full"]
    torch.testing.assert_close(loss, full_loss, **TIGHT)
    for key in full_logs:
        torch.testing.assert_close(logs[key], full_logs[key], **TIGHT)
    for grad, full_grad in zip(grads, full_grads, strict=True):
        torch.testing.assert_close(grad, full_grad, **TIGHT)
    assert loss.abs() > 1e-6 and any(g.abs().sum() > 0 for g in grads)
    # The head ran only on the rows that predict an answer token (today: every position of the padded batch).
    parts = {"undial": ["forget"], "npo": ["forget"], "kl": ["retain"], "idk_dpo": ["idk", "forget"],
             "grad_diff": ["retain"]}[method]
    assert head_rows == [int(predicts_answer(batch[p]["labels"]).sum()) for p in parts]
    assert full_head_rows == [batch[p]["labels"].numel() for p in parts]
    assert sum(head_rows) < sum(full_head_rows)


def test_peft_reference_is_the_base_model_with_the_head_on_answer_rows(tokenizer, make_model):
    peft = pytest.importorskip("peft")
    base = make_model(seed=0).double()
    part = a_part(len(tokenizer))
    expected = full_logit_rows(base, part)  # before the adapters exist
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:  # non-zero adapters, so that "adapters off" is visible
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    reference = ReferenceModel.adapters_disabled(model)
    rows = HeadRows(heads.causal_lm(model).lm_head)
    got = reference.answer_logits(part)
    rows.handle.remove()
    assert reference._masked_head and rows.rows == [int(predicts_answer(part["labels"]).sum())]
    torch.testing.assert_close(got, expected, **TIGHT)
    assert (full_logit_rows(model, part) - expected).abs().max() > 1e-3  # the adapters do change the logits


def test_final_logit_softcapping_is_applied_to_the_kept_rows():
    config = tf.Gemma2Config(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, head_dim=8, sliding_window=4,
                             final_logit_softcapping=0.5)
    torch.manual_seed(0)
    model = tf.Gemma2ForCausalLM(config).double().eval()
    part = a_part(40, width=10)
    assert heads.keeps_masked_positions(model)
    got = ReferenceModel(model).answer_logits(part)
    torch.testing.assert_close(got, full_logit_rows(model, part), **TIGHT)
    assert got.abs().max() <= 0.5 and got.shape == (int(predicts_answer(part["labels"]).sum()), 40)


class SlicesOnItsOwn(tf.LlamaForCausalLM):
    """Takes `logits_to_keep` but slices with it itself, as some older forwards do: a mask would break it."""

    def forward(self, input_ids=None, attention_mask=None, logits_to_keep=0, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        return CausalLMOutput(logits=self.lm_head(hidden[:, keep]))


class NoKeepArgument(torch.nn.Module):
    """A causal LM that is not a transformers model: full logits only."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask):
        return CausalLMOutput(logits=self.inner(input_ids=input_ids, attention_mask=attention_mask).logits)


@pytest.mark.parametrize("kind", ["own_slicing", "no_argument"])
def test_forwards_that_cannot_take_a_mask_fall_back_to_full_logits(kind, make_model):
    llama = make_model(seed=2).double()
    model = SlicesOnItsOwn(llama.config).double() if kind == "own_slicing" else NoKeepArgument(llama)
    if kind == "own_slicing":
        model.load_state_dict(llama.state_dict())
    part = a_part(llama.config.vocab_size)
    assert heads.accepts_logits_to_keep(model) == (kind == "own_slicing")
    assert not heads.keeps_masked_positions(model)
    rows = HeadRows(llama.lm_head if kind == "no_argument" else model.lm_head)
    got = ReferenceModel(model).answer_logits(part)
    rows.handle.remove()
    assert rows.rows == [part["labels"].numel()]  # the whole forward
    torch.testing.assert_close(got, full_logit_rows(llama, part), **TIGHT)
