#!/usr/bin/python3
# Why: results.csv says how each run of a sweep ended, but the paper's claims are about shapes: how val
# BPC moves with the activation rate ra at a fixed compute, what reusing data (strict, loose) costs
# against fresh data, what repeated epochs do, and whether every run actually converged. This draws
# those four figures from a sweep folder that `moetrain sweep` (or `--collect`) wrote, so that a
# finished (or half finished) sweep can be looked at without opening a notebook.
#
# Usage: scripts/plot_sweep.py DIR [--out OUTDIR]
#   reads DIR/results.csv, DIR/sweep.json (for the reference run) and DIR/RUN/metrics.jsonl and writes
#   OUTDIR/fig_bpc_vs_ra.png, fig_delta_vs_ra_reuse.png, fig_bpc_vs_epochs.png and fig_curves.png
#   (OUTDIR defaults to DIR), and fig_load.png (a panel per MoE run: max/mean expert load per MoE layer
#   over the steps) when a run logged load metrics. Runs without results (pending, failed) are left out
#   of the first three.
import argparse
import csv
import json
import math
import os
import sys

REUSE_ORDER = ["none", "strict", "loose"]
REUSE_STYLE = {"none": ("C0", "o"), "strict": ("C1", "s"), "loose": ("C2", "^")}


def die(msg, code=2):
    print("plot_sweep.py: " + msg, file=sys.stderr)
    sys.exit(code)


def number(text):
    """A CSV cell as a float; empty or unreadable cells are NaN (a run without results)."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        return math.nan
    return v


def read_results(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    needed = {"name", "status", "reuse", "ra", "epochs", "val_bpc", "delta_bpc"}
    if rows and not needed.issubset(rows[0].keys()):
        missing = ", ".join(sorted(needed - set(rows[0].keys())))
        die("%s: not a results table of `moetrain sweep` (missing columns: %s)" % (path, missing))
    runs = []
    for r in rows:
        runs.append({
            "name": r["name"],
            "status": r["status"],
            "reuse": r["reuse"] or "none",
            "ra": number(r["ra"]),
            "epochs": number(r["epochs"]),
            "val_bpc": number(r["val_bpc"]),
            "delta_bpc": number(r["delta_bpc"]),
            "EL": number(r.get("EL")),
            "N": number(r.get("N")),
            "C": number(r.get("C")),
            "D": number(r.get("D")),
        })
    return runs


def reference_name(sweep_dir):
    try:
        with open(os.path.join(sweep_dir, "sweep.json")) as f:
            return json.load(f).get("reference") or ""
    except (OSError, ValueError, AttributeError):
        return ""


def reference_bpc(runs, ref_name):
    """The reference run's val BPC: by name from sweep.json, else val_bpc - delta_bpc of any run."""
    for r in runs:
        if r["name"] == ref_name and math.isfinite(r["val_bpc"]):
            return r["val_bpc"], ref_name
    for r in runs:
        if math.isfinite(r["val_bpc"]) and math.isfinite(r["delta_bpc"]):
            return r["val_bpc"] - r["delta_bpc"], ref_name or "reference"
    return math.nan, ""


def read_metrics(path):
    """(train points, eval points) of a run's metrics.jsonl; lines that do not parse (a run killed while
    writing) are skipped."""
    train, evals = [], []
    try:
        f = open(path)
    except OSError:
        return train, evals
    with f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if not isinstance(j, dict) or "tokens" not in j:
                continue
            if "loss" in j:
                train.append((float(j["tokens"]), float(j["loss"])))
            if "val_bpc" in j:
                evals.append((float(j["tokens"]), float(j["val_bpc"])))
    return train, evals


def read_load(path):
    """[(step, [max/mean load per MoE layer], [dead experts per MoE layer])] of a run's metrics.jsonl
    (the lines with moe_max_load; unreadable lines are skipped)."""
    points = []
    try:
        f = open(path)
    except OSError:
        return points
    with f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if isinstance(j, dict) and isinstance(j.get("moe_max_load"), list) and "step" in j:
                points.append((j["step"], j["moe_max_load"], j.get("moe_dead") or []))
    return points


