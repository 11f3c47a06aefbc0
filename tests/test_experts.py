"""Two networks that share the noise levels (``NoiseLevelExperts``), their mixing weights and the files of a
high-noise expert (``dptheory.images.experts``).

Oracles: closed-form networks (the exact Gaussian-prior network in the eps and the v parametrisation, each of its
own prior variance) tell which expert answered, and with which weight, at every step; the MSE-optimal mixture of
the identity denoiser ``x_t / sqrt(ab)`` and the zero denoiser for x0 in {-1, 1} is the linear shrinkage
``sqrt(ab) x_t``, i.e. the weight ``1 - ab`` of the zero denoiser (Monte Carlo, with its error bound); the packed
files are checked against the float16 rounding of the source weights.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict

import pytest
import torch

from dptheory import NetworkDenoiser, NoiseLevelExperts
from dptheory.denoisers import CountingDenoiser
from dptheory.images.backbones import load_photo_unet
from dptheory.images.backbones.adm import build_adm
from dptheory.images.experts import high_expert_path, mixing_knots, pack_high_expert
from dptheory.images.train import TrainConfig
from dptheory.schedules import linear_schedule

SCHED = linear_schedule(1000)


def _gauss_nets(s2: float):
    """The exact networks of the prior N(0, s2 I): eps- and v-prediction, ``E[x0 | x_t] = sqrt(ab) s2 x_t / d``,
    ``d = ab s2 + 1 - ab``."""

    def ab_of(t):
        return float(SCHED.alpha_bar(int(t[0]) + 1))

    def eps_net(x_t, t):
        ab = ab_of(t)
        return math.sqrt(1 - ab) * x_t / (ab * s2 + 1 - ab)

    def v_net(x_t, t):
        ab = ab_of(t)
        return math.sqrt(ab * (1 - ab)) * (1 - s2) * x_t / (ab * s2 + 1 - ab)

    return eps_net, v_net


def _tweedie(x_t, ab, s2):
    return math.sqrt(ab) * s2 * x_t / (ab * s2 + 1 - ab)


def test_experts_answer_on_their_side_of_the_switch_and_run_one_network():
    calls = {"low": 0, "high": 0}
    eps_a, _ = _gauss_nets(0.5)
    _, v_b = _gauss_nets(2.0)

    def counted(name, net):
        def f(x, t):
            calls[name] += 1
            return net(x, t)
        return f

    low = NetworkDenoiser(counted("low", eps_a), SCHED, prediction="eps", data_range=(-1, 1))
    high = NetworkDenoiser(counted("high", v_b), SCHED, prediction="v", data_range=(-1, 1))
    den = NoiseLevelExperts(low, high, [(500, 1.0)])
    assert den.switch_step == 500 and den.data_range == (-1.0, 1.0) and den.schedule is SCHED
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for step, s2, who in ((0, 0.5, "low"), (498, 0.5, "low"), (499, 0.5, "low"), (500, 2.0, "high"),
                          (501, 2.0, "high"), (999, 2.0, "high")):
        ab = float(SCHED.alpha_bar(step + 1))
        before = dict(calls)
        torch.testing.assert_close(den(x, ab), _tweedie(x, ab, s2), rtol=1e-12, atol=1e-12)
        assert den.timestep(ab) == step and den.weight(ab) == (0.0 if who == "low" else 1.0)
        assert calls[who] == before[who] + 1 and sum(calls.values()) == sum(before.values()) + 1
        x0, var = den.x0_and_variance_values(x, ab)
        assert var is None
        torch.testing.assert_close(x0, _tweedie(x, ab, s2), rtol=1e-12, atol=1e-12)
        # the derived eps and score come from the answering expert's x0 (one place, the Denoiser base)
        torch.testing.assert_close(den.eps(x, ab), (x - math.sqrt(ab) * _tweedie(x, ab, s2)) / math.sqrt(1 - ab))


def test_experts_are_differentiable_like_the_answering_network():
    eps_a, v_a = _gauss_nets(0.5)
    _, v_b = _gauss_nets(2.0)
    den = NoiseLevelExperts(NetworkDenoiser(eps_a, SCHED), NetworkDenoiser(v_b, SCHED, prediction="v"),
                            [(300, 0.25), (500, 1.0)])
    for step, w in ((100, 0.0), (400, 0.625), (700, 1.0)):
        ab = float(SCHED.alpha_bar(step + 1))
        x = torch.randn(1, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(step), requires_grad=True)
        (g,) = torch.autograd.grad(den(x, ab).sum(), x)
        slope = [math.sqrt(ab) * s2 / (ab * s2 + 1 - ab) for s2 in (0.5, 2.0)]
        torch.testing.assert_close(g, torch.full_like(x, (1 - w) * slope[0] + w * slope[1]))


def test_experts_mix_linearly_between_knots_and_count_two_passes_there():
    eps_a, _ = _gauss_nets(0.5)
    _, v_b = _gauss_nets(2.0)
    den = NoiseLevelExperts(NetworkDenoiser(eps_a, SCHED), NetworkDenoiser(v_b, SCHED, prediction="v"),
                            [(400, 0.2), (500, 0.6), (600, 1.0)])
    x = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    counted = CountingDenoiser(den)
    expected_nfe = 0
    for step, w in ((399, 0.0), (400, 0.2), (450, 0.4), (499, 0.596), (500, 0.6), (550, 0.8), (599, 0.996),
                    (600, 1.0), (999, 1.0)):
        ab = float(SCHED.alpha_bar(step + 1))
        assert den.weight(ab) == pytest.approx(w, abs=1e-12)
        mix = (1 - w) * _tweedie(x, ab, 0.5) + w * _tweedie(x, ab, 2.0)
        torch.testing.assert_close(counted(x, ab), mix, rtol=1e-12, atol=1e-12)
        expected_nfe += 1 if w in (0.0, 1.0) else 2
        assert den.network_passes(ab) == (1 if w in (0.0, 1.0) else 2) and counted.nfe == expected_nfe


def test_tiles_and_the_finite_guard_pass_the_network_count_through():
    """``restore`` wraps the denoiser in tiles (and the samplers in a NaN guard): a tiled mixed evaluation still
    counts the two networks once per batch of windows."""
    from dptheory._guard import FiniteDenoiser
    from dptheory.images.tiling import TiledDenoiser

    eps_a, _ = _gauss_nets(0.5)
    _, v_b = _gauss_nets(2.0)
    den = NoiseLevelExperts(NetworkDenoiser(eps_a, SCHED), NetworkDenoiser(v_b, SCHED, prediction="v"),
                            [(400, 0.5), (600, 1.0)])
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for step, passes in ((100, 1), (450, 2), (700, 1)):
        ab = float(SCHED.alpha_bar(step + 1))
        for wrapped in (TiledDenoiser(den, 4, 1), FiniteDenoiser(TiledDenoiser(den, 4, 1), SCHED)):
            counted = CountingDenoiser(wrapped)
            torch.testing.assert_close(counted(x, ab), den(x, ab))  # a pixel-wise denoiser: tiles are exact
            assert counted.nfe == passes
    assert TiledDenoiser(lambda x_t, ab: x_t, 4, 1).network_passes(0.5) == 1


@pytest.mark.parametrize(("knots", "match"), [
    ([(0, 1.0)], r"increasing in \[1, T - 1\] = \[1, 999\]"), ([(1000, 1.0)], "increasing"),
    ([(12.0, 1.0)], "int steps"), ([(True, 1.0)], "int steps"), ([], "int steps"),
    ([(500, 0.5), (400, 1.0)], "increasing"), ([(400, 0.5), (400, 1.0)], "increasing"),
    ([(400, 0.5), (500, 0.9)], "the last must be 1"), ([(400, -0.1), (500, 1.0)], r"in \[0, 1\]"),
    ([(400, float("nan")), (500, 1.0)], r"in \[0, 1\]"), (None, "list of"), ([500], "list of"),
])
def test_experts_reject_bad_knots(knots, match):
    eps_a, v_a = _gauss_nets(1.0)
    with pytest.raises(ValueError, match=match):
        NoiseLevelExperts(NetworkDenoiser(eps_a, SCHED), NetworkDenoiser(v_a, SCHED, prediction="v"), knots)


def test_experts_reject_mismatched_networks():
    eps_a, v_a = _gauss_nets(1.0)
    with pytest.raises(ValueError, match="share one schedule"):
        NoiseLevelExperts(NetworkDenoiser(eps_a, SCHED), NetworkDenoiser(v_a, linear_schedule(500)), [(100, 1.0)])
    with pytest.raises(ValueError, match="same data_range"):
        NoiseLevelExperts(NetworkDenoiser(eps_a, SCHED, data_range=(-1, 1)), NetworkDenoiser(v_a, SCHED),
                          [(100, 1.0)])
    with pytest.raises(TypeError, match="high must be a NetworkDenoiser"):
        NoiseLevelExperts(NetworkDenoiser(eps_a, SCHED), lambda x, ab: x, [(100, 1.0)])


# ---------------------------------------------------------------------------------------------- switch step
def _identity(x_t, ab):
    return x_t / math.sqrt(ab)


def _zero(x_t, ab):
    return torch.zeros_like(x_t)


def test_mixing_weight_of_identity_and_zero_is_one_minus_alpha_bar():
    """Errors ``e_low = r eps`` (``r^2 = (1 - ab) / ab``) and ``e_high = -x0`` with ``|x0| = 1``: ``w* = r^2 E eps^2 /
    (r^2 E eps^2 + 1) + O(E eps x0) = 1 - ab``. Monte Carlo over 9600 values: the relative error of the sums is
    about ``sqrt(2 / 9600) = 1.4 %`` and the cross term ``E eps x0`` about 1 %, so 0.02 absolute is 3 SE or more
    of ``w*(1 - w*)`` terms; the knots keep the weights in (0.1, 0.9) and end with weight 1 where ``1 - ab >= 0.9``
    at every later grid step."""
    x0 = torch.randint(0, 2, (600, 1, 4, 4), generator=torch.Generator().manual_seed(0)).double() * 2 - 1
    knots, table = mixing_knots(_identity, _zero, SCHED, x0, torch.Generator().manual_seed(1), min_step=20, grid=20)
    for step, lo, hi, w, mix, _se in table:
        ab = float(SCHED.alpha_bar(step + 1))
        assert w == pytest.approx(1 - ab, abs=0.02) and hi == pytest.approx(1.0, rel=1e-12)
        assert mix <= min(lo, hi) + 1e-12 and mix == pytest.approx(1 - ab, rel=0.05)  # the shrinkage's MSE
    w_of = {row[0]: row[3] for row in table}
    first_alone = min(s for s in w_of if all(w_of[t] >= 0.9 for t in w_of if t >= s))
    assert knots[-1] == (first_alone, 1.0)
    assert [k for k, _ in knots[:-1]] == [s for s in sorted(w_of) if s < first_alone and w_of[s] > 0.1]
    assert all(0.1 < w < 0.9 or s < first_alone for s, w in knots[:-1])


def test_mixing_knots_without_mixing_keep_only_the_hand_over():
    x0 = torch.randint(0, 2, (200, 1, 4, 4), generator=torch.Generator().manual_seed(0)).double() * 2 - 1
    g = [torch.Generator().manual_seed(1) for _ in range(2)]
    mixed, t1 = mixing_knots(_identity, _zero, SCHED, x0, g[0], min_step=20, grid=20)
    single, t2 = mixing_knots(_identity, _zero, SCHED, x0, g[1], min_step=20, grid=20, mix=False)
    assert t1 == t2 and len(mixed) > 1 and single == [mixed[-1]]


def test_mixing_knots_of_a_dominant_expert_are_a_hard_switch():
    """An expert that is exact (error 0) wins outright: ``w* = 1`` at every step, one knot at ``min_step``."""
    x0 = torch.ones(8, 1, 2, 2, dtype=torch.float64)
    knots, table = mixing_knots(_identity, lambda x_t, ab: torch.ones_like(x_t), SCHED, x0,
                                torch.Generator().manual_seed(0), min_step=300, grid=100)
    assert knots == [(300, 1.0)] and all(row[3] == 1.0 for row in table)


def test_mixing_knots_refuse_an_expert_that_loses_at_the_top():
    x0 = torch.ones(4, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="not better than the low one at the top step 999"):
        mixing_knots(_zero, _identity, SCHED, x0, torch.Generator().manual_seed(0), grid=100)
    for kw, match in ((dict(min_step=1000), "min_step"), (dict(snap=0.4), "snap"), (dict(grid=0), "grid")):
        with pytest.raises(ValueError, match=match):
            mixing_knots(_zero, _identity, SCHED, x0, torch.Generator().manual_seed(0), **kw)
    with pytest.raises(ValueError, match="n >= 2"):
        mixing_knots(_zero, _identity, SCHED, x0[:1], torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------- files
TINY = dict(image_size=8, num_channels=8, num_res_blocks=1, channel_mult=(1, 2), attention_resolutions="4",
            num_head_channels=8, use_scale_shift_norm=True, norm_groups=4)


def _write_net(folder, prediction: str, seed: int, *, zero_out: bool, min_step: int = 0):
    """A tiny photo UNet with its log, as dptheory.images.train writes them: random weights (seed), the output
    layer zeroed (``zero_out``: the eps net is then the identity denoiser ``x_t / sqrt(ab)``) or random."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build_adm(**TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not (zero_out and name.startswith("out.")):
                p.normal_(0, 0.2, generator=torch.Generator().manual_seed(seed + len(name)))
    cfg = TrainConfig(size=8, scales=(16, 32), model=dict(TINY), prediction=prediction, min_step=min_step)
    torch.save(model.state_dict(), folder / "photo_unet32.pt")
    log = dict(config=asdict(cfg), photos=["skimage:camera", "skimage:chelsea"])
    (folder / "photo_unet32.json").write_text(json.dumps(log))
    return folder / "photo_unet32.pt"


