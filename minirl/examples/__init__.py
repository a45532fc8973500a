"""Runnable demos: ``python -m minirl.examples.happy_gpt`` and ``python -m minirl.examples.compare``."""
