"""What Quill prints where: invalid UTF-8 from byte-fallback tokens on stdout and in --json, and
progress lines on a terminal (through a pseudo-terminal) but never into a pipe.

The UTF-8 test needs a model that is known to emit byte-fallback tokens that never complete a
character. It is built here: a llama2.c version 0 checkpoint whose layers are all zero (every
attention and feed-forward output is 0, so the residual stream stays the token's embedding), with
one-hot embeddings and an unshared classifier wired so that greedy decoding walks a fixed chain
of ids: BOS → <0xE2> → <0x82> → "▁ha" → <0xE2> → <0x82> → ... E2 82 starts a three-byte
character that the next token never completes."""
import json
import os
import pty
import select
import struct
import sys
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
QUILL = os.environ.get("QUILL_BIN", str(REPO / ".build" / "debug" / "quill"))
SHARED = REPO.parent / "shared" / "models"
TOKENIZER = SHARED / "tok512.model"
STORIES = SHARED / "stories260K.bin"
needs_shared = pytest.mark.skipif(not STORIES.exists() or not TOKENIZER.exists(),
                                  reason="../shared/models/stories260K.bin or tok512.model not found")

BYTE_E2, BYTE_82, PIECE_HA = 229, 133, 300  # ids in tok512.model (<0xE2>, <0x82>, "▁ha")
CHAIN = {1: BYTE_E2, BYTE_E2: BYTE_82, BYTE_82: PIECE_HA, PIECE_HA: BYTE_E2}


def write_chain_checkpoint(path, vocab=512, dim=8, hidden=8, layers=1, heads=2, seq_len=32):
    """llama2.c version 0: seven int32 (a negative vocabulary size means an unshared classifier),
    then the float32 tensors in llama2.c's order."""
    head = dim // heads
    slot = {token: i for i, token in enumerate(CHAIN)}  # each chain token gets its own axis
    embedding = np.zeros((vocab, dim), np.float32)  # (vocab, dim)
    classifier = np.zeros((vocab, dim), np.float32)  # (vocab, dim)
    for token, following in CHAIN.items():
        embedding[token, slot[token]] = 1
        classifier[following, slot[token]] = 10  # logit of `following` is high after `token`
    zeros = lambda *shape: np.zeros(shape, np.float32)
    ones = lambda *shape: np.ones(shape, np.float32)
    tensors = [embedding, ones(layers, dim), zeros(layers, dim, dim), zeros(layers, dim, dim), zeros(layers, dim, dim),
               zeros(layers, dim, dim), ones(layers, dim), zeros(layers, hidden, dim), zeros(layers, dim, hidden),
               zeros(layers, hidden, dim), ones(dim), zeros(seq_len, head // 2), zeros(seq_len, head // 2), classifier]
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", dim, hidden, layers, heads, heads, -vocab, seq_len))
        for tensor in tensors:
            f.write(tensor.astype("<f4").tobytes())


@needs_shared
@pytest.mark.parametrize("n", [4, 5, 6])
def test_streamed_bytes_are_raw_and_json_text_is_them_decoded_with_replacement(tmp_path, n):
    model = tmp_path / "chain.bin"
    write_chain_checkpoint(model)
    common = [QUILL, "-m", str(model), "-z", str(TOKENIZER), "--temp", "0", "-n", str(n), "-p", ""]
    streamed = subprocess.run(common, capture_output=True, timeout=60)
    as_json = subprocess.run(common + ["--json"], capture_output=True, timeout=60)
    assert streamed.returncode == 0 and as_json.returncode == 0, streamed.stderr + as_json.stderr
    result = json.loads(as_json.stdout)
    assert result["token_ids"] == [BYTE_E2, BYTE_82, PIECE_HA, BYTE_E2, BYTE_82, PIECE_HA][:n]
    text = streamed.stdout.removesuffix(b"\n")  # the newline Quill adds after streamed text
    # stdout: exactly the bytes of the pieces ("▁ha" keeps its space: it is not the first piece).
    pieces = {BYTE_E2: b"\xe2", BYTE_82: b"\x82", PIECE_HA: b" ha"}
    assert text == b"".join(pieces[t] for t in result["token_ids"])
    assert b"\xe2\x82" in text  # the incomplete sequence is printed as it is, never dropped
    # --json: the same bytes with each invalid sequence replaced by one U+FFFD.
    assert result["text"] == text.decode("utf-8", errors="replace")
    assert "\ufffd" in result["text"]


def run_on_terminal(arguments):
    """Runs quill with stderr on a pseudo-terminal and stdout on a pipe; returns (status, stdout, terminal bytes)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL)
    os.close(terminal)
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    out = process.stdout.read()
    return process.wait(timeout=60), out, seen


@needs_shared
def test_progress_goes_to_a_terminal_and_not_to_a_pipe(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("Once upon a time there was a little cat. " * 30)
    arguments = [QUILL, "perplexity", "-m", str(STORIES), "-z", str(TOKENIZER), "-f", str(text), "-b", "8", "--json"]
    status, out, terminal = run_on_terminal(arguments)
    assert status == 0, terminal
    assert b"\r\x1b[K" in terminal and b"perplexity: " in terminal  # the progress line, redrawn in place
    assert json.loads(out)["tokens"] > 0  # stdout holds only the result
    status, out, terminal = run_on_terminal(arguments + ["--no-progress"])
    assert status == 0 and terminal == b""
    piped = subprocess.run(arguments, capture_output=True, timeout=60)
    assert piped.returncode == 0 and piped.stderr == b""


def test_loading_a_large_file_shows_a_line_on_a_terminal_only(tmp_path):
    model = tmp_path / "random15m.bin"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_random_checkpoint.py"), "--shape", "15m", "-o", str(model)],
                   check=True, capture_output=True, timeout=300)
    assert model.stat().st_size >= 32 << 20  # Quill's threshold for a large file
    status, out, terminal = run_on_terminal([QUILL, "info", "-m", str(model), "--json"])
    assert status == 0, terminal
    assert b"loading " in terminal and terminal.endswith(b"\r\x1b[K")  # shown, then cleared
    assert json.loads(out)["format"]
    piped = subprocess.run([QUILL, "info", "-m", str(model), "--json"], capture_output=True, timeout=60)
    assert piped.returncode == 0 and piped.stderr == b""
