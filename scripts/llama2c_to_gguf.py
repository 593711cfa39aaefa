#!/usr/bin/env python3
"""Converts a float32 llama2.c checkpoint (version 0 or 1) and its SentencePiece tokenizer into a
GGUF file for the `llama` architecture, written by llama.cpp's own writer (the PyPI `gguf`
package) with llama.cpp's tensor names and metadata keys, so the result also runs in llama.cpp.

`--type` stores the weight matrices (embedding included) as F16, BF16, Q8_0, Q4_0 or Q5_0, quantized
by the same package; norms stay F32, as llama.cpp keeps them.

llama2.c keeps Meta's interleaved Q/K layout (RoPE pairs adjacent elements), which is what
llama.cpp's `llama` architecture expects, so the tensors are written unchanged.

    python scripts/llama2c_to_gguf.py models/tinystories.bin models/tinystories.model out.gguf
"""
import argparse
import struct
import sys

import numpy as np

import gguf
import sentencepiece


def read_llama2c(path):
    data = open(path, "rb").read()
    magic = struct.unpack_from("<I", data, 0)[0]
    if magic == 0x616B3432:
        version, dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<8i", data, 4)
        if version != 1:
            sys.exit(f"{path}: version {version}; only float32 versions 0 and 1 convert")
        shared = data[36] != 0
        offset = 256
        order = ["rms_att", "rms_ffn", "rms_final", "embedding", "wq", "wk", "wv", "wo", "w1", "w2", "w3"]
    else:
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", data, 0)
        shared = vocab > 0
        vocab = abs(vocab)
        offset = 28
        order = ["embedding", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final", "freq_cis"]
    head = dim // heads
    kv_dim = kv_heads * head
    shapes = {
        "embedding": (vocab, dim), "rms_att": (layers, dim), "rms_ffn": (layers, dim), "rms_final": (dim,),
        "wq": (layers, dim, dim), "wk": (layers, kv_dim, dim), "wv": (layers, kv_dim, dim), "wo": (layers, dim, dim),
        "w1": (layers, hidden, dim), "w2": (layers, dim, hidden), "w3": (layers, hidden, dim),
        "freq_cis": (2, seq_len, head // 2), "wcls": (vocab, dim),
    }
    tensors = {}
    for name in order + ([] if shared else ["wcls"]):
        count = int(np.prod(shapes[name]))
        tensors[name] = np.frombuffer(data, dtype="<f4", count=count, offset=offset).reshape(shapes[name])
        offset += 4 * count
    if offset != len(data):
        sys.exit(f"{path}: {len(data)} bytes but the header implies {offset}")
    config = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab, seq_len=seq_len)
    return config, tensors, shared


def write_hyperparameters(writer, *, dim, hidden, layers, heads, kv_heads, context, vocab, rope_theta, norm_eps):
    """The `llama.*` keys llama.cpp reads for the architecture (shared with export.py)."""
    writer.add_context_length(context)
    writer.add_embedding_length(dim)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(hidden)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(dim // heads)
    writer.add_rope_freq_base(rope_theta)
    writer.add_layer_norm_rms_eps(norm_eps)
    writer.add_vocab_size(vocab)


def write_tokenizer(writer, tokenizer_path, vocab):
    sp = sentencepiece.SentencePieceProcessor(model_file=tokenizer_path)
    if sp.get_piece_size() != vocab:
        sys.exit(f"{tokenizer_path}: {sp.get_piece_size()} pieces for a vocabulary of {vocab}")
    tokens, scores, types = [], [], []
    for i in range(vocab):
        tokens.append(sp.id_to_piece(i).encode("utf-8"))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            kind = gguf.TokenType.UNKNOWN
        elif sp.is_control(i):
            kind = gguf.TokenType.CONTROL
        elif sp.is_unused(i):
            kind = gguf.TokenType.UNUSED
        elif sp.is_byte(i):
            kind = gguf.TokenType.BYTE
        else:
            kind = gguf.TokenType.NORMAL
        types.append(kind)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    for setter, token_id in [(writer.add_bos_token_id, sp.bos_id()), (writer.add_eos_token_id, sp.eos_id()),
                             (writer.add_unk_token_id, sp.unk_id()), (writer.add_pad_token_id, sp.pad_id())]:
        if token_id >= 0:
            setter(token_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)


TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q5_0"]


def add_matrix(writer, name, array, type_name):
    """A weight matrix (rows, cols) in `type_name`, quantized by the gguf package."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if type_name == "F32":
        writer.add_tensor(name, array)
        return
    qtype = gguf.GGMLQuantizationType[type_name]
    writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("tokenizer", help="SentencePiece .model, or 'none' to write no vocabulary (fuzz seeds)")
    parser.add_argument("output")
    parser.add_argument("--norm-eps", type=float, default=1e-5, help="RMSNorm epsilon (llama2.c's run.c: 1e-5)")
    parser.add_argument("--type", choices=TYPES, default="F32", help="storage of the weight matrices")
    args = parser.parse_args()
    config, t, shared = read_llama2c(args.checkpoint)
    writer = gguf.GGUFWriter(args.output, "llama")
    writer.add_name("llama2.c checkpoint")
    write_hyperparameters(writer, dim=config["dim"], hidden=config["hidden"], layers=config["layers"],
                          heads=config["heads"], kv_heads=config["kv_heads"], context=config["seq_len"],
                          vocab=config["vocab"], rope_theta=10000.0, norm_eps=args.norm_eps)
    writer.add_file_type({"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
                          "BF16": gguf.LlamaFileType.MOSTLY_BF16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                          "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0, "Q5_0": gguf.LlamaFileType.MOSTLY_Q5_0}[args.type])
    if args.tokenizer != "none":
        write_tokenizer(writer, args.tokenizer, config["vocab"])
    add_matrix(writer, "token_embd.weight", t["embedding"], args.type)
    for layer in range(config["layers"]):
        for name, key in [("attn_norm", "rms_att"), ("attn_q", "wq"), ("attn_k", "wk"), ("attn_v", "wv"),
                          ("attn_output", "wo"), ("ffn_norm", "rms_ffn"), ("ffn_gate", "w1"), ("ffn_down", "w2"),
                          ("ffn_up", "w3")]:
            if key.startswith("rms"):
                writer.add_tensor(f"blk.{layer}.{name}.weight", np.ascontiguousarray(t[key][layer]))
            else:
                add_matrix(writer, f"blk.{layer}.{name}.weight", t[key][layer], args.type)
    writer.add_tensor("output_norm.weight", np.ascontiguousarray(t["rms_final"]))
    if not shared:
        add_matrix(writer, "output.weight", t["wcls"], args.type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
