"""Exceptions of the kernel-side client and the CLI.

One class per thing a user can fix differently: no server found, extension not enabled
or not started (a bad setting), credentials refused, or a request the server answered
with an `Error`.
"""

from __future__ import annotations


class LLMChatClientError(Exception):
    """Base of every error raised by `jupyter_llmchat.kernel.client` and the CLI."""


class ServerNotFound(LLMChatClientError):
    """No Jupyter server to talk to: none running, several and none is ours, or unreachable."""


class ExtensionNotEnabled(LLMChatClientError):
    """The server runs, but `llmchat/api/stats` is a 404: jupyter_llmchat is not enabled there."""


class AuthenticationFailed(LLMChatClientError):
    """The server refused our token or secret (HTTP 403)."""


class ChatRequestError(LLMChatClientError):
    """The server answered a request with an error (`Error {code, message}` or an HTTP status)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


class ExtensionNotStarted(ChatRequestError):
    """503 with the reason: jupyter_llmchat is enabled but refused to start (a bad setting);
    fix the setting the message names and restart the server."""


class ModelUnavailable(ChatRequestError):
    """503: the model is still loading or failed to load; retry later."""


class RateLimited(ChatRequestError):
    """429: too many messages, or the generation queue is full; retry later."""


class GenerationFailed(ChatRequestError):
    """The answer ended with `finish_reason: "error"` (e.g. the server shut down)."""


class ConnectionLost(LLMChatClientError):
    """The WebSocket closed before the answer was complete."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason}" if reason else f"connection closed ({code})")
        self.code = code
        self.reason = reason


class ResponseTimeout(LLMChatClientError, TimeoutError):
    """No frame from the server for `timeout` seconds while waiting for a reply or a token."""


def request_error(code: int, message: str) -> ChatRequestError:
    """The most specific `ChatRequestError` subclass for a status code."""
    if code == 503:
        return ModelUnavailable(code, message)
    if code == 429:
        return RateLimited(code, message)
    return ChatRequestError(code, message)
