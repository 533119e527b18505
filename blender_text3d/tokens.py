"""How many tokens a prompt is for CLIP's tokenizer, which Stable Diffusion and CLIP guidance both use.

Their text encoders read 77 tokens, the start and end tokens included; the engine shortens a longer
text by words from its end and says so in the job's log (engine/prompts.py). The panel shows the
count beforehand. No bpy and no torch: CLIP's byte-level BPE (open_clip's tokenizer.py, after
OpenAI's CLIP) in plain Python, reading the merges file open_clip ships in the engine's environment.
Without that file the count is an estimate (`Count.exact` False, shown with "≈").
"""
from __future__ import annotations

import functools
import gzip
import html
import math
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

CONTEXT = 77
"""Tokens the text encoders read, start and end included."""
TEXT_TOKENS = CONTEXT - 2
"""Tokens of the text itself that fit."""
VOCABULARY = "bpe_simple_vocab_16e6.txt.gz"
"""CLIP's merges, as open_clip ships them in its package folder."""
MERGES = 49152 - 256 - 2
"""How many merges CLIP's vocabulary uses (49408 tokens: 256 bytes twice, the merges, start and end)."""

# open_clip's pre-tokenizer with `regex`'s \p{L} (letters) and \p{N} (numbers) written for `re`:
# [^\W\d_] is a word character that is neither a digit nor "_", and "_" joins the punctuation runs.
# Identical on ASCII; `re` counts a few non-decimal numerals ("²", "½") as letters where \p{N} does not.
_PRETOKEN = re.compile(r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+""",
                       re.IGNORECASE)
# ftfy (which open_clip runs first) straightens typographic quotes; its other repairs (mojibake) are left out.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"'})
# A missing vocabulary is looked for again after this many seconds (the engine may be installed meanwhile).
_RETRY_S = 10.0


def clean(text: str) -> str:
    """open_clip's cleaning, without ftfy's mojibake repair: HTML entities, quotes, NFC, whitespace, lower case."""
    text = html.unescape(html.unescape(text)).translate(_QUOTES)
    return " ".join(unicodedata.normalize("NFC", text).split()).lower()


def pretokens(text: str) -> list[str]:
    """The pieces BPE works on, one at a time: words, single digits, runs of punctuation."""
    return _PRETOKEN.findall(clean(text))


@functools.lru_cache(maxsize=None)
def _byte_alphabet() -> dict[int, str]:
    """CLIP's reversible map from the 256 bytes to printable characters (bytes_to_unicode)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


class BPE:
    """CLIP's byte-level BPE from its merges file (the format of open_clip's bpe_simple_vocab_16e6.txt.gz)."""

    def __init__(self, path: str | Path) -> None:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")[1:MERGES + 1]  # the first line is a version header
        self.ranks = {tuple(line.split()): i for i, line in enumerate(lines)}
        # open_clip matches its special tokens as text too, each one token.
        self.cache: dict[str, tuple[str, ...]] = {t: (t,) for t in ("<start_of_text>", "<end_of_text>")}

    def bpe(self, piece: str) -> tuple[str, ...]:
        """A pre-token -> its BPE tokens (as strings; the last one ends in "</w>")."""
        if piece in self.cache:
            return self.cache[piece]
        alphabet = _byte_alphabet()
        chars = "".join(alphabet[b] for b in piece.encode("utf-8"))
        word = (*chars[:-1], chars[-1] + "</w>")
        while len(word) > 1:
            # Apply the best-ranked merge present, everywhere it occurs, as CLIP does.
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, math.inf))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        self.cache[piece] = word
        return word

    def count(self, text: str) -> int:
        """Tokens of `text`, start and end tokens excluded (what open_clip's SimpleTokenizer.encode gives)."""
        return sum(len(self.bpe(piece)) for piece in pretokens(text))


def estimate(text: str) -> int:
    """A guess at the token count without the vocabulary: the pre-tokens are exact, their merges guessed.

    Measured on English words: up to 9 letters mostly one token, 10 to 18 mostly two; letters outside
    ASCII (accents, other scripts) often a token each; a run of punctuation about one per 2 characters.
    """
    total = 0
    for piece in pretokens(text):
        if piece[0].isdigit() or piece.startswith("'") or piece in ("<start_of_text>", "<end_of_text>"):
            total += 1
        elif piece.isascii() and piece.isalpha():
            total += 1 + (len(piece) - 1) // 9
        elif piece[0].isalpha():
            total += len(piece)
        else:
            total += math.ceil(len(piece) / 2)
    return total


def vocabulary_path(engine_python: str | Path | None) -> Path | None:
    """open_clip's merges file in the environment of the engine's interpreter (a venv's bin/python or
    Scripts/python.exe), or None when there is none."""
    if not engine_python:
        return None
    env = Path(engine_python).parent.parent  # the venv, not the interpreter it links to
    for packages in ("lib/python3*/site-packages", "lib64/python3*/site-packages", "Lib/site-packages",
                     "lib/python3*/dist-packages"):
        for found in sorted(env.glob(f"{packages}/open_clip/{VOCABULARY}")):
            return found
    return None


_found: dict[str, tuple[Path | None, float]] = {}


def _vocabulary(engine_python: str | Path | None) -> Path | None:
    """vocabulary_path, remembered (the panel draws often); a miss is looked for again after _RETRY_S."""
    key = str(engine_python or "")
    path, when = _found.get(key, (None, -math.inf))
    if path is None and time.monotonic() - when > _RETRY_S:
        path = vocabulary_path(engine_python)
        _found[key] = (path, time.monotonic())
    return path


@functools.lru_cache(maxsize=4)
def load_bpe(path: str) -> BPE:
    return BPE(path)


@dataclass(frozen=True)
class Count:
    """A text's token count, start and end tokens excluded."""

    tokens: int
    exact: bool
    """True: CLIP's BPE counted it; False: estimate() guessed (no vocabulary found)."""
    dropped: str
    """The words past TEXT_TOKENS, which the engine drops ("" when the text fits)."""

    @property
    def over(self) -> bool:
        return self.tokens > TEXT_TOKENS

    @property
    def label(self) -> str:
        return f"{'' if self.exact else '≈'}{self.tokens}/{TEXT_TOKENS} tokens"

    @property
    def warning(self) -> str:
        """One sentence for the panel when the text is over, naming (the start of) what is dropped; else ""."""
        if not self.over:
            return ""
        dropped = self.dropped if len(self.dropped) <= 60 else self.dropped[:60].rsplit(None, 1)[0] + " ..."
        return (f"Longer than the text encoders' {CONTEXT} tokens (start and end included): "
                f"the engine drops {dropped!r} from its end")


def count(text: str, engine_python: str | Path | None = None) -> Count:
    """The token count of `text` by the vocabulary in engine_python's environment, else an estimate."""
    path = _vocabulary(engine_python)
    return _count(text, str(path) if path else None)


@functools.lru_cache(maxsize=256)
def _count(text: str, vocabulary: str | None) -> Count:
    counter = load_bpe(vocabulary).count if vocabulary else estimate
    tokens = counter(text)
    return Count(tokens, vocabulary is not None, dropped_words(text, counter) if tokens > TEXT_TOKENS else "")


def dropped_words(text: str, counter, limit: int = TEXT_TOKENS) -> str:
    """The words at the end of `text` that do not fit in `limit` tokens, cut at a word boundary."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    lo, hi = 0, len(ends)  # lo words fit, hi do not (bisection: the count grows word by word)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if counter(text[:ends[mid - 1]]) <= limit else (lo, mid)
    return text[ends[lo - 1] if lo else 0:].strip()
