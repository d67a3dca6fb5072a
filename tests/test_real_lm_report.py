"""The real-LM grid's report (bench/real_lm_report.py) on hand-made cached runs: what it reads, the verdicts it
draws and the influence rows, without the 135 M model (the real runs take minutes each)."""

import json

import pytest

from bench import real_lm as R
from bench import real_lm_report as report_module


def _summary(mu, fq, rouge=0.5):
    return {"model_utility": mu, "forget_quality": fq, "forget_rouge": rouge}


def _write_run(results, spec, summary):
    path = R.run_path(results, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": dict(spec, unlearn=R.unlearn_settings(spec), eval=R.EVAL),
                                "summary": summary, "sophia": {"hessian_refreshes": 5}}))


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setattr(report_module.F, "plot_fronts", lambda *a, **k: None)  # no matplotlib figure here
    pair = R.pair_dir(tmp_path)
    pair.mkdir(parents=True)
    (pair / "pair.json").write_text(json.dumps({"target_summary": _summary(0.5, 1e-6, 0.97),
                                                "retain_summary": _summary(0.52, 1.0, 0.4)}))
    return tmp_path


def test_grid_keys_are_stable_and_influence_runs_carry_their_own_settings():
    specs = R.grid_specs()
    assert len(specs) == len({R.run_path(R.REAL_MODEL_DIR, s) for s in specs})  # one cache file per run
    influence = [s for s in specs if s["optimizer"] == "influence"]
    assert [s["influence_damping"] for s in influence] == list(R.INFLUENCE_DAMPINGS)
    settings = R.unlearn_settings(influence[0])
    assert settings["num_train_epochs"] == 1 and settings["max_grad_norm"] == 0.0 and settings["weight_decay"] == 0.0
    assert R.unlearn_settings(specs[0]) is R.UNLEARN  # the iterative runs keep the cache keys they had


def test_report_verdicts_and_influence_rows(results, capsys):
    # GradDiff, seed 0 only: SophiaG better on both axes at every lr -> its front dominates AdamW's
    for lr, (mu_a, fq_a), (mu_s, fq_s) in ((1e-5, (0.50, 1e-6), (0.50, 1e-5)), (1e-4, (0.45, 1e-4), (0.48, 1e-3)),
                                           (1e-3, (0.10, 1e-2), (0.30, 0.2))):
        _write_run(results, dict(method="grad_diff", optimizer="adamw", learning_rate=lr, seed=0), _summary(mu_a, fq_a))
        _write_run(results, dict(method="grad_diff", optimizer="sophia", learning_rate=lr, seed=0), _summary(mu_s, fq_s))
    spec = R.influence_specs()[1]
    _write_run(results, spec, _summary(0.47, 0.06, 0.3))
    out = report_module.report(results)
    r1 = out["R1"]
    verdict = r1["methods"]["grad_diff"]["verdict"]["means"]
    assert verdict["a_dominates_b"] is True and verdict["b_dominates_a"] is False
    assert r1["methods"]["grad_diff"]["complete"] is False  # one seed of the two planned
    assert r1["methods"]["npo"] == {"complete": False, "runs": 0}
    # the goal (FQ >= 0.05 at MU >= 0.9 x 0.5): the influence run (0.47, 0.06) only; SophiaG 1e-3 has MU 0.30
    assert [{k: g[k] for k in spec} for g in r1["goal_runs"]] == [spec]
    assert r1["influence"] == [{"influence_damping": spec["influence_damping"], "learning_rate": 1.0,
                                "model_utility": 0.47, "forget_quality": 0.06, "forget_rouge": 0.3,
                                "hessian_refreshes": 5}]
    assert len(r1["grad_diff_seed0"]) == 6
    text = capsys.readouterr().out
    assert "runs cached: 7 of" in text and "R3 influence (damping 0.1, lr 1)" in text
    saved = json.loads((results / "real_lm_runs.json").read_text())
    assert len(saved["runs"]) == 7
