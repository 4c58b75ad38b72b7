"""What every experiment script does around a library call: logging, errors, exit codes."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable

import jax
from absl import logging as absl_logging
from jax.experimental.compilation_cache import compilation_cache
from ml_collections import ConfigDict

from realm_jax.errors import (
    USER_ERRORS,
    ConfigError,
)
from realm_jax.run.model_setup import param_counts
from realm_jax.utils import devices
from realm_jax.utils.devices import primary_only_logs
from realm_jax.utils.paths import check_output, missing_file_reason


class _DropOrbaxInfo(logging.Filter):
    """Orbax logs a dozen INFO lines per checkpoint; keep its warnings and errors only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


def quiet_logs() -> None:
    """INFO logs from our code and clu's metric lines, without orbax's per-save chatter."""

    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.get_absl_handler().addFilter(_DropOrbaxInfo())
    primary_only_logs()  # across hosts, INFO from process 0 only


def describe(config: ConfigDict) -> dict[str, int]:
    """Prints the stage's model and parameter counts (built abstractly: nothing materialised)."""

    counts = param_counts(config)
    print(f"{config.stage}: model.bert={config.model.bert} dtype={config.model.dtype} "
          f"batch {config.batch_size} x {config.num_train_steps} steps")
    for name, n in counts.items():
        print(f"  {name:24s} {n:>13,d}  ({n / 1e6:.1f}M)")
    if config.stage == "openqa" and "retriever/embedder" in counts:
        frozen = counts["total"] + counts["retriever/embedder"]
        print(f"  {'+ frozen document tower':24s} {frozen:>13,d}  ({frozen / 1e6:.1f}M)")
    return counts


def run_stage(
    train: Callable[[ConfigDict, str], dict], config: ConfigDict, workdir: str | None,
    dry_run: bool = False,
) -> int:
    """Runs ``train(config, workdir)``; prints its final metrics as the last JSON line.

    ``dry_run`` only builds the model and prints its parameter counts (no workdir needed).
    Returns the exit status: 0, 1 on a user error (one ``error:`` line on stderr), 130 on Ctrl-C
    (the last checkpoint stays; the same command resumes).
    """
    quiet_logs()
    try:
        if dry_run:
            print(json.dumps(describe(config)))
            return 0
        if not workdir:
            raise ConfigError("--workdir is required (unless --dry_run)")
        check_output(workdir, flag="--workdir", directory=True)  # not a file, not below one
        metrics = train(config, workdir)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: {workdir} keeps its last checkpoint; rerun to resume", file=sys.stderr)
        return 130
    if jax.process_index() == 0:  # the other processes' metrics are the same numbers
        print(json.dumps({k: float(v) for k, v in metrics.items()}))
    return 0


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a config file's own failure (no ``get_config``, an exception in
    it) as one ``error:`` line naming the file and the line of the config that raised, exit 1."""
    from absl import flags

    try:
        rest = flags.FLAGS(argv)
        path = _config_arg(argv).split(":", 1)[0]
        if path and (reason := missing_file_reason(path)):
            raise FileNotFoundError(f"--config {path}: {reason}")  # else a 4-line error later
        return rest
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # the config file is user code: anything may escape it
        # ml_collections re-raises a config's TypeError / ValueError with its traceback as text
        # and absl wraps that in a flag error: the config's own exception is the first context.
        failure = e
        while "Error whilst parsing config file" in str(failure) and failure.__context__:
            failure = failure.__context__
        if isinstance(failure, flags.Error):  # absl's own message
            print(f"FATAL Flags parsing error: {failure}\n"
                  "Pass --helpshort or --helpfull to see help on flags.", file=sys.stderr)
        else:
            print(f"error: {_config_failure(argv, failure)}", file=sys.stderr)
        sys.exit(1)


def _config_arg(argv: list[str]) -> str:
    """The value of ``--config`` in ``argv`` ("" if absent)."""
    config = ""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
    return config


def _config_failure(argv: list[str], e: BaseException) -> str:
    """``<config file>[:line]: <what it raised>`` for an exception from loading ``--config``."""
    config = _config_arg(argv) or "--config"
    path = config.split(":", 1)[0]
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.endswith(path)]
    where = f"{path}:{frames[-1].lineno}" if frames else config
    if isinstance(e, AttributeError) and "get_config" in str(e):
        return f"{where}: defines no get_config()"
    return f"{where}: {type(e).__name__}: {e}"


def stage_main(train: Callable[[ConfigDict, str], dict], stage: str) -> None:
    """The whole of ict.py / pretrain.py / finetune.py: their flags, then ``run_stage``."""
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", None, f"A stage config file ({stage}).")
    workdir = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and indexes go here.")
    dry_run = flags.DEFINE_bool("dry_run", False, "Only build the model; print parameter counts.")
    cache = flags.DEFINE_string(
        "compilation_cache_dir", None,
        "Keep compiled XLA programs here across runs (JAX's persistent compilation cache).")

    devices.define_flags()
    flags.mark_flags_as_required(["config"])
    # in --help, not only --helpfull
    key_flags = ("config", "workdir", "dry_run", "distributed", "compilation_cache_dir")
    for name in key_flags:
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        devices.use_memory_saving_cpu_schedule()
        if cache.value:  # module-level constants compiled at import started JAX's cache: restart it
            jax.config.update("jax_compilation_cache_dir", cache.value)
            compilation_cache.reset_cache()
        devices.initialize_from_flags()
        sys.exit(run_stage(train, config.value, workdir.value, dry_run.value))

    app.run(main, flags_parser=parse_flags)
