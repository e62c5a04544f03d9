"""Freshet's benchmark harness: throughput against bare Quix Streams, and freshness.

Run it with ``python -m bench.run`` (or ``make bench``); see ``bench/RESULTS.md``
for the method and the recorded results.
"""
