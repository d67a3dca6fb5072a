"""UnlearningTrainer on tiny random Llamas: method values at the start, training effects, LoRA, bad input."""

import logging
import math

import datasets
import pytest
import torch

from hf_unlearn import UnlearningCollator, UnlearningConfig, UnlearningTrainer, build_unlearning_dataset
from hf_unlearn.data.formatting import IGNORE_INDEX, encode_qa
from hf_unlearn.methods import losses
from hf_unlearn.methods import METHODS


def config(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, learning_rate=1e-3, max_steps=3,
                logging_steps=1, disable_tqdm=True, rmu_layer=1, seed=0)
    base.update(kw)
    return UnlearningConfig(**base)


def first_batch(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer._prepare_inputs(batch)


def nll_on(model, tokenizer, dataset):
    pairs = build_unlearning_dataset(tokenizer, dataset)
    batch = UnlearningCollator(tokenizer)([pairs[i] for i in range(len(pairs))])["forget"]
    with torch.no_grad():
        return losses.nll(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                          batch["labels"]).item()


def test_every_method_is_registered_with_public_names():
    assert list(METHODS) == ["ga", "grad_diff", "kl", "npo", "simnpo", "idk_nll", "idk_dpo", "undial", "rmu", "wga", "satimp",
                             "ceu", "pdu"]


def test_config_fields_checks_and_recipe_come_from_the_method_definitions():
    import dataclasses

    from hf_unlearn.methods import hyperparameters

    fields = {f.name: f for f in dataclasses.fields(UnlearningConfig)}
    for h in hyperparameters().values():  # each method flag is a config field with the definition's default and help
        assert fields[h.name].default == h.default and fields[h.name].metadata["help"] == h.help
    assert "simnpo 0.125 from open-unlearning's TOFU SimNPO config" in fields["forget_weight"].metadata["help"]
    assert "undial 0.0 from the UNDIAL paper" in fields["retain_weight"].metadata["help"]
    with pytest.raises(ValueError, match="simnpo_beta must be > 0 \\(it divides the loss\\), got -1"):
        UnlearningConfig(output_dir="x", simnpo_beta=-1.0)
    with pytest.raises(ValueError, match="undial_beta must be a finite number"):
        UnlearningConfig(output_dir="x", undial_beta=float("inf"))
    # The recipe holds the method's own flags only, the retain flags only with a retain term, SophiaG's only with it.
    npo = UnlearningConfig(output_dir="x", unlearn_method="npo", unlearn_optimizer="sophia").recipe()
    assert {"npo_beta", "hessian_batch_fraction", "pairing_seed", "max_grad_norm", "retain_weight"} <= set(npo)
    assert not {"simnpo_beta", "undial_beta", "rmu_layer"} & set(npo)
    ga = UnlearningConfig(output_dir="x", unlearn_method="ga").recipe()
    assert ga["unlearn_method"] == "ga" and not {"retain_weight", "npo_beta", "sophia_rho"} & set(ga)


@pytest.mark.parametrize(
    "method, expected",
    [
        # policy == reference at step 0, so every log-ratio is 0:
        ("npo", lambda s: (2 / s.npo_beta) * math.log(2)),  # -(2/b) log sigmoid(0)
        ("idk_dpo", lambda s: math.log(2)),  # -log sigmoid(0)
    ],
)
def test_reference_methods_at_start_equal_closed_form(tmp_path, tokenizer, make_model, forget_retain, method, expected):
    forget, retain = forget_retain
    trainer = UnlearningTrainer(model=make_model(), args=config(tmp_path, unlearn_method=method, retain_weight=0.0),
                                forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)
    loss = trainer.compute_loss(trainer.model, first_batch(trainer))
    assert loss.item() == pytest.approx(expected(trainer.settings), rel=1e-5)


def test_kl_retain_term_is_zero_at_start_and_grad_diff_is_weighted_sum(tmp_path, tokenizer, make_model, forget_retain):
    forget, retain = forget_retain
    kl = UnlearningTrainer(model=make_model(), args=config(tmp_path, unlearn_method="kl"), forget_dataset=forget,
                           retain_dataset=retain, processing_class=tokenizer)
    batch = first_batch(kl)
    _, terms = kl.compute_loss(kl.model, batch, return_outputs=True)
    assert terms["retain_loss"].item() == pytest.approx(0.0, abs=1e-6)

    gd = UnlearningTrainer(model=make_model(), args=config(tmp_path, unlearn_method="grad_diff", forget_weight=0.5,
                                                           retain_weight=2.0),
                           forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)
    model = gd.model
    loss = gd.compute_loss(model, batch)
    f, r = batch["forget"], batch["retain"]
    nll_f = losses.nll(model(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits, f["labels"])
    nll_r = losses.nll(model(input_ids=r["input_ids"], attention_mask=r["attention_mask"]).logits, r["labels"])
    assert loss.item() == pytest.approx((-0.5 * nll_f + 2.0 * nll_r).item(), rel=1e-6)


def test_only_needed_pieces_are_built(tmp_path, tokenizer, make_model, forget_retain):
    forget, retain = forget_retain
    for method, needs_ref in [("ga", False), ("simnpo", False), ("grad_diff", False), ("npo", True), ("undial", True)]:
        trainer = UnlearningTrainer(model=make_model(), args=config(tmp_path, unlearn_method=method),
                                    forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)
        assert (trainer.reference is not None) is needs_ref, method
    ga = UnlearningTrainer(model=make_model(), args=config(tmp_path, unlearn_method="ga"), forget_dataset=forget,
                           retain_dataset=retain, processing_class=tokenizer)
    assert set(ga.train_dataset[0]) == {"forget"}  # no retain batch for GA


def test_ga_and_grad_diff_raise_forget_nll_and_grad_diff_keeps_retain(tmp_path, tokenizer, make_model, forget_retain):
    forget, retain = forget_retain
    start = make_model()
    before_forget, before_retain = nll_on(start, tokenizer, forget), nll_on(start, tokenizer, retain)
    after = {}
    for method in ("ga", "grad_diff"):
        model = make_model()
        args = config(tmp_path, unlearn_method=method, max_steps=8, learning_rate=3e-3, lr_scheduler_type="constant")
        UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                          processing_class=tokenizer).train()
        after[method] = nll_on(model, tokenizer, forget), nll_on(model, tokenizer, retain)
    assert after["ga"][0] > before_forget + 0.1
    assert after["grad_diff"][0] > before_forget
    assert after["grad_diff"][1] < after["ga"][1]
    assert after["grad_diff"][1] < before_retain  # the retain term pulls retain NLL down


@pytest.mark.parametrize("method", ["npo", "undial"])
def test_lora_reference_is_the_adapters_off_model(tmp_path, tokenizer, make_model, forget_retain, method):
    from peft import LoraConfig

    forget, retain = forget_retain
    base = make_model()
    reference_logits_before = None
    created = []
    original_init = torch.nn.Module.__init__

    def counting_init(self, *a, **k):
        if type(self).__name__ == "LlamaForCausalLM":
            created.append(self)
        original_init(self, *a, **k)

    torch.nn.Module.__init__ = counting_init
    try:
        trainer = UnlearningTrainer(
            model=base, args=config(tmp_path, unlearn_method=method, learning_rate=1e-2), forget_dataset=forget,
            retain_dataset=retain, processing_class=tokenizer,
            peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
        )
    finally:
        torch.nn.Module.__init__ = original_init
    assert created == []  # no second LlamaForCausalLM (no deepcopy of the model)
    assert trainer.reference.adapters_off and trainer.reference.module is trainer.model
    batch = first_batch(trainer)["forget"]
    with torch.no_grad():
        base_logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.clone()
    trainer.train()
    with torch.no_grad():
        trained = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        with trainer.model.disable_adapter():
            adapters_off = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert not torch.allclose(trained, adapters_off)  # the adapters learned something
    assert torch.allclose(trainer.reference(batch).logits, adapters_off)
    assert torch.allclose(adapters_off, base_logits, atol=1e-6)  # reference = the original model
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_rmu_trains_only_down_proj_of_three_layers(tmp_path, tokenizer, make_model, forget_retain):
    forget, retain = forget_retain
    model = make_model(num_hidden_layers=4)
    trainer = UnlearningTrainer(model=model, args=config(tmp_path, unlearn_method="rmu", rmu_layer=2),
                                forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == [f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1, 2)]
    assert trainer.settings.rmu_control.norm().item() == pytest.approx(20.0, rel=1e-6)
    with pytest.raises(ValueError, match="rmu_layer=7 but the model has 2 layers"):
        UnlearningTrainer(model=make_model(), args=config(tmp_path, unlearn_method="rmu", rmu_layer=7),
                          forget_dataset=forget, retain_dataset=retain, processing_class=tokenizer)


# --- data ----------------------------------------------------------------------------------------------
def test_formatting_masks_prompt_and_appends_eos_once(tokenizer):
    example = encode_qa(tokenizer, "Who is X?", "X is a writer.")
    prompt = tokenizer("Question: Who is X?\nAnswer: ")["input_ids"]
    assert example.input_ids[: len(prompt)] == prompt and example.input_ids[0] == tokenizer.bos_token_id
    assert example.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert example.input_ids[-1] == tokenizer.eos_token_id and example.input_ids.count(tokenizer.eos_token_id) == 1
    again = encode_qa(tokenizer, "Who is X?", "X is a writer." + tokenizer.eos_token)
    assert again.input_ids == example.input_ids  # EOS not doubled


def test_chat_template_prompt_uses_generation_prompt(tokenizer):
    tok = tokenizer.__class__.from_pretrained  # noqa: F841  (same class, independent copy below)
    import copy

    chat = copy.deepcopy(tokenizer)
    chat.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% if m['role'] == 'assistant' %}</s>{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    example = encode_qa(chat, "Q?", "A.")
    text = chat.decode(example.input_ids)
    assert text == "<|user|>Q?<|assistant|>A.</s>"
    scored = chat.decode([t for t, l in zip(example.input_ids, example.labels) if l != IGNORE_INDEX])
    assert scored == "A.</s>"


def test_collator_mask_comes_from_lengths_even_when_pad_is_eos(tokenizer):
    collator = UnlearningCollator(pad_token_id=tokenizer.eos_token_id)
    eos = tokenizer.eos_token_id
    batch = collator([{"forget": {"input_ids": [5, 6, eos], "labels": [-100, 6, eos]}},
                      {"forget": {"input_ids": [7, eos], "labels": [-100, eos]}}])["forget"]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]  # real EOS tokens stay visible
    assert batch["labels"].tolist() == [[-100, 6, eos], [-100, eos, -100]]


