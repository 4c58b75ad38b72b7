r"""Feeds every command of the project files and flags it must refuse, and checks that it does.

  python experiments/probe_bad_inputs.py --run=<a trained open-QA workdir> \
      --workdir=/tmp/probe_cases [--only=<substring>]

A fresh probe of bad inputs against ``experiments/evaluate_predictions.py``, ``build_blocks.py``,
``convert.py``, ``evaluate.py``, ``predict.py``, ``realm-jax`` (``realm_jax.serve.cli``), the
training scripts (``finetune.py``, ``pretrain.py``, ``refresh.py``), ``compare_reproductions.py``
and ``kill_trials.py``: malformed JSON lines, wrong field types, binary or UTF-16 files, empty
files, unknown or duplicate ids, impossible flag values, missing or misplaced paths, and runs
damaged on disk (a flipped index byte, a truncated checkpoint, a garbled ``config.json`` or index
``meta.json``).

A case is ok when its command exits non-zero with no traceback (or, for the few cases in
``WARN``, where going on is right, exits 0 with a warning line on stderr), leaves no output file
behind, and leaves the run directory or input file it must not touch unchanged (a digest of
every file but locks). ``--run`` is copied into ``--workdir`` and never modified; each damaged-run
case damages its own copy. Any trained open-QA workdir will do, e.g. ``make reproduce``'s
``runs/reproduce/openqa_orqa_nq``. ``--workdir`` is wiped and recreated.

Prints one row per case (``ok`` or ``FAIL`` with its problems, the name, the exit status, the
last stderr line), writes ``<workdir>/fail_<slug>.log`` (the command and its output) for each
failing case, and ends with a JSON line ``{"cases": n, "ok": k, "failed": [...]}``; exits 1 if a
case failed.
"""

import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "realm_jax.serve.cli"]

_RUN = flags.DEFINE_string("run", None, "A trained open-QA workdir to copy (never modified).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Scratch directory, wiped and recreated.")
_ONLY = flags.DEFINE_string("only", "", "Run only the cases whose name contains this.")
_TIMEOUT = flags.DEFINE_integer("timeout", 600, "Seconds per command.", lower_bound=1)
flags.mark_flags_as_required(["run", "workdir"])

# Cases where going on is right: exit 0 is ok if stderr carries a warning line.
WARN = ("ep: unknown question", "ep: bad regex", "ep: duplicate prediction",
        "predict: 1 MB question", "cli: ask on a truncated checkpoint")

HAMLET, FRANCE = "who wrote hamlet", "capital of france"


def _jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _pred(question: str = HAMLET, prediction="x") -> dict:
    return {"question": question, "prediction": prediction}


def _doc(id_, text: str = "some words") -> dict:
    return {"id": id_, "title": "t", "text": text}


def _script(name: str, *args: str) -> list[str]:
    return [sys.executable, os.path.join(REPO, "experiments", f"{name}.py"), *args]


@dataclasses.dataclass
class _Case:
    name: str
    argv: list[str]
    outputs: list[str]  # must not exist afterwards
    unchanged: str | None  # a file or directory that must be left as it was


class _Probe:
    """The scratch directory: writes the input files and collects the cases."""

    def __init__(self, root: str):
        self.root = root
        self.run = self.path("run")
        self.cases: list[_Case] = []

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def file(self, name: str, content: str | bytes) -> str:
        if isinstance(content, bytes):
            with open(self.path(name), "wb") as f:
                f.write(content)
        else:
            with open(self.path(name), "w", encoding="utf-8") as f:
                f.write(content)
        return self.path(name)

    def add(self, name, argv, outputs=(), unchanged=None):
        self.cases.append(_Case(name, argv, [self.path(o) for o in outputs], unchanged))


