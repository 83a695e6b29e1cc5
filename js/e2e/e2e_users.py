"""Named users for the browser tests of moderation (js/e2e/moderation.mjs).

Jupyter's own token login gives every browser a random anonymous username, so a test cannot
name a moderator in `LLMChat.moderators`. This identity provider authenticates exactly as
Jupyter's does (the token is still required) and then names the user after the page's
`e2e-user` cookie, which the test sets in each browser context.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth import IdentityProvider, User
from jupyter_server.utils import ensure_async


class CookieUsers(IdentityProvider):
    async def get_user(self, handler: Any) -> User | None:
        user = await ensure_async(super().get_user(handler))
        name = handler.get_cookie("e2e-user")
        if user is None or not name:
            return user
        return User(username=name, name=name.title(), display_name=name.title())
