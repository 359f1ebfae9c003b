"""The lens library: twelve named analytical angles, the standard and alternate sequences, the driver boosts.

Kept as an explicit registry (not string splitting) because several lens ids contain a hyphen themselves
(``Scar-Tissue``), while agent-mode ids add a framing suffix (``Steelman-Pro``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lens:
    name: str
    question: str
    method: str
    core: bool


LENSES: dict[str, Lens] = {
    lens.name: lens
    for lens in (
        Lens(
            "Clarify",
            "What exactly is being asked, and where is the ambiguity?",
            "Define the key terms, separate what is explicit from what is implied, and separate the question "
            "from the way it is framed.",
            True,
        ),
        Lens(
            "Deepen",
            "What lies one level down?",
            "Ask 'why' repeatedly until you reach a root cause or the mechanism that generates the problem.",
            True,
        ),
        Lens(
            "Challenge",
            "What am I assuming, and what if the opposite were true?",
            "List the premises, try to break each one, and state the strongest counter-argument.",
            True,
        ),
        Lens(
            "Expand",
            "What other answers exist?",
            "Produce at least two genuinely different answers: how would an expert from another field, a "
            "contrarian, or a beginner answer?",
            True,
        ),
        Lens(
            "Synthesize",
            "How does it all fit together?",
            "Integrate the earlier insights, resolve the tensions you can, surface the ones you cannot, and "
            "name the core insight.",
            True,
        ),
        Lens(
            "System-Think",
            "What system surrounds this?",
            "Map inputs, processes, outputs and feedback loops; look at stocks, flows and delays; find "
            "leverage points.",
            False,
        ),
        Lens(
            "Edge-Hunt",
            "What breaks at the boundaries?",
            "Probe empty, maximal, negative, concurrent, stale and malicious inputs and states.",
            False,
        ),
        Lens(
            "Tradeoff-Map",
            "What is being traded for what?",
            "For each option list gains and sacrifices, spot false dichotomies and dominated options, and "
            "sketch the Pareto front.",
            False,
        ),
        Lens(
            "Invert",
            "What would guarantee failure?",
            "Design the catastrophe in detail, then derive how to avoid each of its ingredients.",
            False,
        ),
        Lens(
            "Scar-Tissue",
            "What do specific past failures teach?",
            "Recall concrete failure cases, name the false assumption behind each, and map it onto this "
            "situation.",
            False,
        ),
        Lens(
            "First-Principles",
            "What is certainly true here?",
            "Strip away analogy and convention and rebuild the answer from facts you can defend.",
            False,
        ),
        Lens(
            "Steelman",
            "What is the strongest form of the opposing view?",
            "Build the best possible opposing argument, then engage with it honestly.",
            False,
        ),
    )
}

CORE_LENSES = tuple(name for name, lens in LENSES.items() if lens.core)

STANDARD_ROTATION: tuple[str, ...] = ("Clarify", "Deepen", "Challenge", "Expand", "Synthesize")

# problem type -> lens sequence (protocol §3.1). "standard" is the default rotation.
SEQUENCES: dict[str, tuple[str, ...]] = {
    "standard": STANDARD_ROTATION,
    "technical_design": ("Clarify", "Deepen", "Edge-Hunt", "Challenge", "Synthesize"),
    "strategic_decision": ("Clarify", "Invert", "Expand", "Tradeoff-Map", "Synthesize"),
    "debugging": ("Clarify", "Deepen", "System-Think", "Edge-Hunt", "Synthesize"),
    "creative": ("Clarify", "First-Principles", "Expand", "Challenge", "Synthesize"),
    "debate": ("Clarify", "Steelman", "Challenge", "Expand", "Synthesize"),
    "investment_risk": ("Clarify", "Invert", "Scar-Tissue", "Challenge", "Synthesize"),
    "quick_thorough": ("Clarify", "Deepen", "Challenge", "Synthesize"),
}

DRIVERS: tuple[str, ...] = (
    "Ambiguity",
    "Hidden assumptions",
    "Multi-hop",
    "Trade-offs",
    "Novel domain",
    "System dynamics",
)

# primary driver -> lenses that get a second application (protocol §5.1)
BOOSTS: dict[str, tuple[str, ...]] = {
    "Ambiguity": ("Clarify",),
    "Hidden assumptions": ("Challenge", "Steelman"),
    "Multi-hop": ("Deepen", "System-Think"),
    "Trade-offs": ("Tradeoff-Map", "Expand"),
    "Novel domain": ("First-Principles", "Expand"),
    "System dynamics": ("System-Think", "Edge-Hunt"),
}

# agent-mode framings for a lens that appears twice (first, second)
FRAMINGS: dict[str, tuple[str, str]] = {
    "Steelman": ("Pro", "Anti"),
    "Challenge": ("Technical", "Human"),
}
DEFAULT_FRAMINGS = ("First", "Second")


def base_lens(lens_id: str) -> str:
    """Return the registered lens an id refers to: ``Steelman-Pro`` -> ``Steelman``, ``Scar-Tissue`` -> itself."""
    if lens_id in LENSES:
        return lens_id
    for name in sorted(LENSES, key=len, reverse=True):
        if lens_id.startswith(name + "-"):
            return name
    raise ValueError(f"lens id {lens_id!r} names no registered lens; valid: {', '.join(LENSES)}")


def normalize_lens(text: str) -> str | None:
    """Map a model-written lens name (any case, spaces or underscores) onto a registered lens, or None."""
    key = text.strip().lower().replace("_", "-").replace(" ", "-")
    for name in LENSES:
        if name.lower() == key:
            return name
    return None


def normalize_driver(text: str) -> str | None:
    """Map a model-written driver name onto one of the six drivers, or None."""
    key = "".join(ch for ch in text.lower() if ch.isalnum())
    for driver in DRIVERS:
        if "".join(ch for ch in driver.lower() if ch.isalnum()) == key:
            return driver
    return None
