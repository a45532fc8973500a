"""Which documents the SFT model is fine-tuned on: the positive ones.

A labelled corpus names them (label "positive"). An unlabelled one (TinyStories,
or any text file without a label column) has no names, so the reward's judge picks
them, as the seed tutorial does for stories:

    keep document d  iff  judge(d) > threshold      (VADER compound > 0.05 by default)

The judge is passed in, so this layer does not import the reward code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from minirl.data.corpora import Corpus, filter_labels

Judge = Callable[[list[str]], Sequence[float]]


def positive_documents(corpus: Corpus, judge: Judge | None = None, threshold: float = 0.05) -> Corpus:
    """The positive documents of `corpus`: its "positive" label if it has labels, else those
    whose `judge` score is above `threshold`. Raises when none is left, saying what to change."""
    if corpus.labels is not None:
        return filter_labels(corpus, "positive")
    return corpus.subset(judged_indices(corpus, judge, threshold), f"{corpus.name}:score>{threshold}")


def judged_indices(corpus: Corpus, judge: Judge | None, threshold: float) -> list[int]:
    """Indices of the documents whose `judge` score is above `threshold`; at least one."""
    if judge is None:
        raise ValueError(f"corpus {corpus.name!r} has no labels, so a judge must score its documents.")
    scores = judge(list(corpus.texts))
    keep = [i for i, score in enumerate(scores) if score > threshold]
    if not keep:
        best = max(scores, default=float("nan"))
        raise ValueError(f"no document of corpus {corpus.name!r} ({len(corpus)} documents) scores above the "
                         f"positive threshold {threshold} (the highest is {best:.3f}); lower --positive-threshold "
                         "or use a corpus with happier documents.")
    return keep


def require_labels(corpus: Corpus, what: str, instead: str) -> None:
    """Refuse `what` on a corpus with no labels, naming the option to use `instead`."""
    if corpus.labels is None:
        raise ValueError(f"{what} learns from human labels, and corpus {corpus.name!r} has none; "
                         f"use {instead}.")
