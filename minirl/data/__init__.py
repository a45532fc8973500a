"""Data for minirl: text corpora (documents plus optional labels) and their cleaning."""

from minirl.data.cleaning import clean_review, clean_tweet, repair_mojibake, split_into_chunks
from minirl.data.corpora import (
    CORPORA,
    Corpus,
    filter_labels,
    load_corpus,
    load_movie_reviews,
    load_text_file,
    load_tweets,
    positive_subset,
    synthetic_corpus,
    train_val_split,
)

__all__ = [
    "CORPORA",
    "Corpus",
    "clean_review",
    "clean_tweet",
    "filter_labels",
    "load_corpus",
    "load_movie_reviews",
    "load_text_file",
    "load_tweets",
    "positive_subset",
    "repair_mojibake",
    "split_into_chunks",
    "synthetic_corpus",
    "train_val_split",
]
