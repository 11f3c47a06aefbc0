"""The shared look and the shared output of the figures in ``analyses/`` (STYLE item 11).

- :func:`parse_args`: the common command line, ``--quick`` and ``--out DIR`` (default ``figures/``);
- :func:`style`: a context manager with the seaborn theme ("whitegrid", "paper" context, colour-blind palette)
  applied through ``matplotlib.rc_context``, so nothing global is changed;
- :func:`figure`: a constrained-layout :class:`matplotlib.figure.Figure` built WITHOUT pyplot (no GUI backend, no
  global figure registry; ``savefig`` renders with Agg for PNG and the PDF backend);
- :func:`draw_dp_curve`: an optimal D-P curve ``D(P) = D* + ((W - P)_+)^2`` drawn in the (MSE, W2) plane;
- :func:`save_figure`: ``<out>/<name>.png`` and ``.pdf`` plus the ``.json`` sidecar holding the parameters, the
  seed, the package version and the plotted numbers.

Axes: the distortion (MSE) on x, the perception (W2 or KL to the target law) on y, as in Wang et al.'s "W2 and KL
against MSE" figures; colours are fixed per method (:data:`COLORS`). matplotlib and seaborn are imported inside the
functions only (the ``figures`` extra), so ``import dptheory`` never pulls them in.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "place_labels",
    "COLORS",
    "parse_args",
    "style",
    "figure",
    "draw_dp_curve",
    "dp_curve_points",
    "to_jsonable",
    "dumps",
    "save_figure",
    "Timer",
]

COLORS = {
    "prior": "#4d4d4d",
    "posterior": "#0173b2",
    "likelihood": "#de8f05",
    "vsrd": "#029e73",
    "map-rps": "#d55e00",
    "dps": "#cc78bc",
    "mmse": "#000000",
    "map": "#d55e00",
    "data": "#949494",
    "observation": "#de8f05",
    "joint": "#000000",
    "per-measurement": "#56b4e9",
}
"""One colour per method or quantity, from seaborn's colour-blind palette, used by every analysis."""

_DP_LINESTYLES = {"joint": "-", "per-measurement": "--"}


def parse_args(description: str, argv=None) -> argparse.Namespace:
    """The analyses' common command line: ``--quick`` (smaller grids and samples) and ``--out DIR``."""
    first = (description or "").strip().splitlines()
    from ._plain_text import plain

    parser = argparse.ArgumentParser(description=plain(first[0]) if first else None)
    parser.add_argument("--quick", action="store_true", help="smaller grids and sample sizes (seconds, not minutes)")
    parser.add_argument("--out", default="figures", type=Path, help="output directory (default: figures/)")
    return parser.parse_args(argv)


def _rc() -> dict:
    import seaborn as sns
    from cycler import cycler

    rc = {**sns.axes_style("whitegrid"), **sns.plotting_context("paper", font_scale=1.15)}
    rc.update({
        "axes.prop_cycle": cycler(color=sns.color_palette("colorblind")),
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "legend.frameon": True,
        "legend.framealpha": 0.9,
        "legend.fontsize": 8.5,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "pdf.fonttype": 42,  # embed TrueType: text stays text in the PDF
        "image.cmap": "viridis",
    })
    return rc


@contextmanager
def style():
    """Apply the gallery's seaborn theme for the duration of the ``with`` block (figure creation AND saving)."""
    import matplotlib

    with matplotlib.rc_context(_rc()):
        yield


