"""Corrupted checkpoints: Quill must refuse them cleanly or run them normally, never crash.

For the shipped model (llama2.c version 1), an int8 copy of it made by `quill quantize` (version 2)
and ../shared/models/stories260K.bin (version 0), a few hundred deterministic variants are written:
truncations and appended junk, every header field set to 0, -1, 1, INT32_MAX, INT32_MIN, twice its
value and large plausible values, bad magic and versions, random bit flips in the weights, and
NaN/Inf in a norm and in a matrix. Each runs as
`quill -m VARIANT -z TOKENIZER -n 8 --temp 0 "Once upon a time"` and must either
- exit 1 with stderr exactly one line `quill: error: ...` (no dump, no control characters), or
- exit 0 with nothing on stderr (a normal run; not allowed when a weight is NaN or Inf),
and never die of a signal, hang (killed after TIMEOUT_S), or have a peak resident set above
baseline + file size + the KV cache the run needs + SLACK_BYTES (the test kills it when it gets
there, so a variant that would exhaust memory cannot take the machine down with it).

The header arithmetic (field offsets, tensor regions, file sizes) is this file's own, from
README.md "Checkpoint formats" and ../shared/docs/formats.md, not Quill's.
"""

import concurrent.futures
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
QUILL_BIN = REPO / os.environ.get("QUILL_BIN", ".build/debug/quill")  # absolute env paths win
SHIPPED = REPO / "models" / "tinystories.bin"
SHIPPED_TOKENIZER = REPO / "models" / "tinystories.model"
STORIES260K = REPO.parent / "shared" / "models" / "stories260K.bin"
TOK512 = REPO.parent / "shared" / "models" / "tok512.model"

PROMPT = "Once upon a time"
N_PREDICT = 8
# SentencePiece with byte fallback gives at most one token per UTF-8 byte, plus BOS.
PROMPT_TOKENS_MAX = len(PROMPT.encode()) + 1
TIMEOUT_S = 30  # the debug build runs an intact model in well under a second
WORKERS = 2  # the machine has 2 cores
POLL_S = 0.01  # how often a running variant's resident set is read
# Run-to-run noise in a small process's resident set (allocator arenas, thread stacks, BLAS
# buffers) on top of the measured baseline.
SLACK_BYTES = 16 << 20
BASELINE_RUNS = 3

INT32_MAX, INT32_MIN = 2**31 - 1, -(2**31)
MAGIC = 0x616B3432  # "ak42" as a little-endian uint32
FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
# Large values a real header could hold; seq_len ones make a KV cache or RoPE table of gigabytes.
PLAUSIBLE = {"dim": [4096], "hidden_dim": [11008], "n_layers": [32, 1_000_000], "n_heads": [32],
             "n_kv_heads": [8], "vocab_size": [32000, 10_000_000],
             "seq_len": [10_000_000, 200_000_000]}


# ---------------------------------------------------------------------------------------------
# Checkpoint layout, computed here from the formats


