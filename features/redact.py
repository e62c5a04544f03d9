"""Secrets out of anything printed: one function for every URL form Freshet takes."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

SECRET_QUERY_KEYS = frozenset({"password", "pass", "pwd", "token", "secret", "sasl.password", "ssl.key.password"})


def redact_url(url: str) -> str:
    """``url`` with its password (``user:password@``, even one holding ``@`` or ``:``) and any secret
    query parameter (``?password=...``) replaced by ``***``. Anything that is not a URL comes back as is."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    # the authority ends at the first '/' or '?' after the last '@' (a password may hold '/', '?' or '@')
    at = rest.rfind("@")
    head, tail = (rest[:at], rest[at + 1:]) if at >= 0 else ("", rest)
    if at >= 0:
        user = head.split(":", 1)[0] if ":" in head else ""
        head = f"{user}:***@" if user else "***@"
    if "?" in tail:
        path, query = tail.split("?", 1)
        pairs = [(k, "***" if k.lower() in SECRET_QUERY_KEYS else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        tail = f"{path}?{urlencode(pairs, safe='*')}"
    return f"{scheme}://{head}{tail}"