def test_pairing_is_seeded_and_independent_of_sharding(tokenizer, forget_retain):
    forget, retain = forget_retain
    a = build_unlearning_dataset(tokenizer, forget, retain, seed=3)
    b = build_unlearning_dataset(tokenizer, forget, retain, seed=3)
    c = build_unlearning_dataset(tokenizer, forget, retain, seed=4)
    pairs = [a.retain_index(i) for i in range(len(a))]
    assert pairs == [b.retain_index(i) for i in range(len(b))]
    assert pairs != [c.retain_index(i) for i in range(len(c))]
    # a "rank" that sees only odd indices gets the same partners as a single process
    assert [a[i]["retain"] for i in range(1, len(a), 2)] == [b[i]["retain"] for i in range(1, len(b), 2)]
    a.set_epoch(1)
    assert [a.retain_index(i) for i in range(len(a))] != pairs  # new partners each epoch


def test_tofu_loader_reads_shared_data(tofu_dir, synthetic_splits):
    from hf_unlearn.data.tofu import load_split

    expected = {"full": 4000, "retain90": 3600, "forget10": 400, "forget10_perturbed": 400,
                "real_authors_perturbed": 100, "world_facts_perturbed": 117}
    for split, rows in expected.items():
        ds = load_split(str(tofu_dir), split)
        assert len(ds) == rows, split
        assert set(ds.column_names) == set(synthetic_splits[split][0]), split
    assert set(load_split(str(tofu_dir), "forget10_perturbed").column_names) == {
        "question", "answer", "paraphrased_answer", "perturbed_answer", "paraphrased_question"}
    with pytest.raises(FileNotFoundError, match="No split 'forget99'.*Splits found: .*forget01"):
        load_split(str(tofu_dir), "forget99")


