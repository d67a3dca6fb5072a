"""Up-front checks of a run: everything a script will need, checked before any evaluation or training
step, with nothing written. Each problem raises one `RunInputError` (a `ValueError`) that names it and
says how to fix it.

The scripts call these in order: training numbers, model source and flags, data (every row of every
file, named by file and line), the retain reference, the output folder, the checkpoint to resume from.
What needs the loaded model (vocabulary, attention implementation) is checked right after loading, still
before anything runs; `removed_on_failure` takes back the output folder if a later start-up step fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

logger = logging.getLogger(__name__)

# Above this fraction of forget rows found again in the retain data the run is refused (the retain term
# would undo the unlearning); `--allow_overlap` accepts it.
OVERLAP_THRESHOLD = 0.05
MODEL_FILES = ("config.json", "adapter_config.json", "model.safetensors", "model.safetensors.index.json",
               "pytorch_model.bin", "adapter_model.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
REFERENCE_FILES = ("tofu_eval.json", "muse_eval.json")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
                "pytorch_model.bin", "latest")  # `latest`: DeepSpeed's own checkpoint
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
ATTENTION_FOR_DOUBLE_BACKWARD = ("eager",)
CHECKSUM_LIMIT = 256 * 2**20  # torch.save files up to this size have their checksums read before a resume


class RunInputError(ValueError):
    """A bad input of a run, found before any work."""


def _problems(problems: list[str]) -> None:
    if len(problems) == 1:
        raise RunInputError(problems[0])
    if problems:
        raise RunInputError("Bad inputs:\n- " + "\n- ".join(problems))


# ------------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------------

RUN_TOFU_EPILOG = """most used flags (every flag is listed above):
  --unlearn_method       ga, grad_diff (default), kl, npo, simnpo, idk_nll, idk_dpo, undial, rmu, wga, satimp, ceu, pdu
  --unlearn_optimizer    adamw (default), sophia (SOUL) or influence (one-shot influence unlearning: one pass,
                         one damped Newton step; --influence_damping); --hessian_estimator gnb|hutchinson|empirical
  --forget_split / --retain_split / --dataset_name   what to forget, what to keep, where the data is
  --retain_reference     the retain model's tofu_eval.json (forget quality)
  --eval_strategy steps --eval_steps N --eval_subsample 20   forget quality during training
  --learning_rate, --max_steps / --num_train_epochs, --per_device_train_batch_size
  --use_peft --lora_r 8 --lora_target_modules q_proj v_proj   LoRA
  --config recipes/tofu/<method>_<optimizer>.yaml   a recipe (the same flags as YAML)
  --resume_from_checkpoint true | PATH   continue a run;  --overwrite_output_dir   replace an earlier output
  on CPU: --bf16 false with the recipes (they are GPU settings)"""

FINETUNE_EPILOG = """most used flags:
  --model_name_or_path tiny-llama --tiny_size demo   a small Llama built from scratch on the data
  --split full (the target) | retain90 / retain95 / retain99 (the retain model, whose tofu_eval.json is the reference)
  --num_train_epochs, --learning_rate, --per_device_train_batch_size, --max_train_rows
  --resume_from_checkpoint true | PATH,  --overwrite_output_dir,  --skip_evaluation"""


def parse_arguments(parser, argv: Sequence[str]):
    """`parser.parse_args_and_config`; the arguments' own refusals as `RunInputError` (TrainingArguments' precision
    refusal turned into the fix); with --disable_tqdm every library's progress bars off."""
    try:
        parsed = parser.parse_args_and_config(args=list(argv))
        if any(getattr(part, "disable_tqdm", False) for part in parsed):
            disable_progress_bars()
        return parsed
    except UnicodeDecodeError as err:
        raise RunInputError(f"--config {config_file_of(argv)}: {not_utf8(err)}") from None
    except ValueError as err:  # raised by the arguments' own checks (__post_init__): a refusal of the flags
        text = str(err)
        for flag in ("bf16", "fp16"):
            if flag in text and ("support" in text or "requires a GPU" in text):
                raise RunInputError(f"--{flag} true (the GPU recipes set it) needs a GPU; this machine has none: add "
                                    f"--{flag} false (and --dtype float32).") from None
        raise RunInputError(text) from None


def disable_progress_bars() -> None:
    """--disable_tqdm: every library's bars off (loading and saving weights, datasets, the Hub), not only
    Trainer's."""
    import datasets
    import huggingface_hub.utils
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    huggingface_hub.utils.disable_progress_bars()


def run_script(main: Callable[[], Any]) -> int:
    """A script's `__main__`: a refusal (`RunInputError`) prints its message alone on stderr and exits with 2, as
    argparse does, without a traceback; SIGTERM ends the run as an exception does, so that an interrupted save
    cleans up after itself."""
    import signal

    def _terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    try:
        main()
    except RunInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def not_utf8(err: UnicodeDecodeError) -> str:
    return (f"not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}): save it as UTF-8 (e.g. "
            "iconv -f latin1 -t utf-8 FILE > NEW).")


def read_text(path: str | Path, what: str) -> str:
    """The text of `path`, or one `RunInputError` naming the file and `what` it is when it is not UTF-8."""
    try:
        return Path(path).expanduser().read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RunInputError(f"{what} {path}: {not_utf8(err)}") from None


# ------------------------------------------------------------------------------------------------
# training numbers
# ------------------------------------------------------------------------------------------------


