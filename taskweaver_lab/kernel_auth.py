"""The kernel's credential: requests from ``%%taskweaver`` signed with the kernel's own ZMQ key.

The kernel never receives the server token. It proves which kernel it is with the HMAC key of its
connection file, which only that kernel and the server's kernel manager know
(docs/architecture.md, "The kernel's credential"). Pure functions: the magic signs with ``sign_headers``,
the server checks with ``verify``.

    message   = f"{timestamp}\\n{METHOD}\\n{path}\\n{body}"
    signature = hex(hmac_sha256(key, message))

``path`` is the URL path as the server sees it (base_url included), without the query string;
a signature over the path with the query string is accepted too.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Mapping

KERNEL_HEADER = "X-TaskWeaver-Kernel"
TIMESTAMP_HEADER = "X-TaskWeaver-Timestamp"
SIGNATURE_HEADER = "X-TaskWeaver-Signature"
MAX_SKEW_S = 60.0


class SignatureError(Exception):
    """Why a kernel request was refused (safe to show: names no secret)."""


def signature(key: bytes, timestamp: str, method: str, path: str, body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    message = f"{timestamp}\n{method.upper()}\n{path}\n{text}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_headers(key: bytes | str, kernel_id: str, method: str, path: str, body: bytes | str = b"",
                 now: float | None = None) -> dict[str, str]:
    """Headers for one request from the kernel (what ``%%taskweaver`` sends)."""
    key_bytes = key.encode() if isinstance(key, str) else key
    timestamp = str(int(now if now is not None else time.time()))
    return {KERNEL_HEADER: kernel_id, TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(key_bytes, timestamp, method, path, body)}


def verify(headers: Mapping[str, str], key: bytes, method: str, paths: tuple[str, ...], body: bytes,
           now: float | None = None) -> str:
    """The timestamp of a valid signature; raises ``SignatureError`` otherwise."""
    if not key:
        raise SignatureError("This kernel has no signing key, so it cannot authenticate.")
    timestamp, given = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
    if not (timestamp.isascii() and timestamp.isdigit()):  # whole seconds only: "nan" or "inf" would pass any skew check
        raise SignatureError(f"Missing or malformed {TIMESTAMP_HEADER} header.")
    skew = abs((now if now is not None else time.time()) - int(timestamp))
    if skew > MAX_SKEW_S:
        raise SignatureError(f"The request timestamp is {skew:.0f} s off (limit {MAX_SKEW_S:.0f} s): check the clock.")
    if not any(hmac.compare_digest(signature(key, timestamp, method, p, body), given) for p in paths):
        raise SignatureError("Bad kernel signature.")
    return timestamp