# --- bad input -----------------------------------------------------------------------------------------
def test_bad_config_values():
    with pytest.raises(ValueError, match="unknown unlearn_method 'gd'; known: ga, grad_diff"):
        UnlearningConfig(output_dir="x", unlearn_method="gd")
    for field in ("forget_weight", "retain_weight", "npo_beta"):
        with pytest.raises(ValueError, match=f"{field} must be a finite number"):
            UnlearningConfig(output_dir="x", **{field: float("nan")})
    with pytest.raises(ValueError, match="retain_loss_type must be 'nll' or 'kl'"):
        UnlearningConfig(output_dir="x", retain_loss_type="mse")


def test_missing_columns_empty_sets_and_truncation(tmp_path, tokenizer, make_model, forget_retain):
    forget, retain = forget_retain
    renamed = forget.rename_column("question", "prompt")
    with pytest.raises(ValueError, match="no column 'question'; columns found: prompt, answer"):
        build_unlearning_dataset(tokenizer, renamed)
    with pytest.raises(ValueError, match="The forget set is empty"):
        build_unlearning_dataset(tokenizer, forget.select([]))
    with pytest.raises(ValueError, match="The retain set is empty"):
        build_unlearning_dataset(tokenizer, forget, retain.select([]))
    with pytest.raises(ValueError, match=r"have no answer tokens left after truncation to max_length=12 \(rows \[0, 1"):
        build_unlearning_dataset(tokenizer, forget, max_length=12)
    text_ds = datasets.Dataset.from_dict({"text": ["Some copyrighted passage."]})
    pairs = build_unlearning_dataset(tokenizer, text_ds, text_column="text")
    assert pairs[0]["forget"]["labels"][0] == IGNORE_INDEX and pairs[0]["forget"]["labels"][1] != IGNORE_INDEX


