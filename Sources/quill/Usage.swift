let quillVersion = "0.1.0"

let usageText = """
usage: quill [options] [PROMPT]
       quill logits -m MODEL --ids 1,2,3

Generates text from a llama2.c checkpoint. The prompt comes from PROMPT, -p, -f, or stdin
when none is given and stdin is not a terminal. Generated text goes to stdout; errors and
--verbose statistics go to stderr.

model:
  -m, --model FILE        checkpoint (default: $QUILL_MODEL, else models/tinystories.bin)
  -z, --tokenizer FILE    SentencePiece .model (default: MODEL's stem + .model beside it,
                          else tokenizer.model in the same folder)
prompt:
  -p, --prompt TEXT       the prompt ('-' reads stdin)
  -f, --file FILE         read the prompt from FILE ('-' is stdin); one final newline is dropped
generation:
  -n, --n-predict N       new tokens to generate (default -1: until end of story or context)
  --temp T                temperature, 0 = greedy (default 0.8)
  --top-k K               keep the K most likely tokens, 0 = off (default 40)
  --top-p P               nucleus sampling in (0, 1], 1 = off (default 0.95)
  --min-p P               drop tokens below P × the best one's probability, 0 = off (default 0.05)
  -s, --seed N            random seed (default -1: random, reported by --verbose)
performance:
  -t, --threads N         threads (default: physical cores)
  -b, --batch-size N      prompt tokens per forward block (default 64)
other:
  --verbose               load time, tokens/s, seed and stop reason on stderr
  -h, --help              this help
  --version               the version

Sampling order: top-k → top-p → min-p → temperature → draw.
Exit status: 0 success, 1 error, 2 usage error, 130 interrupted (Ctrl-C).

"""
