#!/usr/bin/env python3
"""Writes a GGUF file that carries a SentencePiece vocabulary the way llama.cpp's converter
stores one (tokenizer.ggml.model "llama", tokens, scores, token types, special ids,
add_space_prefix, add_bos_token), and beside it a JSON of what the `sentencepiece` package
gives with the original .model for a set of varied strings (ids and decoded text). The Swift
tests build a tokenizer from the GGUF alone and must give the same ids and text.

    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf sentencepiece numpy protobuf
    /tmp/gguf-venv/bin/python scripts/make_gguf_tokenizer_fixture.py      # the committed fixture
    /tmp/gguf-venv/bin/python scripts/make_gguf_tokenizer_fixture.py \\
        --model ../shared/models/llama2-tokenizer.model --out /tmp/llama2-vocab   # elsewhere

The default run also copies the .gguf into Tests/Fuzz/corpus/gguf as a fuzz seed.
Deterministic: the same package versions write the same bytes. Token types follow llama.cpp's
`_create_vocab_sentencepiece`: unknown, control, unused and byte pieces keep their kind and
everything else (user-defined pieces included) is written as normal (1).
"""
import argparse
import json
import shutil
from pathlib import Path

from gguf import GGUFWriter, TokenType
from sentencepiece import SentencePieceProcessor
from sentencepiece import sentencepiece_model_pb2

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "Tests" / "QuillTests" / "Fixtures" / "gguf"
SEEDS = ROOT / "Tests" / "Fuzz" / "corpus" / "gguf"

# Spaces (leading, trailing, repeated), newlines and tabs, digits, accents, other scripts,
# emoji and rare characters (byte fallback where the vocabulary has byte pieces), text that
# looks like special pieces, and SentencePiece's own space symbol.
STRINGS = [
    "",
    " ",
    "   ",
    "Once upon a time",
    "Once upon a time, there was a little girl named Lily.",
    " leading space",
    "trailing space ",
    "two  spaces and   three",
    "line one\nline two",
    "\n",
    "\n\nblank lines\n\n",
    "tab\tseparated\tvalues",
    "\r\nwindows line end",
    "1234567890",
    "The year 2024, 3.14159 and -42.",
    "Tom said, \"Hello!\" and Sue said 'hi'.",
    "a-b_c/d\\e|f~g`h^i",
    "héllo wörld, ça va? naïve café",
    "Ελληνικά και русский текст",
    "日本語のテキストです。",
    "中文，标点！",
    "한국어 문장",
    "emoji 🙂 and 🐶🐱",
    "👩‍👩‍👧 family (joined)",
    "mixed: aé日🙂\n",
    "<s> and </s> and <unk> as text",
    "<0x41> is a byte piece's name",
    "\u2581 is SentencePiece's space symbol",
    "zero\u200bwidth space and \ufeff BOM",
    "Tom and Lily played with the ball in the park. They were very happy.",
    "ALL CAPS SHOUTING!!!",
]


def token_type(sp, token_id):
    """The token type llama.cpp's converter writes for a piece."""
    if sp.IsUnknown(token_id):
        return TokenType.UNKNOWN
    if sp.IsControl(token_id):
        return TokenType.CONTROL
    if sp.IsUnused(token_id):
        return TokenType.UNUSED
    if sp.IsByte(token_id):
        return TokenType.BYTE
    return TokenType.NORMAL


def write_gguf(model_path, sp, out_path):
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_path.read_bytes())
    n = sp.vocab_size()
    writer = GGUFWriter(str(out_path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([sp.IdToPiece(i).encode("utf-8") for i in range(n)])
    writer.add_token_scores([sp.GetScore(i) for i in range(n)])
    writer.add_token_types([int(token_type(sp, i)) for i in range(n)])
    writer.add_bos_token_id(sp.bos_id())
    writer.add_eos_token_id(sp.eos_id())
    writer.add_unk_token_id(sp.unk_id())
    if sp.pad_id() >= 0:
        writer.add_pad_token_id(sp.pad_id())
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return proto


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "tinystories.model")
    parser.add_argument("--out", type=Path, default=FIXTURES, help="folder for NAME-vocab.gguf and NAME-vocab.json")
    args = parser.parse_args()

    sp = SentencePieceProcessor(model_file=str(args.model))
    name = args.model.stem
    args.out.mkdir(parents=True, exist_ok=True)
    gguf_path = args.out / f"{name}-vocab.gguf"
    proto = write_gguf(args.model, sp, gguf_path)

    cases = []
    for text in STRINGS:
        ids = sp.encode(text)
        cases.append({"text": text, "ids": ids, "decoded": sp.decode(ids)})
    expected = {
        "model": args.model.name,
        "gguf": gguf_path.name,
        "model_type": sentencepiece_model_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type),
        "vocab_size": sp.vocab_size(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(),
        "pad_id": sp.pad_id(),
        "byte_fallback": proto.trainer_spec.byte_fallback,
        "add_dummy_prefix": proto.normalizer_spec.add_dummy_prefix,
        "remove_extra_whitespaces": proto.normalizer_spec.remove_extra_whitespaces,
        "normalizer": proto.normalizer_spec.name,
        "pieces": [sp.IdToPiece(i) for i in range(sp.vocab_size())],
        "cases": cases,
    }
    json_path = args.out / f"{name}-vocab.json"
    json_path.write_text(json.dumps(expected, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {gguf_path} ({gguf_path.stat().st_size} bytes) and {json_path}")
    if args.out == FIXTURES:
        shutil.copyfile(gguf_path, SEEDS / gguf_path.name)


if __name__ == "__main__":
    main()
