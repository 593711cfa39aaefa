#!/usr/bin/env python3
"""Batch generation with Apache Spark: each partition of the prompts goes through one
`quill --batch -` process, and the results are written as JSON lines (issue #14).

    spark-submit scripts/spark_generate.py PROMPTS RESULTS [--quill PATH] [--partitions N]
        [--threads N] -- -m MODEL [quill flags: -n, --temp, --top-p, --seed, --parallel, ...]

PROMPTS is any path Spark reads (a file, a folder, a glob, hdfs://, s3a://): one request per
line, plain text or a JSON object, as for `quill --batch`. RESULTS is a folder of part files
(Spark's saveAsTextFile), one JSON line per non-blank input line, in input order, exactly the
lines one `quill --batch PROMPTS` run prints (timings aside): a line without an "id" gets its
index among the input's non-blank lines, and an error names the line as numbered in PROMPTS
(exact when PROMPTS is one file).

Each task gets the threads of its task slot: `-t` is spark.task.cpus (set it to
spark.executor.cores to run one quill per executor with all its cores), unless --threads says
otherwise. A task whose quill exits non-zero for anything but per-line errors (exit 1 with one
result per line) fails, so Spark retries it; a failed attempt's output is discarded by Spark's
commit protocol, so no result is written twice. `--quill` and the `-m`/`-z` paths may name
files shipped with `spark-submit --files`: a path missing on the executor is looked up in
SparkFiles by its file name. Exit status: 0, or 1 when some lines failed (their error objects
are in RESULTS).
"""

import argparse
import json
import os
import subprocess
import sys
import threading

# Flags the script sets itself, or that would make quill's output something else.
RESERVED = {"--batch", "--output", "--resume", "--shard", "-t", "--threads", "-p", "--prompt", "-f", "--file",
            "--json", "--echo"}


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prompts", help="prompts: any path Spark reads (JSONL or text, one request a line)")
    parser.add_argument("results", help="folder to write the JSON-line results to (must not exist)")
    parser.add_argument("--quill", default="quill", help="the quill binary on the executors (default: quill on PATH)")
    parser.add_argument("--partitions", type=int, help="partitions of the prompts (default: Spark's split)")
    parser.add_argument("--threads", type=int, help="quill -t per task (default: spark.task.cpus)")
    parser.add_argument("--master", help="Spark master when run without spark-submit (e.g. local[2])")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a Spark setting when run without spark-submit (repeatable)")
    # The quill flags follow "--" (split here: argparse would read them as its own).
    split = argv.index("--") if "--" in argv else len(argv)
    options = parser.parse_args(argv[:split])
    flags = argv[split + 1:]
    for flag in flags:
        if flag.split("=", 1)[0] in RESERVED:
            parser.error(f"{flag} is set by the script or changes quill's output; drop it from the quill flags")
    options.quill_flags = flags
    if options.threads is not None and options.threads < 1:
        parser.error(f"--threads must be at least 1, got {options.threads}")
    return options


def local_path(path):
    """`path` if it exists here, else the copy `spark-submit --files` shipped (by file name)."""
    if os.path.exists(path):
        return path
    from pyspark import SparkFiles
    shipped = SparkFiles.get(os.path.basename(path))
    return shipped if os.path.exists(shipped) else path


def resolve_flags(flags):
    """The quill flags with model and tokenizer paths resolved on the executor."""
    resolved = list(flags)
    for i, flag in enumerate(resolved[:-1]):
        if flag in ("-m", "--model", "-z", "--tokenizer"):
            resolved[i + 1] = local_path(resolved[i + 1])
    return resolved


def is_blank(line):
    """Quill skips lines of only spaces, tabs and carriage returns (and numbers no id for them)."""
    return line.strip(b" \t\r") == b""


def explicit_id(line):
    """The request's own "id" as JSON text, or None (plain text, no "id", or not JSON quill reads)."""
    if not line.startswith(b"{"):
        return None

    def no_duplicates(pairs):
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate key")  # quill refuses the line, so its id is its index
        return dict(pairs)

    def no_constant(name):
        raise ValueError(name)  # NaN and Infinity are not JSON

    try:
        value = json.loads(line, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict) or "id" not in value:
        return None
    return json.dumps(value["id"], separators=(",", ":"), ensure_ascii=False)