def figure(nrows: int = 1, ncols: int = 1, *, figsize=(6.4, 4.8), **subplots_kw):
    """A constrained-layout figure and its axes (``squeeze`` as in ``plt.subplots``), without pyplot.

    With ``nrows=0`` no axes are made (build them with ``fig.add_gridspec``); ``(fig, None)`` is returned.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, **subplots_kw) if nrows else None
    return fig, axes


def dp_curve_points(curve, p_max: float | None = None, n: int = 200) -> tuple[list[float], list[float]]:
    """``(D, P)`` lists along an optimal curve, ``P`` from 0 to ``p_max`` (default ``1.25 W``).

    Beyond ``P = W`` the curve is flat, ``D = D*`` (the MMSE estimator's perception suffices).
    """
    import torch

    w = float(curve.w)
    p_max = 1.25 * w if p_max is None else max(float(p_max), 0.0)
    P = torch.linspace(0.0, max(p_max, 1e-12), n, dtype=torch.float64)
    if 0.0 < w < p_max:  # make sure the corner (D*, W) is drawn
        P = torch.cat([P, P.new_tensor([w])]).sort().values
    D = curve.distortion(P)
    return [float(v) for v in D], [float(v) for v in P]


def draw_dp_curve(ax, curve, *, p_max: float | None = None, label: str | None = None, color=None,
                  linestyle=None, mark_mmse: bool = True, **kw):
    """Draw the optimal curve of a :class:`~dptheory.DPCurve` as (x = MSE, y = W2); returns the plotted lists.

    The joint form is solid black and the per-measurement form dashed light blue unless overridden. With
    ``mark_mmse`` the MMSE point ``(D*, W)`` gets a small marker.
    """
    D, P = dp_curve_points(curve, p_max)
    color = COLORS.get(curve.form, "k") if color is None else color
    linestyle = _DP_LINESTYLES.get(curve.form, "-") if linestyle is None else linestyle
    if label is None:
        label = f"optimal {curve.form} $D(P)=D^*+((W-P)_+)^2$"
    ax.plot(D, P, color=color, linestyle=linestyle, linewidth=1.6, label=label, zorder=1, **kw)
    if mark_mmse:
        ax.plot([curve.mmse_error], [curve.w], marker="D", color=color, markersize=4, linestyle="none", zorder=2)
    return {"D": D, "P": P, "D_star": float(curve.mmse_error), "W": float(curve.w), "form": curve.form,
            "D_star_stderr": float(curve.mmse_error_stderr), "note": curve.note}


_LABEL_OFFSETS = [(6, 6), (6, -6), (-6, 6), (-6, -6), (0, 11), (0, -11), (12, 0), (-12, 0), (14, 16), (14, -16),
                  (-14, 16), (-14, -16), (0, 22), (0, -22), (26, 8), (-26, 8), (26, -8), (-26, -8), (24, 28),
                  (-24, 28), (24, -28), (-24, -28)]


def _merge_coincident(requests, pixels: float = 6.0) -> list:
    """Merge label requests of one axes and colour whose points lie within ``pixels`` of each other: texts
    ``"k=a"``, ``"k=b"`` become ``"k=a, b"`` (other texts are joined with ``"; "``), at the first point."""
    merged: list = []
    for ax, x, y, text, color in requests:
        px, py = ax.transData.transform((x, y))
        for i, (ax2, x2, y2, text2, color2) in enumerate(merged):
            qx, qy = ax2.transData.transform((x2, y2))
            if ax2 is ax and color2 == color and abs(px - qx) <= pixels and abs(py - qy) <= pixels:
                key, sep, value = text.partition("=")
                same_key = sep and text2.partition("=")[0] == key and "," not in value + text2
                merged[i] = (ax2, x2, y2, f"{text2}, {value}" if same_key else f"{text2}; {text}", color2)
                break
        else:
            merged.append((ax, x, y, text, color))
    return merged


def place_labels(fig, requests, *, fontsize: float = 6.5) -> None:
    """Label points without overlaps: ``requests`` is a list of ``(ax, x, y, text, colour)`` in data coordinates.

    Call it once, after every axes of ``fig`` exists and its limits are set. The layout is computed first; then each
    label takes, among a fixed list of offsets (nearest first), the one with the lowest cost: outside its axes
    (1000), overlapping an earlier label or a labelled point (100 each), crossing a drawn line (10 each), plus the
    offset's rank (0.01 each). A label placed away from its point gets a thin leader line. Points of one colour
    closer than 6 pixels share one label ("t=50, 100, 200").
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.path import Path as MplPath
    from matplotlib.transforms import Bbox

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    requests = _merge_coincident(requests)
    placed: dict = {}
    lines: dict = {}
    for ax, x, y, _, _ in requests:  # the labelled points are obstacles too
        px, py = ax.transData.transform((x, y))
        placed.setdefault(ax, []).append(Bbox.from_extents(px - 3, py - 3, px + 3, py + 3))
        if ax not in lines:
            lines[ax] = [MplPath(ln.get_transform().transform(ln.get_xydata())) for ln in ax.get_lines()
                         if len(ln.get_xydata()) >= 2]
    for ax, x, y, text, color in requests:
        ax_box = ax.get_window_extent(renderer)
        best = None
        for rank, (dx, dy) in enumerate(_LABEL_OFFSETS):
            far = abs(dx) + abs(dy) > 20
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                              color=color, ha="left" if dx > 0 else "right" if dx < 0 else "center",
                              va="bottom" if dy > 0 else "top" if dy < 0 else "center", annotation_clip=True,
                              arrowprops=dict(arrowstyle="-", color=color, lw=0.5, shrinkA=0, shrinkB=2)
                              if far else None)
            bb = ann.get_text_window_extent(renderer) if hasattr(ann, "get_text_window_extent") else \
                ann.get_window_extent(renderer)
            inside = ax_box.x0 <= bb.x0 and bb.x1 <= ax_box.x1 and ax_box.y0 <= bb.y0 and bb.y1 <= ax_box.y1
            cost = (0 if inside else 1000) + 100 * sum(bb.overlaps(o) for o in placed[ax]) \
                + 10 * sum(path.intersects_bbox(bb, filled=False) for path in lines[ax]) + 0.01 * rank
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, bb)
            else:
                ann.remove()
            if cost < 1:
                break
        placed[ax].append(best[2])


