"""The generated a/an corpus that `demo-emergent` learns from (docs/demos.md).

The article before a noun follows the noun's first SOUND ("an apple", "a pear", "a unicorn", "an hour"), and most
articles are written where the noun is already predictable from the context, as in the post's prompt "I climbed
up the pear tree and picked a pear. I climbed up the apple tree and picked" -> " an". A model can only get those
articles right by working out which noun comes next and reading its first sound off it: the job the post's an
neuron does in GPT-2 Large. Other articles (a first mention, an adjective) are not predictable and keep the
corpus honest: there " a" is the better guess, as in real text.

Deterministic for a seed; the held-out corpus for the dataset pass is the same generator with another seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from anneuron.io import atomic_path

# Nouns by kind; the article comes from `article()` (first sound, exceptions below), never stored by hand.
FRUITS = ("apple", "orange", "avocado", "olive", "apricot", "pear", "lemon", "banana", "plum", "cherry", "peach",
          "fig", "mango", "lime", "coconut", "grape")
ANIMALS = ("elephant", "owl", "eagle", "ant", "octopus", "iguana", "ostrich", "emu", "otter", "unicorn", "tiger",
           "horse", "dog", "cat", "cow", "fox", "rabbit", "lion", "monkey", "zebra", "bird")
THINGS = ("umbrella", "oven", "engine", "envelope", "axe", "arrow", "anchor", "igloo", "egg", "onion", "uniform",
          "spoon", "cup", "book", "lamp", "chair", "box", "ball", "drum", "bell", "hat", "coat", "kite")
ADJECTIVES = ("old", "angry", "honest", "empty", "odd", "young", "happy", "small", "big", "useful", "tired", "new")
NAMES = ("John", "Mary", "Anna", "Tom", "Sara", "Ben", "Lucy", "Sam", "Emma", "Oliver", "Ivy", "Noah")
PLACES = ("garden", "kitchen", "park", "market", "house", "field", "shop", "school", "village", "forest")
PRONOUNS = ("I", "She", "He", "We", "They")

# First sound differs from the first letter: "a unicorn", "a uniform", "a useful", "an honest".
_SOUND_EXCEPTIONS = {"unicorn": "a", "uniform": "a", "useful": "a", "honest": "an", "hour": "an"}


def article(word: str) -> str:
    """'an' before a vowel sound, 'a' before a consonant sound."""
    if word in _SOUND_EXCEPTIONS:
        return _SOUND_EXCEPTIONS[word]
    return "an" if word[0].lower() in "aeiou" else "a"


def _an(word: str) -> str:
    return f"{article(word)} {word}"


@dataclass(frozen=True)
class Probe:
    """A prefix that ends right before an article whose noun the context makes predictable."""

    prefix: str
    article: str  # "a" or "an"
    noun: str


# Each template is (kind, text before the predictable article, text after it). `{n}` is the noun; `{first}` is
# an unpredictable article phrase (first mention). The predictable article always comes right after `before`.
_TEMPLATES = (
    ("fruit", "{S} climbed up the {n} tree and picked", " {n}."),
    ("fruit", "{S} walked past the {n} tree and took", " {n} home."),
    ("fruit", "The {n} tree in the {P} was full, so {S2} picked", " {n}."),
    ("fruit", "There is {first} tree in the {P}, and {S2} picked", " {n} from it."),
    ("animal", "At the zoo {S2} stood by the {n} cage and watched", " {n}."),
    ("animal", "{S} read a book about the {n}, and then {S2} drew", " {n}."),
    ("thing", "{S} opened the {n} box and found", " {n} inside."),
    ("any", "{N} wanted {first}, so {N} went to the {P} and bought", " {n}."),
    ("any", "{N} saw {first} in the {P}. Then {N2} saw", " {n} too."),
    ("any", "{N} likes the {n} best, so {N} asked for", " {n}."),
    ("any", "In the picture of the {n} you can see", " {n} on the table."),
)


def _fill(text: str, r: random.Random, noun: str, n1: str, n2: str) -> str:
    pron = r.choice(PRONOUNS)
    return (text.replace("{first}", _an(noun)).replace("{n}", noun).replace("{N}", n1).replace("{N2}", n2)
            .replace("{S2}", pron.lower() if pron != "I" else "I").replace("{S}", r.choice(PRONOUNS + (n1,)))
            .replace("{P}", r.choice(PLACES)))


def _nouns(kind: str) -> tuple[str, ...]:
    return {"fruit": FRUITS, "animal": ANIMALS, "thing": THINGS, "any": FRUITS + ANIMALS + THINGS}[kind]


def _predictable(r: random.Random) -> tuple[str, Probe]:
    """One sentence with a predictable article, and the probe that stops right before it."""
    kind, before, after = r.choice(_TEMPLATES)
    noun = r.choice(_nouns(kind))
    n1, n2 = r.sample(NAMES, 2)
    state = r.getstate()
    prefix = _fill(before, r, noun, n1, n2)
    r.setstate(state)
    sentence = _fill(before + " " + article(noun) + after, r, noun, n1, n2)
    return sentence, Probe(prefix, article(noun), noun)


def _filler(r: random.Random) -> str:
    """Sentences whose articles are NOT predictable (first mentions, adjectives) or that have none."""
    n1, n2 = r.sample(NAMES, 2)
    kind = r.random()
    if kind < 0.3:
        return f"{n1} met {_an(r.choice(ADJECTIVES))} friend in the {r.choice(PLACES)}."
    if kind < 0.55:
        return f"There was {_an(r.choice(FRUITS + ANIMALS + THINGS))} in the {r.choice(PLACES)}."
    if kind < 0.8:
        return f"{n1} went to the {r.choice(PLACES)} with {n2}."
    return f"The {r.choice(ANIMALS)} and the {r.choice(ANIMALS)} sat by the {r.choice(THINGS)}."


def document(r: random.Random, sentences: tuple[int, int] = (4, 9), predictable: float = 0.65) -> str:
    """A few sentences; with probability `predictable` each one has a predictable article."""
    out = []
    for _ in range(r.randint(*sentences)):
        out.append(_predictable(r)[0] if r.random() < predictable else _filler(r))
    return " ".join(out)


def documents(n_docs: int, *, seed: int) -> list[str]:
    r = random.Random(seed)
    return [document(r) for _ in range(n_docs)]


def probes(n: int, *, seed: int) -> list[Probe]:
    """Prefixes ending right before a predictable article (what the model must get right)."""
    r = random.Random(seed)
    return [_predictable(r)[1] for _ in range(n)]


def write_corpus(path: str | Path, *, n_docs: int, seed: int) -> None:
    """A Parquet file with one `text` column, written atomically; identical bytes for the same seed."""
    table = pa.table({"text": documents(n_docs, seed=seed)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