def test_method_needing_retain_without_it(tmp_path, tokenizer, make_model, forget_retain):
    forget, _ = forget_retain
    with pytest.raises(ValueError, match="unlearn_method='grad_diff' needs retain data"):
        UnlearningTrainer(model=make_model(), args=config(tmp_path, unlearn_method="grad_diff"),
                          forget_dataset=forget, processing_class=tokenizer)
    with pytest.raises(ValueError, match="Unknown unlearn_method"):
        from hf_unlearn.methods import get_method
        get_method("nope")


def test_tokenizer_without_pad_or_eos(tokenizer, forget_retain):
    import copy

    forget, _ = forget_retain
    broken = copy.deepcopy(tokenizer)
    broken.pad_token = None
    assert UnlearningCollator(broken).pad_token_id == tokenizer.eos_token_id  # falls back to eos
    broken.eos_token = None
    with pytest.raises(ValueError, match="neither a pad token nor an eos token"):
        build_unlearning_dataset(broken, forget)


def test_overlap_between_forget_and_retain_warns(tokenizer, forget_retain, caplog):
    forget, retain = forget_retain
    mixed = datasets.concatenate_datasets([retain, forget.select(range(3))])
    with caplog.at_level(logging.WARNING):
        build_unlearning_dataset(tokenizer, forget, mixed)
    assert "3 forget rows also appear in the retain set" in caplog.text


def test_ga_divergence_stops_with_clear_message(tmp_path, tokenizer, make_model, forget_retain):
    forget, _ = forget_retain
    trainer = UnlearningTrainer(model=make_model(), args=config(tmp_path, unlearn_method="ga"),
                                forget_dataset=forget, processing_class=tokenizer)
    batch = first_batch(trainer)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.fill_(float("inf"))
    with pytest.raises(FloatingPointError, match="ga loss became non-finite.*lower --learning_rate"):
        trainer.compute_loss(trainer.model, batch)


@pytest.mark.parametrize("optimizer", ["sophia", "influence"])
def test_sophia_with_explicit_optimizer_is_refused(tmp_path, tokenizer, make_model, forget_retain, optimizer):
    forget, retain = forget_retain
    model = make_model()
    args = config(tmp_path, unlearn_optimizer=optimizer, max_grad_norm=0.0, num_train_epochs=1)
    with pytest.raises(ValueError, match=f"unlearn_optimizer='{optimizer}' builds its optimizer itself"):
        UnlearningTrainer(model=model, args=args, forget_dataset=forget,
                          retain_dataset=retain, processing_class=tokenizer,
                          optimizers=(torch.optim.SGD(model.parameters(), lr=0.1), None))
