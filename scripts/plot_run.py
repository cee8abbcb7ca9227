#!/usr/bin/python3
# Why: when an MoE underperforms, the first question is how its experts were used: whether the load is
# even, whether some experts are dead, where the capacity drops tokens. metrics.jsonl holds the numbers
# per log interval (moe_load, moe_max_load, moe_dropped, moe_dead; README "Reading the MoE metrics");
# this draws them for one run, so that a run can be judged without a notebook.
#
# Usage: scripts/plot_run.py RUN_DIR [--out OUTDIR]
#   reads RUN_DIR/metrics.jsonl (and RUN_DIR/summary.json or config.json for the MoE layers' blocks) and
#   writes OUTDIR/fig_load_heatmap.png (per MoE layer: expert x logged step, each expert's load relative
#   to an even share, log colour scale) and OUTDIR/fig_load_max_mean.png (per MoE layer over the steps:
#   max/mean load, dead experts, dropped share). OUTDIR defaults to RUN_DIR.
# Exit 2 with one line on stderr for bad input (no metrics.jsonl, a line that is not JSON, no MoE
# load metrics, rows of different lengths); 1 when matplotlib is missing.
import argparse
import json
import os
import sys


def die(msg, code=2):
    print("plot_run.py: " + msg, file=sys.stderr)
    sys.exit(code)


def read_load(run):
    """The logged lines with MoE load metrics: [(step, line)], checked for consistent shapes."""
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.isfile(path):
        die("%s: no such file (not a run folder?)" % path)
    rows = []
    with open(path) as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                o = json.loads(text)
            except ValueError:
                die("%s:%d: not JSON" % (path, n))
            if "moe_load" not in o:
                continue
            load = o["moe_load"]
            ok = (isinstance(o.get("step"), int) and isinstance(load, list) and load
                  and all(isinstance(r, list) and r and all(isinstance(x, (int, float)) for x in r) for r in load)
                  and all(isinstance(o.get(k), list) and len(o[k]) == len(load)
                          for k in ("moe_max_load", "moe_dead", "moe_dropped")))
            if not ok:
                die("%s:%d: malformed MoE load metrics (step, moe_load, moe_max_load, moe_dead, moe_dropped)"
                    % (path, n))
            if rows and (len(load) != len(rows[0][1]["moe_load"]) or
                         any(len(r) != len(rows[0][1]["moe_load"][0]) for r in load)):
                die("%s:%d: moe_load has another number of layers or experts than line 1 of the metrics" % (path, n))
            rows.append((o["step"], o))
    if not rows:
        die("%s: no MoE load metrics (a dense run, or written by a moetrain without them)" % path)
    return rows


def moe_blocks(run, n_layers):
    """The block index of each MoE layer, from summary.json (moe_layers), else config.json, else 0..n-1."""
    try:
        with open(os.path.join(run, "summary.json")) as f:
            layers = json.load(f).get("moe_layers")
        if isinstance(layers, list) and len(layers) == n_layers:
            return layers
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(run, "config.json")) as f:
            m = json.load(f)["model"]
        layout, L = m["moe"].get("layout", "1dense"), m["n_layers"]
        blocks = [l for l in range(L) if layout == "full" or (layout == "1dense" and l > 0)
                  or (layout == "interleave" and l % 2 == 1)]
        if len(blocks) == n_layers:
            return blocks
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return list(range(n_layers))


def plot_heatmap(plt, rows, blocks, path):
    from matplotlib.colors import LogNorm
    steps = [s for s, _ in rows]
    n_layers, E = len(rows[0][1]["moe_load"]), len(rows[0][1]["moe_load"][0])
    fig, axes = plt.subplots(n_layers, 1, figsize=(8, min(14.0, 1.4 + 0.16 * E * n_layers)), squeeze=False,
                             sharex=True, constrained_layout=True)
    floor = 1e-2  # experts below 1% of an even share (and dead ones) share the darkest colour
    im = None
    for l in range(n_layers):
        ax = axes[l][0]
        grid = [[max(o["moe_load"][l][e] * E, floor) for _, o in rows] for e in range(E)]
        edges = steps + [steps[-1] + (steps[-1] - steps[-2] if len(steps) > 1 else 1)]
        im = ax.pcolormesh(edges, list(range(E + 1)), grid, norm=LogNorm(vmin=floor, vmax=max(E / 2.0, 2.0)),
                           cmap="magma", shading="flat")
        ax.set_ylabel("MoE layer %d\n(block %d)\nexpert" % (l, blocks[l]), fontsize=8)
        ax.set_yticks([e + 0.5 for e in range(E)] if E <= 16 else [])
        ax.set_yticklabels([str(e) for e in range(E)] if E <= 16 else [], fontsize=6)
    axes[-1][0].set_xlabel("step (each column: the log interval ending there)")
    fig.colorbar(im, ax=[a[0] for a in axes], label="load / even share (1 = balanced)")
    fig.suptitle("Expert load per MoE layer over training")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_max_mean(plt, rows, blocks, path):
    steps = [s for s, _ in rows]
    n_layers = len(rows[0][1]["moe_load"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for l in range(n_layers):
        label = "MoE layer %d (block %d)" % (l, blocks[l])
        axes[0].plot(steps, [o["moe_max_load"][l] for _, o in rows], label=label)
        axes[1].plot(steps, [o["moe_dead"][l] for _, o in rows], label=label)
        axes[2].plot(steps, [100.0 * o["moe_dropped"][l] for _, o in rows], label=label)
    axes[0].axhline(1.0, color="gray", lw=0.8, ls=":")
    axes[0].set_ylabel("max / mean load (1 = balanced)")
    axes[1].set_ylabel("dead experts (no token in the interval)")
    axes[2].set_ylabel("choices dropped by the capacity (%)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description="Expert-load figures of one moetrain run folder.")
    ap.add_argument("run")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rows = read_load(a.run)
    blocks = moe_blocks(a.run, len(rows[0][1]["moe_load"]))
    out = a.out or a.run
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        die("matplotlib is needed (apt-get install python3-matplotlib): %s" % e, 1)
    os.makedirs(out, exist_ok=True)
    for name, draw in (("fig_load_heatmap.png", plot_heatmap), ("fig_load_max_mean.png", plot_max_mean)):
        path = os.path.join(out, name)
        tmp = path + ".tmp.png"
        draw(plt, rows, blocks, tmp)
        os.replace(tmp, path)
        print("wrote " + path)


if __name__ == "__main__":
    main()
