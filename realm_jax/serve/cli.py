"""``realm-jax``: ask a trained open-QA run questions, change its corpus, rebuild its index.

  realm-jax ask --workdir W "who wrote hamlet"          answer, probability, top-5 evidence
  realm-jax ask --workdir W --questions Q.jsonl --output P.jsonl     (batch; as predict.py)
  realm-jax corpus add|replace|delete --workdir W DOCS.jsonl
  realm-jax index --workdir W                           re-embed every block, current embedder
  realm-jax index --workdir W --verify                  check every published index byte for byte
  realm-jax serve --workdir W [--host 127.0.0.1] [--port 8000] [--allow-edits]
                                                        HTTP API + page (realm_jax/serve/http.py)

``DOCS.jsonl`` holds ``{"id", "title", "text"}`` per line (``{"id"}`` for delete); ids are the
corpus's own (``id`` of its jsonl lines, or the record number of ``blocks.tfr``). An edit embeds
only the changed documents' blocks and publishes a new corpus version atomically; no training
step is involved. ``corpus`` and ``index`` hold the workdir's writer lock (``<W>/.lock``) while
they work: another one says once that it waits, waits up to ``--lock_timeout`` seconds (default
600; -1: no limit), then fails; ``ask`` never waits. ``--vocab FILE`` (before the command, or
``$REALM_JAX_VOCAB``) tokenizes with another WordPiece vocab than the packaged BERT-base uncased
one. Exit status: 0, 1 on bad input (one ``error:`` line naming the file, line or field; nothing
written), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap

from realm_jax.data.tokenization import VOCAB_ENV
from realm_jax.errors import USER_ERRORS
from realm_jax.index.corpus_edit import read_edit_file
from realm_jax.index.store import verify_all
from realm_jax.index.versions import SERVING_INDEX
from realm_jax.run.files import RunDir
from realm_jax.run.lock import EDIT_LOCK_TIMEOUT
from realm_jax.serve.api import RealmQA
from realm_jax.serve.server import TOKEN_ENV, serve

BOLD_YELLOW, RESET = "\033[1;33m", "\033[0m"


class _OnlyOurs(logging.Filter):
    """Warnings from realm_jax only (orbax warns that a read-only checkpoint is read-only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("realm_jax") or record.levelno >= logging.ERROR


def _lock_timeout(text: str) -> float:
    value = float(text)
    if not (value >= 0 or value == -1):  # nan fails both
        raise argparse.ArgumentTypeError(f"{text} is neither seconds >= 0 nor -1 (no limit)")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="realm-jax", description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab", help=f"WordPiece vocab file (default: ${VOCAB_ENV}, else the "
                   "packaged BERT-base uncased vocab); must be the one the run trained with")
    sub = p.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="answer questions with evidence")
    ask.add_argument("--workdir", required=True, help="a fine-tuned open-QA run directory")
    ask.add_argument("question", nargs="*", help="one or more questions")
    ask.add_argument("--questions", help="jsonl of {question, ...} (batch mode)")
    ask.add_argument("--output", help="batch mode: predictions jsonl to write")
    ask.add_argument("--json", action="store_true", help="print each prediction as JSON")
    ask.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    ask.add_argument("--batch_size", type=_positive_int, default=8,
                     help="questions per forward pass (default %(default)s)")
    corpus = sub.add_parser("corpus", help="add, replace or delete documents")
    corpus.add_argument("op", choices=("add", "replace", "delete"))
    corpus.add_argument("file", help="jsonl of {id, title, text} ({id} for delete)")
    corpus.add_argument("--workdir", required=True)
    index = sub.add_parser("index", help="re-embed the corpus with the run's current embedder")
    index.add_argument("--workdir", required=True)
    index.add_argument("--verify", action="store_true",
                       help="check every published index of the run against its SHA-256 sums "
                       "(a load checks sizes and sampled pieces only) instead of re-embedding; "
                       "exit status 1 if one is damaged")
    serve = sub.add_parser("serve", help="the HTTP API and the page, on one host and port")
    serve.add_argument("--workdir", required=True, help="a fine-tuned open-QA run directory")
    serve.add_argument("--host", default="127.0.0.1", help="the one address to listen on "
                       "(default %(default)s: this machine only)")
    serve.add_argument("--port", type=int, default=8000,
                       help="default %(default)s; 0: any free one")
    serve.add_argument("--allow-edits", "--allow_edits", dest="allow_edits", action="store_true",
                       help="turn on POST /api/corpus/{add,replace,delete}, for requests with "
                       f"'Authorization: Bearer <token>'; the token from --token-file or "
                       f"${TOKEN_ENV}")
    serve.add_argument("--token-file", "--token_file", dest="token_file",
                       help="a file holding the edit token (its first line)")
    serve.add_argument("--max_batch", type=_positive_int, default=32,
                       help="questions answered in one model call at most (default %(default)s)")
    serve.add_argument("--batch_window_ms", type=float, default=2.0,
                       help="how long a question waits for others to join its batch "
                       "(default %(default)g ms)")
    for writer in (corpus, index):
        writer.add_argument("--lock_timeout", type=_lock_timeout, default=EDIT_LOCK_TIMEOUT,
                            help="seconds to wait while another corpus edit or re-index of the "
                            "workdir runs (default %(default)g; -1: no limit)")
    return p


