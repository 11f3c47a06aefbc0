"""Figure ``posterior_1d``: a 1-D two-component prior, the noisy observation and its exact posterior.

Claims: FND-1 (the library's closed-form posterior equals brute-force Bayes), MRPS-4 (for a mixture prior the
MAP is not the MMSE).

The setting is that of Wang et al.'s first figure: one scalar observation ``y = x + N(0, sigma^2)`` with
``sigma = 0.5`` and ``y = -0.6``. Wang et al. do not give their prior's parameters, so we use the worked problem
B1 instead, ``0.5 N(-1, 0.05) + 0.5 N(1, 0.05)``. It is a STAND-IN, not their prior.

Panels:

(a) the prior density and its two components;
(b) the observation model: the joint density ``p(x, y)``, with the observed ``y = -0.6`` drawn as a line;
(c) the exact posterior ``p(x | y)`` (``problem.posterior(y)``, a GMM), the likelihood ``p(y | x)`` as a
    function of x (normalised to unit area), the prior, and the MMSE and MAP estimates;
(d) a zoom on the dominant mode: the MAP (-0.933) and the MMSE (-0.903) are different points.

Everything is exact (no sampling, so no seed is used). The sidecar also compares the closed-form posterior
with brute-force Bayes on the plotting grid (prior times likelihood, normalised by the trapezoid rule).
"""

from __future__ import annotations

import torch

from dptheory import plotting
from dptheory.reference_problems import b1

NAME = "posterior_1d"
CLAIMS = ("FND-1", "MRPS-4")
SEED = None  # exact: nothing is random
SIGMA_Y, Y_OBS = 0.5, -0.6


def compute(quick: bool) -> dict:
    """Densities on a grid, the posterior's parameters, the MMSE, the MAP and the brute-force check."""
    prob, y = b1(sigma_y=SIGMA_Y, y=Y_OBS)
    n_grid = 1001
    x = torch.linspace(-2.5, 2.5, n_grid, dtype=torch.float64)
    prior_pdf = prob.prior.log_prob(x.unsqueeze(-1)).exp()
    comp_pdf = [(prob.prior.weights[k] * prob.prior.component(k).log_prob(x.unsqueeze(-1)).exp())
                for k in range(prob.prior.n_components)]
    lik = torch.exp(-0.5 * (y - x).square() / SIGMA_Y**2) / (SIGMA_Y * (2 * torch.pi) ** 0.5)  # p(y | x)
    post = prob.posterior(y)
    post_pdf = post.log_prob(x.unsqueeze(-1)).exp()
    # brute-force Bayes on the grid (independent of the library's conditioning code)
    unnorm = prior_pdf * lik
    evidence_quad = torch.trapezoid(unnorm, x)
    post_quad = unnorm / evidence_quad
    mmse_quad = torch.trapezoid(post_quad * x, x) / torch.trapezoid(post_quad, x)
    mmse, x_map = prob.mmse(y), prob.map(y)
    # joint density p(x, y') on a coarse grid for panel (b)
    xs = torch.linspace(-2.2, 2.2, 89, dtype=torch.float64)
    ys = torch.linspace(-2.6, 2.6, 105, dtype=torch.float64)
    px = prob.prior.log_prob(xs.unsqueeze(-1)).exp()
    lik_grid = torch.exp(-0.5 * (ys.unsqueeze(-1) - xs).square() / SIGMA_Y**2) / (SIGMA_Y * (2 * torch.pi) ** 0.5)
    joint = lik_grid * px  # (len(ys), len(xs))
    return {
        "x": x, "prior_pdf": prior_pdf, "component_pdfs": torch.stack(comp_pdf),
        "likelihood_normalised": lik / torch.trapezoid(lik, x), "posterior_pdf": post_pdf,
        "posterior_weights": post.weights, "posterior_means": post.means[:, 0], "posterior_vars": post.covs[:, 0, 0],
        "mmse": float(mmse), "map": float(x_map), "map_minus_mmse": float(x_map - mmse),
        "posterior_cov_trace": float(prob.posterior_cov_trace(y)),
        "evidence": float(prob.evidence().log_prob(y).exp()), "evidence_quadrature": float(evidence_quad),
        "max_abs_err_posterior_pdf_vs_quadrature": float((post_pdf - post_quad).abs().max()),
        "mmse_quadrature": float(mmse_quad),
        "joint_x": xs, "joint_y": ys, "joint_pdf": joint,  # panel (b): p(y'|x) p(x) on the (y', x) grid
    }


