"""Tests for hf_unlearn.optim: SophiaG and the Hessian-diagonal estimators.

References are written in float64 straight from the formulas:

    θ ← θ·(1 − lr·wd);  m ← β1·m + (1 − β1)·g;  θ ← θ − lr·clip(m / max(ρh, ε), −1, 1)
    h ← β2·h + (1 − β2)·scale·g⊙g   (squared)   or   β2·h + (1 − β2)·scale·g
"""

from __future__ import annotations

import ast
import io
import math
import sys
from pathlib import Path

import pytest
import torch

from hf_unlearn.optim import (
    EMPIRICAL_SCALE,
    SophiaG,
    estimator_names,
    gnb_loss,
    hutchinson_diagonal,
)
from hf_unlearn.optim.hessian import sample_from_logits

OPTIM_DIR = Path(__file__).resolve().parents[1] / "hf_unlearn" / "optim"


# --------------------------------------------------------------------------- helpers
def ref_step(p, g, m, h, *, lr, beta1, rho, wd, eps):
    """One SophiaG step in float64; returns (p, m, number of unclipped coordinates)."""
    p = p * (1.0 - lr * wd)
    m = beta1 * m + (1.0 - beta1) * g
    ratio = m / torch.clamp(rho * h, min=eps)
    unclipped = int((ratio.abs() < 1).sum())
    p = p - lr * ratio.clamp(-1.0, 1.0)
    return p, m, unclipped


def ref_hessian(h, g, *, beta2, scale, squared=True):
    est = g * g if squared else g
    return beta2 * h + (1.0 - beta2) * scale * est


def f64(t):
    return t.detach().to(torch.float64).clone()


# --------------------------------------------------------------------------- step
def test_steps_match_float64_reference_with_clipping_sign_steps_and_decay():
    torch.manual_seed(0)
    lr, betas, rho, eps = 0.05, (0.9, 0.95), 0.04, 1e-15
    scale = 500.0  # ρ·(1−β2)·scale = 1, so ratio = 0.1·g/gh²: a mix of clipped and unclipped
    W = torch.nn.Parameter(torch.randn(8, 9))
    b = torch.nn.Parameter(torch.randn(9))
    groups = [
        {"params": [W], "weight_decay": 0.1},
        {"params": [b], "weight_decay": 0.0},  # no decay on biases
    ]
    opt = SophiaG(groups, lr=lr, betas=betas, rho=rho, eps=eps)
    params, wds = [W, b], [0.1, 0.0]
    ref_p = [f64(p) for p in params]
    ref_m = [torch.zeros_like(p) for p in ref_p]
    ref_h = [torch.zeros_like(p) for p in ref_p]
    total = W.numel() + b.numel()

    def refresh():
        for i, p in enumerate(params):
            gh = torch.randn_like(p)
            gh[torch.rand_like(p) < 0.25] = 0.0  # these coordinates keep h = 0
            p.grad = gh
            ref_h[i] = ref_hessian(ref_h[i], f64(gh), beta2=betas[1], scale=scale)
        opt.update_hessian(scale=scale)

    saw = {"clipped": 0, "unclipped": 0, "sign": 0}
    for step in range(3):
        if step != 1:  # refresh h before steps 1 and 3, not before step 2
            refresh()
        unclipped = 0
        for i, p in enumerate(params):
            g = torch.randn_like(p)
            p.grad = g
            new_p, ref_m[i], u = ref_step(
                ref_p[i], f64(g), ref_m[i], ref_h[i], lr=lr, beta1=betas[0], rho=rho, wd=wds[i], eps=eps
            )
            zero_h = ref_h[i] == 0
            if step == 0:
                # Sign step where h = 0: θ·(1 − lr·wd) − lr·sign(m), written out separately.
                expected = ref_p[i] * (1 - lr * wds[i]) - lr * torch.sign(ref_m[i])
                torch.testing.assert_close(new_p[zero_h], expected[zero_h], rtol=0, atol=1e-12)
                saw["sign"] += int(zero_h.sum())
            unclipped += u
            ref_p[i] = new_p
        saw["unclipped"] += unclipped
        saw["clipped"] += total - unclipped
        opt.step()
        for p, rp in zip(params, ref_p):
            torch.testing.assert_close(f64(p), rp, rtol=1e-6, atol=1e-6)
        assert opt.win_rate == unclipped / total

    # The data really exercised every branch.
    assert saw["clipped"] > 10 and saw["unclipped"] > 10 and saw["sign"] > 5
    # Momentum was updated exactly once per step: after 3 steps m equals the formula
    # (a double update per step would give an effective β1² and a different m).
    for p, rm, rh in zip(params, ref_m, ref_h):
        torch.testing.assert_close(f64(opt.state[p]["exp_avg"]), rm, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(f64(opt.state[p]["hessian"]), rh, rtol=1e-6, atol=0)
        assert float(opt.state[p]["step"]) == 3.0
    assert opt.hessian_updates == 2


def test_denominator_is_max_of_rho_h_and_eps():
    """Closed form with a large ε: ratio = m / max(ρh, ε), not m / (ρh + ε)."""
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = SophiaG([p], lr=1.0, betas=(0.5, 0.0), rho=0.5, weight_decay=0.0, eps=1.0)
    p.grad = torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64).sqrt()
    opt.update_hessian(scale=2.0)  # β2 = 0: h = 2·g² = (4, 2, 0), ρh = (2, 1, 0)
    p.grad = torch.tensor([2.0, -1.0, 0.6], dtype=torch.float64)
    opt.step()  # m = 0.5·g = (1, −0.5, 0.3); denominators (2, 1, 1)
    torch.testing.assert_close(p.detach(), -torch.tensor([0.5, -0.5, 0.3], dtype=torch.float64), rtol=1e-15, atol=0)
    assert opt.win_rate == 1.0


