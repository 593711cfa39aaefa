"""Shared pieces of the default-model pipeline: corpus split, the Llama module
(llama2.c architecture), llama2.c checkpoint reading/writing, and held-out scoring.

Nothing here downloads anything; every path is relative to the repository root.
"""
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
from corpus import CORPUS, HELDOUT_FRACTION, SEPARATOR, read_stories, split_stories  # noqa: E402,F401  (re-exported)
BOS = 1
MAGIC = 0x616B3432


# ---------------------------------------------------------------- data

# ---------------------------------------------------------------- model

class Config:
    def __init__(self, dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len,
                 shared_classifier=True, dropout=0.0):
        self.dim, self.hidden_dim, self.n_layers = dim, hidden_dim, n_layers
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.shared_classifier = shared_classifier
        self.dropout = dropout

    @property
    def head_size(self):
        return self.dim // self.n_heads

    @property
    def kv_dim(self):
        return self.dim * self.n_kv_heads // self.n_heads

    def as_dict(self):
        return dict(dim=self.dim, hidden_dim=self.hidden_dim, n_layers=self.n_layers,
                    n_heads=self.n_heads, n_kv_heads=self.n_kv_heads,
                    vocab_size=self.vocab_size, seq_len=self.seq_len,
                    shared_classifier=self.shared_classifier)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(head_size, seq_len):
    # angle(pos, i) = pos * 10000^(-2i/head_size), i = pair index within a head
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_size, 2, dtype=torch.float64) / head_size))
    ang = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv)
    return torch.cos(ang).float(), torch.sin(ang).float()


