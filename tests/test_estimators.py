"""The Hessian estimators through their interface and the refresh that training runs (`refresh_hessian`), each
against its closed form on a small model; a new estimator is one registered class."""

import math
from types import SimpleNamespace

import pytest
import torch

from hf_unlearn.optim import (
    EMPIRICAL_SCALE, ESTIMATORS, HessianEstimator, RefreshContext, SophiaG, estimator_names, get_estimator,
    refresh_hessian, register_estimator,
)


class TableLM(torch.nn.Module):
    """logits[b, t] = table[input_ids[b, t]]: the Jacobian of a position's logits selects one row of the table."""

    def __init__(self, vocab: int, seed: int = 0):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, dtype=torch.float64,
                                                    generator=torch.Generator().manual_seed(seed)))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.table[input_ids])


def context(step=0, loss=None, fraction=1.0):
    return RefreshContext(seed=3, step=step, rank=0, world=1, device=torch.device("cpu"), batch_fraction=fraction,
                          unlearning_loss=loss, sum_over_processes=lambda n: n)


def refreshed_h(model, batch, estimator, ctx):
    """h after one refresh from zero with beta2 = 0, i.e. the estimate itself."""
    sophia = SophiaG(model.parameters(), lr=1e-3, betas=(0.9, 0.0))
    refresh_hessian(model, batch, sophia, estimator, ctx)
    assert all(p.grad is None for p in model.parameters())  # no gradient left behind
    return sophia.state[model.table if hasattr(model, "table") else next(model.parameters())]["hessian"]


def test_gnb_is_unbiased_for_the_gauss_newton_diagonal():
    """E[B * g_hat^2] = (1/B) sum over answer tokens t of diag(J_t^T (diag p_t - p_t p_t^T) J_t); with
    logits_t = table[x_t] that is, for table[i, v], (1/B) sum_{t: x_t = i} p_t,v (1 - p_t,v)."""
    vocab = 4
    model = TableLM(vocab)
    part = {"input_ids": torch.tensor([[0, 1, 2, 1, 3], [2, 0, 0, 3, 3]]),
            "labels": torch.tensor([[-100, -100, 2, 1, 3], [-100, 0, 0, 3, -100]])}
    part["attention_mask"] = torch.ones_like(part["input_ids"])
    batch = {"forget": part, "retain": {k: v.flip(0) for k, v in part.items()}}
    closed, tokens = torch.zeros(vocab, vocab, dtype=torch.float64), 0
    with torch.no_grad():
        for p_ in batch.values():
            probs = torch.softmax(model.table[p_["input_ids"]], -1)
            for b in range(2):
                for t in range(4):
                    if p_["labels"][b, t + 1] != -100:
                        closed[p_["input_ids"][b, t]] += probs[b, t] * (1 - probs[b, t])
                        tokens += 1
    closed /= tokens
    gnb = get_estimator("gnb")
    draws = 600
    mean = sum(refreshed_h(model, batch, gnb, context(step)) for step in range(draws)) / draws
    torch.testing.assert_close(mean, closed, rtol=0.15, atol=0.03 * closed.max().item())
    fisher_gap = (closed - refreshed_h(model, batch, gnb, context(0))).abs().max()  # one draw is far off
    assert fisher_gap > 0.15 * closed.max()
    _, scale = gnb.estimate_loss(model, batch, context())
    assert scale == tokens == 12


def test_hutchinson_averages_to_the_hessian_diagonal_and_is_exact_for_a_diagonal_hessian():
    """u * (H u) with Rademacher u: E = diag(H); for L = 1/2 theta^T A theta, H = A."""
    a = torch.tensor([[2.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 3.0]], dtype=torch.float64)
    model = torch.nn.Linear(3, 1, bias=False).double()
    quadratic = lambda m, batch: 0.5 * m.weight[0] @ a @ m.weight[0]  # noqa: E731
    hutchinson = get_estimator("hutchinson")
    assert not hutchinson.squared and hutchinson.double_backward
    draws = 400
    mean = sum(refreshed_h(model, {}, hutchinson, context(step, quadratic)) for step in range(draws)) / draws
    spread = math.sqrt(0.5**2 + 0.3**2) / math.sqrt(draws)  # std of u_i sum_{j != i} A_ij u_j, averaged
    torch.testing.assert_close(mean[0], torch.diagonal(a), rtol=0, atol=5 * spread)
    diagonal = torch.diag(torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64))
    exact = refreshed_h(model, {}, hutchinson, context(7, lambda m, b: 0.5 * m.weight[0] @ diagonal @ m.weight[0]))
    assert torch.equal(exact[0], torch.diagonal(diagonal))  # u_i^2 = 1: every draw is exact


def test_empirical_folds_the_scaled_squared_training_gradient_at_every_step():
    model = torch.nn.Linear(3, 1, bias=False).double()
    sophia = SophiaG(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    empirical = get_estimator("empirical")
    assert not empirical.refreshes
    empirical.configure(sophia)
    model.weight.grad = torch.tensor([[0.1, -0.2, 0.3]], dtype=torch.float64)
    sophia.step()
    expected = (1 - 0.99) * EMPIRICAL_SCALE * torch.tensor([[0.01, 0.04, 0.09]], dtype=torch.float64)
    torch.testing.assert_close(sophia.state[model.weight]["hessian"], expected, rtol=1e-12, atol=0)


def test_a_new_estimator_is_one_registered_class(tmp_path, tokenizer, make_model, forget_retain):
    from hf_unlearn import UnlearningConfig, UnlearningTrainer

    assert estimator_names() == ("gnb", "hutchinson", "empirical")
    with pytest.raises(ValueError, match="Unknown hessian_estimator 'gbn'; known: gnb, hutchinson, empirical"):
        get_estimator("gbn")

    @register_estimator
    class WeightSquare(HessianEstimator):
        """h absorbs theta (the gradient of sum theta^2 / 2): a closed form to check the plumbing."""

        name = "weight_square"
        squared = False

        def estimate_loss(self, model, batch, ctx):
            return sum((p * p).sum() / 2 for p in model.parameters() if p.requires_grad), 1.0

    try:
        args = UnlearningConfig(output_dir=str(tmp_path), unlearn_method="ga", unlearn_optimizer="sophia",
                                hessian_estimator="weight_square", max_steps=1, per_device_train_batch_size=2,
                                report_to=[], sophia_beta2=0.5)
        model = make_model()
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        trainer = UnlearningTrainer(model=model, args=args, forget_dataset=forget_retain[0], processing_class=tokenizer)
        trainer.train()
        h = {n: trainer.sophia.state[p]["hessian"] for n, p in model.named_parameters()}
        for name, theta in start.items():  # refreshed before the first step, from the starting weights
            torch.testing.assert_close(h[name], 0.5 * theta, rtol=1e-6, atol=0)
    finally:
        del ESTIMATORS["weight_square"]
