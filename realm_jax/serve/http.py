"""The HTTP API and the page of ``realm-jax serve`` (Starlette, served by uvicorn).

  GET  /                      the page: ask, see the evidence with the span, edit the corpus
  GET  /api/health            {"status": "ok"}
  GET  /api/info              run, step, corpus version, live blocks, index kind, limits, stats
  POST /api/ask               {"question": str, "top_k"?: 1..5} -> the prediction
  POST /api/corpus/{op}       op: add | replace | delete; {"documents": [{id, title, text}]}
                              (only with --allow-edits, and only with "Authorization: Bearer T")

A prediction is what ``realm-jax ask --json`` prints, its evidence cut to ``top_k`` blocks, each
with ``span``: the answer's character offsets in that block's text (null in the others). Every
error is a 4xx or 5xx with one line of JSON, ``{"error": "..."}``; the server keeps serving.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route

from realm_jax.errors import QuestionError, WorkdirBusyError
from realm_jax.index.corpus_edit import OPS
from realm_jax.openqa.answerer import NUM_EVIDENCE
from realm_jax.serve.api import RealmQA
from realm_jax.serve.batching import QuestionBatcher

log = logging.getLogger("realm_jax")

PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
PAGE_FILES = {"page.js": "text/javascript", "page.css": "text/css"}
MAX_QUESTION_CHARS = 1000
MAX_ASK_BYTES = 16 * 1024  # a question of 1,000 characters is at most ~4 KB as JSON
MAX_EDIT_BYTES = 1024 * 1024
MAX_EDIT_DOCUMENTS = 1000
EDIT_LOCK_TIMEOUT = 10.0  # seconds an HTTP edit waits for another writer of the run (then 409)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": _one_line(message)}, status_code=status)


async def _json_object(request: Request, limit: int) -> dict:
    """The request body as a JSON object, read up to ``limit`` bytes (413 beyond)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise HTTPException(413, f"the body is over the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the body is over the limit of {limit} bytes")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise HTTPException(400, f"malformed JSON: {e}") from None
    if not isinstance(value, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return value


def _question_and_top_k(body: dict) -> tuple[str, int]:
    question = body.get("question")
    if not isinstance(question, str):
        raise HTTPException(422, "question: expected a string" if "question" in body
                            else "question: missing")
    if not question.strip():
        raise HTTPException(422, "question: empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise HTTPException(422, f"question: {len(question)} characters, over the limit of "
                            f"{MAX_QUESTION_CHARS}")
    top_k = body.get("top_k", NUM_EVIDENCE)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= NUM_EVIDENCE:
        raise HTTPException(422, f"top_k: expected an integer from 1 to {NUM_EVIDENCE}")
    return question, top_k


def with_spans(prediction: dict, top_k: int) -> dict:
    """The prediction with ``top_k`` evidence blocks, each with its ``span`` (or None)."""
    evidence = [
        dict(e, span=prediction["answer_chars"] if e["block"] == prediction["answer_block"]
             else None)
        for e in prediction["evidence"][:top_k]
    ]
    return dict(prediction, evidence=evidence)


class ServeApp:
    """The routes over one loaded run; ``app`` is the Starlette application."""

    def __init__(self, qa: RealmQA, batcher: QuestionBatcher, edit_token: str | None = None):
        self.qa, self.batcher, self.edit_token = qa, batcher, edit_token
        routes = [
            Route("/", self.page), Route("/static/{name}", self.static),
            Route("/api/health", self.health), Route("/api/info", self.info),
            Route("/api/ask", self.ask, methods=["POST"]),
            Route("/api/corpus/{op}", self.edit, methods=["POST"]),
        ]
        handlers = {HTTPException: self.http_error, Exception: self.server_error}
        self.app = Starlette(routes=routes, exception_handlers=handlers, lifespan=self.lifespan)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        await self.batcher.start()
        try:
            yield
        finally:
            await self.batcher.close()

    async def http_error(self, request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, exc.detail)

    async def server_error(self, request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    async def page(self, request: Request) -> FileResponse:
        return FileResponse(os.path.join(PAGE_DIR, "index.html"), media_type="text/html")

    async def static(self, request: Request) -> FileResponse:
        name = request.path_params["name"]
        if name not in PAGE_FILES:
            raise HTTPException(404, f"no such file: /static/{name}")
        return FileResponse(os.path.join(PAGE_DIR, name), media_type=PAGE_FILES[name])

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def info(self, request: Request) -> JSONResponse:
        return JSONResponse({
            **self.qa.info(), "edits": self.edit_token is not None,
            "max_batch": self.batcher.max_batch, "batch_window_ms": 1e3 * self.batcher.window_s,
            "max_question_chars": MAX_QUESTION_CHARS, "max_top_k": NUM_EVIDENCE,
            "stats": dict(self.batcher.stats),
        })

    async def ask(self, request: Request) -> JSONResponse:
        question, top_k = _question_and_top_k(await _json_object(request, MAX_ASK_BYTES))
        try:
            prediction = await self.batcher.ask(question)
        except QuestionError as e:
            raise HTTPException(422, str(e)) from None
        return JSONResponse(with_spans(prediction, top_k))

    def _check_token(self, request: Request) -> None:
        if self.edit_token is None:
            raise HTTPException(403, "corpus edits are off (start the server with --allow-edits)")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(403, "corpus edits need an 'Authorization: Bearer <token>' header")
        if not hmac.compare_digest(given.strip().encode(), self.edit_token.encode()):
            raise HTTPException(403, "wrong edit token")

    async def edit(self, request: Request) -> JSONResponse:
        op = request.path_params["op"]
        if op not in OPS:
            raise HTTPException(404, f"no such corpus operation: {op} (expected one of "
                                f"{', '.join(OPS)})")
        self._check_token(request)
        body = await _json_object(request, MAX_EDIT_BYTES)
        documents = body.get("documents")
        if not isinstance(documents, list) or not documents:
            raise HTTPException(422, "documents: expected a non-empty list")
        if len(documents) > MAX_EDIT_DOCUMENTS:
            raise HTTPException(422, f"documents: {len(documents)}, over the limit of "
                                f"{MAX_EDIT_DOCUMENTS} per request")
        if not all(isinstance(d, dict) for d in documents):
            raise HTTPException(422, "documents: each one must be a JSON object")
        try:
            info = await self.batcher.run_exclusive(
                lambda: self.qa.edit(op, documents, "documents", EDIT_LOCK_TIMEOUT)
            )
        except WorkdirBusyError as e:
            raise HTTPException(409, str(e)) from None
        except ValueError as e:  # a record that cannot be applied; the error names it
            raise HTTPException(422, str(e)) from None
        log.warning("corpus version %d: %s of %d document(s) by %s", info["version"], op,
                    info["documents"], request.client.host if request.client else "?")
        return JSONResponse(info)


def create_app(qa: RealmQA, batcher: QuestionBatcher, edit_token: str | None = None) -> Starlette:
    """The ASGI application (``edit_token``: None keeps the corpus routes off)."""
    return ServeApp(qa, batcher, edit_token).app
