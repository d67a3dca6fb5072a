"""The gradient-norm and reference-model membership attacks against hand-written versions of open-unlearning's
definitions (src/evals/metrics/mia/{gradnorm,reference}.py) on identical inputs, and their place in the TOFU
evaluation."""

import numpy as np
import pytest
import torch

from hf_unlearn.data.formatting import default_template, encode_qa

from hf_unlearn.eval.attacks import gradient_norm_scores, qa_attack_scores

PAIRS = [("Who wrote the book?", "Jane Doe wrote it in 1999."), ("Where was she born?", "In a small town."),
         ("What is her genre?", "Mostly crime fiction.")]


def peer_batch(tokenizer, question, answer):
    """One row as open-unlearning feeds its attacks: input ids and labels (-100 on the prompt; answer + EOS)."""
    ex = encode_qa(tokenizer, question, answer, template=default_template(tokenizer))
    return torch.tensor([ex.input_ids]), torch.tensor([ex.labels])


def peer_avg_loss(model, input_ids, labels):
    """open-unlearning's evaluate_probability avg_loss: mean NLL over labels != -100 (the EOS included)."""
    logits = model(input_ids=input_ids).logits[0, :-1]
    target = labels[0, 1:]
    keep = target != -100
    return -torch.log_softmax(logits[keep], -1).gather(-1, target[keep].unsqueeze(-1)).mean()


def test_gradient_norm_equals_open_unlearnings_definition(tokenizer, make_model):
    model = make_model(seed=0).double()
    ours = gradient_norm_scores(model, tokenizer, PAIRS, include_eos=True)
    for (q, a), score in zip(PAIRS, ours):
        # GradNormAttack.compute_batch_values: loss = -mean token log-prob, zero_grad, backward, mean over the
        # parameters of each one's gradient 2-norm; its score is minus that (ours: the norm itself)
        model.zero_grad()
        peer_avg_loss(model, *peer_batch(tokenizer, q, a)).backward()
        peer_score = -torch.stack([w.grad.norm(2) for w in model.parameters() if w.grad is not None]).mean().item()
        assert score == pytest.approx(-peer_score, rel=1e-10)
    model.zero_grad(set_to_none=True)
    gradient_norm_scores(model, tokenizer, PAIRS[:1])
    assert all(w.grad is None for w in model.parameters())  # no .grad written: training gradients are safe
    # without the EOS the loss (and so the gradient) differs
    assert not np.allclose(gradient_norm_scores(model, tokenizer, PAIRS, include_eos=False), ours)


def test_reference_attack_equals_open_unlearnings_definition(tokenizer, make_model):
    target, reference = make_model(seed=0).double(), make_model(seed=1).double()
    with torch.no_grad():
        target_loss = [peer_avg_loss(target, *peer_batch(tokenizer, q, a)).item() for q, a in PAIRS]
        peer = [t - peer_avg_loss(reference, *peer_batch(tokenizer, q, a)).item()  # ReferenceAttack.compute_score
                for (q, a), t in zip(PAIRS, target_loss)]
    ours = qa_attack_scores(target, tokenizer, {"forget": PAIRS}, {"forget": target_loss}, include_eos=True,
                            gradnorm=False, reference_model=reference)
    assert ours["forget"]["mia_reference"] == pytest.approx(peer, rel=1e-10)
    assert "mia_gradnorm" not in ours["forget"]


def test_tofu_evaluation_reports_both_attacks(tmp_path, tokenizer, make_model):
    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu
    from hf_unlearn.eval.metrics import mia_auc
    from hf_unlearn.offline.synthetic import write_synthetic_tofu

    data = tmp_path / "tofu"
    write_synthetic_tofu(data, num_authors=10, questions_per_author=2, seed=0)
    model, retain_model = make_model(seed=0).double(), make_model(seed=1).double()
    kwargs = dict(forget_split="forget10", subsample=2, max_new_tokens=2, show_progress=False)
    ref_eval, _ = evaluate_tofu(retain_model, tokenizer, str(data), mia_gradnorm=False, **kwargs)
    # default: the retain reference's own losses; explicitly: the retain model itself; both give the same scores
    from_file, summary = evaluate_tofu(model, tokenizer, str(data), retain_reference=ref_eval, **kwargs)
    from_model, summary_model = evaluate_tofu(model, tokenizer, str(data), mia_reference_model=retain_model,
                                              mia_gradnorm=False, **kwargs)
    for key in ("forget", "holdout"):
        expected = [r["mia_loss"] - s["mia_loss"] for r, s in zip(from_file[key], ref_eval[key])]
        assert [r["mia_reference"] for r in from_file[key]] == pytest.approx(expected, rel=1e-10)
        assert [r["mia_reference"] for r in from_model[key]] == pytest.approx(expected, rel=1e-10)
        pairs = [(r["question"], r["answer"]) for r in from_file[key]]
        assert [r["mia_gradnorm"] for r in from_file[key]] == pytest.approx(
            gradient_norm_scores(model, tokenizer, pairs).tolist(), rel=1e-10)
        assert "mia_gradnorm" not in from_model[key][0]
    assert summary["mia_gradnorm_auc"] == mia_auc([r["mia_gradnorm"] for r in from_file["forget"]],
                                                  [r["mia_gradnorm"] for r in from_file["holdout"]])
    assert summary["mia_reference_auc"] == summary_model["mia_reference_auc"] is not None
    assert summary_model["mia_gradnorm_auc"] is None


