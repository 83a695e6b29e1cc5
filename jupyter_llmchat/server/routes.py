"""The URL table of the llmchat handlers (the socket's and the REST API's)."""

from __future__ import annotations

from .handlers import ChatSocketHandler
from .rest_handlers import (
    ExportHandler, GenerateHandler, MessagesHandler, ModelHandler, RoomHandler, RoomsHandler, StatsHandler,
)


def routes() -> list[tuple[str, type]]:
    """URL patterns, relative to the server's base_url (the ExtensionApp prepends it)."""
    room = r"(?P<room>[^/]+)"
    return [
        ("llmchat/ws", ChatSocketHandler),
        ("llmchat/api/stats", StatsHandler),
        ("llmchat/api/model", ModelHandler),
        ("llmchat/api/rooms", RoomsHandler),
        (f"llmchat/api/rooms/{room}", RoomHandler),
        (f"llmchat/api/rooms/{room}/messages", MessagesHandler),
        (f"llmchat/api/rooms/{room}/generate", GenerateHandler),
        (f"llmchat/api/rooms/{room}/export", ExportHandler),
    ]
