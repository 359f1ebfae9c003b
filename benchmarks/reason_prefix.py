"""How much of each call's prompt a server's prefix cache can reuse, with the call tag first (the old layout)
and last (the current one), on the scripted backend's real prompts.

    .venv/bin/python benchmarks/reason_prefix.py     # writes benchmarks/results/reason_prefix.md

Share = for each call after the first, the longest prefix it has in common with any earlier prompt of the run,
summed, over the summed prompt length (characters of the chat-formatted messages).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mythos.reason import EngineConfig, ScriptedBackend
from mythos.reason.config import write_atomic
from mythos.reason.engine import Engine
from mythos.reason.prompts import TAG_PREFIX

QUESTIONS = {
    "trace": "trace Should we adopt Conventional Commits for our team repository?",
    "silent": "quick Design a caching strategy for a read-heavy API serving 10M users",
    "agent": "deep Is it ethical to train AI on public web data without consent?",
}


def flat(messages: list[dict]) -> str:
    return "".join(f"<{m['role']}>{m['content']}" for m in messages)


def tag_first(messages: list[dict], tag: str) -> list[dict]:
    """The layout before issue 14: the tag led the system prompt."""
    system = {"role": "system", "content": f"{TAG_PREFIX}{tag}\n{messages[0]['content']}"}
    user = dict(messages[1], content=messages[1]["content"].rsplit(f"\n\n{TAG_PREFIX}", 1)[0])
    return [system, user, *messages[2:]]


def share(texts: list[str]) -> float:
    reused = sum(max(len(os.path.commonprefix([t, e])) for e in texts[:i]) for i, t in enumerate(texts) if i)
    return reused / sum(len(t) for t in texts[1:])


def main() -> None:
    rows = ["| mode | calls | tag first (before) | tag last (now) |", "|---|---:|---:|---:|"]
    for mode, invocation in QUESTIONS.items():
        backend = ScriptedBackend()
        asyncio.run(Engine(backend, EngineConfig(packets=False)).run(invocation))
        before = share([flat(tag_first(r.messages, r.tag)) for r in backend.requests])
        after = share([flat(r.messages) for r in backend.requests])
        rows.append(f"| {mode} | {len(backend.requests)} | {100 * before:.1f} % | {100 * after:.1f} % |")
    text = "\n".join(
        [
            "# Prompt prefix shared with earlier calls of the same run",
            "",
            "`python benchmarks/reason_prefix.py` (scripted backend; characters of the chat-formatted prompt).",
            "",
            *rows,
            "",
        ]
    )
    out = Path(__file__).parent / "results" / "reason_prefix.md"
    write_atomic(out, text)
    print(text)


if __name__ == "__main__":
    main()
