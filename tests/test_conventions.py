"""The switches of docs/conventions.md: the reference evaluator's KL retain averaging and MIA EOS handling, each
against a float64 reference written from that definition; and the measuring script on a 2-step model."""

import json

import pytest
import torch
import torch.nn.functional as F

from hf_unlearn.methods import losses


def test_kl_all_positions_is_batchmean_kl_over_every_position():
    gen = torch.Generator().manual_seed(0)
    logits, ref = (torch.randn(3, 7, 11, generator=gen, dtype=torch.float64) for _ in range(2))
    labels = torch.full((3, 7), -100)
    labels[:, 4:6] = 1
    # open-unlearning's compute_kl_divergence: kl_div(log p_theta, log p_ref, batchmean, log_target) over B*T rows
    theirs = F.kl_div(F.log_softmax(logits, -1).view(-1, 11), F.log_softmax(ref, -1).view(-1, 11),
                      reduction="batchmean", log_target=True)
    ours_all = losses.kl_all_positions(logits, ref)
    assert ours_all.dtype == torch.float64
    torch.testing.assert_close(ours_all, theirs, rtol=1e-12, atol=0)
    answer = losses.kl_on_answers(logits, losses.answer_rows(ref, labels), labels)  # the default: answer positions only
    by_hand = sum(F.kl_div(F.log_softmax(logits[b, t], -1), F.log_softmax(ref[b, t], -1), reduction="sum",
                           log_target=True) for b in range(3) for t in (3, 4)) / 6
    torch.testing.assert_close(answer, by_hand, rtol=1e-12, atol=0)
    assert abs(answer.item() - ours_all.item()) > 1e-3


def test_retain_kl_positions_flag_reaches_the_kl_method(tmp_path, tokenizer, make_model, forget_retain):
    from hf_unlearn import UnlearningConfig, UnlearningTrainer

    forget, retain = (d.select(range(2)) for d in forget_retain)
    with pytest.raises(ValueError, match="retain_kl_positions must be 'answer' or 'all'"):
        UnlearningConfig(output_dir=str(tmp_path), retain_kl_positions="prompt")
    args = UnlearningConfig(output_dir=str(tmp_path), unlearn_method="kl", retain_kl_positions="all", report_to=[],
                            use_cpu=True)
    trainer = UnlearningTrainer(model=make_model().double(), args=args, forget_dataset=forget,
                                retain_dataset=retain, processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    with torch.no_grad():
        trainer.model.model.layers[0].mlp.down_proj.weight.mul_(1.5)  # policy != reference
        _, logs = trainer.method(trainer.model, batch, trainer.reference, trainer.settings)
        part = batch["retain"]
        expected = losses.kl_all_positions(trainer.model(**{k: part[k] for k in ("input_ids", "attention_mask")}).logits,
                                           trainer.reference(part).logits)
    torch.testing.assert_close(logs["retain_loss"], expected, rtol=1e-12, atol=0)


def test_mia_include_eos_reproduces_every_attack_of_the_reference_evaluator(tmp_path, tokenizer, make_model):
    from bench.conventions import peer_mia_scores
    from hf_unlearn.offline.synthetic import write_synthetic_tofu
    from hf_unlearn.eval.benchmarks.tofu import evaluate_tofu

    data = tmp_path / "tofu"
    write_synthetic_tofu(data, num_authors=10, questions_per_author=2, seed=0)
    model = make_model().double()
    kwargs = dict(forget_split="forget10", subsample=2, max_new_tokens=2, show_progress=False)
    with_eos, summary = evaluate_tofu(model, tokenizer, str(data), mia_include_eos=True, **kwargs)
    without, _ = evaluate_tofu(model, tokenizer, str(data), mia_include_eos=False, **kwargs)
    assert with_eos["config"]["mia_include_eos"] is True and summary["mia_loss_auc"] is not None
    attacks = ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus")
    for flag_on, flag_off in zip(with_eos["forget"] + with_eos["holdout"], without["forget"] + without["holdout"]):
        peer = peer_mia_scores(model, tokenizer, flag_on["question"], flag_on["answer"])
        for name in attacks:  # with the flag, all four attacks are the peer's
            assert flag_on[name] == pytest.approx(peer[name], rel=1e-9), name
        assert flag_on["mia_loss"] == pytest.approx(flag_on["avg_nll"], rel=1e-9)  # the loss over answer + EOS
        # Without it, loss and zlib leave the EOS out (and differ); the Min-K scores are the same either way.
        assert abs(flag_off["mia_loss"] - peer["mia_loss"]) > 1e-6
        assert flag_off["mia_min_k"] == flag_on["mia_min_k"]
        assert flag_off["mia_min_k_plus_plus"] == flag_on["mia_min_k_plus_plus"]
    json.dumps(with_eos)  # still plain JSON


def test_conventions_script_measures_every_row():
    from bench.conventions import measure

    rows = {name: (ours, theirs, rel) for name, ours, theirs, rel in measure(train_steps=2)}
    assert len(rows) == 10
    ours, theirs, _ = rows["IdkDPO forget loss (beta 0.1): -log sigma / x 2/beta"]
    assert float(theirs) / float(ours) == pytest.approx(20.0, rel=1e-4)  # 2 / beta
    from bench.conventions import ATTACKS, mia_include_eos_agreement

    agreement = mia_include_eos_agreement(train_steps=2)
    assert all(agreement[True][name] < 1e-9 for name in ATTACKS)  # the flag reproduces every attack
    assert agreement[False]["mia_loss"] > 1e-3 and agreement[False]["mia_min_k"] < 1e-9
