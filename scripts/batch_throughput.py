#!/usr/bin/env python3
"""Throughput of a large batch (issue #14): N seeded prompts through one `quill --batch
--output` and through scripts/spark_generate.py in Spark's local mode, alternated (plain, Spark,
plain, Spark, ...) so that both see the same load on a shared machine. Prints for each run the
wall time, prompts/s and generated tokens/s, the plain runs' resident memory sampled over the run
(to show it stays flat), and the Spark/plain wall-time ratio of each pair: median [min, max].

    python3 scripts/batch_throughput.py [--prompts 10000] [--rounds 2] [-n 32]
        [--quill .build/release/quill] [--model models/tinystories.bin] [--spark-python .venv-scale/bin/python]

Both runs use the same threads (-t, default: all cores) and --parallel: Spark gets local[cores]
with spark.task.cpus = cores, so it runs one quill at a time with all of them, and what it adds
is its own start, the partitioning and the pipes. Timings, not a test."""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2, help="plain/Spark pairs (default 2)")
    parser.add_argument("-n", type=int, default=32, help="tokens generated per prompt (default 32)")
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--partitions", type=int, default=4, help="Spark partitions (default 4)")
    parser.add_argument("--quill", default=str(REPO / ".build" / "release" / "quill"))
    parser.add_argument("--model", default=str(REPO / "models" / "tinystories.bin"))
    parser.add_argument("--spark-python", default=str(REPO / ".venv-scale" / "bin" / "python"))
    return parser.parse_args()


def write_prompts(path, count):
    """Seeded requests: a few story openings with a number, each with its own seed."""
    rng = random.Random(10000)
    openings = ["Once upon a time", "The little dog", "One day, Lily", "Tom and Sam went", "In a big forest"]
    with open(path, "w") as file:
        for i in range(count):
            file.write(json.dumps({"prompt": f"{rng.choice(openings)} {i % 97}", "seed": i}) + "\n")


def rss_sampler(pid, samples, stop):
    """Appends (seconds since start, VmRSS in MB) of `pid` every 0.2 s until `stop` is set."""
    start = time.monotonic()
    while not stop.wait(0.2):
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        samples.append((time.monotonic() - start, int(line.split()[1]) / 1024))
        except FileNotFoundError:
            return


def tokens_in(lines):
    return sum(json.loads(line).get("tokens_generated", 0) for line in lines)


def run_plain(options, prompts, work):
    out = work / "plain.jsonl"
    out.unlink(missing_ok=True)
    command = [options.quill, "-m", options.model, "--batch", str(prompts), "--output", str(out), "-n", str(options.n),
               "--parallel", str(options.parallel), "-t", str(options.threads), "--no-progress"]
    samples, stop = [], threading.Event()
    start = time.monotonic()
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    sampler = threading.Thread(target=rss_sampler, args=(process.pid, samples, stop))
    sampler.start()
    _, stderr = process.communicate()
    wall = time.monotonic() - start
    stop.set()
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"quill failed ({process.returncode}): {stderr.decode()[-2000:]}")
    lines = out.read_text().splitlines()
    return wall, len(lines), tokens_in(lines), samples


def run_spark(options, prompts, work):
    out = work / "spark"
    shutil.rmtree(out, ignore_errors=True)
    cores = options.threads
    command = [options.spark_python, str(REPO / "scripts" / "spark_generate.py"), str(prompts), str(out),
               "--master", f"local[{cores}]", "--conf", f"spark.task.cpus={cores}", "--conf", "spark.ui.enabled=false",
               "--conf", "spark.ui.showConsoleProgress=false", "--threads", str(cores),
               "--partitions", str(options.partitions), "--quill", options.quill,
               "--", "-m", options.model, "-n", str(options.n), "--parallel", str(options.parallel)]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True)
    wall = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"spark_generate failed ({result.returncode}): {result.stderr.decode()[-2000:]}")
    lines = [line for part in sorted(out.glob("part-*")) for line in part.read_text().splitlines()]
    return wall, len(lines), tokens_in(lines)


def spread(values):
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def main():
    options = arguments()
    work = Path(tempfile.mkdtemp(prefix="quill-throughput-"))
    prompts = work / "prompts.jsonl"
    write_prompts(prompts, options.prompts)
    print(f"{options.prompts} prompts, -n {options.n}, --parallel {options.parallel}, -t {options.threads}, "
          f"model {options.model}; load average before: {os.getloadavg()}")
    ratios, plain_rates = [], []
    for round in range(options.rounds):
        wall, count, tokens, samples = run_plain(options, prompts, work)
        plain_rates.append(count / wall)
        rss = [mb for _, mb in samples]
        deciles = [rss[int(len(rss) * q)] for q in (0.1, 0.25, 0.5, 0.75, 0.9)] if rss else []
        print(f"round {round + 1} plain: {wall:.1f} s, {count} results, {count / wall:.1f} prompts/s, "
              f"{tokens / wall:.0f} tokens/s; RSS MB at 10/25/50/75/90% of the run "
              f"{' '.join(f'{mb:.1f}' for mb in deciles)}, peak {max(rss, default=0):.1f} ({len(rss)} samples)")
        spark_wall, spark_count, spark_tokens = run_spark(options, prompts, work)
        print(f"round {round + 1} Spark: {spark_wall:.1f} s, {spark_count} results, "
              f"{spark_count / spark_wall:.1f} prompts/s, "
              f"{spark_tokens / spark_wall:.0f} tokens/s; load average {os.getloadavg()}")
        assert spark_count == count and spark_tokens == tokens, "Spark and plain runs generated different results"
        ratios.append(spark_wall / wall)
    print(f"plain prompts/s: {spread(plain_rates)}")
    print(f"Spark/plain wall time: {spread(ratios)} over {options.rounds} alternating pairs")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
