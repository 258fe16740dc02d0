"""refinery.runner.tokenizer gives exactly open_clip's SimpleTokenizer tokens, without torch."""

from __future__ import annotations

import gzip
import importlib.util
import os
import random
import string
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from refinery.errors import ModelError
from refinery.runner.tokenizer import ClipTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
CLEAN_MODES = ("lower", "whitespace", "canonicalize")

TEXTS = [
    "",
    "   ",
    " \t\n ",
    "a red truck at night",
    "a person on a bicycle",
    "A Photo Of A DOG.",
    "3.14159, 42 apples & 7 oranges!!! (yes) -- #1 @home $5 50% [x] {y}",
    "under_score snake_case_name",
    "it's",
    "don't",
    "they're we've I'm you'll he'd",
    "IT'S DON'T",
    "&amp;lt;b&amp;gt;bold&amp;lt;/b&amp;gt;",
    "&lt;i&gt; &quot;q&quot; &#39;s &nbsp;x",
    "Ã©t\u00e9",
    "cafÃ© crÃ¨me",
    "café naïve résumé Ångström Straße",
    "東京タワーの夜景",
    "北京 上海 한국어 テスト",
    "a dog 🐶 and a cat 🐱 🚗💨",
    "👨‍👩‍👧 family",
    "שלום עולם",
    "مرحبا بالعالم",
    "e\u0301 a\u0308 n\u0303 o\u0302\u0323",
    "zero\u200bwidth join\u200der",
    "ctrl\x00\x01\x07chars\x1b[31m red\x7f",
    "tabs\tand\nnewlines\r\nhere",
    "<start_of_text> literal <end_of_text> <START_OF_TEXT>",
    "ﬁnancial ＦＵＬＬＷＩＤＴＨ ①②③ ½",
]


