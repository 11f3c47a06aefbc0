"""Every paper claim as a test (``dptheory.claims``), and the meta-test tying claims, notes and tests.

(a) Meta-tests: every claim id numbered in ``paper_notes/*.md`` (written ``**ID**``) has a check in
    ``dptheory.claims.CLAIMS``; every check is numbered in a note; every id is named in some test file under
    ``tests/``; every claim's paper key is in ``paper_notes/refs.bib``.
(b) Every claim runs with ``quick=True`` and must meet the toolkit's expectation (``passed``), with a valid
    verdict, measured numbers, a tolerance and its reason. The full-size runs are marked ``slow``.

Each check runs on one torch thread (``claims._util.single_threaded``): they are latency-bound small-tensor
computations, for which extra threads only add synchronisation.
"""

import math
import re
from pathlib import Path

import pytest

from dptheory.claims import CLAIMS, VERDICTS, ClaimResult

ROOT = Path(__file__).resolve().parents[1]
NOTES = ROOT / "paper_notes"
TESTS = ROOT / "tests"
ID_IN_NOTE = re.compile(r"\*\*([A-Z]+-\d+)\*\*")
ID_ANYWHERE = r"(?<![A-Z0-9-]){}(?![0-9])"

# The claims, one line per paper note (these explicit lists are what the meta-test finds in tests/).
FOUNDATIONS = ["FND-1", "FND-2", "FND-3", "FND-4", "FND-5", "FND-6", "FND-7"]
BLAU_MICHAELI_FREIRICH = ["BMF-1", "BMF-2", "BMF-3", "BMF-4", "BMF-5"]
WANG = ["WANG-1", "WANG-2", "WANG-3", "WANG-4", "WANG-5"]
MAP_RPS = ["MRPS-1", "MRPS-2", "MRPS-3", "MRPS-4", "MRPS-5", "MRPS-6"]
DPS = ["DPS-1"]
RED_DIFF = ["RED-1", "RED-2"]
VML_MAP = ["VML-1", "VML-2"]
IMAGE_SCALE = ["IMG-1"]
THEOREMS_AND_KL = ["MRPS-10", "MRPS-11", "MRPS-12", "KLDP-1", "KLDP-2", "DPS-10", "WANG-10", "BMF-10"]
PEERS = ["PEER-1", "PEER-2", "PEER-3", "PEER-4", "PEER-5"]
ALL_IDS = (FOUNDATIONS + BLAU_MICHAELI_FREIRICH + WANG + MAP_RPS + DPS + RED_DIFF + VML_MAP + IMAGE_SCALE
           + THEOREMS_AND_KL + PEERS)


def note_ids() -> dict[str, list[str]]:
    """note file name -> the claim ids it numbers."""
    return {p.name: ID_IN_NOTE.findall(p.read_text()) for p in sorted(NOTES.glob("*.md"))}


def ids_in_note_text(text: str) -> list[str]:
    return ID_IN_NOTE.findall(text)


# --------------------------------------------------------------------------------------------- (a) meta-tests
def test_id_pattern_finds_bold_ids_only():
    text = "1. **WANG-1** lam = 0 ends at the MMSE; see WANG-2 and **not-an-id**.\n2. **MRPS-12** x"
    assert ids_in_note_text(text) == ["WANG-1", "MRPS-12"]


def test_every_note_claim_has_a_check():
    ids = note_ids()
    assert ids, "no paper notes found in paper_notes/"
    missing = {note: [i for i in found if i not in CLAIMS] for note, found in ids.items()}
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, (
        f"claims numbered in paper_notes/ without a check in dptheory.claims.CLAIMS: {missing}"
    )


def test_every_check_is_numbered_in_a_note():
    numbered = {i for found in note_ids().values() for i in found}
    unnumbered = [cid for cid in CLAIMS if cid not in numbered]
    assert not unnumbered, f"checks in CLAIMS that no paper note numbers: {unnumbered}"


def test_each_claim_is_numbered_once():
    seen: dict[str, str] = {}
    for note, found in note_ids().items():
        for cid in found:
            assert found.count(cid) == 1, f"{cid} is numbered {found.count(cid)} times in {note}"
            assert cid not in seen, f"{cid} is numbered in both {seen[cid]} and {note}"
            seen[cid] = note


def test_every_claim_is_referenced_in_tests():
    text = "\n".join(p.read_text() for p in TESTS.glob("*.py"))
    unreferenced = [cid for cid in CLAIMS if not re.search(ID_ANYWHERE.format(re.escape(cid)), text)]
    assert not unreferenced, (
        f"claims with no test in tests/ (name them in a test or a '# claim: ID' comment): {unreferenced}"
    )


def test_this_file_lists_exactly_the_registered_claims():
    assert sorted(ALL_IDS) == sorted(CLAIMS), "update the id lists at the top of tests/test_claims.py"


def test_refs_bib_has_unique_keys():
    """Each result's paper key is checked against refs.bib in _check_result; here: the file is well formed."""
    keys = re.findall(r"@\w+\{([^,\s]+),", (NOTES / "refs.bib").read_text())
    assert len(keys) >= 15, f"refs.bib holds only {len(keys)} entries"
    assert len(keys) == len(set(keys)), "duplicate keys in refs.bib"


# --------------------------------------------------------------------------------------------- (b) the claims
def _check_result(res: ClaimResult, cid: str) -> None:
    bib = (NOTES / "refs.bib").read_text()
    assert isinstance(res, ClaimResult)
    assert res.id == cid
    assert res.verdict in VERDICTS
    assert res.measured, "a claim must report measured numbers"
    assert res.statement and res.expected and res.tolerance and res.reason and res.theory
    assert re.search(r"@\w+\{" + re.escape(res.paper) + ",", bib), f"paper key {res.paper!r} not in refs.bib"
    for key, value in res.measured.items():
        if isinstance(value, float):
            assert not math.isnan(value), f"measured {key} is NaN"
    assert res.passed, f"{cid}: expectation not met. expected: {res.expected}; measured: {res.measured}"


@pytest.mark.parametrize("cid", ALL_IDS)
def test_claim_quick(cid, quick_claim):
    """Each claim with quick=True (the ids are listed at the top of this file; the run is shared with the
    round-off guard, ``test_claims_roundoff.py``)."""
    _check_result(quick_claim(cid), cid)


@pytest.mark.slow
@pytest.mark.parametrize("cid", ALL_IDS)
def test_claim_full(cid):
    """Each claim at full size (slow: run with -m slow)."""
    _check_result(CLAIMS[cid](False), cid)
