"""Random English-like sentences from the embedded word list (``words.txt``, written for this project).

Sentences follow a handful of templates over word classes, so text is varied but needs no corpus.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

PHRASE_SECTIONS = {"place", "time"}

# Each template is a sequence of word-class slots; literal words are written as-is.
TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("the", "adjective", "noun", "verb_past", "the", "noun", "place"),
    ("name", "verb_past", "number", "adjective", "plural", "time"),
    ("did", "name", "verb_base", "the", "noun", "place", "?"),
    ("the", "plural", "were", "adverb", "adjective", "time"),
    ("name", "and", "name", "adverb", "verb_past", "a", "adjective", "noun"),
    ("please", "verb_base", "the", "adjective", "plural", "place"),
    ("time", ",", "the", "noun", "was", "adjective", "and", "adjective"),
    ("we", "will", "verb_base", "number", "plural", "time"),
    ("my", "noun", "is", "adverb", "adjective", "place"),
    ("why", "did", "the", "noun", "verb_base", "the", "plural", "?"),
)


@functools.cache
def word_classes() -> dict[str, tuple[str, ...]]:
    """The word list parsed into {class: words}; cached per process."""
    text = resources.files("bench.synth").joinpath("words.txt").read_text(encoding="utf-8")
    classes: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            classes[current] = []
        elif current is not None:
            classes[current].extend([line] if current in PHRASE_SECTIONS else line.split())
    return {k: tuple(v) for k, v in classes.items()}


def sentence(rng: np.random.Generator) -> str:
    """One sentence with a capital first letter and final punctuation."""
    classes = word_classes()
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    words = []
    for slot in template:
        pool = classes.get(slot)
        word = pool[rng.integers(len(pool))] if pool else slot
        words.append(word.capitalize() if slot == "name" else word)
    out = " ".join(words).replace(" ,", ",").replace(" ?", "?")
    if not out.endswith("?"):
        out += "."
    return out[0].upper() + out[1:]


def passage(rng: np.random.Generator, n_words: int) -> str:
    """Sentences joined until at least ``n_words`` words."""
    parts: list[str] = []
    count = 0
    while count < n_words:
        s = sentence(rng)
        parts.append(s)
        count += len(s.split())
    return " ".join(parts)
