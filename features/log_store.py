"""Where the offline log lives: a local directory or an ``s3://bucket/prefix``, through ``pyarrow.fs``.

Every reader and writer of the log (the log writer, training sets, parity, status, drift,
consistency, materialize, replay plans, reset) takes a :class:`LogRoot` and names files by
their path inside its filesystem, so one code path serves both. ``pyarrow.fs`` is the one
filesystem layer: it is in the stack already, its S3 client is the AWS SDK's, and DuckDB
scans the pyarrow datasets built on it (DuckDB's own httpfs is not needed).

S3 (and S3-compatible stores: MinIO, SeaweedFS, Ceph): the endpoint comes from
``--s3-endpoint`` / ``FRESHET_S3_ENDPOINT``, else the AWS SDK's ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``, else AWS itself; the region from ``AWS_REGION`` /
``AWS_DEFAULT_REGION`` (default ``us-east-1``); credentials by the AWS SDK's default chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, profiles, instance
roles). Credentials are never part of a root's name, so messages and logs cannot show them.

Writes are whole files under a temporary name moved over the final one: a rename on a local
disk, and on S3 a copy to the final key (an object appears whole or not at all) then a delete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from freshet.features.errors import ConfigError, OfflineStoreError

S3_ENDPOINT_ENV = ("FRESHET_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The top-level text columns of ``schema``: the ones worth a Parquet dictionary."""
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


