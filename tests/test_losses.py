"""The loss formulas as pure functions against float64 values computed by hand (plain-Python math on
constructed logits). The losses as training runs them, through `compute_loss`, are in test_method_losses.py."""

import math

import pytest
import torch

from hf_unlearn.methods import losses
from hf_unlearn.methods.idk import dpo_loss
from hf_unlearn.methods.npo import npo_loss, simnpo_loss
from hf_unlearn.methods.undial import soft_cross_entropy, undial_target


def undial_loss(logits, teacher, labels, beta):
    """UNDIAL as its term composes it: the adjusted target from the teacher's answer rows, then the soft CE."""
    target = undial_target(losses.answer_rows(teacher, labels), losses.answer_labels(labels), beta)
    return soft_cross_entropy(logits, target, labels)

# Two sequences, vocab 3. Row 0: prompt at 0-1, answer tokens at 2-3. Row 1: prompt at 0, answer at 1-2,
# padding at 3. logits[b, t] predicts labels[b, t+1].
LABELS = torch.tensor([[-100, -100, 2, 0], [-100, 1, 1, -100]])
LOGITS = torch.tensor(
    [
        [[0.5, -1.0, 2.0], [1.0, 0.0, -1.0], [0.2, 0.3, 0.1], [9.0, 9.0, 9.0]],
        [[0.0, 1.0, 3.0], [-2.0, 0.5, 0.0], [7.0, -7.0, 7.0], [1.0, 2.0, 3.0]],
    ],
    dtype=torch.float64,
)
# Scored (position, label) pairs per row, from the shift above.
SCORED = {0: [(1, 2), (2, 0)], 1: [(0, 1), (1, 1)]}


def log_softmax(row):
    m = max(row)
    z = math.log(sum(math.exp(x - m) for x in row)) + m
    return [x - z for x in row]


def row_ce(logits, b):
    return [-log_softmax(logits[b][t].tolist())[y] for t, y in SCORED[b]]


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def test_nll_and_sequence_nll_by_hand():
    ce = {b: row_ce(LOGITS, b) for b in SCORED}
    expected_nll = (sum(ce[0]) + sum(ce[1])) / 4
    assert losses.nll(LOGITS, LABELS).item() == pytest.approx(expected_nll, rel=1e-12)
    assert losses.sequence_nll(LOGITS, LABELS).tolist() == pytest.approx([sum(ce[0]), sum(ce[1])], rel=1e-12)
    assert losses.answer_lengths(LABELS).tolist() == [2, 2]


