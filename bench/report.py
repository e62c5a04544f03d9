"""The Markdown section of one benchmark run, and bench/RESULTS.md."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench.broker_hops import Window
from bench.changelog import Changelog
from bench.common import Stack
from bench.freshness import Freshness
from bench.load import CLIENT_LINGER_MS
from bench.loop import Loop
from bench.replays import CommandRun, EmptyTopic, Memory
from bench.tables import (
    broker_floor_table,
    changelog_table,
    empty_table,
    freshness_table,
    memory_table,
    replay_table,
    throughput_table,
)
from bench.throughput import Run, Topic
from freshet.pipelines.rekey_router import LINGER_MS as ROUTER_LINGER_MS

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

HEADER = f"""# Freshet benchmark results

Appended by `make bench` (`python -m bench.run`); newest last. Each section
records the date, the machine, the exact command, and the figures.

Method (`python -m bench.run`: one command, one local stack, one topic).

- **Topic.** One synthetic card-transaction topic (4 partitions,
  `freshet.synthetic`: out-of-order, late and malformed events included;
  100,000 events over 2,000 cards by default) is read from the start by every
  path below, each with a fresh consumer group, state directory and log.
- **Throughput**, on two workloads: all example views (`card_spend_5m` tumbling
  5m + `card_spend_1h` hopping 1h/5m + `card_activity_10m` sliding 10m) and the
  tumbling view alone.
  (a) live `freshet run` path: `build_pipeline` + `run_pipeline(until_caught_up=True)`,
  Redis and Parquet sinks on, `rekey=True` (default) and `rekey=False`; rate =
  records / (time of the last record processed - time of the first one), sampled
  every 20 ms, so the group join and the shutdown are left out.
  (b) `freshet replay --workers 1` and `--workers 2` as a subprocess of the real
  CLI, on a copy of examples/fraud retargeted to the topic: the processing rate =
  events / (time from the first worker's batch driver being built - its checkpoint
  directory appears - to the last worker's final checkpoint, watched every 20 ms;
  interpreter start, imports and planning left out), and events / whole-command
  wall time; as a cross-check, the rate between its first and last checkpoint
  (workers' progress files, every 2 s). Its Parquet log is compared row for row
  with the live rekey=True run's. With `--repeat`, each replay command runs that
  many times, each with a fresh state directory and log (since 2026-11-25 07:19 UTC;
  before, once; the worker counts take turns since 08:12): the throughput table gives the median,
  with each run in brackets, and the replay table lists every run, numbered.
  (c) a bare Quix Streams application computing the same windows with Quix's own
  window operators, the same consumer settings and changelog topics, no sink
  (built-in Count and Sum; count-distinct of merchant as a small custom
  aggregator), without and with a `group_by` re-key. Quix's sliding window is slow,
  so on the all-views workload it stops after its first 20,000 events; the live
  runs' ratio to it then uses their own rate over the same first events.
  (d) the floor: a bare confluent-kafka loop (assign every partition at offset 0,
  `consume(10,000)`, `orjson.loads` of every value) until every record is read;
  median of 3.
  Each rate is given with its ratio to (d) and to (c).
- **State.** After each live run: the records its Quix changelog topics
  (`changelog__<group>--...`) received, per input record (true end offsets from
  `EndOffsetProbe` - low watermarks), and the mean/p50/p99/max serialized size of
  a key's state (length of the last changelog value of each key).
- **Memory.** Peak RSS (`/usr/bin/time -f %M`, the "Maximum resident set size"
  of `-v`; without it a small wrapper reading its children's `ru_maxrss`) of
  `freshet replay --workers 1` of the example views over a topic with
  100,000 cards (500,000 events by default; the distinct keys are counted),
  beside the replay of the main topic and of an empty topic.
- **Empty topic.** Whole-command wall time of `freshet validate` (the floor:
  interpreter, imports, repository), `freshet run --until-caught-up` and
  `freshet replay --workers 1` / `--workers 2` on a freshly provisioned empty topic.
- **Freshness.** A child process produces at a steady rate (5,000/s, then
  1,000/s; 20 s each) with event time = wall clock, into a pipeline running a
  1-minute tumbling view that emits on every event (`emit="current"`). For every
  50th event it polls the entity's Redis hash every 5 ms until `__ts` reaches the
  event's time. The figure is send -> visible in Redis: producer batching
  (linger {CLIENT_LINGER_MS} ms, as Freshet's own producer; since 2026-11-25, was 5) + broker + consume
  + re-key hop (its producer lingers {ROUTER_LINGER_MS} ms) + processing + the Redis writer's batching
  (at most 20 ms) + the 5 ms polling step. One more measurement at the highest rate has the producer
  linger 5 ms (librdkafka's default): the local broker's fetches list every batch stored in a
  partition, so more, smaller batches make it saturate sooner (the broker's own latency, no Freshet,
  is measured beside each).

Timings vary from run to run (shared machine, Python GC, broker in memory):
compare figures within one section rather than across machines.
"""


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def command_line() -> str:
    """The command as run, with the environment that changes what it measures (FRESHET_BENCH_AS_OF)."""
    as_of = os.environ.get("FRESHET_BENCH_AS_OF", "").strip()
    prefix = f"FRESHET_BENCH_AS_OF={shlex.quote(as_of)} " if as_of else ""
    return prefix + "python -m bench.run" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])


@dataclass
class Results:
    """Everything one `python -m bench.run` measured (a part not run stays empty)."""

    topic: Topic | None = None
    loop: Loop | None = None
    runs: list[Run] = field(default_factory=list)
    replays: list[CommandRun] = field(default_factory=list)
    changelogs: list[Changelog] = field(default_factory=list)
    memory: Memory | None = None
    empty: EmptyTopic | None = None
    fresh: list[Freshness] = field(default_factory=list)
    broker_floor: list[tuple[int, int, int, Window]] = field(default_factory=list)  # (rate, hops, linger, ...)
    errors: dict[str, str] = field(default_factory=dict)  # part -> what went wrong

    @property
    def failed(self) -> bool:
        return (bool(self.errors) or any(not r.complete for r in self.runs)
                or any(not r.ok for r in self.replays)
                or any(f.result.error for f in self.fresh) or any(c.error for c in self.changelogs)
                or (self.memory is not None and not self.memory.run.ok)
                or (self.empty is not None and any(not r.ok for r in self.empty.runs)))


def _pooling_note(fresh: list[Freshness]) -> str:
    """What the pooled rows are, when there are any (``--freshness-repeat`` above 1)."""
    pooled_runs = max((len(f.runs) for f in fresh), default=0)
    if not pooled_runs:
        return ""
    return (f" Each measurement at the client's default linger ran {pooled_runs} times (`--freshness-repeat`, "
            "each on a new topic and consumer group), and a row then pools those runs' samples: a run of "
            f"{fresh[0].seconds:g}s holds only a few checkpoints, so its own p99 varies widely.")


def render(stack: Stack, res: Results, elapsed_s: float, quick: bool) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {now}{' (quick)' if quick else ''}",
        "",
        f"- machine: {os.cpu_count()} CPU(s) ({_cpu_model()}), {platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, quixstreams {_version('quixstreams')}, "
        f"confluent-kafka {_version('confluent-kafka')}",
        f"- stack: {stack.describe()}",
        f"- command: `{command_line()}` (whole run {elapsed_s:.0f}s)",
    ]
    if res.topic is not None:
        s, topic = res.topic.summary, res.topic
        lines.append(f"- topic: {s.produced:,} events ({s.malformed:,} malformed), {topic.spec.cards:,} "
                     "cards, "
                     f"event times over {topic.spec.span_ms // 60_000} min, 4 partitions; produced in "
                     f"{topic.produce_s:.1f}s")
    if res.runs or res.replays or res.loop:
        lines += ["", "### Throughput (events/s)", "", *throughput_table(res.runs, res.replays, res.loop)]
        prefix = next((r.prefix for r in res.runs if r.stopped_early), 0)
        if prefix:
            lines += ["", f"The bare Quix runs on the all-views workload read only the first {prefix:,} "
                      "events of the topic (its sliding window is slow); the live runs' 'vs bare Quix' there "
                      "uses their "
                      f"own rate over the same first {prefix:,} events (shown after ';'). "
                      "†: the replay's whole-topic rate against that prefix rate."]
    if res.replays:
        lines += ["", "### Replay (`freshet replay`, a subprocess of the CLI)", "",
                  *replay_table(res.replays),
                  "", "Peak RSS of `--workers 2` is the largest single process (the parent or one worker)."]
    if res.runs:
        lines += ["", "Emitted values and late events per view (a check that the engines did the same work; "
                  "for the sliding view Freshet keeps only the window ending at each event, the bare app "
                  "counts every window Quix emits; a bare run stopped early counts its prefix only):", ""]
        for run in res.runs:
            emitted = ", ".join(f"{k} {v:,} (late {run.late.get(k, 0):,})"
                                for k, v in sorted(run.emitted.items()))
            lines.append(f"- {run.workload} / {run.config}: {emitted or 'none'}")
    if res.changelogs:
        lines += ["", "### State: changelog records per input record, state bytes per key", "",
                  *changelog_table(res.changelogs), "",
                  "State bytes per key: the length of the last changelog value of each key (the serialized "
                  "state Quix stores in RocksDB and ships to the changelog; for the bare app a key is one "
                  "window of one card, so only Freshet's rows give bytes per entity)."]
    if res.memory is not None:
        lines += ["", "### Memory: peak RSS of a replay over many keys", "",
                  *memory_table(res.memory, res.replays, res.empty)]
    if res.empty is not None:
        lines += ["", f"### Empty topic ({res.empty.topic})", "", *empty_table(res.empty)]
    if res.fresh:
        view = res.fresh[0].view
        lines += ["", "### Freshness (send -> readable in Redis)", "",
                  f"View {view.name}: {view.window.describe()}, emit={view.emit}, count + sum(amount), "
                  "Redis and Parquet sinks on; every 50th event sampled. Path rekey: the re-key stage (a "
                  "second hop through the broker, `freshet run`'s default); key: `--trust-message-key`."
                  + _pooling_note(res.fresh), "",
                  *freshness_table(res.fresh)]
        if res.broker_floor:
            lines += ["", "The broker's own latency at the same rates, no Freshet (`bench.broker_hops`: a producer, "
                      "bare consumers and, for two hops, a bare forwarder, on a new topic each):", "",
                      *broker_floor_table(res.broker_floor)]
        warmups = [f"{f.result.warmup_s:.1f}s" for f in res.fresh if not f.result.error and not f.runs]
        if warmups:
            lines.append("\nWarm-up before each measurement (join + first value visible): "
                         f"{', '.join(warmups)}.")
        if any(not f.pipeline_kept_up for f in res.fresh if not f.result.error):
            lines.append("Where the pipeline did not keep up, latency grew along the run: the figure is "
                         "mostly backlog (queueing), not the pipeline's freshness at a sustainable rate.")
    if res.errors:
        lines += ["", "### Parts that failed", "",
                  *[f"- {name}: {error}" for name, error in res.errors.items()]]
    lines += ["", "### Notes", "", *NOTES, ""]
    return "\n".join(lines)


NOTES = [
    "- Timings vary between runs by several percent or more; one run per configuration unless "
    "`--repeat` was given (then the median, with each run in brackets).",
    "- Ratios ('vs ...' columns) are cut, not rounded, to the digits shown: one shown at a goal's bound is "
    "at least that (1.4951 shows as 1.49). Sections up to 2026-11-24 23:07 UTC rounded them.",
    "- The load average column is the machine's 1-minute load when a measurement started: anything "
    "well above zero means other work shared the cores (on a 2-core machine that halves what is left).",
    "- The live engines run in one Python process on one core (Quix Streams processes records "
    "sequentially); the broker, Redis and the benchmark's own threads share the same machine's cores. "
    "A replay with --workers 2 runs two processes.",
    "- The broker is tansu with in-memory storage, not Kafka: fetch and produce costs differ from a "
    "real cluster, and changelog/repartition topics live in the same memory.",
    "- 'events/s incl. start-up' divides by the wall time: for live and bare runs from the start of "
    "the run (group join) to its end, for replays the whole subprocess (interpreter start, imports, "
    "plan, worker processes, final commit). The replay's 'processing s' runs from its first batch "
    "driver being built to its last final checkpoint.",
    "- The bare Quix baseline trusts the message key (or re-keys with group_by), does a few type "
    "checks instead of full schema validation, has no dead-letter or late topics and no sink; Freshet "
    "writes to Redis (newer-wins Lua script per entity, batched) and to Parquet (replay: Parquet only).",
    "- Freshness includes producer batching (the 'client linger' column), broker, consume, the re-key hop "
    "(rekey=True: the re-key stage (a child process) reads the source and writes the repartition topic, linger "
    f"{ROUTER_LINGER_MS} ms, "
    "which the application reads), processing, the "
    "Redis writer's batching (at most 20 ms) and the 5 ms polling step, with the producer, the "
    "pipeline, the broker and Redis on the same machine.",
    "- At a rate above what one pipeline process sustains on this machine the freshness figure is "
    "backlog, not freshness: see the 'pipeline kept up' column and the latency trend.",
]


def record(section: str, path: Path = RESULTS) -> None:
    if not path.exists():
        path.write_text(HEADER)
    with path.open("a") as handle:
        handle.write("\n" + section)


def publish(lines: list[str], *, no_record: bool) -> int:
    """Print a section (Markdown lines) and, unless ``no_record``, append it to bench/RESULTS.md."""
    text = "\n".join(lines) + "\n"
    print(text)
    if not no_record:
        record(text)
    return 0


def section_header(title: str, module: str, argv: list[str] | None, about: str = "") -> list[str]:
    """A section's heading and its line naming the command, the machine and the load at start."""
    import os
    import platform
    import sys
    from datetime import UTC, datetime

    given = " ".join(argv if argv is not None else sys.argv[1:])
    return [f"## {title}: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}", "",
            f"Command: `{f'python -m bench.{module} {given}'.rstrip()}`; machine: {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f} at start.{' ' + about if about else ''}",
            ""]
