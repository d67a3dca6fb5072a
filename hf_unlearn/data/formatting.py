"""Prompt templates and the tokenisation of question/answer pairs, shared by fine-tuning, unlearning
and evaluation.

One function, `encode_qa`, decides which tokens a model sees and which it is scored on, under a
`PromptTemplate` (``--prompt_template`` and its fields, see `PromptTemplateArguments`):

* ``auto`` (the default): ``chat`` when the tokenizer has a chat template, else ``plain``;
* ``chat``: the tokenizer's chat template, the user turn rendered with ``add_generation_prompt=True``;
* ``plain``: ``"Question: {q}\\nAnswer: "``;
* ``question_answer``: the TOFU format of phi-1.5 and Llama-2-7b base (user_start ``"Question: "``,
  user_end ``"\\n"``, asst_start ``"Answer: "``, asst_end ``"\\n\\n"``);
* ``llama2_chat_tofu``: the TOFU format of Llama-2-7b-chat (``"[INST] "``, ``" [/INST]"``, ``""``,
  ``" "``), no chat template;
* ``llama3_chat``: the chat template with system prompt "You are a helpful assistant." and
  date_string "10 Apr 2025" (the reference evaluator's Llama-3.2-Instruct setting);
* a format string holding ``{question}`` (e.g. ``"Q: {question}\\nA: "``), or explicit tags.

Tokenisation. ``chat`` and ``plain`` tokenise prompt and answer separately and concatenate them
(the project's format since 0.1; the prompt length is exact). Every other template tokenises the
whole text ``prompt + answer`` at once, as the original TOFU code and the reference evaluator do, so
a model fine-tuned by them sees the tokens it was trained on; the prompt mask then covers the
longest common prefix of the prompt's own tokens and the whole text's (a token that straddles the
boundary, such as " The" after "Answer:", is scored as part of the answer).

Either way: the prompt gets the tokenizer's special tokens (BOS) unless it comes from a chat
template (which writes its own); EOS ends the answer exactly once; labels are -100 on the prompt
(and later, in the collator, on padding). ``asst_end_tag`` closes an assistant turn that another
turn follows; after the last answer comes EOS, as in the reference evaluator. Chat templates always
get a pinned ``date_string`` (never today's date, which Llama-3 templates insert otherwise).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..answer_tokens import IGNORE_INDEX  # the one definition
from ..validation import read_text

PLAIN_TEMPLATE = "Question: {question}\nAnswer: "
#: The date a chat template gets when no date_string is given: Llama-3.1/3.2 templates' own fallback.
DEFAULT_DATE_STRING = "26 Jul 2024"
TEMPLATE_FILE = "prompt_template.json"
_QUESTION_PROBE = "Who wrote the probe question of hf-unlearn?"


@dataclass(frozen=True)
class PromptTemplate:
    """A resolved prompt format (see the module docstring); `resolve_prompt_template` builds and checks one."""

    name: str = "plain"
    apply_chat_template: bool = False
    user_start_tag: str = "Question: "
    user_end_tag: str = "\n"
    asst_start_tag: str = "Answer: "
    asst_end_tag: str = ""
    system_prompt: str | None = None
    date_string: str = DEFAULT_DATE_STRING
    whole_text: bool = False  # tokenise prompt + answer at once (reference evaluator) or separately (chat, plain)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, output_dir) -> Path:
        path = Path(output_dir) / TEMPLATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


PRESETS: dict[str, PromptTemplate | None] = {
    "auto": None,  # chat or plain, by tokenizer
    "chat": PromptTemplate(name="chat", apply_chat_template=True, user_start_tag="", user_end_tag="",
                           asst_start_tag="", asst_end_tag=""),
    "plain": PromptTemplate(),
    "question_answer": PromptTemplate(name="question_answer", asst_end_tag="\n\n", whole_text=True),
    "llama2_chat_tofu": PromptTemplate(name="llama2_chat_tofu", user_start_tag="[INST] ", user_end_tag=" [/INST]",
                                       asst_start_tag="", asst_end_tag=" ", whole_text=True),
    "llama3_chat": PromptTemplate(name="llama3_chat", apply_chat_template=True, user_start_tag="", user_end_tag="",
                                  asst_start_tag="", asst_end_tag="", system_prompt="You are a helpful assistant.",
                                  date_string="10 Apr 2025", whole_text=True),
}
TAG_FIELDS = ("user_start_tag", "user_end_tag", "asst_start_tag", "asst_end_tag")


@dataclass
class PromptTemplateArguments:
    """The ``--prompt_template`` flags, shared by fine-tuning, unlearning and evaluation."""

    prompt_template: str = field(
        default="auto",
        metadata={"help": f"Prompt format: a preset ({', '.join(PRESETS)}), a format string with {{question}}, "
                          "or a prompt_template.json written by a previous run. Default auto: the tokenizer's chat "
                          "template when it has one, else 'Question: {question}\\nAnswer: ' (the format of "
                          "hf-unlearn 0.1). Use the format the model was fine-tuned on: llama2_chat_tofu or "
                          "question_answer for the TOFU targets of Llama-2-7b-chat or phi-1.5 / Llama-2-7b, "
                          "llama3_chat for Llama-3.x-Instruct."},
    )
    user_start_tag: str | None = field(default=None, metadata={"help": "Text before the question (overrides the preset)."})
    user_end_tag: str | None = field(default=None, metadata={"help": "Text after the question (overrides the preset)."})
    asst_start_tag: str | None = field(
        default=None, metadata={"help": "Text that opens the answer; part of the prompt (overrides the preset)."}
    )
    asst_end_tag: str | None = field(
        default=None, metadata={"help": "Text closing an answer that another turn follows; the last answer ends with "
                                        "EOS (overrides the preset)."}
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System message (chat template) or text before the first tag (no chat "
                                        "template). Overrides the preset."}
    )
    date_string: str | None = field(
        default=None,
        metadata={"help": f"Date a chat template writes (Llama-3 'Today Date'). Default: the preset's, else "
                          f"{DEFAULT_DATE_STRING!r} (the Llama-3.1 template's own fallback), never today's date."},
    )
    apply_chat_template: bool | None = field(
        default=None, metadata={"help": "Use the tokenizer's chat template (overrides the preset)."}
    )

    def prompt_template_fields(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(PromptTemplateArguments)}


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def num_answer_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def default_template(tokenizer) -> PromptTemplate:
    """``auto``: the tokenizer's chat template when it has one, else ``plain``."""
    return PRESETS["chat"] if has_chat_template(tokenizer) else PRESETS["plain"]


