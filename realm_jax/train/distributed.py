"""Joining a multi-host job (``jax.distributed``) and keeping its logs to process 0.

Every script that trains or refreshes takes ``--distributed``: one process per host joins the job,
with the coordinator given by flags or found by JAX itself (TPU pods, SLURM, Open MPI;
``JAX_COORDINATOR_ADDRESS`` in the environment also works). After that each loop reads only its
process's rows (``input_pipeline.process_rows``), orbax checkpoints collectively, the refresher
splits the corpus by shards (``index.embed_pass``), and only process 0 writes metrics and logs.
"""

from __future__ import annotations

import logging

import jax
from absl import flags
from absl import logging as absl_logging


def define_flags() -> None:
    """``--distributed`` and the coordinator flags, for a script's absl flags."""
    flags.DEFINE_bool("distributed", False, "Join a multi-host job (one process per host).")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (else detected).")
    flags.DEFINE_integer("num_processes", None, "Processes in the job (else detected).")
    flags.DEFINE_integer("process_id", None, "This process's index (else detected).")


def initialize_from_flags() -> None:
    f = flags.FLAGS
    if f.distributed:
        initialize(f.coordinator_address, f.num_processes, f.process_id)


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """``jax.distributed.initialize`` (gloo collectives on CPU), then process-0-only logs."""
    # Cross-process collectives for CPU devices (tests, CPU clusters); GPU/TPU have their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    primary_only_logs()


def primary_only_logs() -> None:
    """Processes other than 0 keep warnings and errors only (their INFO would repeat 0's)."""
    if jax.process_index() != 0:
        absl_logging.set_verbosity(absl_logging.WARNING)
        logging.getLogger().setLevel(logging.WARNING)
        logging.getLogger("realm_jax").setLevel(logging.WARNING)
