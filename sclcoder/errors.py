"""User-facing errors: one line that says where the problem is (file, line, field) and what it is.

The CLI prints these without a traceback; anything else that escapes is a bug in sclcoder.
"""

from __future__ import annotations

from os import PathLike
from typing import Any


class SclError(Exception):
    """A mistake in the user's input or environment, reported in one line."""

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
        if self.field is not None:
            where = f"{where}: field '{self.field}'" if where else f"field '{self.field}'"
        text = f"{where}: {self.message}" if where else self.message
        return f"{text} ({self.hint})" if self.hint else text

    def at(
        self,
        *,
        path: str | PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> SclError:
        """The same error with the location filled in where it was still unknown."""
        return type(self)(
            self.message,
            path=self.path if self.path is not None else path,
            line=self.line if self.line is not None else line,
            field=self.field if self.field is not None else field,
            hint=self.hint,
        )


def first_problem(exc: Any) -> dict[str, Any]:
    """The error of a pydantic ValidationError to report: an unknown key first, since a misspelt key also
    shows up as a missing one and explains it."""
    return sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]


def union_tags_dropped(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error location without the names pydantic inserts for the member of a union it tried (model class
    names, capitalised; our keys are snake_case). The last part is the key itself and always stays."""
    return tuple(p for i, p in enumerate(loc) if i == len(loc) - 1 or not (isinstance(p, str) and p[:1].isupper()))


def validation_error(
    exc: Any,
    *,
    path: str | PathLike[str] | None = None,
    line: int | None = None,
    prefix: tuple[str, ...] = (),
    count_more: bool = False,
) -> SclError:
    """A pydantic ValidationError as one SclError: the first problem, its field dotted after `prefix`, and
    (with `count_more`) how many more there are."""
    err = first_problem(exc)
    loc = [*prefix, *(str(x) for x in union_tags_dropped(err["loc"]))]
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "required key missing"
    else:
        message = err["msg"].removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], (dict, list)):
            message = f"{message} (got {err['input']!r})"
    more = len(exc.errors()) - 1
    if count_more and more:
        message += f" ({more} more problem(s) after this one)"
    return SclError(message, path=path, line=line, field=".".join(loc) or None)


class CodeError(SclError):
    """A code that is malformed or absent from every bundled release of its code system."""


class Skips:
    """Either raises an input error, or (under an explicit --skip-invalid) counts and logs it.

    Readers take one of these so that a single bad line among thousands can be stepped over on
    request, while the default stays strict and nothing is ever dropped silently.
    """

    KEEP = 20
    """Skipped items quoted in full (the rest are counted)."""

    def __init__(self, allowed: bool = False) -> None:
        self.allowed = allowed
        self.count = 0
        self.examples: list[str] = []

    def handle(self, error: SclError) -> None:
        if not self.allowed:
            raise error
        self.count += 1
        if len(self.examples) < self.KEEP:
            self.examples.append(str(error))
        import logging

        logging.getLogger("sclcoder").warning("skipped: %s", error)
