"""Happy stories from an unlabelled corpus: the `<|endoftext|>`-separated text format of TinyStories,
the SFT set chosen by VADER, the stories preset end to end, and the refusal of --reward rm."""

import json
import random

import pytest

from tests.conftest import has_distribution
from minirl.data import load_text_file
from minirl.data.corpora import Corpus, split_documents, synthetic_corpus
from minirl.data.selection import positive_documents, require_labels
from minirl.examples import happy_gpt, presets

needs_vader = pytest.mark.skipif(not has_distribution("vaderSentiment"),
                                 reason="needs the data extra: pip install -e '.[data]'")

_HAPPY = ["{n} found a shiny red ball in the park.\nShe was so happy and laughed with her friends.",
          "{n} baked a cake with mom.\nIt was the best cake ever and everyone loved it!"]
_SAD = ["{n} lost the little blue kite.\nHe was sad and cried all night.",
        "{n} broke the old toy car.\nIt was a terrible day and he felt bad."]


def write_stories(path, n_stories: int = 120, seed: int = 0):
    """A file in TinyStories' text format: multi-line stories, each followed by an `<|endoftext|>` line."""
    rng = random.Random(seed)
    stories = [rng.choice(_HAPPY if i % 2 == 0 else _SAD).format(n=rng.choice(["Lily", "Tom", "Sue", "Max"]))
               for i in range(n_stories)]
    path.write_text("".join(f"{story}\n<|endoftext|>\n" for story in stories), encoding="utf-8")
    return stories


def test_endoftext_separated_stories_keep_their_lines(tmp_path):
    path = tmp_path / "stories.txt"
    stories = write_stories(path, 6)
    corpus = load_text_file(path)
    assert corpus.texts == stories and corpus.labels is None
    assert corpus.texts[0].count("\n") == 1


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "stories.txt"
    path.write_bytes(b"Once upon a time\n<|endoftext|>\nCaf\xe9\n")
    with pytest.raises(ValueError, match="stories.txt, line 3, column 4: byte 0xe9 is not UTF-8"):
        load_text_file(path)


def test_split_documents_formats():
    assert split_documents("a b\n\n c \n") == ["a b", "c"]  # one document per line
    assert split_documents("one\n  two\n<|endoftext|>\n\n<|endoftext|>three<|endoftext|>") == ["one\ntwo", "three"]
    assert split_documents("<|endoftext|>\n") == []


def test_positive_documents_by_judge_threshold():
    corpus = Corpus(["good", "bad", "fine", "meh"])
    scores = {"good": 0.8, "bad": -0.5, "fine": 0.05, "meh": 0.0}
    judge = lambda texts: [scores[t] for t in texts]  # noqa: E731
    assert positive_documents(corpus, judge, 0.05).texts == ["good"]  # strictly above
    assert positive_documents(corpus, judge, -0.1).texts == ["good", "fine", "meh"]
    with pytest.raises(ValueError, match="--positive-threshold"):
        positive_documents(corpus, judge, 0.9)
    labelled = synthetic_corpus(30)
    assert positive_documents(labelled, judge=None).texts == [t for t, y in zip(labelled.texts, labelled.labels)
                                                              if y == 2]  # labels win; the judge is not asked
    with pytest.raises(ValueError, match="--reward rlaif"):
        require_labels(corpus, "--reward rm", "--reward rlaif")
    require_labels(labelled, "--reward rm", "--reward rlaif")


def test_stories_preset_changes_only_its_fields():
    quick = happy_gpt.presets(True)
    stories = presets.apply(quick, "stories", quick=True)
    assert stories.model.block_size == 96 and stories.run.algo == "pg" and stories.rl.max_new_tokens == 48
    assert stories.model.n_embd == quick.model.n_embd and stories.pretrain == quick.pretrain
    assert presets.apply(quick, "tweets", quick=True) == quick
    full = presets.apply(happy_gpt.presets(False), "stories", quick=False)
    assert full.model.block_size == 256 and full.data.vocab_size == 4096
    with pytest.raises(ValueError, match="unknown preset"):
        presets.overrides("poems", quick=False)


@needs_vader
def test_stories_recipe_end_to_end(tmp_path, capsys):
    from minirl.rl.sentiment import vader_reward

    path = tmp_path / "stories.txt"
    write_stories(path)
    out = tmp_path / "out"
    argv = ["--preset", "stories", "--quick", "--corpus", str(path), "--out", str(out), "--pretrain-steps", "20",
            "--sft-steps", "5", "--rl-iterations", "2", "--rl-batch-size", "8", "--eval-samples", "8"]
    assert happy_gpt.main(argv) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["rl"]["algo"] == "pg" and summary["config"]["model"]["block_size"] == 96
    assert [s["name"] for s in summary["stages"]] == ["sft_set", "tokenizer", "pretrain", "sft", "rl_pg"]
    sft = next(s for s in summary["stages"] if s["name"] == "sft")
    train_docs = happy_gpt.parse_settings(argv, "x", "x")[0]  # the same split the run used
    from minirl.data import train_val_split
    train, _ = train_val_split(load_text_file(path), train_docs.data.val_fraction, seed=0)
    happy = [t for t, score in zip(train.texts, vader_reward(train.texts)) if score > 0.05]
    assert 0 < sft["info"]["examples"] == len(happy) < len(train)  # VADER chose the SFT set
    assert happy_gpt.main(argv[:-6] + ["--rl-iterations", "1", "--rl-batch-size", "8", "--eval-samples", "4"]) == 0
    statuses = {s["name"]: s["status"] for s in json.loads((out / "summary.json").read_text())["stages"]}
    assert statuses == {"sft_set": "cached", "tokenizer": "cached", "pretrain": "cached", "sft": "cached",
                        "rl_pg": "ran"}  # a rerun does not score the corpus again
    assert happy_gpt.main(argv + ["--positive-threshold", "0.3"]) == 0
    statuses = {s["name"]: s["status"] for s in json.loads((out / "summary.json").read_text())["stages"]}
    assert statuses == {"sft_set": "ran", "tokenizer": "cached", "pretrain": "cached", "sft": "ran", "rl_pg": "ran"}


@needs_vader
def test_reward_rm_on_an_unlabelled_corpus_is_refused_before_training(tmp_path, capsys):
    path = tmp_path / "stories.txt"
    write_stories(path, 20)
    out = tmp_path / "out"
    argv = ["--preset", "stories", "--quick", "--corpus", str(path), "--out", str(out), "--reward", "rm"]
    assert happy_gpt.main(argv) == 2
    err = capsys.readouterr().err
    assert "--reward rm" in err and "--reward rlaif" in err and "stories" in err
    assert not list(out.glob("pretrain*"))  # refused before any stage ran


@needs_vader
def test_an_empty_sft_set_names_the_threshold(tmp_path, capsys):
    path = tmp_path / "stories.txt"
    write_stories(path, 20)
    argv = ["--preset", "stories", "--quick", "--corpus", str(path), "--out", str(tmp_path / "out"),
            "--positive-threshold", "0.999"]
    assert happy_gpt.main(argv) == 2
    assert "--positive-threshold" in capsys.readouterr().err
