"""Who may call the Serve API, where it listens, and what never reaches a log.

API keys come from `FACELAB_API_KEYS` (comma- or whitespace-separated) and/or a keys file (one a
line, `#` comments), each entry `KEY` (read-only: predictions, identification) or `admin:KEY` /
`read:KEY`. An `ApiKeys` holds only the SHA-256 of each key (safe to hand to a Serve replica), compares
a presented key's digest against every one in constant time (hmac.compare_digest) and never prints
them: its repr shows how many keys of each role it holds.

Serving on an address other than the loopback with no key configured is refused unless the user
says `insecure` (`facelab serve --insecure`); `check_exposure` says why.

`redact_uri` hides the credentials of a store URI (`s3://KEY:SECRET@bucket/...`, `?...&secret=...`)
wherever one is shown (logs, `/tasks`, error messages).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from facelab.errors import FacelabError

READ, ADMIN = "read", "admin"
ROLES = (READ, ADMIN)
KEYS_ENV = "FACELAB_API_KEYS"
KEYS_FILE_ENV = "FACELAB_API_KEYS_FILE"
MIN_KEY_CHARS = 16


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys and their roles; empty means the API is open (local use)."""

    entries: tuple[tuple[bytes, str], ...] = field(default=(), repr=False)  # (sha256 of the key, role)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __repr__(self) -> str:  # never the keys themselves
        counts = {role: sum(r == role for _, r in self.entries) for role in ROLES}
        return f"ApiKeys({', '.join(f'{n} {role}' for role, n in counts.items())})"

    def role(self, presented: Optional[str]) -> Optional[str]:
        """The role of the presented key, or None; every key is compared, in constant time each."""
        if not presented:
            return None
        given = _digest(presented)
        found = None
        for key, role in self.entries:
            if hmac.compare_digest(given, key) and found != ADMIN:
                found = role
        return found


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def parse_keys(text: str, source: str) -> list[tuple[bytes, str]]:
    """Entries `KEY`, `read:KEY` or `admin:KEY`, separated by commas, blanks or lines (`#` comments)."""
    entries = []
    for line in text.splitlines():
        for item in re.split(r"[,\s]+", line.split("#", 1)[0].strip()):
            if not item:
                continue
            role, _, key = item.partition(":") if item.partition(":")[0] in ROLES else ("", "", item)
            role = role or READ
            if len(key) < MIN_KEY_CHARS:
                # the message names the entry's position and role, never the key
                raise FacelabError(f"{source}: API key #{len(entries) + 1} ({role}) is shorter than "
                                   f"{MIN_KEY_CHARS} characters")
            entries.append((_digest(key), role))
    return entries


def load_keys(keys_file: Optional[str | os.PathLike] = None, environ: Optional[dict] = None) -> ApiKeys:
    """Keys from $FACELAB_API_KEYS plus the keys file (`keys_file`, else $FACELAB_API_KEYS_FILE)."""
    environ = os.environ if environ is None else environ
    entries = parse_keys(environ.get(KEYS_ENV, ""), f"${KEYS_ENV}")
    keys_file = keys_file or environ.get(KEYS_FILE_ENV)
    if keys_file:
        path = Path(keys_file).expanduser()
        if not path.is_file():
            raise FacelabError(f"{path}: API keys file not found")
        entries += parse_keys(path.read_text(), str(path))
    return ApiKeys(tuple(entries))


def is_loopback(host: Optional[str]) -> bool:
    """Whether `host` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_exposure(host: Optional[str], keys: ApiKeys, insecure: bool) -> None:
    """Refuse to listen beyond the loopback without API keys, unless `insecure`."""
    if is_loopback(host) or keys or insecure:
        return
    raise FacelabError(
        f"refusing to serve on {host}: that address is reachable from other machines and no API key is "
        f"configured, so anyone there could list, enrol, delete and identify people. Set ${KEYS_ENV} "
        f"(or a keys file: ${KEYS_FILE_ENV}, or api_keys_file in the Serve config), serve on 127.0.0.1, "
        "or pass --insecure to serve without keys anyway")


_SECRET_PARAM = re.compile(r"(key|secret|token|sig|signature|password|passwd|pwd|credential|auth)", re.I)


def redact_uri(uri: Optional[str]) -> Optional[str]:
    """`uri` with its user info and secret-looking query values replaced by `***`."""
    if not uri or "://" not in uri:
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = urlencode([(k, "***" if _SECRET_PARAM.search(k) else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, uris: Iterable[Optional[str]]) -> str:
    """`text` with every one of `uris` replaced by its redacted form."""
    for uri in uris:
        if uri and uri != redact_uri(uri):
            text = text.replace(uri, redact_uri(uri))
    return text
