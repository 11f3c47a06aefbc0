"""Round-off guard: no claim's verdict may depend on the direction of round-off.

Every quick claim is run twice more and compared with the shared unperturbed one-thread run (``quick_claim``):

(A) with the worked problems' data perturbed by a relative 1e-12
    (``dptheory.reference_problems.perturbed``: each defining number times ``1 + 1e-12 u``, ``u ~ U[-1, 1]``), on one
    thread, in this process;
(B) unperturbed on TWO torch threads, in a subprocess started first so that it runs alongside (A). The checks'
    one-thread wrapper is bypassed (``check.__wrapped__``). ``OMP_WAIT_POLICY=PASSIVE`` stops the idle OpenMP
    thread from spinning: on a loaded 2-core machine a spinning second thread made the pass minutes long.

For each claim the verdict and ``passed`` (whether it met the toolkit's expectation) must be the same in all
three runs. Cost: two extra quick passes (~14 s each unloaded on one core; (A) and (B) overlap on two cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dptheory.claims import CLAIMS
from dptheory.reference_problems import perturbed

ROOT = Path(__file__).resolve().parents[1]
REL = 1e-12

_TWO_THREADS = """
import json, sys, torch
from dptheory.claims import CLAIMS
torch.set_num_threads(2)
out = {}
for cid, check in CLAIMS.items():
    res = getattr(check, "__wrapped__", check)(True)  # bypass the one-thread wrapper where there is one
    out[cid] = [res.verdict, bool(res.passed), torch.get_num_threads()]
json.dump(out, sys.stdout)
"""


@pytest.fixture(scope="module")
def variants():
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", _TWO_THREADS], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        with perturbed(REL, seed=1):
            pert = {cid: (res.verdict, bool(res.passed)) for cid, res in ((c, CLAIMS[c](True)) for c in CLAIMS)}
        out, err = proc.communicate(timeout=1800)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, f"two-thread pass failed:\n{err[-3000:]}"
    two = json.loads(out)
    return pert, two


def test_the_perturbation_is_off_by_default_and_changes_the_data():
    from dptheory.reference_problems import b1, g2, iso

    base = g2()[0]
    with perturbed(REL, seed=1):
        p, y = g2()
        q, _ = iso()
        sym, y0 = b1(sigma_y=0.5, y=0.0)
    assert p.sigma_y != base.sigma_y and abs(p.sigma_y / base.sigma_y - 1) <= REL
    assert float((p.prior.cov - base.prior.cov).abs().max()) > 0
    assert float((p.prior.cov - p.prior.cov.T).abs().max()) == 0  # still symmetric
    post = q.posterior(torch.ones(2, dtype=torch.float64)).cov  # Iso's posterior (any y) stays isotropic
    assert float(post[0, 1].abs()) < 1e-15 and abs(float(post[0, 0] - post[1, 1])) < 1e-15
    assert float(y0[0]) == 0.0 and float(sym.prior.means.sum()) == 0.0  # B1 stays symmetric, y = 0 stays 0
    again = g2()[0]
    assert again.sigma_y == base.sigma_y and bool((again.prior.cov == base.prior.cov).all())


@pytest.mark.parametrize("cid", list(CLAIMS))
def test_verdict_survives_roundoff(cid, quick_claim, variants):
    pert, two = variants
    base = (quick_claim(cid).verdict, bool(quick_claim(cid).passed))
    assert two[cid][2] == 2, "the two-thread pass did not run on two threads"
    assert pert[cid] == base, f"{cid}: (verdict, passed) {base} unperturbed, {pert[cid]} with data x (1 + 1e-12 u)"
    assert tuple(two[cid][:2]) == base, f"{cid}: (verdict, passed) {base} on 1 thread, {tuple(two[cid][:2])} on 2"
