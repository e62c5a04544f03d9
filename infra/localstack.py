"""The local stack: a Kafka-compatible broker (tansu) and a Redis server.

Both run as detached child processes on free loopback ports, so they outlive
the CLI process that started them. The stack is recorded in ``stack_dir``:

- ``stack.json``: pids, ports, binaries, logs, and each process's start time
  (``/proc/<pid>/stat`` field 22) so a recycled pid is never mistaken for ours;
- ``dev.env``: ``FRESHET_KAFKA_BOOTSTRAP=...`` and ``FRESHET_REDIS_URL=...``;
- ``broker.log`` and ``redis.log``: the processes' output.

Note: tansu returns no default topic configs (``describe_configs`` is empty for
a topic created without config), so create topics with explicit config,
``retention.ms`` included (see :mod:`freshet.infra.topics`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from freshet.features.errors import StackError
from freshet.infra.binaries import find_broker_binary, find_redis_binary

DEFAULT_STACK_DIR = Path(".freshet")
STACK_FILE = "stack.json"
ENV_FILE = "dev.env"
LOCK_FILE = "stack.lock"
BROKER_LOG = "broker.log"
REDIS_LOG = "redis.log"
LOOPBACK = "127.0.0.1"

_STOP_GRACE_S = 5.0
_PROBE_TIMEOUT_S = 2.0
_RECORD_VERSION = 1


class _DetachedPopen(subprocess.Popen[bytes]):
    """A child meant to outlive this process: no "still running" ResourceWarning."""

    def __del__(self, *args: object, **kwargs: object) -> None:
        return


# Popen objects of the processes this Python process started, so they are
# reaped (no zombies) when they exit or are stopped from here.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class StackInfo:
    """How to reach a running local stack."""

    kafka_bootstrap: str
    redis_url: str
    broker_pid: int
    redis_pid: int


@dataclass(frozen=True)
class _Process:
    name: str
    pid: int
    port: int
    binary: str
    start_time: int
    log: str


@dataclass(frozen=True)
class _Record:
    info: StackInfo
    broker: _Process
    redis: _Process

    @property
    def processes(self) -> tuple[_Process, _Process]:
        return (self.broker, self.redis)


# --- processes ---------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _reaped(pid: int) -> bool:
    """Reap ``pid`` if it is our exited child; True if it has exited."""
    child = _CHILDREN.get(pid)
    if child is None or child.poll() is None:
        return False
    del _CHILDREN[pid]
    return True


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), or None if it is gone.

    A zombie counts as gone. Without /proc (not Linux) the start time is
    unknown and reported as -1 while the pid exists.
    """
    if _reaped(pid):
        return None
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return -1
        return -1
    try:
        text = stat.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces, so
    # split after the last ')': field 3 (state) is then index 0, field 22 index 19.
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            child.wait()  # exited already: reap it now rather than leave a zombie
        return None
    return int(fields[19])


def _is_running(process: _Process) -> bool:
    """True if the recorded process is alive and is the very one we started."""
    return _start_time(process.pid) == process.start_time


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        child = _DetachedPopen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[child.pid] = child
    return child


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(log is empty)"


