"""redact_url never lets a password through, whatever it holds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from freshet.features.redact import redact_url

password = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=4, max_size=30).filter(
    lambda p: p.strip() and "***" not in p)


@given(password=password, user=st.sampled_from(["", "default", "app"]))
def test_password_in_the_authority(password: str, user: str) -> None:
    url = f"redis://{user}:{password}@127.0.0.1:6379/0"
    assert redact_url(url) == f"redis://{user + ':' if user else ''}***@127.0.0.1:6379/0"


@given(password=st.text(alphabet="abcXYZ019-_.~", min_size=4, max_size=30))
def test_password_in_the_query(password: str) -> None:
    redacted = redact_url(f"redis://127.0.0.1:6379/0?password={password}&db=1")
    assert redacted == "redis://127.0.0.1:6379/0?password=***&db=1"


def test_plain_urls_are_unchanged() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("not a url") == "not a url"
