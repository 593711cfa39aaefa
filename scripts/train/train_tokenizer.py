"""Trains the SentencePiece BPE tokenizer on the training stories (never the held-out 5%)."""
import argparse
import os
import sys

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(__file__))
from common import REPO, read_stories, split_stories  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--out", default=os.path.join(REPO, "models", "tinystories"))
    args = ap.parse_args()
    train, _ = split_stories(read_stories())
    # Sentences come from an iterator and the model is written through model_writer, so the
    # .model file records no file paths and is byte-for-byte reproducible.
    # SentencePiece learns from lines; blank lines are skipped.
    lines = [line for story in train for line in story.split("\n") if line.strip()]
    with open(args.out + ".model", "wb") as model_file:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model_file, model_type="bpe",
            vocab_size=args.vocab, byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            normalization_rule_name="identity", add_dummy_prefix=True,
            remove_extra_whitespaces=False, split_digits=True, character_coverage=1.0,
            allow_whitespace_only_pieces=True, max_sentence_length=16384,
            self_test_sample_size=0, num_threads=2, minloglevel=2)
    print(f"wrote {args.out}.model (vocab {args.vocab})")


if __name__ == "__main__":
    main()
