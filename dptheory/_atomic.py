"""Atomic file output: every file is written to a temporary file in its folder and then renamed over the target.

A reader never sees a partial file: an interrupt (Ctrl-C), an exception or a full disk while writing leaves the old
file (or none) in place and removes the temporary file. The temporary file is created with mode ``0o666`` less the
process umask, so the final file has the same permissions as any file the user writes (``tempfile.mkstemp`` would
give ``0o600``).

- :func:`atomic_path`: a context manager yielding a temporary path to write to (for writers that take a path,
  e.g. ``Figure.savefig(tmp, format="pdf")`` or ``PIL.Image.save(tmp, format="PNG")``); renamed on success.
- :func:`atomic_named_path`: the same, with a temporary file that keeps the target's name (in a hidden folder beside
  it), for writers that store the file name in the file (``torch.save`` names its zip archive after it).
- :func:`reserve_temp`: the temporary path alone, for callers that stage several files and rename them together.
- :func:`write_text` / :func:`write_bytes`: the common one-shot cases.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_named_path", "reserve_temp", "write_text", "write_bytes", "discard"]


def reserve_temp(path) -> Path:
    """Create an empty temporary file next to ``path`` (same folder, so the rename is atomic) and return its path.

    The name is ``.<name>.<random>.tmp`` (hidden, and never matched by ``*.png`` / ``*.json`` globs); the mode is
    ``0o666`` less the umask. The caller renames it with ``os.replace`` or removes it with :func:`discard`.
    """
    path = Path(path)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a temporary file next to {path}")  # pragma: no cover


def discard(tmp) -> None:
    """Remove a temporary file if it is still there."""
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on normal exit rename it to ``path``, on any exit by an exception
    (``KeyboardInterrupt`` included) remove it and re-raise. The target folder must exist."""
    path = Path(path)
    tmp = reserve_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


@contextmanager
def atomic_named_path(path) -> Iterator[Path]:
    """As :func:`atomic_path`, but the yielded path has ``path``'s own file name, inside a hidden temporary folder
    next to ``path`` (removed on exit): the bytes a writer produces do not depend on a random temporary name."""
    import shutil
    import tempfile

    path = Path(path)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        tmp = folder / path.name
        yield tmp
        os.replace(tmp, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes(path, text.encode("utf-8"))
