"""Switching the running model (moderators only), and telling every member when the model changes.

The model backend calls `push_stats` whenever what `Stats.model` says changes (a download's
progress, loaded, failed, switched): each connection gets a `Stats` event, so a widget shows
the progress bar and then the new model's name without asking.
"""

from __future__ import annotations

from typing import Any

from .. import protocol
from ..models import BadReference
from ..protocol import ChatError
from ..backends.managed_model import SwitchBusy
from .connection import Identity

NOT_A_MODERATOR = "only a moderator may switch the model (the server's owner, JupyterHub admins, c.LLMChat.moderators)"


def push_stats(service: Any) -> None:
    """One `Stats` event (encoded once) to every connection of this server."""
    if not service.connections:
        return
    frame = protocol.encode("Stats", service.stats_data())
    for connection in list(service.connections.values()):
        connection.send(frame)


def switch_model(service: Any, user: Identity, reference: str) -> dict[str, Any]:
    """Begin replacing the running model with the one `reference` names; `Stats.model` as it is now.

    403 unless `user` is a moderator; 400 for a reference of no known form; 409 while another
    switch is under way or when this server's models come from a model server."""
    if not user.moderator:
        raise ChatError(403, NOT_A_MODERATOR)
    switch = getattr(service.backend, "switch", None)
    if switch is None:
        raise ChatError(409, "this server takes its answers from a model server (model_backend \"openai\"): switch the model there")
    try:
        switch(reference)
    except BadReference as error:
        raise ChatError(400, str(error)) from None
    except SwitchBusy as error:
        raise ChatError(409, str(error)) from None
    return service.stats()["model"]
