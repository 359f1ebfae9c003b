"""The one-file contract an agent host reads to drive `mythos packet` (Claude Code or Codex).

It is written for the orchestrating model ("Prime"): which lanes to spawn, what they must write, and exactly
which commands to run when. Every command in a ```bash block here is exercised by tests/packets/test_skill.py.
"""

from __future__ import annotations

HOSTS = ("claude", "codex")

_HOST_NOTES = {
    "claude": "Spawn each lane with the Task tool as an isolated subagent. Give it the lane brief below and the path "
    "it must write; do not paste its reply into your own reasoning.",
    "codex": "Run each lane as a separate Codex session or sub-task with only the lane brief below and the path it "
    "must write; do not read its transcript.",
}

_CONTRACT = """---
name: mythos
description: Explicit-state recurrent synthesis. Fan a question out to independent subagent lanes, compile their
  fenced, source-cited records into one deterministic packet with `mythos packet`, reason over the packet only, and
  halt when `mythos packet gate` passes.
---

# mythos — explicit-state passes for {host_title}

You are Prime. You never read subagent prose. Subagents write fenced machine records into files; `mythos packet
ingest` validates, attributes and hashes them; `mythos packet compile` produces `state/next_pass_packet.json`. You
read the packet only (never raw subagent chat), act on it, record your synthesis, and repeat until the gate passes.

## Set up a run (once per objective)

Pick a run directory (for example `.mythos/runs/<slug>`) and the source root that `file:` citations are relative to
(normally the repository root).

```bash
mythos packet init "$RUN" --root "$ROOT" --task "$OBJECTIVE"
```

`init` compiles a first packet at `$RUN/state/next_pass_packet.json`.

## Subagent Lanes

Spawn at least three independent lanes per pass, each with a different angle (for example: reproduce, read the code
path, check the tests/history), plus one verifier lane that checks claims. {host_note}

Each lane writes exactly one file, `$RUN/raw/subagents/<lane>.md`, with any notes it likes and, for every claim, one
JSON object per line inside a fenced block:

```mythos-evidence-jsonl
{{"id": "ev-<lane>-1", "kind": "observation", "summary": "one claim, one sentence", "source_ids": ["file:src/app.py:42"]}}
```

Verifier lanes report checks in a second fence (`status`: passed, failed, pending, proposed or skipped):

```mythos-verifier-jsonl
{{"id": "vf-<lane>-1", "summary": "what was checked", "status": "passed", "verifier_score": 1.0, "source_ids": ["test:tests/test_app.py::test_x"]}}
```

To close (or reopen) a finding, a verifier lane re-reports the same finding `id` with the new status; the latest
report of an id wins.

Rules for lanes: every evidence id is unique in the run; cite direct sources — `file:<path relative to the root>:<line>` or
`file:<path>:<a>-<b>`, `command:<name>`, `test:<name>`, `log:<name>` (source_refs are filled in and hashed at ingest;
you may also give explicit `source_refs` objects); never absolute paths. Kinds: observation, measurement, symptom,
root-cause, code-change, test-change, proposal, risk, gap, plan. A lane that cannot proceed writes a line
`BLOCKED <reason>`.

## Each pass

1. After every lane finishes, ingest its file (records that fail validation are quarantined and reported; the rest
   are kept):

```bash
mythos packet ingest --run-dir "$RUN" --lane "$LANE" --agent-id "$AGENT" --from "$RUN/raw/subagents/$LANE.md"
```

2. Compile, then read `$RUN/state/prime_digest.json` first: a bounded summary (counts, the strongest
   contradictions grouped by span, rejected records, pointers into the packet) that stays small at any run size.
   Open `$RUN/state/next_pass_packet.json` — evidence, contradictions, candidate_actions, open_questions,
   halt_signals — for what the digest points to. This is the only way subagent output reaches you.

```bash
mythos packet compile --run-dir "$RUN"
```

3. Decide. Contradictions and failing verifier findings become the next lanes' briefs.
4. Record a one-paragraph synthesis that cites evidence ids; this advances the pass and recompiles:

```bash
mythos packet compile --run-dir "$RUN" --record-synthesis "$SYNTHESIS"
```

5. Ask the gate whether you may stop. Exit 0 means halt; otherwise each failure names the check, the record and the
   fix — start another pass with lanes aimed at those failures.

```bash
mythos packet gate --run-dir "$RUN"
```

## Checks

`--json` on any command gives machine-readable output. Verify the installation end to end with:

```bash
mythos packet ready
```

A tampered or edited source file shows up as a `con:integrity:` contradiction in the packet and fails the gate's
integrity check; re-run the lane against the new file and ingest again.
"""


def render_contract(host: str) -> str:
    if host not in HOSTS:
        raise ValueError(f"host {host!r} is not supported; choose one of {', '.join(HOSTS)}")
    title = {"claude": "Claude Code", "codex": "Codex"}[host]
    return _CONTRACT.format(host_title=title, host_note=_HOST_NOTES[host])
