"""Interactive and chat use (issue #13), end to end through the binary:

- `--logprobs N` against `quill logits`: each generated token's log-probabilities recomputed in
  numpy from the raw logits of the same ids (log-softmax; for the sampler's distribution, the
  repetition penalty and temperature applied as the README defines them), greedy and sampled;
- `-i` through stdin: turns continue the sequence in the KV cache (each turn feeds only its own
  ids; the greedy reply of a later turn is the argmax of the logits of the whole sequence), and
  through a pseudo-terminal (the prompt marker, Ctrl-C stopping a reply, /bye);
- `--chat`: a GGUF copy of the shipped model whose vocabulary has ChatML's two pieces and whose
  file carries a ChatML template: the ids fed are the rendered template's, with the markers as
  those pieces and the text between encoded by the `sentencepiece` package;
- `--json-stream`: one object a token, then the summary, agreeing with `--json`.
"""

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece

import gguf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import llama2c_to_gguf  # noqa: E402

QUILL = os.environ.get("QUILL_BIN", str(REPO / ".build" / "debug" / "quill"))
MODEL = REPO / "models" / "tinystories.bin"
TOKENIZER = REPO / "models" / "tinystories.model"
# Logits of one sequence differ between Quill's paths (a prompt block, one decoded row, the
# logits command's blocks) only by float32 rounding of sums of a few hundred products: far below
# 1e-4 on this model's logits (|l| < 30). A log-softmax moves by at most twice the largest
# logit change (divided by the temperature), and JSON prints 6 decimals; 2e-3 covers all that.
TOLERANCE = 2e-3


def quill(*arguments, stdin=b"", check=True):
    run = subprocess.run([QUILL, *arguments], input=stdin, capture_output=True, timeout=300)
    if check:
        assert run.returncode == 0, run.stderr.decode()
    return run


def prompt_ids(text, bos=True):
    processor = sentencepiece.SentencePieceProcessor(model_file=str(TOKENIZER))
    return ([1] if bos else []) + processor.encode(text)


def logits_rows(ids, model=MODEL):
    out = json.loads(quill("logits", "-m", str(model), "--ids", ",".join(map(str, ids))).stdout)
    return np.array(out["logits"], dtype=np.float64)


def log_softmax(x):
    shifted = x - x.max()
    return shifted - np.log(np.exp(shifted).sum())


def penalised(row, history, penalty, last_n):
    """The repetition penalty as the README states it: each distinct id among the last `last_n`
    of the sequence has its logit divided by `penalty` when positive, multiplied when not."""
    row = row.copy()
    for i in set(history[-last_n:] if last_n > 0 else history):
        row[i] = row[i] / penalty if row[i] > 0 else row[i] * penalty
    return row


@pytest.mark.parametrize("label, sampling", [
    ("greedy", ["--temp", "0"]),
    ("sampled", ["--temp", "0.7", "-s", "11"]),
    ("sampled with a penalty", ["--temp", "1.3", "-s", "5", "--repeat-penalty", "1.3", "--repeat-last-n", "16"]),
])
def test_logprobs_are_the_log_softmax_of_quill_logits(label, sampling):
    prompt = "Once upon a time"
    result = json.loads(quill("--json", "--logprobs", "5", "-n", "16", *sampling, prompt).stdout)
    ids = prompt_ids(prompt)
    generated = result["token_ids"]
    assert len(result["logprobs"]) == len(generated) > 0
    rows = logits_rows(ids + generated[:-1])
    temperature = float(sampling[1]) or 1.0  # greedy: the distribution at temperature 1
    penalty = float(sampling[sampling.index("--repeat-penalty") + 1]) if "--repeat-penalty" in sampling else 1.0
    last_n = int(sampling[sampling.index("--repeat-last-n") + 1]) if "--repeat-last-n" in sampling else 64
    for i, (token, entry) in enumerate(zip(generated, result["logprobs"])):
        sequence = ids + generated[:i]
        row = rows[len(sequence) - 1]
        raw = log_softmax(row)
        used = log_softmax(penalised(row, sequence, penalty, last_n) / temperature)
        assert entry["token_id"] == token
        assert abs(entry["raw_logprob"] - raw[token]) < TOLERANCE, (label, i)
        assert abs(entry["logprob"] - used[token]) < TOLERANCE, (label, i)
        if label == "greedy":
            assert raw[token] >= raw.max() - TOLERANCE, "greedy takes the most likely token"
        top = entry["top_logprobs"]
        assert len(top) == 5
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        for alternative in top:
            assert abs(alternative["logprob"] - used[alternative["token_id"]]) < TOLERANCE
        # The five listed are the five most likely (up to ties within the tolerance).
        assert top[-1]["logprob"] >= np.sort(used)[-5] - TOLERANCE
        assert len({t["token_id"] for t in top}) == 5