def _evaluate_predictions(p: _Probe) -> None:
    refs = p.file("refs.jsonl", _jsonl({"question": HAMLET, "answer": ["Shakespeare"]},
                                       {"question": FRANCE, "answer": ["Paris"]}))
    preds = p.file("preds_ok.jsonl", _jsonl(_pred(HAMLET), _pred(FRANCE)))

    def ep(predictions, references=refs, *extra):
        return _script("evaluate_predictions", f"--predictions={predictions}",
                       f"--references={references}", *extra)

    p.add("ep: bad json line 2", ep(p.file("p1.jsonl", _jsonl(_pred()) + '{"question": \n')))
    p.add("ep: array line", ep(p.file("p2.jsonl", "[1, 2]\n")))
    p.add("ep: prediction is a list", ep(p.file("p3.jsonl", _jsonl(_pred(prediction=["x"])))))
    p.add("ep: unknown question", ep(p.file("p4.jsonl", _jsonl(_pred("nope")))))
    p.add("ep: empty predictions", ep(p.file("p5.jsonl", "")))
    p.add("ep: binary predictions", ep(p.file("p6.jsonl", bytes(range(256)) * 4)))
    p.add("ep: utf-16 predictions", ep(p.file("p7.jsonl", _jsonl(_pred()).encode("utf-16"))))
    answer = lambda a: {"question": HAMLET, "answer": a}
    p.add("ep: answer a string", ep(preds, p.file("r1.jsonl", _jsonl(answer("Shakespeare")))))
    p.add("ep: answer empty list", ep(preds, p.file("r2.jsonl", _jsonl(answer([])))))
    bad_regex = _jsonl(answer(["(["]), {"question": FRANCE, "answer": ["P"]})
    p.add("ep: bad regex", ep(preds, p.file("r3.jsonl", bad_regex), "--regex"))
    p.add("ep: duplicate prediction",
          ep(p.file("p8.jsonl", _jsonl(_pred(), _pred(), _pred(FRANCE)))))
    p.add("ep: refs is a directory", ep(preds, p.root))
    p.add("ep: NaN literal",
          ep(p.file("p9.jsonl", '{"question": "who wrote hamlet", "prediction": NaN}\n')))


def _build_blocks(p: _Probe) -> None:
    def bb(name, corpus, out, *extra, outputs=None):
        argv = _script("build_blocks", f"--corpus={corpus}", f"--output={p.path(out)}", *extra)
        p.add(f"bb: {name}", argv, [out] if outputs is None else outputs)

    hello = _jsonl({"title": "a", "text": "hello world"})
    bb("missing text", p.file("c1.jsonl", _jsonl({"title": "a"})), "o1")
    bb("text a number", p.file("c2.jsonl", _jsonl({"title": "a", "text": 5})), "o2")
    bb("bad utf-8", p.file("c3.jsonl", b'{"title": "a", "text": "caf\xe9"}\n'), "o3")
    bb("max_len 3", p.file("c4.jsonl", hello), "o4", "--max_len=3")
    garbage = p.file("c5.tfr", os.urandom(4096))
    bb("garbage tfr", garbage, "o5", f"--titles={garbage}")
    bb("output parent is a file", p.file("c6.jsonl", hello), "refs.jsonl/x", outputs=())
    bb("empty corpus", p.file("c7.jsonl", ""), "o7")
    bb("only blank lines", p.file("c8.jsonl", "\n\n\n"), "o8")
    records = p.file("br.npy", bytes(64))
    p.add("bb: truncated npy", _script("build_blocks", f"--block_records={records}",
                                       f"--output={p.path('o9')}"), ["o9"])


def _convert(p: _Probe) -> None:
    def convert(name, config, out):
        p.add(f"convert: {name}", _script("convert", f"--config={config}",
                                          f"--workdir={p.path(out)}"), [out])

    convert("missing config", p.path("none.py"), "cv1")
    convert("config without get_config", p.file("cfg.py", "x = 1"), "cv2")
    convert("config raising", p.file("cfg2.py", "def get_config():  raise RuntimeError(1)"), "cv3")


def _evaluate_predict(p: _Probe) -> None:
    run, refs = p.run, p.path("refs.jsonl")
    evaluate = lambda *a: _script("evaluate", *a)
    p.add("evaluate: unknown split",
          evaluate(f"--checkpoint={run}", "--dataset=mini_nq", "--split=bogus"))
    p.add("evaluate: batch 0",
          evaluate(f"--checkpoint={run}", "--dataset=mini_nq", "--split=dev", "--batch_size=0"))
    p.add("evaluate: no checkpoint",
          evaluate(f"--checkpoint={p.path('nope')}", f"--questions={refs}"))
    p.add("evaluate: checkpoint is a file", evaluate(f"--checkpoint={refs}", f"--questions={refs}"))
    p.add("evaluate: output dir missing", evaluate(f"--checkpoint={run}", f"--questions={refs}",
                                                   f"--output={p.path('no/dir/x.jsonl')}"))

    def predict(questions, out):
        return _script("predict", f"--checkpoint={run}", f"--questions={questions}",
                       f"--output={p.path(out)}")

    p.add("predict: output = questions", predict(refs, "refs.jsonl"), unchanged=refs)
    p.add("predict: empty question",
          predict(p.file("q1.jsonl", _jsonl({"question": ""})), "pr1.jsonl"), ["pr1.jsonl"])
    p.add("predict: question only spaces",
          predict(p.file("q2.jsonl", _jsonl({"question": "   "})), "pr2.jsonl"), ["pr2.jsonl"])
    p.add("predict: 1 MB question",
          predict(p.file("q3.jsonl", _jsonl({"question": "a " * 500000})), "pr3.jsonl"))


