"""Prompt templates: each preset token for token against the format written out by hand (question,
answer, EOS, masking), the bad inputs, and one format across fine-tuning, unlearning and evaluation."""

import copy
import json
from pathlib import Path

import pytest

from hf_unlearn.data.formatting import (
    IGNORE_INDEX, PromptTemplate, encode_prompt, encode_qa, load_prompt_template, resolve_prompt_template,
)

TEMPLATES = Path(__file__).parent / "fixtures" / "chat_templates"
Q, A = "Who wrote Blue Rivers?", "Ana Lima is the author of Blue Rivers."
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


@pytest.fixture(scope="module")
def llama3_tokenizer(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": LLAMA3_SPECIALS})
    tok.bos_token, tok.eos_token = "<|begin_of_text|>", "<|eot_id|>"
    tok.chat_template = (TEMPLATES / "llama3.jinja").read_text()
    return tok


def ids(tok, text, special=False):
    return tok(text, add_special_tokens=special)["input_ids"]


def scored(tok, example):
    return tok.decode([t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX])


def check(tok, template, full_text, answer_text, bos=True):
    """encode_qa == tokenizer(hand-written text) + EOS, with exactly `answer_text` + EOS scored."""
    example = encode_qa(tok, Q, A, template=template)
    expected = ([tok.bos_token_id] if bos else []) + ids(tok, full_text) + [tok.eos_token_id]
    assert example.input_ids == expected
    assert scored(tok, example) == answer_text + tok.eos_token
    assert len(example.labels) == len(example.input_ids)
    return example


def test_llama2_chat_tofu_token_for_token(tokenizer):
    template = resolve_prompt_template(tokenizer, "llama2_chat_tofu")
    example = check(tokenizer, template, f"[INST] {Q} [/INST]{A}", A)
    # The prompt is what generation starts from: BOS "[INST] q [/INST]".
    prompt = encode_prompt(tokenizer, Q, template=template)
    assert prompt == [tokenizer.bos_token_id] + ids(tokenizer, f"[INST] {Q} [/INST]")
    assert example.labels[: len(prompt)] == [IGNORE_INDEX] * len(prompt)


def test_question_answer_token_for_token(tokenizer):
    template = resolve_prompt_template(tokenizer, "question_answer")
    # Tokenised whole, like the TOFU code: " A" (space from "Answer: ") is one token, scored with the answer.
    example = check(tokenizer, template, f"Question: {Q}\nAnswer: {A}", " " + A)
    assert tokenizer.decode(encode_prompt(tokenizer, Q, template=template), skip_special_tokens=True) == \
        f"Question: {Q}\nAnswer: "
    assert example.input_ids.count(tokenizer.eos_token_id) == 1
    again = encode_qa(tokenizer, Q, A + tokenizer.eos_token, template=template)
    assert again.input_ids == example.input_ids  # EOS never doubled


def test_plain_and_default_keep_the_0_1_format(tokenizer):
    # The default (auto, no chat template) is today's plain format, prompt and answer tokenised apart.
    expected = [tokenizer.bos_token_id] + ids(tokenizer, f"Question: {Q}\nAnswer: ") + ids(tokenizer, A) + \
        [tokenizer.eos_token_id]
    for template in (None, resolve_prompt_template(tokenizer), resolve_prompt_template(tokenizer, "plain")):
        example = encode_qa(tokenizer, Q, A, template=template)
        assert example.input_ids == expected
        assert scored(tokenizer, example) == A + tokenizer.eos_token


def test_llama3_chat_token_for_token(llama3_tokenizer):
    tok = llama3_tokenizer
    template = resolve_prompt_template(tok, "llama3_chat")
    prompt = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
              "Today Date: 10 Apr 2025\n\nYou are a helpful assistant.<|eot_id|>"
              f"<|start_header_id|>user<|end_header_id|>\n\n{Q}<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n")
    example = encode_qa(tok, Q, A, template=template)
    assert example.input_ids == ids(tok, prompt + A + "<|eot_id|>")  # EOS (<|eot_id|>) once, from the template
    assert scored(tok, example) == A + "<|eot_id|>"
    assert encode_prompt(tok, Q, template=template) == ids(tok, prompt)


