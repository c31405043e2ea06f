"""User-facing errors: one line that says where the problem is (file, line, field) and what it is.

The CLI prints these without a traceback; anything else that escapes is a bug in sclcoder.
"""

from __future__ import annotations

from os import PathLike


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


class CodeError(SclError):
    """A code that is malformed or absent from every bundled release of its code system."""


class Skips:
    """Either raises an input error, or (under an explicit --skip-invalid) counts and logs it.

    Readers take one of these so that a single bad line among thousands can be stepped over on
    request, while the default stays strict and nothing is ever dropped silently.
    """

    def __init__(self, allowed: bool = False, *, keep: int = 20) -> None:
        self.allowed = allowed
        self.count = 0
        self.examples: list[str] = []
        self._keep = keep

    def handle(self, error: SclError) -> None:
        if not self.allowed:
            raise error
        self.count += 1
        if len(self.examples) < self._keep:
            self.examples.append(str(error))
        import logging

        logging.getLogger("sclcoder").warning("skipped: %s", error)
