"""Corpus edits vs re-embedding the corpus: what an edit costs as the change grows.

A run of ``openqa_facts.py`` whose corpus is its 8 facts plus the first ``num_passages`` mini
passages (packed into 24-token blocks, so thousands of blocks); then ``corpus replace`` of 1, 10
and 100 documents, and ``realm-jax index`` (every block re-embedded) for comparison. Each edit must
embed exactly its documents' blocks; its time should follow that count, not the corpus size.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from realm_jax.assets import FACTS_CORPUS, MINI_PASSAGES
from realm_jax.benchmarks.common import format_table, json_line, machine_info
from realm_jax.run.config import load_config
from realm_jax.serve.api import RealmQA
from realm_jax.train import openqa
from realm_jax.utils.jsonl import iter_jsonl


def _corpus(path: str, num_passages: int) -> list[dict]:
    facts = [r for _, r in iter_jsonl(FACTS_CORPUS)]
    mini = [r for _, r in iter_jsonl(MINI_PASSAGES, ("title", "text"))][:num_passages]
    docs = facts + [{"id": 1000 + i, "title": r["title"], "text": r["text"]}
                    for i, r in enumerate(mini)]
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs)
    return docs


def corpus_edit_main(num_passages: int, sizes: tuple[int, ...]) -> dict:
    print(f"machine: {machine_info()}")
    root = tempfile.mkdtemp(prefix="corpus_edit_bench.")
    docs = _corpus(os.path.join(root, "corpus.jsonl"), num_passages)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = load_config(os.path.join(here, "experiments", "configs"), "openqa_facts.py")
    config.data.corpus = os.path.join(root, "corpus.jsonl")
    config.index.emb_batch_size = 256
    t = time.perf_counter()
    openqa.train_and_evaluate(config, os.path.join(root, "run"))
    train_s = time.perf_counter() - t
    qa = RealmQA(os.path.join(root, "run"))
    num_blocks = len(qa.answerer.data.store)
    rows, record = [], {"benchmark": "corpus_edit", "num_blocks": num_blocks, "train_s": train_s}
    before = qa.ask("what is the capital of Amber?")[0]["prediction"]
    edited = [dict(docs[0], text="The capital of Amber is Oslo.")]
    for n in sizes:
        batch = edited + [dict(d, text=d["text"] + " (edited)") for d in docs[8 : 8 + n - 1]]
        info = qa.replace(batch)
        rows.append([f"replace {n} document(s)", info["embedded_blocks"], info["embed_seconds"],
                     info["seconds"]])
        record[f"edit_{n}_blocks"] = info["embedded_blocks"]
        record[f"edit_{n}_s"] = info["seconds"]
    after = qa.ask("what is the capital of Amber?")[0]["prediction"]
    full = qa.reindex(progress=False)
    rows.append(["realm-jax index (all rows)", full["embedded_blocks"], None, full["seconds"]])
    record.update(reindex_blocks=full["embedded_blocks"], reindex_s=full["seconds"],
                  answer_before=before, answer_after_edit=after)
    print(f"{num_blocks} blocks; trained in {train_s:.1f} s; Amber: {before} -> {after}")
    print(format_table(["operation", "blocks embedded", "embed s", "total s"], rows))
    print(json_line(record))
    return record
