"""Reference numpy Llama forward passes and a llama2.c version 1 reader, for the tests only.

Two forwards written independently of each other and of scripts/export.py:
- `hf_forward` follows the Hugging Face layout: all positions at once, "rotate half" RoPE
  (pairs x[i], x[i + head_size/2]), grouped-query attention by repeating each KV head.
- `llama2c_forward` follows ../shared/docs/formats.md: one token at a time with a KV cache,
  RoPE on adjacent pairs (x[2i], x[2i+1]), query head h reading KV head h // (n_heads/n_kv_heads).
Both return logits [T, vocab] where row p is the output after feeding tokens[0..p]. Both take the
RoPE frequencies from the caller when it scales them (linear, Llama 3), so each test computes a
scaled RoPE its own way.

In float64 (the default) the products go to numpy's BLAS, whose rounding (~1e-16) is far below
every tolerance here. `hf_forward` in float32 accumulates every product and sum one term at a time
and rounds exponentials from float64, so it uses only correctly rounded IEEE operations and gives
the same bits on every machine, whatever BLAS numpy picks.
"""

import struct

import numpy as np

MAGIC = 0x616B3432
HEADER_BYTES = 256
ROPE_THETA = 10000.0
EPS = 1e-5


def matmul(a, b):
    """a [..., m, n] @ b [..., n, p]; in float32, summed over n in order (see the module doc)."""
    if a.dtype != np.float32:
        return a @ b
    acc = a[..., :, 0:1] * b[..., 0:1, :]
    for k in range(1, a.shape[-1]):
        acc = acc + a[..., :, k:k + 1] * b[..., k:k + 1, :]
    return acc


def sum_last(x):
    """Sum over the last axis, keeping it; in float32, in order."""
    if x.dtype != np.float32:
        return np.sum(x, axis=-1, keepdims=True)
    acc = x[..., 0:1]
    for k in range(1, x.shape[-1]):
        acc = acc + x[..., k:k + 1]
    return acc


def exp(x):
    """exp in x's dtype; float32 results are float64 ones rounded, not numpy's float32 SIMD exp."""
    return np.exp(x.astype(np.float64)).astype(x.dtype)


def rmsnorm(x, weight, eps=EPS):
    """Normalise over the last axis: x / sqrt(mean(x^2) + eps) * weight."""
    one = x.dtype.type
    return x / np.sqrt(sum_last(x * x) / one(x.shape[-1]) + one(eps)) * weight


def silu(x):
    return x / (x.dtype.type(1) + exp(-x))


def softmax(x):
    e = exp(x - np.max(x, axis=-1, keepdims=True))
    return e / sum_last(e)


# ---------------------------------------------------------------------------------------------
# Hugging Face layout