def apply_rope(x, cos, sin, positions=None):
    # x: [B, T, H, hs]; rotates adjacent pairs (x[2i], x[2i+1]) at angle(position of each token):
    # 0..T-1, or positions [B, T] when each row holds several stories that start at 0
    B, T, H, hs = x.shape
    xp = x.reshape(B, T, H, hs // 2, 2)
    x0, x1 = xp[..., 0], xp[..., 1]
    if positions is None:
        c = cos[:T].view(1, T, 1, hs // 2)
        s = sin[:T].view(1, T, 1, hs // 2)
    else:
        c = cos[positions].view(B, T, 1, hs // 2)
        s = sin[positions].view(B, T, 1, hs // 2)
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).reshape(B, T, H, hs)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.attention_norm = RMSNorm(cfg.dim)
        self.wq = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.kv_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.kv_dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.ffn_norm = RMSNorm(cfg.dim)
        self.w1 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.w2 = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)

    def forward(self, x, cos, sin, positions=None, mask=None):
        cfg = self.cfg
        B, T, _ = x.shape
        h = self.attention_norm(x)
        q = self.wq(h).view(B, T, cfg.n_heads, cfg.head_size)
        k = self.wk(h).view(B, T, cfg.n_kv_heads, cfg.head_size)
        v = self.wv(h).view(B, T, cfg.n_kv_heads, cfg.head_size)
        q, k = apply_rope(q, cos, sin, positions), apply_rope(k, cos, sin, positions)
        rep = cfg.n_heads // cfg.n_kv_heads
        if rep > 1:  # query head h reads kv head h // rep
            k = k.repeat_interleave(rep, dim=2)
            v = v.repeat_interleave(rep, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        p = cfg.dropout if self.training else 0.0
        # mask [B, 1, T, T] (True = may attend) replaces the causal mask when given
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=p,
                                           scale=1.0 / math.sqrt(cfg.head_size))
        a = a.transpose(1, 2).reshape(B, T, cfg.dim)
        x = x + F.dropout(self.wo(a), p, self.training)
        h = self.ffn_norm(x)
        x = x + F.dropout(self.w2(F.silu(self.w1(h)) * self.w3(h)), p, self.training)
        return x


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.shared_classifier:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(cfg.head_size, cfg.seq_len)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def init_weights(self, generator):
        std = 0.02
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                continue
            s = std
            if name.endswith("wo.weight") or name.endswith("w2.weight"):
                s = std / math.sqrt(2 * self.cfg.n_layers)  # GPT-2 style residual scaling
            with torch.no_grad():
                p.normal_(0.0, s, generator=generator)

    def forward(self, idx, positions=None, mask=None):
        x = self.tok_embeddings(idx)
        x = F.dropout(x, self.cfg.dropout, self.training)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, positions, mask)
        return self.output(self.norm(x))

    def n_params(self):
        return sum(p.numel() for p in self.parameters())


def story_positions_and_mask(idx):
    """For rows that hold several stories, each starting with BOS: every token's position within
    its own story [B, T], and the attention mask [B, 1, T, T] that lets a token see only the
    earlier tokens of its story. A story is then trained exactly as it is generated and scored
    (from BOS at position 0, with nothing before it), however many stories share a window."""
    B, T = idx.shape
    story = torch.cumsum((idx == BOS).long(), dim=1)  # [B, T]: which story of the row
    index = torch.arange(T).expand(B, T)
    start = torch.where(idx == BOS, index, torch.zeros_like(index))
    positions = torch.cummax(start, dim=1).values
    positions = index - positions
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    mask = (story[:, :, None] == story[:, None, :]) & causal
    return positions, mask[:, None]


# ---------------------------------------------------------------- checkpoints

def _tensor_order(model):
    """(name, tensor) in llama2.c version 1 order."""
    L = model.layers
    out = [("rms_att", torch.stack([l.attention_norm.weight for l in L])),
           ("rms_ffn", torch.stack([l.ffn_norm.weight for l in L])),
           ("rms_final", model.norm.weight),
           ("token_embedding", model.tok_embeddings.weight)]
    for name in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
        out.append((name, torch.stack([getattr(l, name).weight for l in L])))
    if not model.cfg.shared_classifier:
        out.append(("wcls", model.output.weight))
    return out


def export_v1(model, path):
    cfg = model.cfg
    header = struct.pack("<Ii7iB", MAGIC, 1, cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads,
                         cfg.n_kv_heads, cfg.vocab_size, cfg.seq_len, 1 if cfg.shared_classifier else 0)
    header += b"\0" * (256 - len(header))
    with open(path, "wb") as f:
        f.write(header)
        for _, t in _tensor_order(model):
            f.write(t.detach().to(torch.float32).cpu().numpy().astype("<f4").tobytes())


def read_checkpoint(path):
    """Reads a llama2.c version 0 or version 1 float32 checkpoint into
    (Config, dict of numpy float32 arrays). Independent of torch."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack_from("<I", data, 0)[0]
    if magic == MAGIC:
        version = struct.unpack_from("<i", data, 4)[0]
        if version != 1:
            raise ValueError(f"unsupported version {version}")
        dim, hidden, L, H, KV, vocab, seq_len = struct.unpack_from("<7i", data, 8)
        shared = data[36] == 1
        offset = 256
    else:
        dim, hidden, L, H, KV, vocab, seq_len = struct.unpack_from("<7i", data, 0)
        shared = vocab > 0
        vocab = abs(vocab)
        offset = 28
        version = 0
    cfg = Config(dim, hidden, L, H, KV, vocab, seq_len, shared)
    kv = cfg.kv_dim
    floats = np.frombuffer(data, dtype="<f4", offset=offset).astype(np.float32)
    pos = 0
    w = {}

    def take(name, shape):
        nonlocal pos
        n = int(np.prod(shape))
        w[name] = floats[pos:pos + n].reshape(shape)
        pos += n

    if version == 1:
        take("rms_att", (L, dim)); take("rms_ffn", (L, dim)); take("rms_final", (dim,))
        take("token_embedding", (vocab, dim))
        take("wq", (L, dim, dim)); take("wk", (L, kv, dim)); take("wv", (L, kv, dim))
        take("wo", (L, dim, dim)); take("w1", (L, hidden, dim)); take("w2", (L, dim, hidden))
        take("w3", (L, hidden, dim))
    else:
        take("token_embedding", (vocab, dim)); take("rms_att", (L, dim))
        take("wq", (L, dim, dim)); take("wk", (L, kv, dim)); take("wv", (L, kv, dim))
        take("wo", (L, dim, dim)); take("rms_ffn", (L, dim))
        take("w1", (L, hidden, dim)); take("w2", (L, dim, hidden)); take("w3", (L, hidden, dim))
        take("rms_final", (dim,))
        pos += 2 * seq_len * (cfg.head_size // 2)  # freq_cis_real, freq_cis_imag (unused)
    if not shared:
        take("wcls", (vocab, dim))
    if pos != floats.size:
        raise ValueError(f"{path}: {floats.size - pos} floats left over")
    return cfg, w


def load_torch(path):
    cfg, w = read_checkpoint(path)
    model = Llama(cfg)
    copy_weights(model, w)
    return model.eval()


def copy_weights(model, w):
    """Copies read_checkpoint's arrays into model. The model's seq_len may differ from the
    file's: RoPE has no weights, so a checkpoint runs (and trains on) any window."""
    cfg = model.cfg
    with torch.no_grad():
        model.tok_embeddings.weight.copy_(torch.from_numpy(w["token_embedding"]))
        model.norm.weight.copy_(torch.from_numpy(w["rms_final"]))
        for i, l in enumerate(model.layers):
            l.attention_norm.weight.copy_(torch.from_numpy(w["rms_att"][i]))
            l.ffn_norm.weight.copy_(torch.from_numpy(w["rms_ffn"][i]))
            for name in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
                getattr(l, name).weight.copy_(torch.from_numpy(w[name][i]))
        if not cfg.shared_classifier:
            model.output.weight.copy_(torch.from_numpy(w["wcls"]))


# ---------------------------------------------------------------- scoring

@torch.no_grad()
def score_stories(model, sp, stories, batch_windows=16):
    """Held-out scoring (the definition in models/README.md):
    each story is encoded as s = [BOS] + sp.encode(story) + [BOS]; every token of s after the
    first is predicted from the tokens before it (the ids of the story and the closing BOS,
    i.e. the model must also predict where the story ends). A sequence longer than the model's
    context is scored in windows of seq_len tokens advancing by seq_len/2; each token is scored
    exactly once, with at least seq_len/2 tokens of context once past the first window.
    Returns (total_nll_nats, n_tokens_scored, n_utf8_bytes)."""
    model.eval()
    T = model.cfg.seq_len
    total, count, nbytes = 0.0, 0, 0
    jobs = []  # (input ids, targets, first scored index)
    for story in stories:
        nbytes += len(story.encode("utf-8"))
        s = [BOS] + sp.encode(story) + [BOS]
        if len(s) <= T + 1:
            jobs.append((s[:-1], s[1:], 0))
            continue
        stride = T // 2
        start, scored_upto = 0, 0  # scored_upto: number of targets already scored
        while True:
            chunk = s[start:start + T + 1]
            first = scored_upto - start
            jobs.append((chunk[:-1], chunk[1:], first))
            scored_upto = start + len(chunk) - 1
            if start + T + 1 >= len(s):
                break
            start += stride
    jobs.sort(key=lambda j: len(j[0]))
    for b in range(0, len(jobs), batch_windows):
        group = jobs[b:b + batch_windows]
        n = max(len(j[0]) for j in group)
        x = torch.zeros(len(group), n, dtype=torch.long)
        y = torch.full((len(group), n), -100, dtype=torch.long)
        for r, (inp, tgt, first) in enumerate(group):
            x[r, :len(inp)] = torch.tensor(inp)
            t = torch.tensor(tgt)
            t[:first] = -100
            y[r, :len(tgt)] = t
        logits = model(x).float()
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1),
                               ignore_index=-100, reduction="sum")
        total += loss.item()
        count += int((y != -100).sum())
    return total, count, nbytes
