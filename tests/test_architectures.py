"""The architecture matrix: tiny random models built locally from the configs of the families people
unlearn, each tokenizer carrying its family's real chat template (tests/fixtures/chat_templates) where the
family has one. For each: one NPO+SophiaG step, one UNDIAL+LoRA(all-linear) step, TOFU scoring that does
not depend on the batch size, tied embeddings kept tied, save and reload, dropout off, the chat format.

`pytest -v tests/test_architectures.py` prints the matrix (architecture x check).
"""

import copy
from pathlib import Path

import datasets
import pytest
import torch
import transformers as tf

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.data.formatting import IGNORE_INDEX, encode_prompt, encode_qa, load_prompt_template
from hf_unlearn.eval.scoring import score_answers
from hf_unlearn.models.layers import decoder_layers

TEMPLATES = Path(__file__).parent / "fixtures" / "chat_templates"
H, I, L = 32, 64, 2  # hidden, intermediate, layers: tiny, one step each

# name: (config class, config kwargs as in the family's real config, chat template file, its special tokens)
ARCHS = {
    "llama": (tf.LlamaConfig, dict(hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=4,
                                   num_key_value_heads=2, tie_word_embeddings=True),  # Llama-3.2-1B ties
              "llama3.jinja", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
    "mistral": (tf.MistralConfig, dict(hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=4,
                                       num_key_value_heads=2, tie_word_embeddings=False),
                "mistral.jinja", []),
    "qwen2": (tf.Qwen2Config, dict(hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=4,
                                   num_key_value_heads=2, tie_word_embeddings=True),  # Qwen2.5-0.5B/1.5B tie
              "qwen2.jinja", ["<|im_start|>", "<|im_end|>"]),
    "qwen3": (tf.Qwen3Config, dict(hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=4,
                                   num_key_value_heads=2, head_dim=8, tie_word_embeddings=True),
              "qwen3.jinja", ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]),
    "phi-1.5": (tf.PhiConfig, dict(hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=4,
                                   partial_rotary_factor=0.5, tie_word_embeddings=False), None, []),
    "phi-3": (tf.Phi3Config, dict(hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=4,
                                  num_key_value_heads=4, tie_word_embeddings=False, pad_token_id=0),
              "phi3.jinja", ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]),
    "gemma3": (tf.Gemma3TextConfig, dict(hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=2,
                                         num_key_value_heads=1, head_dim=16, sliding_window=16,
                                         tie_word_embeddings=True),
               "gemma.jinja", ["<start_of_turn>", "<end_of_turn>"]),
    "gpt-neox": (tf.GPTNeoXConfig, dict(hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=4,
                                        rotary_pct=0.25, tie_word_embeddings=False), None, []),  # Pythia
    "opt": (tf.OPTConfig, dict(hidden_size=H, ffn_dim=I, num_hidden_layers=L, num_attention_heads=4,
                               word_embed_proj_dim=H, dropout=0.1, tie_word_embeddings=True), None, []),
    "gpt2": (tf.GPT2Config, dict(n_embd=H, n_layer=L, n_head=4, n_inner=I, resid_pdrop=0.1, embd_pdrop=0.1,
                                 attn_pdrop=0.1, tie_word_embeddings=True), None, []),
}


def _tokenizer(base, name):
    _, _, template, specials = ARCHS[name]
    tok = copy.deepcopy(base)
    if specials:
        tok.add_special_tokens({"additional_special_tokens": specials})
    if template:
        tok.chat_template = (TEMPLATES / template).read_text()
    return tok


def _model(name, tok, seed=0):
    config_class, kwargs, _, _ = ARCHS[name]
    config = config_class(vocab_size=len(tok), max_position_embeddings=128, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, **{"pad_token_id": tok.pad_token_id, **kwargs})
    torch.manual_seed(seed)
    return tf.AutoModelForCausalLM.from_config(config)


def _args(tmp_path, **kw):
    defaults = dict(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3,
                    report_to=[], use_cpu=True, logging_steps=1, save_strategy="no")
    return UnlearningConfig(**{**defaults, **kw})


@pytest.fixture(scope="module")
def data(synthetic_splits):
    return (datasets.Dataset.from_list(synthetic_splits["forget10"][:4]),
            datasets.Dataset.from_list(synthetic_splits["retain90"][:4]))


@pytest.fixture(scope="module")
def npo_sophia_run(tokenizer, data, tmp_path_factory):
    """One NPO + SophiaG step (Hessian refreshed at that step) per architecture, then saved; cached per arch."""
    runs = {}

    def run(name):
        if name not in runs:
            tok = _tokenizer(tokenizer, name)
            model = _model(name, tok)
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            out = tmp_path_factory.mktemp(name.replace(".", "_"))
            trainer = UnlearningTrainer(
                model=model, processing_class=tok, forget_dataset=data[0], retain_dataset=data[1],
                args=_args(out, unlearn_method="npo", unlearn_optimizer="sophia", hessian_update_interval=1))
            trainer.train()
            trainer.save_model()
            runs[name] = (trainer, tok, before, out)
        return runs[name]

    return run


@pytest.mark.parametrize("name", ARCHS)
def test_npo_sophia_step(name, npo_sophia_run):
    trainer, _, before, _ = npo_sophia_run(name)
    assert trainer.state.global_step == 1 and trainer.sophia.hessian_updates == 1
    loss = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert loss and torch.isfinite(torch.tensor(loss[0]))
    moved = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert len(moved) == len(before)  # every (deduplicated) parameter tensor was updated


