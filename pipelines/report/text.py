"""What the report looks for in a caption: artefacts, words, n-grams, duplicates, and label names.

Everything here works on one caption at a time and keeps no corpus-sized state except the 8-byte
hashes the duplicate and distinct-n counts need.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable

from pipelines.annotate.prompts.labels import clean_name
from pipelines.core.ontology import Ontology

ARTEFACT_KINDS = ("digits", "probability", "label_word", "apology", "mask_token", "template_placeholder", "empty")
_ARTEFACTS = {
    "digits": re.compile(r"\d"),
    # "0.87", "87%", and the words a captioner copies from a classifier's output
    "probability": re.compile(r"(?<![\w.])\d*\.\d+(?![\w.])|\d\s*%|\bprobabilit(?:y|ies)\b|\bconfiden(?:ce|t)\b", re.I),
    "label_word": re.compile(r"\blabels?\b", re.I),
    "apology": re.compile(r"sorry|apolog|\bI can(?:not|'t)\b|\bunable to\b", re.I),
    # leftovers of a template: a lone "&", a capital X standing for a slot, "{slot}", "<slot>"
    "template_placeholder": re.compile(r"(?<!\S)&(?!\S)|(?<![\w-])X(?![\w-])|\{[^{}]*\}|<[^<>]*>"),
}
_WORD = re.compile(r"\w+(?:'\w+)?")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = re.compile(r"[^\w\s]")
_PHRASE_WORD = re.compile(r"\w+(?:[-']\w+)*")  # "hi-hat", "cock-a-doodle-doo" stay one word


def artefacts(caption: str, mask_token: str) -> list[str]:
    """The artefact kinds found in `caption`, in ARTEFACT_KINDS order."""
    if not caption.strip():
        return ["empty"]
    found = [kind for kind, pattern in _ARTEFACTS.items() if pattern.search(caption)]
    if mask_token and mask_token in caption:
        found.append("mask_token")
    return [kind for kind in ARTEFACT_KINDS if kind in found]


def words(caption: str) -> list[str]:
    return _WORD.findall(caption.casefold())


def near_key(caption: str) -> str:
    """A caption with case, punctuation, articles and spacing folded out: "A dog barks." ~ "dog barks"."""
    text = _PUNCTUATION.sub(" ", caption.casefold())
    return " ".join(_ARTICLES.sub(" ", text).split())


def hash8(text: str) -> int:
    """A stable 8-byte hash (Python's hash() is salted per process, so counts would not repeat)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=1 << 16)
def word_hash(word: str) -> int:
    """hash8 of a word, cached: a corpus's words are a few thousand, repeated millions of times."""
    return hash8(word)


def sort_key(clip_id: str) -> int:
    """The deterministic order every sample of the report follows: sha256(clip_id)."""
    return int(hashlib.sha256(clip_id.encode("utf-8")).hexdigest()[:16], 16)


def ngram_hashes(tokens: list[str], n: int) -> list[int]:
    return [hash8(" ".join(tokens[i : i + n])) for i in range(len(tokens) - n + 1)]


def name_terms(name: str) -> list[str]:
    """A class name and its synonyms: AudioSet writes "Vehicle horn, car horn, honking"; a
    parenthesis ("Bass (instrument role)") only qualifies the name."""
    name = re.sub(r"\([^)]*\)", " ", clean_name(name))
    return [" ".join(term.split()).casefold() for term in name.split(",") if term.strip() and term.strip() != "etc."]


@functools.lru_cache(maxsize=4096)
def _terms_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    # whole words, simple plural ("dog"/"dogs", "bus"/"buses"); longest first so "car horn" beats "car"
    alternatives = "|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?:s|es)?(?!\w)", re.I)


def mentions(caption: str, label_names: Iterable[str]) -> bool:
    """Whether the caption names one of the labels (a name or a synonym of it)."""
    return any(_name_pattern(name).search(caption) for name in label_names)


@functools.lru_cache(maxsize=8192)
def _name_pattern(name: str) -> re.Pattern[str]:
    # one pattern per label name, not per label set: a corpus has few names but many combinations
    return _terms_pattern(tuple(name_terms(name)) or ("\x00",))


class ClassNames:
    """Every ontology class name and synonym (≥ 4 characters) in a phrase → classes dict, to find the
    classes a caption names that its clip is not labelled with (nor with an ancestor or descendant of
    them). A dict of word sequences, not one regex: an alternation of ~1 000 names is tried name by
    name at every character, 60 µs a caption; the lookups take a fraction of that."""

    MIN_CHARS = 4  # shorter terms ("Bay", "Run", "Tap") are mostly ordinary words

    def __init__(self, ontology: Ontology, mids: Iterable[str]):
        self.ontology = ontology
        self.mids_by_term: dict[str, set[str]] = {}
        for mid in mids:
            for term in name_terms(ontology.name(mid)):
                if len(term) >= self.MIN_CHARS:
                    self.mids_by_term.setdefault(term, set()).add(mid)
        self.longest = max((len(term.split()) for term in self.mids_by_term), default=0)
        self._ancestor_cache: dict[str, frozenset[str]] = {}

    def unlabelled(self, caption: str, labels: list[dict]) -> list[str]:
        """Names of the classes the caption names that none of `labels` ({mid, name}) covers."""
        mids = {label["mid"] for label in labels if label.get("mid") in self.ontology}
        own_terms = {term for label in labels for term in name_terms(label.get("name") or "")}
        related = set(mids).union(*(self._ancestors(mid) for mid in mids))
        named: list[str] = []
        for term in self.terms(caption):
            if term in own_terms or _singular(term) in own_terms:  # "dogs" names a clip labelled Dog
                continue
            for mid in sorted(self.mids_by_term[term]):
                if mid not in related and not mids.intersection(self._ancestors(mid)):  # nor a descendant
                    name = self.ontology.name(mid)
                    if name not in named:
                        named.append(name)
        return named

    def terms(self, caption: str) -> list[str]:
        """The class terms in the caption, leftmost-longest, whole words, a plural "s"/"es" allowed."""
        tokens = _PHRASE_WORD.findall(caption.casefold())
        found, i = [], 0
        while i < len(tokens):
            for n in range(min(self.longest, len(tokens) - i), 0, -1):
                term = self._term(" ".join(tokens[i : i + n]))
                if term is not None:
                    found.append(term)
                    i += n
                    break
            else:
                i += 1
        return found

    def _term(self, phrase: str) -> str | None:
        for candidate in (
            phrase,
            phrase[:-1] if phrase.endswith("s") else "",
            phrase[:-2] if phrase.endswith("es") else "",
        ):
            if candidate in self.mids_by_term:
                return candidate
        return None

    def _ancestors(self, mid: str) -> frozenset[str]:
        if mid not in self._ancestor_cache:
            self._ancestor_cache[mid] = frozenset(self.ontology.ancestors(mid))
        return self._ancestor_cache[mid]


def _singular(term: str) -> str:
    return term[:-2] if term.endswith("es") and term[:-2] else term[:-1] if term.endswith("s") else term