def test_chat_date_is_pinned_never_today(llama3_tokenizer):
    text = llama3_tokenizer.decode(encode_prompt(llama3_tokenizer, Q))  # auto -> chat
    assert "Today Date: 26 Jul 2024\n" in text
    given = resolve_prompt_template(llama3_tokenizer, "chat", date_string="01 Jan 2030")
    assert "Today Date: 01 Jan 2030\n" in llama3_tokenizer.decode(encode_prompt(llama3_tokenizer, Q, template=given))


def test_explicit_fields_and_format_string(tokenizer):
    by_string = resolve_prompt_template(tokenizer, "Q: {question}\nA:")
    by_tags = resolve_prompt_template(tokenizer, user_start_tag="Q: ", user_end_tag="\nA:")
    for template in (by_string, by_tags):
        check(tokenizer, template, f"Q: {Q}\nA:{A}", A)
    system = resolve_prompt_template(tokenizer, "llama2_chat_tofu", system_prompt="Be brief. ")
    check(tokenizer, system, f"Be brief. [INST] {Q} [/INST]{A}", A)


def test_bad_templates_fail_with_the_fix(tokenizer, llama3_tokenizer):
    with pytest.raises(ValueError, match="must contain \\{question\\}"):
        resolve_prompt_template(tokenizer, "Answer the question:")
    with pytest.raises(ValueError, match="this tokenizer has none"):
        resolve_prompt_template(tokenizer, "llama3_chat")
    with pytest.raises(ValueError, match="this tokenizer has none"):
        resolve_prompt_template(tokenizer, "chat")
    with pytest.raises(ValueError, match="never writes a date.*drop --date_string"):
        resolve_prompt_template(tokenizer, "llama2_chat_tofu", date_string="10 Apr 2025")
    no_date = copy.deepcopy(llama3_tokenizer)
    no_date.chat_template = (TEMPLATES / "mistral.jinja").read_text()
    with pytest.raises(ValueError, match="never writes a date"):
        resolve_prompt_template(no_date, "chat", date_string="10 Apr 2025")
    with pytest.raises(ValueError, match="ignores --user_start_tag"):
        resolve_prompt_template(llama3_tokenizer, "chat", user_start_tag="Q: ")
    drops = copy.deepcopy(llama3_tokenizer)
    drops.chat_template = "{{ bos_token }}{% if add_generation_prompt %}Assistant:{% endif %}"
    with pytest.raises(ValueError, match="does not put the question into the prompt"):
        resolve_prompt_template(drops, "chat")


def test_one_format_through_finetune_unlearn_and_eval(tmp_path, tokenizer, make_model, forget_retain):
    """The template reaches the unlearning pairs, is saved with the model and in the card, and `auto` reads it back
    when the saved model is fine-tuned / unlearned / evaluated again."""
    from hf_unlearn import UnlearningConfig, UnlearningTrainer
    from hf_unlearn.data.pairing import build_unlearning_dataset

    forget, retain = forget_retain
    forget, retain = forget.select(range(4)), retain.select(range(4))
    args = UnlearningConfig(output_dir=str(tmp_path / "out"), unlearn_method="ga", max_steps=1, report_to=[],
                            per_device_train_batch_size=2, prompt_template="llama2_chat_tofu", use_cpu=True)
    trainer = UnlearningTrainer(model=make_model(), args=args, forget_dataset=forget, processing_class=tokenizer)
    expected = build_unlearning_dataset(tokenizer, forget, template=resolve_prompt_template(tokenizer, "llama2_chat_tofu"))
    assert trainer.train_dataset.forget[0].input_ids == expected.forget[0].input_ids
    assert trainer.train_dataset.forget[0].input_ids[:4] == [tokenizer.bos_token_id] + ids(tokenizer, "[INST] ")[:3]
    trainer.train()
    trainer.save_model()
    trainer.create_model_card()
    saved = load_prompt_template(tmp_path / "out")
    assert saved == trainer.prompt_template and saved.name == "llama2_chat_tofu"
    assert '"user_start_tag": "[INST] "' in (tmp_path / "out" / "README.md").read_text()
    # A later run on the saved model, with the default auto, uses the saved format.
    assert resolve_prompt_template(tokenizer, "auto", model_dir=str(tmp_path / "out")) == saved
    assert json.loads((tmp_path / "out" / "prompt_template.json").read_text())["user_end_tag"] == " [/INST]"


def test_dataclass_defaults_describe_plain():
    assert PromptTemplate().user_start_tag + "{question}" + PromptTemplate().user_end_tag + \
        PromptTemplate().asst_start_tag == "Question: {question}\nAnswer: "