@pytest.fixture
def packed(tmp_path):
    low = _write_net(tmp_path / "low", "eps", 0, zero_out=True)
    high_src = _write_net(tmp_path / "src", "v", 1, zero_out=False, min_step=600)
    out = pack_high_expert(high_src, low, n=4, grid=200, mix=False)
    return low, high_src, out


def test_pack_mixes_unless_told_to_hand_over_at_one_step(packed, tmp_path):
    low, high_src, out = packed
    info = json.loads(out.with_suffix(".json").read_text())["expert"]
    assert info["knots"] == [[info["switch_step"], 1.0]] and info["selection"]["mix"] is False
    pack_high_expert(high_src, low, n=4, grid=200)
    mixed = json.loads(out.with_suffix(".json").read_text())["expert"]
    assert mixed["selection"]["mix"] is True and mixed["knots"][-1] == [info["switch_step"], 1.0]
    w = {row[0]: row[3] for row in mixed["selection"]["table"]}
    assert [k for k, _ in mixed["knots"][:-1]] == [s for s in sorted(w) if s < info["switch_step"] and w[s] > 0.1]


def test_pack_writes_a_float16_expert_that_the_loader_pairs(packed):
    low, high_src, out = packed
    assert out == high_expert_path(low) == low.with_name("photo_unet32_high.pt")
    state = torch.load(out, weights_only=True)
    src = torch.load(high_src, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    info = json.loads(out.with_suffix(".json").read_text())["expert"]
    assert info["low_sha256"] == hashlib.sha256(low.read_bytes()).hexdigest()
    assert info["selection"]["photos"] == ["skimage:camera", "skimage:chelsea"]
    # the identity (zeroed eps net) loses to a bounded v net at the top; the grid starts at the expert's min_step
    assert [r[0] for r in info["selection"]["table"]] == [600, 800, 999] and info["switch_step"] >= 600
    den, sched = load_photo_unet(low)
    assert isinstance(den, NoiseLevelExperts) and den.knots == [tuple(k) for k in info["knots"]]
    assert den.switch_step == info["switch_step"] == info["knots"][-1][0]
    single, _ = load_photo_unet(low, experts=False)
    assert isinstance(single, NetworkDenoiser) and single.prediction == "eps"
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        for step in (10, 599):  # below the first knot (the expert's min_step): the low (identity) network alone
            ab = float(sched.alpha_bar(step + 1))
            torch.testing.assert_close(den(x, ab), x / math.sqrt(ab))
        ab = float(sched.alpha_bar(den.switch_step + 1))
        model = build_adm(**TINY)
        t = torch.tensor([den.switch_step] * 2)
        model.load_state_dict(src)
        unrounded = math.sqrt(ab) * x - math.sqrt(1 - ab) * model(x, t)
        model.load_state_dict({k: v.half().float() for k, v in src.items()})  # the float16 rounding, in float32
        rounded = math.sqrt(ab) * x - math.sqrt(1 - ab) * model(x, t)
        # float32 round-off of the same formula (another order of operations) is ~3e-7; the float16 rounding of
        # the weights moves the output by far more, so the check tells the stored weights from the source
        torch.testing.assert_close(den(x, ab), rounded, rtol=1e-5, atol=2e-6)
        assert float((unrounded - rounded).abs().max()) > 1e-4


def test_loader_refuses_an_expert_paired_with_other_weights(packed):
    low, _, out = packed
    other = _write_net(low.parent.parent / "other", "eps", 7, zero_out=False)
    for suffix in (".pt", ".json"):
        (other.parent / ("photo_unet32_high" + suffix)).write_bytes(out.with_suffix(suffix).read_bytes())
    with pytest.raises(ValueError, match="paired with other low-noise weights"):
        load_photo_unet(other)
    assert isinstance(load_photo_unet(other, experts=False)[0], NetworkDenoiser)
    log = json.loads(out.with_suffix(".json").read_text())
    log["expert"]["knots"] = [[500, 0.5]]
    out.with_suffix(".json").write_text(json.dumps(log))
    with pytest.raises(ValueError, match="invalid expert.knots.*the last must be 1"):
        load_photo_unet(low)
    del log["expert"]
    out.with_suffix(".json").write_text(json.dumps(log))
    with pytest.raises(ValueError, match="lacks expert.knots"):
        load_photo_unet(low)


def test_pack_leaves_no_file_when_the_expert_loses(tmp_path):
    """A zeroed eps net as the 'high' expert is the identity: it loses at the top, so nothing is written."""
    low = _write_net(tmp_path / "low", "v", 0, zero_out=False)
    bad = _write_net(tmp_path / "bad", "eps", 1, zero_out=True)
    with pytest.raises(ValueError, match="not better than the low one"):
        pack_high_expert(bad, low, n=4, grid=300)
    assert not high_expert_path(low).exists()
    assert sorted(p.name for p in low.parent.iterdir()) == ["photo_unet32.json", "photo_unet32.pt"]  # no temp file


@pytest.mark.parametrize("fault", ["missing", "corrupt", "loses"])
def test_experts_command_bad_input_is_one_line_and_exit_2(fault, tmp_path, capsys):
    from dptheory.images.experts import main

    low = _write_net(tmp_path / "low", "v", 0, zero_out=False)
    high = _write_net(tmp_path / "high", "eps", 1, zero_out=True)  # the identity: it loses at the top
    if fault == "corrupt":
        high.write_bytes(b"\x80\x04garbage" * 10)
    arg = str(tmp_path / "nope.pt") if fault == "missing" else str(high)
    assert main([arg, "--low", str(low), "--n", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert "Traceback" not in err and err.startswith("python -m dptheory.images.experts: ")
    assert {"missing": "nope.json beside the weights", "corrupt": "not a readable tensor checkpoint",
            "loses": "not better than the low one"}[fault] in err
    assert sorted(p.name for p in low.parent.iterdir()) == ["photo_unet32.json", "photo_unet32.pt"]
