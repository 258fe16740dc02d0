"""OpenCLIP's byte-level BPE text tokenizer, ported without torch.

The runtime embeds text prompts with an exported ONNX text tower, so it needs the exact token ids
open_clip 3.3.0's ``SimpleTokenizer`` gives (open_clip/tokenizer.py, itself OpenAI CLIP's) but may
not import torch. Every step below copies that file's logic; where it looks odd, it is on purpose.
One is done another way to the same end: the BPE merges of a word (`_apply_merges`), which open_clip
does in time quadratic in the word's length.
"""

from __future__ import annotations

import gzip
import heapq
import html
import string
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import ftfy
import numpy as np
import regex

from refinery.errors import ModelError

# open_clip reads lines 1..48894 of the merges file (line 0 is a version header): 49152 ids in all
# minus the 256 byte symbols and the 2 special tokens; the packaged file has far more lines.
MERGES_COUNT = 49152 - 256 - 2
START_OF_TEXT = "<start_of_text>"
END_OF_TEXT = "<end_of_text>"
SPECIAL_TOKENS = (START_OF_TEXT, END_OF_TEXT)
CACHE_WORDS = 100_000  # words whose BPE symbols are kept (open_clip keeps every one: unbounded)
CLEAN_CHOICES = ("lower", "whitespace", "canonicalize")
# The words BPE never merges across, as open_clip splits them. The special tokens come first so
# that a prompt spelling "<start_of_text>" literally gets the special id, as it does in open_clip.
_WORD_PATTERN = regex.compile(
    "|".join(SPECIAL_TOKENS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)


def bytes_to_unicode() -> dict[int, str]:
    """Map each byte to a printable character, so BPE works on strings without whitespace or controls.

    Printable Latin-1 bytes map to themselves; the rest go to code points from 256 up, in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes, strict=True)}


_BYTE_ENCODER = bytes_to_unicode()


def _basic_clean(text: str) -> str:
    # Twice unescaped, as open_clip does: captions scraped from the web are often escaped twice.
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


def _whitespace_clean(text: str) -> str:
    return " ".join(text.split()).strip()


def _canonicalize(text: str) -> str:
    """Lower-case and drop ASCII punctuation (big_vision's prompt canonicalization, as open_clip copies it)."""
    text = text.replace("_", " ").translate(_DROP_PUNCTUATION).lower()
    return " ".join(text.split()).strip()


def _clean_lower(text: str) -> str:
    return _whitespace_clean(_basic_clean(text)).lower()


def _clean_whitespace(text: str) -> str:
    return _whitespace_clean(_basic_clean(text))


def _clean_canonicalize(text: str) -> str:
    return _canonicalize(_basic_clean(text))


_CLEANERS: dict[str, Callable[[str], str]] = {
    "lower": _clean_lower,
    "whitespace": _clean_whitespace,
    "canonicalize": _clean_canonicalize,
}


def _read_merges(path: Path) -> list[tuple[str, str]]:
    """The merge rules open_clip uses from a ``bpe_simple_vocab_16e6.txt.gz``-style file, in rank order."""
    try:
        with gzip.open(path) as stream:
            lines = stream.read().decode("utf-8").split("\n")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise _vocab_error(path, str(e) or type(e).__name__) from e
    # Fewer lines would give open_clip empty "merges" and different ids; refuse rather than drift.
    if len(lines) < MERGES_COUNT + 1:
        raise _vocab_error(path, f"{len(lines) - 1} merge lines, expected at least {MERGES_COUNT}")
    merges = []
    for number, line in enumerate(lines[1 : MERGES_COUNT + 1], start=2):
        parts = line.split()
        if len(parts) != 2:
            raise _vocab_error(path, f"line {number} is not a merge of two symbols: {line[:40]!r}")
        merges.append((parts[0], parts[1]))
    return merges


def _vocab_error(path: Path, why: str) -> ModelError:
    why = " ".join(why.split())  # one line, whatever the underlying error says
    return ModelError(
        f"{path}: cannot read the tokenizer vocabulary: {why}; export the model again with `refinery export-model`"
    )


def _build_encoder(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id, laid out as open_clip lays it out: bytes, bytes + '</w>', merges, special tokens."""
    symbols = list(_BYTE_ENCODER.values())
    vocab = symbols + [symbol + "</w>" for symbol in symbols]
    vocab += ["".join(merge) for merge in merges]
    vocab += SPECIAL_TOKENS
    # A dict over the list, as open_clip builds it: should a token repeat, its last id wins.
    return dict(zip(vocab, range(len(vocab)), strict=True))


def _apply_merges(
    word: tuple[str, ...], ranks: dict[tuple[str, str], int], merges: list[tuple[str, str]]
) -> tuple[str, ...]:
    """`word` merged as open_clip merges it, in O(n log n) for a word of n symbols.

    open_clip repeats, until no adjacent pair has a rank: take the best-ranked pair present (ranks
    are distinct, so it is one pair), and join all its occurrences, left to right, never
    overlapping ("a a a" -> "aa a"). That costs a pass over the word per merge: a random word of
    120,000 letters took 81 s. Here the same steps, each pass touching only the occurrences of its
    pair: the symbols are a linked list, and a heap holds (rank, position) for each adjacent pair
    with a rank, pushed when the pair comes to be. A pass takes out every entry of the best rank
    before joining any (in position order: left to right) and skips those no longer there (their
    left symbol joined to the one before, or changed), so pairs its joins create wait for the
    next pass, as in open_clip, even if their rank is better. A join cannot create the pass's
    own pair (its symbol is longer than either half), and a position's pair only ever grows, so
    no stale entry is taken for a live one.
    """
    symbols = list(word)  # symbols[i] == "": joined into the symbol before it
    after = [*range(1, len(symbols)), -1]  # the next live position; -1 at the end
    before = list(range(-1, len(symbols) - 1))
    heap = [
        (rank, i)
        for i, pair in enumerate(zip(symbols, symbols[1:], strict=False))
        if (rank := ranks.get(pair)) is not None
    ]
    heapq.heapify(heap)
    while heap:
        rank = heap[0][0]
        first, second = merges[rank]
        places = []
        while heap and heap[0][0] == rank:
            places.append(heapq.heappop(heap)[1])
        for i in places:
            j = after[i]
            if symbols[i] != first or j < 0 or symbols[j] != second:
                continue  # taken by the join on its left in this pass, or changed since it was pushed
            joined = symbols[i] = first + second
            symbols[j] = ""
            after[i] = k = after[j]
            if k >= 0:
                before[k] = i
                if (next_rank := ranks.get((joined, symbols[k]))) is not None:
                    heapq.heappush(heap, (next_rank, i))
            if (h := before[i]) >= 0 and (next_rank := ranks.get((symbols[h], joined))) is not None:
                heapq.heappush(heap, (next_rank, h))
    return tuple(symbol for symbol in symbols if symbol)


class ClipTokenizer:
    """OpenCLIP's byte-level BPE tokenizer (SimpleTokenizer), without torch."""

    def __init__(self, vocab_path: Path, context_length: int = 77, clean: str = "lower") -> None:
        if clean not in _CLEANERS:
            raise ValueError(f"unknown clean mode {clean!r}; choose one of {', '.join(CLEAN_CHOICES)}")
        if context_length < 1:
            raise ValueError(f"context_length must be at least 1, got {context_length}")
        merges = _read_merges(Path(vocab_path))
        self._encoder = _build_encoder(merges)
        # As open_clip builds it: should a merge repeat, its last rank wins (and merges[rank] is it).
        self._ranks = {merge: rank for rank, merge in enumerate(merges)}
        self._merges = merges
        self._clean = _CLEANERS[clean]
        # Word -> space-joined BPE symbols. Plain dict get/set: a race costs a recomputation of the
        # same value, never a wrong one. The special tokens are seeded so they never split.
        self._cache: dict[str, str] = {token: token for token in SPECIAL_TOKENS}
        self.context_length = context_length
        self.sot_token_id = self._encoder[START_OF_TEXT]
        self.eot_token_id = self._encoder[END_OF_TEXT]
        self.vocab_size = len(self._encoder)

    def encode(self, text: str) -> list[int]:
        """BPE ids of the cleaned text, without the start and end tokens."""
        ids: list[int] = []
        for word in _WORD_PATTERN.findall(self._clean(text)):
            symbols = "".join(_BYTE_ENCODER[byte] for byte in word.encode("utf-8"))
            ids.extend(self._encoder[token] for token in self._bpe(symbols).split(" "))
        return ids

    def __call__(self, texts: str | Sequence[str]) -> np.ndarray:
        """Token ids, int64 of shape (len(texts), context_length): sot, ids, eot, then zeros.

        Too long a text is cut to context_length with its last kept token replaced by eot, as open_clip does.
        """
        if isinstance(texts, str):
            texts = [texts]
        result = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            tokens = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(tokens) > self.context_length:
                tokens = tokens[: self.context_length]
                tokens[-1] = self.eot_token_id
            result[row, : len(tokens)] = tokens
        return result

    def _bpe(self, word: str) -> str:
        """The word's BPE symbols, space-joined; the last carries '</w>' to mark the word's end."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        symbols = (*word[:-1], word[-1] + "</w>")
        if len(symbols) == 1:
            return word + "</w>"  # open_clip does not cache single characters either
        symbols = _apply_merges(symbols, self._ranks, self._merges)
        joined = " ".join(symbols)
        if len(self._cache) < CACHE_WORDS:  # a server's queries must not grow it without end
            self._cache[word] = joined
        return joined