def plot_load(plt, sweep_dir, runs, out):
    """One panel per MoE run with load metrics: max/mean load per MoE layer over the steps."""
    loads = [(r, read_load(os.path.join(sweep_dir, r["name"], "metrics.jsonl"))) for r in runs]
    loads = [(r, p) for r, p in loads if p]
    cols = min(4, len(loads))
    rows = (len(loads) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False, sharey=True)
    for i, (r, points) in enumerate(loads):
        ax = axes[i // cols][i % cols]
        steps = [s for s, _, _ in points]
        for l in range(len(points[-1][1])):
            ax.plot(steps, [m[l] if l < len(m) else math.nan for _, m, _ in points], linewidth=1,
                    label="MoE layer %d" % l)
        dead = points[-1][2]
        ax.set_title("%s (dead at end: %s)" % (r["name"], ",".join(str(d) for d in dead) or "-"), fontsize=8)
        ax.axhline(1.0, color="gray", linewidth=0.8, linestyle=":")
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        if i % cols == 0:
            ax.set_ylabel("max / mean expert load")
        if i == 0:
            ax.legend(fontsize=6)
    for i in range(len(loads), rows * cols):
        axes[i // cols][i % cols].axis("off")
    fig.suptitle("Expert load per run (1 = balanced; dead: experts without a token in the last log interval)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def is_moe(r):
    return math.isfinite(r["ra"]) and r["ra"] < 1.0 - 1e-9


def has_result(r, key="val_bpc"):
    return r["status"] == "finished" and math.isfinite(r[key])


def reuse_kinds(runs):
    kinds = [k for k in REUSE_ORDER if any(r["reuse"] == k for r in runs)]
    return kinds + sorted({r["reuse"] for r in runs} - set(kinds))


def style(kind, i):
    return REUSE_STYLE.get(kind, ("C%d" % (3 + i), "D"))


def percent_axis(plt, axis, lo, hi):
    """Labels a log axis of rates as percentages (major and minor ticks: a sweep spans less than a decade)."""
    def label(v, _pos, minor=False):
        if v <= 0:
            return ""
        lead = round(v / 10 ** math.floor(math.log10(v) + 1e-9), 3)
        if minor and hi < 3 * lo and lead != 1:
            pass        # a narrow range: every minor tick, or there would be none
        elif minor and lead not in (2, 3, 5):
            return ""   # 2, 3, 5 x 10^k only, so that labels never run into each other
        return "%g%%" % float("%.2g" % (100 * v))
    axis.set_major_formatter(plt.FuncFormatter(label))
    axis.set_minor_formatter(plt.FuncFormatter(lambda v, pos: label(v, pos, True)))


def empty_note(ax, what):
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="0.4")


def seed_groups(runs, key, field):
    """Runs that differ only in their seed (same reuse and the same `field`, e.g. ra or C) as one point:
    [(field value, mean of key, min, max, names)], sorted by the field."""
    groups = {}
    for r in runs:
        groups.setdefault((r["reuse"], "%.6g" % r[field]), []).append(r)
    out = []
    for sel in groups.values():
        vals = [r[key] for r in sel]
        out.append((sel[0][field], sum(vals) / len(vals), min(vals), max(vals), [r["name"] for r in sel]))
    return sorted(out)


def dense_lines(runs, ref_name):
    """One (val BPC, label) per dense compute budget (the mean over its seeds), the compute in units of
    the reference's; the seed spread is in the label."""
    ref_c = next((r["C"] for r in runs if r["name"] == ref_name and math.isfinite(r["C"])), math.nan)
    lines = []
    for c, mean, lo, hi, names in seed_groups([r for r in runs if not is_moe(r) and has_result(r)], "val_bpc", "C"):
        scale = " (%.3g C)" % (c / ref_c) if math.isfinite(ref_c) and math.isfinite(c) else ""
        spread = ", %d seeds %.4f-%.4f" % (len(names), lo, hi) if len(names) > 1 else ""
        lines.append((mean, "%s%s: %.4f%s" % (names[0], scale, mean, spread)))
    return lines


def plot_vs_ra(plt, runs, key, ylabel, title, ref_lines, out, bubbles=False):
    """MoE runs against ra, one series per reuse kind, horizontal lines for the dense runs. Runs that
    differ only in their seed are one point, their mean, with an error bar from the lowest to the highest
    seed. With bubbles, the marker area is proportional to the consumed tokens D (Figure 1b of the paper)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    moe = [r for r in runs if is_moe(r) and has_result(r, key) and r["ra"] > 0]
    d_max = max((r["D"] for r in moe if math.isfinite(r["D"])), default=math.nan)
    d_of = {r["name"]: r["D"] for r in moe}
    seeded = False
    for i, kind in enumerate(reuse_kinds(moe)):
        pts = seed_groups([r for r in moe if r["reuse"] == kind], key, "ra")
        color, marker = style(kind, i)
        x = [p[0] for p in pts]
        y = [p[1] for p in pts]
        ax.plot(x, y, marker=None if bubbles else marker, color=color, label="MoE, reuse " + kind)
        multi = [p for p in pts if len(p[4]) > 1]
        if multi:
            seeded = True
            ax.errorbar([p[0] for p in multi], [p[1] for p in multi], fmt="none", ecolor=color, capsize=4,
                        yerr=[[p[1] - p[2] for p in multi], [p[3] - p[1] for p in multi]])
        if bubbles and math.isfinite(d_max):
            ax.scatter(x, y, marker=marker, color=color, alpha=0.6, edgecolors="k", linewidths=0.5,
                       s=[400 * d_of[p[4][0]] / d_max for p in pts])
    if seeded:
        title += "\n(error bars: lowest to highest seed)"
    for j, (y, label) in enumerate(ref_lines):
        ax.axhline(y, color="0.%d" % min(6, 2 * j), linestyle=["--", ":", "-."][j % 3], linewidth=1, label=label)

    if moe:
        ax.set_xscale("log")
        percent_axis(plt, ax.xaxis, min(r["ra"] for r in moe), max(r["ra"] for r in moe))
    else:
        empty_note(ax, "no finished MoE runs")
    xlabel = "activation rate ra = Na / N"
    if bubbles and math.isfinite(d_max):
        xlabel += "   (marker area ~ consumed tokens D, largest %.3g)" % d_max
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_bpc_vs_epochs(plt, runs, out):
    from matplotlib.colors import LogNorm, Normalize
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    moe = [r for r in runs if is_moe(r) and has_result(r) and math.isfinite(r["epochs"]) and r["ra"] > 0]
    if moe:
        ras = [r["ra"] for r in moe]
        lo, hi = min(ras), max(ras)
        norm = LogNorm(vmin=lo, vmax=hi) if hi > lo else Normalize(vmin=lo * 0.9, vmax=hi * 1.1)
        sc = None
        for i, kind in enumerate(reuse_kinds(moe)):
            sel = [r for r in moe if r["reuse"] == kind]
            sc = ax.scatter([r["epochs"] for r in sel], [r["val_bpc"] for r in sel], c=[r["ra"] for r in sel],
                            cmap="viridis", norm=norm, marker=style(kind, i)[1], s=50, edgecolors="k",
                            linewidths=0.5, label="reuse " + kind)
        bar = fig.colorbar(sc, ax=ax)
        bar.set_label("activation rate ra")
        percent_axis(plt, bar.ax.yaxis, lo, hi)
        # Legend entries by marker only: the colour is the rate.
        from matplotlib.lines import Line2D
        handles = [Line2D([], [], linestyle="", marker=style(k, i)[1], markerfacecolor="0.8", markeredgecolor="k",
                          label="reuse " + k) for i, k in enumerate(reuse_kinds(moe))]
        ax.legend(handles=handles, fontsize=8)
    else:
        empty_note(ax, "no finished MoE runs")
    ax.set_xlabel("epochs over the unique tokens (D / D^)")
    ax.set_ylabel("val BPC")
    ax.set_title("MoE val BPC against epochs")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_curves(plt, sweep_dir, runs, out):
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.2, 7.0), sharex=True)
    drawn = 0
    for i, r in enumerate(runs):
        train, evals = read_metrics(os.path.join(sweep_dir, r["name"], "metrics.jsonl"))
        if not train and not evals:
            continue
        color = "C%d" % (i % 10)
        label = r["name"] if r["status"] == "finished" else "%s (%s)" % (r["name"], r["status"])
        style_args = {"linestyle": "--"} if not is_moe(r) else {}
        if train:
            top.plot([t for t, _ in train], [v for _, v in train], color=color, linewidth=1, label=label, **style_args)
        if evals:
            bottom.plot([t for t, _ in evals], [v for _, v in evals], color=color, marker="o", markersize=4,
                        linewidth=0.8, label=label, **style_args)
        drawn += 1
    if drawn:
        top.set_xscale("log")
        top.legend(fontsize=7, ncol=2)
    else:
        empty_note(top, "no run has metrics.jsonl yet")
    if not bottom.lines:
        empty_note(bottom, "no eval points")
    top.set_ylabel("training loss (nats / token)")
    top.set_title("Training curves (dashed: dense)")
    bottom.set_ylabel("val BPC")
    bottom.set_xlabel("consumed tokens")
    for ax in (top, bottom):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description="Figures of a `moetrain sweep` folder (see the comment at the top).")
    p.add_argument("dir", help="sweep folder (holds results.csv)")
    p.add_argument("--out", help="folder for the PNG files (default: DIR)")
    a = p.parse_args()

    results = os.path.join(a.dir, "results.csv")
    if not os.path.isfile(results):
        die("%s: no such file (run `moetrain sweep --collect %s` first)" % (results, a.dir))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        die("matplotlib is needed (apt-get install python3-matplotlib): %s" % e, 1)

    runs = read_results(results)
    out_dir = a.out or a.dir
    os.makedirs(out_dir, exist_ok=True)
    skipped = [r["name"] for r in runs if not has_result(r)]
    if skipped:
        print("no results yet (left out of the summary figures): " + ", ".join(skipped))

    ref_bpc, ref_name = reference_bpc(runs, reference_name(a.dir))
    lines = dense_lines(runs, ref_name)
    if not lines and math.isfinite(ref_bpc):
        lines = [(ref_bpc, "dense reference %s: %.4f" % (ref_name, ref_bpc))]

    figures = [
        ("fig_bpc_vs_ra.png", lambda f: plot_vs_ra(plt, runs, "val_bpc", "val BPC",
                                                    "Val BPC against activation rate (equal N, equal C)", lines, f,
                                                    bubbles=True)),
        ("fig_delta_vs_ra_reuse.png", lambda f: plot_vs_ra(plt, runs, "delta_bpc", "dBPC = BPC - BPC(reference)",
                                                            "dBPC against activation rate, by data reuse",
                                                            [(0.0, "reference %s (dBPC = 0)" % ref_name)], f)),
        ("fig_bpc_vs_epochs.png", lambda f: plot_bpc_vs_epochs(plt, runs, f)),
        ("fig_curves.png", lambda f: plot_curves(plt, a.dir, runs, f)),
    ]
    if any(read_load(os.path.join(a.dir, r["name"], "metrics.jsonl")) for r in runs):
        figures.append(("fig_load.png", lambda f: plot_load(plt, a.dir, runs, f)))
    else:
        print("no run has MoE load metrics (moe_max_load): fig_load.png not drawn")
    for name, draw in figures:
        path = os.path.join(out_dir, name)
        draw(path)
        print("wrote " + path)


if __name__ == "__main__":
    main()
