"""Sampling rules, tokenizers (byte fallback and tokenizer.json), and `mythos generate` end to end."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mythos.infer.cli import generate_main
from mythos.infer.sampling import SamplingParams, filter_logits, sample
from mythos.infer.tokenizer import ByteTokenizer, JsonTokenizer, StreamDecoder, load_tokenizer
from mythos.model import Mythos, get_preset
from mythos.model.checkpoint import save_checkpoint


def test_greedy_and_degenerate_filters_pick_the_argmax() -> None:
    logits = torch.randn(4, 50)
    best = logits.argmax(-1)
    assert torch.equal(sample(logits, [SamplingParams(temperature=0.0)] * 4, [None] * 4), best)
    for p in (SamplingParams(top_k=1, seed=1), SamplingParams(top_p=1e-6, seed=2)):
        assert torch.equal(sample(logits, [p] * 4, [p.generator() for _ in range(4)]), best)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 20), p=st.floats(0.05, 1.0), seed=st.integers(0, 2**16))
def test_filter_keeps_only_top_k_and_the_nucleus(k: int, p: float, seed: int) -> None:
    logits = torch.randn(1, 20, generator=torch.Generator().manual_seed(seed))
    kept = filter_logits(logits, torch.tensor([1.0]), torch.tensor([k]), torch.tensor([p])).isfinite()[0]
    order = logits[0].argsort(descending=True)
    ranks = torch.empty(20, dtype=torch.long)
    ranks[order] = torch.arange(20)
    assert kept[order[0]]  # the best token always survives
    assert not kept[ranks >= k].any()  # nothing outside the top k
    probs = torch.softmax(logits[0].masked_fill(ranks >= k, float("-inf")), -1)
    kept_mass = probs[kept].sum()
    dropped_best = probs[~kept].max() if (~kept).any() else torch.tensor(0.0)
    # the nucleus is the smallest prefix reaching p: removing its worst member drops below p
    assert kept_mass >= min(p, 1.0) - 1e-5 or dropped_best == 0
    assert kept_mass - probs[kept].min() < p + 1e-5


def test_seeded_sampling_is_reproducible_and_per_row() -> None:
    logits = torch.zeros(2, 1000)
    a = SamplingParams(temperature=1.0, seed=5)
    b = SamplingParams(temperature=1.0, seed=6)
    one = sample(logits, [a, b], [a.generator(), b.generator()])
    two = sample(logits, [a, b], [a.generator(), b.generator()])
    alone = sample(logits[:1], [a], [a.generator()])
    assert torch.equal(one, two) and one[0] == alone[0] and one[0] != one[1]


def test_temperature_sampling_follows_the_distribution() -> None:
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    p = SamplingParams(temperature=1.0, seed=0)
    g = p.generator()
    draws = torch.cat([sample(logits, [p], [g]) for _ in range(2000)])
    freq = torch.bincount(draws, minlength=3).float() / 2000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.04)


@pytest.mark.parametrize(
    ("kw", "field"),
    [({"temperature": -1.0}, "temperature"), ({"top_k": 0}, "top_k"), ({"top_p": 1.5}, "top_p")],
)
def test_invalid_sampling_params_name_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SamplingParams(**kw)


def test_stream_decoder_never_splits_a_character() -> None:
    dec = StreamDecoder(ByteTokenizer())
    pieces = [dec.push(b) for b in "é!".encode()]
    assert pieces == ["", "é", "!"]


def test_tokenizer_json_beside_the_checkpoint_is_used(tmp_path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        ["hello world"] * 20,
        trainers.BpeTrainer(
            vocab_size=280,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok.save(str(tmp_path / "tokenizer.json"))
    loaded = load_tokenizer(tmp_path, vocab_size=280)
    assert isinstance(loaded, JsonTokenizer) and loaded.eos_id == 0
    assert loaded.decode(loaded.encode("hello world")) == "hello world"
    assert isinstance(load_tokenizer(tmp_path / "elsewhere", vocab_size=300), ByteTokenizer)
    with pytest.raises(ValueError, match="vocab_size=100"):
        load_tokenizer(None, vocab_size=100)


def test_generate_cli_on_a_checkpoint_is_the_models_greedy_continuation(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny")).eval()
    save_checkpoint(model, tmp_path / "ckpt")
    ids = list(b"abc")
    with torch.no_grad():
        for _ in range(6):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    want = ByteTokenizer().decode(ids[3:])
    assert (
        generate_main(
            [str(tmp_path / "ckpt"), "--prompt", "abc", "--max-new-tokens", "6", "--temperature", "0"]
        )
        == 0
    )
    assert capsys.readouterr().out == "abc" + want + "\n"
    assert (
        generate_main(
            [
                str(tmp_path / "ckpt"),
                "--prompt",
                "abc",
                "--max-new-tokens",
                "6",
                "--temperature",
                "0",
                "--stream",
                "--adaptive",
                "--cache-policy",
                "shared",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith(want[:1])
    assert (
        generate_main(
            [
                str(tmp_path / "ckpt"),
                "--prompt",
                "abc",
                "--max-new-tokens",
                "3",
                "--dtype",
                "bfloat16",
                "--stats",
            ]
        )
        == 0
    )
    assert "tokens/s" in capsys.readouterr().err
    assert (
        generate_main(
            [
                str(tmp_path / "ckpt"),
                "--prompt",
                "abc",
                "--max-new-tokens",
                "6",
                "--temperature",
                "0",
                "--weight-dtype",
                "bfloat16",
                "--cache-dtype",
                "bfloat16",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("abc")  # bf16-rounded matrices: the text may differ from fp32


def test_generate_cli_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(SystemExit):
        generate_main(["tiny", "--prompt", "x", "--top-p", "3"])
    with pytest.raises(SystemExit):
        generate_main(["tiny", "--prompt", "x", "--cache-policy", "sometimes"])
