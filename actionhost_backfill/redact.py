"""Keep database passwords out of every byte the toolkit prints or logs.

Every URL the toolkit parses registers its password here; :func:`scrub` then
replaces any occurrence (plain or URL-encoded) in text bound for stdout,
stderr, logs, tracebacks or ``--json``.  :func:`mask_url` renders a URL with
``***`` in place of the password, as Alembic does.
"""

from __future__ import annotations

import logging
import urllib.parse

from sqlalchemy.engine import URL, make_url

_SECRETS: set[str] = set()
MASK = "***"


def remember_secret(secret: str | None) -> None:
    """Register a password (and its URL-encoded forms) to be scrubbed."""
    if not secret:
        return
    for form in {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
        urllib.parse.quote(secret),
    }:
        if form:
            _SECRETS.add(form)


def scrub(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_url(url: str | URL | None) -> str:
    """Render a database URL for humans: never the password."""
    if url is None:
        return "(none)"
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:
        # Not parseable: still hide anything between "//user:" and "@".
        text = str(url)
        head, sep, rest = text.partition("://")
        if sep and "@" in rest:
            creds, _, host = rest.rpartition("@")
            user = creds.split(":", 1)[0]
            return scrub(f"{head}://{user}:{MASK}@{host}" if ":" in creds else text)
        if ":" in text or "@" in text:  # any part of it may be a password: show none
            return (
                f"{head}://{MASK}"
                if sep
                else f"(a value not shown, it may hold a password: {MASK})"
            )
        return scrub(text)
    remember_secret(parsed.password)
    return scrub(parsed.render_as_string(hide_password=True))


class ScrubbingFilter(logging.Filter):
    """Logging filter that scrubs secrets from every record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def install_log_scrubber() -> None:
    """Attach the scrubbing filter to the root logger's handlers and itself."""
    root = logging.getLogger()
    if not any(isinstance(f, ScrubbingFilter) for f in root.filters):
        root.addFilter(ScrubbingFilter())
    for handler in root.handlers:
        if not any(isinstance(f, ScrubbingFilter) for f in handler.filters):
            handler.addFilter(ScrubbingFilter())