def _realm_jax(p: _Probe) -> None:
    run = p.run
    ask = lambda *a: [*CLI, "ask", "--workdir", run, *a]
    vocab_ask = lambda vocab: [*CLI, "--vocab", vocab, "ask", "--workdir", run, "who"]
    p.add("cli: no workdir", [*CLI, "ask", "--workdir", p.path("nope"), "who"])
    p.add("cli: empty question", ask(""))
    p.add("cli: bad vocab", vocab_ask(p.file("v.txt", os.urandom(2000))))
    p.add("cli: empty vocab", vocab_ask(p.file("v2.txt", "")))

    def edit(name, command, file, content, *flags_):
        argv = [*CLI, "corpus", "--workdir", run, *flags_, command, p.file(file, content)]
        p.add(f"cli: {name}", argv, unchanged=run)

    edit("add bad jsonl", "add", "e1.jsonl", '{"id": "n1", "title": "t", "text": \n')
    edit("add missing text", "add", "e2.jsonl", _jsonl({"id": "n1", "title": "t"}))
    edit("add existing id", "add", "e3.jsonl", _jsonl(_doc(0, "some words here")))
    edit("add duplicate ids", "add", "e4.jsonl", _jsonl(_doc("n1"), _doc("n1")))
    edit("replace unknown id", "replace", "e5.jsonl", _jsonl(_doc("zz-none")))
    edit("delete unknown id", "delete", "e6.jsonl", _jsonl({"id": "zz-none"}))
    edit("delete empty file", "delete", "e7.jsonl", "")
    edit("add id a float", "add", "e8.jsonl", _jsonl(_doc(1.5)))
    edit("add id null", "add", "e9.jsonl", _jsonl(_doc(None)))
    edit("lock_timeout -5", "add", "e10.jsonl", _jsonl(_doc("n9")), "--lock_timeout", "-5")
    p.add("cli: batch 0", ask("--batch_size", "0", "who"))


def _scripts(p: _Probe) -> None:
    configs = os.path.join(REPO, "experiments", "configs")
    openqa, realm = f"{configs}/openqa_mini.py:tiny", f"{configs}/realm_mini.py:tiny"
    refs = p.path("refs.jsonl")
    p.add("finetune: corpus missing", _script(
        "finetune", f"--config={openqa}", f"--config.data.corpus={p.path('none.jsonl')}",
        f"--workdir={p.path('ft1')}"), ["ft1"])
    p.add("finetune: workdir is a file",
          _script("finetune", f"--config={openqa}", f"--workdir={refs}"), unchanged=refs)
    p.add("pretrain: init run missing", _script(
        "pretrain", f"--config={realm}", f"--config.init.ict_workdir={p.path('none')}",
        f"--workdir={p.path('pt1')}"), ["pt1"])
    p.add("refresh: no checkpoint dir", _script(
        "refresh", f"--checkpoint_dir={p.path('none')}", f"--index_dir={p.path('ix')}",
        f"--blocks={p.path('none2')}"), ["ix"])
    p.add("compare: missing roots", _script(
        "compare_reproductions", f"--first={p.path('a')}", f"--second={p.path('b')}"))
    p.add("kill_trials: 0 trials",
          _script("kill_trials", f"--workdir={p.path('kt')}", "--trials=0"), ["kt"])
    ask = [*CLI, "ask", "--workdir", p.run, "--questions"]
    p.add("cli: ask empty questions file",
          [*ask, p.file("q4.jsonl", ""), "--output", p.path("pr4.jsonl")], ["pr4.jsonl"])
    p.add("cli: ask question a number", [*ask, p.file("q5.jsonl", _jsonl({"question": 5})),
                                         "--output", p.path("pr5.jsonl")], ["pr5.jsonl"])


def _latest_index(run: str) -> str:
    """The run's current index directory (named by ``index/LATEST``)."""
    with open(os.path.join(run, "index", "LATEST"), encoding="utf-8") as f:
        return os.path.join(run, "index", f.read().strip())


def _flip_embedding(run: str) -> None:
    """Flips one byte in the middle of the current index's embeddings."""
    path = os.path.join(_latest_index(run), "embeddings.npy")
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))


