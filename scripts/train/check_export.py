"""Independent check of models/tinystories.bin: a plain numpy Llama forward pass (no torch,
no code shared with the training scripts) reads the llama2.c version 1 file, reproduces the
fixture logits that torch computed (max abs difference must be <= 1e-4), and greedily
generates from "Once upon a time", which must end a story by emitting BOS."""
import json
import os
import struct
import sys

import numpy as np
import sentencepiece as spm

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.join(REPO, "models", "tinystories.bin")
TOKENIZER = os.path.join(REPO, "models", "tinystories.model")
FIXTURE = os.path.join(REPO, "Tests", "QuillTests", "Fixtures", "default-model-logits.json")
BOS = 1


def load(path):
    data = open(path, "rb").read()
    magic, version = struct.unpack_from("<Ii", data, 0)
    assert magic == 0x616B3432 and version == 1, "not a llama2.c version 1 checkpoint"
    dim, hidden, L, H, KV, vocab, seq_len = struct.unpack_from("<7i", data, 8)
    shared = data[36]
    assert all(b == 0 for b in data[37:256]), "header padding is not zero"
    c = dict(dim=dim, hidden=hidden, L=L, H=H, KV=KV, vocab=vocab, seq_len=seq_len, shared=shared)
    kv = dim * KV // H
    shapes = [("rms_att", (L, dim)), ("rms_ffn", (L, dim)), ("rms_final", (dim,)),
              ("emb", (vocab, dim)), ("wq", (L, dim, dim)), ("wk", (L, kv, dim)),
              ("wv", (L, kv, dim)), ("wo", (L, dim, dim)), ("w1", (L, hidden, dim)),
              ("w2", (L, dim, hidden)), ("w3", (L, hidden, dim))]
    if not shared:
        shapes.append(("wcls", (vocab, dim)))
    w, off = {}, 256
    for name, shape in shapes:
        n = int(np.prod(shape))
        w[name] = np.frombuffer(data, "<f4", n, off).reshape(shape).astype(np.float32)
        off += 4 * n
    assert off == len(data), f"{len(data) - off} bytes left over"
    w["wcls"] = w["emb"] if shared else w["wcls"]
    return c, w


class Runner:
    """Token-at-a-time forward pass with a KV cache, as an inference engine does it."""

    def __init__(self, c, w):
        self.c, self.w = c, w
        hs = c["dim"] // c["H"]
        self.hs = hs
        kv = c["dim"] * c["KV"] // c["H"]
        self.kcache = np.zeros((c["L"], c["seq_len"], kv), np.float32)
        self.vcache = np.zeros((c["L"], c["seq_len"], kv), np.float32)
        i = np.arange(hs // 2, dtype=np.float64)
        self.freq = 10000.0 ** (-2.0 * i / hs)

    @staticmethod
    def rmsnorm(x, weight):
        return (x / np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-5)).astype(np.float32) * weight

    def rope(self, v, pos):
        ang = pos * self.freq
        cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
        p = v.reshape(-1, self.hs // 2, 2)  # adjacent pairs within each head
        x0, x1 = p[..., 0], p[..., 1]
        return np.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).reshape(v.shape)

    def step(self, token, pos):
        c, w, hs = self.c, self.w, self.hs
        H, KV = c["H"], c["KV"]
        rep = H // KV
        x = w["emb"][token].copy()
        for l in range(c["L"]):
            h = self.rmsnorm(x, w["rms_att"][l])
            q = self.rope(w["wq"][l] @ h, pos)
            self.kcache[l, pos] = self.rope(w["wk"][l] @ h, pos)
            self.vcache[l, pos] = w["wv"][l] @ h
            out = np.zeros(c["dim"], np.float32)
            for head in range(H):
                kvh = head // rep
                qh = q[head * hs:(head + 1) * hs]
                keys = self.kcache[l, :pos + 1, kvh * hs:(kvh + 1) * hs]
                vals = self.vcache[l, :pos + 1, kvh * hs:(kvh + 1) * hs]
                s = keys @ qh / np.sqrt(hs)
                s = np.exp(s - s.max())
                out[head * hs:(head + 1) * hs] = (s / s.sum()) @ vals
            x = x + w["wo"][l] @ out
            h = self.rmsnorm(x, w["rms_ffn"][l])
            a, b = w["w1"][l] @ h, w["w3"][l] @ h
            x = x + w["w2"][l] @ (a / (1.0 + np.exp(-a)) * b)
        return w["wcls"] @ self.rmsnorm(x, w["rms_final"])


def main():
    # optional: check_export.py BIN TOKENIZER FIXTURE (defaults: the committed files)
    paths = sys.argv[1:4] if len(sys.argv) == 4 else (BIN, TOKENIZER, FIXTURE)
    bin_path, tokenizer_path, fixture_path = paths
    c, w = load(bin_path)
    print("config", c)
    fixture = json.load(open(fixture_path))
    expected = np.array(fixture["logits"], dtype=np.float32)
    runner = Runner(c, w)
    got = np.stack([runner.step(t, p) for p, t in enumerate(fixture["tokens"])])
    diff = float(np.abs(got - expected).max())
    print(f"fixture: {len(fixture['tokens'])} tokens, max |numpy - torch| = {diff:.3g}")
    ok = diff <= 1e-4

    sp = spm.SentencePieceProcessor(model_file=tokenizer_path)
    tokens = [BOS] + sp.encode("Once upon a time")
    runner = Runner(c, w)
    for pos in range(c["seq_len"]):
        logits = runner.step(tokens[pos], pos)
        if pos + 1 < len(tokens):
            continue
        nxt = int(np.argmax(logits))
        tokens.append(nxt)
        if nxt == BOS or len(tokens) >= c["seq_len"]:
            break
    ended = tokens[-1] == BOS
    print("greedy sample:")
    print(sp.decode(tokens[1:-1] if ended else tokens[1:]))
    print(f"[{len(tokens)} tokens, {'ended with BOS' if ended else 'did NOT emit BOS'}]")
    if not ok:
        print("FAIL: exported logits differ from the framework's", file=sys.stderr)
    if not ended:
        print("FAIL: greedy generation did not end the story with BOS", file=sys.stderr)
    sys.exit(0 if ok and ended else 1)


if __name__ == "__main__":
    main()
