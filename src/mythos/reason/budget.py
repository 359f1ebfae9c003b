"""Complexity score and lens budgets (protocol §4.3, §5): pure functions, so every plan is testable offline."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mythos.reason.lenses import BOOSTS, DEFAULT_FRAMINGS, FRAMINGS, LENSES

CHECKS = ("multi_hop", "ambiguous_tradeoffs", "hidden_assumptions", "novel_domain", "high_stakes")

# where a boosted lens that is absent from the sequence is inserted [D-11]: (relation, anchor)
ANCHORS: dict[str, tuple[str, str]] = {
    "Steelman": ("after", "Challenge"),
    "System-Think": ("after", "Deepen"),
    "Tradeoff-Map": ("before", "Expand"),
    "First-Principles": ("after", "Clarify"),
    "Edge-Hunt": ("after", "Challenge"),
}
MIN_SEQUENCE = ("Clarify", "Challenge", "Synthesize")


def complexity_score(checks: dict[str, bool]) -> int:
    """One point per true check, clamped to 1..5: a question with no driver at all is a lookup [D-8]."""
    return max(1, min(5, sum(1 for name in CHECKS if checks.get(name))))


@dataclass(frozen=True)
class BudgetItem:
    lens: str
    count: int
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RoundSlot:
    """One planned round: which lens, which application (1 or 2), and the driver that doubled it."""

    lens: str
    application: int
    driver: str | None


def _insert(seq: list[str], lens: str) -> None:
    relation, anchor = ANCHORS.get(lens, ("before", "Synthesize"))
    if anchor not in seq:
        relation, anchor = "before", "Synthesize"
    if anchor not in seq:
        seq.append(lens)
        return
    index = seq.index(anchor) + (1 if relation == "after" else 0)
    seq.insert(index, lens)


def plan_budget(
    sequence: tuple[str, ...] | list[str], drivers: list[str], *, max_rounds: int = 8
) -> list[BudgetItem]:
    """Turn a lens sequence and the primary drivers into (lens, count, why) items [D-11].

    Boosted lenses get x2 (inserted at their anchor when absent); Synthesize is always x1; the total is capped
    at ``max_rounds`` by dropping doubles of the lowest-priority driver first (specialized before core), then
    the non-boosted core lenses Expand and Deepen; the floor is Clarify, Challenge, Synthesize.
    """
    if max_rounds < 3:
        raise ValueError(f"max_rounds={max_rounds} is below the floor of 3 (Clarify, Challenge, Synthesize)")
    seq = list(dict.fromkeys(sequence))
    if "Synthesize" not in seq:
        seq.append("Synthesize")
    count = dict.fromkeys(seq, 1)
    why = {lens: "sequence" for lens in seq}
    booster: dict[str, int] = {}
    for priority, driver in enumerate(drivers):
        for lens in BOOSTS.get(driver, ()):
            if lens == "Synthesize":
                continue
            if lens not in seq:
                _insert(seq, lens)
                why[lens] = f"added for {driver}"
            if lens not in booster:
                booster[lens] = priority
                count[lens] = 2
                why[lens] = f"{driver} x2" if why.get(lens) == "sequence" else f"added for {driver}, x2"
    count["Synthesize"] = 1

    def total() -> int:
        return sum(count[lens] for lens in seq)

    while total() > max_rounds:
        doubled = [lens for lens in seq if count[lens] == 2]
        if doubled:
            # lowest-priority driver first; within a driver, specialized lenses before core ones
            victim = max(doubled, key=lambda lens: (booster.get(lens, -1), not LENSES[lens].core))
            count[victim] = 1
            why[victim] = (
                why[victim].replace(", x2", "").replace(" x2", "") + " (x2 dropped by the round cap)"
            )
            continue
        removable = [lens for lens in ("Expand", "Deepen") if lens in seq and lens not in booster]
        removable += [
            lens for lens in reversed(seq) if lens not in ("Clarify", "Synthesize") and lens not in removable
        ]
        seq.remove(removable[0])
        del count[removable[0]]
    for lens in MIN_SEQUENCE:
        if total() >= 3:
            break
        if lens not in seq:
            _insert(seq, lens) if lens != "Synthesize" else seq.append(lens)
            count[lens] = 1
            why[lens] = "floor of three rounds"
    ordered = sorted(seq, key=lambda lens: (lens == "Synthesize", seq.index(lens)))
    return [BudgetItem(lens, count[lens], why[lens]) for lens in ordered]


def expand_rounds(budget: list[BudgetItem]) -> list[RoundSlot]:
    """A x2 lens runs its two applications consecutively."""
    slots: list[RoundSlot] = []
    for item in budget:
        driver = item.why.split(" x2")[0].replace("added for ", "").split(",")[0] if item.count == 2 else None
        slots += [RoundSlot(item.lens, app, driver) for app in range(1, item.count + 1)]
    return slots


@dataclass(frozen=True)
class AgentLens:
    lens_id: str  # with framing suffix, e.g. "Steelman-Pro"
    base: str
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def plan_agent_lenses(
    drivers: list[str], high_stakes: bool, *, min_subagents: int = 3, max_subagents: int = 5
) -> list[AgentLens]:
    """Choose the parallel subagents' lenses [D-12]: Clarify, Deepen, Challenge, Expand (Expand becomes a
    Steelman pro/anti pair when the stakes are high), boosted lenses doubled or added, trimmed to 3..5."""
    if not 1 <= min_subagents <= max_subagents:
        raise ValueError(
            f"min_subagents={min_subagents} / max_subagents={max_subagents}: need 1 <= min <= max"
        )
    # entries: [base, framing or None, why, driver priority or None, is_second]
    entries: list[list] = [
        ["Clarify", None, "always", None, False],
        ["Deepen", None, "core", None, False],
        ["Challenge", None, "core", None, False],
    ]
    if high_stakes:
        entries += [
            ["Steelman", "Pro", "high stakes", None, False],
            ["Steelman", "Anti", "high stakes", None, True],
        ]
    else:
        entries.append(["Expand", None, "core", None, False])
    boosted: set[str] = set()
    for priority, driver in enumerate(drivers):
        for lens in BOOSTS.get(driver, ()):
            present = [e for e in entries if e[0] == lens]
            if lens in boosted:
                continue
            boosted.add(lens)
            if len(present) == 1:
                first, second = FRAMINGS.get(lens, DEFAULT_FRAMINGS)
                present[0][1] = first
                present[0][3] = priority
                index = entries.index(present[0]) + 1
                entries.insert(index, [lens, second, f"{driver} x2", priority, True])
            elif not present:
                entries.append([lens, None, f"added for {driver}", priority, False])
            else:
                for e in present:
                    e[3] = priority if e[3] is None else e[3]

    def representatives(lens: str) -> int:
        return sum(1 for e in entries if e[0] == lens)

    def drop(entry: list) -> None:
        entries.remove(entry)
        if entry[0] == "Steelman":  # keep both Steelman framings together or neither
            for e in [e for e in entries if e[0] == "Steelman"]:
                entries.remove(e)
        remaining = [e for e in entries if e[0] == entry[0]]
        if len(remaining) == 1 and entry[0] != "Steelman":
            remaining[0][1] = None

    while len(entries) > max_subagents:
        seconds = sorted(
            (e for e in entries if e[4] and e[0] != "Steelman" and e[3] is not None), key=lambda e: -e[3]
        )
        if seconds:
            drop(seconds[0])
            continue
        victim = None
        for name in ("Deepen", "Expand"):
            for e in entries:
                if e[0] == name and (name not in boosted or representatives(name) > 1):
                    victim = e
                    break
            if victim:
                break
        if victim is None:
            for e in entries:
                if e[0] != "Clarify" and e[0] not in boosted:
                    if e[0] == "Steelman" and len(entries) - 2 < min_subagents:
                        continue
                    victim = e
                    break
        if (
            victim is None
        ):  # only boosted lenses left: shed the lowest-priority driver's lens that has company
            candidates = [e for e in entries if e[0] != "Clarify" and e[0] != "Steelman"]
            if not candidates:
                break
            victim = max(candidates, key=lambda e: (e[3] if e[3] is not None else -1, entries.index(e)))
        drop(victim)
    for pad in ("Challenge", "Deepen", "Expand"):
        if len(entries) >= min_subagents:
            break
        if not any(e[0] == pad for e in entries):
            entries.append([pad, None, "padding to the minimum", None, False])
    return [AgentLens(f"{e[0]}-{e[1]}" if e[1] else e[0], e[0], e[2]) for e in entries]


def minimal_agent_lenses() -> list[AgentLens]:
    """Forced agent mode on a c=1 question uses the minimum fan-out of three [D-4]."""
    return [AgentLens(lens, lens, "minimum fan-out") for lens in ("Clarify", "Deepen", "Challenge")]