def load_prompt_template(path) -> PromptTemplate:
    """A template saved by `PromptTemplate.save` (a prompt_template.json, or the folder holding one)."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / TEMPLATE_FILE
    values = json.loads(read_text(path, "prompt template"))
    known = {f.name for f in fields(PromptTemplate)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path} has unknown prompt-template fields {unknown}; known: {sorted(known)}.")
    return PromptTemplate(**values)


def saved_template_path(model_dir) -> Path | None:
    """The prompt_template.json saved beside a local model, if any."""
    if not model_dir:
        return None
    path = Path(model_dir).expanduser() / TEMPLATE_FILE
    return path if path.is_file() else None


def resolve_prompt_template(tokenizer, prompt_template="auto", model_dir=None, **overrides) -> PromptTemplate:
    """The template `prompt_template` (preset name, format string with ``{question}``, saved json, or a
    `PromptTemplate`) with the non-None `overrides` (the fields of `PromptTemplateArguments`), checked
    against `tokenizer`. With ``auto`` and no overrides, a template saved in `model_dir` (a model
    fine-tuned or unlearned by hf-unlearn) is used, so a model is scored on the format it was trained on.
    Raises ValueError, naming the fix, for a template without the question, a chat-template format on a
    tokenizer without one, tags under a chat template, or a date_string that the template never writes.
    """
    known = {f.name for f in fields(PromptTemplateArguments)} - {"prompt_template"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"Unknown prompt-template fields {unknown}; known: {sorted(known)}.")
    given = {k: v for k, v in overrides.items() if v is not None}
    name = prompt_template if prompt_template is not None else "auto"
    saved = saved_template_path(model_dir)
    if isinstance(name, PromptTemplate):
        base = name
    elif name == "auto" and saved is not None and not given:
        base = load_prompt_template(saved)
    elif name == "auto":
        wants_tags = any(k in given for k in TAG_FIELDS) or given.get("apply_chat_template") is False
        if wants_tags:  # explicit tags: the reference evaluator's template fields, tokenised as it does
            base = replace(PRESETS["question_answer"], name="custom", asst_start_tag="", asst_end_tag="")
        elif given.get("apply_chat_template"):
            base = PRESETS["chat"]
        else:
            base = default_template(tokenizer)
    elif name in PRESETS:
        base = PRESETS[name]
    elif name.endswith(".json") or Path(name).expanduser().is_dir():
        if not Path(name).expanduser().exists():
            raise FileNotFoundError(f"--prompt_template {name}: no such file.")
        base = load_prompt_template(name)
    elif name.count("{question}") == 1:
        start, end = name.split("{question}")
        base = PromptTemplate(name="custom", user_start_tag=start, user_end_tag=end, asst_start_tag="",
                              asst_end_tag="", whole_text=True)
    else:
        raise ValueError(
            f"--prompt_template {name!r} is neither a preset ({', '.join(PRESETS)}) nor a format string with the "
            "question: a template must contain {question} exactly once where the question goes, e.g. "
            "'Question: {question}\\nAnswer: '."
        )
    template = replace(base, **given)
    where = f"--prompt_template {template.name}"
    if template.apply_chat_template:
        if not has_chat_template(tokenizer):
            raise ValueError(
                f"{where} uses the tokenizer's chat template, but this tokenizer has none: choose a format without "
                "one (question_answer, llama2_chat_tofu, plain, a '{question}' format string or the tag flags), or "
                "load a tokenizer that has a chat template."
            )
        tags = [k for k in TAG_FIELDS if given.get(k)]
        if tags:
            raise ValueError(f"{where} renders prompts with the chat template, which ignores --{tags[0]}: drop the "
                             "tags, or add --apply_chat_template false to use them instead.")
    if _QUESTION_PROBE not in prompt_text(tokenizer, _QUESTION_PROBE, template):
        raise ValueError(
            f"{where} does not put the question into the prompt (the tokenizer's chat template drops the user "
            "message): fix the chat template, or use a tag format (--prompt_template question_answer, or "
            "'Q: {question}\\nA: ')."
        )
    if "date_string" in given:
        other = replace(template, date_string=template.date_string + " (probe)")
        if not template.apply_chat_template or prompt_text(tokenizer, "q", other) == prompt_text(tokenizer, "q", template):
            raise ValueError(
                f"--date_string {template.date_string!r} was given, but {where} never writes a date (only chat "
                "templates such as Llama-3's do): drop --date_string."
            )
    return template


def _messages(template: PromptTemplate, question: str, answer: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": template.system_prompt}] if template.system_prompt else []
    messages.append({"role": "user", "content": question})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def _render_chat(tokenizer, template: PromptTemplate, messages: list[dict], generation_prompt: bool) -> str:
    # date_string always goes in: templates that write a date would otherwise write today's.
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                         date_string=template.date_string)


def prompt_text(tokenizer, question: str, template: PromptTemplate | None = None) -> str:
    template = template or default_template(tokenizer)
    if template.apply_chat_template:
        return _render_chat(tokenizer, template, _messages(template, question), True)
    return (template.system_prompt or "") + template.user_start_tag + question + template.user_end_tag + \
        template.asst_start_tag


def full_text(tokenizer, question: str, answer: str, template: PromptTemplate | None = None) -> str:
    """Prompt and answer as one text (before EOS)."""
    template = template or default_template(tokenizer)
    if template.apply_chat_template:
        return _render_chat(tokenizer, template, _messages(template, question, answer), False)
    return prompt_text(tokenizer, question, template) + answer


def answer_text(tokenizer, question: str, answer: str, template: PromptTemplate | None = None) -> str:
    template = template or default_template(tokenizer)
    if not template.apply_chat_template:
        return answer
    prompt = prompt_text(tokenizer, question, template)
    full = full_text(tokenizer, question, answer, template)
    if not full.startswith(prompt):  # templates that rewrite earlier turns: score the answer alone
        return answer
    return full[len(prompt):]


def _tokenize(tokenizer, text: str, template: PromptTemplate) -> list[int]:
    # Chat templates already contain the special tokens they need.
    return tokenizer(text, add_special_tokens=not template.apply_chat_template)["input_ids"]


def encode_prompt(tokenizer, question: str, max_prompt_length: int | None = None,
                  template: PromptTemplate | None = None) -> list[int]:
    """The prompt's token ids: what generation starts from."""
    template = template or default_template(tokenizer)
    ids = _tokenize(tokenizer, prompt_text(tokenizer, question, template), template)
    if max_prompt_length is not None and len(ids) > max_prompt_length:
        ids = ids[-max_prompt_length:]  # keep_end, as TRL truncates prompts
    return ids