def test_json_stream_is_one_line_a_token_then_the_json_summary():
    arguments = ["--temp", "0.8", "-s", "3", "-n", "12", "Once upon a time"]
    lines = [json.loads(line) for line in quill("--json-stream", *arguments).stdout.decode().splitlines()]
    summary = json.loads(quill("--json", *arguments).stdout)
    *tokens, last = lines
    assert [t["token_id"] for t in tokens] == summary["token_ids"] == last["token_ids"]
    assert "".join(t["text"] for t in tokens) == summary["text"] == last["text"]
    assert all(set(t) == {"token_id", "text", "logprob", "raw_logprob"} for t in tokens)
    with_top = quill("--json-stream", "--logprobs", "2", *arguments).stdout.decode().splitlines()
    assert all(len(json.loads(line)["top_logprobs"]) == 2 for line in with_top[:-1])
    # The token that fills the cache (a run stopped by a full cache) has its line too.
    full = quill("--json-stream", "-c", "12", "--no-context-shift", "--ignore-eos", "Once upon a time").stdout.decode().splitlines()
    *tokens, last = [json.loads(line) for line in full]
    assert last["stop_reason"] == "context"
    assert [t["token_id"] for t in tokens] == last["token_ids"] and len(tokens) == last["tokens_generated"] > 0


def test_interactive_turns_continue_the_cached_sequence():
    turns = b"Once upon a time\nThe dog\n"
    results = [json.loads(line) for line in quill("-i", "--json", "--temp", "0", "-n", "6", stdin=turns).stdout.splitlines()]
    assert len(results) == 2
    first, second = results
    assert first["prompt_token_ids"] == prompt_ids("Once upon a time")
    # The second turn feeds only its own ids (no BOS): the first turn is in the cache.
    assert second["prompt_token_ids"] == prompt_ids("The dog", bos=False)
    sequence = first["prompt_token_ids"] + first["token_ids"] + second["prompt_token_ids"]
    # Stopped by -n, every generated token was fed back: the cache holds them all.
    assert second["stop_reason"] == "length"
    assert second["tokens_cached"] == len(sequence) + len(second["token_ids"])
    # Each greedy token of the second turn is the most likely after the whole sequence so far.
    rows = logits_rows(sequence + second["token_ids"][:-1])
    for i, token in enumerate(second["token_ids"]):
        row = rows[len(sequence) + i - 1]
        assert row[token] >= row.max() - TOLERANCE, i
    # Plain output: one reply a line, the same text.
    text = quill("-i", "--temp", "0", "-n", "6", stdin=turns).stdout.decode()
    assert text == first["text"] + "\n" + second["text"] + "\n"


def test_clear_starts_over_and_bye_ends():
    turns = b"Once upon a time\n/clear\nOnce upon a time\n/bye\nnever read\n"
    results = [json.loads(line) for line in quill("-i", "--json", "--temp", "0", "-n", "5", stdin=turns).stdout.splitlines()]
    assert len(results) == 2
    assert results[0]["token_ids"] == results[1]["token_ids"]
    assert results[0]["prompt_token_ids"] == results[1]["prompt_token_ids"]


