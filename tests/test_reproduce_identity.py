"""``reproduce``'s run record: ``git_dirty`` reflects the code, not the run's own outputs."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from dptheory import reproduce

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")


def _git(repo, *cmd):
    subprocess.run(["git", "-C", str(repo), *cmd], check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A throw-away git checkout with ``analyses/a.py`` and ``figures/a.json`` committed."""
    repo = tmp_path / "repo"
    (repo / "analyses").mkdir(parents=True)
    (repo / "figures").mkdir()
    (repo / "analyses" / "a.py").write_text("x = 1\n")
    (repo / "figures" / "a.json").write_text("{}\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(reproduce, "analyses_dir", lambda: repo / "analyses")
    return repo


def test_rewritten_outputs_do_not_make_the_run_dirty(checkout):
    (checkout / "figures" / "a.json").write_text('{"new": 1}\n')  # what the run itself writes
    ident = reproduce.run_identity(1, checkout / "figures")
    assert ident["git_dirty"] is False and len(ident["git_commit"]) == 40
    assert reproduce.run_identity(1, None)["git_dirty"] is True  # without an out dir every tracked file counts


def test_a_changed_source_file_makes_the_run_dirty(checkout):
    (checkout / "analyses" / "a.py").write_text("x = 2\n")
    assert reproduce.run_identity(1, checkout / "figures")["git_dirty"] is True


def test_an_out_dir_outside_the_checkout_is_ignored(checkout, tmp_path):
    assert reproduce.run_identity(1, tmp_path / "elsewhere")["git_dirty"] is False