@pytest.mark.parametrize("name", ARCHS)
def test_tied_embeddings_stay_tied_through_step_and_reload(name, npo_sophia_run):
    trainer, _, _, out = npo_sophia_run(name)
    tied = ARCHS[name][1].get("tie_word_embeddings")
    for model in (trainer.model, tf.AutoModelForCausalLM.from_pretrained(out)):
        same = model.get_input_embeddings().weight is model.get_output_embeddings().weight
        assert same == bool(tied), f"{name}: tie_word_embeddings={tied} but shared={same}"


@pytest.mark.parametrize("name", ARCHS)
def test_save_and_reload(name, npo_sophia_run):
    trainer, tok, _, out = npo_sophia_run(name)
    reloaded = tf.AutoModelForCausalLM.from_pretrained(out).eval()
    model = trainer.model.eval()
    ids = torch.tensor([encode_qa(tok, "Who is X?", "X is a writer.", template=trainer.prompt_template).input_ids])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits, rtol=0, atol=1e-6)
    assert load_prompt_template(out) == trainer.prompt_template


@pytest.mark.parametrize("name", ARCHS)
def test_undial_lora_all_linear_step(name, tokenizer, data, tmp_path):
    from peft import LoraConfig

    tok = _tokenizer(tokenizer, name)
    trainer = UnlearningTrainer(
        model=_model(name, tok), processing_class=tok, forget_dataset=data[0], retain_dataset=data[1],
        args=_args(tmp_path, unlearn_method="undial", retain_weight=1.0),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    lora_b = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    # all-linear: every linear layer of every decoder layer carries an adapter (whether the output head does
    # depends on the peft version)
    layers = decoder_layers(trainer.model)
    linear = [n for n, m in layers.named_modules() if type(m).__name__ in ("Linear", "Conv1D")
              and not type(m).__module__.startswith("peft") and "lora_" not in n]
    assert linear and all(n.endswith(".base_layer") for n in linear), linear  # each wrapped by a LoRA layer
    assert trainer.reference.adapters_off
    trainer.train()
    moved = [n for n, p in trainer.model.named_parameters() if "lora_B" in n and not torch.equal(p.detach(), lora_b[n])]
    assert moved and len(moved) == len(lora_b)
    assert all(not p.requires_grad for n, p in trainer.model.named_parameters() if "lora_" not in n)


@pytest.mark.parametrize("name", ARCHS)
def test_tofu_scoring_is_batch_size_invariant(name, tokenizer, synthetic_splits):
    tok = _tokenizer(tokenizer, name)
    model = _model(name, tok).eval()
    rows = synthetic_splits["forget10"][:5]
    pairs = [(r["question"], r["answer"]) for r in rows] + [(rows[0]["question"], "No.")]
    one = score_answers(model, tok, pairs, batch_size=1, with_token_stats=True, show_progress=False)
    many = score_answers(model, tok, pairs, batch_size=4, with_token_stats=True, show_progress=False)
    for a, b in zip(one, many):
        assert a.avg_nll == pytest.approx(b.avg_nll, rel=1e-5, abs=1e-6)
        assert a.num_tokens == b.num_tokens


@pytest.mark.parametrize("name", ARCHS)
def test_chat_format_and_dropout_off(name, npo_sophia_run):
    trainer, tok, _, _ = npo_sophia_run(name)
    template = ARCHS[name][2]
    assert trainer.prompt_template.name == ("chat" if template else "plain")
    example = encode_qa(tok, "Who is X?", "X is a writer.", template=trainer.prompt_template)
    prompt = encode_prompt(tok, "Who is X?", template=trainer.prompt_template)
    assert example.input_ids[: len(prompt)] == prompt and example.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    scored = tok.decode([t for t, lab in zip(example.input_ids, example.labels) if lab != IGNORE_INDEX])
    assert "X is a writer." in scored and scored.endswith(tok.eos_token)
    if template:  # the prompt is the family's own rendering of the user turn
        assert tok.decode(prompt) == tok.apply_chat_template([{"role": "user", "content": "Who is X?"}], tokenize=False,
                                                             add_generation_prompt=True, date_string="26 Jul 2024")
    # --disable_dropout (default): train-mode forwards are deterministic, for the policy and the reference
    ids = torch.tensor([example.input_ids])
    for model in (trainer.model, trainer.reference.module):
        model.train()
        with torch.no_grad():
            torch.testing.assert_close(model(ids).logits, model(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["opt", "gpt2"])
def test_disable_dropout_reaches_functional_dropout(name, tokenizer):
    """OPT applies dropout from float attributes (nn.functional.dropout(p=self.dropout)), which zeroing nn.Dropout
    modules (TRL's disable_dropout_in_model) misses; `disable_dropout` catches both."""
    from trl.trainer.utils import disable_dropout_in_model

    from hf_unlearn.models.dropout import disable_dropout

    tok = _tokenizer(tokenizer, name)
    ids = torch.tensor([encode_qa(tok, "Who is X?", "X is a writer.").input_ids])

    def noisy(model):
        model.train()
        with torch.no_grad():
            return not torch.equal(model(ids).logits, model(ids).logits)

    model = _model(name, tok)
    assert noisy(model)
    disable_dropout_in_model(model)
    assert noisy(model) == (name == "opt")  # GPT-2 has only nn.Dropout modules; OPT keeps its functional dropout
    assert disable_dropout(model) == (L + 1 if name == "opt" else 0)  # OPT: the decoder's and each layer's `dropout`
    assert not noisy(model)