def test_a_full_cache_without_shift_is_a_clear_error_and_the_run_goes_on():
    turns = b"Once upon a time\nThe dog ran to the park and played all day long\n/clear\nOnce upon a time\n"
    run = quill("-i", "--json", "--temp", "0", "-n", "4", "-c", "16", "--no-context-shift", stdin=turns, check=False)
    assert run.returncode == 1
    assert b"KV cache is full" in run.stderr and b"/clear" in run.stderr
    assert len(run.stdout.splitlines()) == 2  # the first turn and the one after /clear


@pytest.fixture(scope="module")
def chatml_model(tmp_path_factory):
    """The shipped model as GGUF, with pieces 2046 and 2047 renamed to ChatML's markers (control
    pieces, as a chat model's converter writes them) and a ChatML template in the file."""
    path = tmp_path_factory.mktemp("chat") / "chatml.gguf"
    config, t, _ = llama2c_to_gguf.read_llama2c(str(MODEL))

    class Writer(gguf.GGUFWriter):
        def add_token_list(self, tokens):
            super().add_token_list(tokens[:-2] + [b"<|im_start|>", b"<|im_end|>"])

        def add_token_types(self, types):
            super().add_token_types(types[:-2] + [gguf.TokenType.CONTROL] * 2)

    writer = Writer(str(path), "llama")
    llama2c_to_gguf.write_hyperparameters(writer, dim=config["dim"], hidden=config["hidden"], layers=config["layers"],
                                          heads=config["heads"], kv_heads=config["kv_heads"], context=config["seq_len"],
                                          vocab=config["vocab"], rope_theta=10000.0, norm_eps=1e-5)
    llama2c_to_gguf.write_tokenizer(writer, str(TOKENIZER), config["vocab"])
    writer.add_chat_template("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
                             " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    writer.add_tensor("token_embd.weight", np.ascontiguousarray(t["embedding"]))
    for layer in range(config["layers"]):
        for name, key in [("attn_norm", "rms_att"), ("attn_q", "wq"), ("attn_k", "wk"), ("attn_v", "wv"),
                          ("attn_output", "wo"), ("ffn_norm", "rms_ffn"), ("ffn_gate", "w1"), ("ffn_down", "w2"),
                          ("ffn_up", "w3")]:
            writer.add_tensor(f"blk.{layer}.{name}.weight", np.ascontiguousarray(t[key][layer]))
    writer.add_tensor("output_norm.weight", np.ascontiguousarray(t["rms_final"]))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def chatml_ids(rendered):
    """ChatML text as ids: the markers as pieces 2046/2047, each run between encoded as text."""
    ids = []
    for i, part in enumerate(rendered.split("<|im_start|>")):
        if i > 0:
            ids.append(2046)
        for j, run in enumerate(part.split("<|im_end|>")):
            if j > 0:
                ids.append(2047)
            if run:
                ids += prompt_ids(run, bos=False)
    return ids


def test_chat_feeds_the_templates_ids_turn_by_turn(chatml_model):
    run = quill("-m", str(chatml_model), "--chat", "--json", "--temp", "0", "-n", "5", "-sys", "Be kind",
                stdin=b"Hello\nTell me more\n")
    first, second = [json.loads(line) for line in run.stdout.splitlines()]
    assert first["prompt_token_ids"] == [1] + chatml_ids(
        "<|im_start|>system\nBe kind<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")
    # The reply's tokens are in the cache; the turn closes it and opens the next.
    assert second["prompt_token_ids"] == chatml_ids(
        "<|im_end|>\n<|im_start|>user\nTell me more<|im_end|>\n<|im_start|>assistant\n")
    # --chat-template by hand gives the same ids.
    again = quill("-m", str(chatml_model), "--chat-template", "chatml", "--json", "--temp", "0", "-n", "5", "-sys", "Be kind",
                  stdin=b"Hello\n")
    assert json.loads(again.stdout)["prompt_token_ids"] == first["prompt_token_ids"]


def test_chat_refusals_name_the_choices(chatml_model):
    # The shipped model has no template: the error names the choices.
    run = quill("--chat", stdin=b"Hello\n", check=False)
    assert run.returncode == 1 and b"--chat-template" in run.stderr and b"chatml, llama2" in run.stderr
    assert len(run.stderr.splitlines()) == 1
    # Its vocabulary lacks ChatML's pieces: spelling them as text is refused.
    run = quill("--chat-template", "chatml", stdin=b"Hello\n", check=False)
    assert run.returncode == 1 and b"<|im_start|>" in run.stderr and len(run.stderr.splitlines()) == 1
    run = quill("-m", str(chatml_model), "--chat-template", "vicuna", stdin=b"Hello\n", check=False)
    assert run.returncode == 2 and b"chatml, llama2, llama3, zephyr, gemma, phi3" in run.stderr


def read_until(fd, marker, limit=60):
    """Bytes from the pseudo-terminal until `marker` appears (or the child ends, or `limit` s pass)."""
    out = b""
    while marker not in out:
        ready, _, _ = select.select([fd], [], [], limit)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child has gone
            break
        if not chunk:
            break
        out += chunk
    return out


def test_on_a_terminal_the_prompt_shows_and_ctrl_c_stops_only_the_reply():
    # An endless reply (no -n, past EOS, the cache shifting) that only Ctrl-C ends.
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(QUILL, [QUILL, "-i", "--temp", "0", "--ignore-eos", "-c", "64"])
    try:
        assert b"> " in read_until(fd, b"> ")
        os.write(fd, b"Once upon a time\n")
        assert b"Once upon a time" in read_until(fd, b"there")  # the echo, then the reply streams
        os.write(fd, b"\x03")  # Ctrl-C: the terminal sends SIGINT
        assert b"> " in read_until(fd, b"> ")  # back at the prompt
        os.write(fd, b"/bye\n")
        read_until(fd, b"never")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_batch_messages_use_the_chat_template_and_carry_logprobs(chatml_model):
    conversation = json.dumps({"id": "c", "messages": [{"role": "system", "content": "Be kind"},
                                                        {"role": "user", "content": "Hello"}],
                               "n_predict": 5, "temp": 0, "logprobs": 3})
    lines = (conversation + "\n" + json.dumps({"prompt": "Once upon a time", "n_predict": 5, "temp": 0}) + "\n").encode()
    batch = [json.loads(line) for line in quill("-m", str(chatml_model), "--batch", "-", stdin=lines).stdout.splitlines()]
    chat = json.loads(quill("-m", str(chatml_model), "--chat", "--json", "--logprobs", "3", "--temp", "0", "-n", "5",
                            "-sys", "Be kind", stdin=b"Hello\n").stdout)
    # The same ids fed, the same greedy reply, the same log-probabilities.
    assert batch[0]["tokens_prompt"] == len(chat["prompt_token_ids"])
    assert batch[0]["token_ids"] == chat["token_ids"]
    assert batch[0]["logprobs"] == chat["logprobs"]
    assert "logprobs" not in batch[1]
    bad = quill("-m", str(chatml_model), "--batch", "-", check=False,
                stdin=b'{"messages": [{"role": "robot", "content": "x"}]}\n{"prompt": "a", "messages": []}\n')
    errors = [json.loads(line)["error"] for line in bad.stdout.splitlines()]
    assert "role \"robot\"" in errors[0] and "not both" in errors[1]


@pytest.mark.parametrize("arguments, fragment", [
    (["--logprobs", "3", "Once"], b"--logprobs needs --json"),
    (["--json", "--logprobs", "101", "Once"], b"between 0 and 100"),
    (["--json", "--json-stream", "Once"], b"one of --json and --json-stream"),
    (["-i", "--batch", "-"], b"cannot be used with --batch"),
    (["-sys", "Be kind", "Once"], b"--system-prompt needs --chat"),
    (["--chat-template", "vicuna"], b"chatml, llama2, llama3, zephyr, gemma, phi3"),
])
def test_flag_combinations_that_mean_nothing_are_usage_errors(arguments, fragment):
    run = quill(*arguments, check=False)
    assert run.returncode == 2 and fragment in run.stderr, run.stderr
