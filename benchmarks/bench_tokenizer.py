"""BPE training time and tiktoken encoding speed on the real corpora.

    python benchmarks/bench_tokenizer.py [--corpora tweets,movie_reviews] [--megabytes 4]
                                         [--vocab-size 2048] [--repeats 3] [--quick] [--json PATH]

For each corpus, its first `--megabytes` MB of text (UTF-8, whole documents; the tweets
are 3.4 MB in all) train a `--vocab-size` vocabulary with `minirl.tokenizer.train_bpe`,
which keeps word counts and updates pair counts incrementally, so a merge costs
the words that hold the pair, not a recount of the corpus. Then the trained ranks encode
the same text through tiktoken (`Tokenizer.encode_batch`). Times are medians over `--repeats`.
`--quick` trains a 300-token vocabulary on minirl's synthetic corpus (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import tiktoken

from minirl.data import load_corpus, synthetic_corpus
from minirl.table import format_table
from minirl.tokenizer import Tokenizer, train_bpe


def first_megabytes(texts: list[str], megabytes: float) -> list[str]:
    """The leading documents of `texts` whose UTF-8 sizes sum to at most `megabytes` MB."""
    budget, kept = megabytes * 1e6, []
    for text in texts:
        budget -= len(text.encode("utf-8"))
        if budget < 0:
            break
        kept.append(text)
    return kept


def bench_corpus(texts: list[str], vocab_size: int, repeats: int) -> dict:
    train_times, ranks = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        ranks = train_bpe(texts, vocab_size)
        train_times.append(time.perf_counter() - t0)
    tok = Tokenizer(ranks)
    encode_times, ids = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        ids = tok.encode_batch(texts)
        encode_times.append(time.perf_counter() - t0)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(row) for row in ids)
    return {"documents": len(texts), "megabytes": n_bytes / 1e6, "vocab_size": tok.vocab_size,
            "train_s": statistics.median(train_times), "encode_s": statistics.median(encode_times),
            "tokens": n_tokens, "bytes_per_token": n_bytes / n_tokens}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", default="tweets,movie_reviews", help="comma list of corpus names")
    parser.add_argument("--megabytes", type=float, default=4.0, help="train on each corpus's first this many MB")
    parser.add_argument("--vocab-size", type=int, default=2048, help="vocabulary size, <|endoftext|> included")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions; the median is reported")
    parser.add_argument("--quick", action="store_true", help="synthetic corpus, 300 tokens, one repetition")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.megabytes <= 0 or args.vocab_size < 258:
        parser.error(f"need --repeats >= 1, --megabytes > 0 and --vocab-size >= 258 (256 bytes, one merge, "
                     f"<|endoftext|>); got {args.repeats}, {args.megabytes} and {args.vocab_size}")
    if args.quick:
        sources, vocab_size, repeats = {"synthetic": synthetic_corpus().texts}, 300, 1
    else:
        sources, vocab_size, repeats = {}, args.vocab_size, args.repeats
        for name in args.corpora.split(","):
            try:
                sources[name] = first_megabytes(load_corpus(name).texts, args.megabytes)
            except (ImportError, ValueError, FileNotFoundError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            if not sources[name]:
                print(f"error: the first {args.megabytes} MB of {name!r} hold no whole document; "
                      "raise --megabytes", file=sys.stderr)
                return 2
    results = {name: bench_corpus(texts, vocab_size, repeats) for name, texts in sources.items()}
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "tiktoken": tiktoken.__version__}
    print(f"machine: {machine['processor']}, {machine['cpu_count']} CPUs, tiktoken {machine['tiktoken']}\n")
    rows = [[name, f"{r['documents']:,}", f"{r['megabytes']:.2f} MB", f"{r['vocab_size']:,}",
             f"{r['train_s']:.2f} s", f"{r['megabytes'] / r['encode_s']:.1f} MB/s", f"{r['bytes_per_token']:.2f}"]
            for name, r in results.items()]
    print(format_table(rows, ["corpus", "documents", "text", "vocab", "BPE training", "tiktoken encode",
                              "bytes/token"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "repeats": repeats, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
