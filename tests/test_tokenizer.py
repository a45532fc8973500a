"""Tests for minirl.tokenizer: BPE training, the rank-file format, tiktoken encoding."""

import random
from collections import Counter

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from minirl.tokenizer import (
    EOT,
    GPT2_SPLIT_PATTERN,
    Tokenizer,
    load_ranks,
    ranks_from_text,
    ranks_to_text,
    save_ranks,
    train_bpe,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs!",
    "I love this song so much, I love it, love love love.",
    "Héllo wörld: naïve café, 東京 and 🙂 emoji too. 12345 67890",
    "  leading spaces, tabs\tand\nnew lines\n\n",
] * 20
TOK = Tokenizer.train(CORPUS, vocab_size=300)


def slow_bpe(texts, vocab_size):
    """Reference trainer: recount every pair of every word before each merge."""
    words = Counter(c.encode() for t in texts for c in regex.findall(GPT2_SPLIT_PATTERN, t))
    seqs = {w: list(w) for w in words}
    token_bytes = [bytes([i]) for i in range(256)]
    ranks = {t: i for i, t in enumerate(token_bytes)}
    while len(ranks) < vocab_size - 1:
        counts = Counter()
        for w, seq in seqs.items():
            for pair in zip(seq, seq[1:]):
                counts[pair] += words[w]
        if not counts:
            break
        # highest count, then the lexicographically smallest (left bytes, right bytes)
        (a, b), n = min(counts.items(), key=lambda kv: (-kv[1], *(token_bytes[t] for t in kv[0])))
        if n < 2:
            break
        merged = token_bytes[a] + token_bytes[b]
        new_id = ranks.setdefault(merged, len(token_bytes))
        if new_id == len(token_bytes):
            token_bytes.append(merged)
        for w, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == (a, b):
                    out.append(new_id)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
    return ranks


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_string_round_trips(text):
    ids = TOK.encode(text)
    assert TOK.decode(ids) == text
    assert TOK.decode_bytes(ids) == text.encode("utf-8")


def test_vocab_layout_and_eot():
    assert TOK.vocab_size == 300 and TOK.eot_id == 299 and len(TOK.ranks) == 299
    assert all(TOK.ranks[bytes([b])] == b for b in range(256))
    assert TOK.eot_id not in TOK.encode(EOT), "user text must not produce the special token"
    assert TOK.encode("hi", eot=True) == TOK.encode("hi") + [TOK.eot_id]
    assert TOK.decode(TOK.encode("hi", eot=True)) == "hi" + EOT


def test_frequent_words_become_one_token():
    assert len(TOK.encode(" love")) == 1
    assert len(TOK.encode(" fox")) == 1
    assert len(TOK.encode("The quick brown fox")) < len(b"The quick brown fox")


def test_training_is_deterministic(tmp_path):
    save_ranks(train_bpe(CORPUS, 300), tmp_path / "a.tiktoken")
    save_ranks(train_bpe(list(CORPUS), 300), tmp_path / "b.tiktoken")
    assert (tmp_path / "a.tiktoken").read_bytes() == (tmp_path / "b.tiktoken").read_bytes()


@pytest.mark.parametrize(
    "texts",
    [
        CORPUS[:4],
        ["aaaa aaa aa a aaaaaaa", "abab abba baab", "aaaa aaa"],
        ["abc abcabc bcabc cab", "xbc abc xab abcc", "ab ab c bc"],
    ],
)
def test_fast_trainer_matches_slow_reference(texts):
    assert list(train_bpe(texts, 330).items()) == list(slow_bpe(texts, 330).items())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abc d", max_size=30), min_size=1, max_size=8))
def test_fast_trainer_matches_slow_reference_random(texts):
    if any(t.strip() for t in texts):
        assert train_bpe(texts, 300) == slow_bpe(texts, 300)


def test_training_stops_when_no_pair_repeats():
    ranks = train_bpe(["abcdef"], vocab_size=1000)
    assert len(ranks) == 256
    assert Tokenizer(ranks).vocab_size == 257


def test_same_rank_file_gives_same_encodings(tmp_path):
    path = tmp_path / "tok.tiktoken"
    TOK.save(path)
    first, second = Tokenizer.load(path), Tokenizer.load(path)
    assert first.ranks == TOK.ranks
    assert first.encode_batch(CORPUS[:4]) == second.encode_batch(CORPUS[:4]) == TOK.encode_batch(CORPUS[:4])
    assert TOK.encode_batch(CORPUS[:4]) == [TOK.encode(t) for t in CORPUS[:4]]
    assert TOK.encode_batch(["a", "b"], eot=True) == [TOK.encode("a", eot=True), TOK.encode("b", eot=True)]
    assert not list(tmp_path.glob("*.tmp")), "the atomic write must not leave its temporary file"


def test_rank_text_round_trip():
    text = ranks_to_text(TOK.ranks)
    assert text.splitlines()[65] == "QQ== 65"  # tiktoken's format: base64(b"A") rank
    assert ranks_from_text(text) == TOK.ranks
    assert Tokenizer.from_ranks(ranks_from_text(text)).encode("the fox") == TOK.encode("the fox")


def test_decode_accepts_arrays_and_rejects_bad_ids():
    ids = TOK.encode("love the dog")
    assert TOK.decode(np.array(ids)) == "love the dog"
    with pytest.raises(ValueError, match=r"token id 300 .*vocab_size=300"):
        TOK.decode([1, 300])
    with pytest.raises(ValueError, match="token id -1"):
        TOK.decode([-1])


def test_decode_replaces_split_characters():
    ids = TOK.encode("é")
    cut = [TOK.ranks[bytes([b])] for b in "é".encode()[:1]]
    assert len(ids) >= 1 and TOK.decode(cut) == "\ufffd"
    assert TOK.decode_bytes(cut) == b"\xc3"


@pytest.mark.parametrize("texts", [[], [""], ["", ""]])
def test_empty_corpus_is_an_error(texts):
    with pytest.raises(ValueError, match="empty corpus"):
        train_bpe(texts, 300)


def test_small_vocab_is_an_error():
    with pytest.raises(ValueError, match="at least 257"):
        train_bpe(CORPUS, 256)


def test_malformed_rank_file_names_the_line(tmp_path):
    lines = ranks_to_text(TOK.ranks).splitlines()
    for bad in ["QQ==", "QQ== x", "!!notbase64 3", "QQ== 1 2"]:
        path = tmp_path / "bad.tiktoken"
        path.write_text("\n".join(lines[:2] + [bad] + lines[3:]))
        with pytest.raises(ValueError, match=r"bad\.tiktoken, line 3: malformed"):
            load_ranks(path)


def test_invalid_ranks_are_rejected():
    with pytest.raises(ValueError, match="single bytes"):
        Tokenizer({b"a": 0})
    ranks = dict(TOK.ranks)
    ranks[b" love"] = 10_000
    with pytest.raises(ValueError, match="exactly 0"):
        Tokenizer(ranks)
    with pytest.raises(ValueError, match="appears twice"):
        ranks_from_text("QQ== 0\nQQ== 1\n")


def test_missing_rank_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tiktoken"):
        Tokenizer.load(tmp_path / "nope.tiktoken")


def test_ranks_do_not_depend_on_document_order():
    shuffled = CORPUS[:]
    random.Random(0).shuffle(shuffled)
    assert train_bpe(shuffled, 300) == train_bpe(CORPUS, 300)
