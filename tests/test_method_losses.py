"""Every method's loss THROUGH `UnlearningTrainer.compute_loss` (the code training runs) against a float64 value
computed by hand from the models' logits / hidden states, on a real batch of the trainer's own collator.

The reference model is a different random model (so every log-ratio and KL is non-zero); UNDIAL runs with
beta = 10, RMU on layer 0 of 2 (not the last), SimNPO with a non-zero margin, and every method with weights
gamma = 0.7, alpha = 1.3 so the weighting is checked too.
"""

import math

import pytest
import torch

from hf_unlearn import UnlearningConfig, UnlearningTrainer

GAMMA, ALPHA = 0.7, 1.3
SETTINGS = dict(npo_beta=0.3, simnpo_beta=2.5, simnpo_gamma=0.4, undial_beta=10.0, rmu_layer=0,
                rmu_steering_coeff=5.0, wga_beta=1.5, satimp_beta1=2.0, satimp_beta2=0.5,
                ceu_ignore_first_n_answer_tokens=2, pdu_retain_bound=0.25)


def answer_positions(labels):
    """(row, position t, label y) for every logit row that predicts an answer token: labels[b, t+1] != -100."""
    return [(b, t, int(labels[b, t + 1])) for b in range(labels.shape[0]) for t in range(labels.shape[1] - 1)
            if int(labels[b, t + 1]) != -100]


def log_probs(model, part):
    with torch.no_grad():
        logits = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"]).logits
    return torch.log_softmax(logits, -1)


def nll(logp, labels):
    ce = [-logp[b, t, y].item() for b, t, y in answer_positions(labels)]
    return sum(ce) / len(ce)


def seq_nll(logp, labels):
    """[B] list: -log pi(y|x) per row, with the answer length."""
    rows = {}
    for b, t, y in answer_positions(labels):
        total, n = rows.get(b, (0.0, 0))
        rows[b] = (total - logp[b, t, y].item(), n + 1)
    return [rows[b] for b in range(labels.shape[0])]


def log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def kl(ref_logp, logp, labels):
    terms = [(ref_logp[b, t].exp() * (ref_logp[b, t] - logp[b, t])).sum().item() for b, t, _ in answer_positions(labels)]
    return sum(terms) / len(terms)


def hidden(model, part, layer):
    with torch.no_grad():
        out = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], output_hidden_states=True)
    return out.hidden_states[layer + 1]  # = decoder layer `layer`'s output for any layer but the last


