"""TensorBoard scalars without TensorFlow; clu's writers and periodic actions importable without.

``EventWriter`` is a clu ``MetricWriter`` that writes scalars to a local TensorBoard event file
with the ``tensorboard`` package's record writer and protos (as PyTorch's ``SummaryWriter``
does), never importing TensorFlow (0.5 GiB and ~10 s of start-up per process when installed).

clu's ``metric_writers`` package imports its TF ``SummaryWriter``, and with it TensorFlow, on
import, and ``periodic_actions`` imports that package. This module puts ``EventWriter`` in place
of that ``SummaryWriter`` before importing clu (for the whole process: clu's default writer then
writes scalars through it too), so import ``metric_writers`` and ``periodic_actions`` from here.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import types
from collections.abc import Mapping
from typing import Any

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

_CLU_SUMMARY_WRITER = "clu.metric_writers.summary_writer"


class EventWriter:
    """A clu ``MetricWriter`` of scalars (float32) to one new event file in ``logdir``.

    Images, texts, histograms and the rest are dropped with one warning per kind; hparams too.
    """

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = os.fspath(logdir)
        os.makedirs(self.logdir, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(self.logdir, name)
        self._writer = RecordWriter(open(self.path, "wb"))  # noqa: SIM115 (closed in close())
        self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self._warned: set[str] = set()

    def _add(self, event: event_pb2.Event) -> None:
        self._writer.write(event.SerializeToString())

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        values = [
            summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in scalars.items()
        ]
        event = event_pb2.Event(wall_time=time.time(), step=int(step))
        event.summary.CopyFrom(summary_pb2.Summary(value=values))
        self._add(event)

    def _drop(self, kind: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            logging.getLogger(__name__).warning("EventWriter writes scalars only; %s dropped", kind)

    def write_summaries(self, step: int, values: Mapping, metadata: Mapping | None = None) -> None:
        self._drop("summaries")

    def write_images(self, step: int, images: Mapping) -> None:
        self._drop("images")

    def write_videos(self, step: int, videos: Mapping) -> None:
        self._drop("videos")

    def write_audios(self, step: int, audios: Mapping, *, sample_rate: int) -> None:
        self._drop("audios")

    def write_texts(self, step: int, texts: Mapping) -> None:
        self._drop("texts")

    def write_histograms(self, step: int, arrays: Mapping, num_buckets: Mapping | None = None):
        self._drop("histograms")

    def write_hparams(self, hparams: Mapping) -> None:
        pass  # hparams are in the run's config file

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        if not self._writer.closed:
            self._writer.close()


def _import_clu() -> tuple[types.ModuleType, types.ModuleType]:
    """clu's ``metric_writers`` and ``periodic_actions``, on ``EventWriter`` (no TensorFlow)."""
    if _CLU_SUMMARY_WRITER not in sys.modules:
        stub = types.ModuleType(_CLU_SUMMARY_WRITER, "clu's TF SummaryWriter, here EventWriter.")
        stub.SummaryWriter = EventWriter
        sys.modules[_CLU_SUMMARY_WRITER] = stub
    from clu import metric_writers, periodic_actions

    metric_writers.MetricWriter.register(EventWriter)
    return metric_writers, periodic_actions


metric_writers, periodic_actions = _import_clu()


def create_writer(workdir: str | os.PathLike, just_logging: bool = False):
    """clu's ``MultiWriter`` of an ``EventWriter`` in ``workdir`` and a ``LoggingWriter``.

    Just the ``LoggingWriter`` when ``just_logging`` (processes other than the first).
    """
    if just_logging:
        return metric_writers.LoggingWriter()
    return metric_writers.MultiWriter([EventWriter(workdir), metric_writers.LoggingWriter()])