def test_float64_parameters_match_reference_tightly():
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(20, dtype=torch.float64))
    opt = SophiaG([p], lr=0.1, betas=(0.8, 0.9), rho=0.5, weight_decay=0.2)
    p.grad = torch.randn(20, dtype=torch.float64)
    opt.update_hessian(scale=2.0)
    h = ref_hessian(torch.zeros(20, dtype=torch.float64), p.grad, beta2=0.9, scale=2.0)
    g = torch.randn(20, dtype=torch.float64)
    ref_p, _, unclipped = ref_step(f64(p), g, torch.zeros_like(g), h, lr=0.1, beta1=0.8, rho=0.5, wd=0.2, eps=1e-15)
    p.grad = g
    opt.step()
    assert opt.state[p]["exp_avg"].dtype == torch.float64
    torch.testing.assert_close(p.detach(), ref_p, rtol=1e-14, atol=1e-14)
    assert opt.win_rate == unclipped / 20


def test_zero_weight_decay_group_is_not_decayed():
    """With g = 0 and h = 0, m = 0 so the step is pure decay: θ·(1 − lr·wd), and θ for wd = 0."""
    w = torch.nn.Parameter(torch.full((4,), 2.0))
    b = torch.nn.Parameter(torch.full((3,), 2.0))
    opt = SophiaG([{"params": [w]}, {"params": [b], "weight_decay": 0.0}], lr=0.5, weight_decay=0.1)
    w.grad, b.grad = torch.zeros(4), torch.zeros(3)
    opt.step()
    assert torch.equal(w.detach(), torch.full((4,), 2.0 * (1 - 0.5 * 0.1)))
    assert torch.equal(b.detach(), torch.full((3,), 2.0))
    assert opt.win_rate == 1.0  # m/ε = 0 is not clipped


