"""The default model's corpus and its split into training and held-out stories. No torch here, so
scripts that only read the split (streaming_perplexity.py) run without it.
"""
import math
import os

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "..", "shared", "corpora", "tinystories-sample.txt")
SEPARATOR = "<|endoftext|>"
HELDOUT_FRACTION = 0.05


def read_stories(path=CORPUS):
    """Stories in file order. A story is the text between separator lines,
    with leading and trailing whitespace (the newlines around it) removed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    stories, current = [], []
    for line in text.split("\n"):
        if line == SEPARATOR:
            stories.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    tail = "\n".join(current).strip()
    if tail:
        stories.append(tail)
    return [s for s in stories if s]


def split_stories(stories):
    """The last 5% of stories (in file order) are held out, never trained on."""
    n_heldout = int(math.ceil(len(stories) * HELDOUT_FRACTION))
    return stories[:-n_heldout], stories[-n_heldout:]
