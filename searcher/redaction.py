"""Credentials in a URL (a tracking URI, a database URL): found, and masked wherever one is shown,
logged or stored."""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

# Query parameters that carry a secret (compared lower-case): SQLAlchemy/libpq's password and
# sslpassword, drivers' passwd/pwd, tokens and keys of HTTP services.
SECRET_PARAMS = ("password", "passwd", "pwd", "sslpassword", "token", "access_token",
                 "secret", "key", "access_key", "secret_key", "api_key", "apikey")
MASK = "***"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:%s)=)[^&;#]*" % "|".join(map(re.escape, SECRET_PARAMS)))


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the password of `scheme://user:password@host` lies in `url`: up to the last `@`, so
    a `/`, `?` or `#` left unescaped in it stays inside it, as SQLAlchemy reads a database URL
    (urllib's split would end the host at the first `/` and show the rest as a path), and so
    does an `@` (where SQLAlchemy would take the first; masking takes the larger part). Where
    that is ambiguous (`host:5000/a@b`), it is taken for a password: masking a path by mistake
    costs less than showing a password."""
    scheme = _SCHEME.match(url)
    if not scheme or url[scheme.end():].startswith("/"):
        return None
    rest = url[scheme.end():]
    at = rest.rfind("@")
    user, colon, _ = rest[:max(at, 0)].partition(":")
    if at < 0 or not colon or any(c in user for c in "/?#"):
        return None
    start = scheme.end() + len(user) + 1
    return start, scheme.end() + at


def credentials_in(url: str) -> list[str]:
    """What in `url` carries a secret: "a password" for user:password@, else each secret query
    parameter by name; empty when there is none."""
    found = ["a password"] if _password_span(url) else []
    query = urlsplit(url).query
    found += [f"?{k}=" for k, _ in parse_qsl(query, keep_blank_values=True)
              if k.lower() in SECRET_PARAMS]
    return found


def redact(url: str) -> str:
    """`url` with every secret it carries masked: the password of user:password@ and the
    values of secret query parameters. The one function for every message, log and record."""
    span = _password_span(url)
    if span:
        url = url[:span[0]] + MASK + url[span[1]:]
    return _SECRET_QUERY.sub(r"\1" + MASK, url)
