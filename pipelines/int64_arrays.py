"""The typecode of the machine 64-bit integer arrays the drivers keep (event times, offsets, first starts).

``array("l")`` where a C long is 64 bits (Linux and macOS on 64-bit machines), else ``array("q")``: the
same 8-byte buffer, which Arrow takes as it is (:func:`freshet.pipelines.offline_sink.machine_array`).
On CPython 3.11 storing a Python int of two or more 30-bit digits (every epoch-ms time) into an
``array("q")`` goes through ``PyLong_AsLongLong``'s byte-array conversion, an ``array("l")`` through
``PyLong_AsLong``'s digit loop: 100,000 epoch-ms times took 8.7 ms appended one by one and 3.4 ms
converted from a list as ``"q"``, 6.1 and 2.5 ms as ``"l"`` (by hand, ``timeit``, best of five), and
the conversion was 1.8% of the replay path's instructions (``valgrind --tool=callgrind`` of
``python -m bench.instructions --child apply``: ``_PyLong_AsByteArray``).
"""

from __future__ import annotations

from array import array

INT64 = "l" if array("l").itemsize == 8 else "q"
