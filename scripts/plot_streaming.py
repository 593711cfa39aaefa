#!/usr/bin/env python3
"""Plots scripts/streaming_perplexity.py's table, one row per model: left, the perplexity of each
method at each cache size (bars); right, how much worse than the dense windows each rolling cache
predicts along the stream (mean NLL difference per 2,500 tokens). Writes a small PNG (matplotlib,
Agg backend).

    python3 scripts/plot_streaming.py [--table docs/streaming-perplexity.json] [--out docs/streaming-perplexity.png]
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
LABELS = {"dense": "dense windows, recomputed (--stride)", "rolling": "rolling cache, no sinks (--keep 0)",
          "sinks": "rolling cache, 4 sinks (--keep 4)"}
STYLES = {"dense": ("#888888", "-"), "rolling": ("#d62728", "--"), "sinks": ("#1f77b4", "-")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default=os.path.join(REPO, "docs", "streaming-perplexity.json"))
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "streaming-perplexity.png"))
    args = parser.parse_args()
    table = json.load(open(args.table))
    runs = table["runs"]
    models = list(dict.fromkeys(r["model"] for r in runs))
    caches = list(dict.fromkeys(r["cache"] for r in runs))
    methods = list(LABELS)
    group = 5  # bins of the table averaged into one point
    figure, axes = plt.subplots(len(models), 2, figsize=(8, 2.4 * len(models)), squeeze=False, dpi=80,
                                gridspec_kw={"width_ratios": [1, 2]})
    for i, model in enumerate(models):
        bars, curves = axes[i]
        found = {(r["cache"], r["method"]): r for r in runs if r["model"] == model}
        width = 0.8 / len(methods)
        for m, method in enumerate(methods):
            colour, _ = STYLES[method]
            xs = [c + (m - 1) * width for c in range(len(caches))]
            values = [found[(cache, method)]["perplexity"] for cache in caches]
            bars.bar(xs, values, width, color=colour, label=LABELS[method])
            for x, v in zip(xs, values):
                bars.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=5.5)
        bars.set_xticks(range(len(caches)), [f"cache {c}" for c in caches], fontsize=7)
        low = min(r["perplexity"] for r in found.values())
        bars.set_ylim(low * 0.9, max(r["perplexity"] for r in found.values()) * 1.12)
        bars.set_title(f"{model}: perplexity of the held-out stream", fontsize=8)
        bars.tick_params(labelsize=7)
        for c, cache in enumerate(caches):
            dense = found[(cache, "dense")]["binned_nll"]
            for method in methods[1:]:
                nll = found[(cache, method)]["binned_nll"]
                diff = [sum(nll[k:k + group]) / group - sum(dense[k:k + group]) / group
                        for k in range(0, len(nll) - group + 1, group)]
                x = [(k + group) * table["bin_tokens"] / 1000 for k in range(0, len(nll) - group + 1, group)]
                colour, _ = STYLES[method]
                curves.plot(x, diff, "-" if cache == caches[-1] else ":", color=colour, linewidth=1,
                            label=f"{LABELS[method]}, cache {cache}")
        curves.axhline(0, color="#444444", linewidth=0.6)
        curves.set_title(f"{model}: NLL minus the dense windows' (per {group * table['bin_tokens']} tokens)", fontsize=8)
        curves.set_xlabel("tokens of the stream (thousands)", fontsize=7)
        curves.tick_params(labelsize=7)
        curves.legend(fontsize=5.5, loc="upper right")
    axes[0][0].legend(fontsize=5.5, loc="upper left")
    figure.tight_layout()
    figure.savefig(args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
