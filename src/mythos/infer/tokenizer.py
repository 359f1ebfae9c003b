"""Text <-> token ids for serving: a ``tokenizer.json`` beside the checkpoint, else raw UTF-8 bytes.

The byte fallback maps byte b to id b, so any model with a vocabulary of at least 256 can be driven from
text (a model trained on other ids will produce noise, but the server still works end to end).
"""

from __future__ import annotations

from pathlib import Path

EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255; no special tokens."""

    name = "bytes"
    eos_id: int | None = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


class JsonTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer.json (ours from ``mythos train``, or any other)."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.name = str(path)
        self._tok = Tokenizer.from_file(str(path))
        self.eos_id = next(
            (i for i in (self._tok.token_to_id(t) for t in EOS_CANDIDATES) if i is not None), None
        )

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)


Tokenizer = ByteTokenizer | JsonTokenizer


def load_tokenizer(checkpoint_dir: str | Path | None, vocab_size: int) -> Tokenizer:
    """The checkpoint's tokenizer.json when present, else bytes (which needs ``vocab_size >= 256``)."""
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir) / "tokenizer.json"
        if path.is_file():
            return JsonTokenizer(path)
    if vocab_size < 256:
        raise ValueError(
            f"the model's vocab_size={vocab_size} is below 256 and there is no tokenizer.json beside the "
            "checkpoint, so text cannot be encoded for it: put the training tokenizer.json next to config.json "
            "(a model trained on a synthetic task has no text vocabulary: evaluate it with `mythos eval`)"
        )
    return ByteTokenizer()


class StreamDecoder:
    """Turns a growing list of ids into text deltas without splitting a multi-byte character."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.sent = ""

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):  # an incomplete character: wait for the next token
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta

    def flush(self) -> str:
        text = self.tokenizer.decode(self.ids)
        delta, self.sent = text[len(self.sent) :], text
        return delta
