"""Defaults of a live run that the command line shows without loading the pipeline (Quix Streams)."""

# The checkpoint interval, Quix Streams' own default. Redis is written as values are made
# (pipelines.online_sink), so this only sets how soon the Parquet log and the dead-letter and late
# topics hold a record, and how much input a crash makes the run read again. Each checkpoint costs a
# state write per touched key and a rewrite of each open Parquet part: at 1 s the example views ran
# 11% slower (8,159 against 9,145 events/s, `python -m bench.run --parts loop,throughput --views all
# --configs rekey --commit-interval 1|5 --no-record`, bench/RESULTS.md 2026-11-24 03:57).
DEFAULT_COMMIT_INTERVAL_S = 5.0
