"""One principal per token: requests authenticated by the same token are the same user.

Jupyter's own identity provider gives every token-authenticated request that carries no
login cookie a fresh random "Anonymous" user (it expects a browser to keep the cookie it
sets). Scripts, kernels and the CLI send the token in a header and no cookie, so each of
their requests would be someone new, and everything llmchat keys on the user (rate limits,
idempotent retries, `Cancel` of one's own answer, per-user caps) would not hold.

For exactly that case, and only when the identity comes from Jupyter's own token code (a
JupyterHub or other custom provider names its users itself and is left alone), the llmchat
handlers name the user after the token: a keyed hash of it (the key is the server's cookie
secret, so the name reveals nothing of the token). Jupyter still decides who is
authenticated; this only chooses the name of an anonymous principal. The login cookie of
the response carries the same principal, so a client that keeps cookies stays that user.
A server with authentication disabled is one principal for every cookie-less request.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.auth.utils import moons_of_jupyter

# The methods through which Jupyter's own provider makes up anonymous users: a provider
# that overrides one of them decides identities itself.
_JUPYTERS_OWN = ("get_user", "_get_user", "get_user_token", "generate_anonymous_user")


def uses_jupyters_anonymous_users(provider: Any) -> bool:
    cls = type(provider)
    return all(getattr(cls, name, None) is getattr(IdentityProvider, name) for name in _JUPYTERS_OWN)


def token_principal(token: str, key: bytes | str) -> User:
    """The user every request authenticated by `token` is (stable across restarts while the
    server keeps its cookie secret)."""
    key_bytes = key.encode() if isinstance(key, str) else key
    digest = hmac.new(key_bytes, b"llmchat-token-principal\0" + token.encode(), hashlib.sha256).hexdigest()
    moon = moons_of_jupyter[int(digest[:8], 16) % len(moons_of_jupyter)]
    name = f"Anonymous {moon}"
    return User(username=f"token-{digest[:16]}", name=name, display_name=name, initials=f"A{moon[0]}")


class PinnedTokenIdentity:
    """The server's identity provider, except that a cookie-less token request is the token's principal."""

    def __init__(self, real: Any) -> None:
        self._real = real

    async def get_user(self, handler: Any) -> User | None:
        user = self._real.get_user(handler)
        if inspect.isawaitable(user):
            user = await user
        if user is None or not uses_jupyters_anonymous_users(self._real):
            return user
        by_token = getattr(handler, "_token_authenticated", False)
        if not by_token and self._real.auth_enabled:
            return user  # a cookie login: Jupyter's user of that login session
        cookie_user = self._real.get_user_cookie(handler)
        if inspect.isawaitable(cookie_user):
            cookie_user = await cookie_user
        if cookie_user is not None:
            return user  # the login cookie names the user (possibly this very principal)
        pinned = token_principal(self._real.token if by_token else "", handler.settings["cookie_secret"])
        self._real.set_login_cookie(handler, pinned)  # replaces the random user Jupyter just set
        return pinned

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)