def import_open_clip() -> Any:
    """open_clip's tokenizer module, or skip when open_clip is not installed.

    Importing open_clip imports torchvision, whose compiled ops do not load against the CPU-only
    torch here ("operator torchvision::nms does not exist"), raised from these two registration
    modules. The tokenizer needs neither, so empty stand-ins take their place in sys.modules.
    """
    if importlib.util.find_spec("open_clip") is None:
        pytest.skip("open_clip is not installed")
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules.setdefault(name, types.ModuleType(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytest turns warnings into errors; torch's import may warn
        import open_clip.tokenizer
    return open_clip.tokenizer


@pytest.fixture(scope="module")
def oc_tokenizer() -> Any:
    return import_open_clip()


@pytest.fixture(scope="module")
def vocab_path(oc_tokenizer: Any) -> Path:
    return Path(oc_tokenizer.default_bpe())


@pytest.fixture(scope="module")
def reference(oc_tokenizer: Any) -> Any:
    return oc_tokenizer.SimpleTokenizer()


@pytest.fixture(scope="module")
def ours(vocab_path: Path) -> ClipTokenizer:
    return ClipTokenizer(vocab_path)


def expected(reference: Any, texts: str | list[str], context_length: int = 77) -> np.ndarray:
    return reference(texts, context_length=context_length).numpy()


def assert_same(ours: ClipTokenizer, reference: Any, texts: str | list[str]) -> None:
    got = ours(texts)
    want = expected(reference, texts, ours.context_length)
    assert got.dtype == np.int64
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want, err_msg=repr(texts))


def test_special_ids_and_vocab_size(ours: ClipTokenizer, reference: Any) -> None:
    assert ours.sot_token_id == reference.sot_token_id == 49406
    assert ours.eot_token_id == reference.eot_token_id == 49407
    assert ours.vocab_size == reference.vocab_size == 49408


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_matches_open_clip(ours: ClipTokenizer, reference: Any, text: str) -> None:
    assert ours.encode(text) == reference.encode(text)
    assert_same(ours, reference, text)


def test_empty_text_is_sot_eot(ours: ClipTokenizer) -> None:
    row = ours("")[0]
    assert row[:2].tolist() == [ours.sot_token_id, ours.eot_token_id]
    assert not row[2:].any()


def test_single_string_gives_one_row(ours: ClipTokenizer) -> None:
    assert ours("a red truck at night").shape == (1, 77)


def test_batch(ours: ClipTokenizer, reference: Any) -> None:
    assert_same(ours, reference, TEXTS)
    assert ours(TEXTS).shape == (len(TEXTS), 77)


def test_long_text_is_truncated_with_eot_last(ours: ClipTokenizer, reference: Any) -> None:
    rng = random.Random(7)
    words = ["truck", "night", "bicycle", "red", "person", "street", "light", "rain", "city", "a", "on", "the"]
    text = " ".join(rng.choice(words) for _ in range(600))
    assert len(ours.encode(text)) > 500
    row = ours(text)[0]
    assert row[0] == ours.sot_token_id and row[-1] == ours.eot_token_id
    assert row.all()  # no padding: every slot holds a token
    assert_same(ours, reference, text)


@pytest.mark.parametrize("total", [75, 76, 77, 78])
def test_lengths_at_the_limit(ours: ClipTokenizer, reference: Any, total: int) -> None:
    # "a" is one token, so total - 2 of them plus sot and eot make `total` tokens.
    text = " ".join(["a"] * (total - 2))
    assert len(ours.encode(text)) == total - 2
    row = ours(text)[0]
    kept = min(total, 77)
    assert row[kept - 1] == ours.eot_token_id
    assert not row[kept:].any()
    assert_same(ours, reference, text)


@pytest.mark.parametrize("clean", CLEAN_MODES)
def test_each_clean_mode(oc_tokenizer: Any, vocab_path: Path, clean: str) -> None:
    reference = oc_tokenizer.SimpleTokenizer(clean=clean)
    ours = ClipTokenizer(vocab_path, clean=clean)
    for text in TEXTS:
        assert ours.encode(text) == reference.encode(text), repr(text)
    assert_same(ours, reference, TEXTS)


def test_short_context_length(reference: Any, vocab_path: Path) -> None:
    ours = ClipTokenizer(vocab_path, context_length=16)
    assert ours(TEXTS).shape == (len(TEXTS), 16)
    assert_same(ours, reference, TEXTS + ["a person on a bicycle " * 10])


def random_text(rng: random.Random) -> str:
    ranges = [(0x20, 0x7E), (0x00, 0x1F), (0xA0, 0xFF), (0x370, 0x3FF), (0x4E00, 0x9FFF), (0x1F300, 0x1F64F)]
    chars = []
    for _ in range(rng.randint(0, 40)):
        low, high = rng.choice(ranges)
        chars.append(chr(rng.randint(low, high)))
    return "".join(chars)


def test_random_strings(ours: ClipTokenizer, reference: Any) -> None:
    rng = random.Random(20240611)
    texts = [random_text(rng) for _ in range(300)]
    for text in texts:
        assert ours.encode(text) == reference.encode(text), repr(text)
    assert_same(ours, reference, texts)


def test_copied_vocab_file(tmp_path: Path, vocab_path: Path, reference: Any) -> None:
    copy = tmp_path / "vocab.txt.gz"
    copy.write_bytes(vocab_path.read_bytes())
    assert_same(ClipTokenizer(copy), reference, TEXTS)


def test_unknown_clean_mode(vocab_path: Path) -> None:
    with pytest.raises(ValueError, match="lower, whitespace, canonicalize"):
        ClipTokenizer(vocab_path, clean="upper")


def assert_vocab_error(path: Path) -> None:
    with pytest.raises(ModelError) as info:
        ClipTokenizer(path)
    message = str(info.value)
    assert str(path) in message
    assert "cannot read the tokenizer vocabulary" in message
    assert "\n" not in message


def test_missing_vocab(tmp_path: Path) -> None:
    assert_vocab_error(tmp_path / "absent.txt.gz")


def test_vocab_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt.gz"
    path.write_text("#version: 0.2\ni n\nt h\n")
    assert_vocab_error(path)


def test_vocab_empty_gzip(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt.gz"
    with gzip.open(path, "wb"):
        pass
    assert_vocab_error(path)


def test_vocab_malformed_merge(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt.gz"
    lines = ["#version: 0.2"] + ["i n"] * 100 + ["three parts here"] + ["t h"] * 49000
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write("\n".join(lines))
    assert_vocab_error(path)


def test_vocab_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt.gz"
    with gzip.open(path, "wb") as stream:
        stream.write(b"#version: 0.2\n\xff\xfe n\n")
    assert_vocab_error(path)


def test_import_leaves_torch_out() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    code = "import sys, refinery.runner.tokenizer; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def adversarial_words() -> list[str]:
    """Words on which a BPE that merges in another order, or overlapping pairs the other way, gives
    other ids: runs of one letter (each length: "aaa" is "aa a", never "a aa"), alternations,
    repeated syllables and real words glued together, multi-byte letters, punctuation runs."""
    words = ["a" * n for n in range(1, 70)] + ["a" * n for n in (127, 128, 129, 255, 256, 257, 1000)]
    for unit in ("ab", "ba", "aab", "abb", "abc", "the", "ing", "er", "ss", "é", "ß", "東", "🐶", "!?", "-=", "..."):
        words += [unit * n for n in (1, 2, 3, 4, 5, 7, 8, 9, 16, 33, 100)]
    rng = random.Random(24)
    vocabulary = ["the", "a", "photo", "of", "dog", "cat", "night", "red", "truck", "ing", "ed", "s", "un", "re"]
    for _ in range(60):
        words.append("".join(rng.choice(vocabulary) for _ in range(rng.randint(2, 40))))
        words.append(
            "".join(
                rng.choice(rng.choice(["ab", "abc", "aeiou", "stre", "abcdefghijklmnopqrstuvwxyz"]))
                for _ in range(rng.randint(2, 300))
            )
        )
    return words


def test_adversarial_words_match_open_clip(ours: ClipTokenizer, reference: Any) -> None:
    for word in adversarial_words():
        assert ours.encode(word) == reference.encode(word), word[:80]
    assert_same(ours, reference, adversarial_words()[:200:7])


@pytest.mark.parametrize("alphabet", ["ab", "abcdefghijklmnopqrstuvwxyz", "aeiouéàüß東京🐶"])
def test_long_random_words_match_open_clip(ours: ClipTokenizer, reference: Any, alphabet: str) -> None:
    rng = random.Random(alphabet)
    word = "".join(rng.choice(alphabet) for _ in range(1500))
    assert ours.encode(word) == reference.encode(word)
    assert_same(ours, reference, [word, f"a photo of {word} at night"])


def test_a_word_of_120000_letters_is_tokenised_in_seconds(vocab_path: Path) -> None:
    """open_clip's loop merges one pair over the whole word at a time: quadratic, 81 s for this word."""
    ours = ClipTokenizer(vocab_path)  # its own cache: nothing tokenised before helps
    rng = random.Random(120_000)
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(120_000))
    start = time.perf_counter()
    row = ours(word)[0]
    took = time.perf_counter() - start
    assert took < 5, f"{took:.1f} s"
    assert row[0] == ours.sot_token_id and row[-1] == ours.eot_token_id and row.all()


def test_a_vocabulary_whose_joins_make_better_ranked_pairs(tmp_path: Path, oc_tokenizer: Any, vocab_path: Path) -> None:
    """In open_clip's vocabulary a join's pairs always rank after it; in this one they rank first
    ("th t" before "t h"). open_clip still joins every "t h" of the word before any "th t": a
    BPE that takes the next best pair after each single join ("thth" -> "tht h") differs."""
    with gzip.open(vocab_path, "rt", encoding="utf-8") as stream:
        header, *merges = stream.read().split("\n")
    better = [f"{a}{b} {a}" for a, b in ("th", "xy", "ab", "er")] + [f"{b} {a}{b}" for a, b in ("th", "xy", "ab")]
    better += ["th th", "ab ab", "thth th"]
    path = tmp_path / "better.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write("\n".join([header, *better, *merges]))
    ours, reference = ClipTokenizer(path), oc_tokenizer.SimpleTokenizer(bpe_path=str(path))
    rng = random.Random(7)
    words = [unit * n for unit in ("th", "xy", "ab", "er", "tht", "aab") for n in range(1, 12)]
    words += [
        "".join(rng.choice(rng.choice(["th", "xyab", "thxyaber"])) for _ in range(rng.randint(2, 60)))
        for _ in range(200)
    ]
    for word in words:
        assert ours.encode(word) == reference.encode(word), word


def test_the_word_cache_is_bounded(vocab_path: Path, reference: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server tokenises whatever it is sent: its cache stops growing at CACHE_WORDS, and
    words past it are tokenised all the same."""
    import refinery.runner.tokenizer as tokenizer

    monkeypatch.setattr(tokenizer, "CACHE_WORDS", 10)
    fresh = ClipTokenizer(vocab_path)
    words = [f"word{chr(97 + k)}{chr(97 + j)}" for k in range(5) for j in range(5)]
    assert np.array_equal(fresh(words), expected(reference, words))
    assert len(fresh._cache) == 10
