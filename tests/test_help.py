"""Every script's --help renders, in-process: exit status 0, a usage line, and no help string that argparse
%-formats into something else (a bare "%" in "Min-K%" printed the parser's parameter dict)."""

import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: (how it is run, the arguments before --help). A path runs as a script, a dotted name as `python -m`.
HELP_INVOCATIONS = [
    ("examples/convert_gguf.py", []),
    ("examples/demo.py", []),
    ("examples/demo_real.py", []),
    ("examples/finetune_muse.py", []),
    ("examples/finetune_tofu.py", []),
    ("examples/run_muse.py", []),
    ("examples/run_sequential.py", []),
    ("examples/run_sequential.py", ["--benchmark", "muse"]),
    ("examples/run_tofu.py", []),
    ("examples/run_wmdp.py", []),
    ("examples/tune.py", []),
    ("examples/unlearn.py", []),
    ("examples/unlearn.py", ["--benchmark", "muse"]),
    ("examples/unlearn.py", ["--benchmark", "wmdp"]),
    ("examples/tune.py", ["--benchmark", "muse"]),
    ("hf_unlearn.eval", []),
    ("hf_unlearn.eval", ["--benchmark", "muse"]),
    ("hf_unlearn.eval", ["--benchmark", "wmdp"]),
    ("hf_unlearn.offline.muse_synthetic", []),
    ("hf_unlearn.offline.wmdp_synthetic", []),
    ("bench", []),
    ("bench.eval_model", []),
    ("bench.fixed_seed_check", []),
    ("bench.gpu", []),
    ("bench.influence_tiny", []),
    ("bench.real_lm", []),
]
#: Entry points that take no arguments (nothing to --help).
NO_ARGUMENTS = {"bench/conventions.py"}


def _path(target: str) -> str:
    if target.endswith(".py"):
        return target
    path = target.replace(".", "/")
    return f"{path}/__main__.py" if (REPO / path).is_dir() else f"{path}.py"


def test_every_entry_point_is_covered():
    entry_points = {str(p.relative_to(REPO)) for folder in ("examples", "bench", "hf_unlearn")
                    for p in (REPO / folder).rglob("*.py") if '__name__ == "__main__"' in p.read_text()}
    assert entry_points == {_path(target) for target, _ in HELP_INVOCATIONS} | NO_ARGUMENTS
    for path in NO_ARGUMENTS:
        assert "Parser" not in (REPO / path).read_text()


@pytest.mark.parametrize("target, before", HELP_INVOCATIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_help_renders_without_formatting_errors(target, before, monkeypatch, capsys):
    script = str(REPO / target) if target.endswith(".py") else target
    monkeypatch.setattr(sys, "argv", [script, *before, "--help"])
    if target.endswith(".py"):
        monkeypatch.syspath_prepend(str(REPO / Path(target).parent))
    with pytest.raises(SystemExit) as exit_info:
        if target.endswith(".py"):
            runpy.run_path(script, run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, None), out[-2000:]
    assert out.startswith("usage:")
    # A help string with a bare "%" is %-formatted with argparse's parameter dict and prints that dict.
    assert "'option_strings'" not in out and "'dest':" not in out, out