def test_npo_simnpo_dpo_by_hand():
    seq = torch.tensor([2.0, 0.5], dtype=torch.float64)
    ref = torch.tensor([1.0, 1.5], dtype=torch.float64)
    beta = 0.1
    expected = -(2 / beta) * (log_sigmoid(beta * (2.0 - 1.0)) + log_sigmoid(beta * (0.5 - 1.5))) / 2
    assert npo_loss(seq, ref, beta).item() == pytest.approx(expected, rel=1e-12)
    # NPO = (2/beta) E log(1 + (pi/pi_ref)^beta), pi = exp(-seqNLL)
    alt = (2 / beta) * sum(math.log1p(math.exp(-beta * s) / math.exp(-beta * r)) for s, r in [(2.0, 1.0), (0.5, 1.5)]) / 2
    assert npo_loss(seq, ref, beta).item() == pytest.approx(alt, rel=1e-12)

    lengths = torch.tensor([4, 1])
    beta, gamma = 4.5, 0.5
    expected = -(2 / beta) * (log_sigmoid(beta * 2.0 / 4 - gamma) + log_sigmoid(beta * 0.5 / 1 - gamma)) / 2
    assert simnpo_loss(seq, lengths, beta, gamma).item() == pytest.approx(expected, rel=1e-12)

    chosen, rejected = torch.tensor([3.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    ref_c, ref_r = torch.tensor([4.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    margin = (-3.0 + 4.0) - (-1.0 + 0.5)  # (log pi_c - log ref_c) - (log pi_r - log ref_r)
    assert dpo_loss(chosen, rejected, ref_c, ref_r, 0.1).item() == pytest.approx(-log_sigmoid(0.1 * margin))


def test_kl_on_answers_by_hand():
    ref_logits = LOGITS.flip(-1) * 0.7
    total = 0.0
    for b, pairs in SCORED.items():
        for t, _ in pairs:
            lp, lr = log_softmax(LOGITS[b][t].tolist()), log_softmax(ref_logits[b][t].tolist())
            total += sum(math.exp(r) * (r - p) for p, r in zip(lp, lr))
    ref_rows = losses.answer_rows(ref_logits, LABELS)  # the reference's logits at the answer positions only
    assert losses.kl_on_answers(LOGITS, ref_rows, LABELS).item() == pytest.approx(total / 4, rel=1e-12)
    assert losses.kl_on_answers(LOGITS, losses.answer_rows(LOGITS, LABELS), LABELS).item() == pytest.approx(0.0, abs=1e-15)


def test_undial_by_hand_and_target_mass():
    teacher = LOGITS * 0.5 + 0.3
    beta = 2.0
    total = 0.0
    for b, pairs in SCORED.items():
        for t, y in pairs:
            z = teacher[b][t].tolist()
            z[y] -= beta
            q = [math.exp(v) for v in log_softmax(z)]
            lp = log_softmax(LOGITS[b][t].tolist())
            total += -sum(qi * li for qi, li in zip(q, lp))
    assert undial_loss(LOGITS, teacher, LABELS, beta).item() == pytest.approx(total / 4, rel=1e-12)
    assert losses.answer_rows(teacher, LABELS).shape == (4, 3)

    # The adjusted target keeps p e^-beta / (1 - p + p e^-beta) on the label.
    z = torch.tensor([[0.3, 1.2, -0.4, 2.0]], dtype=torch.float64)
    p = torch.softmax(z, -1)[0, 1].item()
    q = undial_target(z, torch.tensor([1]), beta)[0, 1].item()
    assert q == pytest.approx(p * math.exp(-beta) / (1 - p + p * math.exp(-beta)), rel=1e-12)


@pytest.mark.parametrize("name", ["nll", "undial", "kl", "npo_seq"])
def test_prompt_and_padding_positions_change_nothing(name):
    """Logits at prompt/pad positions (those predicting a -100 label) must not move any loss."""
    disturbed = LOGITS.clone()
    disturbed[0, 0] += torch.tensor([5.0, -3.0, 1.0], dtype=torch.float64)  # predicts a prompt token
    disturbed[0, 3] -= 4.0  # last position predicts nothing
    disturbed[1, 2] += torch.tensor([0.0, 9.0, -9.0], dtype=torch.float64)  # predicts padding
    other = LOGITS * 0.3
    fn = {
        "nll": lambda lg: losses.nll(lg, LABELS),
        "undial": lambda lg: undial_loss(lg, other, LABELS, 3.0),
        "kl": lambda lg: losses.kl_on_answers(lg, losses.answer_rows(other, LABELS), LABELS),
        "npo_seq": lambda lg: npo_loss(losses.sequence_nll(lg, LABELS), torch.zeros(2, dtype=lg.dtype), 0.1),
    }[name]
    assert fn(disturbed).item() == pytest.approx(fn(LOGITS).item(), rel=1e-13)
    # and the teacher's prompt positions too
    if name == "undial":
        teacher = other.clone()
        teacher[0, 0] += 100.0
        assert undial_loss(LOGITS, teacher, LABELS, 3.0).item() == pytest.approx(fn(LOGITS).item(), rel=1e-13)


def test_npo_gradient_tends_to_ga_direction():
    """As beta -> 0, grad NPO -> grad of -mean seqNLL (GA on sequence log-likelihoods)."""
    ref = torch.tensor([1.0, 3.0], dtype=torch.float64)

    def grad(fn):
        logits = LOGITS.clone().requires_grad_(True)
        fn(losses.sequence_nll(logits, LABELS)).backward()
        return logits.grad.flatten()

    ga = grad(lambda s: -s.mean())
    previous_gap = None
    for beta in (1.0, 0.1, 1e-4):
        npo = grad(lambda s: npo_loss(s, ref, beta))
        gap = (npo - ga).norm().item() / ga.norm().item()
        assert previous_gap is None or gap < previous_gap
        previous_gap = gap
    assert previous_gap < 1e-3
    assert torch.nn.functional.cosine_similarity(npo, ga, dim=0).item() > 0.999999


def test_soft_cross_entropy_matches_log_softmax_form_in_value_and_gradient():
    """logsumexp(z) - <q, z> (what UNDIAL's loss computes, to keep less for the backward) against the textbook
    -sum q log softmax(z), float64, on answer rows only; and answer_rows equals the slice-then-mask rows."""
    torch.manual_seed(3)
    labels = torch.tensor([[-100, -100, 4, 2, 1], [-100, 3, 0, -100, -100]])
    logits = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    target = torch.softmax(torch.randn(int((labels[:, 1:] != -100).sum()), 6, dtype=torch.float64), -1)
    rows = losses.answer_rows(logits, labels)
    assert torch.equal(rows, logits[:, :-1][labels[:, 1:] != -100])
    assert torch.equal(losses.answer_labels(labels), torch.tensor([4, 2, 1, 3, 0]))
    ours = soft_cross_entropy(logits, target, labels)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    textbook = -(target * torch.log_softmax(rows, -1)).sum(-1).mean()
    (grad_textbook,) = torch.autograd.grad(textbook, logits)
    assert abs(ours.item() - textbook.item()) < 1e-12
    assert torch.allclose(grad_ours, grad_textbook, atol=1e-14)
    # d/dz_t = (softmax(z_t) - q_t) / N on answer rows, zero elsewhere
    expected = torch.zeros_like(logits)
    expected[:, :-1][labels[:, 1:] != -100] = (torch.softmax(rows.detach(), -1) - target) / rows.shape[0]
    assert torch.allclose(grad_ours, expected, atol=1e-14)
