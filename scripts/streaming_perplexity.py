#!/usr/bin/env python3
"""The attention-sink paper's headline comparison (StreamingLLM, Xiao et al. 2023, figure 3) on
Quill's models: perplexity of one long stream of held-out stories read with a small KV cache,
three ways, each with `quill perplexity`:

  dense    windows of the cache's length recomputed every `stride` tokens (--stride; the paper's
           "sliding window with re-computation"): every token sees between cache − stride and
           cache − 1 tokens before it, all at their true positions
  rolling  one rolling cache without sinks (--stream --keep 0): when full, the oldest half goes
  sinks    the same with the first 4 tokens kept (--stream --keep 4)

The stream is the held-out part of the corpus exactly as scripts/train/common.py splits it (the
last 5% of stories in file order), each story encoded as [BOS] + pieces, one after another, with a
closing BOS (the tokens scripts/train/evaluate.py scores, here as one sequence). Writes a JSON
table with, per run, the mean NLL of every 500 scored tokens (for scripts/plot_streaming.py).

Needs numpy and sentencepiece; run from anywhere:
    python3 scripts/streaming_perplexity.py [--quill .build/release/quill] [--out docs/streaming-perplexity.json]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import sentencepiece as spm

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(REPO, "scripts", "train"))
from corpus import CORPUS, read_stories, split_stories  # noqa: E402  (the training split; no torch)

BOS = 1
MODELS = [
    ("tinystories", os.path.join(REPO, "models", "tinystories.bin"), os.path.join(REPO, "models", "tinystories.model")),
    ("stories260K", os.path.join(REPO, "..", "shared", "models", "stories260K.bin"),
     os.path.join(REPO, "..", "shared", "models", "tok512.model")),
]
BIN = 500  # scored tokens per point of the curves


def held_out_stories(path=CORPUS):
    _, held = split_stories(read_stories(path))
    evaluation = os.path.join(REPO, "models", "evaluation.json")
    if os.path.exists(evaluation):
        counts = {entry["stories"] for entry in json.load(open(evaluation)).values()}
        assert counts == {len(held)}, f"{len(held)} held-out stories, models/evaluation.json scored {counts}"
    return held


def run_quill(quill, model, ids_file, cache, mode, stride, threads):
    arguments = [quill, "perplexity", "-m", model, "--ids-file", ids_file, "-c", str(cache), "--json", "--per-token",
                 "-t", str(threads)]
    if mode == "dense":
        arguments += ["--stride", str(stride)]
    else:
        arguments += ["--stream", "--keep", "0" if mode == "rolling" else "4"]
    result = subprocess.run(arguments, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(arguments)} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quill", default=os.path.join(REPO, ".build", "release", "quill"))
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "streaming-perplexity.json"))
    parser.add_argument("--caches", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--stride-divisor", type=int, default=8, help="dense windows advance by cache / this (default 8)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    stories = held_out_stories()
    text_bytes = sum(len(s.encode("utf-8")) for s in stories)
    table = {"corpus": os.path.relpath(os.path.realpath(CORPUS), REPO), "held_out_stories": len(stories),
             "utf8_bytes": text_bytes, "bin_tokens": BIN, "runs": []}
    for name, model, tokenizer in MODELS:
        sp = spm.SentencePieceProcessor(model_file=tokenizer)
        ids = []
        for story in stories:
            ids += [BOS] + sp.encode(story)
        ids.append(BOS)
        with tempfile.NamedTemporaryFile("w", suffix=".ids", delete=False) as f:
            f.write(" ".join(map(str, ids)))
            ids_file = f.name
        try:
            for cache in args.caches:
                stride = max(1, cache // args.stride_divisor)
                for mode in ("dense", "rolling", "sinks"):
                    report = run_quill(args.quill, model, ids_file, cache, mode, stride, args.threads)
                    nll = -np.array([t["logprob"] for t in report["per_token"]])
                    bins = [float(nll[i:i + BIN].mean()) for i in range(0, len(nll) - BIN + 1, BIN)]
                    row = {"model": name, "cache": cache, "method": mode,
                           "stride": stride if mode == "dense" else None, "keep": {"dense": None, "rolling": 0, "sinks": 4}[mode],
                           "tokens": report["tokens"], "scored": report["scored"],
                           "nll_mean": round(float(nll.mean()), 6), "perplexity": round(float(np.exp(nll.mean())), 4),
                           "bits_per_byte": round(float(nll.sum() / math.log(2) / text_bytes), 4),
                           "binned_nll": [round(b, 5) for b in bins]}
                    table["runs"].append(row)
                    print(f"{name:12s} cache {cache:4d} {mode:8s} perplexity {row['perplexity']:8.3f} "
                          f"({row['scored']} tokens)", file=sys.stderr)
        finally:
            os.unlink(ids_file)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(table, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
