"""Do the default model's stories end by themselves, and how many words do they make up?

Runs the release quill binary the way `make run` does (its prompt, its -n, the shipped model) at
--temp 0.8 for seeds 1..20 with --json, and counts
  - stories that stop because the model emitted the end-of-story token (stop_reason "eos"),
    as opposed to hitting -n ("length") or a full context window ("context");
  - made-up words: words of the story (lowercased runs of letters, with apostrophes inside a
    word such as "didn't" or "lily's") that never occur in the training split of the corpus.
Writes models/story-check.json. Usage (repository root, after `swift build -c release`):
    scripts/train/.venv/bin/python scripts/train/story_check.py [--n 640] [--model M --out F]
"""
import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import REPO, read_stories, split_stories  # noqa: E402

# Apostrophes count only between letters, so a quotation mark written as ' is not part of a word.
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words(text):
    return WORD.findall(text.lower())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quill", default=os.path.join(REPO, ".build", "release", "quill"))
    ap.add_argument("--model", default=None, help="a checkpoint other than the shipped one (its tokenizer: "
                                                   "models/tinystories.model)")
    ap.add_argument("--prompt", default="Once upon a time", help="make run's PROMPT")
    ap.add_argument("--n", type=int, default=640, help="make run's -n")
    ap.add_argument("--temp", type=float, default=0.8)
    ap.add_argument("--seeds", type=int, default=20, help="seeds 1..N")
    ap.add_argument("--out", default=os.path.join(REPO, "models", "story-check.json"))
    args = ap.parse_args()

    train, _ = split_stories(read_stories())
    vocabulary = set()
    for story in train:
        vocabulary.update(words(story))

    runs = []
    for seed in range(1, args.seeds + 1):
        cmd = [args.quill, "--json", "-p", args.prompt, "-n", str(args.n), "--temp", str(args.temp),
               "--seed", str(seed)]
        if args.model:
            cmd += ["-m", args.model, "-z", os.path.join(REPO, "models", "tinystories.model")]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout)
        story = args.prompt + result["text"]
        made_up = sorted({w for w in words(story) if w not in vocabulary})
        runs.append(dict(seed=seed, stop_reason=result["stop_reason"],
                         tokens_generated=result["tokens_generated"], words=len(words(story)),
                         made_up_words=made_up, text=story))
        print(f"seed {seed:2d}: {result['stop_reason']:8s} {result['tokens_generated']:4d} tokens, "
              f"{len(words(story))} words, made up: {made_up}", flush=True)

    ended = sum(r["stop_reason"] == "eos" for r in runs)
    made_up_total = sum(len(r["made_up_words"]) for r in runs)
    word_total = sum(r["words"] for r in runs)
    summary = dict(command=f"quill --json -p {json.dumps(args.prompt)} -n {args.n} --temp {args.temp} "
                           f"--seed 1..{args.seeds}",
                   stories=len(runs), ended_with_eos=ended,
                   max_tokens_generated=max(r["tokens_generated"] for r in runs),
                   words=word_total, made_up_words=made_up_total,
                   training_vocabulary_words=len(vocabulary))
    with open(args.out, "w") as f:
        json.dump(dict(summary=summary, runs=runs), f, indent=1)
        f.write("\n")
    print(f"{ended}/{len(runs)} stories ended with the end-of-story token; "
          f"{made_up_total} made-up words (distinct per story) of {word_total} words")


if __name__ == "__main__":
    main()