def plot(d: dict):
    """The 2 x 2 figure."""
    c = plotting.COLORS
    fig, axes = plotting.figure(2, 2, figsize=(10.5, 7.6))
    (ax_a, ax_b), (ax_c, ax_d) = axes
    x = d["x"].numpy()

    ax_a.plot(x, d["prior_pdf"].numpy(), color=c["prior"], linewidth=3.5, alpha=0.5,
              label="prior $p(x)$ (B1 stand-in)")
    for k, comp in enumerate(d["component_pdfs"]):
        ax_a.plot(x, comp.numpy(), linestyle="--", linewidth=1.2,
                  label=f"component {k + 1}: $0.5\\,\\mathcal{{N}}({'-' if k == 0 else '+'}1, 0.05)$")
    ax_a.set(title="(a) prior", xlabel="$x$ (a.u.)", ylabel="density $p(x)$ (1/a.u.)",
             ylim=(0, 1.3 * float(d["prior_pdf"].max())))
    ax_a.legend(loc="upper center")

    im = ax_b.pcolormesh(d["joint_x"].numpy(), d["joint_y"].numpy(), d["joint_pdf"].numpy(), shading="auto",
                         cmap="viridis", rasterized=True)
    ax_b.axhline(Y_OBS, color=c["observation"], linewidth=1.8, label=f"observed $y = {Y_OBS}$")
    ax_b.plot([-2.2, 2.2], [-2.2, 2.2], color="w", linewidth=0.8, linestyle="--", label="$y = x$ (no noise)")
    fig.colorbar(im, ax=ax_b, label="joint density $p(x, y)$ (1/a.u.$^2$)")
    ax_b.set(title=f"(b) observation model $Y = X + \\mathcal{{N}}(0, {SIGMA_Y}^2)$", xlabel="$x$ (a.u.)",
             ylabel="$y$ (a.u.)")
    ax_b.legend(loc="upper left")

    ax_c.fill_between(x, d["posterior_pdf"].numpy(), color=c["posterior"], alpha=0.3)
    ax_c.plot(x, d["posterior_pdf"].numpy(), color=c["posterior"], linewidth=2,
              label=f"exact posterior $p(x\\mid y={Y_OBS})$")
    ax_c.plot(x, d["likelihood_normalised"].numpy(), color=c["likelihood"], linestyle="--",
              label="likelihood $p(y\\mid x)$, normalised in $x$")
    ax_c.plot(x, d["prior_pdf"].numpy(), color=c["prior"], linewidth=1, alpha=0.7, label="prior $p(x)$")
    ax_c.axvline(d["mmse"], color=c["mmse"], linestyle="-", linewidth=1.2, label=f"MMSE = {d['mmse']:.3f}")
    ax_c.axvline(d["map"], color=c["map"], linestyle="-.", linewidth=1.2, label=f"MAP = {d['map']:.3f}")
    ax_c.set(title="(c) exact posterior", xlabel="$x$ (a.u.)", ylabel="density (1/a.u.)",
             ylim=(0, 1.45 * float(d["posterior_pdf"].max())))
    ax_c.legend(loc="upper right")

    lo, hi = -1.45, -0.35
    sel = (d["x"] >= lo) & (d["x"] <= hi)
    ax_d.fill_between(x[sel.numpy()], d["posterior_pdf"][sel].numpy(), color=c["posterior"], alpha=0.3)
    ax_d.plot(x[sel.numpy()], d["posterior_pdf"][sel].numpy(), color=c["posterior"], linewidth=2,
              label="exact posterior")
    ax_d.axvline(d["mmse"], color=c["mmse"], linewidth=1.4, label=f"MMSE $E[X\\mid y]$ = {d['mmse']:.4f}")
    ax_d.axvline(d["map"], color=c["map"], linestyle="-.", linewidth=1.4,
                 label=f"MAP (posterior mode) = {d['map']:.4f}")
    ax_d.axvline(Y_OBS, color=c["likelihood"], linestyle="--", linewidth=1.2, label=f"$A^+y$ = {Y_OBS}")
    w = d["posterior_weights"]
    ax_d.set(title=f"(d) zoom: MAP $\\neq$ MMSE (posterior weights {float(w[0]):.3f} / {float(w[1]):.3f})",
             xlabel="$x$ (a.u.)", ylabel="density (1/a.u.)", xlim=(lo, hi),
             ylim=(0, 1.75 * float(d["posterior_pdf"].max())))
    ax_d.legend(loc="upper right")
    return fig


def _params(data: dict, quick: bool) -> dict:
    """The sidecar's parameters."""
    params = {"prior": "0.5 N(-1, 0.05) + 0.5 N(1, 0.05) (B1; stand-in for Wang et al.'s unknown prior)",
              "A": 1.0, "sigma_y": SIGMA_Y, "y": Y_OBS, "grid_points": len(data["x"])}
    return params


def main(argv=None) -> int:
    return plotting.run_analysis(__doc__, argv, name=NAME, claims=CLAIMS, seed=SEED, compute=compute, plot=plot,
                                 params=_params)


if __name__ == "__main__":
    raise SystemExit(main())
