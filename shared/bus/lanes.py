"""Which Service Bus session a change travels in.

Sessions keep one row's changes in order. A session per row would do that too, but the Functions host holds a
session until it has been idle for `sessionIdleTimeout`, so a burst touching many rows once each would crawl at
`maxConcurrentSessions` rows per idle timeout. Instead every row hashes to one of a fixed number of lanes: a row
always takes the same lane (its order is kept), lanes stay busy under load, and with lanes = maxConcurrentSessions
no lane waits for a free session receiver. Fewer lanes, fuller batches: a lane's batch holds what reached it in one
cycle (gathering, the invocation), so halving the lanes doubles a batch and halves the app requests per change of a
burst that arrives slowly (`bench/apply.py` on a busy machine: 0.09 to 0.23 with 8, 0.21 to 0.50 with 16). Changing the
number moves rows to other lanes: only with the `changes` queue empty.
"""

from __future__ import annotations

import hashlib

from shared.events.model import ChangeEvent


def lane_of(row_identity: str, lanes: int) -> int:
    digest = hashlib.blake2b(row_identity.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % lanes


def session_for(event: ChangeEvent, lanes: int) -> str:
    """`lane-07` for lanes > 0; with lanes = 0, one session per row (strict, slow under bursts; at most 128 chars).
    A change that names its synced row (`ordering_key`) shares the lane of the other side's changes to that row."""
    if lanes > 0:
        return f"lane-{lane_of(event.ordering_key or event.row_identity, lanes):02d}"
    identity = event.row_identity
    if len(identity) <= 128:
        return identity
    return f"{event.source}:{event.entity[:40]}:{hashlib.sha256(identity.encode()).hexdigest()}".lower()