def _truncate_checkpoint(run: str) -> None:
    """Halves the largest file of the newest checkpoint."""
    root = os.path.join(run, "checkpoints")
    step = max((d for d in os.listdir(root) if d.isdigit()), key=int)
    files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, step)) for f in fs]
    biggest = max(files, key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.truncate(os.path.getsize(biggest) // 2)


def _garble(where, name: str, text: str):
    """A damage that overwrites ``name`` in ``where(run)`` with ``text``."""
    def damage(run: str) -> None:
        with open(os.path.join(where(run), name), "w", encoding="utf-8") as f:
            f.write(text)
    return damage


_ASK = lambda r: [*CLI, "ask", "--workdir", r, "who"]
# Cases that damage a copy of the run first (each its own copy): name, damage, argv from the copy.
DAMAGED = (
    ("cli: index --verify on a flipped byte", _flip_embedding,
     lambda r: [*CLI, "index", "--workdir", r, "--verify"]),
    ("cli: ask on a truncated checkpoint", _truncate_checkpoint, _ASK),
    ("cli: ask with garbled config.json",
     _garble(lambda r: r, "config.json", '{"batch_size": 8, '), _ASK),
    ("cli: ask with garbled index meta",
     _garble(_latest_index, "meta.json", '{"num_blocks": "many"}'), _ASK),
)


def _digest(path: str) -> str:
    """sha256 of a file, or of a directory tree (names and contents, lock files left out)."""
    h = hashlib.sha256()
    if not os.path.isdir(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    for d, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".lock") or name == "lock":
                continue
            h.update(os.path.join(d, name).encode())
            with open(os.path.join(d, name), "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def _text(output) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", errors="replace")
    return output or ""


def _run_case(case: _Case, env: dict, root: str) -> bool:
    before = _digest(case.unchanged) if case.unchanged else None
    problems = []
    try:
        done = subprocess.run(case.argv, capture_output=True, text=True, encoding="utf-8",
                              errors="replace", env=env, timeout=_TIMEOUT.value)
        rc, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as e:
        rc, stdout, stderr = None, _text(e.stdout), _text(e.stderr)
        problems.append("TIMEOUT")
    lines = [line for line in stderr.splitlines() if line.strip()]
    if "Traceback" in stderr + stdout:
        problems.append("TRACEBACK")
    # A warning: our "warning: ..." lines, or absl's "W<mmdd> ..." log lines.
    warned = any("warning" in ln.lower() or re.match(r"W\d{4} ", ln) for ln in lines)
    if rc == 0 and not (case.name in WARN and warned):
        problems.append("EXIT 0")
    problems += [f"LEFT {o}" for o in case.outputs if os.path.exists(o)]
    if case.unchanged and _digest(case.unchanged) != before:
        problems.append("CHANGED")
    last = lines[-1][:160] if lines else "(no stderr)"
    status = f"FAIL {','.join(problems)}" if problems else "ok  "
    print(f"{status} | {case.name} | rc={rc} | {last}", flush=True)
    if problems:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", case.name).strip("_")
        with open(os.path.join(root, f"fail_{slug}.log"), "w", encoding="utf-8") as f:
            f.write(f"{shlex.join(case.argv)}\n{stderr}{stdout}")
    return not problems


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    run, root = os.path.abspath(_RUN.value), os.path.abspath(_WORKDIR.value)
    if not os.path.isdir(os.path.join(run, "checkpoints")):
        sys.exit(f"--run {run}: not a trained open-QA workdir (no checkpoints/)")
    if os.path.commonpath([run, root]) in (run, root) or os.path.commonpath([REPO, root]) == root:
        sys.exit(f"--workdir {root}: overlaps the run or holds the repository; not wiping it")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    probe = _Probe(root)
    for add_cases in (_evaluate_predictions, _build_blocks, _convert, _evaluate_predict,
                      _realm_jax, _scripts):
        add_cases(probe)
    failed = []
    cases = [c for c in probe.cases if _ONLY.value in c.name]
    for case in cases:
        if not os.path.exists(probe.run) and any(probe.run in a for a in case.argv):
            shutil.copytree(run, probe.run)  # only for the cases that use it
        if not _run_case(case, env, root):
            failed.append(case.name)
    damaged = [d for d in DAMAGED if _ONLY.value in d[0]]
    if not cases and not damaged:
        sys.exit(f"--only {_ONLY.value!r}: no case name contains it")
    for i, (name, damage, command) in enumerate(damaged):
        copy = probe.path(f"run_damaged{i}")
        shutil.copytree(run, copy)
        damage(copy)
        if not _run_case(_Case(name, command(copy), [], None), env, root):
            failed.append(name)
        shutil.rmtree(copy)
    n = len(cases) + len(damaged)
    print(f"{n - len(failed)} of {n} cases ok")
    print(json.dumps({"cases": n, "ok": n - len(failed), "failed": failed}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    app.run(main)
