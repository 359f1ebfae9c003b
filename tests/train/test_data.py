"""Text -> tokenizer -> shards -> windows, on real local files (txt, folder, JSONL, Parquet)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mythos.train.data import (
    TokenShards,
    WindowSampler,
    eos_id,
    iter_documents,
    load_tokenizer,
    train_tokenizer,
    write_shards,
)

DOCS = [f"document number {i}: the quick brown fox jumps over {i} lazy dogs." for i in range(40)]


@pytest.fixture()
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(DOCS[0])
    (folder / "sub" / "b.md").write_text(DOCS[1])
    (folder / "c.jsonl").write_text(
        "".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(DOCS[2:20]))
    )
    pq.write_table(pa.table({"text": DOCS[20:]}), folder / "d.parquet")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    return folder


def test_every_source_kind_is_read_in_a_stable_order(corpus):
    docs = list(iter_documents(corpus))
    assert sorted(docs) == sorted(DOCS)
    assert docs == list(iter_documents(corpus))
    assert list(iter_documents(corpus / "c.jsonl", limit=3)) == DOCS[2:5]
    assert list(iter_documents(corpus / "d.parquet")) == DOCS[20:]


def test_missing_field_and_source_give_clear_errors(corpus, tmp_path):
    with pytest.raises(ValueError, match="no field 'body'"):
        list(iter_documents(corpus / "c.jsonl", text_field="body"))
    with pytest.raises(ValueError, match="no column 'body'"):
        list(iter_documents(corpus / "d.parquet", text_field="body"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_documents(tmp_path / "nope"))


def test_hf_source_without_datasets_says_how_to_install():
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="pip install datasets"):
            list(iter_documents("hf:some/dataset"))
    else:
        pytest.skip("datasets is installed; the missing-package message cannot be exercised")


def test_tokenize_into_shards_with_eos_between_documents(corpus, tmp_path):
    tok = train_tokenizer(iter_documents(corpus), 300, tmp_path / "tok" / "tokenizer.json")
    tok = load_tokenizer(tmp_path / "tok")
    eos = eos_id(tok)
    index = write_shards(iter_documents(corpus), tok, tmp_path / "shards", shard_tokens=200)
    assert index["documents"] == len(DOCS) and len(index["shards"]) > 1
    shards = TokenShards.open(tmp_path / "shards")
    stream = shards.window(0, len(shards))
    assert len(stream) == index["tokens"]
    assert (stream == eos).sum() == len(DOCS) and stream[-1] == eos
    pieces = np.split(stream, np.flatnonzero(stream == eos) + 1)[:-1]
    decoded = [tok.decode(p[:-1].tolist()) for p in pieces]
    assert decoded == list(iter_documents(corpus))


def test_window_sampler_is_a_pure_function_of_the_index(corpus, tmp_path):
    tok = train_tokenizer(iter_documents(corpus), 300, tmp_path / "tokenizer.json")
    write_shards(iter_documents(corpus), tok, tmp_path / "shards")
    shards = TokenShards.open(tmp_path / "shards")
    a = WindowSampler(shards, 16, seed=5)
    b = WindowSampler(shards, 16, seed=5)
    x, y = a.batch(3, 4)
    assert x.shape == (4, 16) and (x[:, 1:] == y[:, :-1]).all()
    assert (b.batch(3, 4)[0] == x).all()
    # one epoch visits every window once
    assert sorted(a._permutation(0).tolist()) == list(range(a.n_windows))
    assert a._permutation(1).tolist() != a._permutation(0).tolist()
    with pytest.raises(FileNotFoundError, match="tokenize first"):
        TokenShards.open(tmp_path)
