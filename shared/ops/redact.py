"""Service URLs as operators may see them: the password of ``scheme://user:password@host`` becomes ``***``.

Broker and result-backend URLs (``redis://:password@host:6379/0``) go into error messages and into
``landmarks status --json``; database URLs were already shown through SQLAlchemy's ``hide_password``, which writes
the same ``***``. Celery's failover lists (``url1;url2``) are redacted URL by URL.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``; a URL without one comes back unchanged."""
    return ";".join(_redact_one(part) for part in url.split(";"))


def redact_text(text: str, *urls: str) -> str:
    """``text`` (an exception's message, say) with the passwords of ``urls`` masked wherever they appear."""
    for url in urls:
        for part in url.split(";"):
            password = _password(part)
            if password:
                text = text.replace(part, _redact_one(part))
                text = text.replace(password, MASK)
                text = text.replace(unquote(password), MASK)
    return text


def _password(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if "@" not in parts.netloc:
        return None
    userinfo = parts.netloc.rpartition("@")[0]
    _user, colon, password = userinfo.partition(":")
    return password if colon and password else None


def _redact_one(url: str) -> str:
    if _password(url) is None:
        return url
    parts = urlsplit(url)
    userinfo, _at, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))
