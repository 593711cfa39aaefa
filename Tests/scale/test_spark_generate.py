"""scripts/spark_generate.py in Spark's local mode (issue #14): 200 seeded requests through Spark
give exactly the lines of one `quill --batch` run (same ids, same text, in input order), and a
task whose first attempt fails after writing part of its results is retried without any result
twice. Run by `make test-scale` (PySpark and a Java runtime in their own venv)."""

import json
import os
import random
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QUILL = os.environ.get("QUILL_BIN", str(REPO / ".build" / "debug" / "quill"))
SHARED = REPO.parent / "shared" / "models"
STORIES = SHARED / "stories260K.bin"
TOKENIZER = SHARED / "tok512.model"
# -s: the seed of the plain-text lines (the JSON ones carry their own).
QUILL_FLAGS = ["-m", str(STORIES), "-z", str(TOKENIZER), "-n", "24", "--parallel", "4", "-s", "7"]
SCRIPT = REPO / "scripts" / "spark_generate.py"

pytestmark = pytest.mark.skipif(not STORIES.exists(), reason="../shared/models/stories260K.bin not found")


def prompts(count=200, seed=2014):
    """Seeded requests: JSON with and without ids (each with its own seed, so the text is
    reproducible), plain-text lines, a blank line (no id, not a request) and one bad line (an
    error object)."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        request = {"prompt": rng.choice(["Once upon a time", "The cat", "Lily and Tom", "One day, a bird"]),
                   "seed": rng.randrange(1 << 32), "n_predict": rng.randint(2, 24)}
        if i % 2 == 0:
            request["id"] = f"p{i}"
        lines.append(json.dumps(request) if i % 10 != 9 else request["prompt"])
    lines.insert(77, "")
    lines.insert(123, '{"prompt": "x", "temp": -1}')
    return "\n".join(lines) + "\n"


def without_timings(line):
    value = json.loads(line)
    value.pop("ms_prompt", None)
    value.pop("ms_generate", None)
    return value


def spark_results(folder):
    """The result lines of a saveAsTextFile folder, part files in order."""
    assert (folder / "_SUCCESS").exists()
    return [line for part in sorted(folder.glob("part-*")) for line in part.read_text().splitlines()]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """(prompt file, the results of one plain `quill --batch` run)."""
    folder = tmp_path_factory.mktemp("spark")
    source = folder / "prompts.jsonl"
    source.write_text(prompts())
    result = subprocess.run([QUILL, *QUILL_FLAGS, "--batch", str(source)], capture_output=True, timeout=600)
    assert result.returncode == 1, result.stderr  # the bad line
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 201
    return source, lines


def run_spark(source, out, quill, master="local[2]"):
    return subprocess.run([sys.executable, str(SCRIPT), str(source), str(out), "--master", master,
                           "--partitions", "4", "--quill", str(quill), "--", *QUILL_FLAGS],
                          capture_output=True, timeout=900)


def test_spark_gives_the_lines_of_one_quill_batch_run(batch, tmp_path):
    source, expected = batch
    result = run_spark(source, tmp_path / "out", QUILL)
    assert result.returncode == 1, result.stderr.decode()[-3000:]  # the bad line's error object
    got = spark_results(tmp_path / "out")
    assert [without_timings(line) for line in got] == [without_timings(line) for line in expected]
    ids = [json.loads(line)["id"] for line in got]
    assert len(set(map(json.dumps, ids))) == len(ids) == 201
    assert 1 in ids and "p0" in ids and 200 in ids  # id-less lines' global indexes (200: the last, plain text); an own id


def test_a_task_that_fails_once_is_retried_without_duplicate_output(batch, tmp_path):
    """The first quill started answers 5 lines and then exits 137 (as if killed); Spark (allowed
    2 attempts a task) runs that partition again, and only the second attempt's lines remain."""
    source, expected = batch
    marker = tmp_path / "failed-once"
    wrapper = tmp_path / "quill-fails-once"
    wrapper.write_text(f"""#!/bin/sh
if mkdir '{marker}' 2>/dev/null; then
    head -n 5 | '{QUILL}' "$@"
    exit 137
fi
exec '{QUILL}' "$@"
""")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    result = run_spark(source, tmp_path / "out", wrapper, master="local[2,2]")
    assert result.returncode == 1, result.stderr.decode()[-3000:]
    assert marker.exists()  # the failing attempt did run
    assert b"quill exited with status 137 after 5 of" in result.stderr
    got = spark_results(tmp_path / "out")
    assert [without_timings(line) for line in got] == [without_timings(line) for line in expected]
