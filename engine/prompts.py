"""Texts for the text encoders, fitted into their context; what was dropped is said once.

CLIP's text tower and Stable Diffusion's text encoder read 77 tokens, the start and end tokens
included, and their tokenizers cut a longer text there without a word. A method's text often
ends with what matters most to it (DreamFusion's view suffix after the user's prompt), so
fit_text shortens the user's part by whole words from its end until every form it is embedded in
(the four view prompts, NeRF-Art's templates) fits, and fit_and_warn logs one warning naming the
dropped words. Torch-free: the token count comes from the model's own tokenizer, as a callable.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

log = logging.getLogger("engine.prompts")

# Dropped words are named in full up to this many characters, then with their middle elided.
SHOWN_CHARS = 200


@dataclass(frozen=True)
class FittedText:
    """A text as the encoder will read it, and what fitting it took away."""

    original: str
    """The text as given."""
    text: str
    """What to embed: the original when every form fits, else its longest fitting start."""
    dropped: str
    """The words cut from the end of the original ("" when nothing was cut)."""
    tokens: int
    """Tokens of the original's longest form, start and end tokens excluded."""
    limit: int
    """Tokens the encoder reads besides its start and end tokens (75 for CLIP's 77)."""

    @property
    def shortened(self) -> bool:
        return self.text != self.original


def _identity(text: str) -> str:
    return text


def fit_text(text: str, count_tokens: Callable[[str], int], limit: int,
             forms: Sequence[Callable[[str], str]] = (_identity,)) -> FittedText:
    """The longest start of `text`, cut at a word boundary, whose every form fits in `limit` tokens.

    count_tokens: text -> its token count without start and end tokens (the model's tokenizer).
    limit: tokens the encoder reads besides start and end (context length - 2).
    forms: how the text is embedded (e.g. with each view suffix, in each template); each must fit.
    Trailing separators (", ; :") of the kept start are removed, so a suffix does not follow ",,".
    A first word too long on its own is cut by characters. If no start fits (the forms alone are
    over the limit), the text is "" and everything is dropped.
    """
    def longest(t: str) -> int:
        return max(count_tokens(form(t)) for form in forms)

    tokens = longest(text)
    if tokens <= limit:
        return FittedText(text, text, "", tokens, limit)
    ends = [m.end() for m in re.finditer(r"\S+", text)]

    def start(end: int) -> str:
        return text[:end].rstrip(" \t\r\n,;:")

    # The token count grows with the number of words kept (CLIP's BPE works word by word), so the
    # longest fitting start is found by bisection: lo words fit, hi do not.
    lo, hi = 0, len(ends)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if longest(start(ends[mid - 1])) <= limit else (lo, mid)
    if lo:
        end = ends[lo - 1]
    else:  # not even the first word fits: as many of its characters as do
        first = re.search(r"\S", text)
        lo_c, hi_c = first.start() if first else 0, ends[0] if ends else len(text)
        while hi_c - lo_c > 1:
            mid = (lo_c + hi_c) // 2
            lo_c, hi_c = (mid, hi_c) if longest(start(mid)) <= limit else (lo_c, mid)
        end = lo_c
    kept = start(end)
    if longest(kept) > limit:
        kept, end = "", 0
    return FittedText(text, kept, text[end:].strip(), tokens, limit)


def shown(text: str, chars: int = SHOWN_CHARS) -> str:
    """`text`, or its start and end around " ... " when it is longer than `chars`."""
    if len(text) <= chars:
        return text
    head, tail = text[:chars * 2 // 3], text[-(chars - chars * 2 // 3):]
    # Whole words on either side of the cut.
    head = head.rsplit(None, 1)[0] if " " in head.strip() else head
    tail = tail.split(None, 1)[-1] if " " in tail.strip() else tail
    return f"{head.rstrip()} ... {tail.lstrip()}"


def fit_and_warn(text: str, count_tokens: Callable[[str], int], limit: int, what: str, encoder: str,
                 forms: Sequence[Callable[[str], str]] = (_identity,), forms_label: str = "",
                 kept: str = "") -> FittedText:
    """fit_text, and one warning (logger engine.prompts, so the job's log.txt and a warning event)
    when the text was shortened.

    what: which text ("prompt", "negative_prompt", "NeRF-Art's source text (options.source_text)").
    encoder: whose text encoder reads it ("the text encoder of diffusion model 'stabilityai/...'").
    forms_label: what the token count includes besides the text ("with its view suffix"); kept: what
    the warning adds after "dropped '...' from its end" (" and kept the view suffixes (...)").
    """
    fitted = fit_text(text, count_tokens, limit, forms)
    if fitted.shortened:
        log.warning("%s is %d tokens%s, start and end included: more than the %d that %s reads; dropped %r from "
                    "its end%s", what, fitted.tokens + 2, f" {forms_label}" if forms_label else "", limit + 2, encoder,
                    shown(fitted.dropped), kept)
    return fitted