def hf_forward(cfg, w, tokens, dtype=np.float64, rope_theta=ROPE_THETA, eps=EPS, inv_freq=None):
    """cfg: the config.json dict; w: {HF tensor name: array}; returns logits [T, vocab].
    rope_theta and eps are passed by the caller, not read from cfg, so the reference does not
    share the converter's reading of config.json. inv_freq [hs/2], when given, replaces the
    unscaled frequencies rope_theta^(-2i/hs) (a scaled RoPE computed by the caller)."""
    dim, n_heads = cfg["hidden_size"], cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_heads)
    hs = dim // n_heads
    T = len(tokens)
    g = lambda name: np.asarray(w[name], dtype=dtype)

    # cos/sin [T, hs]: frequency i is used for both halves of the head (HF concatenates twice).
    if inv_freq is None:
        inv_freq = 1.0 / rope_theta ** (np.arange(0, hs, 2, dtype=np.float64) / hs)
    angles = np.arange(T, dtype=np.float64)[:, None] * inv_freq[None, :]
    angles = np.concatenate([angles, angles], axis=-1)
    cos, sin = np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)

    def rotate_half(x):  # [.., hs]: (x1, x2) -> (-x2, x1)
        x1, x2 = x[..., : hs // 2], x[..., hs // 2:]
        return np.concatenate([-x2, x1], axis=-1)

    def rope(x):  # x [heads, T, hs]
        return x * cos + rotate_half(x) * sin

    causal = np.triu(np.full((T, T), -np.inf, dtype=dtype), k=1)  # [T, T], -inf above diagonal
    x = g("model.embed_tokens.weight")[tokens]  # [T, dim]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, g(p + "input_layernorm.weight"), eps)
        q = matmul(h, g(p + "self_attn.q_proj.weight").T).reshape(T, n_heads, hs).transpose(1, 0, 2)
        k = matmul(h, g(p + "self_attn.k_proj.weight").T).reshape(T, n_kv, hs).transpose(1, 0, 2)
        v = matmul(h, g(p + "self_attn.v_proj.weight").T).reshape(T, n_kv, hs).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        k = np.repeat(k, n_heads // n_kv, axis=0)  # [n_heads, T, hs]: kv head j serves heads j*rep..
        v = np.repeat(v, n_heads // n_kv, axis=0)
        scores = matmul(q, k.transpose(0, 2, 1)) / dtype(np.sqrt(hs))  # dtype(): stay in dtype
        att = softmax(scores + causal)  # [n_heads, T, T]
        out = matmul(att, v).transpose(1, 0, 2).reshape(T, dim)
        x = x + matmul(out, g(p + "self_attn.o_proj.weight").T)
        h = rmsnorm(x, g(p + "post_attention_layernorm.weight"), eps)
        ff = silu(matmul(h, g(p + "mlp.gate_proj.weight").T)) * matmul(h, g(p + "mlp.up_proj.weight").T)
        x = x + matmul(ff, g(p + "mlp.down_proj.weight").T)
    x = rmsnorm(x, g("model.norm.weight"), eps)
    tied = cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in w
    return matmul(x, g("model.embed_tokens.weight" if tied else "lm_head.weight").T)


# ---------------------------------------------------------------------------------------------
# llama2.c version 1 layout


def expected_file_size(c):
    """Bytes a version 1 checkpoint with header fields `c` must have."""
    dim, hidden, L, vocab = c["dim"], c["hidden_dim"], c["n_layers"], c["vocab_size"]
    kv_dim = dim * c["n_kv_heads"] // c["n_heads"]
    per_layer = 2 * dim + 2 * dim * dim + 2 * kv_dim * dim + 3 * dim * hidden
    floats = L * per_layer + dim + vocab * dim + (0 if c["shared_classifier"] else vocab * dim)
    return HEADER_BYTES + 4 * floats


def read_llama2c(path):
    """Read a version 1 checkpoint into (header dict, {llama2.c name: float32 array})."""
    with open(path, "rb") as f:
        data = f.read()
    magic, version, *params, shared = struct.unpack_from("<Ii7iB", data, 0)
    assert magic == MAGIC, f"bad magic {magic:#x}"
    assert version == 1, f"version {version}"
    assert data[struct.calcsize("<Ii7iB"):HEADER_BYTES] == bytes(HEADER_BYTES - 37), "padding not zero"
    names = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
    c = dict(zip(names, params), shared_classifier=shared)
    assert len(data) == expected_file_size(c), f"{len(data)} bytes, header implies {expected_file_size(c)}"

    dim, hidden, L, vocab = c["dim"], c["hidden_dim"], c["n_layers"], c["vocab_size"]
    kv_dim = dim * c["n_kv_heads"] // c["n_heads"]
    shapes = [("rms_att", (L, dim)), ("rms_ffn", (L, dim)), ("rms_final", (dim,)),
              ("token_embedding", (vocab, dim)), ("wq", (L, dim, dim)), ("wk", (L, kv_dim, dim)),
              ("wv", (L, kv_dim, dim)), ("wo", (L, dim, dim)), ("w1", (L, hidden, dim)),
              ("w2", (L, dim, hidden)), ("w3", (L, hidden, dim))]
    if not shared:
        shapes.append(("wcls", (vocab, dim)))
    weights, offset = {}, HEADER_BYTES
    for name, shape in shapes:
        count = int(np.prod(shape))
        weights[name] = np.frombuffer(data, dtype="<f4", count=count, offset=offset).reshape(shape)
        offset += 4 * count
    return c, weights


def llama2c_forward(c, w, tokens, dtype=np.float64, rope_theta=ROPE_THETA, eps=EPS, pair_frequencies=None, project=None):
    """Token-by-token forward in the llama2.c layout; returns logits [T, vocab].
    pair_frequencies [hs/2], when given, replaces rope_theta^(-2i/hs) as pair i's angle per position.
    `project(W, v)` computes each weight product W @ v (default: exactly that), so a test can model
    how an engine rounds a product's input."""
    if project is None:
        project = lambda m, v: m @ v
    dim, L, n_heads, n_kv = c["dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"]
    hs = dim // n_heads
    kv_dim = n_kv * hs
    w = {k: np.asarray(v, dtype=dtype) for k, v in w.items()}
    wcls = w["token_embedding"] if c["shared_classifier"] else w["wcls"]
    key_cache = np.zeros((L, len(tokens), kv_dim), dtype=dtype)  # (layer, pos, kv_dim)
    value_cache = np.zeros((L, len(tokens), kv_dim), dtype=dtype)
    freq = rope_theta ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)  # [hs/2], one per pair
    if pair_frequencies is not None:
        freq = np.asarray(pair_frequencies, dtype=np.float64)

    def rope(vec, pos):  # rotate adjacent pairs (2i, 2i+1) within each head
        pairs = vec.reshape(-1, hs // 2, 2)
        cos, sin = np.cos(pos * freq).astype(dtype), np.sin(pos * freq).astype(dtype)
        a, b = pairs[..., 0], pairs[..., 1]
        return np.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(-1)

    logits = []
    for pos, token in enumerate(tokens):
        x = w["token_embedding"][token].copy()  # (dim)
        for l in range(L):
            h = rmsnorm(x, w["rms_att"][l], eps)
            q = rope(project(w["wq"][l], h), pos)  # (dim)
            key_cache[l, pos] = rope(project(w["wk"][l], h), pos)  # (kv_dim)
            value_cache[l, pos] = project(w["wv"][l], h)
            out = np.empty(dim, dtype=dtype)
            for head in range(n_heads):
                kv = head // (n_heads // n_kv)
                qh = q[head * hs:(head + 1) * hs]
                keys = key_cache[l, : pos + 1, kv * hs:(kv + 1) * hs]  # (pos+1, hs)
                att = softmax(keys @ qh / np.sqrt(hs))
                out[head * hs:(head + 1) * hs] = att @ value_cache[l, : pos + 1, kv * hs:(kv + 1) * hs]
            x += project(w["wo"][l], out)
            h = rmsnorm(x, w["rms_ffn"][l], eps)
            x += project(w["w2"][l], silu(project(w["w1"][l], h)) * project(w["w3"][l], h))
        logits.append(project(wcls, rmsnorm(x, w["rms_final"], eps)))
    return np.stack(logits)
