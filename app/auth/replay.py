"""Signed requests honoured once: a signature seen before (while still inside its time window) is refused.

A signed URL can leak (browser history, a proxy log, a shared screen); the signature's time window alone
would let anyone holding it open the merchant's admin for ten minutes. Only a SHA-256 of the signature is
kept, until the window has passed (the daily job deletes older rows: app.pulls.schedule_daily_jobs).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from app.db import Database
from app.models import UsedSignature


def first_use(db: Database, purpose: str, signature: str, *, keep_until: datetime) -> bool:
    """Record the signature; False when it was used before (the unique index decides, across processes)."""
    digest = hashlib.sha256(signature.encode("utf-8", "replace")).hexdigest()
    try:
        with db.write_transaction() as session:
            session.add(UsedSignature(purpose=purpose, digest=digest, expires_at=keep_until))
    except IntegrityError:
        return False
    return True
