let quillVersion = "0.2.0"

let usageText = """
usage: quill [options] [PROMPT]
       quill --batch FILE [options]
       quill perplexity|tokenize|detokenize|info|quantize|bench|logits ...

Generates text from a llama2.c checkpoint or a GGUF file (llama architecture). The prompt comes from PROMPT, -p, -f, or stdin
when none is given and stdin is not a terminal. Generated text goes to stdout; errors and
--verbose statistics go to stderr.

model:
  -m, --model FILE        llama2.c checkpoint or GGUF file (default: $QUILL_MODEL, else models/tinystories.bin)
  -z, --tokenizer FILE    SentencePiece .model (default: MODEL's stem + .model beside it,
                          else tokenizer.model in the same folder)
prompt:
  -p, --prompt TEXT       the prompt ('-' reads stdin)
  -f, --file FILE         read the prompt from FILE ('-' is stdin); one final newline is dropped
  -e, --escape            turn \\n, \\t, \\\\ in -p/PROMPT into characters (never in files or stdin)
  --echo                  print the prompt before the generated text
generation:
  -n, --n-predict N       new tokens to generate (default -1: until end of story; with --no-context-shift,
                          or until the context is full)
  --temp T                temperature, 0 = greedy (default 0.8)
  --top-k K               keep the K most likely tokens, 0 = off (default 40)
  --top-p P               nucleus sampling in (0, 1], 1 = off (default 0.95)
  --min-p P               drop tokens below P × the best one's probability, 0 = off (default 0.05)
  --repeat-penalty R      penalise recently seen tokens, 1 = off (default 1)
  --repeat-last-n N       tokens the penalty looks back on, -1 = context, 0 = off (default 64)
  -s, --seed N            random seed (default -1: random, reported by --verbose)
  -r, --reverse-prompt S  stop when the text contains S (also --stop; repeatable)
  --ignore-eos            keep generating past end of sequence
context:
  -c, --ctx-size N        KV cache positions, at most the model's context (default: prompt + -n within
                          the context; the context for -n -1 and --batch)
  --keep N                when the cache is full, keep the first N tokens (attention sinks) and drop
                          half of the rest, then go on (default 4); a longer prompt keeps its first N
                          tokens and its end (by default a cache under 6 positions stops when full)
  --no-context-shift      stop when the cache is full; refuse a prompt longer than the cache
output:
  --json                  one JSON object instead of streamed text
  --verbose               load time, tokens/s, seed and stop reason on stderr
batch:
  --batch FILE            one request per line (text, or JSON with "prompt" and options); '-' is stdin
  --parallel N            sequences decoded together (default 8)
  --shard K/N             only lines whose index mod N is K
  --no-progress           no progress line on stderr
interactive and chat (issue #13):
  -i, --interactive       a conversation: one turn a line (stdin, or "> " on a terminal), the KV cache
                          kept between turns; /clear starts over, /bye or Ctrl-D ends, Ctrl-C stops a reply
  --chat, -cnv            -i with turns in the model's chat template (GGUF tokenizer.chat_template)
  --chat-template NAME    chatml, llama2, llama3, zephyr, gemma or phi3 instead of the model's (implies --chat)
  -sys, --system-prompt T the system message of a chat (and of batch lines with "messages")
  --json-stream           one JSON object a token ({"token_id","text","logprob"}), then the --json summary
  --logprobs N            with --json, --json-stream or --batch: each token's log-probability (after penalty
                          and temperature, before truncation), its raw one, and the N most likely alternatives
performance:
  -t, --threads N         threads (default: physical cores)
  -b, --batch-size N      prompt tokens per forward block (default 64)
other:
  -h, --help              this help
  --version               the version

subcommands:
  quill perplexity -m M (-f FILE | --ids 1,2,3 | --ids-file F) [-c N] [--stride N | --stream [--keep 4]]
                   [--json [--per-token]] [--verbose]
                          windows of -c tokens every --stride, or --stream: one rolling cache of -c
                          keeping --keep sinks (StreamingLLM's evaluation)
  quill tokenize [-z TOK | -m M] [TEXT | -f FILE | stdin] [--ids | --pieces | --json] [--no-bos]
  quill detokenize [-z TOK | -m M] [IDS | -f FILE | stdin]
  quill info [-m] M [--json]
  quill quantize IN OUT TYPE [-z TOK]   (or --type TYPE) any model Quill reads → GGUF of TYPE:
                          F32, F16, BF16, Q8_0, Q4_0, Q5_0 (the vocabulary from -z, the one beside IN, or IN's)
  quill quantize IN OUT [--group-size N]   no type: float32 llama2.c → int8 llama2.c (version 2)
  quill bench [--shape 15m|42m|110m|tinyllama | -m M] [--q8 | --type F32|F16|BF16|Q8_0|Q4_0|Q5_0|Q4_K|Q5_K|Q6_K|Q4_K_M]
              [--shape gpt2|qwen2-0.5b|gemma-2b|gemma2-2b|phi3-mini --type T]   other architectures: GGUF only
              [-p 512] [-n 128] [-c N] [-r 5] [-t N] [-b 512] [--parallel 8] [--json]
  quill logits -m M --ids 1,2,3

Sampling order: repetition penalty → top-k → top-p → min-p → temperature → draw.
Exit status: 0 success, 1 error, 2 usage error, 130 interrupted (Ctrl-C).

"""
