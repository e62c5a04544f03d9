"""The Parquet log on an S3-compatible object store (SeaweedFS here), through the documented CLI.

`freshet run` writes its log to ``s3://<bucket>/<prefix>``, is SIGKILLed mid-stream and restarted: the
S3 log must equal an uninterrupted run's local log (`freshet parity` between them), a training set read
from S3 must equal the one read from the local log, a replay with two workers into S3 must equal it
too, status must read the S3 log's rows and `freshet reset` must move it aside.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from freshet.features.log_store import LogRoot, s3_filesystem
from freshet.features.offline_layout import list_parts
from freshet.features.registry import Registry
from freshet.features.training import get_historical_features
from freshet.infra.processes import pid_alive
from freshet.replay.status import view_status
from tests.integration.conftest import ObjectStore, Servers
from tests.integration.harness import redis_db
from tests.integration.test_crash_recovery import REPO_YAML, card_topic


def s3_root(store: ObjectStore, prefix: str) -> LogRoot:
    fs = s3_filesystem(store.endpoint, access_key=store.access_key, secret_key=store.secret_key)
    return LogRoot(fs, f"{store.bucket}/{prefix}", "s3", store.endpoint)


def freshet(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "freshet", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_log_on_s3_survives_sigkill_and_matches_local(servers: Servers, object_store: ObjectStore, unique: str,
                                                      tmp_path: Path) -> None:
    repo, views = card_topic(servers, tmp_path, f"s3-{unique}", events=12_000, seed=23)
    base = {**os.environ, "FRESHET_KAFKA_BOOTSTRAP": servers.kafka_bootstrap,
            "FRESHET_STACK_DIR": str(tmp_path / "no-stack")}
    s3_uri = f"s3://{object_store.bucket}/{unique}/offline"
    root = s3_root(object_store, f"{unique}/offline")
    s3_env = {**base, **object_store.env(s3_uri), "FRESHET_REDIS_URL": redis_db(servers.redis_url, 8),
              "FRESHET_STATE_DIR": str(tmp_path / "state-s3")}

    # live run to S3, SIGKILLed once its log holds files, then restarted to the end
    cmd = ["run", "--repo", str(repo), "--group", f"s3-{unique}", "--commit-interval", "0.5", "--progress-interval", "1"]
    first = subprocess.Popen([sys.executable, "-m", "freshet", *cmd], env=s3_env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any(list_parts(root, v) for v in views):
        time.sleep(0.1)
    time.sleep(0.7)  # a few more checkpoints, then kill mid-stream
    assert first.poll() is None, "the run ended before it could be killed mid-stream"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    files_at_kill = sum(len(list_parts(root, v)) for v in views)
    assert files_at_kill > 0
    second = freshet([*cmd, "--until-caught-up"], s3_env)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]

    # the same topic, uninterrupted, into a local directory
    local = tmp_path / "local-offline"
    local_env = {**base, "FRESHET_OFFLINE_ROOT": str(local), "FRESHET_REDIS_URL": redis_db(servers.redis_url, 9),
                 "FRESHET_STATE_DIR": str(tmp_path / "state-local")}
    reference = freshet(["run", "--repo", str(repo), "--group", f"local-{unique}", "--until-caught-up"], local_env)
    assert reference.returncode == 0, (reference.stdout + reference.stderr)[-3000:]

    for view in views:
        parity = freshet(["parity", "--view", view.name, "--a", s3_uri, "--b", str(local)], s3_env)
        assert parity.returncode == 0 and "parity: OK" in parity.stdout, parity.stdout + parity.stderr
        assert "0 rows in A" not in parity.stdout

    # a training set read from S3 equals the one read from the local log (in process: the CLI's own call)
    labels = pa.table({"card_id": [f"card-{i % 300:05d}" for i in range(3_000)],
                       "ts": pa.array([1_700_000_000_000 - 25 * 60_000 + 577 * i for i in range(3_000)],
                                      pa.timestamp("ms", tz="UTC"))})
    registry = Registry.load(repo)
    features = ["spend_5m", "spend_now:biggest"]
    from_s3 = get_historical_features(labels, features, registry.views, root)
    from_local = get_historical_features(labels, features, registry.views, local)
    assert from_s3.num_rows == 3_000 and from_s3.column("n").null_count < 3_000
    assert from_s3.equals(from_local)

    # a replay with two workers into S3 equals the local log; status reads it; reset moves it aside
    replay_uri = f"s3://{object_store.bucket}/{unique}/replay"
    replay_env = {**s3_env, "FRESHET_OFFLINE_ROOT": replay_uri, "FRESHET_STATE_DIR": str(tmp_path / "state-replay")}
    replayed = freshet(["replay", "--repo", str(repo), "--view", "spend_5m", "--workers", "2"], replay_env)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    parity = freshet(["parity", "--view", "spend_5m", "--a", replay_uri, "--b", str(local)], s3_env)
    assert parity.returncode == 0 and "parity: OK" in parity.stdout, parity.stdout + parity.stderr

    rows = {r["view"]: r["log"]["rows"] for r in view_status(registry, None, root, None)}
    assert rows == {r["view"]: r["log"]["rows"] for r in view_status(registry, None, local, None)}
    assert all(n > 0 for n in rows.values())

    reset = freshet(["reset", "--repo", str(repo), "--group", f"s3-{unique}", "--yes"], s3_env)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert f"moved log {s3_uri}/spend_5m/v1 -> {s3_uri}/spend_5m/v1.before-reset-" in reset.stdout
    after = {r["view"]: r["log"]["rows"] for r in view_status(registry, None, root, None)}
    assert after == {name: 0 for name in rows}
    kept = [name for name in root.children(root.join("spend_5m")) if name.startswith("v1.before-reset-")]
    assert len(kept) == 1 and root.files(root.join("spend_5m", kept[0]))


def test_secrets_stay_out_of_errors(object_store: ObjectStore, unique: str, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "views.yaml").write_text(REPO_YAML.format(topic=f"s3-{unique}"))
    env = {**os.environ, **object_store.env(f"s3://{object_store.bucket}/{unique}"),
           "FRESHET_STACK_DIR": str(tmp_path / "no-stack"), "AWS_SECRET_ACCESS_KEY": "not-the-secret-4711"}
    # wrong credentials: the command fails with a message naming the root, never the secret
    done = freshet(["status", "--repo", str(repo)], env, timeout=120)
    assert done.returncode != 0
    assert f"s3://{object_store.bucket}/{unique}" in done.stderr
    assert "not-the-secret-4711" not in done.stdout + done.stderr
    # credentials in the URI are refused before any request
    done = freshet(["status", "--repo", str(repo), "--offline-root", "s3://key:secret-4711@bucket/x"], env)
    assert done.returncode == 2 and "must not carry credentials" in done.stderr
    assert "secret-4711" not in done.stderr


def test_dev_up_object_store_is_the_log_until_down(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRESHET_", "AWS_"))}
    env["FRESHET_STACK_DIR"] = str(tmp_path / ".freshet")
    store = None
    try:
        up = freshet(["dev", "up", "--object-store"], env, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "log at s3://freshet/offline" in up.stdout
        exports = dict(line.removeprefix("export ").split("=", 1) for line in
                       freshet(["dev", "env"], env).stdout.splitlines())
        assert exports["FRESHET_OFFLINE_ROOT"] == "s3://freshet/offline"
        assert exports["FRESHET_S3_ENDPOINT"].startswith("http://127.0.0.1:")
        assert exports["AWS_ACCESS_KEY_ID"] and exports["AWS_SECRET_ACCESS_KEY"]
        # without FRESHET_OFFLINE_ROOT, commands use the stack's object store (and its credentials)
        repo = tmp_path / "repo"
        repo.mkdir()
        (repo / "views.yaml").write_text(REPO_YAML.format(topic="dev-s3"))
        status = freshet(["status", "--repo", str(repo)], env)
        assert status.returncode == 0, status.stderr
        assert "log: s3://freshet/offline" in status.stdout
        assert exports["AWS_SECRET_ACCESS_KEY"] not in status.stdout + status.stderr + up.stdout
        store = json.loads((tmp_path / ".freshet" / "object-store" / "object-store.json").read_text())
        assert oct((tmp_path / ".freshet" / "object-store" / "object-store.json").stat().st_mode & 0o777) == "0o600"
    finally:
        down = freshet(["dev", "down"], env)
    assert store is not None and down.returncode == 0 and str(store["pid"]) in down.stdout
    assert not pid_alive(store["pid"])
