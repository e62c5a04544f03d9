"""The offline log's root: local directories and s3:// URIs, named and validated in one place."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from freshet.features.errors import ConfigError, OfflineStoreError
from freshet.features.log_store import LogRoot, open_log_root
from freshet.features.offline_layout import parts_under
from freshet.infra.settings import load_settings


def test_a_local_root_is_absolute_and_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = open_log_root("logs")
    assert root.is_local and root.uri == (tmp_path / "logs").as_posix() and str(root) == root.uri
    path = root.join("view", "v1", "date=2026-11-23", "part-0-5.parquet")
    table = pa.table({"a": [1, 2]})
    root.write_parquet(path, table)
    root.write_text(root.join("view", "v1", "_last_flush-0.json"), '{"files": []}')
    assert root.read_parquet(path).equals(table)
    assert root.read_text(root.join("view", "v1", "_last_flush-0.json")) == '{"files": []}'
    assert root.files(root.join("view")) == sorted([path, root.join("view", "v1", "_last_flush-0.json")])
    assert not any(".tmp" in p for p in root.files(root.base))  # temporary names were moved over
    assert parts_under(root, root.join("view", "v1")) == [path]  # the manifest is not a part
    assert root.children(root.join("view")) == ["v1"] and root.is_dir(root.join("view", "v1"))
    root.move_dir(root.join("view", "v1"), root.join("view", "v1.aside"))
    assert root.children(root.join("view")) == ["v1.aside"]
    root.delete_dir(root.join("view"))
    assert root.files(root.base) == [] and not root.exists(root.join("view"))
    root.delete_dir(root.join("never-there"))  # nothing to delete is not an error
    assert open_log_root(root) is root


def test_only_text_columns_are_dictionary_encoded(tmp_path: Path) -> None:
    root = open_log_root(tmp_path)
    path = root.join("view", "v1", "date=2026-11-24", "part-0-0.parquet")
    table = pa.table({"card_id": ["c1", "c2", "c1"] * 100, "amount": [1.5, 2.5, 1.5] * 100,
                      "source_offset": pa.array(range(300), pa.int64())})
    root.write_parquet(path, table)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" in encodings["card_id"]
    assert "RLE_DICTIONARY" not in encodings["amount"] and "RLE_DICTIONARY" not in encodings["source_offset"]
    assert root.read_parquet(path).equals(table)  # an encoding only: the same values come back


def test_s3_uris_name_bucket_prefix_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FRESHET_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    root = open_log_root("s3://bucket/some/prefix/", s3_endpoint="http://127.0.0.1:8333")
    assert (root.scheme, root.base, root.uri, root.endpoint) == ("s3", "bucket/some/prefix",
                                                                 "s3://bucket/some/prefix", "http://127.0.0.1:8333")
    assert root.join("v", "v1") == "bucket/some/prefix/v/v1" and root.display("bucket/x") == "s3://bucket/x"
    assert open_log_root("s3://bucket").base == "bucket"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://aws-generic:1")
    assert open_log_root("s3://b/p").endpoint == "http://aws-generic:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://aws-s3:2")
    assert open_log_root("s3://b/p").endpoint == "http://aws-s3:2"
    monkeypatch.setenv("FRESHET_S3_ENDPOINT", "http://freshet:3")
    assert open_log_root("s3://b/p").endpoint == "http://freshet:3"
    assert open_log_root("s3://b/p", s3_endpoint="http://flag:4").endpoint == "http://flag:4"


@pytest.mark.parametrize(("uri", "message"), [
    ("gs://bucket/x", "scheme 'gs' is not supported"),
    ("s3://", "names no bucket"),
    ("s3://AKIA:hunter2@bucket/x", "must not carry credentials"),
    ("", "the offline root is empty"),
])
def test_bad_roots_are_named(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        open_log_root(uri)
    assert "hunter2" not in str(raised.value)


def test_a_bad_endpoint_is_named() -> None:
    with pytest.raises(ConfigError, match="S3 endpoint 'ftp://x:1' is not a URL"):
        open_log_root("s3://bucket/x", s3_endpoint="ftp://x:1")


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    root = open_log_root(tmp_path)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(OfflineStoreError, match="cannot read .*bad.parquet"):
        root.read_parquet(root.join("bad.parquet"))


def test_settings_take_a_path_or_a_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FRESHET_OFFLINE_ROOT", raising=False)
    assert load_settings({"offline_root": tmp_path}).log_root().uri == tmp_path.as_posix()
    settings = load_settings({"offline_root": "s3://bucket/log", "s3_endpoint": "http://127.0.0.1:9"})
    root = settings.log_root()
    assert isinstance(root, LogRoot) and root.uri == "s3://bucket/log" and root.endpoint == "http://127.0.0.1:9"
