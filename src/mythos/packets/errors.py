"""The one exception the packet compiler raises: it always says what, where, and how to fix it."""

from __future__ import annotations


class PacketError(Exception):
    """A run, a record or an argument is not usable; ``fix`` tells the caller what would make it usable."""

    def __init__(
        self, message: str, *, field: str | None = None, value: object = None, fix: str | None = None
    ):
        self.message = message
        self.field = field
        self.value = value
        self.fix = fix
        text = message if not fix else f"{message} (fix: {fix})"
        super().__init__(text)

    def to_json(self) -> dict:
        value = (
            self.value if isinstance(self.value, str | int | float | bool | type(None)) else repr(self.value)
        )
        return {"ok": False, "error": self.message, "field": self.field, "value": value, "fix": self.fix}