def check_training_numbers(args) -> None:
    """Learning rate finite and > 0, batch sizes and accumulation >= 1, a run of at least one step."""
    problems = []
    lr = args.learning_rate
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        problems.append(f"--learning_rate must be a finite number > 0, got {lr} (a learning rate of 0 trains nothing; "
                        "a negative one descends the wrong way).")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(args, name, 1)
        if not isinstance(value, int) or value < 1:
            problems.append(f"--{name} must be an integer >= 1, got {value}.")
    if args.max_steps == 0 or (args.max_steps < 0 and not args.num_train_epochs > 0):
        problems.append(f"The run would train no step (--max_steps {args.max_steps}, --num_train_epochs "
                        f"{args.num_train_epochs}): give --max_steps > 0 or --num_train_epochs > 0.")
    for name in ("save_steps", "eval_steps"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            problems.append(f"--{name} must be > 0, got {value}.")
    decay = getattr(args, "weight_decay", 0.0)
    if not math.isfinite(decay) or decay < 0:
        problems.append(f"--weight_decay must be a finite number >= 0, got {decay} (a negative decay pushes the "
                        "weights away from 0).")
    clip = getattr(args, "max_grad_norm", None)
    if clip is not None and (not math.isfinite(clip) or clip < 0):
        problems.append(f"--max_grad_norm must be a finite number >= 0 (0: no clipping), got {clip}: with {clip} "
                        "clipping would silently be off.")
    for name in ("adam_beta1", "adam_beta2"):
        value = getattr(args, name, 0.9)
        if not 0.0 <= value < 1.0:
            problems.append(f"--{name} must be in [0, 1), got {value}.")
    epsilon = getattr(args, "adam_epsilon", 1e-8)
    if not math.isfinite(epsilon) or epsilon <= 0:
        problems.append(f"--adam_epsilon must be a finite number > 0, got {epsilon}.")
    warmup = getattr(args, "warmup_steps", 0)
    if not math.isfinite(warmup) or warmup < 0:
        problems.append(f"--warmup_steps must be >= 0, got {warmup}.")
    _problems(problems)


def check_stop_rule(bounds: Mapping[str, tuple[float | None, float, float]]) -> None:
    """Stop-rule targets inside their metric's range, `{flag: (value, low, high)}`: a forget quality (a p-value)
    of 2 would never be reached and the run would never stop early."""
    _problems([f"--{flag} must be in [{low:g}, {high:g}] (the range of its metric), got {value}: a target outside it "
               "is never reached." for flag, (value, low, high) in bounds.items()
               if value is not None and not (math.isfinite(value) and low <= value <= high)])


def check_lora_flags(model_args) -> None:
    """LoRA flags only mean something with `--use_peft`: refuse them without it instead of ignoring them."""
    if model_args.use_peft:
        return
    defaults = {f.name: f.default for f in dataclasses.fields(model_args)}
    given = [name for name in ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_parameters",
                               "lora_modules_to_save", "use_rslora", "use_dora")
             if name in defaults and getattr(model_args, name) != defaults[name]]
    if given:
        what = "is a LoRA flag" if len(given) == 1 else "are LoRA flags"
        raise RunInputError(f"{', '.join('--' + g for g in given)} {what}, and LoRA is off: add --use_peft to train "
                            "adapters, or drop them to train the whole model.")


def check_context(model, max_length: int, flag: str = "--max_length") -> None:
    """Examples of `max_length` tokens must fit the model's positions: past them a model either fails in its first
    step (an IndexError in the position embeddings) or trains on positions it was never built for."""
    from .eval.benchmarks.muse import model_context

    context = model_context(model)
    if context is not None and max_length > context:
        raise RunInputError(f"{flag} {max_length} is longer than the model's context ({context} positions): lower "
                            f"{flag} to at most {context}.")


def check_attention(args, model=None, attn_implementation: str | None = None) -> None:
    """An estimator that differentiates the loss twice (Hutchinson) needs an attention kernel that allows it:
    of the attention kernels only `eager` does."""
    from .config import SECOND_ORDER_OPTIMIZERS
    from .optim.estimators import ESTIMATORS

    estimator = ESTIMATORS.get(getattr(args, "hessian_estimator", None))
    if (getattr(args, "unlearn_optimizer", None) not in SECOND_ORDER_OPTIMIZERS or estimator is None
            or not estimator.double_backward):
        return
    used = attn_implementation
    if model is not None:
        used = getattr(getattr(model, "config", None), "_attn_implementation", None) or used
    if used not in ATTENTION_FOR_DOUBLE_BACKWARD:
        raise RunInputError(
            f"--hessian_estimator {args.hessian_estimator} needs a double backward, which the "
            f"{used or 'default (sdpa)'} attention kernel does not have: add --attn_implementation eager, or use "
            "--hessian_estimator gnb."
        )


# ------------------------------------------------------------------------------------------------
# model source
# ------------------------------------------------------------------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def check_model_source(name_or_path: str | None, presets: Sequence[str] = (), gguf_file: str | None = None) -> None:
    """A preset, a GGUF file (read up to its header), a local model folder with its tokenizer, or something that can
    be a Hub id."""
    from .models.gguf import GGUFError, gguf_source, read_gguf_header

    if not name_or_path and not gguf_file:
        raise RunInputError("No model given: pass --model_name_or_path <local folder, Hub id or .gguf file>"
                            + (f" (or {' / '.join(presets)} to build one from scratch)." if presets else "."))
    if name_or_path in presets:
        return
    gguf = gguf_source(name_or_path, gguf_file)
    if gguf is not None and (gguf[0].is_dir() or not gguf_file):
        try:
            read_gguf_header(gguf[0] / gguf[1])
        except GGUFError as err:
            raise RunInputError(str(err)) from None
        return
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise RunInputError(f"--model_name_or_path {name_or_path} is a file; give the folder that holds the model.")
        unfinished = unfinished_output(path)
        if unfinished is not None and (unfinished.startswith("a save") or
                                       not any((path / f).is_file() for f in WEIGHT_FILES)):
            raise RunInputError(f"--model_name_or_path {name_or_path} holds no complete model: it is the output of "
                                f"{unfinished}. Run that training again (or resume it) first.")
        if not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise RunInputError(f"--model_name_or_path {name_or_path} holds no model (no config.json): give the folder "
                                "written by save_pretrained.")
        if not any((path / f).is_file() for f in TOKENIZER_FILES):
            raise RunInputError(f"--model_name_or_path {name_or_path} has no tokenizer files ({', '.join(TOKENIZER_FILES)}):"
                                " save the tokenizer next to the model (tokenizer.save_pretrained(folder)).")
        return
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or "\\" in name_or_path
    if looks_local or not _HUB_ID.match(name_or_path):
        raise RunInputError(f"--model_name_or_path {name_or_path}: the path does not exist (and it is not a Hub id "
                            "such as user/model). Check the path.")


