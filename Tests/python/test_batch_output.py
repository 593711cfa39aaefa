"""`quill --batch --output FILE [--resume]` (issue #14): results appended one complete line at a
time, a killed run resumed with every id exactly once, a cut-off last line removed, a full disk
reported with the file left resumable, a user's file never overwritten.

The truth each test compares with is an uninterrupted run of the same batch: results are
compared as parsed objects without their timings (ms_prompt, ms_generate), as a multiset, since
--output writes in completion order."""

import json
import os
import random
import resource
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QUILL = os.environ.get("QUILL_BIN", str(REPO / ".build" / "debug" / "quill"))
SHARED = REPO.parent / "shared" / "models"
STORIES = SHARED / "stories260K.bin"
TOKENIZER = SHARED / "tok512.model"
GENERATE = ["-m", str(STORIES), "-z", str(TOKENIZER), "--parallel", "4"]

needs_shared = pytest.mark.skipif(not STORIES.exists(), reason="../shared/models/stories260K.bin not found")


def batch_lines(count, seed=14):
    """`count` requests with their own seeds (so their text is reproducible): JSON lines with
    string ids, JSON lines without an id and plain-text lines, mixed, plus one bad line."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        prompt = rng.choice(["Once upon a time", "The dog", "Lily saw a", "Tom had a ball", "One day"])
        n = rng.randint(4, 48)
        kind = i % 3
        if kind == 0:
            lines.append(json.dumps({"id": f"r{i}", "prompt": prompt, "seed": i, "n_predict": n}))
        elif kind == 1:
            lines.append(json.dumps({"prompt": prompt, "seed": i, "n_predict": n, "temp": 0.8}))
        else:
            lines.append(json.dumps({"id": [i, "x"], "prompt": prompt, "seed": i, "n_predict": n}))
    lines.insert(count // 2, '{"id": "bad", "prompt": 5}')  # an error object is a result too
    return "\n".join(lines) + "\n"


def comparable(text):
    """The result lines of `text` as a multiset of JSON objects without their timings."""
    objects = []
    for line in text.splitlines():
        value = json.loads(line)
        value.pop("ms_prompt", None)
        value.pop("ms_generate", None)
        objects.append(json.dumps(value, sort_keys=True))
    return Counter(objects)


def ids_of(text):
    return Counter(json.dumps(json.loads(line)["id"]) for line in text.splitlines())


def quill(*arguments, stdin=None, **kwargs):
    return subprocess.run([QUILL, *map(str, arguments)], input=stdin, capture_output=True, timeout=600, **kwargs)


def one_line_error(result, status):
    assert result.returncode == status, result.stderr
    lines = result.stderr.decode().splitlines()
    assert lines and lines[0].startswith("quill: error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(input path, its results from one uninterrupted run on stdout, in input order)."""
    folder = tmp_path_factory.mktemp("batch")
    source = folder / "in.jsonl"
    source.write_text(batch_lines(60))
    result = quill(*GENERATE, "--batch", source)
    assert result.returncode == 1, result.stderr  # the one bad line
    return source, result.stdout.decode()


@needs_shared
def test_output_file_holds_the_stdout_results_and_stdout_stays_clean(reference, tmp_path):
    source, expected = reference
    out = tmp_path / "out.jsonl"
    result = quill(*GENERATE, "--batch", source, "--output", out)
    assert result.returncode == 1, result.stderr
    assert result.stdout == b""
    assert comparable(out.read_text()) == comparable(expected)
    assert len(expected.splitlines()) == 61
    # An id-less line is named by its index among non-blank lines, from 0: line 2 is index 1.
    assert json.dumps(1) in ids_of(out.read_text())


