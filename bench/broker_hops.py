"""`python -m bench.broker_hops`: the broker's own latency, the floor under Freshet's freshness.

No Freshet here: a producer sends small JSON records at a steady rate to a new 4-partition topic; with
``--hops 2`` a forwarder consumes them and produces each to a second topic (as the re-key stage does);
a consumer reads the last topic at its tail. Send -> received latency is reported per window of the
run (10 s by default), with the broker's CPU (psutil; when the benchmark started it: a local tansu) over the
same window. Consumers wait for a fetch as long as the live pipeline's do (``PipelineConfig``'s
``fetch_wait_max_ms``, 25 ms) and return what is queued at once; the producer lingers as the freshness
load's does (``bench.load.CLIENT_LINGER_MS``, 20 ms; ``--linger-ms``), the forwarder as long as the re-key
stage's (``rekey_router.LINGER_MS``). Everything runs in one process (threads).

What it showed on tansu (bench/RESULTS.md): its in-memory log makes each request cost more as a
topic grows (a fetch lists every batch stored in the partition), so at 5,000 records/s its CPU climbs
to a whole core within a minute and the tail latency of a bare consumer climbs with it; the fewer
batches the producer makes (a longer linger), the slower it climbs. Starts a local stack unless
FRESHET_KAFKA_BOOTSTRAP and FRESHET_REDIS_URL are set. Timings are measurements, never assertions.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path

import orjson
import psutil
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.common import PARTITIONS, Stack, stack
from bench.load import CLIENT_LINGER_MS
from freshet.pipelines.rekey_router import LINGER_MS as ROUTER_LINGER_MS
from freshet.pipelines.topology import PipelineConfig

FETCH_WAIT_MS = next(f.default for f in fields(PipelineConfig) if f.name == "fetch_wait_max_ms")


@dataclass
class Window:
    start_s: float
    latencies_ms: list[float] = field(default_factory=list)
    broker_cpu: float | None = None  # share of one core over the window

    def percentile(self, p: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float("nan")


def _cpu_seconds(pid: int) -> float | None:
    """The process's CPU time so far (user + system), or None when it cannot be read."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _consumer(bootstrap: str, topic: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hops-{uuid.uuid4().hex[:6]}",
                         "fetch.wait.max.ms": FETCH_WAIT_MS, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    return consumer


def measure_hops(running: Stack, rate: int, seconds: int, hops: int, window_s: int = 10,
                 linger_ms: int = CLIENT_LINGER_MS) -> list[Window]:
    """``linger_ms``: the first producer's (a client's); the forwarder lingers as the re-key stage."""
    from freshet.infra.topics import TopicSpec, provision_topics

    run = uuid.uuid4().hex[:6]
    topics = [f"bench-hops-{run}-{i}" for i in range(hops)]
    provision_topics(running.kafka_config, [TopicSpec(t, PARTITIONS, {"retention.ms": "-1"}) for t in topics])
    received: list[tuple[float, float]] = []  # (sent, latency s)
    stop = threading.Event()
    bootstrap = running.kafka_bootstrap

    def forward(src: str, dst: str) -> None:
        consumer, producer = _consumer(bootstrap, src), Producer({"bootstrap.servers": bootstrap,
                                                                   "linger.ms": ROUTER_LINGER_MS})
        while not stop.is_set():
            for msg in consumer.consume(1000, timeout=0.005):
                if not msg.error():
                    producer.produce(dst, msg.value(), key=msg.key(), partition=msg.partition())
            producer.poll(0)
        producer.flush(10)
        consumer.close()

    def sink(src: str) -> None:
        consumer = _consumer(bootstrap, src)
        while not stop.is_set():
            messages = consumer.consume(1000, timeout=0.005)
            now = time.time()
            for msg in messages:
                if not msg.error():
                    sent = orjson.loads(msg.value())["t"]
                    received.append((sent, now - sent))
        consumer.close()

    threads = [threading.Thread(target=forward, args=(topics[i], topics[i + 1])) for i in range(hops - 1)]
    threads.append(threading.Thread(target=sink, args=(topics[-1],)))
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # the consumers have their positions
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms})
    windows = [Window(w) for w in range(0, seconds, window_s)]
    cpu_marks: list[float | None] = []
    started = time.time()
    sent = 0
    next_mark = 0.0
    while (elapsed := time.time() - started) < seconds:
        if elapsed >= next_mark:
            cpu_marks.append(_cpu_seconds(running.broker_pid) if running.broker_pid else None)
            next_mark += window_s
        due = int(elapsed * rate)
        while sent < due:
            producer.produce(topics[0], orjson.dumps({"t": time.time(), "i": sent}), key=str(sent % 2000).encode())
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    cpu_marks.append(_cpu_seconds(running.broker_pid) if running.broker_pid else None)
    producer.flush(30)
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join()
    for sent_at, latency in received:
        index = int((sent_at - started) // window_s)
        if 0 <= index < len(windows):
            windows[index].latencies_ms.append(latency * 1000)
    for i, window in enumerate(windows):
        a, b = cpu_marks[i], cpu_marks[i + 1] if i + 1 < len(cpu_marks) else None
        if a is not None and b is not None:
            window.broker_cpu = (b - a) / window_s
    return windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=5_000, help="records per second (default 5,000)")
    parser.add_argument("--seconds", type=int, default=60, help="seconds of steady load (default 60)")
    parser.add_argument("--hops", default="1,2", help="comma-separated hop counts, each measured in turn (default 1,2)")
    parser.add_argument("--window", type=int, default=10, help="seconds per reported window (default 10)")
    parser.add_argument("--linger-ms", type=int, default=CLIENT_LINGER_MS,
                        help=f"the first producer's linger.ms (default {CLIENT_LINGER_MS}; librdkafka's own is 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="freshet-hops-") as tmp, stack(Path(tmp)) as running:
        print(f"{running.describe()}; {args.rate:,} records/s for {args.seconds}s per measurement, "
              f"producer linger {args.linger_ms} ms")
        print("| hops | window | records | p50 ms | p99 ms | max ms | broker CPU |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        for hops in (int(h) for h in args.hops.split(",")):
            for w in measure_hops(running, args.rate, args.seconds, hops, args.window, args.linger_ms):
                cpu = f"{w.broker_cpu:.0%}" if w.broker_cpu is not None else "-"
                print(f"| {hops} | {w.start_s}-{w.start_s + args.window} s | {len(w.latencies_ms):,} | "
                      f"{w.percentile(50):.0f} | {w.percentile(99):.0f} | "
                      f"{max(w.latencies_ms, default=float('nan')):.0f} | {cpu} |")


if __name__ == "__main__":
    main()