# ------------------------------------------------------------------------------------------------
# data: every row of every file
# ------------------------------------------------------------------------------------------------


def _data_file(dataset_name: str, split: str) -> Path | None:
    from .data.tofu import _LOADERS

    as_file = Path(split).expanduser()
    if as_file.suffix in _LOADERS and as_file.is_file():
        return as_file
    folder = Path(dataset_name).expanduser()
    if folder.is_dir():
        for suffix in _LOADERS:
            if (folder / f"{split}{suffix}").is_file():
                return folder / f"{split}{suffix}"
    return None


def _json_rows(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed value) of a JSON-lines file, or of a JSON array file (line = element index + 1)."""
    text = read_text(path, "data file")
    if text.lstrip().startswith("["):
        try:
            return list(enumerate(json.loads(text), start=1))
        except json.JSONDecodeError as err:
            raise RunInputError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}).") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            raise RunInputError(f"{path}, line {number}: not valid JSON ({err.msg} at column {err.colno}). Each line "
                                "must hold one JSON object.") from None
    return rows


def check_rows(rows: Iterable[tuple[Any, Any]], where: str, columns: Sequence[str], role: str) -> int:
    """Every row an object whose `columns` are non-empty strings; `rows` yields (line or row label, row)."""
    count = 0
    for label, row in rows:
        count += 1
        if not isinstance(row, Mapping):
            raise RunInputError(f"{where}, {label}: expected a JSON object with {', '.join(columns)}, got "
                                f"{type(row).__name__}.")
        for column in columns:
            if column not in row:
                raise RunInputError(f"{where}, {label}: no {column!r} field (fields: {', '.join(map(str, row)) or 'none'})."
                                    f" The {role} data needs {', '.join(columns)}; name other columns with "
                                    "--question_column / --answer_column.")
            value = row[column]
            if not isinstance(value, str):
                raise RunInputError(f"{where}, {label}: {column} must be text, got {json.dumps(value)} "
                                    f"({type(value).__name__}).")
            if not value.strip():
                raise RunInputError(f"{where}, {label}: {column} is empty; every {role} row needs a non-empty {column}.")
    if count == 0:
        raise RunInputError(f"{where} has no rows: the {role} data is empty.")
    return count


def load_checked_split(dataset_name: str, split: str, columns: Sequence[str], role: str, flag: str):
    """`load_split` after every row of its file was checked; names the file and line of a bad row."""
    from .data.tofu import load_split

    path = _data_file(dataset_name, split)
    if path is not None and path.suffix in (".json", ".jsonl"):
        check_rows(((f"line {n}", row) for n, row in _json_rows(path)), str(path), columns, role)
    try:
        data = load_split(dataset_name, split)
    except FileNotFoundError as err:
        raise RunInputError(f"{flag} {split}: {err}") from None
    except Exception as err:  # the Hub or a parser: name what was being read
        raise RunInputError(f"{flag} {split}: could not read it from {dataset_name} ({type(err).__name__}: {err}).") from None
    if path is None or path.suffix not in (".json", ".jsonl"):
        missing = [c for c in columns if c not in data.column_names]
        if missing:
            raise RunInputError(f"{flag} {split} has no column {', '.join(missing)}; columns: {', '.join(data.column_names)}.")
        check_rows(((f"row {i}", row) for i, row in enumerate(data.select_columns(list(columns)))),
                   f"{dataset_name}:{split}", columns, role)
    return data


def check_overlap(forget, retain, columns: Sequence[str], allow_overlap: bool) -> float:
    """The fraction of forget rows also in the retain data; refused above `OVERLAP_THRESHOLD`."""
    key = lambda ds: set(zip(*(ds[c] for c in columns)))  # noqa: E731
    forget_rows = key(forget)
    shared = len(forget_rows & key(retain))
    fraction = shared / max(len(forget_rows), 1)
    if fraction > OVERLAP_THRESHOLD and not allow_overlap:
        raise RunInputError(
            f"{shared} of {len(forget_rows)} forget rows ({fraction:.0%}) are also in the retain data: the retain term "
            "would teach back what is being forgotten. Choose disjoint splits (forget10 pairs with retain90), or pass "
            "--allow_overlap if this is intended."
        )
    return fraction


# ------------------------------------------------------------------------------------------------
# the retain reference
# ------------------------------------------------------------------------------------------------


def _same_model(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a.rstrip("/") == b.rstrip("/")


def check_reference_model(reference: Mapping, model_name_or_path: str | None, flag: str = "--retain_reference") -> None:
    """A retain reference evaluated on the very model being unlearned (or evaluated) compares the model with
    itself: forget quality 1.0, PrivLeak 0 by construction. Refused; the reference's `config.model` names it."""
    theirs = (reference.get("config") or {}).get("model") if isinstance(reference, Mapping) else None
    if isinstance(theirs, str) and theirs and model_name_or_path and _same_model(theirs, model_name_or_path):
        raise RunInputError(f"{flag} was evaluated on {theirs}, the model given by --model_name_or_path: a model compared "
                            "with itself always scores as the retain model (forget quality 1.0). Give the evaluation "
                            "of the retain model, trained without the forget split.")


