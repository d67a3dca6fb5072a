"""The `evaluate` modules (`hf_unlearn.eval.evaluate_modules`): loaded with `evaluate.load(<folder in the
package>)`, they give hand-computed values and the very numbers the TOFU and MUSE evaluations give on the same
per-question inputs."""

import math

import pytest

from hf_unlearn.eval import metrics as M
from hf_unlearn.eval.evaluate_modules import MODULES, path

evaluate = pytest.importorskip("evaluate")


def load(name, config=None):
    return evaluate.load(path(name), config, keep_in_memory=True)


def test_every_module_loads_from_the_package_and_unknown_names_are_refused():
    for name in MODULES:
        assert path(name).endswith(f"hf_unlearn/eval/evaluate_modules/{name}")
    with pytest.raises(ValueError, match="Unknown evaluate module 'rouge'; known: forget_quality"):
        path("rouge")
    with pytest.raises(ValueError, match="configs 'forget' and 'utility'"):
        load("truth_ratio", "retain")


def test_hand_computed_values():
    # R = exp(para - mean(pert)) = exp(2 - 1.5) = e^0.5; forget statistic min(R, 1/R) = e^-0.5.
    got = load("truth_ratio", "forget").compute(paraphrased_avg_nll=[2.0], perturbed_avg_nll=[[1.0, 2.0]])
    assert got["truth_ratios"] == [pytest.approx(math.exp(0.5))] and got["truth_ratio"] == pytest.approx(math.exp(-0.5))
    # Utility statistic max(0, 1 - R): R = e^-1 for (1, [2]) and e^1 for (2, [1]) -> mean(1 - e^-1, 0).
    got = load("truth_ratio", "utility").compute(paraphrased_avg_nll=[1.0, 2.0], perturbed_avg_nll=[[2.0], [1.0]])
    assert got["truth_ratio"] == pytest.approx((1 - math.exp(-1)) / 2)
    # Identical samples: KS p-value 1; fully separated samples of 3: p = 0.1 (exact two-sided test).
    fq = load("forget_quality")
    assert fq.compute(predictions=[0.5, 0.6, 0.7], references=[0.5, 0.6, 0.7]) == {"forget_quality": 1.0}
    assert fq.compute(predictions=[0.1, 0.2, 0.3], references=[0.7, 0.8, 0.9])["forget_quality"] == pytest.approx(0.1)
    # Min-K% (k 40%) scores: the model's forget texts 2, 3 and holdout 0.5, 4 -> AUC 2/4; the reference's forget
    # 1, 2 and holdout 3, 1 -> AUC 2.5/4 (a tie counts half). TOFU's formula: a = 1 - AUC relative to a_ref.
    pl = load("privleak", "tofu").compute(token_logprobs=[[-1.0, -2.0], [-3.0], [-0.5], [-4.0]],
                                          reference_token_logprobs=[[-1.0], [-2.0], [-3.0], [-1.0]], is_forget=[1, 1, 0, 0])
    assert pl["auc"] == 0.5 and pl["reference_auc"] == 0.625
    assert pl["privleak"] == pytest.approx(M.privleak(0.5, 0.625))
    with pytest.raises(ValueError, match="needs forget .* and holdout"):
        load("privleak", "muse").compute(token_logprobs=[[-1.0]], reference_token_logprobs=[[-1.0]], is_forget=[1])
    # ROUGE-L F1 without stemming: "a b c" vs "a b d": LCS 2 of 3 and 3 -> 2/3; KnowMem cuts at "\n\n" first.
    assert load("verbmem_rouge").compute(predictions=["a b c"], references=["a b d"])["verbmem_rouge"] == \
        pytest.approx(2 / 3)
    assert load("knowmem_rouge").compute(predictions=["a b\n\nQuestion: a b c d"], references=["a b"]) == \
        {"knowmem_rouge": 1.0}


@pytest.fixture
def tofu_evaluations(tmp_path, synthetic_splits, tokenizer, make_model, monkeypatch):
    """A TOFU evaluation of a tiny model against a retain reference (another tiny model), with the answer-token
    log-probabilities that each one's MIA scores were computed from (forget, then holdout)."""
    from hf_unlearn.eval.benchmarks import tofu
    from hf_unlearn.offline.synthetic import write_tofu

    data = write_tofu(tmp_path / "data", synthetic_splits)
    token_logprobs = []
    loss_scores = M.mia_loss_scores
    monkeypatch.setattr(M, "mia_loss_scores", lambda lps, *a: token_logprobs.append(lps) or loss_scores(lps, *a))
    kwargs = dict(forget_split="forget10", max_new_tokens=4, subsample=6, show_progress=False)
    reference, _ = tofu.evaluate_tofu(make_model(seed=1), tokenizer, str(data), **kwargs)
    per_sample, summary = tofu.evaluate_tofu(make_model(seed=0), tokenizer, str(data), retain_reference=reference,
                                             **kwargs)
    return per_sample, reference, summary, token_logprobs


