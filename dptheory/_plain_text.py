"""Docstring text as plain text (command-line help, descriptions): reStructuredText markup stripped.

>>> plain("The ``dptheory`` command: see :func:`dptheory.solve` and :mod:`~dptheory.images`.")
'The dptheory command: see dptheory.solve and dptheory.images.'
"""

from __future__ import annotations

import re

__all__ = ["plain"]

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def plain(text: str | None) -> str | None:
    """``text`` without reST inline markup: ``:role:`~a.b``` -> ``a.b``, double and single backticks dropped,
    ``**bold**`` -> ``bold``."""
    if text is None:
        return None
    text = _ROLE.sub(r"\1", text)
    return text.replace("``", "").replace("`", "").replace("**", "")