def check_reference(reference: str, forget_questions: Sequence[str] | None = None,
                    model_name_or_path: str | None = None) -> dict:
    """The retain model's `tofu_eval.json` parses, was evaluated on these forget questions, and not on the model
    of this run."""
    path = Path(reference).expanduser()
    if path.is_dir():
        path = path / "tofu_eval.json"
    if not path.is_file():
        raise RunInputError(f"--retain_reference {reference}: no such file. Give the tofu_eval.json written by "
                            "finetune_tofu.py (or python -m hf_unlearn.eval) for the retain model.")
    try:
        data = json.loads(read_text(path, "--retain_reference"))
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}: {err.msg}" if isinstance(err, json.JSONDecodeError) else str(err)
        raise RunInputError(f"--retain_reference {path} is not valid JSON ({where}): the file is damaged; write it "
                            "again by evaluating the retain model.") from None
    forget = data.get("forget") if isinstance(data, dict) else None
    if not isinstance(forget, list) or not forget:
        raise RunInputError(f"--retain_reference {path} has no 'forget' records: it is not a tofu_eval.json.")
    for i, record in enumerate(forget):
        if not isinstance(record, dict) or not isinstance(record.get("question"), str) or not isinstance(
                record.get("truth_ratio"), (int, float)):
            raise RunInputError(f"--retain_reference {path}, forget record {i}: needs a 'question' and a numeric "
                                "'truth_ratio'; the file is damaged or of another format.")
    if forget_questions is not None:
        theirs = [r["question"] for r in forget]
        split = (data.get("config") or {}).get("forget_split", "?")
        if len(theirs) < len(forget_questions) or theirs[: len(forget_questions)] != list(forget_questions):
            raise RunInputError(
                f"--retain_reference {path} was evaluated on other forget questions (its forget split: {split!r}, "
                f"{len(theirs)} questions; this run: {len(forget_questions)}). Use the retain model evaluated on this "
                "run's --forget_split."
            )
    check_reference_model(data, model_name_or_path)
    return data


# ------------------------------------------------------------------------------------------------
# the output folder and resuming
# ------------------------------------------------------------------------------------------------


def _safetensors_problem(path: Path) -> str | None:
    """Why a `.safetensors` file is not whole (its header gives the size it must have), or None."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if size < 8 or length <= 0 or 8 + length > size:
                return f"{path.name} is cut short ({size} bytes)"
            header = json.loads(fh.read(length))
    except (OSError, ValueError):
        return f"{path.name} has a damaged header"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    expected = 8 + length + max(ends, default=0)
    return f"{path.name} is cut short ({size} of {expected} bytes)" if size < expected else None


def _torch_file_problem(path: Path) -> str | None:
    """Why a `torch.save` file (a zip archive) is not whole, or None: empty, or its table of contents (written
    last) missing or pointing past the end."""
    import zipfile

    size = path.stat().st_size
    if size == 0:
        return f"{path.name} is empty"
    try:
        with zipfile.ZipFile(path) as archive:
            if any(info.header_offset + info.compress_size > size for info in archive.infolist()):
                return f"{path.name} is cut short"
            # torch.load does not verify the members' checksums; read them when that is cheap
            bad = archive.testzip() if size <= CHECKSUM_LIMIT else None
            if bad is not None:
                return f"{path.name} is damaged (archive member {bad} fails its checksum)"
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return f"{path.name} is damaged (not a complete torch.save archive)"
    return None


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` is not a complete, undamaged Trainer checkpoint, or None. Trainer writes trainer_state.json
    last; the weights and the optimizer, scheduler and RNG states are checked for truncation."""
    if not path.is_dir():
        return "no such folder"
    state = path / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json (the write was interrupted)"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "trainer_state.json is cut short"
    if not any((path / f).exists() for f in WEIGHT_FILES) and not any(path.glob("model-*.safetensors")):
        return "no model weights"
    for file in sorted(path.glob("*.safetensors")):
        if problem := _safetensors_problem(file):
            return problem
    for file in sorted([*path.glob("*.pt"), *path.glob("*.pth"), *path.glob("*.bin")]):
        if problem := _torch_file_problem(file):
            return problem
    return None


def _checkpoints(folder: Path) -> list[Path]:
    """The `checkpoint-N` folders of `folder`, highest N first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found, reverse=True)]


def latest_complete_checkpoint(output_dir: str | Path, below: Path | None = None) -> Path | None:
    """The highest-numbered complete `checkpoint-N` in `output_dir` (other than `below`, and older than it when
    given); incomplete or damaged ones are skipped with a warning."""
    folder = Path(output_dir).expanduser()
    found = _checkpoints(folder)
    if below is not None:
        found = [p for p in found if int(CHECKPOINT.match(p.name).group(1)) < int(CHECKPOINT.match(below.name).group(1))]
    for path in found:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if below is None:
            logger.warning("Skipping the incomplete checkpoint %s: %s.", path, problem)
            if os.environ.get("RANK", "0") == "0":  # once per run, not once per process
                print(f"[hf-unlearn] skipping the incomplete checkpoint {path}: {problem}")
    return None


def damaged_checkpoint_message(checkpoint: Path, problem: str) -> str:
    """The refusal of a damaged checkpoint, naming the last complete one beside it (or saying there is none)."""
    earlier = latest_complete_checkpoint(checkpoint.parent, below=checkpoint) if CHECKPOINT.match(checkpoint.name) \
        else None
    fix = (f"the last complete checkpoint is {earlier}: resume from it (--resume_from_checkpoint {earlier})"
           if earlier else f"no earlier complete checkpoint beside it: start the run again")
    return f"The checkpoint {checkpoint} is damaged ({problem}); {fix}."


def resolve_resume(value: str | bool | None, output_dir: str) -> str | None:
    """`--resume_from_checkpoint`: a checkpoint folder, or true = the latest complete one in output_dir."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false", "none")):
        return None
    if value is True or value.strip().lower() == "true":
        latest = latest_complete_checkpoint(output_dir)
        if latest is None:
            raise RunInputError(f"--resume_from_checkpoint true: no complete checkpoint-N folder in {output_dir} to "
                                "resume from. Drop the flag to start a new run, or give a checkpoint folder.")
        return str(latest)
    path = Path(value).expanduser()
    problem = checkpoint_problem(path)
    if problem in ("no such folder", "no trainer_state.json (the write was interrupted)", "no model weights"):
        raise RunInputError(f"--resume_from_checkpoint {value} is not a complete checkpoint ({problem}). Give a "
                            "checkpoint-N folder, or true for the latest complete one in --output_dir.")
    if problem:
        raise RunInputError(damaged_checkpoint_message(path, problem))
    return str(path)


