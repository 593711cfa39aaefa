#!/usr/bin/env python3
"""Quill against llama.cpp on the same GGUF files, in alternating rounds, as ratios.

For each file and round: decode (tg) at each thread count and prompt processing (pp) at the
largest, each measured by `quill bench` and by llama.cpp's `llama-bench` one right after the
other, plus each tool's peak RSS for its decode run (wait4). The table shows medians over rounds
and the Quill/llama.cpp ratio as median [min, max] of the per-round ratios: the machine is shared,
so only ratios from one run mean anything. Needs ../shared/anchors/build.sh (llama-bench).

  python3 scripts/compare_gguf.py FILE.gguf [FILE.gguf ...] [--rounds 3] [--threads 1,2] [-n 32] [-p 128]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ANCHORS = os.environ.get("QUILL_ANCHORS", os.path.expanduser("~/.cache/quill-anchors"))


def run(cmd):
    """(stdout, peak RSS in MiB) of a command that must succeed; the RSS is GNU time's figure."""
    start = time.time()
    process = subprocess.run(["/usr/bin/time", "-f", "peak-rss-kib %M", *cmd], capture_output=True, text=True,
                             timeout=1800)
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}, {time.time() - start:.0f} s): {' '.join(cmd)}\n{process.stderr[-2000:]}")
    rss = [line for line in process.stderr.splitlines() if line.startswith("peak-rss-kib ")][-1]
    return process.stdout, int(rss.split()[1]) / 1024


def quill_bench(quill, path, p, n, threads):
    out, rss = run([quill, "bench", "-m", path, "-p", str(p), "-n", str(n), "-t", str(threads), "-r", "2",
                  "--parallel", "0", "--json"])
    report = json.loads(out)
    figures = {}
    for test in report["tests"]:
        # The first repetition is a warm-up (cold pages, idle threads), as llama-bench's untimed run.
        reps = test.get("repetitions") or [test["tokens_per_second_median"]]
        figures[test["test"][:2]] = statistics.median(reps[1:] if len(reps) > 1 else reps)
        if "bandwidth_share" in test:
            # Decode reads every weight once per token: its share of the bandwidth quill measured.
            figures["share of bandwidth"] = test["bandwidth_share"]
    # quill bench's own peak RSS, read before its bandwidth test (whose 512 MB buffer GNU time's
    # figure would include).
    return figures, report.get("peak_rss_bytes", rss * 2**20) / 2**20


def llama_bench(path, p, n, threads):
    out, rss = run([f"{ANCHORS}/llama.cpp/bin/llama-bench", "-m", path, "-p", str(p), "-n", str(n), "-t", str(threads),
                  "-r", "1", "-o", "json"])
    figures = {}
    for test in json.loads(out):
        figures["pp" if test["n_prompt"] > 0 else "tg"] = float(test["avg_ts"])
    return figures, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--quill", default=".build/release/quill")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-n", type=int, default=32, help="decoded tokens per measurement")
    ap.add_argument("-p", type=int, default=128, help="prompt tokens per measurement")
    ap.add_argument("--json", help="write every figure to this file")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    rows = {}  # (file, metric) -> {"quill": [...], "llama.cpp": [...], "ratio": [...]}
    for r in range(a.rounds):
        for path in a.files:
            name = os.path.basename(path)
            for t in threads:
                # Alternate which tool goes first, so neither always meets the warmer page cache.
                order = ["quill", "llama.cpp"] if r % 2 == 0 else ["llama.cpp", "quill"]
                got = {}
                for tool in order:
                    bench = (lambda: quill_bench(a.quill, path, a.p if t == max(threads) else 0, a.n, t)) if tool == "quill" \
                        else (lambda: llama_bench(path, a.p if t == max(threads) else 0, a.n, t))
                    got[tool], rss = bench()
                    got[tool] = dict(got[tool], rss=rss)
                for metric in got["quill"]:
                    key = (name, f"{metric} {t}t" if metric != "rss" else f"peak RSS MiB {t}t")
                    if metric not in got["llama.cpp"]:  # Quill's own figures
                        rows.setdefault(key, {"quill": []})["quill"].append(got["quill"][metric])
                        continue
                    # Lower is better for the peak RSS (MiB), higher for tok/s.
                    entry = rows.setdefault(key, {"quill": [], "llama.cpp": [], "ratio": []})
                    entry["quill"].append(got["quill"][metric])
                    entry["llama.cpp"].append(got["llama.cpp"][metric])
                    entry["ratio"].append(got["quill"][metric] / got["llama.cpp"][metric])
                print(f"round {r + 1} {name} {t}t: quill {got['quill']} llama.cpp {got['llama.cpp']}", file=sys.stderr)
    print("| file | test | Quill | llama.cpp | Quill/llama.cpp median [min, max] |")
    print("| --- | --- | --- | --- | --- |")
    for (name, metric), entry in rows.items():
        if "ratio" not in entry:
            print(f"| {name} | {metric} | {statistics.median(entry['quill']):.3f} | | |")
            continue
        ratio = entry["ratio"]
        print(f"| {name} | {metric} | {statistics.median(entry['quill']):.2f} | {statistics.median(entry['llama.cpp']):.2f} | "
              f"{statistics.median(ratio):.2f} [{min(ratio):.2f}, {max(ratio):.2f}] |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({f"{k[0]} {k[1]}": v for k, v in rows.items()}, f, indent=1)


if __name__ == "__main__":
    main()
