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
_USERINFO = re.compile(r"^(?P<scheme>[^:/?#]*://)(?P<user>[^:/?#@]*):[^/?#@]*@")
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:%s)=)[^&;#]*" % "|".join(map(re.escape, SECRET_PARAMS)))


def credentials_in(url: str) -> list[str]:
    """What in `url` carries a secret: "a password" for user:password@, else each secret query
    parameter by name; empty when there is none."""
    found = ["a password"] if _USERINFO.match(url) else []
    query = urlsplit(url).query
    found += [f"?{k}=" for k, _ in parse_qsl(query, keep_blank_values=True)
              if k.lower() in SECRET_PARAMS]
    return found


def redact(url: str) -> str:
    """`url` with every secret it carries masked: the password of user:password@ and the
    values of secret query parameters. The one function for every message, log and record."""
    return _SECRET_QUERY.sub(r"\1" + MASK, _USERINFO.sub(r"\g<scheme>\g<user>:" + MASK + "@", url))
