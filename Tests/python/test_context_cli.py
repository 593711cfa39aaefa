"""The command line of issue #12: -c/--ctx-size, --keep, --no-context-shift, perplexity --stream,
prompts longer than the cache, and a stream of any size read in bounded memory."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QUILL = os.environ.get("QUILL_BIN", str(REPO / ".build" / "debug" / "quill"))
SHARED = REPO.parent / "shared" / "models"
STORIES = SHARED / "stories260K.bin"          # RoPE, context 512
TOKENIZER = SHARED / "tok512.model"
GENERATE = ["-m", STORIES, "-z", TOKENIZER]
LONG_TEXT = "Once upon a time, there was a little girl named Lily. She liked to play in the park. " * 40

needs_shared = pytest.mark.skipif(not STORIES.exists(), reason="../shared/models/stories260K.bin not found")


def run(*arguments, stdin=None):
    return subprocess.run([QUILL, *map(str, arguments)], input=stdin, capture_output=True, timeout=300)


def one_line_usage_error(result):
    """Exit 2 with one message line (then the usual hint)."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("quill: ") and lines[1:] == ["try 'quill --help'"], lines
    return lines[0]


@pytest.mark.parametrize("arguments", [
    ["-c", "0", "hi"], ["-c", "-5", "hi"], ["--ctx-size", "x", "hi"], ["-c"],
    ["--keep", "-1", "hi"], ["--keep", "four", "hi"], ["--no-context-shift=1", "hi"],
    ["perplexity", "-m", "m", "--ids", "1,2", "-c", "0"],
    ["perplexity", "-m", "m", "--ids", "1,2", "--keep", "2"],              # --keep needs --stream
    ["perplexity", "-m", "m", "--ids", "1,2", "--stream", "--stride", "4"],
    ["perplexity", "-m", "m", "--ids", "1,2", "--stream", "--keep", "-2"],
    ["perplexity", "-m", "m", "--ids", "1,2", "--stream=yes"],
    ["bench", "-c", "0"], ["bench", "--ctx-size", "1.5"],
])
def test_bad_values_are_usage_errors(arguments):
    one_line_usage_error(run(*arguments))


@needs_shared
@pytest.mark.parametrize("arguments", [
    [*GENERATE, "-c", "513", "hi"],
    ["perplexity", "-m", STORIES, "--ids", "1,2,3", "-c", "600"],
    [*GENERATE, "-c", "8", "--keep", "7", "-n", "20", "hi"],           # nothing left to drop
    ["perplexity", "-m", STORIES, "--ids", ",".join(["5"] * 20), "--stream", "-c", "8", "--keep", "7"],
    ["bench", "-m", STORIES, "-p", "16", "-n", "16", "-c", "8"],
])
def test_sizes_the_model_cannot_take_are_usage_errors(arguments):
    message = one_line_usage_error(run(*arguments))
    assert "-c" in message or "--keep" in message, message


@needs_shared
def test_generation_goes_past_a_full_cache_and_reports_the_shifts():
    result = run(*GENERATE, "-c", "32", "-n", "100", "--ignore-eos", "--temp", "0", "--json", "Once upon a time")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tokens_generated"] == 100 and report["stop_reason"] == "length"
    # 5 prompt tokens + 100: the first shift at 32 leaves 18, then one every 14 tokens.
    assert report["context_shifts"] == 6 and report["tokens_dropped"] == 0
    stopped = run(*GENERATE, "-c", "32", "-n", "100", "--ignore-eos", "--temp", "0", "--json", "--no-context-shift",
                  "Once upon a time")
    report = json.loads(stopped.stdout)
    assert report["stop_reason"] == "context" and report["tokens_generated"] == 32 - 5 + 1


@needs_shared
def test_verbose_reports_the_kv_cache_bytes():
    # stories260K: 5 layers, 4 KV heads of 8 (dim 64, 8 heads) → kvDim 32; K and V of 64 positions in float32.
    result = run(*GENERATE, "-c", "64", "-n", "2", "--verbose", "hi")
    assert result.returncode == 0
    assert f"KV cache 64 positions, KV cache {5 * 64 * 32 * 2 * 4} bytes" in result.stderr.decode()