# Settings that give a checkpoint's state its meaning: resuming with another value is refused.
RESUME_MUST_MATCH = {
    "unlearn_method": "the loss the state was trained with",
    "unlearn_optimizer": "the optimizer whose state is loaded",
    "hessian_estimator": "what SophiaG's Hessian estimate h means",
    "num_processes": "the data each step saw and where the epoch is (effective batch)",
    "per_device_train_batch_size": "the data each step saw and where the epoch is",
    "gradient_accumulation_steps": "the data each step saw and where the epoch is",
    "seed": "the data order and pairing",
    "pairing_seed": "the forget/retain pairing",
    "max_length": "the tokens each example holds",
    "lora": "which parameters the state belongs to",
    "optim": "the optimizer whose state is loaded",
}


def check_resume_fits(checkpoint: str | None, args, *, use_peft: bool | None = None) -> list[str]:
    """Compares the recipe saved with `checkpoint` (`saving.RECIPE_FILE`) with this run's: a setting that changes
    the meaning of the saved state (`RESUME_MUST_MATCH`) is refused, naming both values; other differences are
    returned as notes ("learning_rate: 0.001 -> 0.002"), to be printed."""
    from .saving import RECIPE_FILE, run_recipe

    if checkpoint is None:
        return []
    saved_file = Path(checkpoint) / RECIPE_FILE
    if not saved_file.is_file():
        return [f"{checkpoint} has no {RECIPE_FILE} (written by an older version): its settings are not compared "
                "with this run's."]
    saved = json.loads(read_text(saved_file, "checkpoint recipe"))
    ours = run_recipe(args)
    if use_peft is not None:
        ours["lora"] = bool(use_peft)
    refused, notes = [], []
    for key in sorted(set(saved) | set(ours)):
        before, now = saved.get(key), ours.get(key)
        if before == now or (key == "lora" and use_peft is None):
            continue
        if key in RESUME_MUST_MATCH and key in saved and key in ours:
            refused.append(f"{key}: {before} in the checkpoint, {now} now ({RESUME_MUST_MATCH[key]})")
        else:
            notes.append(f"{key}: {before} -> {now}")
    if refused:
        raise RunInputError(f"--resume_from_checkpoint {checkpoint} was made by another run:\n- " + "\n- ".join(refused)
                            + "\nResume with the checkpoint's settings, or start a new run (another --output_dir, or "
                            "--overwrite_output_dir without --resume_from_checkpoint).")
    return [f"resuming {checkpoint} with changed settings: {note}" for note in notes]


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


# ------------------------------------------------------------------------------------------------
# the output folder: claimed by one run from its first write
# ------------------------------------------------------------------------------------------------

CLAIM_FILE = ".hf_unlearn_run.json"


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (Linux), which tells a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(claim: Mapping) -> bool:
    pid = claim.get("pid")
    if not isinstance(pid, int) or claim.get("host") != socket.gethostname():
        return False  # another machine's claim cannot be checked: treated as stale, as a killed run's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = _process_start(pid)
    return start is None or claim.get("start") in (None, start)


def claim_of(folder: Path) -> dict | None:
    """The claim file of `folder` (its run's pid, host, start), `{}` when unreadable, None when there is none."""
    path = folder / CLAIM_FILE
    if not path.is_file():
        return None
    try:
        claim = json.loads(path.read_text(encoding="utf-8"))
        return claim if isinstance(claim, dict) else {}
    except (OSError, ValueError):
        return {}


def _claimed_by_another(folder: Path) -> dict | None:
    claim = claim_of(folder)
    if claim and _alive(claim) and not (claim.get("pid") == os.getpid() and claim.get("start") == _process_start(os.getpid())):
        return claim
    return None


def _busy(output_dir: str, claim: Mapping) -> RunInputError:
    return RunInputError(f"--output_dir {output_dir} is being written by another run (pid {claim.get('pid')}, started "
                         f"{claim.get('started', '?')}): two runs in one folder would overwrite each other. Choose "
                         "another --output_dir, or wait for that run to end.")


