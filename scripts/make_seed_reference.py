#!/usr/bin/env python3
"""Reference logits for the seeds' design choices that no public architecture combines (norms after
each residual sum, ReLU feed-forward blocks, sinusoidal or no positions, LayerNorm), computed by a
numpy forward pass written from the definitions below, not from Quill's code. Writes
Tests/QuillTests/Fixtures/seed-reference.json, which SeedReferenceTests.swift runs through Quill.

The definitions (the original Transformer's, with a decoder's causal mask):
- RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g;  LayerNorm(x) = (x - mean) / sqrt(var + eps) * g + b.
- pre-norm:  x = x + f(norm(x)) for each sublayer f (attention, then the feed-forward block);
  post-norm: x = norm(x + f(x)). Either way a final norm precedes the classifier.
- ReLU feed-forward: W_down relu(W_up x + b_up) + b_down (no gate). SwiGLU (for a post-norm model
  with a gated block): W_down (silu(W_gate x) * (W_up x)).
- sinusoidal positions: element 2i of position p's vector is sin(p / 10000^(2i/dim)), element 2i+1
  its cosine; added to the token's embedding. "none": nothing is added (the causal mask alone
  orders the tokens).
- attention: heads of `head` values; query head h reads key/value head h // (heads // kv_heads);
  scores q.k / sqrt(head); position p attends to positions max(0, p - W + 1)..p in a layer with
  window W, to 0..p without one; softmax; the heads' outputs concatenated, then W_o (+ b_o).
- logits = W_cls final_norm(x), W_cls the embedding when shared.

Weights are random (seeded), stored as little-endian float32 in base64 so the fixture stays small;
logits are computed in float64 at every position of a sequence longer than every window.
Usage: scripts/make_seed_reference.py [-o Tests/QuillTests/Fixtures/seed-reference.json]
"""

import argparse
import base64
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "Tests" / "QuillTests" / "Fixtures" / "seed-reference.json"

SHAPE = dict(dim=32, hidden_dim=40, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=48, seq_len=20, norm_eps=1e-5)
ALL_BIASES = ["q", "k", "v", "o", "up", "down"]

# The combinations: Quill's names for each choice (Architecture's raw values for the enums).
MODELS = {
    # The original Transformer's choices with RMSNorm; a window on the first layer only.
    "post-rms-relu-sinusoidal": dict(norm="rms", placement="post", feed_forward="relu", positions="sinusoidal",
                                     biases=[], windows=[6, None], shared_classifier=True),
    # ... with LayerNorm, a bias after every projection, the window on the second layer.
    "post-layernorm-relu-sinusoidal": dict(norm="layer", placement="post", feed_forward="relu", positions="sinusoidal",
                                           biases=ALL_BIASES, windows=[None, 7], shared_classifier=False),
    # LayerNorm before each sublayer with no positions at all, windows on both layers.
    "pre-layernorm-relu-none": dict(norm="layer", placement="pre", feed_forward="relu", positions="none",
                                    biases=["up", "down"], windows=[5, 5], shared_classifier=False),
    # Post-norm around a gated block, sinusoidal positions, full attention.
    "post-rms-swiglu-sinusoidal": dict(norm="rms", placement="post", feed_forward="swiglu", positions="sinusoidal",
                                       biases=["q", "k", "v"], windows=[None, None], shared_classifier=True),
}
TOKENS = [3, 17, 41, 0, 29, 8, 8, 35, 12, 47, 21, 5, 44, 30, 2, 19, 38, 11, 26, 14]


def make_weights(spec, rng):
    """{name: float32 array}, names as the fixture stores them (per layer: "layers.L.name")."""
    s = SHAPE
    d, hd, head = s["dim"], s["hidden_dim"], s["dim"] // s["n_heads"]
    q_dim, kv_dim = s["n_heads"] * head, s["n_kv_heads"] * head
    f32 = np.float32

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(f32)

    def gain():
        return (1 + 0.3 * rng.uniform(-1, 1, d)).astype(f32)

    def bias(n):
        return (0.2 * rng.uniform(-1, 1, n)).astype(f32)

    w = {"token_embedding": (0.5 * rng.standard_normal((s["vocab_size"], d))).astype(f32), "final_norm": gain()}
    if spec["norm"] == "layer":
        w["final_norm_bias"] = bias(d)
    if not spec["shared_classifier"]:
        w["classifier"] = matrix(s["vocab_size"], d)
    widths = {"q": q_dim, "k": kv_dim, "v": kv_dim, "o": d, "up": hd, "down": d}
    for l in range(s["n_layers"]):
        p = f"layers.{l}."
        w[p + "attention_norm"], w[p + "ffn_norm"] = gain(), gain()
        if spec["norm"] == "layer":
            w[p + "attention_norm_bias"], w[p + "ffn_norm_bias"] = bias(d), bias(d)
        w[p + "wq"], w[p + "wk"], w[p + "wv"], w[p + "wo"] = matrix(q_dim, d), matrix(kv_dim, d), matrix(kv_dim, d), matrix(d, q_dim)
        if spec["feed_forward"] == "swiglu":
            w[p + "w1"] = matrix(hd, d)
        w[p + "w3"], w[p + "w2"] = matrix(hd, d), matrix(d, hd)
        for b in spec["biases"]:
            w[p + b + "_bias"] = bias(widths[b])
    return w


