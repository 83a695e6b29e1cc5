"""What the llmchat routes answer when the extension refused to start.

A setting that is unknown, malformed or out of range stops the extension (the server must
never run on defaults the user did not choose), but the routes stay: each answers HTTP 503
with `{"error": reason}` (plus the usual `message` and `code`), and the socket sends
`Error 503` with the reason and closes. So the widget, the kernel client and `jupyter
llmchat status` show why, instead of guessing that the extension is not enabled.
Authentication and authorization are still Jupyter's: a stranger learns nothing.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .. import protocol
from .routes import routes
from .socket_base import AUTH_RESOURCE, LLMChatSocket
from .owner_auth import OwnerSecretMixin

REASON_SETTING = "llmchat_not_started"  # the web app setting that holds the reason
CLOSE_SERVER_ERROR = 1011
CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's reason fits in 123 bytes


def not_started_body(reason: str) -> dict[str, Any]:
    """`error` as the contract names it; `message` and `code` as every other llmchat error."""
    return {"error": reason, "message": reason, "code": 503}


def close_reason(reason: str) -> str:
    """The reason cut to what a close frame holds (the full text is in the `Error` frame)."""
    raw = reason.encode()
    if len(raw) <= CLOSE_REASON_BYTES:
        return reason
    return raw[: CLOSE_REASON_BYTES - 3].decode(errors="ignore") + "…"


class NotStartedAPIHandler(OwnerSecretMixin, APIHandler):
    """Every `llmchat/api/*` request, once authenticated: 503 and the reason."""

    auth_resource = AUTH_RESOURCE

    def reply_not_started(self) -> None:
        self.set_status(503)
        self.set_header("Content-Type", "application/json")
        self.finish(protocol.encode_json(not_started_body(self.settings[REASON_SETTING])))

    @web.authenticated
    @authorized
    def get(self, *args: Any, **kwargs: Any) -> None:
        self.reply_not_started()

    @web.authenticated
    @authorized
    def post(self, *args: Any, **kwargs: Any) -> None:
        self.reply_not_started()

    @web.authenticated
    @authorized
    def put(self, *args: Any, **kwargs: Any) -> None:
        self.reply_not_started()

    @web.authenticated
    @authorized
    def delete(self, *args: Any, **kwargs: Any) -> None:
        self.reply_not_started()


class NotStartedSocketHandler(LLMChatSocket):
    """`llmchat/ws`: the upgrade is accepted as usual, then `Error 503` with the reason, then close 1011."""

    async def upgrade(self, *args: Any, **kwargs: Any) -> None:
        if self.request.headers.get("Upgrade", "").lower() != "websocket":  # a plain GET: the REST answer
            self.set_status(503)
            self.set_header("Content-Type", "application/json")
            self.finish(protocol.encode_json(not_started_body(self.settings[REASON_SETTING])))
            return
        await super().upgrade(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        reason = self.settings[REASON_SETTING]
        try:
            self.write_message(protocol.error_frame(503, reason))  # bytes, binary=False: a text frame
            self.close(CLOSE_SERVER_ERROR, close_reason(reason))
        except WebSocketClosedError:
            pass

    def on_message(self, message: str | bytes) -> None:
        """Nothing is served; the socket is closing."""


def not_started_routes() -> list[tuple[str, type]]:
    """The same URL patterns as `routes.routes()`, each answered with the reason."""
    return [
        (pattern, NotStartedSocketHandler if issubclass(handler, WebSocketHandler) else NotStartedAPIHandler)
        for pattern, handler in routes()
    ]
