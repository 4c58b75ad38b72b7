"""Paths of the corpora shipped inside the package (so nothing reads ../shared at run time)."""

import os

_HERE = os.path.dirname(__file__)
MINI_PASSAGES = os.path.join(_HERE, "corpus", "mini", "passages.jsonl")
FACTS_CORPUS = os.path.join(_HERE, "corpus", "facts", "facts.jsonl")
FACTS_QUESTIONS = os.path.join(_HERE, "corpus", "facts", "questions.jsonl")
