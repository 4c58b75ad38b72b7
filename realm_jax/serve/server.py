"""``realm-jax serve``: load the run once, compile its batch shapes, listen on one host and port.

The edit token (``--allow-edits``) comes from ``--token-file`` (its first line) or the
environment variable ``REALM_JAX_TOKEN``; ``--allow-edits`` without one is refused before
anything loads. The socket is bound here, to ``--host`` only, before uvicorn serves it, so
``--port 0`` takes any free port and the line printed names the one taken.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time

from realm_jax.errors import ConfigError

TOKEN_ENV = "REALM_JAX_TOKEN"
WARM_UP_QUESTION = "what is the capital of France?"

log = logging.getLogger("realm_jax")


def edit_token(allow_edits: bool, token_file: str | None) -> str | None:
    """The bearer token edits need (None: edits off). One error line when it cannot be had."""
    if not allow_edits:
        if token_file:
            log.warning("--token-file without --allow-edits: corpus edits stay off")
        return None
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token, where = f.readline().strip(), token_file
        except UnicodeDecodeError:
            raise ConfigError(f"--token-file {token_file}: not UTF-8 text") from None
    elif os.environ.get(TOKEN_ENV) is not None:
        token, where = os.environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    else:
        raise ConfigError(f"--allow-edits needs an edit token: --token-file FILE or ${TOKEN_ENV}")
    if len(token) < 8 or any(c.isspace() for c in token):
        raise ConfigError(f"{where}: the edit token must be 8 or more characters, no spaces")
    return token


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` only (IPv4 or IPv6 by the host's form)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected 0..65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ConfigError(f"--host {host}: {e.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"{host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    return sock


def serve(args) -> int:
    """Runs until interrupted: on Ctrl-C open requests finish, "stopped", exit status 0; on
    SIGTERM they finish too, and the process ends by the signal (uvicorn re-raises it)."""
    import uvicorn

    from realm_jax.serve.api import RealmQA
    from realm_jax.serve.batching import QuestionBatcher, batch_shapes
    from realm_jax.serve.http import create_app

    token = edit_token(args.allow_edits, args.token_file)
    if args.batch_window_ms < 0:
        raise ConfigError(f"--batch_window_ms {args.batch_window_ms}: expected >= 0")
    sock = bind(args.host, args.port)  # before loading: a taken port fails in a second
    start = time.perf_counter()
    qa = RealmQA(args.workdir)
    batcher = QuestionBatcher(qa.ask_each, args.max_batch, args.batch_window_ms / 1e3)
    print(f"loaded {args.workdir} in {time.perf_counter() - start:.1f} s; compiling batch shapes "
          f"{', '.join(map(str, batch_shapes(args.max_batch)))} ...", flush=True)
    seconds = batcher.warm_up(WARM_UP_QUESTION)
    info = qa.info()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"compiled in {sum(seconds):.1f} s; step {info['step']}, corpus version "
          f"{info['corpus_version']}, {info['live_blocks']} live blocks, {info['index']} index; "
          f"edits {'on' if token else 'off'}", flush=True)
    print(f"serving on http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
    config = uvicorn.Config(create_app(qa, batcher, token), log_level="warning",
                            access_log=False, timeout_graceful_shutdown=10)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once open requests have finished
        pass
    print("stopped", file=sys.stderr)
    return 0
