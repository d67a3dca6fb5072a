"""Greedy decoding without padding waste (hf_unlearn.eval.decoding) and its accounting.

A float64 tiny Llama decodes synthetic TOFU questions.  Its random weights are drawn with std 0.3 (at
the usual 0.02 every row repeats one token), and tokens that some rows emit at different steps are
made stop tokens (through the model's generation config, as a chat model's extra EOS ids are), so that
rows end at very different steps and the pool really drops and refills rows.
"""

from __future__ import annotations

import pytest
import torch

from hf_unlearn.data.formatting import encode_prompt
from hf_unlearn.eval.decoding import DecodeStats, greedy_decode, supports_row_pool
from hf_unlearn.eval.scoring import eos_ids, generate_answers

MAX_NEW = 12


@pytest.fixture(scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tokenizer, synthetic_splits, _one_thread):
    from hf_unlearn.offline.tiny import build_tiny_llama

    model = build_tiny_llama(tokenizer, seed=0, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=128).double().eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    questions = [row["question"] for row in synthetic_splits["forget10"][:14]]
    questions.append("Who?")  # a much shorter prompt, to mix prompt lengths within a pool
    prompts = [encode_prompt(tokenizer, q) for q in questions]
    # Stop on the token that row j emits at step 1 + 3j (j = 0..3): rows then end at different steps.
    with torch.inference_mode():
        free = greedy_decode(model, prompts, batch_size=len(prompts), max_new_tokens=MAX_NEW,
                             stop_ids={tokenizer.eos_token_id}, pad_id=tokenizer.pad_token_id,
                             device=torch.device("cpu"))
    extra = [free[j][1 + 3 * j] for j in range(4)]
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *extra]
    stop = set(eos_ids(model, tokenizer))
    single = [_decode(model, [p], stop, tokenizer.pad_token_id, 1)[0] for p in prompts]
    return model, tokenizer, questions, prompts, stop, single


def _decode(model, prompts, stop, pad, batch_size, stats=None):
    with torch.inference_mode():
        return greedy_decode(model, prompts, batch_size=batch_size, max_new_tokens=MAX_NEW, stop_ids=stop,
                             pad_id=pad, device=torch.device("cpu"), stats=stats)


def _hf_greedy(model, prompt, stop, pad):
    """Unpadded `model.generate` of one prompt, cut at its first stop token: the reference."""
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW,
                             do_sample=False, pad_token_id=pad, eos_token_id=sorted(stop))
    new = out[0, len(prompt):].tolist()
    for k, t in enumerate(new):
        if t in stop:
            return new[:k]
    return new


def test_pool_outputs_are_token_identical_to_batch_size_one(setup):
    model, tok, _, prompts, stop, single = setup
    assert supports_row_pool(model)
    pad = tok.pad_token_id
    lengths = [len(s) for s in single]
    # The case worth testing: rows stop early, late and at the cap, so the pool drops and refills.
    assert min(lengths) <= 2 and max(lengths) == MAX_NEW and len(set(lengths)) >= 4
    stats = DecodeStats()
    assert _decode(model, prompts, stop, pad, 4, stats) == single
    assert stats.forwards > MAX_NEW  # several prefills merged into a running pool
    assert _decode(model, prompts, stop, pad, 6) == single
    assert [_hf_greedy(model, p, stop, pad) for p in prompts[:5]] == single[:5]


def test_decode_accounting_pool_vs_generate(setup):
    model, tok, questions, prompts, stop, single = setup
    # A row produces one token per step up to and including its stop token, or MAX_NEW tokens.
    needed = [min(len(s) + 1, MAX_NEW) for s in single]

    pool = DecodeStats()
    pool_text = generate_answers(model, tok, questions, batch_size=4, max_new_tokens=MAX_NEW,
                                 show_progress=False, strategy="pool", stats=pool)
    assert pool.row_steps == sum(needed) and pool.finished_row_steps == 0 and pool.waste == 0.0

    padded = DecodeStats()
    padded_text = generate_answers(model, tok, questions, batch_size=4, max_new_tokens=MAX_NEW,
                                   show_progress=False, strategy="generate", stats=padded)
    assert padded_text == pool_text
    # model.generate: batches of 4 prompts sorted longest first, each runs until its last row stops.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    batches = [order[i: i + 4] for i in range(0, len(order), 4)]
    total = sum(max(needed[i] for i in b) * len(b) for b in batches)
    assert padded.row_steps == total
    assert padded.finished_row_steps == total - sum(needed) > 0
    assert padded.waste == pytest.approx(1 - sum(needed) / total)


def test_strategy_errors(setup):
    model, tok, questions = setup[:3]
    with pytest.raises(ValueError, match="strategy must be"):
        generate_answers(model, tok, questions[:1], strategy="beam", show_progress=False)