def peer_text_batch(tokenizer, text):
    """A MUSE privleak text as the evaluation scores it: BOS + text tokens, every text token a label (the
    closing EOS is not scored, as for the loss / zlib / Min-K% attacks)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor([[tokenizer.bos_token_id] + ids]), torch.tensor([[-100] + ids])


def test_muse_evaluation_attacks_equal_open_unlearnings_definitions(tmp_path, tokenizer, make_model):
    """MUSE privleak forget (members) vs holdout: the gradient-norm and reference attacks equal the peer's
    definitions on the same texts; the reference defaults to the retrain evaluation's own losses, and an explicit
    reference model gives the same scores."""
    from hf_unlearn.data.muse import load_muse_split
    from hf_unlearn.eval.benchmarks.muse import evaluate_muse
    from hf_unlearn.eval.metrics import mia_auc
    from hf_unlearn.offline.muse_synthetic import write_muse

    data = write_muse(tmp_path / "muse", num_forget=4, num_retain1=2, num_retain2=2, num_holdout=3, seed=0)
    model, retrain = make_model(seed=0).double(), make_model(seed=1).double()
    kwargs = dict(verbmem_max_new_tokens=2, knowmem_max_new_tokens=2, subsample=3, show_progress=False)
    ref_eval, _ = evaluate_muse(retrain, tokenizer, str(data), mia_gradnorm=False, **kwargs)
    from_file, summary = evaluate_muse(model, tokenizer, str(data), retain_reference=ref_eval, **kwargs)
    from_model, summary_model = evaluate_muse(model, tokenizer, str(data), mia_reference_model=retrain,
                                              mia_gradnorm=False, **kwargs)
    for key, split in (("privleak_forget", "privleak/forget"), ("privleak_holdout", "privleak/holdout")):
        texts = [row["text"] for row in load_muse_split(str(data), split).to_list()[:3]]
        assert not any(r["truncated"] for r in from_file[key])
        peer_gradnorm, peer_reference = [], []
        for text in texts:
            batch = peer_text_batch(tokenizer, text)
            model.zero_grad()
            loss = peer_avg_loss(model, *batch)
            loss.backward()  # GradNormAttack: mean over the parameters of each gradient's 2-norm (negated there)
            peer_gradnorm.append(torch.stack([w.grad.norm(2) for w in model.parameters() if w.grad is not None])
                                 .mean().item())
            with torch.no_grad():  # ReferenceAttack: target loss minus reference loss
                peer_reference.append(loss.item() - peer_avg_loss(retrain, *batch).item())
        model.zero_grad(set_to_none=True)
        assert [r["mia_gradnorm"] for r in from_file[key]] == pytest.approx(peer_gradnorm, rel=1e-10)
        assert [r["mia_reference"] for r in from_file[key]] == pytest.approx(peer_reference, rel=1e-10)
        assert [r["mia_reference"] for r in from_model[key]] == pytest.approx(peer_reference, rel=1e-10)
        assert "mia_gradnorm" not in from_model[key][0]
    assert summary["mia_gradnorm_auc"] == mia_auc([r["mia_gradnorm"] for r in from_file["privleak_forget"]],
                                                  [r["mia_gradnorm"] for r in from_file["privleak_holdout"]])
    assert summary["mia_reference_auc"] == summary_model["mia_reference_auc"] is not None
    assert summary_model["mia_gradnorm_auc"] is None
    without, summary_without = evaluate_muse(model, tokenizer, str(data), mia_gradnorm=False, **kwargs)
    assert summary_without["mia_gradnorm_auc"] is None and summary_without["mia_reference_auc"] is None
    assert "mia_reference" not in without["privleak_forget"][0]