def claim_output_dir(output_dir: str) -> None:
    """Makes `output_dir` this run's: creates it (and any missing parent) and writes its claim file, atomically
    (one run wins when two start together). Refused when another live run holds it, or when the folder cannot
    be written. A killed run's claim (its process gone) is taken over."""
    folder = Path(output_dir).expanduser()
    me = {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
          "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv}
    for _ in range(3):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / CLAIM_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            other = _claimed_by_another(folder)
            if other is not None:
                raise _busy(output_dir, other) from None
            with contextlib.suppress(FileNotFoundError):  # stale (a killed run) or our own: replaced
                (folder / CLAIM_FILE).unlink()
            continue
        except OSError as err:
            raise RunInputError(f"--output_dir {output_dir} cannot be written ({err.strerror or err}): choose a folder "
                                "this user can write to, or fix its permissions. Nothing was trained.") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        return
    raise _busy(output_dir, claim_of(folder) or {})


def release_output_dir(output_dir: str) -> None:
    """Removes this process's claim on `output_dir` (another run's stays)."""
    folder = Path(output_dir).expanduser()
    claim = claim_of(folder)
    if claim and claim.get("pid") == os.getpid() and claim.get("host") == socket.gethostname():
        with contextlib.suppress(OSError):
            (folder / CLAIM_FILE).unlink()


def unfinished_output(folder: Path) -> str | None:
    """What marks `folder` as this library's unfinished output (a save interrupted, a run killed), or None."""
    from .saving import PARTIAL_SAVE

    if (folder / PARTIAL_SAVE).is_dir():
        return f"a save that was interrupted ({PARTIAL_SAVE})"
    claim = claim_of(folder)
    if claim is not None and not _alive(claim):
        return f"a run that ended before it finished (pid {claim.get('pid', '?')}, started {claim.get('started', '?')})"
    return None


def check_output_dir(output_dir: str, inputs: Mapping[str, str | None], *, overwrite: bool = False,
                     resume_from: str | None = None) -> None:
    """Never write where the run reads, nor over a model or results without an explicit flag.

    Refused always: an output dir that is, holds or lies inside any input of the run (the model, the data,
    the retain reference, the recipe); a folder that another live run claims (`claim_output_dir`); a folder
    that cannot be created. Refused without `--overwrite_output_dir`: a folder holding a model written by an
    earlier run (training_args.bin, or this library's unfinished output), or any other non-empty folder; a folder
    holding some other model or an evaluation reference is refused even then. Resuming from a checkpoint inside
    the output dir needs no flag."""
    out = Path(output_dir).expanduser().resolve()
    for label, source in inputs.items():
        if not source or not Path(source).expanduser().exists():
            continue
        src = Path(source).expanduser().resolve()
        if _within(out, src) or _within(src, out):
            where = "is inside" if _within(out, src) and out != src else ("is" if out == src else "holds")
            raise RunInputError(f"--output_dir {output_dir} {where} the {label} {source}: writing there could overwrite "
                                "an input of this run. Choose another --output_dir.")
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RunInputError(f"--output_dir {output_dir}: {existing} is a file, not a folder. Choose another "
                            "--output_dir.")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise RunInputError(f"--output_dir {output_dir} cannot be written ({existing} is not writable by this user): "
                            "choose another folder, or fix its permissions. Nothing was trained.")
    if (other := _claimed_by_another(out)) is not None:
        raise _busy(output_dir, other)
    if not out.is_dir() or not any(p.name != CLAIM_FILE for p in out.iterdir()):
        return
    if resume_from is not None and _within(Path(resume_from).expanduser().resolve(), out):
        return
    unfinished = unfinished_output(out)
    ours = (out / "training_args.bin").is_file() or unfinished is not None
    holds = [f for f in (*MODEL_FILES, *REFERENCE_FILES) if (out / f).is_file()]
    if holds and not ours:
        raise RunInputError(f"--output_dir {output_dir} holds a model or evaluation results ({', '.join(holds)}) that "
                            "this library did not write: choose an empty or new --output_dir.")
    if not overwrite:
        what = (f"the unfinished output of an earlier run of this library: {unfinished}" if unfinished else
                f"the output of an earlier run ({', '.join(holds)})" if holds else "files")
        raise RunInputError(f"--output_dir {output_dir} is not empty: it holds {what}. Choose a new folder, pass "
                            "--overwrite_output_dir to replace it, or --resume_from_checkpoint true to continue it.")


@contextlib.contextmanager
def removed_on_failure(output_dir: str, is_main_process: bool = True):
    """The run's first write: the main process claims `output_dir` (`claim_output_dir`; released when the
    process ends). If a start-up step inside fails, leave no folder behind that was not there before (Trainer
    may create it), and release the claim."""
    import atexit

    folder = Path(output_dir).expanduser()
    existed, claimed = folder.exists(), False
    try:
        if is_main_process:
            claim_output_dir(output_dir)
            claimed = True
            atexit.register(release_output_dir, output_dir)
        yield
    except BaseException:
        if claimed:  # never another run's folder
            if not existed and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
            else:
                release_output_dir(output_dir)
        raise


# ------------------------------------------------------------------------------------------------
# one pass over a whole run
# ------------------------------------------------------------------------------------------------

TOFU_EVAL_SPLITS = ("{forget}_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")


def config_file_of(argv: Sequence[str]) -> str | None:
    """The `--config` recipe among the command-line arguments (an input the output must not overwrite)."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def check_dataset_source(dataset_name: str) -> None:
    path = Path(dataset_name).expanduser()
    looks_local = dataset_name.startswith((".", "/", "~")) or dataset_name.count("/") > 1
    if looks_local and not path.exists():
        raise RunInputError(f"--dataset_name {dataset_name}: the folder does not exist. Give a folder of JSON-lines "
                            "splits (forget10.json, retain90.json, ...) or a Hub dataset id.")


def tofu_evaluation_files(dataset_name: str, forget_split: str, holdout_split: str | None) -> list[str] | None:
    """The TOFU evaluation splits found locally (all rows checked), or None when the folder lacks them.
    A Hub dataset is assumed to have them (returns [])."""
    if not Path(dataset_name).expanduser().is_dir():
        return []
    names = [s.format(forget=forget_split) for s in TOFU_EVAL_SPLITS] + ([holdout_split] if holdout_split else [])
    paths = [_data_file(dataset_name, name) for name in names]
    if paths[0] is None:
        return None
    missing = [n for n, p in zip(names, paths) if p is None and n != holdout_split]
    if missing:
        raise RunInputError(f"{dataset_name} has {names[0]} but not {', '.join(missing)}: the TOFU evaluation needs all "
                            "of them. Add them, or remove the TOFU evaluation files to train without evaluation.")
    for path in paths:
        if path is not None and path.suffix in (".json", ".jsonl"):
            check_rows(((f"line {n}", row) for n, row in _json_rows(path)), str(path), ("question", "answer"),
                       "evaluation")
    return [str(p) for p in paths if p is not None]


def validate_finetune_run(args, model_args, dataset_name: str, *, overwrite: bool, presets: Sequence[str] = (),
                          config_file: str | None = None) -> str | None:
    """The inputs every fine-tuning script checks first (numbers, LoRA flags, model, data source, output dir);
    returns the checkpoint to resume from (or None)."""
    _check_training_and_model(args, model_args, presets)
    check_dataset_source(dataset_name)
    resume_from = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    check_output_dir(args.output_dir, {"model folder": model_args.model_name_or_path, "dataset folder": dataset_name,
                                       "recipe": config_file}, overwrite=overwrite, resume_from=resume_from)
    for note in check_resume_fits(resume_from, args, use_peft=getattr(model_args, "use_peft", None)):
        if args.process_index == 0:
            print(f"[hf-unlearn] {note}")
    return resume_from


@dataclasses.dataclass
class CheckedRun:
    """What the up-front pass found and resolved."""

    forget: Any = None
    retain: Any = None
    retain_split: str | None = None
    holdout_split: str | None = None
    resume_from: str | None = None
    tofu_eval: bool = True
    notes: list[str] = dataclasses.field(default_factory=list)
    eval_options: dict | None = None  # a benchmark's checked evaluation options (MUSE)


def _check_training_and_model(args, model_args, presets: Sequence[str]) -> None:
    check_training_numbers(args)
    check_lora_flags(model_args)
    check_model_source(model_args.model_name_or_path, presets, getattr(model_args, "gguf_file", None))


def _output_and_resume(script, args, model_args, inputs: Mapping[str, str | None], **run) -> CheckedRun:
    """The checkpoint to resume from, resolved before the output folder's guard (resuming into its own folder
    needs no flag), and the checkpoint's recipe compared with this run's (notes)."""
    checked = CheckedRun(**run)
    checked.resume_from = resolve_resume(args.resume_from_checkpoint, args.output_dir)
    check_output_dir(args.output_dir, inputs, overwrite=script.overwrite_output_dir, resume_from=checked.resume_from)
    checked.notes += check_resume_fits(checked.resume_from, args, use_peft=getattr(model_args, "use_peft", None))
    return checked


def validate_unlearning_run(script, args, model_args, *, needs_retain: bool, presets: Sequence[str] = (),
                            config_file: str | None = None) -> CheckedRun:
    """Every input of `run_tofu.py`, checked before the model is loaded; nothing is written."""
    from .data.tofu import default_splits

    _check_training_and_model(args, model_args, presets)
    check_dataset_source(script.dataset_name)
    problems = []
    if script.max_new_tokens < 1:
        problems.append(f"--max_new_tokens must be >= 1 (ROUGE scores generated answers), got {script.max_new_tokens}.")
    for name in ("eval_subsample", "final_eval_subsample"):
        if getattr(script, name) is not None and getattr(script, name) < 1:
            problems.append(f"--{name} must be >= 1 (or left out for every question), got {getattr(script, name)}.")
    if (script.target_forget_quality is None) != (script.min_model_utility is None):
        problems.append("The stop rule needs both --target_forget_quality and --min_model_utility.")
    _problems(problems)
    check_stop_rule({"target_forget_quality": (script.target_forget_quality, 0.0, 1.0),
                     "min_model_utility": (script.min_model_utility, 0.0, 1.0)})
    run = _output_and_resume(script, args, model_args, {
        "model folder": model_args.model_name_or_path, "dataset folder": script.dataset_name,
        "retain reference": script.retain_reference, "recipe": config_file})

    columns = [script.text_column] if script.text_column else [script.question_column, script.answer_column]
    run.forget = load_checked_split(script.dataset_name, script.forget_split, columns, "forget", "--forget_split")
    retain_default, holdout_default = default_splits(script.forget_split)
    run.retain_split = script.retain_split or retain_default
    run.holdout_split = script.holdout_split or holdout_default
    if run.holdout_split is not None and run.holdout_split == script.forget_split:
        raise RunInputError(f"--holdout_split {run.holdout_split} is the forget split: the membership attacks would "
                            "compare the forget questions with themselves (every AUC 0.5, which reads as perfect). Give "
                            "questions the model never saw (holdout10 goes with forget10).")
    if needs_retain:
        if run.retain_split is None:
            raise RunInputError(f"--unlearn_method {args.unlearn_method} needs retain data: give --retain_split (a "
                                f"split name or data file) to go with --forget_split {script.forget_split}.")
        run.retain = load_checked_split(script.dataset_name, run.retain_split, columns, "retain", "--retain_split")
        check_overlap(run.forget, run.retain, columns, script.allow_overlap)
    else:
        run.retain_split = None

    if script.text_column or script.benchmark == "none":
        run.tofu_eval = False
    elif script.benchmark != "tofu":
        _own_evaluation_data(script.benchmark)
    else:
        found = tofu_evaluation_files(script.dataset_name, script.forget_split, run.holdout_split)
        if found is None:
            run.tofu_eval = False
            run.notes.append(f"no TOFU evaluation files ({script.forget_split}_perturbed.json ...) in "
                             f"{script.dataset_name}: training without the TOFU evaluation (as --benchmark none).")
    if script.retain_reference:
        if not run.tofu_eval:
            raise RunInputError("--retain_reference is only used by the TOFU evaluation, which this run does not have "
                                "(--benchmark none, no TOFU evaluation files or --text_column): drop it.")
        questions = None
        path = _data_file(script.dataset_name, f"{script.forget_split}_perturbed")
        if path is not None and path.suffix in (".json", ".jsonl"):
            questions = [row["question"] for _, row in _json_rows(path)]
        check_reference(script.retain_reference, questions, model_args.model_name_or_path)
    elif script.target_forget_quality is not None:
        raise RunInputError("--target_forget_quality needs --retain_reference (forget quality compares with the retain "
                            "model).")
    if run.tofu_eval:  # the benchmark's own options, from the script flags of the same names
        from .eval.benchmarks import get_benchmark

        benchmark = get_benchmark(script.benchmark)
        given = {**vars(script), "holdout_split": run.holdout_split}
        with refusal():
            run.eval_options = benchmark.check(**{f.name: given[f.name] for f in dataclasses.fields(benchmark.options)
                                                  if f.name in given})
    return run


def validate_muse_run(script, args, model_args, *, needs_retain: bool, presets: Sequence[str] = (),
                      config_file: str | None = None) -> CheckedRun:
    """Every input of `run_muse.py`, checked before the model is loaded; nothing is written. The forget and
    retain corpora come back as `datasets.Dataset`s of documents (column `text`), and `eval_options` holds the
    checked MUSE evaluation options (splits present, columns, the retrain reference of the same corpus)."""
    import datasets

    from .data.muse import load_texts
    from .eval.benchmarks.muse import check_muse

    _check_training_and_model(args, model_args, presets)
    check_dataset_source(script.dataset_name)
    problems = [f"--{name} must be >= 1, got {getattr(script, name)}." for name in ("max_new_tokens",
                "knowmem_max_new_tokens", "eval_subsample", "final_eval_subsample") if getattr(script, name) is not None and
                getattr(script, name) < 1]
    _problems(problems)
    check_stop_rule({"target_forget_quality": (script.target_forget_quality, 0.0, 1.0),
                     "min_model_utility": (script.min_model_utility, 0.0, 1.0)})
    run = _output_and_resume(script, args, model_args, {
        "model folder": model_args.model_name_or_path, "dataset folder": script.dataset_name,
        "retain reference": script.retain_reference, "recipe": config_file}, tofu_eval=False)
    with refusal():  # a missing MUSE folder or split: the message alone (exit 2), as for the other data
        run.forget = datasets.Dataset.from_dict({"text": load_texts(script.dataset_name, script.forget_split)})
    if needs_retain:
        if not script.retain_split:
            raise RunInputError(f"--unlearn_method {args.unlearn_method} needs retain data: give --retain_split "
                                "(MUSE: raw/retain1).")
        run.retain_split = script.retain_split
        with refusal():
            run.retain = datasets.Dataset.from_dict({"text": load_texts(script.dataset_name, script.retain_split)})
        check_overlap(run.forget, run.retain, ["text"], script.allow_overlap)
    if script.benchmark not in ("muse", "none"):
        raise RunInputError(f"run_muse.py evaluates MUSE: --benchmark muse (the default) or none, not {script.benchmark!r}.")
    if script.benchmark == "none":
        if script.retain_reference or script.target_forget_quality is not None:
            raise RunInputError("--retain_reference and the stop rule need the MUSE evaluation: drop them, or "
                                "--benchmark muse.")
        return run
    with refusal():
        run.eval_options = check_muse(script.dataset_name, retain_reference=script.retain_reference,
                                      verbmem_max_new_tokens=script.max_new_tokens,
                                      knowmem_max_new_tokens=script.knowmem_max_new_tokens)
    check_reference_model(run.eval_options["retain_reference"] or {}, model_args.model_name_or_path)
    return run


def _own_evaluation_data(name: str) -> None:
    """A benchmark with a script spec of its own (MUSE, WMDP: `hf_unlearn.entry`) reads its evaluation data in its
    own format, so it cannot share --dataset_name with the TOFU-format training data: refused, naming what to run
    instead (never trained without evaluation). A benchmark without one is evaluated on the training data's folder."""
    from .entry import has_script_spec
    from .eval.benchmarks import get_benchmark

    if has_script_spec(name) and "dataset_name" in {f.name for f in dataclasses.fields(get_benchmark(name).options)}:
        raise RunInputError(f"--benchmark {name} evaluates its own data, but here --dataset_name is the TOFU-format "
                            f"training data: one flag cannot be both. Run examples/unlearn.py --benchmark {name}, whose "
                            f"--dataset_name is {name}'s evaluation data (see its --help for its training-data flags), "
                            "or give --benchmark tofu or none.")


