"""One error type for bad input, so the command line can print one clear line and exit 2."""

from __future__ import annotations


class InvalidInput(ValueError):
    """Input that cannot be used, with where it came from (file, line, field).

    The message is meant for a person: it names the place and says what is wrong."""

    def __init__(
        self, message: str, *, source: str | None = None, line: int | None = None, field: str | None = None
    ) -> None:
        self.source = source
        self.line = line
        self.field = field
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = [str(self.source)] if self.source else []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason


def describe_validation_error(exc: Exception) -> tuple[str | None, str]:
    """Turn a pydantic ValidationError into (field path, reason) of its first error."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return None, str(exc)
    first = errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__") or None
    msg = str(first.get("msg", str(exc))).removeprefix("Value error, ")
    value = first.get("input")
    if first.get("type") == "missing":
        return loc, "missing (required)"
    if isinstance(value, dict | list):
        return loc, msg
    return loc, f"{msg} (got {_short_repr(value)})"


def _short_repr(value: object, limit: int = 60) -> str:
    """repr() cut to `limit` characters: a 400-digit number or a megabyte string is no message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"a {value.bit_length() * 3 // 10}-digit integer" if value.bit_length() < 14_000 else "a huge integer"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
