#!/usr/bin/env python3
"""Write a random-weight llama2.c version 1 (float32) checkpoint of any shape.

Useful for benchmarks and tests that need a model of a real size but not real weights:

    python3 scripts/make_random_checkpoint.py --shape 110m -o /tmp/random110m.bin
    python3 scripts/make_random_checkpoint.py --dim 64 --hidden-dim 172 --layers 2 --heads 8 \\
        --kv-heads 4 --vocab 512 --seq-len 128 --untied -o tiny.bin

The --shape presets match the llama2.c TinyStories models (vocab 32000); explicit flags override
a preset's values. Matrices are N(0, 0.02) (like GPT-2/Llama initialisation, so activations stay
finite through every layer) and norm weights are 1. The file is generated and written in chunks,
so even a large shape never sits in memory; the same --seed always gives the same bytes.
"""

import argparse
import struct
import sys

import numpy as np

PROG = "make_random_checkpoint.py"
MAGIC = 0x616B3432  # "ak42"
HEADER_BYTES = 256
CHUNK_VALUES = 1 << 22  # 16 MiB of float32 per write
WEIGHT_STD = 0.02

PRESETS = {  # llama2.c TinyStories shapes
    "15m": dict(dim=288, hidden_dim=768, layers=6, heads=6, kv_heads=6, vocab=32000, seq_len=256),
    "42m": dict(dim=512, hidden_dim=1376, layers=8, heads=8, kv_heads=8, vocab=32000, seq_len=1024),
    "110m": dict(dim=768, hidden_dim=2048, layers=12, heads=12, kv_heads=12, vocab=32000, seq_len=1024),
}
SHAPE_FIELDS = ("dim", "hidden_dim", "layers", "heads", "kv_heads", "vocab", "seq_len")


def tensor_layout(s, untied):
    """The version 1 arrays in file order: (name, value count, is_norm)."""
    dim, hidden, L = s["dim"], s["hidden_dim"], s["layers"]
    kv_dim = dim * s["kv_heads"] // s["heads"]
    layout = [
        ("rms_att", L * dim, True),
        ("rms_ffn", L * dim, True),
        ("rms_final", dim, True),
        ("token_embedding", s["vocab"] * dim, False),
        ("wq", L * dim * dim, False),
        ("wk", L * kv_dim * dim, False),
        ("wv", L * kv_dim * dim, False),
        ("wo", L * dim * dim, False),
        ("w1", L * hidden * dim, False),
        ("w2", L * dim * hidden, False),
        ("w3", L * hidden * dim, False),
    ]
    if untied:
        layout.append(("wcls", s["vocab"] * dim, False))
    return layout


def write_checkpoint(path, s, untied, seed):
    """Write the checkpoint; return (parameter count, bytes written)."""
    rng = np.random.default_rng(seed)
    header = struct.pack("<Ii7iB", MAGIC, 1, s["dim"], s["hidden_dim"], s["layers"], s["heads"],
                         s["kv_heads"], s["vocab"], s["seq_len"], 0 if untied else 1)
    params = 0
    with open(path, "wb") as f:
        f.write(header.ljust(HEADER_BYTES, b"\0"))
        for _, count, is_norm in tensor_layout(s, untied):
            params += count
            for start in range(0, count, CHUNK_VALUES):
                n = min(CHUNK_VALUES, count - start)
                if is_norm:
                    chunk = np.ones(n, dtype="<f4")
                else:
                    chunk = rng.standard_normal(n, dtype=np.float32)
                    chunk *= WEIGHT_STD
                chunk.astype("<f4", copy=False).tofile(f)
    return params, HEADER_BYTES + 4 * params


def parse_shape(argv):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(PRESETS), help="llama2.c TinyStories preset")
    parser.add_argument("--dim", type=int, help="model width")
    parser.add_argument("--hidden-dim", type=int, help="feed-forward width")
    parser.add_argument("--layers", type=int, help="number of layers")
    parser.add_argument("--heads", type=int, help="query heads")
    parser.add_argument("--kv-heads", type=int, help="key/value heads (default: --heads)")
    parser.add_argument("--vocab", type=int, help="vocabulary size")
    parser.add_argument("--seq-len", type=int, help="maximum sequence length")
    parser.add_argument("--untied", action="store_true",
                        help="write a separate classifier wcls (default: shared with the embedding)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output .bin path")
    args = parser.parse_args(argv)

    s = dict(PRESETS[args.shape]) if args.shape else {}
    for field in SHAPE_FIELDS:
        if getattr(args, field) is not None:
            s[field] = getattr(args, field)
    if "kv_heads" not in s and "heads" in s:
        s["kv_heads"] = s["heads"]
    missing = ["--" + f.replace("_", "-") for f in SHAPE_FIELDS if f not in s]
    if missing:
        parser.error(f"give --shape or all of: {', '.join(missing)}")
    for field in SHAPE_FIELDS:
        if s[field] <= 0:
            parser.error(f"--{field.replace('_', '-')} must be positive, got {s[field]}")
    if s["dim"] % s["heads"] or (s["dim"] // s["heads"]) % 2:
        parser.error(f"--dim {s['dim']} must be --heads {s['heads']} times an even head size")
    if s["heads"] % s["kv_heads"]:
        parser.error(f"--heads {s['heads']} must be a multiple of --kv-heads {s['kv_heads']}")
    return s, args


def main(argv=None):
    s, args = parse_shape(argv)
    params, size = write_checkpoint(args.output, s, args.untied, args.seed)
    shape = " ".join(f"{k}={v}" for k, v in s.items())
    print(f"{PROG}: {shape} shared_classifier={0 if args.untied else 1} seed={args.seed}: "
          f"{params:,} parameters, wrote {args.output} ({size:,} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