def expected_terms(method, policy, reference, batch, settings):
    """(forget term F, retain term R or None) by hand, float64."""
    f, r = batch["forget"], batch.get("retain")
    logp_f, ref_f = log_probs(policy, f), log_probs(reference, f)
    if method in ("ga", "grad_diff", "kl"):
        forget = -nll(logp_f, f["labels"])
    elif method == "npo":
        b = SETTINGS["npo_beta"]
        pairs = zip(seq_nll(logp_f, f["labels"]), seq_nll(ref_f, f["labels"]))
        forget = -(2 / b) * sum(log_sigmoid(b * (s - s_ref)) for (s, _), (s_ref, _) in pairs) / f["labels"].shape[0]
    elif method == "simnpo":
        b, g = SETTINGS["simnpo_beta"], SETTINGS["simnpo_gamma"]
        forget = -(2 / b) * sum(log_sigmoid(b * s / n - g) for s, n in seq_nll(logp_f, f["labels"])) / len(f["labels"])
    elif method == "idk_nll":
        forget = nll(log_probs(policy, batch["idk"]), batch["idk"]["labels"])
    elif method == "idk_dpo":
        b, idk = SETTINGS["npo_beta"], batch["idk"]
        chosen, ref_chosen = seq_nll(log_probs(policy, idk), idk["labels"]), seq_nll(log_probs(reference, idk), idk["labels"])
        rejected, ref_rejected = seq_nll(logp_f, f["labels"]), seq_nll(ref_f, f["labels"])
        margins = [(rc - c) - (rr - r_) for (c, _), (rc, _), (r_, _), (rr, _)
                   in zip(chosen, ref_chosen, rejected, ref_rejected)]
        forget = -sum(log_sigmoid(b * m) for m in margins) / len(margins)
    elif method == "undial":
        total, positions = 0.0, answer_positions(f["labels"])
        with torch.no_grad():
            teacher = reference(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits
        for b_, t, y in positions:
            z = teacher[b_, t].clone()
            z[y] -= SETTINGS["undial_beta"]  # the teacher with the label's logit lowered by beta
            q = torch.softmax(z, -1)
            total += -(q * logp_f[b_, t]).sum().item()  # CE(q, p_theta)
        forget = total / len(positions)
    elif method in ("wga", "satimp"):
        total, positions = 0.0, answer_positions(f["labels"])
        for b_, t, y in positions:
            ce = -logp_f[b_, t, y].item()
            p = math.exp(-ce)
            weight = (p ** SETTINGS["wga_beta"] if method == "wga"
                      else p ** SETTINGS["satimp_beta1"] * (1 - p) ** SETTINGS["satimp_beta2"])
            total -= weight * ce
        forget = total / len(positions)
    elif method == "ceu":
        # the target: the policy's own distribution with the true token's probability removed and renormalised
        total, counted, seen = 0.0, 0, {}
        for b_, t, y in answer_positions(f["labels"]):
            seen[b_] = seen.get(b_, 0) + 1
            if seen[b_] <= SETTINGS["ceu_ignore_first_n_answer_tokens"]:
                continue
            p = logp_f[b_, t].exp()
            q = p.clone()
            q[y] = 0.0
            q = q / q.sum()
            total += -(q * logp_f[b_, t]).sum().item()
            counted += 1
        forget = total / counted
    elif method == "pdu":
        with torch.no_grad():
            z = policy(input_ids=f["input_ids"], attention_mask=f["attention_mask"]).logits
        margins = [(z[b_, t].max() - z[b_, t].mean()).item() ** 2 for b_, t, _ in answer_positions(f["labels"])]
        forget = sum(margins) / len(margins)
    elif method == "rmu":
        control = settings.rmu_control.double()
        h, mask = hidden(policy, f, 0), f["labels"] != -100
        forget = ((h[mask] - control) ** 2).mean().item()
    if method == "ga":
        return forget, None
    if method == "rmu":
        mask = r["labels"] != -100
        return forget, ((hidden(policy, r, 0)[mask] - hidden(reference, r, 0)[mask]) ** 2).mean().item()
    logp_r = log_probs(policy, r)
    if method == "kl":
        return forget, kl(log_probs(reference, r), logp_r, r["labels"])
    return forget, nll(logp_r, r["labels"])


@pytest.mark.parametrize("method", ["ga", "grad_diff", "kl", "npo", "simnpo", "idk_nll", "idk_dpo", "undial", "rmu",
                                    "wga", "satimp", "ceu", "pdu"])
def test_compute_loss_equals_the_formula_by_hand_in_float64(method, tmp_path, tokenizer, make_model, forget_retain):
    forget, retain = forget_retain
    policy, reference = make_model(seed=0).double(), make_model(seed=1).double()
    args = UnlearningConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, unlearn_method=method,
                            forget_weight=GAMMA, retain_weight=ALPHA, seed=0, report_to=[], **SETTINGS)
    trainer = UnlearningTrainer(model=policy, args=args, forget_dataset=forget, retain_dataset=retain,
                                processing_class=tokenizer, ref_model=reference)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    loss, terms = trainer.compute_loss(trainer.model, batch, return_outputs=True)
    assert loss.dtype == torch.float64

    expected_forget, expected_retain = expected_terms(method, trainer.model, reference, batch, trainer.settings)
    assert terms["forget_loss"].item() == pytest.approx(expected_forget, rel=1e-10)
    if expected_retain is None:
        assert "retain_loss" not in terms and loss.item() == pytest.approx(GAMMA * expected_forget, rel=1e-10)
    else:
        assert terms["retain_loss"].item() == pytest.approx(expected_retain, rel=1e-10)
        assert expected_retain > 1e-6  # the reference differs from the policy: R is not trivially 0 (nor NLL)
        # PDU's Lagrangian: lambda * (R - epsilon), lambda starting at alpha
        bound = SETTINGS["pdu_retain_bound"] if method == "pdu" else 0.0
        assert loss.item() == pytest.approx(GAMMA * expected_forget + ALPHA * (expected_retain - bound), rel=1e-10)


def test_grad_diff_with_kl_retain_and_undial_default_weights(tmp_path, tokenizer, make_model, forget_retain):
    """--retain_loss_type kl swaps R for the KL; UNDIAL's default alpha is 0 (no retain term, no retain batch)."""
    forget, retain = forget_retain
    policy, reference = make_model(seed=0).double(), make_model(seed=1).double()
    args = UnlearningConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, unlearn_method="grad_diff",
                            retain_loss_type="kl", report_to=[])
    trainer = UnlearningTrainer(model=policy, args=args, forget_dataset=forget, retain_dataset=retain,
                                processing_class=tokenizer, ref_model=reference)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    _, terms = trainer.compute_loss(trainer.model, batch, return_outputs=True)
    r = batch["retain"]
    assert terms["retain_loss"].item() == pytest.approx(kl(log_probs(reference, r), log_probs(policy, r), r["labels"]),
                                                        rel=1e-10)
    undial = UnlearningTrainer(model=make_model().double(), processing_class=tokenizer, forget_dataset=forget,
                               retain_dataset=retain, args=UnlearningConfig(output_dir=str(tmp_path),
                                                                            unlearn_method="undial", report_to=[]))
    assert undial.settings.retain_weight == 0.0 and set(undial.train_dataset[0]) == {"forget"}


def test_rmu_runs_the_lm_head_on_one_position_per_row(tmp_path, tokenizer, make_model, forget_retain):
    """RMU reads a layer's output only: neither the policy's nor the frozen model's forward builds [B, T, V] logits."""
    forget, retain = forget_retain
    policy, reference = make_model(seed=0).double(), make_model(seed=1).double()
    args = UnlearningConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, unlearn_method="rmu",
                            seed=0, report_to=[], **SETTINGS)
    trainer = UnlearningTrainer(model=policy, args=args, forget_dataset=forget, retain_dataset=retain,
                                processing_class=tokenizer, ref_model=reference)
    seen = []
    hooks = [m.get_output_embeddings().register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
             for m in (trainer.model, reference)]
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.compute_loss(trainer.model, batch)
    for h in hooks:
        h.remove()
    assert batch["forget"]["input_ids"].shape[1] > 1
    assert len(seen) == 3 and all(shape[1] == 1 for shape in seen), seen  # forget + retain policy, retain frozen
