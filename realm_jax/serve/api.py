"""The Python API over a trained open-QA run: ask with evidence, change the corpus, re-index.

  from realm_jax.serve.api import RealmQA
  qa = RealmQA("runs/openqa_nq")
  qa.ask("who wrote hamlet")[0]        # {prediction, probability, evidence: [...], ...}
  qa.replace([{"id": 7, "title": "Hamlet", "text": "..."}])   # no training step
  qa.ask("who wrote hamlet")[0]        # answers from the edited document

What the knowledge is lives in the corpus: an edit packs and embeds only the changed documents
and publishes a new corpus version (``index.corpus_edit``); answers come from the newest version
when the run is loaded (and after each edit this object makes). Edits and ``reindex`` take the
workdir's writer lock (``run.lock``; another writer waits up to ``lock_timeout`` seconds), so
processes may edit one run at the same time; asking takes no lock. The ``realm-jax`` command
(``realm_jax.serve.cli``) is this API on the command line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from realm_jax.data.tokenization import shared_tokenizer
from realm_jax.errors import QuestionError
from realm_jax.index.corpus_edit import apply_edit, check_records, reindex
from realm_jax.openqa.answerer import load_openqa_run
from realm_jax.openqa.predict import read_question_file
from realm_jax.run.lock import EDIT_LOCK_TIMEOUT
from realm_jax.utils.jsonl import write_jsonl
from realm_jax.utils.paths import check_output

log = logging.getLogger("realm_jax")


class RealmQA:
    """A fine-tuned open-QA run (``finetune.py`` or ``convert.py`` output) as a QA service."""

    def __init__(self, workdir: str, batch_size: int = 8):
        self.workdir, self.batch_size = workdir, batch_size
        self._load()

    def _load(self) -> None:
        previous = getattr(self, "answerer", None)
        self.config, self.params, self.answerer = load_openqa_run(self.workdir)
        self.tokenizer = shared_tokenizer()
        if previous is not None:  # the same model after an edit: keep its compiled batch shapes
            self.answerer.predict = previous.predict
            old, new = previous.data.retriever, self.answerer.data.retriever
            if hasattr(old, "encoder") and hasattr(new, "encoder"):
                new.encoder = old.encoder

    def check_questions(self, questions: Sequence[str], where: str = "question") -> None:
        """Empty or non-string questions are errors, and so are questions with no wordpieces
        (only control or zero-width characters); over-long ones are truncated, with a warning
        naming them (the model reads ``openqa.question_len`` wordpieces)."""
        limit = self.config.openqa.question_len - 2  # [CLS] ... [SEP]
        for i, q in enumerate(questions, start=1):
            if not isinstance(q, str) or not q.strip():
                raise QuestionError(f"{where} {i} is empty" if isinstance(q, str)
                                    else f"{where} {i} is not a string")
        lengths = [len(t) for t in self.tokenizer.tokenize(list(questions))]
        for i, n in enumerate(lengths, start=1):
            if n == 0:
                raise QuestionError(f"{where} {i} has no words (only control or zero-width "
                                    "characters)")
            if n > limit:
                log.warning("%s %d has %d wordpieces; the model reads the first %d", where, i,
                            n, limit)

    def ask(self, questions: str | Sequence[str], where: str = "question",
            batch_size: int | None = None) -> list[dict]:
        """One prediction per question: ``prediction``, ``probability`` (of that span in the
        reader beam), ``evidence`` (top-5 blocks: block, title, text, retrieval probability),
        ``answer_block`` and ``answer_chars`` (the span in that block's text, or None).
        ``batch_size`` (default: the one given at construction) is the compiled batch shape;
        each distinct value compiles once."""
        questions = [questions] if isinstance(questions, str) else list(questions)
        self.check_questions(questions, where)
        return self.answerer(self.params, questions, batch_size or self.batch_size)

    def ask_each(self, questions: Sequence[str], batch_size: int) -> list[dict | QuestionError]:
        """As ``ask``, but a question that cannot be asked gets its ``QuestionError`` in its place
        instead of failing the others (the HTTP server batches questions of many clients)."""
        results: list = [None] * len(questions)
        for i, question in enumerate(questions):
            try:
                self.check_questions([question])
            except QuestionError as e:
                results[i] = e
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            predictions = self.answerer(self.params, [questions[i] for i in todo], batch_size)
            for i, prediction in zip(todo, predictions, strict=True):
                results[i] = prediction
        return results

    def info(self) -> dict:
        """What is loaded: ``run`` (the workdir), ``step`` (of the checkpoint), ``corpus_version``,
        ``live_blocks``, ``index`` (its kind), ``index_step``, ``added_rows`` (blocks added by
        edits since that index), ``question_wordpieces`` (what the model reads of a question)."""
        return {"run": self.workdir, **self.answerer.about,
                "question_wordpieces": self.config.openqa.question_len - 2}

    def ask_file(self, questions_path: str, output: str) -> int:
        """Answers a jsonl of ``{question, ...}`` into ``output`` (jsonl, written atomically);
        returns the number of predictions."""
        check_output(output, [questions_path])
        rows = read_question_file(questions_path)
        questions = [r["question"] for r in rows]
        return write_jsonl(output, self.ask(questions, where=f"{questions_path}: question"))

    def edit(self, op: str, records: list[dict], source: str = "<api>",
             lock_timeout: float = EDIT_LOCK_TIMEOUT) -> dict:
        """``add`` / ``replace`` (records ``{id, title, text}``) or ``delete`` (``{id}``)."""

        numbered = [dict(r, line=r.get("line", i)) for i, r in enumerate(records, start=1)]
        records = check_records(numbered, op, source)
        info = apply_edit(self.workdir, self.config, op, records, source, self.tokenizer,
                          lock_timeout=lock_timeout)
        self._load()
        return info

    def add(self, docs: list[dict]) -> dict:
        return self.edit("add", docs)

    def replace(self, docs: list[dict]) -> dict:
        return self.edit("replace", docs)

    def delete(self, ids: Sequence[int | str]) -> dict:
        return self.edit("delete", [{"id": i} for i in ids])

    def reindex(self, progress: bool = True, lock_timeout: float = EDIT_LOCK_TIMEOUT) -> dict:
        """Re-embeds every block with the run's current embedder (a new main index)."""

        info = reindex(self.workdir, self.config, self.params, progress, lock_timeout)
        self._load()
        return info