def validate_wmdp_run(script, args, model_args, *, needs_retain: bool, presets: Sequence[str] = (),
                      config_file: str | None = None) -> CheckedRun:
    """Every input of a WMDP run (`WMDPScriptArguments`), checked before the model is loaded; nothing is written.
    The forget and retain corpora come back as `datasets.Dataset`s of texts (column `text`), `eval_options` as the
    checked WMDP evaluation options (None with --benchmark none)."""
    import datasets

    from .data.wmdp import load_corpora
    from .eval.benchmarks.wmdp import check_wmdp

    _check_training_and_model(args, model_args, presets)
    check_stop_rule({"max_wmdp_acc": (script.max_wmdp_acc, 0.0, 1.0), "min_mmlu_acc": (script.min_mmlu_acc, 0.0, 1.0)})
    run = _output_and_resume(script, args, model_args, {
        "model folder": model_args.model_name_or_path, "recipe": config_file, "evaluation data": script.dataset_name},
        tofu_eval=False)
    if script.benchmark == "none":
        if script.max_wmdp_acc is not None or script.min_mmlu_acc is not None:
            raise RunInputError("--max_wmdp_acc / --min_mmlu_acc need the WMDP evaluation: drop them, or --benchmark wmdp.")
    else:
        if Path(script.dataset_name).expanduser().is_dir() and not list(Path(script.dataset_name).expanduser().glob(
                "wmdp-*.json")) and any(_data_file(script.dataset_name, s) for s in ("forget01", "forget05", "forget10")):
            raise RunInputError(f"--dataset_name {script.dataset_name} holds TOFU-format data, not WMDP's evaluation "
                                "data: --benchmark wmdp trains on --forget_corpora / --retain_corpora (.jsonl/.txt "
                                "files or cais/wmdp-corpora names) and evaluates --dataset_name (cais/wmdp or a folder "
                                "with wmdp-bio.json, ...). Give those, or --benchmark tofu (or none) to unlearn the "
                                "TOFU data.")
        with refusal():
            run.eval_options = check_wmdp(script.dataset_name, script.mmlu_dataset_name, script.wmdp_subsets)
    with refusal():
        run.forget = datasets.Dataset.from_dict({"text": load_corpora(script.forget_corpora, script.min_text_length)})
        if needs_retain:
            run.retain_split = script.retain_corpora
            run.retain = datasets.Dataset.from_dict({"text": load_corpora(script.retain_corpora,
                                                                           script.min_text_length)})
    return run


@contextlib.contextmanager
def refusal():
    """A library check's ValueError / FileNotFoundError (an evaluation's options, a data loader) as the run's
    refusal: `RunInputError`, printed alone by `run_script`."""
    try:
        yield
    except RunInputError:
        raise
    except (ValueError, FileNotFoundError) as err:
        raise RunInputError(str(err)) from None
