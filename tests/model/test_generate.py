"""generate(): greedy equals re-running the full forward, sampling options, stop tokens, seeds, errors."""

import pytest
import torch

from mythos.model import Mythos, generate, get_preset
from mythos.model.generate import filter_logits


@pytest.fixture(scope="module", params=["tiny", "tiny-gqa"])
def model(request):
    torch.manual_seed(0)
    return Mythos(get_preset(request.param)).eval()


def test_greedy_matches_uncached_argmax(model):
    prompt = torch.randint(0, 256, (2, 5), generator=torch.Generator().manual_seed(0))
    new = generate(model, prompt, max_new_tokens=6, n_loops=2)
    seq = prompt
    with torch.no_grad():
        for _ in range(6):
            nxt = model(seq, n_loops=2)[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(new, seq[:, 5:])


def test_seed_reproducible_and_top_k1_is_greedy(model):
    prompt = torch.randint(0, 256, (1, 4), generator=torch.Generator().manual_seed(1))
    a = generate(model, prompt, max_new_tokens=10, temperature=1.0, seed=7)
    b = generate(model, prompt, max_new_tokens=10, temperature=1.0, seed=7)
    c = generate(model, prompt, max_new_tokens=10, temperature=1.0, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = generate(model, prompt, max_new_tokens=5)
    assert torch.equal(generate(model, prompt, max_new_tokens=5, temperature=2.0, top_k=1, seed=3), greedy)
    assert torch.equal(generate(model, prompt, max_new_tokens=5, temperature=2.0, top_p=1e-6, seed=3), greedy)


def test_stop_tokens_and_eos(model):
    prompt = torch.randint(0, 256, (1, 4), generator=torch.Generator().manual_seed(2))
    greedy = generate(model, prompt, max_new_tokens=4)
    first = int(greedy[0, 0])
    assert generate(model, prompt, max_new_tokens=4, stop_tokens=[first]).tolist() == [[first]]
    assert generate(model, prompt, max_new_tokens=4, eos_token_id=first).shape == (1, 1)
    # a row that stops is padded while the other row continues
    prompts = torch.cat([prompt, torch.randint(0, 256, (1, 4), generator=torch.Generator().manual_seed(9))])
    both = generate(model, prompts, max_new_tokens=4)
    stop = int(both[0, 0])
    if stop not in both[1].tolist():
        out = generate(model, prompts, max_new_tokens=4, stop_tokens=[stop], pad_token_id=255)
        assert out.shape == (2, 4)
        assert out[0].tolist() == [stop, 255, 255, 255]
        assert torch.equal(out[1], both[1])


def test_filter_logits_top_p_and_top_k():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, top_p=0.85))
    assert kept.tolist() == [[True, True, True, False]]
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[True, True, False, False]]


def test_generate_errors(model):
    prompt = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(model, prompt, max_new_tokens=model.cfg.max_seq_len)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, prompt, max_new_tokens=2, temperature=1.0, top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, prompt, max_new_tokens=2, temperature=-1.0)
