"""Ranking plugins for one request: an inverted index built once per plugin set, BM25F over fields.

Requests paraphrase what plugin authors wrote ("summarizing a paper" for "Summarize an academic research
paper"), so both sides pass through the same analyzer: identifiers split (``snake_case``, ``camelCase``),
hyphenated words also joined (``k-means`` -> ``kmeans``), stopwords dropped and words stemmed so the
members of a word family meet (summary, summarize, summarization -> ``summar``). Each field of a plugin
counts with its own weight (its name most, then the description, the parameter names, their notes...),
without a synonym list: what a plugin does not say, it is not found for.

The index holds, per term, the BM25F weight of every plugin that has it, so a query costs one dictionary
walk per query term (well under a millisecond for 1,000 plugins). ``index_for`` keeps the indexes of the
last few plugin sets, keyed by the identity of their specs: a set is indexed once, a reloaded set anew.
"""
from __future__ import annotations

import math
import re
import threading
from collections import Counter, OrderedDict
from typing import Any, Sequence

STOPWORDS = frozenset(
    "a an and are as at be by can could do does for from has have how i in into is it its me my of on or our "
    "please show that the their them then there these this to use using was we what when which will with you your "
    "give get let want need some all any would like should just also so than up out about each per via".split()
)
# (field, weight, length normalisation b): the name is the most deliberate text a plugin author writes
FIELDS = (("name", 3.0, 0.3), ("description", 1.0, 0.75), ("param_names", 1.2, 0.3),
          ("param_text", 0.3, 0.75), ("returns", 0.4, 0.75), ("examples", 0.4, 0.75))
K1 = 0.6
_SUFFIXES = (  # (suffix, replacement), longest first within a family; one applies, the stem keeps >= 4 letters
    ("ifications", "if"), ("ification", "if"), ("izations", ""), ("ization", ""), ("isations", ""), ("isation", ""),
    ("ational", "at"), ("ation", "at"), ("ition", ""), ("iption", "ib"), ("ersion", "ert"), ("ysis", "ys"), ("yzer", "ys"), ("yze", "ys"), ("yz", "ys"),
    ("yse", "ys"), ("ytic", "ys"), ("ment", ""), ("ness", ""), ("ity", ""), ("ion", ""), ("ive", ""), ("izer", ""),
    ("ize", ""), ("iz", ""), ("ise", ""), ("er", ""), ("or", ""), ("ly", ""), ("ful", ""), ("able", ""), ("ible", ""),
)
_VOWELS = frozenset("aeiou")


def _inflection_removed(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("es") and len(word) > 4 and word[-3] in "sxz":
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        word = word[:-1]
    if word.endswith("ing") and len(word) >= 6:
        return word[:-3]
    return word[:-2] if word.endswith("ed") and len(word) >= 5 else word


def stem(word: str) -> str:
    """A light suffix stripper: consistency matters more than linguistics (both sides pass through here)."""
    if len(word) <= 3 or word.isdigit():
        return word
    word = _inflection_removed(word)
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) + len(replacement) >= 4:
            word = word[: -len(suffix)] + replacement
            break
    if word.endswith("al") and len(word) >= 6:
        word = word[:-2]
    if word[-1:] in ("e", "y") and len(word) >= 5:
        word = word[:-1]
    if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in _VOWELS and word[-1] not in "ls":
        word = word[:-1]
    return word


_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def analyze(text: str) -> list[str]:
    """The terms of ``text``: words split, stopwords out, stemmed; ``k-means`` gives k, means and kmeans."""
    terms: list[str] = []
    for chunk in _WORD.findall(_CAMEL.sub(r"\1 \2", str(text)).replace("_", " ").lower()):
        parts = chunk.split("-")
        words = parts + (["".join(parts)] if len(parts) > 1 else [])
        terms.extend(stem(w) for w in words if len(w) > 1 and w not in STOPWORDS)
    return terms


def plugin_fields(spec: Any) -> dict[str, str]:
    """The text of each ranked field of a ``PluginSpec``."""
    params = list(spec.parameters)
    return {
        "name": spec.name,
        "description": spec.description,
        "param_names": " ".join(str(p.get("name", "")) for p in params),
        "param_text": " ".join(str(p.get("description", "")) for p in params),
        "returns": " ".join(f"{r.get('name', '')} {r.get('description', '')}" for r in spec.returns),
        "examples": spec.examples,
    }


class PluginIndex:
    """BM25F over the fields of a fixed list of plugins; ``scores(query)`` -> {position: score}."""

    def __init__(self, specs: Sequence[Any]) -> None:
        self.size = len(specs)
        analyzed = [{name: Counter(analyze(text)) for name, text in plugin_fields(s).items()} for s in specs]
        average = {f: (sum(sum(d[f].values()) for d in analyzed) / max(1, len(analyzed))) or 1.0 for f, _, _ in FIELDS}
        pseudo: dict[str, dict[int, float]] = {}  # term -> position -> weighted, length-normalised frequency
        for position, fields in enumerate(analyzed):
            for name, weight, b in FIELDS:
                counts = fields[name]
                norm = 1 - b + b * sum(counts.values()) / average[name]
                for term, tf in counts.items():
                    postings = pseudo.setdefault(term, {})
                    postings[position] = postings.get(position, 0.0) + weight * tf / norm
        self.postings: dict[str, list[tuple[int, float]]] = {}
        for term, postings in pseudo.items():
            idf = math.log(1 + (self.size - len(postings) + 0.5) / (len(postings) + 0.5))
            self.postings[term] = [(pos, idf * tf * (K1 + 1) / (K1 + tf)) for pos, tf in postings.items()]

    def scores(self, query: str) -> dict[int, float]:
        totals: dict[int, float] = {}
        for term in set(analyze(query)):
            for position, weight in self.postings.get(term, ()):
                totals[position] = totals.get(position, 0.0) + weight
        return totals

    def top(self, query: str, room: int, skip: Any = frozenset()) -> list[int]:
        """Positions of the ``room`` best plugins that match at all (ties: earlier first), ``skip`` left out."""
        ranked = sorted(((-score, pos) for pos, score in self.scores(query).items() if pos not in skip and score > 0))
        return [pos for _, pos in ranked[:room]]


_CACHE: "OrderedDict[tuple[int, ...], tuple[tuple[Any, ...], PluginIndex]]" = OrderedDict()
_CACHE_SIZE = 8
_LOCK = threading.Lock()


def index_for(specs: Sequence[Any]) -> PluginIndex:
    """The index of this exact list of specs, built once (the cache holds the specs, so ids stay theirs)."""
    key = tuple(map(id, specs))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit[1]
    index = PluginIndex(specs)
    with _LOCK:
        _CACHE[key] = (tuple(specs), index)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return index
