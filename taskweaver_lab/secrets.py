"""Secrets stay in the server: scrub kernels' environments, redact what flows back.

``scrubbed_env`` runs when a kernel starts (the lead's kernel manager passes its env through it);
``redact`` runs on every output going to the LLM, into the notebook and into logs.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Mapping, Sequence

REDACTED = "[REDACTED]"
# Shorter "known secrets" would redact ordinary words; real keys are far longer.
_MIN_KNOWN_SECRET = 8

_SECRET_PATTERNS = [
    re.compile(r"\bsk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{16,}"),          # OpenAI / Anthropic / Stripe style
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]{16,}=*"),                   # Authorization: Bearer <token>
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),                              # AWS access key id
    re.compile(r"(?i)(?<=aws_secret_access_key)[\s=:\"']+[A-Za-z0-9/+]{40}"),  # AWS secret after its name
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),                              # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}"),                              # GitHub fine-grained tokens
    re.compile(r"\bglpat-[A-Za-z0-9_\-]{20,}"),                                   # GitLab tokens
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),                                     # Hugging Face tokens
    re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}\b"),                             # Slack tokens
    re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),                                  # Google API keys
    re.compile(r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"),  # JWTs
    re.compile(r"(?i)(?<=[?&]token=)[A-Za-z0-9]{16,}"),                        # Jupyter ?token=...
    re.compile(r"\b[0-9a-fA-F]{40,}\b"),                                       # long hex tokens (Jupyter tokens, API keys)
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
]


def scrubbed_env(env: Mapping[str, str], patterns: Sequence[str]) -> dict[str, str]:
    """A copy of ``env`` without the names matching any fnmatch pattern (case-sensitive, like env names)."""
    return {name: value for name, value in env.items()
            if not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)}


def redact(text: str, known_secrets: Sequence[str] = ()) -> str:
    """Replace known secret values and secret-looking strings with ``[REDACTED]``."""
    # Longest first, so a secret that contains another is replaced whole.
    for secret in sorted({s for s in known_secrets if s and len(s) >= _MIN_KNOWN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text
