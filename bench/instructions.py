"""Instructions an event on the replay driver's path, counted by valgrind: an A/B measure noise does not move.

    python -m bench.instructions [--events 100000] [--stages decode,operator,apply,replay] [--views all]

Timings on this 2-core VM moved 20-40% within one session (the same code, minutes apart), so a change
of a few percent cannot be seen in seconds. ``valgrind --tool=callgrind`` counts the instructions a
process executes, which depends only on the code, its input and its environment: the same run gives the
same count (to a fraction of a percent) whatever else the machine does.

Each stage runs twice in a child process under callgrind: once with its work and once with only its
set-up (the same records loaded, decoded where the stage needs it, the same driver built and closed);
the difference divided by the records is printed. The records are those of
:mod:`bench.operator_path` (the card stream, 2,000 cards, out-of-order, late and malformed records),
generated once and handed to the children in a temporary file; ``PYTHONHASHSEED`` is fixed so both
runs hash alike. Stages (as in ``bench.operator_path``):

- ``decode``: the decoder over every record;
- ``views``: the operator alone over events decoded beforehand (``--views``: which example views,
  by index, e.g. ``0,1,2`` or ``2``), with the benchmark's loop (one dict look-up per event);
- ``operator``: decode + the operator over per-key states;
- ``apply``: the replay driver's batches without checkpoints;
- ``replay``: with its checkpoints every 50,000 records (every thread's instructions count, the
  background writes' included, though on two cores those do not hold the driver up).

Every stage runs with the collector set as the drivers set it (:func:`freshet.pipelines.gc_tuning.checkpoint_gc`;
counts before 2f1ae69, 2026-11-25 07:27 UTC, included the default thresholds' collections; until fed3093,
08:12 UTC, the work run also collected what its stage left alive once, on leaving).

Needs valgrind (Debian's package); about two minutes a stage at 100,000 records (the two runs
of a stage side by side). Counts, like
timings, are measurements and never test assertions.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

STAGES = ("decode", "views", "operator", "apply", "replay")
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _child(stage: str, records_file: Path, views_arg: str, work: bool) -> None:
    from bench import operator_path as op
    from freshet.pipelines.gc_tuning import checkpoint_gc
    from freshet.pipelines.tiles import SourceOperator

    views = op.example_views()
    recs = [op.Record(*fields) for fields in pickle.loads(records_file.read_bytes())]
    # the collector as the drivers set it (BatchDriver.run, run_pipeline): without it every stage counted
    # the default thresholds' collections too (about 14% of the apply stage's instructions), which neither
    # driver pays
    with tempfile.TemporaryDirectory(prefix="freshet-instructions-") as tmp, checkpoint_gc() as collect:
        if stage == "views":
            events = op.decoded_events(views, recs)
            chosen = views if views_arg == "all" else [views[int(i)] for i in views_arg.split(",")]
            operator = SourceOperator(chosen)
            states: dict[str, Any] = {}
            emitted: list[Any] = []
            late: list[Any] = []
            if work:
                for event, p, offset in events:
                    key = event[operator.entity_key]
                    state = states.get(key)
                    if state is None:
                        state = states[key] = operator.initial()
                    operator.process(state, event, p, offset, emitted, late)
        elif stage in ("decode", "operator"):
            if work:
                (op.stage_decode if stage == "decode" else op.stage_operator)(views, recs, Path(tmp))
        else:
            driver, _producer = op._driver(views, Path(tmp))
            driver._collect = collect  # as BatchDriver.run: the checkpoints freeze what is alive
            if work:
                op._apply_all(driver, recs, 50_000, driver._checkpoint if stage == "replay" else None)
            driver.close()
        # what the stage left alive frozen (a driver's last checkpoint does so): else leaving the block, with
        # the default thresholds back, would collect it once, in the work run only
        collect()


def _counts(stage: str, records_file: Path, views_arg: str) -> tuple[int, int]:
    """(instructions with the work, instructions of the set-up alone): the two runs side by side (the
    counts do not depend on what else runs)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    runs = []
    for work in (True, False):
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-m",
               "bench.instructions", "--child", stage, "--records-file", str(records_file), "--views", views_arg]
        runs.append(subprocess.Popen([*cmd, "--work"] if work else cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True))
    counts = []
    for run in runs:
        _out, err = run.communicate()
        found = _COLLECTED.findall(err)
        if run.returncode != 0 or not found:
            raise SystemExit(f"callgrind run of {stage} failed (exit {run.returncode}):\n{err[-2000:]}")
        counts.append(int(found[-1]))
    return counts[0], counts[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="records in the stream (default 100,000)")
    parser.add_argument("--stages", default="decode,operator,apply,replay",
                        help=f"comma-separated, of {', '.join(STAGES)} (default decode,operator,apply,replay)")
    parser.add_argument("--views", default="all", help="for the views stage: all, or indices such as 0,1,2")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--records-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, Path(args.records_file), args.views, args.work)
        return 0
    stages = [s for s in args.stages.split(",") if s]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}: choose from {', '.join(STAGES)}")
    if args.events < 1:
        parser.error(f"--events {args.events} is out of range: allowed 1 or more")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: on Debian or Ubuntu, apt-get install valgrind")
    from bench import operator_path as op

    recs = op.records(args.events)
    with tempfile.TemporaryDirectory(prefix="freshet-instructions-") as tmp:
        records_file = Path(tmp) / "records.pickle"
        records_file.write_bytes(pickle.dumps([(r._key, r._value, r._ts, r._partition, r._offset) for r in recs]))
        print(f"{len(recs):,} records, example views; instructions an event (callgrind, work minus set-up)")
        for stage in stages:
            work, setup = _counts(stage, records_file, args.views)
            label = f"views {args.views}" if stage == "views" else stage
            print(f"{label:>16}: {(work - setup) / len(recs):10,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
