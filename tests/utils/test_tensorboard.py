"""The TF-free TensorBoard writer: event files read back exactly, and training's log without TF."""

import glob
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from realm_jax.utils import tensorboard

SCALARS = {  # step -> scalars
    0: {"train/loss": 2.5, "train/accuracy": 0.125},
    10: {"train/loss": 1.0 / 3.0, "train/accuracy": 0.5},
    25: {"train/loss": 1e-7, "train/accuracy": 1.0},
}


def _read(logdir: str) -> dict:
    """tag -> [(step, value)] of the one event file in ``logdir``."""
    (path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    acc = EventAccumulator(path)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_writer_round_trips_scalars(tmp_path):
    writer = tensorboard.EventWriter(tmp_path)
    for step, scalars in SCALARS.items():
        writer.write_scalars(step, {k: np.float64(v) for k, v in scalars.items()})
    writer.close()
    read = _read(str(tmp_path))
    assert sorted(read) == ["train/accuracy", "train/loss"]
    for tag, points in read.items():
        assert [step for step, _ in points] == list(SCALARS)
        # simple_value is a float32: equal to the value rounded to float32, so within 2**-24
        want = [np.float32(SCALARS[step][tag]) for step, _ in points]
        assert [np.float32(v) for _, v in points] == want
        got = [v for _, v in points]
        np.testing.assert_allclose(got, [SCALARS[s][tag] for s in SCALARS], rtol=2**-24, atol=0)


def test_event_writer_is_a_clu_metric_writer(tmp_path):
    writer = tensorboard.EventWriter(tmp_path)
    writer.write_images(0, {"x": np.zeros((2, 2, 3))})  # dropped, not an error
    writer.write_hparams({"lr": 0.1})
    writer.close()
    assert isinstance(writer, tensorboard.metric_writers.MetricWriter)
    assert _read(str(tmp_path)) == {}


def test_create_writer_just_logging_writes_no_event_file(tmp_path):
    writer = tensorboard.create_writer(tmp_path, just_logging=True)
    writer.write_scalars(1, {"loss": 1.0})
    writer.close()
    assert isinstance(writer, tensorboard.metric_writers.LoggingWriter)
    assert not glob.glob(os.path.join(tmp_path, "events.out.tfevents.*"))


_WITHOUT_TF = textwrap.dedent(
    """
    import json, sys
    if sys.argv[2] == "blocked":
        sys.modules["tensorflow"] = None
        sys.modules["tensorflow_datasets"] = None
    from realm_jax.train.loop import MetricsLog
    from clu import metric_writers as clu_writers  # after realm_jax, which makes it importable
    import realm_jax.train.ict, realm_jax.train.realm, realm_jax.train.openqa
    import realm_jax.serve.cli, realm_jax.index.live

    log = MetricsLog(sys.argv[1])
    log.write(0, "train", {"loss": 2.0})
    log.write(5, "eval", {"loss": 0.5})
    log.close()
    writer = clu_writers.create_default_writer(sys.argv[1] + "/clu", asynchronous=False)
    writer.write_scalars(1, {"x": 1.0})
    writer.close()
    loaded = [m for m in ("tensorflow", "tensorflow_datasets") if sys.modules.get(m)]
    print(json.dumps(loaded))
    """
)


@pytest.mark.parametrize("tensorflow", ["blocked", "installed"])
def test_training_log_works_without_tensorflow(tmp_path, tensorflow):
    """With TF unimportable, and with it installed (never imported on the training path)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TF, str(tmp_path), tensorflow],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert _read(str(tmp_path)) == {"train/loss": [(0, 2.0)], "eval/loss": [(5, 0.5)]}
    assert _read(str(tmp_path / "clu")) == {"x": [(1, 1.0)]}  # clu's own default writer too
