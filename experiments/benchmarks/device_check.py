r"""A short check of a GPU / TPU host (about 5 minutes): devices, encoder throughput, one REALM
train step, exact MIPS over 1M x 128 in bfloat16, one ICT step on all local devices.

  python experiments/benchmarks/device_check.py               # MiniLM-L6 shapes, 1M rows
  python experiments/benchmarks/device_check.py --size=tiny   # seconds, any machine

Prints a table and a final JSON line (``realm_jax/benchmarks/device_check.py``); record both in
RESULTS.md with the date and the machine.
"""

from absl import app, flags

from realm_jax.benchmarks.device_check import SIZES, device_check_main

_SIZE = flags.DEFINE_enum("size", "full", sorted(SIZES), "full: MiniLM-L6, 1M rows; tiny: smoke.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    device_check_main(_SIZE.value)


if __name__ == "__main__":
    app.run(main)