def _eos_id(tokenizer) -> int:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("The tokenizer has no eos_token: set tokenizer.eos_token before training.")
    return eos


def encode_answer(tokenizer, question: str, answer: str, template: PromptTemplate | None = None) -> list[int]:
    ids = tokenizer(answer_text(tokenizer, question, answer, template), add_special_tokens=False)["input_ids"]
    return _ends_with_eos(tokenizer, ids)


def _ends_with_eos(tokenizer, ids: list[int]) -> list[int]:
    """`ids` ending in exactly one EOS. A chat template may close the turn with EOS and then a newline (ChatML:
    ``<|im_end|>\n`` where EOS is ``<|im_end|>``): the turn ends at that EOS, as generation does, and the
    whitespace after it is neither trained nor scored (appending another EOS would teach ``<|im_end|>\n<|im_end|>``)."""
    eos = _eos_id(tokenizer)
    if eos in ids:
        last = len(ids) - 1 - ids[::-1].index(eos)
        if not tokenizer.decode(ids[last + 1:]).strip():
            return ids[: last + 1]
    return ids + [eos]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_qa(
    tokenizer, question: str, answer: str, max_length: int | None = None, max_prompt_length: int | None = None,
    template: PromptTemplate | None = None,
) -> EncodedExample:
    """Token ids of prompt + answer (+EOS once) and labels that are -100 on the prompt.

    The answer is cut at `max_length - len(prompt)` tokens; the result may have zero answer tokens,
    which callers report (see `check_answers_fit`).
    """
    template = template or default_template(tokenizer)
    if template.whole_text:
        ids = _ends_with_eos(tokenizer, _tokenize(tokenizer, full_text(tokenizer, question, answer, template), template))
        n_prompt = min(_common_prefix(encode_prompt(tokenizer, question, template=template), ids), len(ids) - 1)
        prompt_ids, answer_ids = ids[:n_prompt], ids[n_prompt:]
        if max_prompt_length is not None and len(prompt_ids) > max_prompt_length:
            prompt_ids = prompt_ids[-max_prompt_length:]
    else:
        prompt_ids = encode_prompt(tokenizer, question, max_prompt_length, template)
        answer_ids = encode_answer(tokenizer, question, answer, template)
    if max_length is not None:
        answer_ids = answer_ids[: max(0, max_length - len(prompt_ids))]
    return EncodedExample(prompt_ids + answer_ids, [IGNORE_INDEX] * len(prompt_ids) + answer_ids)