def test_bf16_parameter_keeps_fp32_state_and_fp32_update():
    torch.manual_seed(2)
    p = torch.nn.Parameter(torch.randn(6, 5).to(torch.bfloat16))
    opt = SophiaG([p], lr=0.01, betas=(0.9, 0.95), rho=0.04, weight_decay=0.1)
    gh = torch.randn(6, 5).to(torch.bfloat16)
    g = torch.randn(6, 5).to(torch.bfloat16)
    p0 = f64(p)
    p.grad = gh
    opt.update_hessian(scale=500.0)
    p.grad = g
    opt.step()
    state = opt.state[p]
    assert p.dtype == torch.bfloat16
    assert state["exp_avg"].dtype == torch.float32 and state["hessian"].dtype == torch.float32
    h = ref_hessian(torch.zeros_like(p0), f64(gh), beta2=0.95, scale=500.0)
    torch.testing.assert_close(f64(state["hessian"]), h, rtol=1e-6, atol=0)
    ref_p, ref_m, _ = ref_step(p0, f64(g), torch.zeros_like(p0), h, lr=0.01, beta1=0.9, rho=0.04, wd=0.1, eps=1e-15)
    torch.testing.assert_close(f64(state["exp_avg"]), ref_m, rtol=1e-6, atol=0)
    # Update in fp32, one rounding into bf16 at the end: within half a bf16 ulp (2^-8 relative).
    torch.testing.assert_close(f64(p), ref_p, rtol=2.0**-8, atol=0)


def test_closure_is_evaluated_and_its_loss_returned():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = SophiaG([p], lr=0.1, weight_decay=0.0)

    def closure():
        opt.zero_grad()
        loss = (p * torch.tensor([3.0, 4.0])).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.detach()) == 3.0 - 8.0
    # h = 0 → sign step of the momentum (1 − β1)·g, which has the sign of g = (3, 4).
    assert torch.allclose(p.detach(), torch.tensor([1.0 - 0.1, -2.0 - 0.1]))


# --------------------------------------------------------------------------- hessian EMA
def test_update_hessian_ema_squared_and_not_squared():
    torch.manual_seed(3)
    a = torch.nn.Parameter(torch.randn(7))
    c = torch.nn.Parameter(torch.randn(3))  # no grad: must get no state and no change
    opt = SophiaG([a, c], lr=1e-3, betas=(0.9, 0.95))
    h = torch.zeros(7, dtype=torch.float64)
    g1, g2 = torch.randn(7), torch.randn(7)
    a.grad = g1
    opt.update_hessian(scale=3.0)
    h = ref_hessian(h, f64(g1), beta2=0.95, scale=3.0, squared=True)
    torch.testing.assert_close(f64(opt.state[a]["hessian"]), h, rtol=1e-6, atol=0)
    a.grad = g2  # a diagonal estimate (may be negative), used as is
    opt.update_hessian(scale=0.5, squared=False)
    h = ref_hessian(h, f64(g2), beta2=0.95, scale=0.5, squared=False)
    torch.testing.assert_close(f64(opt.state[a]["hessian"]), h, rtol=1e-6, atol=1e-7)
    assert len(opt.state[c]) == 0
    assert opt.hessian_updates == 2
    assert torch.equal(opt.state[a]["exp_avg"], torch.zeros(7))
    assert math.isclose(opt.hessian_mean(), float(h.mean()), rel_tol=1e-6)


