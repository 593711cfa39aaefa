"""Scores the held-out 5% of stories with the exported default model and with stories260K,
reading both from their llama2.c files, and writes models/evaluation.json.
The scoring definition is in common.score_stories and models/README.md."""
import json
import math
import os
import sys

import sentencepiece as spm
import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import REPO, load_torch, read_stories, score_stories, split_stories  # noqa: E402

SHARED = os.path.join(REPO, "..", "shared", "models")
MODELS = {
    "tinystories (models/tinystories.bin)": (os.path.join(REPO, "models", "tinystories.bin"),
                                             os.path.join(REPO, "models", "tinystories.model")),
    "stories260K (../shared/models/stories260K.bin)": (os.path.join(SHARED, "stories260K.bin"),
                                                       os.path.join(SHARED, "tok512.model")),
}


def main():
    torch.set_num_threads(2)
    _, heldout = split_stories(read_stories())
    results = {}
    for name, (model_path, tok_path) in MODELS.items():
        model = load_torch(model_path)
        sp = spm.SentencePieceProcessor(model_file=tok_path)
        nll, n, nbytes = score_stories(model, sp, heldout)
        results[name] = dict(stories=len(heldout), tokens_scored=n, utf8_bytes=nbytes,
                             loss_per_token_nats=round(nll / n, 4),
                             bits_per_byte=round(nll / math.log(2) / nbytes, 4))
        print(name, results[name], flush=True)
    out = os.path.join(REPO, "models", "evaluation.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    ours, base = (r["bits_per_byte"] for r in results.values())
    print(f"held-out bits per byte: default {ours} vs stories260K {base} -> "
          f"{'goal met' if ours <= base else 'GOAL MISSED'}")


if __name__ == "__main__":
    main()
