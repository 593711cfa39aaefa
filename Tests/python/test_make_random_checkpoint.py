"""Tests for scripts/make_random_checkpoint.py."""

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llama_reference import expected_file_size, llama2c_forward, read_llama2c

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_random_checkpoint.py"
TINY = ["--dim", "32", "--hidden-dim", "48", "--layers", "2", "--heads", "4", "--kv-heads", "2",
        "--vocab", "40", "--seq-len", "16"]


def make(*args):
    result = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("untied", [False, True], ids=["tied", "untied"])
def test_tiny_round_trip(tmp_path, untied):
    out = tmp_path / "tiny.bin"
    make(*TINY, *(["--untied"] if untied else []), "--seed", 3, "-o", out)
    header, w = read_llama2c(out)  # checks magic, padding and exact file size
    assert header == {"dim": 32, "hidden_dim": 48, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
                      "vocab_size": 40, "seq_len": 16, "shared_classifier": 0 if untied else 1}
    assert ("wcls" in w) == untied
    for name in ("rms_att", "rms_ffn", "rms_final"):
        assert np.all(w[name] == 1.0)
    assert abs(float(w["wq"].std()) - 0.02) < 0.002
    logits = llama2c_forward(header, w, list(range(16)))
    assert logits.shape == (16, 40) and np.all(np.isfinite(logits))


def test_same_seed_same_bytes(tmp_path):
    a, b, c = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "c.bin"
    make(*TINY, "--seed", 5, "-o", a)
    make(*TINY, "--seed", 5, "-o", b)
    make(*TINY, "--seed", 6, "-o", c)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_15m_preset_size_matches_header(tmp_path):
    out = tmp_path / "15m.bin"
    make("--shape", "15m", "-o", out)
    with open(out, "rb") as f:
        magic, version, *params, shared = struct.unpack("<Ii7iB", f.read(37))
    assert (magic, version) == (0x616B3432, 1)
    assert params == [288, 768, 6, 6, 6, 32000, 256] and shared == 1
    header = dict(zip(("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size",
                       "seq_len"), params), shared_classifier=shared)
    assert out.stat().st_size == expected_file_size(header)
    assert out.stat().st_size == 256 + 4 * 15_191_712  # llama2.c's stories15M parameter count


def test_preset_overrides_and_bad_shapes(tmp_path):
    out = tmp_path / "o.bin"
    make("--shape", "42m", "--layers", "1", "--vocab", "64", "-o", out)
    header, _ = read_llama2c(out)
    assert (header["dim"], header["n_layers"], header["vocab_size"], header["seq_len"]) == (512, 1, 64, 1024)
    for bad in (["--heads", "3"], ["--kv-heads", "3"], ["--dim", "0"]):
        result = subprocess.run([sys.executable, str(SCRIPT), *TINY, *bad, "-o", str(out)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "error:" in result.stderr, bad