def with_global_id(result, local_index, global_index, line_number, own_id):
    """Quill's result line for the partition's `local_index`-th request, with the id and line
    number it has in the whole input. Quill numbers an id-less line by its place in the
    partition; the line's text is kept byte for byte otherwise."""
    prefix = '{"id":%d,' % local_index
    if own_id != str(local_index) and result.startswith(prefix):
        result = '{"id":%d,' % global_index + result[len(prefix):]
    # Error objects name the line as numbered in quill's input: the partition's non-blank lines.
    value = json.loads(result)
    if "error" in value and value["error"].startswith(f"line {local_index + 1}"):
        value["error"] = f"line {line_number}" + value["error"][len(f"line {local_index + 1}"):]
        result = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return result


def generate_partition(rows, quill, flags, threads, errors):
    """Runs one quill over a partition of (index, (line number, bytes)) rows of non-blank lines and
    yields its result lines with global ids. Raises (failing the task) when quill does not
    answer every line: a crash, a kill, a missing model."""
    rows = list(rows)
    if not rows:
        return
    command = [local_path(quill), "--batch", "-", "--no-progress", "-t", str(threads), *resolve_flags(flags)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def feed():
        # Quill reads while it writes: the lines go in from a thread so neither pipe fills up.
        try:
            for _, (_, line) in rows:
                process.stdin.write(line + b"\n")
            process.stdin.close()
        except BrokenPipeError:
            pass  # quill ended early; its exit status tells why

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    stderr_tail = []  # the last lines quill wrote to stderr, for the failure message

    def drain():
        stderr_tail.extend(process.stderr.read().decode(errors="replace").splitlines()[-5:])

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    results = [line.decode().rstrip("\n") for line in process.stdout]
    status = process.wait()
    feeder.join()
    drainer.join()
    # Exit 1 with one result per line is per-line errors (their objects are in the results);
    # anything else means the partition was not done, and Spark should run it again.
    if status not in (0, 1) or len(results) != len(rows):
        raise RuntimeError(f"quill exited with status {status} after {len(results)} of {len(rows)} results: "
                           + " / ".join(stderr_tail))
    for local_index, ((global_index, (line_number, line)), result) in enumerate(zip(rows, results)):
        fixed = with_global_id(result, local_index, global_index, line_number, explicit_id(line))
        if '"error":' in fixed and "error" in json.loads(fixed):
            errors.add(1)
        yield fixed


def main(argv):
    options = parse_arguments(argv)
    from pyspark import SparkConf, SparkContext
    conf = SparkConf().setAppName("quill batch generation")
    if options.master:
        conf.setMaster(options.master)
    for setting in options.conf:
        key, _, value = setting.partition("=")
        conf.set(key, value)
    sc = SparkContext.getOrCreate(conf)
    threads = options.threads or int(sc.getConf().get("spark.task.cpus", "1"))
    lines = sc.textFile(options.prompts, minPartitions=options.partitions, use_unicode=False)
    # (index among non-blank lines, (line number from 1, bytes)): the index is quill's id for a
    # line without one, the line number what its errors name.
    numbered = lines.zipWithIndex().map(numbered_line)
    requests = numbered.filter(lambda row: not is_blank(row[1])).zipWithIndex().map(lambda pair: (pair[1], pair[0]))
    if options.partitions:
        # zipWithIndex keeps the order; repartitioning by index range keeps it too.
        by_range = _range_partitioner(requests.count(), options.partitions)
        requests = requests.repartitionAndSortWithinPartitions(options.partitions, partitionFunc=by_range)
    errors = sc.accumulator(0)
    quill, flags = options.quill, options.quill_flags
    results = requests.mapPartitions(lambda rows: generate_partition(rows, quill, flags, threads, errors))
    results.saveAsTextFile(options.results)
    failed = errors.value
    if failed:
        print(f"spark_generate: {failed} lines failed; their error objects are in {options.results}", file=sys.stderr)
    sc.stop()
    return 1 if failed else 0


def numbered_line(pair):
    """(line, index from 0) → (line number from 1, line); a UTF-8 byte order mark before the
    first line is not part of it (as in quill)."""
    line, index = pair
    if index == 0 and line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    return index + 1, line


def _range_partitioner(count, partitions):
    """Index → partition, contiguous ranges in order (so the part files stay in input order)."""
    size = max(1, -(-count // partitions))
    return lambda index: min(index // size, partitions - 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
