"""Accept the runtime secret (see `runtime_secret`) on the llmchat handlers.

A request carrying `Authorization: llmchat-secret <secret>` is authenticated as the
server's owner and counts as token-authenticated (no XSRF, no origin check), exactly as
Jupyter treats its own token. The owner is authorized for every llmchat action, as the
owner of a single-user server is. Nothing in the request chooses the user name.

It works by handing Jupyter's `prepare()` a stand-in identity provider and authorizer for
that one request, so Jupyter's own code path (host check, CORS, XSRF) still runs. Every
other request gets Jupyter's provider as it is, except that a token names one principal
(token_identity.py).
"""

from __future__ import annotations

import hmac
from typing import Any

from jupyter_server.auth.identity import User

from ..runtime_secret import SCHEME
from .token_identity import PinnedTokenIdentity


class _OwnerIdentity:
    """The server's identity provider, except that this request is the owner, by token."""

    def __init__(self, real: Any, owner: User) -> None:
        self._real = real
        self._owner = owner

    def get_user(self, handler: Any) -> User:
        return self._owner

    def is_token_authenticated(self, handler: Any) -> bool:
        return True

    def should_check_origin(self, handler: Any) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _OwnerAuthorizer:
    """The owner may do everything on llmchat."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return True


_OWNER_AUTHORIZER = _OwnerAuthorizer()


class OwnerSecretMixin:
    """Put first in a `JupyterHandler` subclass's bases to accept the runtime secret."""

    request: Any
    settings: dict[str, Any]

    def _secret_owner(self) -> User | None:
        """The owner if this request carries the right secret, else None (checked once)."""
        try:
            return self.__dict__["_llmchat_owner"]
        except KeyError:
            pass
        owner = None
        secret: str = self.settings.get("llmchat_secret") or ""
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if secret and scheme.lower() == SCHEME and hmac.compare_digest(given.strip().encode(), secret.encode()):
            owner = self.settings["llmchat_owner"]
            # JupyterHub's single-user server replaces Jupyter's XSRF check with its own,
            # which skips requests marked token-authenticated this way.
            self._token_authenticated = True
        self.__dict__["_llmchat_owner"] = owner
        return owner

    @property
    def identity_provider(self) -> Any:
        real = super().identity_provider  # type: ignore[misc]
        owner = self._secret_owner()
        return PinnedTokenIdentity(real) if owner is None else _OwnerIdentity(real, owner)

    @property
    def authorizer(self) -> Any:
        if self._secret_owner() is not None:
            return _OWNER_AUTHORIZER
        return super().authorizer  # type: ignore[misc]


def owner_user(username: str) -> User:
    return User(username=username, name=username, display_name=username)
