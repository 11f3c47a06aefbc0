"""The command line's argument parser: argparse with one-line errors and negative numbers as values.

- An error prints ONE line, ``PROG: error: MESSAGE (see PROG --help)``, and exits with code 2 (argparse prints the
  whole usage block first).
- A value that starts with ``-`` and then a digit, a dot or ``inf``/``nan`` (``--crop -1,0,10,10``,
  ``--sigma-y -1e-3``, ``--lam -inf``) is read as the option's value, where argparse would report "expected one
  argument"; the range checks then say what is wrong with it. No option of ``dptheory`` looks like a number.
"""

from __future__ import annotations

import argparse
import re

__all__ = ["ArgumentParser"]

_NEGATIVE_VALUE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with one-line errors (exit code 2) and negative-number values (module doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_VALUE

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
