"""`quill perplexity --stream` against a numpy rolling KV cache with attention sinks.

The reference is written here from the math, not from Quill's code: a llama2.c model (read
with llama_reference.read_llama2c) fed one token at a time into a per-layer list of rotated keys
and values. When the list holds `capacity` entries and another token comes, the first `keep`
entries stay, the next (capacity - keep) // 2 go, and every later entry moves down by that many
positions: its key, rotated for position p, is turned by the rotation of angle -d·freq (pairs
(2i, 2i+1)), so it becomes the key rotated for p - d. New tokens take the next position in the
list. That is StreamingLLM's "positions within the cache" with llama.cpp's discard rule.

The checkpoint is a random GQA model from scripts/make_random_checkpoint.py whose query and key
projections the test scales up, so attention is sharp and depends on positions: a reference
that skips the re-rotation (or keeps no sinks) then differs by far more than the tolerance,
which shows the comparison can fail.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llama_reference import HEADER_BYTES, read_llama2c

ROOT = Path(__file__).resolve().parents[2]
QUILL = os.environ.get("QUILL_BIN", str(ROOT / ".build" / "debug" / "quill"))
SHAPE = dict(dim=64, hidden=96, layers=2, heads=4, kv_heads=2, vocab=48, seq_len=32)
CAPACITY = 24
TOKENS = 110  # with capacity 24, keep 4: a shift every 10 tokens after the first 24 → 8 shifts
# Quill computes in float32; a logprob of this model is a sum of a few hundred float32 products
# of values of order 1, whose rounding (~1e-7 relative each) stays below 1e-5 in total.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "gqa.bin"
    s = SHAPE
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_random_checkpoint.py"), "--dim", str(s["dim"]),
                    "--hidden-dim", str(s["hidden"]), "--layers", str(s["layers"]), "--heads", str(s["heads"]),
                    "--kv-heads", str(s["kv_heads"]), "--vocab", str(s["vocab"]), "--seq-len", str(s["seq_len"]),
                    "--seed", "7", "-o", str(path)], check=True, capture_output=True, timeout=60)
    header, w = read_llama2c(path)
    # Sharpen attention: wq and wk × 12 (std 0.24), rewritten in place at their offsets.
    data = bytearray(path.read_bytes())
    offset = HEADER_BYTES
    for name in ("rms_att", "rms_ffn", "rms_final", "token_embedding", "wq", "wk"):
        array = w[name]
        if name in ("wq", "wk"):
            data[offset:offset + array.nbytes] = (array * np.float32(12)).astype("<f4").tobytes()
        offset += array.nbytes
    path.write_bytes(bytes(data))
    return path


def rotate(x, angle_positions, freq):
    """x [..., hs] with pairs (2i, 2i+1) turned by angle_positions · freq[i] (may be negative)."""
    a = angle_positions * freq
    c, s = np.cos(a), np.sin(a)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def streaming_logprobs(c, w, tokens, capacity, keep, rerotate=True):
    """log p(tokens[i+1] | the rolling cache after tokens[..i]) for every i, in float64."""
    w = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    dim, L, n_heads, n_kv = c["dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"]
    hs = dim // n_heads
    freq = 10000.0 ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)  # [hs/2]
    keys = [[] for _ in range(L)]    # per layer: list of [n_kv, hs], position = index in the list
    values = [[] for _ in range(L)]

    def rms(x, g):
        return x / np.sqrt(np.mean(x * x) + 1e-5) * g

    result = []
    for i in range(len(tokens) - 1):
        if len(keys[0]) == capacity:
            d = (capacity - keep) // 2
            for l in range(L):
                moved = [rotate(k, -d if rerotate else 0, freq) for k in keys[l][keep + d:]]
                keys[l] = keys[l][:keep] + moved
                values[l] = values[l][:keep] + values[l][keep + d:]
        pos = len(keys[0])
        x = w["token_embedding"][tokens[i]].copy()
        for l in range(L):
            h = rms(x, w["rms_att"][l])
            q = rotate((w["wq"][l] @ h).reshape(n_heads, hs), pos, freq)
            keys[l].append(rotate((w["wk"][l] @ h).reshape(n_kv, hs), pos, freq))
            values[l].append((w["wv"][l] @ h).reshape(n_kv, hs))
            K, V = np.stack(keys[l]), np.stack(values[l])  # [T, n_kv, hs]
            out = np.empty((n_heads, hs))
            for head in range(n_heads):
                kv = head // (n_heads // n_kv)
                scores = K[:, kv, :] @ q[head] / np.sqrt(hs)
                p = np.exp(scores - scores.max())
                out[head] = (p / p.sum()) @ V[:, kv, :]
            x = x + w["wo"][l] @ out.reshape(dim)
            h = rms(x, w["rms_ffn"][l])
            gate = w["w1"][l] @ h
            x = x + w["w2"][l] @ (gate / (1 + np.exp(-gate)) * (w["w3"][l] @ h))
        logits = w["token_embedding"] @ rms(x, w["rms_final"])
        top = logits.max()
        result.append(logits[tokens[i + 1]] - top - np.log(np.sum(np.exp(logits - top))))
    return np.array(result)


def quill_stream(checkpoint, tokens, capacity, keep, batch=64):
    out = subprocess.run([QUILL, "perplexity", "-m", str(checkpoint), "--ids", ",".join(map(str, tokens)), "--stream",
                          "-c", str(capacity), "--keep", str(keep), "--json", "--per-token", "-t", "1", "-b", str(batch)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [t["position"] for t in report["per_token"]] == list(range(1, len(tokens)))
    return np.array([t["logprob"] for t in report["per_token"]])


def tokens_for(seed):
    return np.random.default_rng(seed).integers(1, SHAPE["vocab"], TOKENS).tolist()


@pytest.mark.parametrize("keep", [0, 1, 4])
def test_stream_matches_numpy_rolling_cache(checkpoint, keep):
    header, w = read_llama2c(checkpoint)
    assert header["n_kv_heads"] < header["n_heads"]  # grouped-query attention
    tokens = tokens_for(keep)
    shifts = 0
    filled = 0
    for _ in tokens[:-1]:
        if filled == CAPACITY:
            filled -= (CAPACITY - keep) // 2
            shifts += 1
        filled += 1
    assert shifts >= 3
    expected = streaming_logprobs(header, w, tokens, CAPACITY, keep)
    # Prefill blocks of 64 rows and of 5 (blocks that straddle nothing but cut the runs
    # between shifts differently) must both agree.
    for batch in (64, 5):
        got = quill_stream(checkpoint, tokens, CAPACITY, keep, batch=batch)
        assert np.max(np.abs(got - expected)) < TOLERANCE, (batch, np.max(np.abs(got - expected)))


def test_reference_detects_a_missing_rerotation(checkpoint):
    # The comparison has power: without turning the moved keys back the logprobs after the first
    # shift are far off (and before it they are the same).
    header, w = read_llama2c(checkpoint)
    tokens = tokens_for(4)
    right = streaming_logprobs(header, w, tokens, CAPACITY, 4)
    wrong = streaming_logprobs(header, w, tokens, CAPACITY, 4, rerotate=False)
    assert np.max(np.abs(right[:CAPACITY] - wrong[:CAPACITY])) == 0
    assert np.max(np.abs(right - wrong)) > 100 * TOLERANCE


def test_sinks_change_the_result(checkpoint):
    header, w = read_llama2c(checkpoint)
    tokens = tokens_for(4)
    with_sinks = quill_stream(checkpoint, tokens, CAPACITY, 4)
    without = quill_stream(checkpoint, tokens, CAPACITY, 0)
    assert np.max(np.abs(with_sinks - without)) > 100 * TOLERANCE