def _highlight(text: str, chars, color: bool, width: int = 240) -> str:
    """The block's text around the answer span, the span marked (bold yellow, or [[...]])."""
    if chars is None:
        return textwrap.shorten(text, width, placeholder=" ...")
    s, e = chars
    left = max(0, s - width // 2)
    pre = ("... " if left else "") + text[left:s]
    post = text[e : e + width // 2] + (" ..." if e + width // 2 < len(text) else "")
    mark = f"{BOLD_YELLOW}{text[s:e]}{RESET}" if color else f"[[{text[s:e]}]]"
    return " ".join(f"{pre}{mark}{post}".split())


def format_prediction(p: dict, color: bool) -> str:
    lines = [f"Q: {p['question']}", f"A: {p['prediction']}   (p = {p['probability']:.3f})",
             "evidence (retrieval probability):"]
    for rank, e in enumerate(p["evidence"], start=1):
        chars = p["answer_chars"] if e["block"] == p["answer_block"] else None
        text = _highlight(e["text"], chars, color)
        lines.append(f"  {rank}. [{e['probability']:.3f}] {e['title']} (block {e['block']})")
        lines += ["       " + line for line in textwrap.wrap(text, 93)]
    return "\n".join(lines)


def _ask(args, qa) -> int:
    if args.questions:
        n = qa.ask_file(args.questions, args.output)
        print(f"{n} predictions written to {args.output}")
        return 0
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    for p in qa.ask(args.question):
        print(json.dumps(p) if args.json else format_prediction(p, color) + "\n")
    return 0


def _verify(workdir: str) -> int:
    """``index --verify``: one line per published index (training and serving), worst last."""
    roots = [RunDir(workdir).index, os.path.join(workdir, SERVING_INDEX)]
    results = [r for root in roots if os.path.isdir(root) for r in verify_all(root)]
    if not results:
        raise FileNotFoundError(f"{workdir}: no published index to verify")
    for directory, seconds, problem in results:
        state = "ok" if problem is None else f"DAMAGED: {problem}"
        print(f"{directory}: {state} ({seconds:.1f} s)")
    damaged = sum(problem is not None for _, _, problem in results)
    print(f"{len(results)} index(es) checked, {damaged} damaged")
    return 1 if damaged else 0


def _run(args) -> int:
    if not RunDir(args.workdir).is_run():
        raise FileNotFoundError(f"{args.workdir}: not a run directory (no config.json)")
    if args.command == "index" and args.verify:
        return _verify(args.workdir)
    if args.command == "corpus":
        records = read_edit_file(args.file, args.op)  # checked before the model loads
        qa = RealmQA(args.workdir)
        info = qa.edit(args.op, records, source=args.file, lock_timeout=args.lock_timeout)
        print(f"corpus version {info['version']}: {args.op} {info['documents']} document(s), "
              f"{info['blocks_removed']} block(s) retired, {info['embedded_blocks']} embedded "
              f"in {info['embed_seconds']:.2f} s; {info['live_blocks']} live blocks; "
              f"{info['seconds']:.2f} s in all")
        print(json.dumps(info))
        return 0
    if args.command == "serve":
        return serve(args)
    qa = RealmQA(args.workdir, getattr(args, "batch_size", 8))
    if args.command == "ask":
        return _ask(args, qa)
    info = qa.reindex(lock_timeout=args.lock_timeout)
    print(f"index {info['index_step']}: {info['embedded_blocks']} blocks embedded in "
          f"{info['seconds']:.1f} s (corpus version {info['version']})")
    print(json.dumps(info))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "ask" and bool(args.question) == bool(args.questions):
        parser.error("ask: give questions as arguments or --questions (with --output), not both")
    if args.command == "ask" and bool(args.questions) != bool(args.output):
        parser.error("ask: --questions and --output go together")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.vocab:
        if not os.path.isfile(args.vocab):
            print(f"error: --vocab {args.vocab}: no such file", file=sys.stderr)
            return 1
        os.environ[VOCAB_ENV] = args.vocab
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_OnlyOurs())

    try:
        return _run(args)
    except (*USER_ERRORS, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was published", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
