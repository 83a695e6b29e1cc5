"""Who is a moderator (docs/security.md#moderators): the owner, a JupyterHub admin, a named
user; never a user merely because Jupyter's authorizer lets everyone do everything."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from jupyter_server.auth import User

from jupyter_llmchat.server.handlers import identity_of

pytestmark = pytest.mark.fast


class Handler(SimpleNamespace):
    """What `identity_of` reads of a request handler."""

    def _secret_owner(self):
        return self.owner


def who(user, *, owner=None, moderators=(), headers=None):
    request = SimpleNamespace(headers=headers or {})
    return identity_of(Handler(current_user=user, owner=owner, request=request, settings={"llmchat_moderators": frozenset(moderators)}))


def test_a_plain_login_is_not_a_moderator():
    assert who(User("ada")).moderator is False


def test_the_owner_through_the_runtime_secret_is_one():
    identity = who(User("root"), owner="root")
    assert identity.owner and identity.moderator


def test_a_widget_the_owners_kernel_relays_is_the_owner_as_a_user_and_a_moderator():
    identity = who(User("root", display_name="Root"), owner="root", headers={"X-LLMChat-Relay": "widget"})
    assert identity.moderator and not identity.owner
    assert (identity.username, identity.name, identity.kind) == ("root", "Root", "user")
    # The header alone makes nobody the owner or a moderator.
    stranger = who(User("eve"), headers={"X-LLMChat-Relay": "widget"})
    assert not stranger.owner and not stranger.moderator and stranger.kind == "user"


def test_a_named_user_is_one_and_only_that_user():
    assert who(User("teacher"), moderators={"teacher"}).moderator is True
    assert who(User("student"), moderators={"teacher"}).moderator is False


def test_a_jupyterhub_admin_is_one_as_the_hubs_identity_says():
    hub_user = User("grace")
    hub_user.hub_user = {"name": "grace", "admin": True}
    assert who(hub_user).moderator is True
    not_admin = User("alan")
    not_admin.hub_user = {"name": "alan", "admin": False}
    assert who(not_admin).moderator is False
