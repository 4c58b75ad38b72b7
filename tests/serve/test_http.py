"""``realm-jax serve`` over real HTTP on loopback: answers with evidence, batching, the bad-request
catalogue while another client keeps asking, and edit routes that refuse without --allow-edits or
the token.

One server per module (a subprocess on a free port, ``realm-jax serve`` as a user starts it) over
a copy of the facts run (conftest.py), with edits on and ``--max_batch 8``; the edits-off server
answers only the refusal test.
"""

import http.client
import json
import shutil
import threading
import urllib.parse

import psutil
import pytest

from realm_jax.benchmarks.serve_load import ServerProcess
from realm_jax.serve.cli import main

# One worker runs the module: its tests share one server, in order.
pytestmark = pytest.mark.xdist_group("serve_http")

AMBER = "what is the capital of Amber?"
TOKEN = "s3cret-edit-token"


def request(url, method, path, body=None, headers=None, raw=None):
    """(status, body text) of one request; ``raw``: bytes sent as they are."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        text = response.read().decode()
        return response.status, text
    finally:
        conn.close()


def ask(url, question=AMBER, **extra):
    status, text = request(url, "POST", "/api/ask", {"question": question, **extra})
    return status, json.loads(text)


@pytest.fixture(scope="module")
def server(facts_run, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("served") / "facts")
    shutil.copytree(facts_run, workdir)
    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(TOKEN + "\n")
    with ServerProcess(workdir, 8, ("--allow-edits", "--token-file", str(token_file))) as s:
        yield s


def test_ask_gives_the_answer_its_evidence_and_the_span(server):
    status, p = ask(server.url, top_k=3)
    assert status == 200 and p["prediction"] == "London" and p["question"] == AMBER
    assert len(p["evidence"]) == 3
    top = p["evidence"][0]
    assert top["block"] == p["answer_block"] == 0 and top["title"] == "Amber"
    s, e = top["span"]
    assert top["text"][s:e] == "London" and [s, e] == p["answer_chars"]
    assert all(ev["span"] is None for ev in p["evidence"][1:])
    probs = [ev["probability"] for ev in p["evidence"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert 0 < p["probability"] <= 1


def test_the_api_gives_what_realm_jax_ask_json_prints(server, capsys):
    code = main(["ask", "--workdir", json.loads(request(server.url, "GET", "/api/info")[1])["run"],
                 AMBER, "--json"])
    printed = json.loads(capsys.readouterr().out)
    _, p = ask(server.url)
    assert code == 0
    for e in p["evidence"]:
        del e["span"]
    # Same model and corpus in two processes: the same record; float32 figures to 1e-6.
    assert {k: v for k, v in p.items() if k not in ("probability", "score", "evidence")} == {
        k: v for k, v in printed.items() if k not in ("probability", "score", "evidence")}
    assert p["probability"] == pytest.approx(printed["probability"], rel=1e-5)
    assert [e["block"] for e in p["evidence"]] == [e["block"] for e in printed["evidence"]]


def test_health_and_info(server):
    assert request(server.url, "GET", "/api/health") == (200, '{"status":"ok"}')
    status, text = request(server.url, "GET", "/api/info")
    info = json.loads(text)
    assert status == 200 and info["step"] == 30 and info["live_blocks"] == 8
    assert info["index"] == "exact" and info["edits"] is True and info["max_batch"] == 8
    status, page = request(server.url, "GET", "/")
    assert status == 200 and 'id="question"' in page and "/static/page.js" in page


def test_it_listens_on_loopback_only(server):
    listening = [c.laddr for c in psutil.Process(server.proc.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening == [("127.0.0.1", server.port)]


def test_concurrent_questions_are_answered_in_shared_batches(server):
    questions = [f"what is the capital of {c}?" for c in
                 ("Amber", "Ember", "Umber", "Cobalt", "Indigo", "Ochre", "Sable", "Tawny")]
    alone = {q: ask(server.url, q)[1]["prediction"] for q in questions}
    before = json.loads(request(server.url, "GET", "/api/info")[1])["stats"]
    results, barrier = {}, threading.Barrier(16)

    def client(i):
        barrier.wait()
        q = questions[i % len(questions)]
        results[i] = (q, ask(server.url, q))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = json.loads(request(server.url, "GET", "/api/info")[1])["stats"]
    assert all(status == 200 and p["prediction"] == alone[q] for q, (status, p) in
               results.values())
    assert after["questions"] - before["questions"] == 16
    assert after["batches"] - before["batches"] < 16  # some questions shared a model call
    assert after["largest_batch"] > 1


BAD_REQUESTS = [  # (method, path, raw body, headers, status, words in the error)
    ("POST", "/api/ask", b'{"question": ', {}, 400, "malformed JSON"),
    ("POST", "/api/ask", b"\xff\xfe", {}, 400, "malformed JSON"),
    ("POST", "/api/ask", b'["a list"]', {}, 400, "JSON object"),
    ("POST", "/api/ask", b"{}", {}, 422, "question: missing"),
    ("POST", "/api/ask", b'{"question": 7}', {}, 422, "question: expected a string"),
    ("POST", "/api/ask", b'{"question": "  "}', {}, 422, "question: empty"),
    ("POST", "/api/ask", json.dumps({"question": "why " * 300}).encode(), {}, 422,
     "over the limit of 1000"),
    ("POST", "/api/ask", b'{"question": "\\u200b\\u200b"}', {}, 422, "no words"),
    ("POST", "/api/ask", b'{"question": "who?", "top_k": 9}', {}, 422, "top_k"),
    ("POST", "/api/ask", b'{"question": "who?", "top_k": true}', {}, 422, "top_k"),
    ("POST", "/api/ask", b'{"question": "' + b"a" * 20000 + b'"}', {}, 413, "limit of 16384"),
    ("GET", "/api/ask", None, {}, 405, "Method Not Allowed"),
    ("GET", "/api/nothing-here", None, {}, 404, "Not Found"),
    ("GET", "/static/../config.json", None, {}, 404, ""),
    ("POST", "/api/corpus/rename", b"{}", {}, 404, "no such corpus operation"),
    ("POST", "/api/corpus/add", b'{"documents": []}', {}, 403, "Authorization: Bearer"),
    ("POST", "/api/corpus/add", b"{}", {"Authorization": "Bearer wrong-token-1"}, 403,
     "wrong edit token"),
    ("POST", "/api/corpus/add", b'{"documents": []}', {"Authorization": f"Bearer {TOKEN}"},
     422, "non-empty list"),
    ("POST", "/api/corpus/add", b'{"documents": [{"id": 99, "title": "T"}]}',
     {"Authorization": f"Bearer {TOKEN}"}, 422, "text"),
    ("POST", "/api/corpus/delete", b'{"documents": [{"id": "no-such-doc"}]}',
     {"Authorization": f"Bearer {TOKEN}"}, 422, "no-such-doc"),
]


def test_bad_requests_get_one_line_errors_while_a_client_keeps_asking(server):
    stop, answers = threading.Event(), []

    def steady_client():
        while not stop.is_set():
            answers.append(ask(server.url))

    thread = threading.Thread(target=steady_client)
    thread.start()
    try:
        for method, path, raw, headers, status, words in BAD_REQUESTS:
            got, text = request(server.url, method, path, raw=raw, headers=headers)
            assert got == status, (path, raw, text)
            assert "\n" not in text.strip() and words in json.loads(text)["error"], text
    finally:
        stop.set()
        thread.join()
    assert len(answers) >= 3
    assert all(s == 200 and p["prediction"] == "London" for s, p in answers)


def test_a_body_sent_in_chunks_past_the_limit_is_refused(server):
    parts = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    chunks = iter([b'{"question": "', b"b" * 10000, b"b" * 10000, b'"}'])
    conn.request("POST", "/api/ask", body=chunks, encode_chunked=True,
                 headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 413 and "limit" in json.loads(response.read())["error"]
    conn.close()
    assert ask(server.url)[0] == 200


def test_an_edit_with_the_token_changes_the_next_answer(server):
    oslo = {"id": 0, "title": "Amber", "text": "The capital of Amber is Oslo."}
    status, text = request(server.url, "POST", "/api/corpus/replace", {"documents": [oslo]},
                           {"Authorization": f"Bearer {TOKEN}"})
    info = json.loads(text)
    assert status == 200 and (info["embedded_blocks"], info["live_blocks"]) == (1, 8)
    status, p = ask(server.url)
    assert status == 200 and p["prediction"] == "Oslo"
    assert p["evidence"][0]["text"] == oslo["text"] and p["evidence"][0]["span"] == [24, 28]
    assert json.loads(request(server.url, "GET", "/api/info")[1])["corpus_version"] == 1


def test_edit_routes_refuse_without_allow_edits(facts_run, tmp_path, monkeypatch):
    monkeypatch.setenv("REALM_JAX_TOKEN", TOKEN)  # a token alone does not turn edits on
    with ServerProcess(facts_run, 1) as s:
        for op in ("add", "replace", "delete"):
            status, text = request(s.url, "POST", f"/api/corpus/{op}", {"documents": [{"id": 0}]},
                                   {"Authorization": f"Bearer {TOKEN}"})
            assert status == 403 and "--allow-edits" in json.loads(text)["error"]
        assert json.loads(request(s.url, "GET", "/api/info")[1])["edits"] is False
        assert ask(s.url)[1]["prediction"] == "London"


@pytest.mark.parametrize("argv, env, words", [
    (["--allow-edits"], {}, "needs an edit token"),
    (["--allow-edits", "--token-file", "/no/such/token"], {}, "/no/such/token"),
    (["--allow-edits"], {"REALM_JAX_TOKEN": "short"}, "8 or more characters"),
    (["--port", "70000"], {}, "--port 70000"),
])
def test_serve_usage_errors_are_one_line(argv, env, words, facts_run, monkeypatch, capsys):
    monkeypatch.delenv("REALM_JAX_TOKEN", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["serve", "--workdir", facts_run, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and words in err, err


def test_a_port_in_use_is_one_line(server, facts_run, capsys):
    assert main(["serve", "--workdir", facts_run, "--port", str(server.port)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"127.0.0.1:{server.port}" in err and "in use" in err, err
