"""Trains the default Quill model (llama2.c Llama architecture) on the training stories,
exports it as a llama2.c version 1 checkpoint and writes the Swift test fixture.

Deterministic for a given seed and thread count (torch CPU, 2 threads)."""
import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from common import (BOS, REPO, Config, Llama, copy_weights, export_v1, read_checkpoint, read_stories,  # noqa: E402
                    score_stories, split_stories, story_positions_and_mask)

FIXTURE_TEXT = "Once upon a time, there was a little dog"


def build_stream(sp, stories):
    """Stories as one stream: [BOS] + ids of story 1, [BOS] + ids of story 2, ...
    Returns the stream and the offsets of each story's BOS."""
    ids, starts = [], []
    for s in stories:
        starts.append(len(ids))
        ids.append(BOS)
        ids.extend(sp.encode(s))
    return np.array(ids, dtype=np.int64), np.array(starts, dtype=np.int64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(REPO, "models", "tinystories.model"))
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=352)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--init", default=None,
                    help="start from this llama2.c checkpoint instead of random weights (same shape; "
                         "its seq_len may differ: the run trains at --seq-len)")
    ap.add_argument("--init-report", default=None,
                    help="the training report of --init's run, kept in this run's report as 'init_report'")
    ap.add_argument("--separate-stories", action="store_true",
                    help="each story in a window attends only to itself, from position 0 (as in generation)")
    ap.add_argument("--dev", type=int, default=0,
                    help="hold this many of the last training stories out for monitoring (trials)")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--monitor-heldout", action="store_true",
                    help="also print held-out scores at --eval-every (information only: no "
                         "choice during the run depends on them)")
    ap.add_argument("--out", default=os.path.join(REPO, "models", "tinystories.bin"))
    ap.add_argument("--fixture", default=os.path.join(REPO, "Tests", "QuillTests", "Fixtures",
                                                      "default-model-logits.json"))
    ap.add_argument("--report", default=os.path.join(REPO, "models", "training-report.json"))
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()

    sp = spm.SentencePieceProcessor(model_file=args.tokenizer)
    train_stories, heldout_stories = split_stories(read_stories())
    dev_stories = []
    if args.dev:
        train_stories, dev_stories = train_stories[:-args.dev], train_stories[-args.dev:]
    stream, starts = build_stream(sp, train_stories)
    T = args.seq_len
    # Each sample starts at a story's BOS (as generation does) and runs on through the
    # following stories for T+1 tokens.
    starts = starts[starts + T + 1 <= len(stream)]
    print(f"train stories {len(train_stories)}, tokens {len(stream)}, dev stories {len(dev_stories)}",
          flush=True)

    cfg = Config(args.dim, args.hidden, args.layers, args.heads, args.kv_heads,
                 sp.get_piece_size(), T, shared_classifier=True, dropout=args.dropout)
    model = Llama(cfg)
    g = torch.Generator().manual_seed(args.seed)
    model.init_weights(g)
    init = None
    if args.init:
        init_cfg, weights = read_checkpoint(args.init)
        init_cfg.seq_len, init_cfg.dropout = cfg.seq_len, cfg.dropout
        if init_cfg.as_dict() != cfg.as_dict():
            sys.exit(f"{args.init}: shape {init_cfg.as_dict()} is not the run's {cfg.as_dict()}")
        copy_weights(model, weights)
        with open(args.init, "rb") as f:
            init = dict(sha256=hashlib.sha256(f.read()).hexdigest())
        if args.init_report:
            with open(args.init_report) as f:
                init["init_report"] = json.load(f)
        print(f"weights from {args.init} (sha256 {init['sha256']})", flush=True)
    print(f"config {cfg.as_dict()}, parameters {model.n_params()}", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * min(1.0, p)))

    offsets = np.arange(T + 1)
    history = []
    tl, tn, tstart = 0.0, 0, time.time()
    for step in range(args.steps):
        rows = stream[rng.choice(starts, size=args.batch)[:, None] + offsets]
        batch = torch.from_numpy(rows)
        x, y = batch[:, :-1], batch[:, 1:]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        model.train()
        logits = model(x, *story_positions_and_mask(x)) if args.separate_stories else model(x)
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tl += loss.item(); tn += 1
        if (step + 1) % 50 == 0 or step == 0:
            dt = time.time() - tstart
            print(f"step {step + 1}/{args.steps} loss {tl / tn:.4f} lr {lr_at(step):.2e} "
                  f"{tn * args.batch * T / dt:.0f} tok/s elapsed {time.time() - t0:.0f}s", flush=True)
            tl, tn, tstart = 0.0, 0, time.time()
        if dev_stories and ((step + 1) % args.eval_every == 0 or step + 1 == args.steps):
            nll, n, nb = score_stories(model, sp, dev_stories)
            print(f"  dev step {step + 1}: loss/token {nll / n:.4f} bits/byte "
                  f"{nll / math.log(2) / nb:.4f}", flush=True)
            history.append(dict(step=step + 1, dev_loss=nll / n, dev_bpb=nll / math.log(2) / nb))
        if args.monitor_heldout and ((step + 1) % args.eval_every == 0 or step + 1 == args.steps):
            nll, n, nb = score_stories(model, sp, heldout_stories)
            print(f"  held-out step {step + 1}: loss/token {nll / n:.4f} bits/byte "
                  f"{nll / math.log(2) / nb:.4f}", flush=True)
    train_seconds = time.time() - t0
    model.eval()

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    export_v1(model, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)", flush=True)

    tokens = [BOS] + sp.encode(FIXTURE_TEXT)
    with torch.no_grad():
        logits = model(torch.tensor([tokens]))[0].float().numpy()
    os.makedirs(os.path.dirname(args.fixture), exist_ok=True)
    with open(args.fixture, "w") as f:
        rows = ",\n".join("[" + ",".join(repr(float(np.float32(v))) for v in row) + "]"
                          for row in logits)
        # repr of a float32 widened to double round-trips the float32 exactly
        f.write('{"model": "models/tinystories.bin",\n "text": %s,\n "tokens": %s,\n "logits": [\n%s]}\n'
                % (json.dumps(FIXTURE_TEXT), json.dumps(tokens), rows))
    print(f"wrote {args.fixture} ({len(tokens)} tokens)", flush=True)

    report = dict(config=cfg.as_dict(), parameters=model.n_params(),
                  file_bytes=os.path.getsize(args.out), seed=args.seed, steps=args.steps,
                  batch=args.batch, seq_len=T, tokens_seen=args.steps * args.batch * T,
                  train_stories=len(train_stories), train_tokens=int(len(stream)),
                  lr=args.lr, min_lr=args.min_lr, warmup=args.warmup, weight_decay=args.wd,
                  dropout=args.dropout, separate_stories=args.separate_stories, init=init, train_seconds=round(train_seconds, 1), dev=history)
    with open(args.report, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
