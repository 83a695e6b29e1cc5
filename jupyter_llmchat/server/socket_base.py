"""What every llmchat socket checks before the upgrade, whether the service runs or a bad
setting stopped it: Jupyter's origin rules, Jupyter's authentication (or the runtime secret)
and Jupyter's authorizer on the resource `llmchat`, awaited (it may be a coroutine)."""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import ensure_async
from tornado import web
from tornado.websocket import WebSocketHandler

from .. import protocol
from .owner_auth import OwnerSecretMixin

AUTH_RESOURCE = "llmchat"


class LLMChatSocket(OwnerSecretMixin, WebSocketHandler, JupyterHandler):
    """The upgrade of `llmchat/ws`: `read` on llmchat, llmchat.v1 when offered."""

    auth_resource = AUTH_RESOURCE

    def check_origin(self, origin: str | None = None) -> bool:
        return JupyterHandler.check_origin(self)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return protocol.PROTOCOL if protocol.PROTOCOL in subprotocols else None

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        if not await self.allowed("read"):
            raise web.HTTPError(403, "not authorized to use llmchat")
        await self.upgrade(*args, **kwargs)

    async def upgrade(self, *args: Any, **kwargs: Any) -> None:
        """The authorized request: the WebSocket upgrade (a subclass may answer otherwise)."""
        await WebSocketHandler.get(self, *args, **kwargs)

    async def allowed(self, action: str) -> bool:
        """The authorizer's answer for `action` on llmchat. It may be a coroutine (JupyterHub's
        authorizers are): an un-awaited one would be truthy, i.e. "allowed"."""
        return bool(await ensure_async(self.authorizer.is_authorized(self, self.current_user, action, AUTH_RESOURCE)))