@dataclass
class Header:
    version: int  # 0 = legacy (no magic), 1 = float32, 2 = Q8_0
    fields: dict  # the 7 int32 fields as stored (vocab_size may be negative in version 0)
    shared: bool  # classifier tied to the token embedding
    group_size: int = 0  # version 2 only

    @property
    def header_bytes(self):
        return 28 if self.version == 0 else 256

    @property
    def field_offset(self):
        return 0 if self.version == 0 else 8

    def sane(self):
        """Positive sizes and the divisibility the formats need (so regions can be computed)."""
        f = self.fields
        if min(f["dim"], f["hidden_dim"], f["n_layers"], f["n_heads"], f["n_kv_heads"],
               abs(f["vocab_size"]), f["seq_len"]) <= 0:
            return False
        if f["dim"] % f["n_heads"] or f["n_heads"] % f["n_kv_heads"] or (f["dim"] // f["n_heads"]) % 2:
            return False
        return self.version != 2 or self.group_size > 0

    @property
    def kv_dim(self):
        return self.fields["dim"] * self.fields["n_kv_heads"] // self.fields["n_heads"]


def parse_header(data):
    """The header as stored, or None when too short to hold one."""
    if len(data) >= 8 and struct.unpack_from("<I", data, 0)[0] == MAGIC:
        if len(data) < 256:
            return None
        version = struct.unpack_from("<i", data, 4)[0]
        values = struct.unpack_from("<7i", data, 8)
        group = struct.unpack_from("<i", data, 37)[0] if version == 2 else 0
        return Header(version, dict(zip(FIELDS, values)), data[36] != 0, group)
    if len(data) < 28:
        return None
    values = struct.unpack_from("<7i", data, 0)
    return Header(0, dict(zip(FIELDS, values)), values[5] > 0)


@dataclass
class Region:
    name: str
    start: int
    nbytes: int
    kind: str  # "f32" weights, "i8" quantized values, "unused" (version 0 RoPE tables)


def regions(h):
    """Byte ranges of every tensor, in file order (requires h.sane())."""
    f = h.fields
    dim, hidden, L, vocab = f["dim"], f["hidden_dim"], f["n_layers"], abs(f["vocab_size"])
    kv, hs = h.kv_dim, dim // f["n_heads"]
    mats = [("token_embedding", vocab * dim), ("wq", L * dim * dim), ("wk", L * kv * dim),
            ("wv", L * kv * dim), ("wo", L * dim * dim), ("w1", L * hidden * dim),
            ("w2", L * dim * hidden), ("w3", L * hidden * dim)]
    wcls = [] if h.shared else [("wcls", vocab * dim)]
    norms = [("rms_att", L * dim), ("rms_ffn", L * dim), ("rms_final", dim)]
    if h.version == 0:
        layout = [("token_embedding", vocab * dim, "f32"), ("rms_att", L * dim, "f32")]
        layout += [(n, c, "f32") for n, c in mats[1:5]] + [("rms_ffn", L * dim, "f32")]
        layout += [(n, c, "f32") for n, c in mats[5:]] + [("rms_final", dim, "f32")]
        layout += [("freq_cis_real", f["seq_len"] * hs // 2, "unused"),
                   ("freq_cis_imag", f["seq_len"] * hs // 2, "unused")]
        layout += [(n, c, "f32") for n, c in wcls]
        sizes = [(n, 4 * c, k) for n, c, k in layout]
    elif h.version == 1:
        sizes = [(n, 4 * c, "f32") for n, c in norms + mats + wcls]
    else:
        quantized = mats + wcls
        sizes = [(n, 4 * c, "f32") for n, c in norms] + [(n, c, "i8") for n, c in quantized]
        sizes += [(n + " scales", 4 * (c // h.group_size), "f32") for n, c in quantized]
    out, at = [], h.header_bytes
    for name, nbytes, kind in sizes:
        out.append(Region(name, at, nbytes, kind))
        at += nbytes
    return out


def expected_size(h):
    last = regions(h)[-1]
    return last.start + last.nbytes


def describes(h, size):
    """True when header h is sane and implies a file of exactly `size` bytes."""
    return h is not None and h.version in (0, 1, 2) and h.sane() and expected_size(h) == size


def region_at(h, offset):
    return next((r for r in regions(h) if r.start <= offset < r.start + r.nbytes), None)


# ---------------------------------------------------------------------------------------------
# Variants: described by edits to the original, written just before they run


@dataclass
class Variant:
    name: str
    size: int  # bytes kept from the original; beyond its end, deterministic junk
    edits: list = field(default_factory=list)  # (offset, bytes) written over the kept bytes
    nonfinite: str = ""  # tensor that now holds a NaN or Inf (the run must be refused)

    def materialize(self, original, path):
        data = bytearray(original[:self.size])
        if self.size > len(original):
            junk = np.random.default_rng(self.size).integers(0, 256, self.size - len(original))
            data += junk.astype(np.uint8).tobytes()
        for offset, value in self.edits:
            data[offset:offset + len(value)] = value
        path.write_bytes(bytes(data))
        return len(data)


def float_edit(offset, value):
    return (offset, struct.pack("<f", value))


def header_variants(original, h):
    size = len(original)
    out = []

    def put(name, offset, value, fmt="<i"):
        edit = struct.pack(fmt, value)
        if original[offset:offset + len(edit)] != edit:  # skip edits that change nothing
            out.append(Variant(name, size, [(offset, edit)]))

    for i, fname in enumerate(FIELDS):
        stored = h.fields[fname]
        values = [0, -1, 1, INT32_MAX, INT32_MIN, 2 * stored, -stored] + PLAUSIBLE[fname]
        for value in dict.fromkeys(values):  # in order, without repeats
            put(f"{fname}={value}", h.field_offset + 4 * i, value)
    if h.version == 0:
        out.append(Variant("v0 with magic over dim", size, [(0, struct.pack("<I", MAGIC))]))
        return out
    for value in [0, 1, 2, 3, -1, INT32_MAX, INT32_MIN]:
        put(f"version={value}", 4, value)
    for magic in [b"ak42", b"\0\0\0\0", b"GGUF", b"24kb"]:
        put(f"magic={magic!r}", 0, magic, fmt="4s")
    for value in [0, 1, 2, 255]:
        put(f"shared_classifier={value}", 36, value, fmt="<B")
    put("padding byte 100=255", 100, 255, fmt="<B")
    if h.version == 2:
        for value in [0, -1, 1, INT32_MAX, INT32_MIN, 7, 33, 64, 128, 4096]:
            put(f"group_size={value}", 37, value)
    return out


def truncation_variants(original, h):
    size, hb = len(original), h.header_bytes
    sizes = {"empty": 0, "3 bytes": 3, "header minus 1": hb - 1, "header only": hb,
             "half": size // 2, "one byte short": size - 1, "one byte more": size + 1,
             "4 KiB junk appended": size + 4096, "doubled with junk": 2 * size}
    return [Variant(f"truncated: {name} ({n} bytes)", n) for name, n in sizes.items()]


def flip_variants(original, h, seed, singles=20, multi=6, flips_per_multi=64):
    """Random bit flips anywhere after the header; marks the ones that made a weight non-finite."""
    rng = np.random.default_rng(seed)
    size, hb = len(original), h.header_bytes
    out = []
    for k in range(singles + multi):
        count = 1 if k < singles else flips_per_multi
        data = bytearray(original)
        edits, nonfinite = [], ""
        for offset, bit in zip(rng.integers(hb, size, count), rng.integers(0, 8, count)):
            offset = int(offset)
            data[offset] ^= 1 << int(bit)
            edits.append((offset, bytes([data[offset]])))
        # Check the final content: a later flip can undo an earlier one.
        for offset, _ in edits:
            r = region_at(h, offset)
            if r and r.kind == "f32":
                word = r.start + (offset - r.start) // 4 * 4
                if not math.isfinite(struct.unpack_from("<f", data, word)[0]):
                    nonfinite = r.name
        label = f"bit flip #{k}" if count == 1 else f"{count} bit flips #{k}"
        where = region_at(h, edits[0][0])
        out.append(Variant(f"{label} (first in {where.name if where else '?'})", size, edits, nonfinite))
    return out


def nonfinite_variants(original, h):
    rs = {r.name: r for r in regions(h)}
    matrix = "wq" if h.version != 2 else "wq scales"
    down = "w2" if h.version != 2 else "w2 scales"
    cases = [("rms_att", 0, math.nan), ("rms_ffn", rs["rms_ffn"].nbytes // 8, math.inf),
             ("rms_final", rs["rms_final"].nbytes // 4 - 1, -math.inf),
             (matrix, rs[matrix].nbytes // 8, math.nan), (down, rs[down].nbytes // 4 - 1, math.inf)]
    if h.version != 2:
        cases.append(("token_embedding", 0, math.nan))
    out = []
    for name, index, value in cases:
        edit = float_edit(rs[name].start + 4 * index, value)
        out.append(Variant(f"{name}[{index}] = {value}", len(original), [edit], name))
    return out


def all_variants(original, seed):
    h = parse_header(original)
    assert describes(h, len(original)), "this test's layout arithmetic disagrees with the original"
    return (truncation_variants(original, h) + header_variants(original, h)
            + flip_variants(original, h, seed) + nonfinite_variants(original, h))


# ---------------------------------------------------------------------------------------------
# Running quill with a timeout and a resident-memory ceiling


@dataclass
class Run:
    status: int  # as from os.wait4
    peak_rss: int  # bytes (ru_maxrss, or the last reading before the test killed it)
    killed: str  # "hang" or "memory" when the test killed the process
    seconds: float
    stdout: bytes
    stderr: bytes


# Peak RSS comes from the resource usage of the finished child (ru_maxrss), but Linux carries the
# high-water mark of the process that forked it across exec: a child of pytest (100+ MB) would
# report pytest's size. So a small stdlib-only Python (`-S`, about 10 MB) starts quill, watches it
# and reports; its own size is the floor of what it can measure, below any quill run.
SPAWNER = r"""
import json, os, signal, sys, time
job = json.loads(sys.argv[1])
files = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
         (os.POSIX_SPAWN_OPEN, 1, job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
         (os.POSIX_SPAWN_OPEN, 2, job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
start = time.monotonic()
pid = os.posix_spawn(job["args"][0], job["args"], os.environ, file_actions=files, setsid=True)
killed, seen = "", 0
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    try:  # VmHWM: the peak resident set so far of quill's own address space
        with open(f"/proc/{pid}/status") as f:
            seen = max([seen] + [int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:")])
    except OSError:
        pass
    if time.monotonic() - start > job["timeout"]:
        killed = "hang"
    elif job["rss_limit"] and seen > job["rss_limit"]:
        killed = "memory"
    if killed:
        os.killpg(pid, signal.SIGKILL)  # quill leads its own session: it and any children
        done, status, usage = os.wait4(pid, 0)
        break
    time.sleep(job["poll"])
print(json.dumps({"status": status, "peak_rss": max(seen, usage.ru_maxrss * 1024),
                  "killed": killed, "seconds": time.monotonic() - start}))
"""


def run_quill(model, tokenizer, workdir, rss_limit=None):
    """Run one generation with stdin on /dev/null; it is killed (SIGKILL) after TIMEOUT_S or as
    soon as its peak resident set passes rss_limit."""
    workdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = workdir / "stdout", workdir / "stderr"
    args = [str(QUILL_BIN), "-m", str(model), "-z", str(tokenizer), "-n", str(N_PREDICT),
            "--temp", "0", PROMPT]
    job = {"args": args, "stdout": str(out_path), "stderr": str(err_path), "timeout": TIMEOUT_S,
           "rss_limit": rss_limit, "poll": POLL_S}
    spawner = subprocess.run([sys.executable, "-S", "-c", SPAWNER, json.dumps(job)],
                             capture_output=True, text=True, timeout=TIMEOUT_S + 60)
    assert spawner.returncode == 0, f"the spawner failed: {spawner.stderr}"
    answer = json.loads(spawner.stdout)
    return Run(answer["status"], answer["peak_rss"], answer["killed"], answer["seconds"],
               out_path.read_bytes(), err_path.read_bytes())


def kv_cache_bytes(h):
    """2 (keys, values) x layers x positions x kv_dim x 4 bytes for this prompt and -n."""
    positions = min(PROMPT_TOKENS_MAX + N_PREDICT, h.fields["seq_len"])
    return 2 * h.fields["n_layers"] * positions * h.kv_dim * 4


def memory_bound(baseline_rss, original_header, variant_path):
    """Baseline + this file + the KV cache it needs (by its own header when that header describes
    the file, else by the original's) + slack."""
    size = variant_path.stat().st_size
    with open(variant_path, "rb") as f:
        h = parse_header(f.read(256))
    if not describes(h, size):
        h = original_header
    return baseline_rss + size + kv_cache_bytes(h) + SLACK_BYTES


def is_one_line_error(stderr):
    if not (stderr.startswith(b"quill: error: ") and stderr.endswith(b"\n")):
        return False
    body = stderr[:-1]
    if any(b < 0x20 or b == 0x7F for b in body):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def problem(run, bound, variant):
    """What went wrong with this run, or "" when it is acceptable."""
    mb = lambda n: f"{n / 2**20:.1f} MB"
    if run.killed == "hang":
        return f"hang: still running after {TIMEOUT_S} s (killed)"
    if run.killed == "memory":
        return f"memory: peak RSS passed {mb(bound)} (killed at {mb(run.peak_rss)} after {run.seconds:.1f} s)"
    if os.WIFSIGNALED(run.status):
        return f"signal: {signal.Signals(os.WTERMSIG(run.status)).name}"
    code = os.WEXITSTATUS(run.status)
    over = f"; and memory: peak RSS {mb(run.peak_rss)} > {mb(bound)}" if run.peak_rss > bound else ""
    if code == 1:
        if not is_one_line_error(run.stderr):
            lines = run.stderr.count(b"\n")
            return f"exit 1 but stderr is not one clean `quill: error:` line ({lines} lines){over}"
        return over.removeprefix("; and ")
    if code == 0:
        if variant.nonfinite:
            return f"exit 0 with non-finite weights in {variant.nonfinite} (stdout {run.stdout[:60]!r}){over}"
        if run.stderr:
            return f"exit 0 but wrote to stderr{over}"
        return over.removeprefix("; and ")
    return f"exit {code}{over}"


def outcome(run):
    if run.killed:
        return run.killed
    if os.WIFSIGNALED(run.status):
        return "signal"
    return f"exit {os.WEXITSTATUS(run.status)}"


def excerpt(stderr, limit=240):
    text = stderr.decode("utf-8", "replace").strip()
    text = text.replace("\n", " | ")
    return text if len(text) <= limit else text[:limit] + " ..."


# ---------------------------------------------------------------------------------------------
# The sweep


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (checkpoint, tokenizer), or a reason string when it cannot be had."""
    out = {"tinystories": (SHIPPED, SHIPPED_TOKENIZER)}
    if QUILL_BIN.exists():
        q8 = tmp_path_factory.mktemp("q8") / "tinystories-q8.bin"
        result = subprocess.run([str(QUILL_BIN), "quantize", str(SHIPPED), str(q8)],
                                capture_output=True, text=True, timeout=120)
        out["tinystories-q8"] = (q8, SHIPPED_TOKENIZER) if result.returncode == 0 else (
            f"`quill quantize` failed: {result.stderr.strip()}")
    if STORIES260K.exists() and TOK512.exists():
        out["stories260K"] = (STORIES260K, TOK512)
    else:
        out["stories260K"] = f"{STORIES260K} or {TOK512} absent: stories260K variants skipped"
    return out


@pytest.mark.parametrize("model_name", ["tinystories", "tinystories-q8", "stories260K"])
def test_corrupted_checkpoints_fail_cleanly(model_name, models, tmp_path, capsys):
    if not QUILL_BIN.exists():
        pytest.skip(f"Quill binary not built: {QUILL_BIN} (set QUILL_BIN or run `swift build`)")
    model = models[model_name]
    if isinstance(model, str):
        with capsys.disabled():
            print(f"\n[corruption {model_name}] SKIPPED: {model}")
        if "absent" in model:
            pytest.skip(model)
        pytest.fail(model)
    checkpoint, tokenizer = model
    original = checkpoint.read_bytes()
    header = parse_header(original)
    variants = all_variants(original, seed=zlib.crc32(model_name.encode()))
    names = [v.name for v in variants]
    assert len(names) == len(set(names)), "variant names must be unique"

    baseline = 0
    for i in range(BASELINE_RUNS):
        run = run_quill(checkpoint, tokenizer, tmp_path / f"baseline{i}")
        assert run.status == 0 and not run.killed, f"intact {model_name} failed: {excerpt(run.stderr)}"
        assert run.stdout.strip(), f"intact {model_name} printed nothing"
        baseline = max(baseline, run.peak_rss)

    def one(index):
        variant = variants[index]
        path = tmp_path / f"v{index}.bin"
        variant.materialize(original, path)
        bound = memory_bound(baseline, header, path)
        try:
            run = run_quill(path, tokenizer, tmp_path / f"v{index}", rss_limit=bound)
        finally:
            path.unlink()
        return variant, run, problem(run, bound, variant)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(one, range(len(variants))))
    elapsed = time.monotonic() - start

    counts = {}
    for _, run, _ in results:
        counts[outcome(run)] = counts.get(outcome(run), 0) + 1
    over_memory = sum(1 for _, _, p in results if "memory:" in p)
    failures = [(v, run, p) for v, run, p in results if p]
    with capsys.disabled():
        print(f"\n[corruption {model_name}] {len(variants)} variants in {elapsed:.1f} s: "
              f"errors (exit 1) {counts.get('exit 1', 0)}, normal runs (exit 0) {counts.get('exit 0', 0)}, "
              f"other exits {sum(n for k, n in counts.items() if k.startswith('exit') and k not in ('exit 0', 'exit 1'))}, "
              f"signals {counts.get('signal', 0)}, hangs {counts.get('hang', 0)}, "
              f"over-memory {over_memory}; failing {len(failures)} "
              f"(baseline RSS {baseline / 2**20:.1f} MB)")
    report = "\n".join(f"- {v.name}: {p}; stderr: {excerpt(run.stderr)!r}" for v, run, p in failures)
    assert not failures, f"{len(failures)} of {len(variants)} {model_name} variants failed:\n{report}"


# ---------------------------------------------------------------------------------------------
# NaN / Inf weights are an error, not garbage


@pytest.mark.parametrize("tensor, value", [("rms_ffn", math.nan), ("w2", math.inf)])
def test_nonfinite_weight_is_refused_naming_the_tensor(tensor, value, tmp_path):
    if not QUILL_BIN.exists():
        pytest.skip(f"Quill binary not built: {QUILL_BIN} (set QUILL_BIN or run `swift build`)")
    original = SHIPPED.read_bytes()
    h = parse_header(original)
    r = next(r for r in regions(h) if r.name == tensor)
    index = r.nbytes // 4 // 2  # a middle element: a layer past the first
    variant = Variant(f"{tensor}[{index}] = {value}", len(original), [float_edit(r.start + 4 * index, value)])
    path = tmp_path / "nonfinite.bin"
    variant.materialize(original, path)
    run = run_quill(path, SHIPPED_TOKENIZER, tmp_path / "run")
    assert not run.killed and not os.WIFSIGNALED(run.status), problem(run, math.inf, variant)
    code = os.WEXITSTATUS(run.status)
    assert code == 1, f"exit {code} with {variant.name}; stdout {run.stdout[:80]!r}"
    assert is_one_line_error(run.stderr), run.stderr
    assert tensor in run.stderr.decode(), f"the message does not name {tensor}: {run.stderr!r}"
