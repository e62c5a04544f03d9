"""Refused credentials fail fast, with a message that names the problem and never the secret."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import redis

from freshet.infra.binaries import find_redis_binary
from freshet.infra.localstack import free_port
from freshet.synthetic import StreamSpec
from freshet.synthetic import produce as produce_stream
from tests.integration.conftest import Servers
from tests.integration.harness import cli_env, provision
from tests.integration.test_replay import write_repo


def test_wrong_redis_password_exits_fast_without_printing_it(servers: Servers, unique: str,
                                                            tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", f"creds-{unique}")
    port = free_port()
    proc = subprocess.Popen([str(find_redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", "right-pass"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, password="right-pass")
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        provision(servers, f"creds-{unique}", 3)
        produce_stream(servers.kafka_config(), f"creds-{unique}", StreamSpec(events=500, cards=20, seed=4))
        secret = "wr0ng-Pa55-with@and:"
        env = cli_env(servers, tmp_path, redis_url=f"redis://default:{secret}@127.0.0.1:{port}/0")
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "freshet", "run", "--repo", str(repo),
                                 "--until-caught-up"], env=env, capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - started
        assert result.returncode != 0
        assert elapsed < 15, elapsed
        assert "refused" in result.stderr and "FRESHET_REDIS_URL" in result.stderr, result.stderr[-2000:]
        assert secret not in result.stdout + result.stderr
        assert "wr0ng" not in result.stdout + result.stderr
    finally:
        proc.terminate()
        proc.wait(10)
