#!/usr/bin/python3
# Why: the paper's claim is that the optimal activation rate does not move with the model's size. One
# sweep (scripts/plot_sweep.py) shows the optimum at one N; this puts sweeps at different N on one set
# of axes, each as BPC - BPC(its own Dense-1C) against ra, so that the bottoms of the curves can be
# compared directly and against the seed spread. Loading and the grouping of seeds come from
# plot_sweep.py: runs that differ only in their seed are one point (their mean) with an error bar from
# the lowest to the highest seed.
#
# Usage: scripts/plot_two_scales.py SWEEP [SWEEP ...] --out PNG
#   SWEEP: a sweep folder (holding results.csv, and sweep.json for the reference run's name) or a
#   results.csv itself (e.g. docs/micro_cpu_d20/results.csv). Each sweep is one colour, labelled by its
#   reference run's N; runs without results (pending, failed) are left out. Prints, per sweep, every
#   point (mean, lowest and highest seed) as a Markdown table, and the point with the lowest mean.
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot_sweep as ps  # noqa: E402  (beside this file)


def die(msg, code=2):
    print("plot_two_scales.py: " + msg, file=sys.stderr)
    sys.exit(code)


def load(source):
    """(runs, reference run) of a sweep folder or results.csv. The reference is the run sweep.json
    names, else the dense run whose dBPC is 0."""
    if os.path.isdir(source):
        folder, results = source, os.path.join(source, "results.csv")
    else:
        folder, results = os.path.dirname(source) or ".", source
    if not os.path.isfile(results):
        die("%s: no such file (run `moetrain sweep --collect DIR` first)" % results)
    runs = ps.read_results(results)
    name = ps.reference_name(folder)
    ref = next((r for r in runs if r["name"] == name and ps.has_result(r)), None)
    if ref is None:
        ref = next((r for r in runs if not ps.is_moe(r) and ps.has_result(r) and r["delta_bpc"] == 0.0), None)
    if ref is None:
        die("%s: no finished reference run (a dense run with dBPC 0)" % results)
    return runs, ref


def points(runs, kind):
    """The finished MoE runs of one reuse kind, seeds grouped: [(ra, mean dBPC, lo, hi, names)]."""
    sel = [r for r in runs if ps.is_moe(r) and ps.has_result(r, "delta_bpc") and r["reuse"] == kind and r["ra"] > 0]
    return ps.seed_groups(sel, "delta_bpc", "ra")


def reference_seeds(runs, ref):
    """dBPC of every finished seed of the reference (dense runs at the reference's compute)."""
    return [r["delta_bpc"] for r in runs
            if not ps.is_moe(r) and ps.has_result(r, "delta_bpc") and "%.6g" % r["C"] == "%.6g" % ref["C"]]


def print_table(label, runs, ref):
    by_name = {r["name"]: r for r in runs}
    print("%s (reference %s, val BPC %.4f)" % (label, ref["name"], ref["val_bpc"]))
    print("| ra | reuse | seeds | val BPC mean | lowest | highest | spread | dBPC mean |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ps.reuse_kinds([r for r in runs if ps.is_moe(r)]):
        for ra, mean, lo, hi, names in points(runs, kind):
            bpc = [by_name[n]["val_bpc"] for n in names]
            print("| %.2f%% | %s | %d | %.4f | %.4f | %.4f | %.4f | %+.4f |"
                  % (100 * ra, kind, len(names), sum(bpc) / len(bpc), min(bpc), max(bpc), max(bpc) - min(bpc), mean))
    seeds = reference_seeds(runs, ref)
    if len(seeds) > 1:
        print("reference seeds: dBPC %+.4f to %+.4f" % (min(seeds), max(seeds)))
    print()


def main():
    p = argparse.ArgumentParser(description="BPC - BPC(Dense-1C) against ra for sweeps at several N (see the top).")
    p.add_argument("sweeps", nargs="+", help="sweep folders or results.csv files, one per scale")
    p.add_argument("--out", required=True, help="the PNG to write")
    a = p.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        die("matplotlib is needed (apt-get install python3-matplotlib): %s" % e, 1)

    scales = [load(s) for s in a.sweeps]
    scales.sort(key=lambda s: -s[1]["N"])      # largest N first, so that colours follow the size
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    all_ra, seeded = [], False
    for i, (runs, ref) in enumerate(scales):
        color = "C%d" % i
        label = "N = %s" % ("%.3g" % ref["N"]).replace("e+0", "e") if math.isfinite(ref["N"]) else ref["name"]
        print_table("%s, Dense-1C D/N %.1f" % (label, ref["D"] / ref["N"]), runs, ref)
        seeds = reference_seeds(runs, ref)
        if len(seeds) > 1:
            ax.axhspan(min(seeds), max(seeds), color=color, alpha=0.2, linewidth=0)
        kinds = ps.reuse_kinds([r for r in runs if ps.is_moe(r)])
        for j, kind in enumerate(kinds):
            pts = points(runs, kind)
            if not pts:
                continue
            all_ra += [q[0] for q in pts]
            x, y = [q[0] for q in pts], [q[1] for q in pts]
            marker = ps.style(kind, j)[1]
            if kind == "none":
                best = min(pts, key=lambda q: q[1])
                ax.plot(x, y, color=color, marker=marker, label="%s: no reuse (lowest mean: ra %.1f%%)"
                        % (label, 100 * best[0]))
            else:
                ax.plot(x, y, color=color, marker=marker, linestyle="", markerfacecolor="none", markersize=8,
                        markeredgewidth=1.5, label="%s: %s reuse" % (label, kind))
            multi = [q for q in pts if len(q[4]) > 1]
            if multi:
                seeded = True
                ax.errorbar([q[0] for q in multi], [q[1] for q in multi], fmt="none", ecolor=color, capsize=4,
                            yerr=[[q[1] - q[2] for q in multi], [q[3] - q[1] for q in multi]])
    ax.axhline(0.0, color="0.3", linestyle="--", linewidth=1, label="Dense-1C of each N (band: its seeds)")
    title = "BPC - BPC(Dense-1C) against activation rate\n(equal N and C within each scale"
    title += "; error bars: lowest to highest seed)" if seeded else ")"
    if all_ra:
        ax.set_xscale("log")
        ps.percent_axis(plt, ax.xaxis, min(all_ra), max(all_ra))
    else:
        ps.empty_note(ax, "no finished MoE runs")
    ax.set_xlabel("activation rate ra = Na / N")
    ax.set_ylabel("dBPC = val BPC - val BPC(Dense-1C)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, a.out)
    print("wrote " + a.out)


if __name__ == "__main__":
    main()