@needs_shared
def test_a_prompt_longer_than_the_cache_keeps_its_head_and_tail():
    tokens = run("tokenize", "-z", TOKENIZER, LONG_TEXT)
    count = len(tokens.stdout.split())
    result = run(*GENERATE, "-c", "64", "--keep", "4", "-n", "3", "--json", LONG_TEXT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tokens_dropped"] == count - 64 and report["tokens_prompt"] == 64
    assert "prompt_bytes_not_tokenized" not in report
    assert f"dropped {count - 64} tokens after its first 4" in result.stderr.decode()
    refused = run(*GENERATE, "-c", "64", "--no-context-shift", "-n", "3", LONG_TEXT)
    assert refused.returncode == 1
    assert f"prompt is {count} tokens but the KV cache holds 64 positions" in refused.stderr.decode()


# Runs in a fresh, small Python: a child forked from pytest would count pytest's own pages
# (those resident when it forked) in its peak RSS. `cat FILE | quill ARGS`; prints the exit
# status and quill's peak RSS in KB from wait4, then its stdout and stderr as JSON.
MEASURE = """
import json, os, subprocess, sys
path, arguments = sys.argv[1], sys.argv[2:]
cat = subprocess.Popen(["cat", path], stdout=subprocess.PIPE)
quill = subprocess.Popen(arguments, stdin=cat.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
cat.stdout.close()
out, err = quill.stdout.read(), quill.stderr.read()
_, status, usage = os.wait4(quill.pid, 0)
cat.wait()
print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss, out.decode(), err.decode()]))
"""


def piped(path, *arguments):
    """(exit status, peak RSS in KB, stdout, stderr) of `cat path | quill arguments`."""
    result = subprocess.run([sys.executable, "-c", MEASURE, str(path), QUILL, *map(str, arguments)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@needs_shared
def test_a_piped_stream_of_50_mb_is_read_in_bounded_memory(tmp_path):
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text("Once upon a time")
    with big.open("wb") as f:
        for _ in range(50):
            f.write((LONG_TEXT.encode() * 300)[:1_000_000])
    arguments = [*GENERATE, "-c", "64", "-n", "2", "--temp", "0", "--json", "-"]
    code, small_rss, _, stderr = piped(small, *arguments)
    assert code == 0, stderr
    code, rss, stdout, stderr = piped(big, *arguments)
    assert code == 0, stderr
    assert "not tokenized" in stderr
    report = json.loads(stdout)
    assert report["tokens_prompt"] == 64 and report["tokens_dropped"] > 0
    assert 48_000_000 < report["prompt_bytes_not_tokenized"] < 50_000_000
    # Holding the text alone would take 50 MB (its tokens ~100 MB more); the bounded read holds
    # about 1 MB, and the tokenizer sees only the head and a short tail.
    assert rss < small_rss + 30_000, (rss, small_rss)


@needs_shared
def test_perplexity_stream_equals_windows_while_the_text_fits():
    ids = run("tokenize", "-z", TOKENIZER, LONG_TEXT[:400]).stdout.decode().split()
    arguments = ["perplexity", "-m", STORIES, "--ids", ",".join(ids), "--json", "-c", str(len(ids) + 3)]
    windows = json.loads(run(*arguments).stdout)
    stream = json.loads(run(*arguments, "--stream").stdout)
    assert stream["scored"] == windows["scored"] == len(ids) - 1
    # The same sums in the same order: blocks from position 0, no shift.
    assert abs(stream["nll_mean"] - windows["nll_mean"]) < 1e-6


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """A GPT-2 GGUF (learned positions, 64 of them) from the Hugging Face fixture's recipe."""
    pytest.importorskip("safetensors.numpy")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_hf_reference import export, write_folder
    root = tmp_path_factory.mktemp("gpt2")
    out = root / "gpt2.gguf"
    result = export(write_folder(root / "gpt2", "gpt2"), out)
    assert result.returncode == 0, result.stderr
    return out


def test_learned_positions_refuse_a_larger_cache_and_stop_with_a_note(gpt2):
    message = one_line_usage_error(run("-m", gpt2, "-c", "65", "hi"))
    assert "learned position table has 64 positions" in message
    result = run("-m", gpt2, "-c", "16", "-n", "40", "--ignore-eos", "--json", "Once upon a time")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["stop_reason"] == "context" and report["context_shifts"] == 0
    assert "learned absolute positions cannot shift" in result.stderr.decode()
    refused = run("perplexity", "-m", gpt2, "--ids", ",".join(["5"] * 40), "--stream", "-c", "16")
    assert refused.returncode == 1 and b"--stream needs positions that can shift" in refused.stderr


@needs_shared
def test_a_long_stream_cut_inside_characters_is_still_text(tmp_path):
    # One ASCII byte, then 2-byte characters: the head's end (64 KiB) and the tail's start fall
    # inside a character, which must be cut back to whole ones, not refused as invalid UTF-8.
    path = tmp_path / "accents.txt"
    path.write_bytes(b"x" + "é".encode() * 1_500_000)
    code, _, stdout, stderr = piped(path, *GENERATE, "-c", "32", "-n", "1", "--json", "-")
    assert code == 0, stderr
    assert json.loads(stdout)["tokens_prompt"] == 32 and "not tokenized" in stderr


@needs_shared
def test_batch_sequences_shift_and_long_prompts_are_cut():
    lines = "\n".join(["Once upon a time", json.dumps({"prompt": LONG_TEXT}), "Lily had a"]) + "\n"
    result = run(*GENERATE, "--batch", "-", "-c", "32", "-n", "60", "--ignore-eos", "--temp", "0", stdin=lines.encode())
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [o["tokens_generated"] for o in objects] == [60, 60, 60]
    assert all(o["context_shifts"] >= 3 for o in objects)
    assert objects[1]["tokens_dropped"] > 0 and objects[1]["tokens_prompt"] == 32
    assert objects[0]["tokens_dropped"] == 0


@needs_shared
def test_bench_reports_the_kv_cache_bytes():
    result = run("bench", "-m", STORIES, "-p", "8", "-n", "8", "-r", "1", "--parallel", "0", "-c", "64", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # 5 layers × kvDim 32 × 64 positions, K and V in float32.
    assert report["kv_cache_positions"] == 64 and report["kv_cache_bytes"] == 5 * 32 * 64 * 2 * 4


@needs_shared
def test_the_default_keep_gives_way_in_a_tiny_cache_and_a_given_one_does_not():
    # A cache of 5 cannot keep 4 and drop any: by default it stops when full, as without a shift.
    result = run(*GENERATE, "-c", "5", "-n", "20", "--ignore-eos", "--json", "hi")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stop_reason"] == "context"
    one_line_usage_error(run(*GENERATE, "-c", "5", "--keep", "4", "-n", "20", "hi"))
    one_line_usage_error(run(*GENERATE, "--batch", "-", "-c", "5", "--keep", "4", stdin=b"hi\n"))
