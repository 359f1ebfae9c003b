"""Hugging Face interop: ``mythos export --hf`` / ``mythos import --hf`` (export.py), the model card (card.py),
offline lm-eval tasks (lmeval.py), and the files shipped inside an export (remote/)."""
