"""uvicorn's h11 protocol with a time limit on request headers (slow-header clients are closed).

uvicorn closes idle keep-alive connections, but a client that sends part of its request
headers and stops holds its connection for ever (slowloris): uvicorn has no header timeout.
This subclass of uvicorn's ``H11Protocol`` (passed as ``uvicorn.Config(http=...)``, which takes
a protocol class) arms a timer whenever it waits for a request's headers and closes the
connection if no request has started when it fires. It relies on two attributes of
``H11Protocol`` (``cycle``, ``transport``); tests/integration/test_read_paths.py's slow-client
test pins them (uvicorn is pinned to the minor version tested).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderTimeoutProtocol(H11Protocol):
    header_timeout_s = 10.0  # set by freshet serve (--header-timeout)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._armed_after: Any = None
        self._arm(None)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and self._armed_after is not cycle:
            self._arm(cycle)  # bytes of the next request on a kept-alive connection: its headers are timed too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm(self, waiting_after: Any) -> None:
        """Close the connection unless a request newer than ``waiting_after`` starts in time."""
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._armed_after = waiting_after
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._expire, waiting_after)

    def _expire(self, waiting_after: Any) -> None:
        self._header_timer = None
        if self.cycle is waiting_after and not self.transport.is_closing():  # no request started since
            self.transport.close()


def protocol_with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": seconds})
