"""`python -m bench.parquet_encoding`: what Parquet's dictionary encoding costs on Freshet's logs.

The example views run over a synthetic stream (no broker: the operator and the log writers in this
process, as a replay does) into two logs: one written with a dictionary on every column (pyarrow's
default) and one with a dictionary on text columns only (what :meth:`LogRoot.write_parquet` does).
Then every part of each log is written again, timed (the best of ``--repeat`` writes), as a checkpoint
rewrites an open part. Prints, per log (values and accepted events): rows, write ms and bytes for both
encodings. Timings are measurements, never assertions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from bench.common import example_views
from freshet.features.as_of_layout import list_accepted_parts
from freshet.features.definitions import FeatureView
from freshet.features.log_store import LogRoot, dictionary_columns, open_log_root
from freshet.features.offline_layout import parts_under, view_dir
from freshet.pipelines.accepted_sink import AcceptedLogWriter
from freshet.pipelines.decode import EventDecoder, InvalidEvent
from freshet.pipelines.offline_sink import ParquetLogWriter
from freshet.pipelines.tiles import EmittedValue, KeyState, LateReport, SourceOperator
from freshet.synthetic import StreamSpec, generate


def write_log(root: LogRoot, events: int, cards: int) -> list[FeatureView]:
    """The example views' logs under ``root``; returns the views."""
    views = example_views("transactions")
    operator = SourceOperator(views)
    decoder = EventDecoder(views[0].source, 10**13)
    values = [ParquetLogWriter(root, v) for v in views]  # by view index, as the operator's outputs
    accepted = [AcceptedLogWriter(root, v) if v.as_of == "request" else None for v in views]
    states: dict[str, KeyState] = {}
    for offset, (_key, raw, _tag) in enumerate(generate(StreamSpec(events=events, cards=cards, malformed_share=0.0))):
        try:
            event = decoder.decode(raw, None)
        except InvalidEvent:
            continue
        key = str(event[operator.entity_key])
        state = states.setdefault(key, operator.initial())
        emitted: list[EmittedValue] = []
        late: list[LateReport] = []
        operator.process(state, event, 0, offset, emitted, late)
        for value in emitted:
            values[value.view].add_value(value, 0)
        for record in operator.take_accepted():
            writer = accepted[record.view]
            if writer is not None:
                writer.add_accepted(record, 0)
    for log_writer in [*values, *(w for w in accepted if w is not None)]:
        log_writer.checkpoint()
    return views


def timed_write(table: object, path: Path, repeat: int, dictionary: object) -> tuple[float, int]:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        pq.write_table(table, path, compression="zstd", use_dictionary=dictionary)
        best = min(best, time.perf_counter() - started)
    return best, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events in the synthetic stream")
    parser.add_argument("--cards", type=int, default=2_000, help="cards (entities) in it")
    parser.add_argument("--repeat", type=int, default=5, help="writes per part and encoding (the best counts)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="freshet-encoding-") as tmp:
        root = open_log_root(Path(tmp) / "log")
        views = write_log(root, args.events, args.cards)
        print("| log | parts | rows | dictionary on every column: ms, bytes | on text columns: ms, bytes |")
        print("| --- | ---: | ---: | ---: | ---: |")
        logs = (("values", [p for v in views for p in parts_under(root, view_dir(root, v))]),
                ("accepted", [p for v in views if v.as_of == "request" for p in list_accepted_parts(root, v)]))
        for label, files in logs:
            tables = [root.read_parquet(f) for f in files]
            every = [timed_write(t, Path(tmp) / "every.parquet", args.repeat, True) for t in tables]
            text = [timed_write(t, Path(tmp) / "text.parquet", args.repeat, dictionary_columns(t.schema))
                    for t in tables]
            print(f"| {label} | {len(files)} | {sum(t.num_rows for t in tables):,} | "
                  f"{sum(s for s, _ in every) * 1000:.0f} ms, {sum(b for _, b in every):,} | "
                  f"{sum(s for s, _ in text) * 1000:.0f} ms, {sum(b for _, b in text):,} |")


if __name__ == "__main__":
    main()
