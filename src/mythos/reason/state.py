"""The state of one run, passed explicitly to every step (engine, agent mode, vote), so no module reaches
into another's internals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mythos.reason.budget import BudgetItem
from mythos.reason.calls import Caller, TokenBudget
from mythos.reason.record import RunRecord
from mythos.reason.vocab import HaltReason


@dataclass
class RunState:
    question: str
    config: Any  # EngineConfig (typed loosely: engine.py imports this module)
    record: RunRecord
    caller: Caller
    budget: TokenBudget
    trajectory: list[str] = field(default_factory=list)
    budget_items: list[BudgetItem] = field(default_factory=list)

    def halt(self, reason: HaltReason, at_round: int | None = None, note: str | None = None) -> None:
        """Record why the run stopped (the first reason wins) and, if given, a fallback note."""
        if not self.record.halting:
            self.record.halting = {"reason": reason, "at_round": at_round}
        if note:
            self.record.fallbacks.append(note)

    def plan_rounds(self, budget: list[BudgetItem]) -> None:
        self.budget_items = budget
        self.record.budget = [b.to_dict() for b in budget]
