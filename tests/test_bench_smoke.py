"""Every benchmark runs end to end in `--smoke` mode (tiny model, synthetic data, one tiny step each) and
writes a result file with the expected keys and finite numbers. No timing is asserted."""

import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

IDS = ("P1", "P2", "P3", "P4", "P5", "P6", "P8", "P9")
RECORD_KEYS = {"id", "measure", "value", "display", "target", "passed", "smoke", "numbers", "settings", "machine",
               "command"}
# numbers every bench must report (dotted paths into "numbers")
NUMBERS = {
    "P1": ("ratio", "trainer.median_s", "bare.median_s", "adjacent_step_ratio_median"),
    "P2": ("ratio_mean_over_periods", "refresh_mean_s", "refresh_over_adamw_step", "optimizer_step_median_s.sophia",
           "optimizer_step_median_s.adamw", "gnb_sampling_s.inverse_cdf", "gnb_loss_backward_s.forget only",
           "ratio_mean_over_periods_half_batch_refresh"),
    "P3": ("step_ratio.ratio", "memory_ratio_total.npo", "memory_ratio_total.undial", "memory.ga.total_peak_bytes",
           "memory.undial.peak_bytes", "teacher_forward_s.full_logits"),
    "P4": ("after_median_s", "generation_ratio_generate_over_pool", "decode.generate.waste",
           "decode.pool.waste", "decode.pool.row_steps", "scoring.ratio", "scoring.largest_avg_nll_difference",
           "scoring.tokens_shared_prefix"),
    "P5": ("methods.grad_diff.verdict.means.area_a", "methods.grad_diff.verdict.means.area_b",
           "methods.npo.verdict.means.area_a_minus_b", "methods.npo.verdict.area_a_minus_b_std"),
    "P6": ("undial_versus.npo.means.area_a", "undial_versus.ga.means.area_b", "target_summary.model_utility"),
    "P8": ("target_model_utility", "final.undial.model_utility", "final.npo.forget_quality", "final.ga.forget_quality"),
    "P9": ("table.target.forget_verbmem_rouge", "table.npo/sophia.mia_min_k_auc", "table.undial/adamw.retain_knowmem_rouge",
           "runs.ga/adamw.train_seconds"),
}


def _get(tree, dotted):
    node = tree
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"missing {dotted!r} (at {part!r})"
        node = node[part]
    return node


def _finite_numbers(node, path="numbers"):
    """Every number in the tree is finite (None is allowed: a metric that does not apply)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _finite_numbers(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _finite_numbers(value, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, math.isfinite(node)


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    from bench.__main__ import main

    out = tmp_path_factory.mktemp("bench")
    code = main(["--smoke", "--only", ",".join(IDS), "--output_dir", str(out)])
    assert code == 0, "a bench failed in smoke mode (see the traceback above)"
    return out


@pytest.mark.parametrize("bench_id", IDS)
def test_bench_writes_complete_finite_result(smoke_results, bench_id):
    path = smoke_results / f"{bench_id}.json"
    assert path.is_file(), f"{bench_id} wrote no {path.name}"
    record = json.loads(path.read_text())
    assert RECORD_KEYS <= set(record), f"missing keys {RECORD_KEYS - set(record)}"
    assert record["id"] == bench_id and record["smoke"] is True
    assert {"nproc", "torch_threads"} <= set(record["machine"])
    for dotted in NUMBERS[bench_id]:
        value = _get(record["numbers"], dotted)
        assert isinstance(value, (int, float)) and math.isfinite(value), f"{dotted} = {value!r}"
    bad = [p for p, ok in _finite_numbers(record["numbers"]) if not ok]
    assert not bad, f"non-finite numbers: {bad[:5]}"


def test_table_lists_every_bench(smoke_results, capsys):
    from bench.__main__ import table

    records = [json.loads((smoke_results / f"{i}.json").read_text()) for i in IDS]
    lines = table(records).splitlines()
    assert lines[0].startswith("| id | measure | value | target |")
    assert [line.split("|")[1].strip() for line in lines[2:]] == list(IDS)


def test_p2_says_which_refresh_path_it_timed(smoke_results):
    numbers = json.loads((smoke_results / "P2.json").read_text())["numbers"]
    assert numbers["refresh_path"] == "step_forward"  # one process, GNB over the whole batch
    assert numbers["refresh_path_half_batch"] == "own_forward"  # hessian_batch_fraction 0.5 forwards other rows
