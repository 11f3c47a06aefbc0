"""Sphinx configuration of the dptheory documentation.

Build (from the repository root; about a minute, nothing is executed but the import of dptheory)::

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

Before the build this file generates, under ``docs/_generated/`` (ignored by git):

- ``cli.md``: the ``--help`` text of ``dptheory`` and each subcommand, from the argparse parsers;
- ``gallery_src/``: one sphinx-gallery example per ``analyses/*.py`` whose text shows the committed figure
  (``figures/NAME.png``); the gallery is NOT executed (``plot_gallery = False``);
- ``notebooks/``: copies of ``notebooks/*.ipynb``, rendered by myst-nb from their committed outputs
  (``nb_execution_mode = "off"``).
"""

from __future__ import annotations

import ast
import io
import os
import re
import shutil
import sys
from contextlib import redirect_stdout
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GEN = DOCS / "_generated"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import dptheory  # noqa: E402

project = "dptheory"
author = "the dptheory authors"
copyright = "the dptheory authors"  # noqa: A001
release = version = dptheory.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_nb",
    "sphinx_gallery.gen_gallery",
]

exclude_patterns = ["_build", "_tools", "_generated/gallery_src", "auto_examples/*.ipynb", "**.ipynb_checkpoints",
                    "Thumbs.db", ".DS_Store"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
html_theme = "alabaster"
html_title = f"dptheory {release}"
html_static_path = []
templates_path = []

# ---------------------------------------------------------------------------------------------------- API
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the docstrings state shapes and types; signatures stay short
napoleon_google_docstring = True  # most docstrings use Google-style "Args:" sections
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields, so dataclass members are not described twice

# ------------------------------------------------------------------------------------------- MyST / notebooks
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # render the committed outputs; never execute
nb_merge_streams = True
suppress_warnings = ["mystnb.unknown_mime_type", "misc.highlighting_failure"]

# --------------------------------------------------------------------------------------------------- gallery
sphinx_gallery_conf = {
    "examples_dirs": str(GEN / "gallery_src"),
    "gallery_dirs": "auto_examples",
    "plot_gallery": "False",  # the committed figures are shown; the analyses are not run by the docs build
    "filename_pattern": r"^$",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "show_signature": False,
    "line_numbers": False,
    "min_reported_time": 10**9,
    "write_computation_times": False,
}


# ----------------------------------------------------------------------------------------- generated pages
def _write(path: Path, text: str) -> None:
    """Write only when the content changed (keeps Sphinx's incremental build incremental)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _help(parser) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        parser.print_help()
    return buf.getvalue().rstrip()


def generate_cli_reference() -> None:
    """``_generated/cli.md``: the help of ``dptheory`` and of every subcommand, straight from argparse."""
    import argparse

    os.environ["COLUMNS"] = "100"
    from dptheory.cli import build_parser
    from dptheory.reproduce import build_parser as reproduce_parser

    parser = build_parser()
    out = ["# Command reference", "",
           "Generated from the argparse parsers of `dptheory.cli` when the documentation is built.", "",
           "## `dptheory`", "", "```text", _help(parser), "```", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in sub.choices.items():
        text = _help(reproduce_parser()) if name == "reproduce" else _help(sp)
        out += [f"## `dptheory {name}`", "", "```text", text, "```", ""]
    _write(GEN / "cli.md", "\n".join(out))


def _title_and_body(doc: str) -> tuple[str, str]:
    first, _, rest = doc.strip().partition("\n")
    title = re.sub(r"^Figure\s+", "", first.strip()).rstrip(".")
    return title, rest.strip()


def _clean_rst(text: str) -> bool:
    """Whether ``text`` parses as reST without a warning (Sphinx roles aside). An analysis docstring that does not
    is shown verbatim instead, so an edit to an analysis can never break the ``-W`` build."""
    import docutils.core
    import docutils.utils

    stream = io.StringIO()
    plain = re.sub(r":[a-z:]+:`", "`", text)  # :mod:`x` -> `x` (Sphinx roles are unknown to plain docutils)
    try:
        docutils.core.publish_doctree(plain, settings_overrides={"warning_stream": stream, "report_level": 2,
                                                                 "halt_level": 5})
    except docutils.utils.SystemMessage:
        return False
    return not stream.getvalue()


def generate_gallery() -> None:
    """One sphinx-gallery example per analysis, showing the committed figure; nothing is executed."""
    src = GEN / "gallery_src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    figs = GEN / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    _write(src / "GALLERY_HEADER.rst", "Gallery of analyses\n===================\n\n"
           "Each analysis in ``analyses/`` regenerates one committed figure of ``figures/`` (PNG, PDF and a JSON "
           "sidecar) with ``python analyses/NAME.py [--quick]``, and ``dptheory reproduce`` runs them all. The "
           "figures shown here are the committed ones; the documentation build does not run the analyses.\n")
    for path in sorted((ROOT / "analyses").glob("*.py")):
        if path.name.startswith("_"):
            continue
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        doc = ast.get_docstring(tree) or path.stem
        title, body = _title_and_body(doc)
        png = ROOT / "figures" / f"{path.stem}.png"
        figure = ""
        if png.exists():
            shutil.copyfile(png, figs / png.name)
            figure = (f"\n\n.. image:: /_generated/figures/{png.name}\n   :alt: {path.stem}\n   :width: 100%\n\n"
                      f"*The committed figure* ``figures/{png.name}``; run ``python analyses/{path.name}`` to "
                      "regenerate it.\n")
        end = tree.body[0].end_lineno if tree.body and isinstance(tree.body[0], ast.Expr) else 0
        code = "\n".join(source.splitlines()[end:]).lstrip("\n")
        rst_body = body if _clean_rst(body) else (
            ".. code-block:: text\n\n" + "\n".join("    " + line for line in body.splitlines()))
        rst_body = rst_body.replace("\\", "\\\\")  # the text goes into a Python string literal
        text = (f'"""\n{title}\n{"=" * len(title)}\n\n{rst_body}{figure}"""\n'
                + (f"# sphinx_gallery_thumbnail_path = '_generated/figures/{png.name}'\n" if png.exists() else "")
                + code)
        _write(src / path.name, text)


def generate_notebooks() -> None:
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        dest = GEN / "notebooks" / nb.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists() or dest.read_bytes() != nb.read_bytes():
            shutil.copyfile(nb, dest)


generate_cli_reference()
generate_gallery()
generate_notebooks()


# ------------------------------------------------------------------------ links from docstrings to the theory
_DOCS_REF = re.compile(r"docs/theory (?:§(\d+(?:\.\d+)?)|claim (\d+))")


def _link_theory(app, what, name, obj, options, lines) -> None:
    """Turn ``docs/theory §6.3`` and ``docs/theory claim 14`` in docstrings into links to the theory pages."""
    for i, line in enumerate(lines):
        if "docs/theory" not in line:
            continue

        def sub(m):
            label = f"theory-{m.group(1).replace('.', '-')}" if m.group(1) else f"claim-{m.group(2)}"
            return f":ref:`{m.group(0)} <{label}>`"

        lines[i] = _DOCS_REF.sub(sub, line)


def setup(app):
    app.connect("autodoc-process-docstring", _link_theory)