def test_diagnostics_before_any_step_are_nan():
    opt = SophiaG([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    assert math.isnan(opt.win_rate)
    assert math.isnan(opt.hessian_mean())
    assert opt.hessian_updates == 0


def test_collecting_hessian_step_updates_h_only():
    torch.manual_seed(4)
    p = torch.nn.Parameter(torch.randn(10))
    opt = SophiaG([p], lr=0.1, betas=(0.9, 0.95))
    p.grad = torch.randn(10)
    opt.update_hessian(scale=2.0)
    p.grad = torch.randn(10)
    opt.step()
    before = {k: v.clone() for k, v in opt.state[p].items()}
    p_before, win_before = p.detach().clone(), opt.win_rate

    g = torch.randn(10)
    p.grad = g
    with opt.collecting_hessian(scale=7.0):
        assert opt.in_hessian_mode
        opt.step()
    h = ref_hessian(f64(before["hessian"]), f64(g), beta2=0.95, scale=7.0)
    torch.testing.assert_close(f64(opt.state[p]["hessian"]), h, rtol=1e-6, atol=0)
    assert torch.equal(p.detach(), p_before)
    assert torch.equal(opt.state[p]["exp_avg"], before["exp_avg"])
    assert torch.equal(opt.state[p]["step"], before["step"])
    assert opt.win_rate == win_before
    assert opt.hessian_updates == 2

    # squared=False in hessian mode, and the mode is restored after an exception.
    h_now = f64(opt.state[p]["hessian"])
    with pytest.raises(KeyError):
        with opt.collecting_hessian(scale=1.0, squared=False):
            opt.step()
            raise KeyError("boom")
    torch.testing.assert_close(
        f64(opt.state[p]["hessian"]), ref_hessian(h_now, f64(g), beta2=0.95, scale=1.0, squared=False), rtol=1e-6, atol=1e-7
    )
    assert not opt.in_hessian_mode
    opt.step()  # a real step again
    assert not torch.equal(p.detach(), p_before)
    assert float(opt.state[p]["step"]) == 2.0


# --------------------------------------------------------------------------- state dict
@pytest.mark.parametrize("transport", ["in_memory", "serialized"])
def test_state_dict_round_trip_gives_bit_identical_steps(transport):
    def make():
        torch.manual_seed(5)
        W = torch.nn.Parameter(torch.randn(5, 4))
        b = torch.nn.Parameter(torch.randn(4))
        c = torch.nn.Parameter(torch.randn(3, 3).to(torch.bfloat16))
        return [W, b, c]

    def groups(ps):
        return [{"params": [ps[0], ps[2]]}, {"params": [ps[1]], "weight_decay": 0.0}]

    gen = torch.Generator().manual_seed(6)
    grads = [[torch.randn(p.shape, generator=gen).to(p.dtype) for p in make()] for _ in range(12)]

    def run(opt, ps, rounds):
        for gs_h, gs in rounds:
            for p, g in zip(ps, gs_h):
                p.grad = g.clone()
            opt.update_hessian(scale=50.0)
            for p, g in zip(ps, gs):
                p.grad = g.clone()
            opt.step()

    rounds = list(zip(grads[0::2], grads[1::2]))
    ps1 = make()
    opt1 = SophiaG(groups(ps1), lr=0.02, betas=(0.9, 0.95))
    run(opt1, ps1, rounds[:3])

    sd = opt1.state_dict()
    if transport == "serialized":
        buf = io.BytesIO()
        torch.save(sd, buf)
        buf.seek(0)
        sd = torch.load(buf, weights_only=True)
    ps2 = [torch.nn.Parameter(p.detach().clone()) for p in ps1]
    opt2 = SophiaG(groups(ps2), lr=123.0, betas=(0.5, 0.5), weight_decay=0.7)  # all overwritten by the load
    opt2.load_state_dict(sd)
    assert opt2.win_rate == opt1.win_rate and opt2.hessian_updates == opt1.hessian_updates == 3
    # The bf16 parameter's state comes back as the exact fp32 tensors, not bf16-rounded.
    assert opt2.state[ps2[2]]["hessian"].dtype == torch.float32
    assert torch.equal(opt2.state[ps2[2]]["hessian"], opt1.state[ps1[2]]["hessian"])

    run(opt1, ps1, rounds[3:])
    run(opt2, ps2, rounds[3:])
    for p1, p2 in zip(ps1, ps2):
        assert p1.dtype == p2.dtype
        assert torch.equal(p1, p2)
        for key in ("exp_avg", "hessian", "step"):
            assert torch.equal(opt1.state[p1][key], opt2.state[p2][key])
    assert opt2.win_rate == opt1.win_rate
    assert opt2.hessian_updates == opt1.hessian_updates == 6
    assert 0.0 < opt1.win_rate < 1.0


def test_deepcopy_keeps_win_rate_and_refresh_count():
    import copy

    p = torch.nn.Parameter(torch.tensor([0.0, 0.0, 0.0, 0.0]))
    opt = SophiaG([p], lr=0.1, betas=(0.5, 0.0), rho=1.0)
    p.grad = torch.tensor([1.0, 1.0, 1.0, 0.0])
    opt.update_hessian(scale=1.0)  # h = (1, 1, 1, 0)
    p.grad = torch.tensor([1.0, 4.0, -0.5, 3.0])
    opt.step()  # m = (0.5, 2, −0.25, 1.5) → ratios (0.5, 2, −0.25, 1.5e15): 2 of 4 unclipped
    clone = copy.deepcopy(opt)
    assert clone.win_rate == opt.win_rate == 0.5
    assert clone.hessian_updates == 1


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lr=0.0), r"lr must be a finite number > 0, got 0\.0; pass a positive learning rate"),
        (dict(lr=-1e-5), r"lr must be a finite number > 0, got -1e-05"),
        (dict(lr=float("nan")), r"lr must be a finite number > 0, got nan"),
        (dict(lr=float("inf")), r"lr must be a finite number > 0, got inf"),
        (dict(lr=1e-5, rho=0.0), r"rho must be a finite number > 0, got 0\.0; it scales the Hessian"),
        (dict(lr=1e-5, rho=-0.04), r"rho must be a finite number > 0, got -0\.04"),
        (dict(lr=1e-5, rho=float("inf")), r"rho must be a finite number > 0, got inf"),
        (dict(lr=1e-5, betas=(1.0, 0.99)), r"betas\[0\] must be a finite number in \[0, 1\), got 1\.0"),
        (dict(lr=1e-5, betas=(0.9, 1.0)), r"betas\[1\] must be a finite number in \[0, 1\), got 1\.0"),
        (dict(lr=1e-5, betas=(-0.1, 0.99)), r"betas\[0\] must be a finite number in \[0, 1\), got -0\.1"),
        (dict(lr=1e-5, betas=(float("nan"), 0.99)), r"betas\[0\] must be a finite number in \[0, 1\), got nan"),
        (dict(lr=1e-5, betas=(0.9,)), r"betas must be a pair \(beta1, beta2\)"),
        (dict(lr=1e-5, weight_decay=-0.1), r"weight_decay must be a finite number >= 0, got -0\.1; pass 0\.0 to disable"),
        (dict(lr=1e-5, weight_decay=float("inf")), r"weight_decay must be a finite number >= 0, got inf"),
        (dict(lr=1e-5, eps=0.0), r"eps must be a finite number > 0, got 0\.0; it is the floor"),
        (dict(lr=1e-5, eps=-1e-8), r"eps must be a finite number > 0, got -1e-08"),
        (dict(lr=1e-5, eps=float("nan")), r"eps must be a finite number > 0, got nan"),
    ],
)
def test_bad_hyperparameters_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SophiaG([torch.nn.Parameter(torch.zeros(2))], **kwargs)


