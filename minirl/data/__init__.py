"""Data for minirl: corpora (documents plus optional labels), their cleaning, token batches for
pretraining, prompt/response rows for SFT, and preference pairs for reward models and DPO."""

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
    split_documents,
    synthetic_corpus,
    train_val_split,
)
from minirl.data.preferences import PreferencePair, collate_pairs, pad_right, pairs_from_labels
from minirl.data.selection import positive_documents, require_labels
from minirl.data.sft import SFTDataset, SFTExample

__all__ = [
    "CORPORA",
    "Corpus",
    "PreferencePair",
    "SFTDataset",
    "SFTExample",
    "clean_review",
    "clean_tweet",
    "collate_pairs",
    "filter_labels",
    "load_corpus",
    "load_movie_reviews",
    "load_text_file",
    "load_tweets",
    "pad_right",
    "pairs_from_labels",
    "positive_documents",
    "positive_subset",
    "repair_mojibake",
    "require_labels",
    "split_documents",
    "split_into_chunks",
    "synthetic_corpus",
    "train_val_split",
]
