"""The ``freshet`` command line: one entry point for every Freshet job.

Each sub-command lives in a small module of its own; this file only builds the
parser, applies the shared options, and turns a :class:`FreshetError` into one
clear line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Sequence

from freshet import __version__
from freshet.features.errors import FreshetError

EPILOG = """\
Configuration comes from flags, then FRESHET_* environment variables, then the
local stack started by `freshet dev up` (recorded in .freshet/dev.env):
  FRESHET_KAFKA_BOOTSTRAP   Kafka bootstrap servers, e.g. 127.0.0.1:9092
  FRESHET_REDIS_URL         Redis URL, e.g. redis://127.0.0.1:6379/0
  FRESHET_OFFLINE_ROOT      root directory of the Parquet offline log (default data/offline)
  FRESHET_STATE_DIR         window state directory (default .freshet/state)
  FRESHET_KAFKA_CONFIG      JSON object of extra librdkafka settings (SASL, SSL, ...)
  FRESHET_MAX_EVENT_AHEAD   event time allowed ahead of the Kafka timestamp (default 366d; 0: no bound)

Typical session:
  freshet dev up                         # local broker + Redis as child processes
  freshet validate --repo examples/fraud # check definitions against freshet.lock
  freshet topics --repo examples/fraud   # create source, .dlq and .late topics
  freshet produce --repo examples/fraud  # write 20,000 synthetic card events to its topic
  freshet run --repo examples/fraud --until-caught-up  # features into Redis and Parquet
  freshet get --repo examples/fraud --view card_spend_5m card-00001
  freshet dev down

Exit codes: 0 ok; 1 a check found problems or differences (validate, parity, drift, consistency, get);
2 usage (a bad flag, setting, definition or repository: the message names it);
3 a runtime failure (a server unreachable or refusing, a sink or worker failing);
130 interrupted.
"""

Handler = Callable[[argparse.Namespace], int]


class LineKeepingFormatter(argparse.HelpFormatter):
    """Wraps each line of a description or epilog on its own: examples keep their line breaks."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(super(LineKeepingFormatter, self)._fill_text(line, width, indent) if line.strip() else ""
                         for line in text.splitlines())

# an example and the environment for commands whose module gives none
EXAMPLES = {
    "validate": "example: freshet validate --repo examples/fraud\nreads no environment variable",
    "list": "example: freshet list --repo examples/fraud",
    "lock": "example: freshet lock --repo examples/fraud   # after a version bump: records the new fingerprint",
    "topics": "example: freshet topics --repo examples/fraud\n"
              "environment: FRESHET_KAFKA_BOOTSTRAP, FRESHET_KAFKA_CONFIG (else the local stack)",
    "run": "example: freshet run --repo examples/fraud --until-caught-up\n"
           "environment: FRESHET_KAFKA_BOOTSTRAP, FRESHET_REDIS_URL, FRESHET_OFFLINE_ROOT, FRESHET_STATE_DIR,\n"
           "  FRESHET_KAFKA_CONFIG, FRESHET_MAX_EVENT_AHEAD (else the local stack for the first two)",
    "replay": "example: freshet replay --repo examples/fraud --view card_spend_5m --from 2026-11-01 "
              "--offline-root /tmp/backfill\n"
              "environment: FRESHET_KAFKA_BOOTSTRAP, FRESHET_OFFLINE_ROOT, FRESHET_STATE_DIR, FRESHET_KAFKA_CONFIG,\n"
              "  FRESHET_REDIS_URL (with --online), FRESHET_MAX_EVENT_AHEAD",
    "training-set": "example: freshet training-set --repo examples/fraud --labels labels.parquet "
                    "--features card_spend_5m card_activity_10m:txn_count_10m --out train.parquet\n"
                    "environment: FRESHET_OFFLINE_ROOT",
    "dev": "example: freshet dev up && eval \"$(freshet dev env)\" && freshet dev down\n"
           "environment: FRESHET_STACK_DIR, FRESHET_BROKER_BIN, FRESHET_REDIS_BIN",
}


def add_connection_options(parser: argparse.ArgumentParser, *, kafka: bool = True, redis: bool = True,
                           offline: bool = True, state: bool = True) -> None:
    """Flags that override FRESHET_* settings: only those the command uses."""
    group = parser.add_argument_group("connection (override FRESHET_* variables)")
    if kafka:
        group.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers")
    if redis:
        group.add_argument("--redis-url", metavar="URL", help="Redis URL (redis:// or rediss://)")
    if offline:
        group.add_argument("--offline-root", metavar="DIR|s3://BUCKET/PREFIX",
                           help="root of the Parquet offline log: a directory or an S3 prefix")
        group.add_argument("--s3-endpoint", metavar="URL",
                           help="S3 endpoint for an s3:// root, e.g. http://127.0.0.1:8333 (default: "
                           "AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS; credentials from AWS_ACCESS_KEY_ID/"
                           "AWS_SECRET_ACCESS_KEY or an AWS profile)")
    if state:
        group.add_argument("--state-dir", metavar="DIR", help="window state directory")
    if kafka:
        group.add_argument(
            "-X", dest="kafka_overrides", action="append", default=[], metavar="KEY=VALUE",
            help="extra librdkafka setting passed through unchanged (repeatable), e.g. -X security.protocol=SASL_SSL",
        )


def add_repo_option(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--repo", required=required, metavar="DIR",
        help="feature repository: a directory of *.py and *.yaml definitions",
    )


def build_parser() -> argparse.ArgumentParser:
    from freshet import (
        commands_consistency,
        commands_dev,
        commands_drift,
        commands_online,
        commands_produce,
        commands_read,
        commands_replay,
        commands_repo,
        commands_reset,
        commands_run,
    )

    parser = argparse.ArgumentParser(
        prog="freshet",
        description=(
            "Freshet: streaming feature pipeline. Windowed aggregations over Kafka topics, "
            "the freshest value per entity in Redis, every value in a Parquet log."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"freshet {__version__}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (commands_repo, commands_dev, commands_produce, commands_run, commands_drift, commands_consistency, commands_replay, commands_reset, commands_online, commands_read):
        module.register(sub)
    for name, parser_ in sub.choices.items():
        if not parser_.epilog and name in EXAMPLES:
            parser_.epilog = EXAMPLES[name]
        parser_.formatter_class = LineKeepingFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if not sys.warnoptions:  # dependencies' deprecation notices are for us, not for users (-W / PYTHONWARNINGS shows them)
        try:  # authlib (under Quix Streams) adds an "always" filter for its warnings when imported: add ours after
            import authlib.deprecate  # noqa: F401
        except ImportError:
            pass
        warnings.simplefilter("ignore")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("quixstreams").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    handler: Handler = args.handler
    try:
        return handler(args)
    except FreshetError as exc:
        print(f"freshet {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"freshet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