def test_tofu_modules_give_the_evaluation_numbers(tofu_evaluations):
    per_sample, reference, summary, (ref_forget, ref_holdout, forget, holdout) = tofu_evaluations
    for split, key in (("forget", "forget_truth_ratio"), ("retain", "retain_truth_ratio")):
        rows = per_sample[split]
        got = load("truth_ratio", "forget" if split == "forget" else "utility").compute(
            paraphrased_avg_nll=[r["paraphrased_avg_nll"] for r in rows],
            perturbed_avg_nll=[r["perturbed_avg_nll"] for r in rows])
        assert got["truth_ratio"] == summary[key] and got["truth_ratios"] == [r["truth_ratio"] for r in rows]
    rows = per_sample["world_facts"]  # real authors / world facts: the true answer stands for the paraphrase
    got = load("truth_ratio", "utility").compute(paraphrased_avg_nll=[r["avg_nll"] for r in rows],
                                                 perturbed_avg_nll=[r["perturbed_avg_nll"] for r in rows])
    assert got["truth_ratio"] == summary["wf_truth_ratio"]

    fq = load("forget_quality").compute(predictions=[r["truth_ratio"] for r in per_sample["forget"]],
                                        references=[r["truth_ratio"] for r in reference["forget"]])
    assert 0 < summary["forget_quality"] < 1 and fq["forget_quality"] == summary["forget_quality"]

    pl = load("privleak", "tofu").compute(token_logprobs=[*forget, *holdout],
                                          reference_token_logprobs=[*ref_forget, *ref_holdout],
                                          is_forget=[1] * len(forget) + [0] * len(holdout))
    assert summary["privleak"] is not None and pl["privleak"] == summary["privleak"]
    assert pl["auc"] == summary["mia_min_k_auc"]


def test_muse_modules_give_the_evaluation_numbers(tmp_path, monkeypatch):
    """MUSE's ROUGE on generations that share words with the references (a random tiny model's would score 0):
    generation is replaced by common words, a stop string and more of them (which KnowMem must cut)."""
    from hf_unlearn.data.muse import muse_strings
    from hf_unlearn.eval.benchmarks import muse
    from hf_unlearn.offline.muse_synthetic import generate_muse, write_muse
    from hf_unlearn.offline.tiny import build_tiny_llama, train_tokenizer

    data = write_muse(tmp_path / "muse", generate_muse(num_forget=4, num_retain1=4, num_retain2=4, num_holdout=4, seed=0))
    tokenizer = train_tokenizer(muse_strings(str(data)), vocab_size=512)
    model = build_tiny_llama(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=256)
    generated = []

    def fake_generate(model, tokenizer, prompts, *args, **kwargs):
        texts = [" ".join(["million", "pounds", "the", "Pablo", "of", "2029"][: 2 + i % 4]) + "\n\nQuestion: the of a" for i in
                 range(len(prompts))]
        generated.append(texts)
        return texts

    monkeypatch.setattr(muse, "generate_from_ids", fake_generate)
    per_sample, summary = muse.evaluate_muse(model, tokenizer, str(data), verbmem_max_new_tokens=16,
                                             knowmem_max_new_tokens=8, show_progress=False)
    verbmem, knowmem_forget, knowmem_retain = generated
    got = load("verbmem_rouge").compute(predictions=verbmem, references=[r["gt"] for r in per_sample["verbmem_forget"]])
    assert got["verbmem_rouge"] == summary["forget_verbmem_rouge"]
    for raw, split, key in ((knowmem_forget, "knowmem_forget", "forget_knowmem_rouge"),
                            (knowmem_retain, "knowmem_retain", "retain_knowmem_rouge")):
        got = load("knowmem_rouge").compute(predictions=raw, references=[r["answer"] for r in per_sample[split]])
        assert got["knowmem_rouge"] == summary[key]
    assert summary["forget_verbmem_rouge"] > 0 and summary["retain_knowmem_rouge"] > 0  # the comparison can fail