def test_bad_group_override_is_rejected_and_not_added():
    opt = SophiaG([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    with pytest.raises(ValueError, match=r"weight_decay must be a finite number >= 0, got -1"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": -1})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("scale", [0.0, -2.0, float("nan"), float("inf")])
def test_bad_hessian_scale_raises(scale):
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.ones(2)
    opt = SophiaG([p], lr=1e-3)
    with pytest.raises(ValueError, match=r"Hessian scale must be a finite number > 0"):
        opt.update_hessian(scale=scale)
    with pytest.raises(ValueError, match=r"Hessian scale must be a finite number > 0"):
        with opt.collecting_hessian(scale=scale):
            pass
    assert opt.hessian_updates == 0


# --------------------------------------------------------------------------- GNB
def test_gnb_is_unbiased_for_gauss_newton_diagonal():
    """E[B·ĝ⊙ĝ] = (1/B)·Σ_b diag(J_bᵀ(diag(p_b) − p_b p_bᵀ)J_b).

    ĝ = (1/B)·Σ_b J_bᵀ(p_b − e_ŷb) with ŷ_b ~ p_b independently; each term has
    mean 0 and covariance J_bᵀ(diag(p_b) − p_b p_bᵀ)J_b, so cross terms vanish.
    For softmax regression z_b = x_bᵀW the entry for W[d, c] is
    (1/B)·Σ_b x_bd²·p_bc·(1 − p_bc) (also the exact Hessian, the model being
    linear).  K independent estimates are vectorised as K copies of W in one
    batch of K sequences; the mean must lie within 5 standard errors.
    """
    K, B, D, C = 4000, 5, 3, 4
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(B, D, generator=gen, dtype=torch.float64)
    W0 = torch.randn(D, C, generator=gen, dtype=torch.float64)
    W = torch.nn.Parameter(W0.expand(K, D, C).clone())
    logits = torch.einsum("td,kdc->ktc", x, W)
    logits = torch.cat([logits, torch.zeros(K, 1, C, dtype=torch.float64)], dim=1)  # last position predicts nothing
    labels = torch.zeros(K, B + 1, dtype=torch.long)
    labels[:, 0] = -100  # position 0 is only ever an input
    loss, n = gnb_loss(logits, labels, generator=gen)
    assert n == K * B
    loss.backward()
    # Loss is the mean over all K·B tokens, so ĝ_k = K·grad_k and B·ĝ_k² = B·K²·grad_k².
    opt = SophiaG([W], lr=1e-3, betas=(0.9, 0.0))  # β2 = 0: h is the latest estimate
    opt.update_hessian(scale=B * K * K)
    est = opt.state[W]["hessian"]  # (K, D, C)
    mean, se = est.mean(0), est.std(0) / math.sqrt(K)

    p = torch.softmax(x @ W0, dim=-1)  # (B, C)
    exact = ((x**2).T @ (p * (1 - p))) / B  # (D, C)
    assert torch.all((mean - exact).abs() <= 5 * se), (mean, exact, se)
    # The test has power: forgetting the factor B (scale = K² only) is far outside.
    assert torch.all((mean / B - exact).abs() > 5 * se / B)


def test_gnb_uses_answer_positions_only_and_samples_from_softmax():
    torch.manual_seed(8)
    logits = torch.randn(2, 6, 7, requires_grad=True)
    labels = torch.tensor([[-100, -100, 3, 4, -100, -100], [-100, 1, 2, 5, 6, 0]])
    loss, n = gnb_loss(logits, labels, generator=torch.Generator().manual_seed(0))
    assert n == 2 + 5
    loss.backward()
    shifted_answer = labels[:, 1:] != -100
    grad = logits.grad
    assert torch.all(grad[:, -1] == 0)
    assert torch.all(grad[:, :-1][~shifted_answer] == 0)
    # On an answer row, n·grad = softmax − onehot(ŷ): exactly one entry is softmax − 1.
    rows = grad[:, :-1][shifted_answer] * n
    probs = torch.softmax(logits.detach()[:, :-1][shifted_answer], dim=-1)
    diff = rows - probs
    assert torch.all((diff + 1).abs().lt(1e-5).sum(-1) == 1)
    assert torch.all(((diff.abs() < 1e-6) | ((diff + 1).abs() < 1e-5)).all(-1))
    # Reproducible with the same generator seed.
    loss2, _ = gnb_loss(logits, labels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loss.detach(), loss2.detach())


def test_inverse_cdf_draws_follow_softmax_and_skip_zero_probability_classes():
    # Evenly spaced u_i = (i + 1/2)/N: class v is drawn for the u's inside its cdf interval, so its count
    # is N * p_v to within one draw, with no randomness in the test.
    logits = torch.tensor([[0.3, -1.2, 2.0, float("-inf"), 0.0, 1.1]])
    probs = torch.softmax(logits, -1)[0].double()
    n = 10_000
    uniforms = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    drawn = sample_from_logits(logits.expand(n, -1), uniforms)
    counts = torch.bincount(drawn, minlength=6).double()
    assert counts[3] == 0  # probability 0
    assert torch.all((counts - n * probs).abs() <= 1.0)
    # The extremes of [0, 1) stay inside the vocabulary.
    assert sample_from_logits(logits.expand(2, -1), torch.tensor([0.0, 1.0 - 2**-24])).tolist() == [0, 5]


def test_gnb_uniforms_must_match_answer_positions():
    logits = torch.randn(1, 4, 5)
    labels = torch.tensor([[-100, 1, 2, -100]])
    with pytest.raises(ValueError, match=r"got \(3,\) uniforms for 2 answer positions"):
        gnb_loss(logits, labels, uniforms=torch.rand(3))
    loss, n = gnb_loss(logits, labels, uniforms=torch.tensor([0.0, 0.0]))
    # u = 0 draws the first class of positive probability: class 0 at both positions.
    expected = torch.nn.functional.cross_entropy(logits[0, :2], torch.tensor([0, 0]))
    assert n == 2 and torch.allclose(loss, expected)


def test_gnb_raises_on_batch_without_answer_tokens():
    logits = torch.randn(2, 4, 5)
    labels = torch.full((2, 4), -100)
    labels[:, 0] = 3  # position 0 is never a target after the shift
    with pytest.raises(ValueError, match=r"zero answer tokens"):
        gnb_loss(logits, labels)
    with pytest.raises(ValueError, match=r"labels shape \(2, 3\) does not match"):
        gnb_loss(logits, labels[:, :3])


# --------------------------------------------------------------------------- Hutchinson
def test_hutchinson_mean_approaches_diag_of_quadratic():
    """For ½xᵀAx, u⊙(Au) has mean diag(A) and variance Σ_{j≠i} A_ij² per coordinate i."""
    K, n = 3000, 6
    gen = torch.Generator().manual_seed(9)
    M = torch.randn(n, n, generator=gen, dtype=torch.float64)
    A = M + M.T
    X = torch.nn.Parameter(torch.randn(K, n, generator=gen, dtype=torch.float64))  # K independent copies
    loss = 0.5 * torch.einsum("ki,ij,kj->", X, A, X)
    (est,) = hutchinson_diagonal(loss, [X], generator=gen)
    mean = est.mean(0)
    se = torch.sqrt(((A**2).sum(1) - torch.diagonal(A) ** 2) / K)
    assert torch.all((mean - torch.diagonal(A)).abs() <= 5 * se), (mean, torch.diagonal(A), se)
    # Per-sample variance agrees with the closed form too (loose: it is itself an estimate).
    torch.testing.assert_close(est.var(0), se**2 * K, rtol=0.15, atol=0)


def test_hutchinson_is_exact_for_diagonal_hessian_and_feeds_update_hessian():
    a = torch.tensor([0.5, -2.0, 3.0, 0.0, 7.25])
    x = torch.nn.Parameter(torch.randn(5))
    A = torch.diag(a)
    loss = 0.5 * x @ A @ x
    (est,) = hutchinson_diagonal(loss, [x], generator=torch.Generator().manual_seed(0))
    assert torch.equal(est, a)
    x.grad = est
    opt = SophiaG([x], lr=1e-3, betas=(0.9, 0.0))
    opt.update_hessian(squared=False)
    assert torch.equal(opt.state[x]["hessian"], a)


def test_hutchinson_unused_param_gets_zero_and_generator_is_reproducible():
    x = torch.nn.Parameter(torch.randn(4))
    unused = torch.nn.Parameter(torch.randn(3))

    def estimate(seed):
        loss = (x**4).sum()
        return hutchinson_diagonal(loss, [x, unused], generator=torch.Generator().manual_seed(seed))

    e1, e2 = estimate(1), estimate(1)
    assert torch.equal(e1[0], e2[0])
    torch.testing.assert_close(e1[0], 12 * x.detach() ** 2)  # diagonal Hessian: exact
    assert torch.equal(e1[1], torch.zeros(3))


def test_hutchinson_raises_for_once_differentiable_or_linear_loss():
    from torch.autograd.function import once_differentiable

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            ctx.save_for_backward(t)
            return t * t

        @staticmethod
        @once_differentiable
        def backward(ctx, grad):
            (t,) = ctx.saved_tensors
            return 2 * t * grad

    x = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(RuntimeError, match=r"twice-differentiable loss.*--hessian_estimator gnb"):
        hutchinson_diagonal(Square.apply(x).sum(), [x])
    with pytest.raises(RuntimeError, match=r"no grad_fn.*--hessian_estimator gnb"):
        hutchinson_diagonal((x * torch.tensor([1.0, 2.0, 3.0])).sum(), [x])


# --------------------------------------------------------------------------- empirical
def test_empirical_estimator_is_ema_of_scaled_squared_training_gradient():
    assert EMPIRICAL_SCALE == 5120
    assert estimator_names() == ("gnb", "hutchinson", "empirical")
    torch.manual_seed(10)
    x, y = torch.randn(6, 4), torch.tensor([0, 2, 1, 1, 0, 2])
    layer = torch.nn.Linear(4, 3)
    params = list(layer.parameters())
    opt = SophiaG(params, lr=1e-3, betas=(0.9, 0.95))
    ref_h = [torch.zeros_like(f64(p)) for p in params]
    for _ in range(4):
        opt.zero_grad()
        loss = -torch.nn.functional.cross_entropy(layer(x), y)  # gradient ascent on the forget loss
        loss.backward()
        for i, p in enumerate(params):
            ref_h[i] = ref_hessian(ref_h[i], f64(p.grad), beta2=0.95, scale=EMPIRICAL_SCALE)
        opt.update_hessian(scale=EMPIRICAL_SCALE)
        opt.step()
    for p, rh in zip(params, ref_h):
        torch.testing.assert_close(f64(opt.state[p]["hessian"]), rh, rtol=1e-5, atol=0)
    assert opt.hessian_updates == 4


# --------------------------------------------------------------------------- packaging
def test_optim_package_imports_only_torch_numpy_and_stdlib():
    allowed = set(sys.stdlib_module_names) | {"torch", "numpy"}  # numpy: the GNB rows' seed sequences
    for path in sorted(OPTIM_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 0:  # relative import inside hf_unlearn.optim
                    continue
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in allowed, f"{path.name} imports {root}"


def test_per_tensor_and_foreach_clipped_steps_agree():
    """The CPU path (one tensor at a time) and the multi-tensor path (used off CPU) make the same update and
    count the same unclipped coordinates, with clipped, unclipped and h = 0 coordinates present."""
    from hf_unlearn.optim.sophia import _clipped_step_foreach, _clipped_step_per_tensor

    torch.manual_seed(5)
    shapes = [(7, 3), (11,), (2, 2, 5)]
    exp_avgs = [torch.randn(s) * 0.01 for s in shapes]
    hessians = [torch.rand(s) for s in shapes]
    hessians[1][:4] = 0.0  # never refreshed: sign steps
    params_a = [torch.randn(s) for s in shapes]
    params_b = [p.clone() for p in params_a]
    count_a = _clipped_step_per_tensor(params_a, exp_avgs, hessians, lr=0.1, rho=0.04, eps=1e-15)
    count_b = _clipped_step_foreach(params_b, exp_avgs, hessians, lr=0.1, rho=0.04, eps=1e-15)
    for a, b in zip(params_a, params_b):
        assert torch.equal(a, b)
    ratios = [(m / (h * 0.04).clamp_min(1e-15)).abs() for m, h in zip(exp_avgs, hessians)]
    expected = sum(int((r < 1).sum()) for r in ratios)
    assert 0 < expected < sum(r.numel() for r in ratios)
    assert int(count_a) == int(count_b) == expected


@pytest.mark.parametrize("squared", [True, False])
def test_fold_gradient_of_each_parameter_equals_a_hessian_mode_step(squared):
    """Folding the gradients one parameter at a time (the refresh on the step's graph) = one step() over all."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(4))]
    grads = [torch.randn_like(p) for p in params]
    states = []
    for one_at_a_time in (False, True):
        copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
        opt = SophiaG([{"params": copies[:1]}, {"params": copies[1:], "betas": (0.9, 0.8)}], lr=1e-2)
        for _ in range(2):  # twice: the second fold also decays the first
            with opt.collecting_hessian(scale=3.0, squared=squared):
                for c, g in zip(copies, grads):
                    c.grad = g.clone()
                if one_at_a_time:
                    for group in opt.param_groups:
                        for c in group["params"]:
                            opt.fold_gradient(c, group)
                else:
                    opt.step()
        states.append([opt.state[c]["hessian"] for c in copies])
        assert opt.hessian_updates == 2
    for a, b in zip(*states):
        assert torch.equal(a, b) and a.abs().sum() > 0
    with pytest.raises(RuntimeError, match="inside collecting_hessian"):
        opt.fold_gradient(copies[0], opt.param_groups[0])
