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


# Language-neutral reading material for voices of any language: eSpeak reads letters as their
# names, syllables and numbers with the voice's own phonology (as KLettres readers and telephone
# prompts do: letters, syllables, digits).
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


def items(rng: np.random.Generator, n_items: int) -> str:
    """``n_items`` comma-separated letters, CV/CVC syllables and numbers (e.g. ``"ba, k, 37, mor"``)."""
    out = []
    for _ in range(n_items):
        kind = rng.random()
        if kind < 0.25:
            out.append(chr(ord("a") + int(rng.integers(26))))
        elif kind < 0.75:
            syl = CONSONANTS[rng.integers(len(CONSONANTS))] + VOWELS[rng.integers(len(VOWELS))]
            if rng.random() < 0.3:
                syl += CONSONANTS[rng.integers(len(CONSONANTS))]
            out.append(syl)
        else:
            out.append(str(int(rng.integers(0, 100))))
    return ", ".join(out) + "."
