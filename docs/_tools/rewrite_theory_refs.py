#!/usr/bin/env python3
"""Rewrite the old "THEORY x.y" references into references to the theory pages under ``docs/theory/``.

The code, tests, analyses and paper notes used to cite a theory document that is not part of the repository
("THEORY 6.3", "THEORY section 3.1", "THEORY claim 14", "THEORY's table", ...). The same material now lives in
``docs/theory/``, whose section numbers are the old ones, so every reference keeps its number:

    THEORY 6.3                  ->  docs/theory §6.3
    THEORY section 3.1          ->  docs/theory §3.1
    THEORY sections 4, 5.2 and 6.3  ->  docs/theory §4, §5.2 and §6.3
    THEORY 1.3, 4, claim 15     ->  docs/theory §1.3, §4, claim 15
    THEORY claim 14             ->  docs/theory claim 14
    THEORY 1.5.2                ->  docs/theory §1.5 (point 2)
    THEORY's rounding           ->  docs/theory's rounding
    THEORY (the file name, with its .md suffix)  ->  docs/theory

``docs/theory/index.md`` says which page holds section ``x`` (file ``docs/theory/0x_*.md``, heading "x.y ...",
Sphinx label ``theory-x-y``), and ``docs/theory/10_claims.md`` holds "claim n" (label ``claim-n``). The docs
build turns these references into links in the API pages (``docs/conf.py``).

Python files keep ruff's 120-character limit: a docstring or comment line that grows past it is wrapped at a
space (the tail goes onto a new line with the same indentation, and ``# `` for comments). Lines that cannot be
wrapped that way (a reference inside a one-line string literal) are listed as "too long" for a person to fix.

The rewrite is idempotent: nothing it writes contains "THEORY", so a second run changes nothing.

Usage (from the repository root)::

    python docs/_tools/rewrite_theory_refs.py            # rewrite in place, print a summary
    python docs/_tools/rewrite_theory_refs.py --check    # only report what would change; exit 1 if anything
    python docs/_tools/rewrite_theory_refs.py --root /tmp/copy dptheory tests   # other root / paths
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tokenize
from pathlib import Path

DEFAULT_PATHS = ("dptheory", "analyses", "tests", "paper_notes", "benchmarks", "README.md")
SUFFIXES = {".py", ".md", ".bib", ".txt", ".rst", ".toml", ".json", ".ipynb", ".cfg"}
MAX_LINE = 120

# The sections of docs/theory (keep in sync with the headings there).
SECTIONS = {
    "0", "0.1", "0.2", "0.3", "0.4", "0.5",
    "1", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6",
    "2", "2.1", "2.2", "2.3", "2.4",
    "3", "3.1", "3.2", "3.3",
    "4", "4.1", "4.2",
    "5", "5.1", "5.2", "5.3",
    "6", "6.1", "6.2", "6.3", "6.4", "6.5",
    "7", "7.1", "7.2",
    "8", "8.1", "8.2",
    "9", "9.1", "9.2", "9.3", "9.4",
    "10", "11", "12",
}
N_CLAIMS = 20

# Uses of the word that are not references to a section: identifiers and dictionary keys. Applied first.
LITERAL = (
    ("matches_THEORY_table", "matches_quoted_table"),
    ("THEORY_TABLE", "QUOTED_TABLE"),
    ("max|ratio - THEORY|", "max|ratio - quoted|"),
    ("THEORY 10 / 17", "THEORY 10 / claim 17"),  # "17" there is claim 17 (the G2 posterior mean and RED-Diff)
    ("THEORY 0 (t0 counts reverse steps), 6.2, 6.3", "THEORY 0.4, 6.2, 6.3 (t0 counts reverse steps)"),
)

NUM = r"\d+(?:\.\d+)*"
ITEM = rf"(?:(?:sections?\s+|§\s*)?{NUM}(?:\s*-\s*{NUM})?|claims?\s+\d+(?:\s*,\s*\d+(?![\d.]))*)"
SEP = r"(?:\s*,\s*|\s+and\s+|\s*/\s*)"
REF = re.compile(
    rf"(?<![A-Za-z0-9_/])THEORY(?P<md>\.md`?)?(?![A-Za-z0-9_])(?P<refs>\s+{ITEM}(?:{SEP}{ITEM})*)?"
)
ITEM_RE = re.compile(ITEM)


class Unmapped(ValueError):
    pass


def _section(num: str) -> str:
    """``"6.3"`` -> ``"§6.3"``; ``"1.5.2"`` -> ``"§1.5 (point 2)"``; raises Unmapped for an unknown number."""
    if num in SECTIONS:
        return f"§{num}"
    head, _, tail = num.rpartition(".")
    if head in SECTIONS and tail.isdigit():
        return f"§{head} (point {tail})"
    raise Unmapped(num)


def _item(text: str) -> str:
    """Rewrite one list item: a section, a section range, or ``claim(s) n, m``."""
    if text.startswith("claim"):
        for n in re.findall(r"\d+", text):
            if not 1 <= int(n) <= N_CLAIMS:
                raise Unmapped(f"claim {n}")
        return text
    body = re.sub(r"^(?:sections?\s+|§\s*)", "", text)
    parts = [p.strip() for p in body.split("-")]
    first = _section(parts[0])
    if len(parts) == 2:
        _section(parts[1])
        return f"{first}-{parts[1]}"
    return first


def _rewrite_match(m: re.Match) -> str:
    refs = m.group("refs")
    head = "docs/theory"
    if m.group("md") and m.group("md").endswith("`"):
        head = "docs/theory`"
    if not refs:
        return head
    out, pos = [], 0
    lead = refs[: len(refs) - len(refs.lstrip())]
    body = refs.lstrip()
    for im in ITEM_RE.finditer(body):
        if im.start() < pos:
            continue
        out.append(body[pos:im.start()])
        out.append(_item(im.group(0)))
        pos = im.end()
    out.append(body[pos:])
    return head + lead + "".join(out)


def rewrite_text(text: str) -> tuple[str, int, list[str]]:
    """Return ``(new_text, number_of_references_rewritten, unmapped_snippets)``."""
    for old, new in LITERAL:
        text = text.replace(old, new)
    count, unmapped = 0, []

    def sub(m: re.Match) -> str:
        nonlocal count
        try:
            new = _rewrite_match(m)
        except Unmapped as err:
            unmapped.append(f"{m.group(0)!r} (unknown: {err})")
            return m.group(0)
        count += 1
        return new

    return REF.sub(sub, text), count, unmapped


# ------------------------------------------------------------------------------------------- wrapping (.py)
def _kinds(source: str) -> dict[int, tuple[str, int]]:
    """Line number (1-based) -> (kind, column) for the lines where wrapping is safe: "comment" (the comment
    starts at ``column``) or "docstring" (a line of a multi-line string; text starts after ``column``)."""
    kinds: dict[int, tuple[str, int]] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return kinds
    for tok in tokens:
        if tok.type == tokenize.COMMENT:
            kinds[tok.start[0]] = ("comment", tok.start[1])
        elif tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            kinds.setdefault(tok.start[0], ("docstring", tok.start[1] + 3))
            for line in range(tok.start[0] + 1, tok.end[0] + 1):
                kinds.setdefault(line, ("docstring", 0))
    return kinds


def _split_at(line: str, limit: int, start: int) -> int | None:
    """Index of the last space in ``line[start:limit]`` where it may be cut, else None."""
    cut = line.rfind(" ", start, limit)
    while cut > start and line[cut - 1] == " ":
        cut -= 1
    return cut if cut > start else None


def wrap_python(source: str, changed: set[int]) -> tuple[str, list[int]]:
    """Wrap the changed lines of a Python file that exceed MAX_LINE; return (source, still-too-long lines)."""
    kinds = _kinds(source)
    out: list[str] = []
    too_long: list[int] = []
    for i, line in enumerate(source.split("\n"), start=1):
        if i not in changed or len(line) <= MAX_LINE or i not in kinds:
            out.append(line)
            if i in changed and len(line) > MAX_LINE:
                too_long.append(i)
            continue
        kind, col = kinds[i]
        code_indent = line[: len(line) - len(line.lstrip())]
        if kind == "comment":
            prefix, start = code_indent + "# ", col + 2
        else:
            prefix, start = code_indent, max(col, len(code_indent))
        rest = line
        while len(rest) > MAX_LINE:
            cut = _split_at(rest, MAX_LINE + 1, start)
            if cut is None:
                break
            out.append(rest[:cut].rstrip())
            rest = prefix + rest[cut:].lstrip()
            start = len(prefix)
        out.append(rest)
        if len(rest) > MAX_LINE:
            too_long.append(i)
    return "\n".join(out), too_long


# ------------------------------------------------------------------------------------------------ driver
def _files(root: Path, paths) -> list[Path]:
    found = []
    for p in paths:
        path = root / p
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(f for f in sorted(path.rglob("*")) if f.is_file() and f.suffix in SUFFIXES
                         and "__pycache__" not in f.parts)
    return found


def process(path: Path, write: bool) -> tuple[int, list[str], list[int]]:
    text = path.read_text(encoding="utf-8")
    if "THEORY" not in text:
        return 0, [], []
    old_lines = text.split("\n")
    new, count, unmapped = rewrite_text(text)
    too_long: list[int] = []
    if path.suffix == ".py" and new != text:
        new_lines = new.split("\n")
        changed = {i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=False), start=1) if a != b}
        new, too_long = wrap_python(new, changed)
    if write and new != text:
        path.write_text(new, encoding="utf-8")
    return count, unmapped, too_long


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=list(DEFAULT_PATHS), help="files or folders (relative to root)")
    parser.add_argument("--root", default=".", help="repository root (default: the current directory)")
    parser.add_argument("--check", action="store_true", help="report only; exit 1 if anything would change")
    args = parser.parse_args(argv)
    root = Path(args.root)
    total, files, problems = 0, 0, []
    for path in _files(root, args.paths):
        count, unmapped, too_long = process(path, write=not args.check)
        rel = path.relative_to(root)
        if count:
            total += count
            files += 1
        problems += [f"{rel}: cannot map {u}" for u in unmapped]
        problems += [f"{rel}:{n}: line longer than {MAX_LINE} after the rewrite (wrap by hand)" for n in too_long]
    verb = "would rewrite" if args.check else "rewrote"
    print(f"{verb} {total} references in {files} files")
    for p in problems:
        print(p)
    if args.check:
        return 1 if total else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
