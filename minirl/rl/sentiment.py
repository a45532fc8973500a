"""VADER sentiment as a programmatic reward (Hutto & Gilbert 2014).

``R(x, y)`` = the `compound` score of the response in [−1, 1]. The PyPI package
`vaderSentiment` ships its lexicon, so this works offline; it is imported only when
a reward is first asked for.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _analyzer():
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as e:
        raise ImportError("the VADER reward needs the vaderSentiment package: pip install vaderSentiment "
                          "(it is in minirl's data extra: pip install -e \".[data]\").") from e
    return SentimentIntensityAnalyzer()


def vader_reward(texts: list[str]) -> list[float]:
    """VADER compound score of each text: > 0.05 reads positive, < −0.05 negative."""
    analyzer = _analyzer()
    return [analyzer.polarity_scores(text)["compound"] for text in texts]