@dataclass(frozen=True)
class LogRoot:
    """The log's filesystem and its base path in it (``/abs/dir`` locally, ``bucket/prefix`` on S3)."""

    fs: pafs.FileSystem
    base: str
    scheme: str = "file"  # file | s3
    endpoint: str | None = None

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def uri(self) -> str:
        """The root as a user names it (no credentials): ``/abs/dir`` or ``s3://bucket/prefix``."""
        return self.base if self.is_local else f"s3://{self.base}"

    def __str__(self) -> str:
        return self.uri

    def join(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *(p.strip("/") for p in parts if p)])

    def display(self, path: str) -> str:
        """A file's path as a user names it (for messages)."""
        return path if self.is_local else f"s3://{path}"

    def name(self, path: str) -> str:
        return path.rstrip("/").rsplit("/", 1)[-1]

    def parent(self, path: str) -> str:
        return path.rstrip("/").rsplit("/", 1)[0]

    def _error(self, action: str, path: str, exc: Exception) -> OfflineStoreError:
        hint = "" if self.is_local else (
            f" (S3 endpoint {self.endpoint or 'AWS'}: check FRESHET_S3_ENDPOINT / --s3-endpoint and the AWS "
            "credentials, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile)")
        return OfflineStoreError(f"cannot {action} {self.display(path)}: {exc}{hint}")

    # --- queries
    def _info(self, path: str) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(path)
        except OSError as exc:
            raise self._error("read", path, exc) from exc

    def exists(self, path: str) -> bool:
        return bool(self._info(path).type != pafs.FileType.NotFound)

    def is_file(self, path: str) -> bool:
        return bool(self._info(path).type == pafs.FileType.File)

    def is_dir(self, path: str) -> bool:
        """A directory locally; on S3, a prefix that holds at least one object (some S3-compatible
        stores keep emptied "directories": they do not count)."""
        if self.is_local:
            return bool(self._info(path).type == pafs.FileType.Directory)
        return bool(self.files(path))

    def files(self, under: str) -> list[str]:
        """Every file below ``under`` (recursively), sorted; [] when there is none."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(under, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise self._error("list", under, exc) from exc
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def children(self, under: str) -> list[str]:
        """Names directly below ``under`` (files and directories), sorted."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(under, recursive=False, allow_not_found=True))
        except OSError as exc:
            raise self._error("list", under, exc) from exc
        return sorted(self.name(i.path) for i in infos)

    # --- reads
    def read_text(self, path: str) -> str:
        try:
            with self.fs.open_input_stream(path) as stream:
                return bytes(stream.read()).decode()
        except (OSError, FileNotFoundError) as exc:
            raise self._error("read", path, exc) from exc

    def read_parquet(self, path: str, *, schema: pa.Schema | None = None,
                     columns: list[str] | None = None) -> pa.Table:
        try:
            return pq.read_table(path, filesystem=self.fs, schema=schema, columns=columns)
        except (OSError, pa.ArrowInvalid) as exc:
            raise self._error("read", path, exc) from exc

    def parquet_metadata(self, path: str) -> pq.FileMetaData:
        try:
            with self.fs.open_input_file(path) as handle:
                return pq.ParquetFile(handle).metadata
        except (OSError, pa.ArrowInvalid) as exc:
            raise self._error("read", path, exc) from exc

    def dataset(self, files: list[str], schema: pa.Schema | None = None) -> ds.Dataset:
        """The files as one pyarrow dataset (DuckDB scans it with projection pushdown)."""
        try:
            return ds.dataset(files, schema=schema, format="parquet", filesystem=self.fs)
        except (OSError, pa.ArrowInvalid) as exc:
            raise self._error("read", self.base, exc) from exc

    # --- writes (whole files: a temporary name, then moved over the final one)
    def _prepare(self, path: str) -> str:
        if self.is_local:
            self.fs.create_dir(self.parent(path), recursive=True)
        return f"{self.parent(path)}/.{self.name(path)}.tmp"

    def write_parquet(self, path: str, table: pa.Table, *, compression: str = "zstd") -> None:
        """Dictionary encoding for text columns only: on numbers and times it costs more than it saves
        (a log part of 75,000 values: 35 ms and 2.2 MiB with it everywhere, 19 ms and 1.4 MiB with it
        on the entity only; `python -m bench.parquet_encoding`)."""
        try:
            tmp = self._prepare(path)
            pq.write_table(table, tmp, filesystem=self.fs, compression=compression,
                           use_dictionary=dictionary_columns(table.schema))
            self.fs.move(tmp, path)
        except OSError as exc:
            raise self._error("write", path, exc) from exc

    def write_text(self, path: str, text: str) -> None:
        try:
            tmp = self._prepare(path)
            with self.fs.open_output_stream(tmp) as stream:
                stream.write(text.encode())
            self.fs.move(tmp, path)
        except OSError as exc:
            raise self._error("write", path, exc) from exc

    def delete_dir(self, path: str) -> None:
        try:
            self.fs.delete_dir(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._error("delete", path, exc) from exc

    def move_dir(self, src: str, dst: str) -> None:
        """A rename locally; on S3 every object is copied, then the source deleted (an interrupted
        move leaves the source whole, so running it again loses nothing)."""
        try:
            if self.is_local:
                self.fs.move(src, dst)
                return
            for path in self.files(src):
                self.fs.copy_file(path, dst + path[len(src):])
            self.fs.delete_dir(src)
        except OSError as exc:
            raise self._error("move", src, exc) from exc


RootLike = LogRoot | str | Path
"""What a function that reads or writes the log accepts: a root, a directory or an ``s3://`` URI."""


def s3_endpoint_from_env() -> str | None:
    for name in S3_ENDPOINT_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def open_log_root(root: LogRoot | str | Path, *, s3_endpoint: str | None = None) -> LogRoot:
    """The log root named by a local path or an ``s3://bucket[/prefix]`` URI."""
    if isinstance(root, LogRoot):
        return root
    text = str(root).strip()
    if not text:
        raise ConfigError("the offline root is empty: give a directory or s3://bucket/prefix "
                          "(FRESHET_OFFLINE_ROOT / --offline-root)")
    if "://" not in text:
        path = Path(text).expanduser().absolute()
        return LogRoot(pafs.LocalFileSystem(), path.as_posix())
    parsed = urlparse(text)
    if parsed.scheme != "s3":
        raise ConfigError(f"offline root {text!r}: scheme {parsed.scheme!r} is not supported; use a local "
                          "directory or s3://bucket/prefix")
    if parsed.username or parsed.password or "@" in parsed.netloc:
        raise ConfigError("the offline root must not carry credentials: set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY (or an AWS profile) instead")
    if not parsed.netloc:
        raise ConfigError(f"offline root {text!r} names no bucket: use s3://bucket/prefix")
    base = f"{parsed.netloc}/{parsed.path.strip('/')}".rstrip("/")
    endpoint = s3_endpoint or s3_endpoint_from_env()
    return LogRoot(s3_filesystem(endpoint), base, "s3", endpoint)


def s3_filesystem(endpoint: str | None, *, access_key: str | None = None, secret_key: str | None = None,
                  connect_timeout: float = 5, request_timeout: float = 30) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem for ``endpoint`` (None: AWS); credentials given here, else the AWS SDK's chain."""
    options: dict[str, Any] = {
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        "allow_bucket_creation": False, "allow_bucket_deletion": False,
        "connect_timeout": connect_timeout, "request_timeout": request_timeout,
    }
    if access_key is not None and secret_key is not None:
        options.update(access_key=access_key, secret_key=secret_key)
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"S3 endpoint {endpoint!r} is not a URL such as http://127.0.0.1:8333 "
                              "(FRESHET_S3_ENDPOINT / --s3-endpoint / AWS_ENDPOINT_URL)")
        options.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    return pafs.S3FileSystem(**options)
