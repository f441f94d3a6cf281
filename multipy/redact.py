"""Secrets out of log text: a delegate's stderr or an error may quote a kubeconfig, a request's
headers or a key file. The patterns compile on first use (`re` is not on the CNI fast path)."""

from __future__ import annotations

REDACTED = "[REDACTED]"

_patterns: list | None = None

# Names whose values are secrets: kubeconfig `token`, `password`, `client-key-data`, `apiKey`...
_SECRET_NAME = r"[\w.-]*(?:token|password|passwd|secret|key|credential)[\w.-]*"
# ...but not the names of where a secret is kept (etcdKeyFile, tokenFile): paths help troubleshooting.
_NOT_SECRET_SUFFIXES = ("file", "path", "dir", "name")


def _compiled() -> list:
    global _patterns
    if _patterns is None:
        import re

        _patterns = [
            # A URL's password: scheme://user:password@host (etcdURL, a kubeconfig's server, a proxy).
            (
                re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/@:\"'\\,;]*):([^\s/@\"'\\]+)@"),
                lambda m: f"{m.group(1)}:{REDACTED}@",
            ),
            # A PEM private key, whole or cut off; in JSON text its newlines are "\n" escapes.
            (
                re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.S),
                lambda m: f"{REDACTED} PRIVATE KEY",
            ),
            # An Authorization header or key, whatever its scheme (Bearer, Basic, ...).
            (
                re.compile(r"(?i)(\bauthorization\\*[\"']?\s*[:=]\s*\\*[\"']?)(?:[a-z]+\s+)?[^\s\"'\\,;}]+"),
                lambda m: m.group(1) + REDACTED,
            ),
            # A bearer token (8 characters or more, so that prose such as "bearer tokens" stays).
            (re.compile(r"(?i)\b(bearer\s+)[\w\-.~+/]{8,}=*"), lambda m: m.group(1) + REDACTED),
            # "token": "...", 'password': '...', \"key\": \"...\" (JSON inside JSON), "token": bare
            (
                re.compile(
                    rf"(?i)(?P<q>\\*[\"'])(?P<name>{_SECRET_NAME})(?P=q)(?P<sep>\s*[:=]\s*)"
                    r"(?P<value>\\*\"[^\"]*?\\*\"|\\*'[^']*?\\*'|[^\s,;}\]\"']+)"
                ),
                _quoted_pair,
            ),
            # token=..., password=... (query strings, CNI_ARGS-like text)
            (re.compile(rf"(?i)\b(?P<name>{_SECRET_NAME})=(?P<value>[^\s,;&\"']+)"), _bare_pair),
            # YAML, as in a kubeconfig: `token: ...`, `client-key-data: ...`, at the start of a line
            (
                re.compile(rf"(?im)^(?P<head>[ \t]*(?:-[ \t]+)?(?P<name>{_SECRET_NAME}):[ \t]+)(?P<value>\S.*)$"),
                _yaml_pair,
            ),
        ]
    return _patterns


def _secret(name: str) -> bool:
    return not name.lower().endswith(_NOT_SECRET_SUFFIXES)


def _quoted_pair(m) -> str:
    if not _secret(m.group("name")):
        return m.group(0)
    value = m.group("value")
    unescaped = value.lstrip("\\")
    if unescaped[:1] in ("'", '"'):  # keep the quoting (and its escaping), so the line stays valid JSON
        quote = value[: len(value) - len(unescaped) + 1]
        value = f"{quote}{REDACTED}{quote}"
    else:
        value = REDACTED
    return f"{m.group('q')}{m.group('name')}{m.group('q')}{m.group('sep')}{value}"


def _bare_pair(m) -> str:
    return f"{m.group('name')}={REDACTED}" if _secret(m.group("name")) else m.group(0)


def _yaml_pair(m) -> str:
    return m.group("head") + REDACTED if _secret(m.group("name")) else m.group(0)


def redact(text: str) -> str:
    """`text` without bearer tokens, Authorization values, private keys, token/password/key values and
    the passwords of URLs (`https://user:[REDACTED]@host`)."""
    for pattern, replace in _compiled():
        text = pattern.sub(replace, text)
    return text
