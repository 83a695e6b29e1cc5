"""Reading a room's presence hash (`redis_keys`: `<server>|<username>` -> `<expiry ms>
<identity JSON>`) defensively: an entry that is not one (written by another program, or by
a version whose room keys could collide) is nobody, never an error.
"""

from __future__ import annotations

import json
import time

from ..server.connection import Identity


def entry_expiry(value: bytes) -> int:
    """When a presence entry expires (ms since the epoch); 0 for anything else."""
    expiry, _, _ = value.partition(b" ")
    return int(expiry) if expiry.isdigit() else 0


def entry_identity(value: bytes) -> Identity | None:
    """The user of a presence entry, or None when it is not one."""
    try:
        username, name = json.loads(value.partition(b" ")[2])
    except (ValueError, TypeError):
        return None
    return Identity(username, name) if isinstance(username, str) and isinstance(name, str) else None


def entry_server(field: bytes) -> str:
    """The server of a presence entry's field."""
    return field.partition(b"|")[0].decode(errors="replace")


def people(present: dict[bytes, bytes]) -> list[Identity]:
    """The distinct users of a room's presence hash whose entries have not expired."""
    now = int(time.time() * 1000)
    found: dict[str, Identity] = {}
    for value in present.values():
        person = entry_identity(value) if entry_expiry(value) >= now else None
        if person is not None:
            found.setdefault(person.username, person)
    return list(found.values())