def _signal_group(pid: int, signum: int) -> None:
    """Signal the session started for ``pid`` (it leads its own process group)."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _signal(process: _Process, signum: int) -> None:
    # Only a process whose pid *and* start time match the record is signalled.
    if _is_running(process):
        _signal_group(process.pid, signum)


def _wait_gone(processes: list[_Process], timeout_s: float) -> list[_Process]:
    deadline = time.monotonic() + timeout_s
    remaining = [p for p in processes if _is_running(p)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = [p for p in remaining if _is_running(p)]
    return remaining


def _stop_processes(processes: list[_Process]) -> list[int]:
    """SIGTERM, wait up to 5 s, SIGKILL; return the pids that were stopped."""
    running = [p for p in processes if _is_running(p)]
    for process in running:
        _signal(process, signal.SIGTERM)
    remaining = _wait_gone(running, _STOP_GRACE_S)
    for process in remaining:
        _signal(process, signal.SIGKILL)
    remaining = _wait_gone(remaining, _STOP_GRACE_S)
    if remaining:
        described = ", ".join(f"{p.name} pid {p.pid}" for p in remaining)
        raise StackError(f"could not stop {described} even with SIGKILL")
    return [p.pid for p in running]


def _kill_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            _signal_group(child.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=_STOP_GRACE_S)
        _CHILDREN.pop(child.pid, None)


# --- readiness probes --------------------------------------------------------


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _broker_answers(bootstrap: str, timeout_s: float) -> bool:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        admin.list_topics(timeout=max(timeout_s, 0.1))
    except KafkaException:
        return False
    return True


def _redis_answers(url: str, timeout_s: float) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _wait_ready(
    child: subprocess.Popen[bytes],
    name: str,
    port: int,
    log_path: Path,
    answers: Callable[[float], bool],
    deadline: float,
    timeout_s: float,
) -> None:
    while True:
        code = child.poll()
        if code is not None:
            raise StackError(
                f"the {name} exited with code {code} before answering on "
                f"{LOOPBACK}:{port}; last lines of {log_path}:\n{_tail(log_path)}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StackError(
                f"the {name} (pid {child.pid}) did not answer on {LOOPBACK}:{port} "
                f"within {timeout_s:g}s; last lines of {log_path}:\n{_tail(log_path)}"
            )
        if _port_open(port) and answers(min(_PROBE_TIMEOUT_S, remaining)):
            return
        time.sleep(0.1)


# --- the record --------------------------------------------------------------


@contextlib.contextmanager
def _locked(stack_dir: Path) -> Iterator[None]:
    """Serialise start/stop on one stack directory across processes."""
    stack_dir.mkdir(parents=True, exist_ok=True)
    with (stack_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_record(stack_dir: Path) -> _Record | None:
    path = stack_dir / STACK_FILE
    try:
        raw = json.loads(path.read_text())
        processes = raw["processes"]
        broker = _Process(**processes["broker"])
        redis_process = _Process(**processes["redis"])
        info = StackInfo(
            kafka_bootstrap=raw["kafka_bootstrap"],
            redis_url=raw["redis_url"],
            broker_pid=broker.pid,
            redis_pid=redis_process.pid,
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StackError(
            f"the stack record {path} is unreadable ({type(exc).__name__}: {exc}); "
            "stop any tansu/redis-server processes it described yourself, then delete it"
        ) from exc
    return _Record(info=info, broker=broker, redis=redis_process)


def _write_record(stack_dir: Path, record: _Record) -> None:
    data = {
        "version": _RECORD_VERSION,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "stack_dir": str(stack_dir),
        "kafka_bootstrap": record.info.kafka_bootstrap,
        "redis_url": record.info.redis_url,
        "processes": {"broker": asdict(record.broker), "redis": asdict(record.redis)},
    }
    _write_atomic(stack_dir / STACK_FILE, json.dumps(data, indent=2) + "\n")
    _write_atomic(
        stack_dir / ENV_FILE,
        f"FRESHET_KAFKA_BOOTSTRAP={record.info.kafka_bootstrap}\nFRESHET_REDIS_URL={record.info.redis_url}\n",
    )


def _remove_record(stack_dir: Path) -> None:
    for name in (ENV_FILE, STACK_FILE):
        (stack_dir / name).unlink(missing_ok=True)


# --- public API --------------------------------------------------------------


def _start_fresh(stack_dir: Path, timeout_s: float) -> StackInfo:
    broker_bin = find_broker_binary()
    redis_bin = find_redis_binary()
    broker_port = free_port()
    redis_port = free_port()
    while redis_port == broker_port:
        redis_port = free_port()
    bootstrap = f"{LOOPBACK}:{broker_port}"
    redis_url = f"redis://{LOOPBACK}:{redis_port}/0"
    broker_log = stack_dir / BROKER_LOG
    redis_log = stack_dir / REDIS_LOG
    broker_cmd = [
        str(broker_bin), "broker",
        "--listener-url", f"tcp://{bootstrap}",
        "--advertised-listener-url", f"tcp://{bootstrap}",
        "--storage-engine", "memory://tansu/",
    ]  # fmt: skip
    redis_cmd = [
        str(redis_bin),
        "--port", str(redis_port),
        "--bind", LOOPBACK,
        "--save", "",
        # the online store survives a restart of the stack (the AOF file lives in the stack directory)
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--daemonize", "no",
        "--dir", str(stack_dir),
    ]  # fmt: skip

    started: list[subprocess.Popen[bytes]] = []
    try:
        broker = _spawn(broker_cmd, broker_log)
        started.append(broker)
        redis_child = _spawn(redis_cmd, redis_log)
        started.append(redis_child)
        # Read the start times now: the children cannot be reaped before we do.
        broker_start = _start_time(broker.pid)
        redis_start = _start_time(redis_child.pid)
        deadline = time.monotonic() + timeout_s
        _wait_ready(
            broker, "broker", broker_port, broker_log,
            lambda t: _broker_answers(bootstrap, t), deadline, timeout_s,
        )  # fmt: skip
        _wait_ready(
            redis_child, "redis server", redis_port, redis_log,
            lambda t: _redis_answers(redis_url, t), deadline, timeout_s,
        )  # fmt: skip
        if broker_start is None or redis_start is None:
            raise StackError(f"a stack process vanished while starting; see the logs in {stack_dir}")
        record = _Record(
            info=StackInfo(bootstrap, redis_url, broker.pid, redis_child.pid),
            broker=_Process(
                "broker", broker.pid, broker_port, str(broker_bin), broker_start, str(broker_log)
            ),
            redis=_Process("redis", redis_child.pid, redis_port, str(redis_bin), redis_start, str(redis_log)),
        )
        _write_record(stack_dir, record)
    except BaseException:
        _kill_children(started)
        _remove_record(stack_dir)
        raise
    return record.info


def start_stack(stack_dir: Path = DEFAULT_STACK_DIR, timeout_s: float = 30) -> StackInfo:
    """Start the broker and Redis (or reuse the recorded stack if it still runs).

    A recorded stack whose two processes are alive (same pid and start time)
    and answer is returned as is. If only part of it is alive, or it does not
    answer, the remains are stopped and a fresh stack is started.
    """
    if not timeout_s > 0:
        raise StackError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    stack_dir = Path(stack_dir).absolute()
    with _locked(stack_dir):
        record = _read_record(stack_dir)
        if record is not None:
            alive = [p for p in record.processes if _is_running(p)]
            if (
                len(alive) == len(record.processes)
                and _broker_answers(record.info.kafka_bootstrap, _PROBE_TIMEOUT_S)
                and _redis_answers(record.info.redis_url, _PROBE_TIMEOUT_S)
            ):
                return record.info
            _stop_processes(alive)
            _remove_record(stack_dir)
        return _start_fresh(stack_dir, timeout_s)


def stop_stack(stack_dir: Path = DEFAULT_STACK_DIR) -> list[int]:
    """Stop exactly the recorded processes; return their pids ([] if none ran)."""
    stack_dir = Path(stack_dir).absolute()
    if not (stack_dir / STACK_FILE).exists():
        (stack_dir / ENV_FILE).unlink(missing_ok=True)
        return []
    with _locked(stack_dir):
        record = _read_record(stack_dir)
        if record is None:
            return []
        stopped = _stop_processes(list(record.processes))
        _remove_record(stack_dir)
        return stopped


def read_stack(stack_dir: Path = DEFAULT_STACK_DIR) -> StackInfo | None:
    """The recorded stack if both its processes are still alive, else None."""
    record = _read_record(Path(stack_dir).absolute())
    if record is None or not all(_is_running(p) for p in record.processes):
        return None
    return record.info


def env_exports(info: StackInfo) -> str:
    """Shell lines that point Freshet at ``info`` (for ``eval $(freshet dev env)``)."""
    return (
        f"export FRESHET_KAFKA_BOOTSTRAP={shlex.quote(info.kafka_bootstrap)}\n"
        f"export FRESHET_REDIS_URL={shlex.quote(info.redis_url)}"
    )


@contextlib.contextmanager
def ephemeral_stack(tmp_dir: Path, timeout_s: float = 30) -> Iterator[StackInfo]:
    """A stack in ``tmp_dir`` for the length of a ``with`` block (tests, demo)."""
    info = start_stack(tmp_dir, timeout_s=timeout_s)
    try:
        yield info
    finally:
        stop_stack(tmp_dir)
