#!/usr/bin/env bash
# Wheel smoke test (`make wheel-smoke`): builds the wheel from a copy of the working tree, installs it
# with --no-deps into a scratch venv that sees the test venv's packages, checks the packaged data,
# the import location and the `realm-jax` entry point, then runs the tiny pipeline
# (experiments/reproduce.py --scale=tiny) from an empty directory with the scratch venv's python.
# Env: VENV (default .venv), PYTHON (default python3.11), WHEEL_SMOKE_KEEP=1 keeps the temp dir.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=$(cd "$REPO" && cd "${VENV:-.venv}" && pwd)
PYTHON=${PYTHON:-python3.11}
T0=$SECONDS

say() { echo "wheel-smoke: $*"; }
fail() { echo "wheel-smoke: FAIL: $*" >&2; exit 1; }
took() { echo "wheel-smoke:   ok ($((SECONDS - $1)) s)"; }

[ -x "$VENV/bin/python" ] || fail "no test venv at $VENV (run \`make venv\` first)"
TMP=$(mktemp -d -t realm-wheel-smoke.XXXXXX)
if [ "${WHEEL_SMOKE_KEEP:-0}" = 1 ]; then trap 'say "kept $TMP"' EXIT; else trap 'rm -rf "$TMP"' EXIT; fi
unset PYTHONPATH

# 1. The wheel, built from a copy of the tracked and untracked-but-not-ignored files (no stale build/).
t=$SECONDS; say "building the wheel from a copy of $REPO"
mkdir -p "$TMP/src" "$TMP/dist"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
  | xargs -0 cp --parents -t "$TMP/src") || fail "could not copy the working tree (git ls-files)"
"$VENV/bin/pip" wheel --quiet --no-deps --no-build-isolation -w "$TMP/dist" "$TMP/src" \
  > "$TMP/wheel.log" 2>&1 || { cat "$TMP/wheel.log" >&2; fail "pip wheel failed"; }
WHEELS=("$TMP"/dist/realm_jax-*.whl)
[ ${#WHEELS[@]} = 1 ] && [ -f "${WHEELS[0]}" ] || fail "expected one realm_jax wheel in $TMP/dist"
WHEEL=${WHEELS[0]}
say "  $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"; took $t

# 2. The wheel holds every file of the realm_jax package (modules and data: vocab, corpora, open-QA).
t=$SECONDS; say "checking the wheel's contents against the source package"
"$VENV/bin/python" - "$WHEEL" "$TMP/src" <<'EOF' || fail "the wheel misses package files (setup.cfg [options.package_data])"
import os, sys, zipfile
wheel, src = sys.argv[1:]
names = set(zipfile.ZipFile(wheel).namelist())
want = set()
for root, dirs, files in os.walk(os.path.join(src, "realm_jax")):
    dirs[:] = [d for d in dirs if d != "__pycache__"]
    want.update(os.path.relpath(os.path.join(root, f), src) for f in files if not f.endswith(".pyc"))
needed = {
    "realm_jax/data/vocab/bert_uncased_vocab.txt",
    "realm_jax/data/corpus/mini/passages.jsonl",
    "realm_jax/data/openqa_files/mini/nq.train.jsonl",
    "realm_jax/data/openqa_files/mini/nq.test.jsonl",
    "realm_jax/data/openqa_files/mini/squad.train.jsonl",
    "realm_jax/data/openqa_files/mini/squad.test.jsonl",
}
missing = sorted((want | needed) - names)
for m in missing:
    print(f"wheel-smoke:   missing from the wheel: {m}", file=sys.stderr)
data = [n for n in names if n.startswith("realm_jax/") and not n.endswith(".py")]
print(f"wheel-smoke:   {len(names & want)} package files present, {len(data)} of them data files")
sys.exit(1 if missing else 0)
EOF
took $t

# 3. The scratch venv (no pip of its own: the test venv's pip installs into it): the wheel with
#    --no-deps, then a .pth line adding the test venv's site-packages
#    (after the install, so pip does not see the test venv's editable realm-jax).
t=$SECONDS; say "installing the wheel into a scratch venv"
"$PYTHON" -m venv --without-pip "$TMP/venv" || fail "$PYTHON -m venv failed"
SP=$("$TMP/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
TEST_SP=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$VENV/bin/pip" --python "$TMP/venv/bin/python" install --quiet --no-index --no-deps "$WHEEL" \
  > "$TMP/install.log" 2>&1 \
  || { cat "$TMP/install.log" >&2; fail "pip install --no-deps of the wheel failed"; }
echo "$TEST_SP" > "$SP/realm_smoke_test_venv.pth"
took $t

# 4. realm_jax, its data and its metadata resolve to the wheel's copy, not the editable install.
t=$SECONDS; say "checking that realm_jax resolves to the wheel's copy"
mkdir -p "$TMP/empty"
(cd "$TMP/empty" && "$TMP/venv/bin/python" - "$TMP/venv" <<'EOF') || fail "realm_jax does not resolve to the scratch venv"
import importlib.metadata, os, sys
venv = os.path.realpath(sys.argv[1])
import realm_jax
from realm_jax import assets
from realm_jax.data import questions, tokenization
inside = lambda p: os.path.realpath(p).startswith(venv + os.sep)
checks = {
    "realm_jax.__file__": realm_jax.__file__,
    "vocab": tokenization.VOCAB_PATH,
    "mini corpus": assets.MINI_PASSAGES,
    "open-QA files": questions.OPENQA_DIR,
    "realm-jax metadata": str(importlib.metadata.distribution("realm-jax").locate_file("")),
}
bad = 0
hooks = [m for m in sys.modules if m.startswith("__editable__")]
if hooks:
    bad += 1
    print(f"wheel-smoke:   the test venv's editable-install hook was loaded: {hooks}")
for what, path in checks.items():
    ok = inside(path) and os.path.exists(path)
    bad += not ok
    print(f"wheel-smoke:   {'ok' if ok else 'NOT in the scratch venv or missing'}: {what}: {path}")
sys.exit(1 if bad else 0)
EOF
took $t

# 5. The console script.
t=$SECONDS; say "running realm-jax --help"
(cd "$TMP/empty" && "$TMP/venv/bin/realm-jax" --help > "$TMP/help.log" 2>&1) \
  || { cat "$TMP/help.log" >&2; fail "realm-jax --help exited non-zero"; }
[ -s "$TMP/help.log" ] || fail "realm-jax --help printed nothing"
say "  $(head -1 "$TMP/help.log")"; took $t

# 6. The tiny pipeline, from an empty directory (scripts and configs come from the repository).
t=$SECONDS; say "running experiments/reproduce.py --scale=tiny from an empty directory"
mkdir -p "$TMP/run"
(cd "$TMP/run" && XLA_FLAGS= JAX_PLATFORMS=cpu "$TMP/venv/bin/python" \
  "$REPO/experiments/reproduce.py" --scale=tiny --workdir=./tiny > "$TMP/tiny.log" 2>&1) \
  || { tail -40 "$TMP/tiny.log" >&2; fail "the tiny pipeline failed (log tail above)"; }
[ -s "$TMP/run/tiny/table1.md" ] || { tail -40 "$TMP/tiny.log" >&2; fail "the tiny pipeline wrote no tiny/table1.md"; }
tail -5 "$TMP/tiny.log" | sed 's/^/wheel-smoke:   | /'; took $t

say "PASS in $((SECONDS - T0)) s: wheel built with its data files, installed (--no-deps) into a scratch venv," \
  "realm_jax and its data resolve there, realm-jax --help and the tiny pipeline ran"