@needs_shared
def test_an_existing_file_is_never_overwritten_without_resume(reference, tmp_path):
    source, _ = reference
    out = tmp_path / "mine.txt"
    out.write_bytes(b"a user's notes\n")
    message = one_line_error(quill(*GENERATE, "--batch", source, "--output", out), 1)
    assert "--resume" in message
    assert out.read_bytes() == b"a user's notes\n"
    # --resume reads it as results, and refuses a file that is not one.
    message = one_line_error(quill(*GENERATE, "--batch", source, "--output", out, "--resume"), 1)
    assert "line 1 is not a result line" in message
    assert out.read_bytes() == b"a user's notes\n"
    # Nor is the input itself ever appended to.
    copy = tmp_path / "in.jsonl"
    copy.write_bytes(source.read_bytes())
    one_line_error(quill(*GENERATE, "--batch", copy, "--output", copy, "--resume"), 1)
    assert copy.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("arguments", [
    ["--output", "x.jsonl", "hi"],                       # --output needs --batch
    ["--batch", "in.jsonl", "--resume"],                 # --resume needs --output
    ["--batch", "in.jsonl", "--output"],                 # no value
    ["--batch", "in.jsonl", "--output", "o", "--resume=yes"],
])
def test_flag_misuse_is_a_usage_error(arguments, tmp_path):
    result = quill(*arguments, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert not (tmp_path / "x.jsonl").exists()


@needs_shared
def test_a_cut_off_last_line_is_removed_and_its_request_runs_again(reference, tmp_path):
    """A crash inside a write leaves the start of a line: planted here at seeded byte offsets,
    including just before a newline (a whole object without its "\\n") and just after one."""
    source, expected = reference
    full = tmp_path / "full.jsonl"
    assert quill(*GENERATE, "--batch", source, "--output", full).returncode == 1
    data = full.read_bytes()
    newlines = [i for i, b in enumerate(data) if b == 0x0A]
    rng = random.Random(1414)
    cuts = [1, newlines[3], newlines[3] + 1, newlines[10] - 1] + rng.sample(range(len(data)), 4)
    for cut in cuts:
        out = tmp_path / f"cut{cut}.jsonl"
        out.write_bytes(data[:cut])
        result = quill(*GENERATE, "--batch", source, "--output", out, "--resume")
        assert result.returncode in (0, 1), result.stderr
        complete = data[:cut].rfind(b"\n") + 1
        if complete < cut:
            assert b"removed a cut-off last line (%d bytes)" % (cut - complete) in result.stderr
        final = out.read_text()
        assert out.read_bytes().startswith(data[:complete])
        assert comparable(final) == comparable(expected), cut


@needs_shared
def test_a_full_disk_exits_1_and_leaves_a_file_that_resume_finishes(reference, tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: with SIGXFSZ ignored, a write past the limit is
    cut short and the next one fails with EFBIG, as on a full disk."""
    source, expected = reference
    out = tmp_path / "out.jsonl"
    limit = len(expected.encode()) // 3

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = quill(*GENERATE, "--batch", source, "--output", out, preexec_fn=small_disk)
    message = one_line_error(result, 1)
    assert "cannot write" in message and "--resume" in message, message
    assert len(result.stderr.decode().splitlines()) == 1
    partial = out.read_bytes()
    assert partial.endswith(b"\n") and len(partial) <= limit
    assert all(json.loads(line)["id"] is not None for line in partial.decode().splitlines())
    result = quill(*GENERATE, "--batch", source, "--output", out, "--resume")
    assert result.returncode in (0, 1), result.stderr
    assert b"cut-off" not in result.stderr
    assert comparable(out.read_text()) == comparable(expected)


@needs_shared
@pytest.mark.parametrize("lines, repeated", [
    (['{"id": "a", "prompt": "x", "n_predict": 2}', '{"id": "a", "prompt": "y", "n_predict": 2}'], '"a"'),
    # An id-less line's id is its index: line 1 is index 0, the same as the explicit id 0.
    (['hello', '{"id": 0, "prompt": "y", "n_predict": 2}'], "0"),
])
def test_a_repeated_id_is_refused_with_output(lines, repeated, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    message = one_line_error(quill(*GENERATE, "--batch", source, "--output", out, "-n", "2"), 1)
    assert f"line 2: id {repeated} is also the id of line 1" in message
    assert ids_of(out.read_text()) == Counter([repeated])


@needs_shared
def test_shards_each_with_their_own_file_add_up_to_the_whole_batch(reference, tmp_path):
    source, expected = reference
    parts = ""
    for k in range(3):
        out = tmp_path / f"part{k}.jsonl"
        assert quill(*GENERATE, "--batch", source, "--shard", f"{k}/3", "--output", out).returncode in (0, 1)
        parts += out.read_text()
    assert comparable(parts) == comparable(expected)


@needs_shared
def test_sigkill_at_20_random_moments_then_resume_loses_and_repeats_nothing(reference, tmp_path):
    """SIGKILL lands at seeded random delays after the start (at once included), wherever the
    run then is: loading, generating, or inside a write. Each kill is followed by a --resume.
    A run that ends before its kill is checked, and the batch starts again from an empty file,
    until 20 kills have landed; the run that finishes after the last kill is checked too."""
    source, expected = reference
    out = tmp_path / "out.jsonl"
    command = [QUILL, *GENERATE, "--batch", str(source), "--output", str(out), "--resume"]
    started = time.monotonic()
    assert subprocess.run(command, capture_output=True, timeout=600).returncode == 1
    whole = time.monotonic() - started
    out.unlink()
    rng = random.Random(20)
    kills = completions = 0
    while kills < 20:
        delay = 0.0 if kills % 7 == 0 else rng.uniform(0, whole / 4)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=600)
        assert stdout == b""
        if process.returncode == -signal.SIGKILL:
            kills += 1
            continue
        assert process.returncode in (0, 1), stderr  # 1 when this run met the bad line
        assert comparable(out.read_text()) == comparable(expected)
        completions += 1
        out.unlink()
    print(f"{kills} kills, {completions} runs completed between them, a whole run {whole:.2f} s")
    result = subprocess.run(command, capture_output=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr
    final = out.read_text()
    assert max(ids_of(final).values()) == 1 and len(ids_of(final)) == 61
    assert comparable(final) == comparable(expected)
