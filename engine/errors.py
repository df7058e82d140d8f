"""The engine's error tree. The HTTP layer maps each class to a problem once (api/errors.py).

EngineError
├── BadInput          the request is well-formed but its content is invalid (422)
├── NotFound          a named resource does not exist (404)
├── Conflict          the request clashes with current state (409)
│   ├── OutOfStock    not enough `available` for one or more lines
│   ├── IdempotencyMismatch   a reused Idempotency-Key with another body
│   └── KeyAlreadyIssued      a retried key creation: the secret was shown once
├── Gone              a feed cursor older than what is retained (410): resync
├── Unauthorized      no valid API key (401)
└── Forbidden         the key's role or store does not allow this (403)
"""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class BadInput(EngineError):
    status = 422
    title = "Invalid request"


class NotFound(EngineError):
    status = 404
    title = "Not found"


class Conflict(EngineError):
    status = 409
    title = "Conflict"


class OutOfStock(Conflict):
    title = "Insufficient stock"


class IdempotencyMismatch(Conflict):
    title = "Idempotency key reused with a different request"


class KeyAlreadyIssued(Conflict):
    title = "API key already issued"


class Gone(EngineError):
    status = 410
    title = "Resync required"


class Unauthorized(EngineError):
    status = 401
    title = "Unauthorized"


class Forbidden(EngineError):
    status = 403
    title = "Forbidden"


class Unavailable(EngineError):
    status = 503
    title = "Service unavailable"
