"""File helpers shared by every command: outputs never half-write, JSONL errors name file and line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from os import PathLike
from pathlib import Path
from typing import IO, Any

from sclcoder.errors import SclError, Skips


def require_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    p = Path(path)
    if not p.exists():
        raise SclError(f"{what} not found", path=p)
    if not p.is_file():
        raise SclError(f"{what} is not a regular file", path=p)
    return p


def require_dir(path: str | os.PathLike[str], what: str = "directory") -> Path:
    p = Path(path)
    if not p.exists():
        raise SclError(f"{what} not found", path=p)
    if not p.is_dir():
        raise SclError(f"{what} is not a directory", path=p)
    return p


def check_writable(path: str | os.PathLike[str], *, kind: str = "file", overwrite: bool = True) -> Path:
    """Fail before any work starts when `path` cannot be written as a `kind` ("file" or "dir"): a directory
    where a file goes (or the reverse), a parent that is a file, a folder we may not write to, or an
    existing folder without `overwrite`."""
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise SclError("is a directory; give a file path", path=p)
    if kind == "dir" and p.exists() and not p.is_dir():
        raise SclError("is a file; give a directory path", path=p)
    if kind == "dir" and not overwrite and p.is_dir() and any(p.iterdir()):
        raise SclError("exists and is not empty", path=p, hint="pass --overwrite to replace it")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SclError(f"cannot be written: {parent} is a file", path=p)
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise SclError("cannot be written here (permission denied)", path=p)
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Write to a temporary sibling and rename over `path` only when the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        with open(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


OWNED = ".sclcoder"
"""The marker in every directory sclcoder writes as a whole: a directory without it is never replaced unless the
user says so (it may hold their own files)."""


def ours(path: str | os.PathLike[str]) -> bool:
    """Whether a directory is one sclcoder wrote (or is empty, so nothing of anyone's is in it)."""
    p = Path(path)
    return not p.exists() or (p / OWNED).is_file() or (p.is_dir() and not any(p.iterdir()))


def check_replaceable(path: str | os.PathLike[str], *, replace: bool, what: str = "directory") -> None:
    """One error, before any work, when `path` holds files sclcoder did not write and `replace` was not given."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise SclError("is a file; give a directory path", path=p)
    if not replace and not ours(p):
        raise SclError(
            f"exists and holds files sclcoder did not write; refusing to replace this {what}",
            path=p,
            hint="choose another directory, or pass --overwrite to replace it",
        )


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, replace: bool = False, what: str = "directory") -> Iterator[Path]:
    """Build a directory under a temporary name; swap it in only when the block succeeds.

    An existing directory at `path` is replaced as a whole, so a reader never sees a mix of an old
    and a new build, and a failed rebuild leaves the old one untouched. It must be one sclcoder wrote (it
    carries the marker), unless `replace` says the caller checked it or the user asked for it.
    """
    target = Path(path)
    check_replaceable(target, replace=replace, what=what)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        (tmp / OWNED).write_text("written by sclcoder; replaced as a whole when written again\n", encoding="utf-8")
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def parse_json(text: str | bytes, *, path: str | os.PathLike[str], line: int | None = None) -> Any:
    """json.loads, with every way it can fail on user input (bad JSON, nesting too deep for Python) as one
    SclError naming the file and line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # a JSONL line is its own line of the file; a whole JSON file reports where in it the error is
        at = line if line is not None else exc.lineno
        raise SclError(f"not valid JSON ({exc.msg} at column {exc.colno})", path=path, line=at) from None
    except RecursionError:
        raise SclError("JSON nested too deeply to read", path=path, line=line) from None


def text_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file (a UTF-8 byte-order mark is accepted); a line that is not
    UTF-8 (UTF-16, Latin-1, binary) is one error naming it."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise SclError(
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                    path=path,
                    line=lineno,
                    hint="convert the file to UTF-8",
                ) from None


@contextlib.contextmanager
def reading(path: str | os.PathLike[str]) -> Iterator[None]:
    """Around a streamed read (CSV, YAML): a file that is not UTF-8 text or not CSV is one clear error."""
    import csv

    try:
        yield
    except UnicodeDecodeError:
        raise SclError("not UTF-8 text", path=path, hint="convert the file to UTF-8") from None
    except csv.Error as exc:
        raise SclError(f"not readable as CSV ({exc})", path=path) from None
    except RecursionError:
        raise SclError("nested too deeply to read", path=path) from None


def read_jsonl(
    path: str | os.PathLike[str], skips: Skips | None = None, what: str = "JSONL file"
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; bad lines raise or are counted skips."""
    p = require_file(path, what)
    skips = skips or Skips()
    for lineno, raw in text_lines(p):
        if not raw.strip():
            continue
        try:
            obj = parse_json(raw, path=p, line=lineno)
        except SclError as exc:
            skips.handle(exc)
            continue
        if not isinstance(obj, dict):
            skips.handle(SclError(f"expected a JSON object, got {type(obj).__name__}", path=p, line=lineno))
            continue
        yield lineno, obj


def write_jsonl_atomic(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


class JsonlAppender:
    """Appends one JSON line per record and makes it durable at once (predict resumes from this)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _repair_tail(self) -> None:
        # A process killed mid-write can leave a partial last line; cut it so the file stays JSONL.
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1
            fh.truncate(cut)

    def write(self, row: dict[str, Any]) -> None:
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_safetensors(path: str | os.PathLike[str]) -> None:
    """A weights file that is whole: its header parses and every tensor it lists lies inside the file (a copy
    cut short or a file of another kind fails here, in one line, not deep inside torch)."""
    p = Path(path)
    size = p.stat().st_size
    problem = None
    with open(p, "rb") as fh:
        head = fh.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= size - 8:
            problem = "no safetensors header"
        else:
            try:
                header = json.loads(fh.read(length))
                end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
            except (ValueError, TypeError, KeyError, IndexError, RecursionError):
                problem = "its safetensors header does not parse"
            else:
                if 8 + length + end > size:
                    problem = f"holds {size} bytes, its header lists {8 + length + end}: the file is cut short"
    if problem:
        raise SclError(f"weights file is damaged ({problem})", path=p)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file (links and relative paths seen through); False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


LOCK_SUFFIX = ".lock"


@contextlib.contextmanager
def exclusive(path: str | os.PathLike[str], *, what: str = "output") -> Iterator[None]:
    """One writer at a time for `path`: an advisory lock on PATH.lock, held while the block runs. A second
    process is refused at once with one line naming the holder; the kernel drops the lock of a process that
    dies, however it dies, so a stale lock file never blocks anyone."""
    import fcntl

    lock = Path(f"{path}{LOCK_SUFFIX}")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise SclError(
                f"another sclcoder process (pid {holder}) is writing this {what}",
                path=path,
                hint="wait for it to finish, or write to another file",
            ) from None
        # the file may have been removed by the holder we waited behind: lock the one that is there now
        try:
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def resource_path(relative: str | PathLike[str]) -> Path:
    """A path as given if it exists, else the copy shipped with sclcoder (prompts/, recipes/)."""
    p = Path(relative)
    if p.exists() or p.is_absolute():
        return p
    repo = Path(__file__).resolve().parents[1] / p
    if repo.exists():
        return repo
    packaged = Path(__file__).resolve().parent / "_data" / p
    return packaged if packaged.exists() else p