def to_jsonable(obj):
    """Convert tensors, arrays, dataclasses, paths and numbers to JSON values.

    Non-finite floats become the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (JSON has no literal for them and
    the information matters: a point mass has KL = inf to any density).
    """
    import dataclasses

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj
    if hasattr(obj, "tolist"):  # torch tensors, numpy arrays and numpy scalars
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if hasattr(obj, "__float__"):
        return to_jsonable(float(obj))
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def save_figure(fig, name: str, out, *, title: str, claims, params: dict, seed, data: dict, quick: bool,
                seconds: float | None = None) -> dict:
    """Write ``<out>/<name>.png``, ``.pdf`` and the ``.json`` sidecar; return the three paths.

    Each file is written to a temporary file and the three are renamed together (sidecar last), so an interrupted
    or failed write leaves the previous files untouched and no partial file.

    The sidecar holds ``figure``, ``title``, ``claims``, ``params``, ``seed``, ``version`` (dptheory's),
    ``torch``, ``quick``, ``seconds`` and ``data`` (the plotted numbers).
    """
    import torch

    import dptheory

    from ._atomic import discard, reserve_temp

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{name}.{ext}" for ext in ("png", "pdf", "json")}
    sidecar = {
        "figure": name,
        "title": title,
        "claims": list(claims),
        "params": params,
        "seed": seed,
        "version": dptheory.__version__,
        "torch": torch.__version__,
        "quick": bool(quick),
        "seconds": seconds,
        "data": data,
    }
    text = dumps(to_jsonable(sidecar)) + "\n"
    # all three go to temporary files first and are renamed together, the sidecar last: an interrupt or a full
    # disk never leaves a partial file, nor a new figure beside an old sidecar
    staged = {}
    try:
        for ext in ("png", "pdf", "json"):
            staged[ext] = reserve_temp(paths[ext])
            if ext == "json":
                staged[ext].write_text(text)
            else:
                fig.savefig(staged[ext], format=ext)
        for ext in ("png", "pdf", "json"):
            os.replace(staged.pop(ext), paths[ext])
    finally:
        for tmp in staged.values():
            discard(tmp)
    return paths


def run_analysis(doc: str, argv, *, name: str, claims, seed, compute, plot, params, sidecar_data=None,
                 data=None, seconds: float = 0.0) -> int:
    """The ``main`` of every analysis script: parse ``--quick``/``--out``, ``data = compute(quick)``, draw
    ``plot(data)`` in the shared style and write the figure with its sidecar (:func:`save_figure`).

    ``params(data, quick)`` gives the sidecar's parameters; ``sidecar_data(data)`` (default: ``data`` itself) the
    plotted numbers stored in it. ``data`` given: it is drawn as is (computed elsewhere, e.g. in parts by
    ``dptheory reproduce --jobs``, which took ``seconds``). Returns 0 (the process exit code).
    """
    args = parse_args(doc, argv)
    timer = Timer()
    timer.start -= seconds
    if data is None:
        data = compute(args.quick)
    with style():
        fig = plot(data)
        save_figure(fig, name, args.out, title=doc.splitlines()[0], claims=claims, params=params(data, args.quick),
                    seed=seed, data=data if sidecar_data is None else sidecar_data(data), quick=args.quick,
                    seconds=timer.seconds)
    return 0


def dumps(obj, indent: int = 0) -> str:
    """JSON with one key per line but every list of numbers on ONE line (readable, and 3x smaller than
    ``json.dumps(indent=...)``, which puts each number on its own line)."""
    pad = " " * (indent + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{pad}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        if all(isinstance(v, list) and not any(isinstance(u, (dict, list)) for u in v) for v in obj):
            rows = [pad + json.dumps(v, separators=(",", ":")) for v in obj]  # a matrix: one row per line
        else:
            rows = [pad + dumps(v, indent + 1) for v in obj]
        return "[\n" + ",\n".join(rows) + "\n" + " " * indent + "]"
    return json.dumps(obj, separators=(",", ":"))


class Timer:
    """Wall time since construction (``seconds``), for the sidecars."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