@pytest.mark.parametrize("name", ["qwen3", "phi-1.5", "gpt-neox", "opt", "gpt2", "gemma3"])
def test_families_pool_matches_batch_size_one(name, tokenizer, synthetic_splits, _one_thread):
    """Rotary (partial), learned absolute positions (OPT, GPT-2), and a sliding-window family
    (Gemma 3: not a plain cache, so `auto` falls back to model.generate)."""
    from test_architectures import _model, _tokenizer  # the architecture matrix's tiny configs

    tok = _tokenizer(tokenizer, name)
    model = _model(name, tok).double().eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    assert supports_row_pool(model) == (name != "gemma3")
    questions = [row["question"] for row in synthetic_splits["forget10"][:4]] + ["Who?"]
    single = [generate_answers(model, tok, [q], batch_size=1, max_new_tokens=6, show_progress=False,
                               strategy="generate")[0] for q in questions]
    assert generate_answers(model, tok, questions, batch_size=2, max_new_tokens=6, show_progress=False) == single


# --------------------------------------------------------------------------------------------
# scoring with a shared prefix (hf_unlearn.eval.scoring._score_batch_shared_prefix)
# --------------------------------------------------------------------------------------------


def _qa_pairs(synthetic_splits, n_questions=4):
    rows = synthetic_splits["forget10_perturbed"][:n_questions]
    pairs = [(r["question"], a) for r in rows for a in [r["answer"], r["paraphrased_answer"], *r["perturbed_answer"][:3]]]
    return pairs + [("Who?", rows[0]["answer"])]  # a question with one answer: scored the plain way


def _assert_same_scores(got, want, tol):
    assert [s.num_tokens for s in got] == [s.num_tokens for s in want]
    torch.testing.assert_close(torch.tensor([s.avg_nll for s in got]), torch.tensor([s.avg_nll for s in want]),
                               rtol=tol, atol=tol)
    for g, w in zip(got, want):
        for name in ("token_logprobs", "min_k_plus_plus"):
            torch.testing.assert_close(torch.from_numpy(getattr(g, name)), torch.from_numpy(getattr(w, name)),
                                       rtol=tol, atol=tol)
        assert (g.correct == w.correct).all()


def test_shared_prefix_scores_equal_one_forward_per_pair(setup, synthetic_splits, monkeypatch):
    """float64: each question's answers scored on its prompt's repeated KV cache = today's one forward per
    pair, for batches that hold several questions, split a question's answers, or mix both paths."""
    from hf_unlearn.eval import scoring
    from hf_unlearn.eval.scoring import _encode_pairs, _prefix_batches, score_answers

    model, tok = setup[0], setup[1]
    pairs = _qa_pairs(synthetic_splits)
    want = score_answers(model, tok, pairs, batch_size=32, with_token_stats=True, show_progress=False,
                         share_prefix=False)
    shared_rows = []
    real = scoring._score_batch_shared_prefix
    monkeypatch.setattr(scoring, "_score_batch_shared_prefix",
                        lambda model, encoded, *a: shared_rows.append(len(encoded)) or real(model, encoded, *a))
    for batch_size in (32, 3):
        shared_rows.clear()
        got = score_answers(model, tok, pairs, batch_size=batch_size, with_token_stats=True, show_progress=False)
        _assert_same_scores(got, want, 1e-12)
        assert sum(shared_rows) == len(pairs) - 1  # all but the one-answer question went the shared way
    # The batching: the 5 answers of a question sit together; a batch of 3 splits them.
    encoded = _encode_pairs(tok, pairs)
    shared = list(range(len(pairs) - 1))
    assert [len(b) for b in _prefix_batches(encoded, shared, 32)] == [20]
    assert sorted(len(b) for b in _prefix_batches(encoded, shared, 12)) == [10, 10]
    assert all(len({tuple(encoded[i][0][: encoded[i][1] - 1]) for i in b}) == 1
               for b in _prefix_batches(encoded, shared, 5))


@pytest.mark.parametrize("name", ["qwen3", "gpt2", "opt", "gemma3"])
def test_families_shared_prefix_scores(name, tokenizer, synthetic_splits, _one_thread):
    """Rotary (Qwen3), learned positions (GPT-2, OPT); Gemma 3 (sliding window) keeps the plain path."""
    from test_architectures import _model, _tokenizer

    from hf_unlearn.eval.scoring import score_answers

    tok = _tokenizer(tokenizer, name)
    model = _model(name, tok).double().eval()
    pairs = _qa_pairs(synthetic_splits, 2)
    want = score_answers(model, tok, pairs, batch_size=4, with_token_stats=True, show_progress=False,
                         share_prefix=False)
    if name == "gemma3":
        with pytest.raises(ValueError, match="plain full attention"):
            score_answers(model, tok, pairs, show_progress=False, share_prefix=True)
    got = score_answers(model, tok, pairs, batch_size=4, with_token_stats=True, show_progress=False)
    _assert_same_scores(got, want, 1e-12)