def forward(spec, w, tokens):
    """Logits (len(tokens), vocab) in float64, every position from its whole prefix."""
    s = SHAPE
    d, eps = s["dim"], s["norm_eps"]
    heads, kv_heads = s["n_heads"], s["n_kv_heads"]
    head = d // heads
    W = {k: v.astype(np.float64) for k, v in w.items()}
    n = len(tokens)

    def norm(x, g, b):
        if spec["norm"] == "rms":
            return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * g + b

    def linear(x, name, bias_name=None):
        y = x @ W[name].T
        return y + W[bias_name] if bias_name in W else y

    x = W["token_embedding"][tokens]  # (n, dim)
    if spec["positions"] == "sinusoidal":
        i = np.arange(d // 2)
        angles = np.arange(n)[:, None] / 10000.0 ** (2 * i / d)  # (n, dim / 2)
        table = np.zeros((n, d))
        table[:, 0::2], table[:, 1::2] = np.sin(angles), np.cos(angles)
        x = x + table

    def attention(h, l):
        p = f"layers.{l}."
        q = linear(h, p + "wq", p + "q_bias").reshape(n, heads, head)
        k = linear(h, p + "wk", p + "k_bias").reshape(n, kv_heads, head)
        v = linear(h, p + "wv", p + "v_bias").reshape(n, kv_heads, head)
        window = spec["windows"][l]
        rows, cols = np.arange(n)[:, None], np.arange(n)[None, :]
        allowed = (cols <= rows) & ((cols > rows - window) if window else True)
        out = np.zeros((n, heads, head))
        for hh in range(heads):
            kv = hh // (heads // kv_heads)
            scores = q[:, hh] @ k[:, kv].T / np.sqrt(head)  # (n, n)
            scores = np.where(allowed, scores, -np.inf)
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            out[:, hh] = probs @ v[:, kv]
        return linear(out.reshape(n, heads * head), p + "wo", p + "o_bias")

    def feed_forward(h, l):
        p = f"layers.{l}."
        up = linear(h, p + "w3", p + "up_bias")
        if spec["feed_forward"] == "relu":
            hidden = np.maximum(up, 0)
        else:  # swiglu
            gate = linear(h, p + "w1")
            hidden = gate / (1 + np.exp(-gate)) * up
        return linear(hidden, p + "w2", p + "down_bias")

    for l in range(s["n_layers"]):
        p = f"layers.{l}."
        for f, g in [(attention, "attention_norm"), (feed_forward, "ffn_norm")]:
            gain, bias = W[p + g], W.get(p + g + "_bias")
            if spec["placement"] == "pre":
                x = x + f(norm(x, gain, bias), l)
            else:
                x = norm(x + f(x, l), gain, bias)
    x = norm(x, W["final_norm"], W.get("final_norm_bias"))
    classifier = W["token_embedding"] if spec["shared_classifier"] else W["classifier"]
    return x @ classifier.T


def encode(array):
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    args = parser.parse_args()
    rng = np.random.default_rng(20261124)
    models = {}
    for name, spec in MODELS.items():
        w = make_weights(spec, rng)
        logits = forward(spec, w, TOKENS)
        models[name] = dict(spec, weights={k: dict(shape=list(v.shape), float32_base64=encode(v)) for k, v in w.items()},
                            logits=[[float(f"{value:.9g}") for value in row] for row in logits])
    fixture = dict(generator="scripts/make_seed_reference.py", numpy=np.__version__, shape=SHAPE, tokens=TOKENS, models=models)
    args.output.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes, numpy {np.__version__})")


if __name__ == "__main__":
    main()
