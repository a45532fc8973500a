"""Pretrain the tiny GPT on a corpus: train the BPE tokenizer, then next-token prediction.

    python -m minirl.pretrain                      # real tweets, default card, ~minutes on a CPU
    python -m minirl.pretrain --corpus synthetic --train-steps 50 --out out/smoke

Everything lands in --out: the tokenizer ranks (tiktoken format), `ckpt.npz`
(resumable: rerun the same command after a kill and it continues), `metrics.jsonl`,
and `run.json`, the settings of the run, which a rerun must match.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from dataclasses import dataclass

from minirl import backend
from minirl.atomic import write_atomic
from minirl.checkpoint import CheckpointError, check_restorable, check_settings, load_checkpoint, restore
from minirl.cli import add_dataclass_args, from_args
from minirl.data import load_corpus, train_val_split
from minirl.data.tokens import TokenStream
from minirl.folder_lock import FolderLock
from minirl.model import GPT, GPTConfig
from minirl.sampling import generate
from minirl.tokenizer import Tokenizer, ranks_from_text, ranks_to_text
from minirl.train import TrainConfig, train_lm
from minirl.validation import check_ranges


@dataclass
class PretrainConfig:
    corpus: str = "tweets"
    """tweets, movie_reviews, synthetic, or the path of a .txt/.csv/.jsonl file"""
    vocab_size: int = 2048
    """BPE vocabulary size, <|endoftext|> included"""
    val_fraction: float = 0.05
    """share of documents held out for validation loss"""
    seed: int = 0
    """seed for the split, the initialisation and the batches"""
    out: str = "out/pretrain"
    """directory for the tokenizer, checkpoint and logs"""
    backend: str = "numpy"
    """numpy or cupy"""
    samples: int = 3
    """samples printed at each evaluation"""
    sample_tokens: int = 40
    """new tokens per printed sample"""

    def __post_init__(self):
        check_ranges(self, vocab_size="[257, inf)", val_fraction="(0, 1)", seed="[0, inf)", samples="[0, inf)",
                     sample_tokens="[1, inf)")


def _flatten(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in settings.items():
        flat.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return flat


def _check_run_file(out: pathlib.Path, settings: dict) -> None:
    """Refuse to mix two different runs in one directory (that would corrupt the resume)."""
    path = out / "run.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != settings:
            flat_saved, flat_new = _flatten(saved), _flatten(settings)
            diffs = [f"{k} {flat_saved.get(k)} -> {flat_new.get(k)}" for k in sorted(set(flat_saved) | set(flat_new))
                     if flat_saved.get(k) != flat_new.get(k)]
            raise ValueError(f"{out} holds a run with other settings ({'; '.join(diffs)}). "
                             "Use another --out, or delete that directory to start over.")


def print_samples(model, tok, n: int, tokens: int, seed: int) -> list[str]:
    """Unconditional samples from <|endoftext|>, with their own generator (training RNG untouched)."""
    if n <= 0:
        return []
    out = generate(model, [[tok.eot_id]] * n, min(tokens, model.config.block_size - 1),
                   eot_id=tok.eot_id, rng=backend.rng(seed), top_k=50)
    texts = [tok.decode([t for t in r if t != tok.eot_id]) for r in out.responses()]
    for text in texts:
        print(f"  | {text}")
    return texts


def pretrain(run: PretrainConfig, model_cfg: GPTConfig, train_cfg: TrainConfig) -> dict:
    backend.use(run.backend)
    backend.manual_seed(run.seed)
    out = pathlib.Path(run.out)
    if out.exists() and not out.is_dir():
        raise OSError(f"--out {out} is a file, not a directory; pass a directory, e.g. --out out/pretrain.")
    settings = {"run": {k: v for k, v in dataclasses.asdict(run).items() if k not in ("out", "samples", "sample_tokens")},
                "model": model_cfg.to_dict(), "train": dataclasses.asdict(train_cfg)}
    _check_run_file(out, settings)
    t0 = time.perf_counter()
    corpus = load_corpus(run.corpus)  # a bad corpus is refused before --out is touched
    train_docs, val_docs = train_val_split(corpus, run.val_fraction, seed=run.seed)
    with FolderLock(out):
        return _pretrain(run, model_cfg, train_cfg, out, settings, corpus, train_docs, val_docs, t0)


def _pretrain(run: PretrainConfig, model_cfg: GPTConfig, train_cfg: TrainConfig, out: pathlib.Path,
              settings: dict, corpus, train_docs, val_docs, t0: float) -> dict:
    print(f"corpus {corpus.name}: {len(corpus)} documents ({len(train_docs)} train, {len(val_docs)} val)")
    ranks_path = out / "tokenizer.tiktoken"
    out.mkdir(parents=True, exist_ok=True)
    if ranks_path.exists():
        tok = Tokenizer.load(ranks_path)
    else:
        tok = Tokenizer.train(train_docs.texts, run.vocab_size)
        tok.save(ranks_path)
    print(f"tokenizer: {tok.vocab_size} tokens ({time.perf_counter() - t0:.1f}s)")

    model_cfg = dataclasses.replace(model_cfg, vocab_size=tok.vocab_size)
    train_data = TokenStream.from_texts(train_docs.texts, tok, model_cfg.block_size)
    val_data = TokenStream.from_texts(val_docs.texts, tok, model_cfg.block_size)
    model = GPT(model_cfg)
    if (out / "ckpt.npz").exists():  # refused here, before run.json takes this run's settings
        ckpt = load_checkpoint(out / "ckpt.npz")
        check_settings(ckpt, "train_config", dataclasses.asdict(train_cfg), "training")
        check_restorable(ckpt, model, tokenizer_ranks=ranks_to_text(tok.ranks), restore_rng=False)
    write_atomic(out / "run.json", json.dumps(settings, indent=2))
    print(f"model: {model.num_parameters():,} parameters ({model_cfg.n_layer} layers, {model_cfg.n_head} heads, "
          f"n_embd {model_cfg.n_embd}, head_size {model_cfg.head_size}); {len(train_data):,} training tokens")

    def on_eval(step: int, metrics: dict) -> None:
        print(f"\nstep {step}: val loss {metrics['val_loss']:.3f}")
        print_samples(model, tok, run.samples, run.sample_tokens, seed=step)

    history = train_lm(model, train_data, train_cfg, val_data=val_data, checkpoint_path=out / "ckpt.npz",
                       tokenizer=tok, log_path=out / "metrics.jsonl", desc="pretrain", on_eval=on_eval)
    final = history[-1] if history else {}
    return {"out": str(out), "steps": train_cfg.steps, "val_loss": final.get("val_loss"),
            "parameters": model.num_parameters()}


def load_pretrained(directory) -> tuple[GPT, Tokenizer]:
    """The model and tokenizer a `python -m minirl.pretrain --out DIRECTORY` run left behind."""
    path = pathlib.Path(directory) / "ckpt.npz"
    if not path.exists():
        raise FileNotFoundError(f"no pretrained checkpoint at {path}; run `python -m minirl.pretrain --out {directory}`.")
    ckpt = load_checkpoint(path)
    if ckpt.tokenizer_ranks is None:
        raise ValueError(f"{path} carries no tokenizer; it was not written by `python -m minirl.pretrain`.")
    try:
        tok = Tokenizer.from_ranks(ranks_from_text(ckpt.tokenizer_ranks, source=f"{path} (its tokenizer)"))
        model = GPT(GPTConfig(**ckpt.meta["model_config"]))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: its tokenizer or model config is malformed ({e}).") from None
    if tok.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"{path}: its tokenizer has {tok.vocab_size} tokens but its model has "
                              f"{model.config.vocab_size}; the two were not trained together. Rerun "
                              f"`python -m minirl.pretrain --out {directory}` in an empty folder.")
    restore(ckpt, model, restore_rng=False)
    return model, tok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minirl.pretrain", description=__doc__.split("\n")[0])
    add_dataclass_args(parser, PretrainConfig)
    add_dataclass_args(parser, GPTConfig, prefix="model", skip=("vocab_size",))  # the tokenizer's: --vocab-size
    add_dataclass_args(parser, TrainConfig, prefix="train")
    args = parser.parse_args(argv)
    try:
        run = from_args(args, PretrainConfig)
        model_cfg = from_args(args, GPTConfig, "model")
        train_cfg = from_args(args, TrainConfig, "train")
        summary = pretrain(run, model_cfg, train_cfg)
    except (ValueError, OSError, FloatingPointError, backend.BackendError, ImportError) as e:  # CheckpointError too
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to continue from the last checkpoint.", file=sys.stderr)
        return 130
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
