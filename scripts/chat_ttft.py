#!/usr/bin/env python3
"""Second turn's time to first token in `quill -i` (the first turn in the KV cache) against a
fresh run of the same whole sequence as one prompt: A, B alternating, median [min, max]."""
import json
import os
import statistics
import subprocess
from pathlib import Path

# Time to first token is the turn's "ms_prompt": from feeding its ids to the logits of its first
# new token, measured inside the process (load time and process start left out of both).
Q = os.environ.get("QUILL_BIN", str(Path(__file__).resolve().parents[1] / ".build" / "release" / "quill"))
turn1 = ("Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. "
         "One day, she saw a big red ball in the park. ") * 13
turn2 = "Then her mom called her home."
common = ["--temp", "0", "-n", "32", "--ignore-eos", "-t", "2"]


def interactive():
    out = subprocess.run([Q, "-i", "--json", *common], input=(turn1 + "\n" + turn2 + "\n").encode(), capture_output=True, check=True).stdout
    a, b = [json.loads(l) for l in out.splitlines()]
    return a, b


def fresh(text):
    return json.loads(subprocess.run([Q, "--json", *common, text], capture_output=True, check=True).stdout)


a, b = interactive()
whole = turn1 + a["text"] + " " + turn2
A, B = [], []
for _ in range(15):
    _, second = interactive(); A.append((second["ms_prompt"], second["tokens_prompt"], second["tokens_cached"]))
    f = fresh(whole); B.append((f["ms_prompt"], f["tokens_prompt"]))


def med(xs):
    return statistics.median(xs), min(xs), max(xs)


print("second turn of -i: tokens fed %d (cache then holds %d): ms to first token median %.2f [%.2f, %.2f]" % ((A[0][1], A[0][2]) + med([x[0] for x in A])))
print("fresh run of the whole sequence: prompt tokens %d: ms to first token median %.2f [%.2f, %.2f]" % ((B[0][1],) + med([x[0] for x in B])))
print("ratio fresh/second-turn per pair: median %.1f [%.1f, %.1f]" % med([b[0] / a[0] for a, b in zip(A, B)]))
