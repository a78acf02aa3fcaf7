"""Keeping Redis passwords out of every message: one masking rule for URLs, errors and log lines.

Whatever shows a URL goes through `redact`; text that may embed one (a redis-py exception, a log
record) through `scrub`, which also removes the bare password wherever it appears."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, unquote, urlsplit

MASK = "***"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.S)
_QUERY_SECRET = re.compile(r"(?i)([?&;](?:password|pass|pwd)=)([^&;#]*)")


def _split_userinfo(url: str) -> tuple[str, str, str | None, str] | None:
    """(scheme, user, password or None, rest after '@') when the URL has a userinfo part, else None.

    The userinfo ends at the LAST '@': a password with an unescaped '/', '?', '#' or '@' in it
    is still masked whole (over-masking a host is better than printing part of a secret)."""
    m = _SCHEME.match(url)
    if not m or "@" not in m.group(2):
        return None
    scheme, rest = m.groups()
    userinfo, after = rest.rsplit("@", 1)
    if ":" not in userinfo:
        return scheme, userinfo, None, after
    user, password = userinfo.split(":", 1)
    return scheme, user, password, after


def redact(url: str | None) -> str:
    """The URL as it may be shown, `redis://user:***@host:port/db` ('none' for none): the password
    masked in the userinfo and in a `password=` query parameter, where the connection went kept."""
    if not url:
        return "none"
    text = str(url)
    parts = _split_userinfo(text)
    if parts is not None:
        scheme, user, password, after = parts
        text = f"{scheme}{user}:{MASK}@{after}" if password is not None else text
    return _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)


def secrets_of(url: str | None) -> list[str]:
    """The strings of `url` that must never be shown: its password as written, decoded and re-encoded,
    and how a URL parser may have split it (redis-py names such a piece in its errors)."""
    if not url:
        return []
    found: list[str] = []
    parts = _split_userinfo(str(url))
    if parts is not None and parts[2]:
        found.append(parts[2])
    found += [m.group(2) for m in _QUERY_SECRET.finditer(str(url)) if m.group(2)]
    try:
        parsed = urlsplit(str(url))
        if parsed.password:
            found.append(parsed.password)
    except ValueError:
        pass
    pieces: list[str] = []
    for secret in found:
        pieces += [secret, unquote(secret), quote(secret, safe="")]
        pieces += [p for p in re.split(r"[/?#@:]", secret) if len(p) >= 3]  # what a misparse may print
    # longest first, so a password is masked whole before any piece of it
    return sorted({p for p in pieces if p}, key=len, reverse=True)


def scrub(text: str, url: str | None) -> str:
    """`text` with `url` shown redacted and every form of its password replaced by ***."""
    if not url:
        return text
    shown = redact(url)
    secrets = secrets_of(url)

    def mask(part: str) -> str:
        for secret in secrets:
            part = part.replace(secret, MASK)
        return part

    # the URL (raw or already redacted) is shown redacted and left alone: a short piece of the
    # password (say "0") must not also mask a digit of its port
    return shown.join(shown.join(mask(p) for p in piece.split(shown)) for piece in text.split(str(url)))


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs a URL's password from every record (message, args, traceback), so
    a library or an exception naming the connection cannot put the password in the logs."""

    def __init__(self, url: str | None) -> None:
        super().__init__()
        self._url = url
        self._secrets = secrets_of(url)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = scrub(message, self._url), None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self._url)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, self._url)
        return True


def redact_logs(url: str | None) -> None:
    """Scrub `url`'s password from everything logging writes from now on: the handlers of the root
    logger and of every logger configured so far (uvicorn's, say), and Python's last-resort handler
    that prints warnings when no handler is configured. Call it after configuring logging."""
    if not secrets_of(url):
        return
    handlers = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers += logger.handlers
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) and f._url == url for f in handler.filters):
            handler.addFilter(RedactingFilter(url))
