#!/usr/bin/env python3
"""Writes the seed corpus of the checkpoint fuzz target: tiny llama2.c checkpoints of each
version (Tests/Fuzz/corpus/checkpoint). Standard library only; deterministic.

The gguf target's model seed is the version 1 seed converted by llama2c_to_gguf.py:
    python scripts/llama2c_to_gguf.py Tests/Fuzz/corpus/checkpoint/v1-shared.bin none \
        Tests/Fuzz/corpus/gguf/tiny-llama.gguf
"""
import random
import struct
import sys
from pathlib import Path

DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, SEQ = 8, 16, 2, 2, 1, 16, 8
KV_DIM = DIM * KV_HEADS // HEADS
rng = random.Random(7)


def floats(n):
    return struct.pack(f"<{n}f", *[rng.uniform(-0.5, 0.5) for _ in range(n)])


def ones(n):
    return struct.pack(f"<{n}f", *([1.0] * n))


MATRICES = [("wq", DIM * DIM), ("wk", KV_DIM * DIM), ("wv", KV_DIM * DIM), ("wo", DIM * DIM),
            ("w1", HIDDEN * DIM), ("w2", DIM * HIDDEN), ("w3", HIDDEN * DIM)]
FIELDS = [DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB, SEQ]


def version0(shared):
    header = struct.pack("<7i", *FIELDS[:5], VOCAB if shared else -VOCAB, SEQ)
    body = floats(VOCAB * DIM) + ones(LAYERS * DIM)
    for name, n in MATRICES[:4]:
        body += floats(LAYERS * n)
    body += ones(LAYERS * DIM)
    for name, n in MATRICES[4:]:
        body += floats(LAYERS * n)
    body += ones(DIM) + bytes(2 * SEQ * (DIM // HEADS // 2) * 4)
    if not shared:
        body += floats(VOCAB * DIM)
    return header + body


def versioned_header(version, shared, group=None):
    header = struct.pack("<I8i", 0x616B3432, version, *FIELDS) + bytes([1 if shared else 0])
    if group:
        header += struct.pack("<i", group)
    return header + bytes(256 - len(header))


def version1(shared):
    body = ones(2 * LAYERS * DIM + DIM) + floats(VOCAB * DIM)
    for _, n in MATRICES:
        body += floats(LAYERS * n)
    if not shared:
        body += floats(VOCAB * DIM)
    return versioned_header(1, shared) + body


def version2(shared, group=4):
    counts = [VOCAB * DIM] + [LAYERS * n for _, n in MATRICES] + ([] if shared else [VOCAB * DIM])
    values = b"".join(bytes(rng.randrange(256) for _ in range(n)) for n in counts)
    scales = b"".join(struct.pack(f"<{n // group}f", *[rng.uniform(0, 0.01) for _ in range(n // group)]) for n in counts)
    return versioned_header(2, shared, group) + ones(2 * LAYERS * DIM + DIM) + values + scales


def main(folder):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seeds = {"v0-shared.bin": version0(True), "v0-classifier.bin": version0(False),
             "v1-shared.bin": version1(True), "v1-classifier.bin": version1(False),
             "v2-shared.bin": version2(True), "v2-classifier.bin": version2(False)}
    for name, data in seeds.items():
        (folder / name).write_bytes(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/Fuzz/corpus/checkpoint")
