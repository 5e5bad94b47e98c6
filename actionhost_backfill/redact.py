"""Keep database passwords out of every byte the toolkit prints or logs, by structure.

A password is masked where it can really appear: in the userinfo of a URL
(``scheme://user:PASSWORD@host``) and in ``key=value`` credentials
(``password=...``, libpq's ``password='...'``, a query string's
``&password=...``, a keyword dict's ``'password': '...'``).  PyMySQL and
psycopg never put the password in their error messages (PyMySQL says
``(using password: YES)``; libpq names host, port and user), so these forms
cover driver errors, SQLAlchemy's messages and ``--debug`` tracebacks.

Nothing else is ever altered: a password such as ``1``, ``cell`` or
``postgres`` may also be part of a host, a database name or a count, and
those are printed exactly (masking by substring turned ``127.0.0.1`` into
``***27.0.0.***`` and broke ``--json``).  :func:`mask_url` prints a URL
with ``***`` in place of the password and nothing else changed.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy.engine import URL, make_url

MASK = "***"

#: Names under which a password is passed as a key (libpq's ``password=``, a
#: query string's ``?password=``, a dict of connect arguments).
_SECRET_KEYS = ("password", "passwd", "pwd")
_SECRET_KEY = "(?:" + "|".join(_SECRET_KEYS) + ")"

#: ``scheme://user:`` opening a URL's userinfo, and the rest of that URL (to a space or quote).
_URL_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"<>]*:)(?P<rest>[^\s'\"<>]*)"
)
#: ``password=secret``, ``password='sec ret'``, ``&passwd=..`` (never PyMySQL's
#: ``(using password: YES)``, which holds none).
_KEY_VALUE = re.compile(
    rf"(?P<head>\b{_SECRET_KEY}\s*=\s*)"
    r"(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s'\",;&)}\]]+)",
    re.IGNORECASE,
)
#: ``'password': 'secret'`` in the repr of a dict of connect arguments.
_DICT_ITEM = re.compile(
    rf"(?P<head>(['\"]){_SECRET_KEY}\2\s*:\s*)"
    r"(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|b'(?:[^'\\]|\\.)*')",
    re.IGNORECASE,
)


def _mask_quoted(value: str) -> str:
    if value[:2] == "b'":
        return f"b'{MASK}'"
    if value[:1] in "'\"" and len(value) >= 2:
        return f"{value[0]}{MASK}{value[0]}"
    return MASK


def scrub(text: str) -> str:
    """Return ``text`` with every password in credential position replaced by ``***``."""
    if not text:
        return text

    def url(match: re.Match) -> str:
        # The password runs to the last "@" before the query (an unencoded "@" or
        # "/" in a hand-written password must not leave a piece of it behind).
        rest = match.group("rest")
        end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
        at = rest.rfind("@", 0, end)
        if at < 0 or rest[:at] in ("", MASK):
            return match.group(0)
        return f"{match.group('head')}{MASK}{rest[at:]}"

    def keyed(match: re.Match) -> str:
        if match.group("secret").strip("'\"") == MASK:
            return match.group(0)
        return match.group("head") + _mask_quoted(match.group("secret"))

    text = _URL_USERINFO.sub(url, text)
    text = _DICT_ITEM.sub(keyed, text)
    return _KEY_VALUE.sub(keyed, text)


#: Where SQLAlchemy reads a URL's password: ``name://user:PASSWORD@``, the user
#: holding no ``:`` or ``/`` and the password no ``@`` (``sqlalchemy.engine.url``).
_URL_PASSWORD = re.compile(r"^(?P<head>[\w+]+://[^:/]*:)(?P<password>[^@]*)@")


def mask_url(url: str | URL | None) -> str:
    """Render a database URL for humans: never the password, nothing else changed.

    A URL given as text is printed as typed, the password alone replaced (its
    place is where SQLAlchemy parses it from, checked by parsing the result
    again); a :class:`~sqlalchemy.engine.URL` is printed from its parts as they
    are, without the percent-encoding or the sorted query that SQLAlchemy's
    own rendering adds (``nova_{cell}`` stays ``nova_{cell}``).
    """
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
            return f"{head}://{user}:{MASK}@{host}" if ":" in creds else text
        if ":" in text or "@" in text:  # any part of it may be a password: show none
            return (
                f"{head}://{MASK}"
                if sep
                else f"(a value not shown, it may hold a password: {MASK})"
            )
        return text
    if isinstance(url, str):
        typed = _masked_as_typed(url.strip(), parsed)
        if typed is not None:
            return scrub(typed)
    return scrub(_render(parsed))


def _masked_as_typed(text: str, parsed: URL) -> str | None:
    """``text`` with its password replaced, or None when the replacement would
    change anything else SQLAlchemy reads from it."""
    expected = parsed
    if parsed.password is not None:
        found = _URL_PASSWORD.match(text)
        if found is None:
            return None
        text = f"{found.group('head')}{MASK}{text[found.end('password') :]}"
        expected = parsed.set(password=MASK)
    try:
        return text if make_url(text) == expected else None
    except Exception:
        return None


def _render(url: URL) -> str:
    """``url`` from its parts as they are, the password (and a query's) masked."""
    text = f"{url.drivername}://"
    if url.username is not None:
        text += url.username + (f":{MASK}" if url.password is not None else "") + "@"
    elif url.password is not None:
        text += f":{MASK}@"
    if url.host is not None:
        text += f"[{url.host}]" if ":" in url.host else url.host
    if url.port is not None:
        text += f":{url.port}"
    if url.database is not None:
        text += f"/{url.database}"
    if url.query:
        text += "?" + "&".join(
            f"{key}={MASK if key.lower() in _SECRET_KEYS else value}"
            for key, values in url.query.items()
            for value in (values if isinstance(values, tuple) else (values,))
        )
    return text


class ScrubbingFilter(logging.Filter):
    """Logging filter that masks passwords in every record's message."""

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
