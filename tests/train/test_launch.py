"""The scripts' flag parsing: a config file that fails is one `error:` line naming it, exit 1."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What experiments/{ict,pretrain,finetune,convert}.py do with their --config flag, without the
# training imports.
CHILD = (
    "from absl import app\n"
    "from ml_collections import config_flags\n"
    "from realm_jax.train.launch import parse_flags\n"
    "config = config_flags.DEFINE_config_file('config', None, 'a config')\n"
    "app.run(lambda argv: print('batch', config.value.batch_size), flags_parser=parse_flags)\n"
)
CONFIGS = {
    "good.py": "import ml_collections\n\ndef get_config(arg=None):\n"
               "    return ml_collections.ConfigDict({'batch_size': 8})\n",
    "none.py": "batch_size = 8\n",
    "raises.py": "import ml_collections\n\ndef get_config(arg=None):\n"
                 "    raise ValueError(f'raises.py:{arg}: expected no argument')\n",
}


@pytest.mark.parametrize("name, flag, expected", [
    ("good.py", "--config={}", "batch 8"),
    ("none.py", "--config={}", "error: {}: defines no get_config()"),
    ("raises.py", "--config={}:x", "error: {}:4: ValueError: raises.py:x: expected no argument"),
    ("raises.py", "--config {}:x", "error: {}:4: ValueError: raises.py:x: expected no argument"),
    ("missing.py", "--config={}", "error: --config {}: no such file"),
    ("good.py", "--config={} --config.batch_size=abc",
     "FATAL Flags parsing error: flag --config.batch_size=abc: invalid literal for int() with "
     "base 10: 'abc'\nPass --helpshort or --helpfull to see help on flags."),
])
def test_a_failing_config_file_is_one_line_naming_it(tmp_path, name, flag, expected):
    path = tmp_path / name
    if name in CONFIGS:
        path.write_text(CONFIGS[name])
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", CHILD, *flag.format(path).split(" ")],
                            capture_output=True, text=True, env=env, timeout=120)
    ok = expected.startswith("batch")
    assert (result.stdout if ok else result.stderr).strip() == expected.format(path), result.stderr
    assert result.returncode == (0 if ok else 1)
