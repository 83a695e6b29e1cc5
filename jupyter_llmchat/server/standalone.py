"""`jupyter llmchat serve`: the chat service in a small Tornado process of its own.

For front ends without a Jupyter server that has the extension (VS Code, Colab, marimo, a
plain `python`, a server where the extension is off). The very same service as the
extension's (`assembly.start_service`: handlers, rooms, history file, one model), configured
by the same `c.LLMChat` settings from the same `jupyter_server_config` files, on 127.0.0.1.

Only the OS user who runs it gets in: every request must carry the runtime secret, written
0600 beside the discovery file (`service_file`) in Jupyter's runtime dir; there is no token,
no login, no cookie, and a browser page cannot reach it (kernels relay for their widgets).
At most one runs per runtime dir (a lock held for its life). It exits after `idle_timeout`
seconds with no socket, no request and no answer running (0: never), on SIGTERM/SIGINT, or
when a Jupyter server takes its history file over (`handover`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import time
from datetime import datetime
from typing import Any

from jupyter_core.application import JupyterApp
from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.identity import IdentityProvider
from tornado import httpserver, netutil, web
from traitlets import Float, Int, TraitError, Unicode, default
from traitlets.config.loader import ConfigFileNotFound

from .._version import __version__
from ..service_file import SERVICE_LOCK, LockBusy, take, write_service_file
from .assembly import RunningService, start_service
from .config_values import ConfigError
from .extension import LLMChat
from .routes import routes
from .handover import HANDOVER_ROUTE, HANDOVER_TIMEOUT, HandoverHandler

IDLE_CHECK = 1.0  # seconds between two looks at the service's activity
CLOSE_HANDED_OVER = 1012  # "service restart": clients reconnect, and find the Jupyter server


class SecretOnly(IdentityProvider):
    """Nobody is authenticated except by the runtime secret (`owner_auth` handles that one)."""

    def get_user(self, handler: Any) -> None:
        return None

    @property
    def auth_enabled(self) -> bool:
        return True


class NobodyAuthorized(Authorizer):
    """Never reached by a stranger (unauthenticated first); denies all the same."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return False


class PlainErrors:
    """Error replies as JSON: there are no HTML pages (nor their templates) in this process."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason  # type: ignore[attr-defined]
        self.set_header("Content-Type", "application/json")  # type: ignore[attr-defined]
        self.finish({"message": message, "code": status_code})  # type: ignore[attr-defined]


class LLMChatService(JupyterApp):
    """`jupyter llmchat serve`: the llmchat service without a Jupyter server."""

    name = "jupyter-llmchat-serve"
    description = __doc__ or ""
    version = __version__
    # The files Jupyter Server reads its (and so the extension's) settings from.
    config_file_name = Unicode("jupyter_server_config")
    classes = [LLMChat]
    aliases = {"port": "LLMChatService.port", "idle-timeout": "LLMChatService.idle_timeout"}
    flags: dict[str, Any] = {}

    port = Int(0, min=0, max=65535, config=True, help="TCP port on 127.0.0.1; 0 takes a free one.")
    idle_timeout = Float(
        600.0, min=0.0, config=True, help="Exit after this many seconds with no socket, request or answer (0: never)."
    )

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    def load_config_file(self, suppress_errors: bool = True) -> None:  # type: ignore[override]
        """jupyter_config, jupyter_server_config, and the extension's own file, as the extension gets them."""
        super().load_config_file(suppress_errors)
        try:
            super(JupyterApp, self).load_config_file("jupyter_jupyter_llmchat_config", path=self.config_file_paths)
        except ConfigFileNotFound:  # optional; a broken one is reported like any other
            pass

    def start(self) -> None:
        sys.exit(asyncio.run(self.serve()))

    async def serve(self) -> int:
        """Run until idle, signalled or handed over; the exit status."""
        try:
            # A kernel looking whether a service runs holds the lock for an instant: wait that out.
            lock = take(self.runtime_dir, SERVICE_LOCK, wait=2.0)
        except LockBusy as error:
            print(f"jupyter llmchat serve: another llmchat service runs for this user ({error})", file=sys.stderr)
            return 1
        try:
            chat = LLMChat(config=self.config, log=self.log)
            running = start_service(chat, asyncio.get_running_loop(), self.runtime_dir, self.log)
        except (ConfigError, TraitError, ValueError) as error:
            print(f"jupyter llmchat serve: {error}", file=sys.stderr)
            if lock is not None:
                lock.close()
            return 1
        host = Host(self, chat, running)
        try:
            await host.run()
        finally:
            if lock is not None:
                lock.close()
        return 0


class Host:
    """The Tornado application around one running service, and its life: serve, idle, stop."""

    def __init__(self, app: LLMChatService, chat: LLMChat, running: RunningService) -> None:
        self.app = app
        self.chat = chat
        self.running = running
        self.log = app.log
        self.stopped = asyncio.Event()
        self.handing_over = False
        self._last_active = time.monotonic()
        self._last_api: datetime | None = None
        self._server: httpserver.HTTPServer | None = None
        self._info_path: Any = None

    def application(self) -> web.Application:
        handlers = [(f"/{path}", type(cls.__name__, (PlainErrors, cls), {})) for path, cls in routes()]
        handlers.append((f"/{HANDOVER_ROUTE}", HandoverHandler))
        settings = {
            "base_url": "/",
            "identity_provider": SecretOnly(),
            "authorizer": NobodyAuthorized(),
            "cookie_secret": secrets.token_bytes(32),
            "allow_remote_access": False,  # the Host header must be a loopback name: no DNS rebinding
            "allow_unauthenticated_access": True,  # each handler authenticates itself (all do)
            "allow_origin": "",
            "config": self.app.config,
            "serverapp": None,
            "llmchat_hand_over": self.hand_over,
            **self.running.handler_settings(self.chat),
        }
        return web.Application(handlers, **settings)

    async def run(self) -> None:
        application = self.application()
        sockets = netutil.bind_sockets(self.app.port, "127.0.0.1")  # loopback only; port 0: a free one
        port = sockets[0].getsockname()[1]
        self._server = httpserver.HTTPServer(application)
        self._server.add_sockets(sockets)
        self._info_path = write_service_file(
            self.app.runtime_dir,
            {
                "url": f"http://127.0.0.1:{port}/",
                "hostname": "127.0.0.1",
                "port": port,
                "base_url": "/",
                "version": __version__,
                "history_path": os.path.realpath(self.chat.history_path) if self.chat.room_bus == "memory" else "",
                "idle_timeout": self.app.idle_timeout,
                "started": time.time(),
            },
        )
        self.log.info("llmchat service on http://127.0.0.1:%s/ (pid %s, idle timeout %g s)", port, os.getpid(), self.app.idle_timeout)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopped.set)
        watcher = asyncio.ensure_future(self._watch_idle(application))
        try:
            await self.stopped.wait()
        finally:
            watcher.cancel()
            await self._stop()

    def hand_over(self) -> None:
        """A Jupyter server takes the history file: no more work, running answers finish, exit."""
        if self.handing_over:
            return
        self.handing_over = True
        self.log.info("llmchat service: handing over to a Jupyter server")
        self.running.service.closing = "the llmchat service is handing over to a Jupyter server; reconnect"
        self._forget_info()
        asyncio.ensure_future(self._finish_then_stop())

    async def _finish_then_stop(self) -> None:
        deadline = time.monotonic() + HANDOVER_TIMEOUT - 10
        while self.running.service.answers.running and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        self.stopped.set()

    async def _watch_idle(self, application: web.Application) -> None:
        timeout = self.app.idle_timeout
        while True:
            await asyncio.sleep(IDLE_CHECK)
            now = time.monotonic()
            service = self.running.service
            api = application.settings.get("api_last_activity")  # every authenticated REST reply
            if service.connections or service.answers.running or api != self._last_api:
                self._last_active, self._last_api = now, api
            elif timeout and now - self._last_active >= timeout:
                self.log.info("llmchat service: idle for %g s, exiting", timeout)
                self.stopped.set()
                return

    async def _stop(self) -> None:
        self._forget_info()
        if self._server is not None:
            self._server.stop()
        reason = "handed over to a Jupyter server" if self.handing_over else "the llmchat service stopped"
        code = CLOSE_HANDED_OVER if self.handing_over else 1001
        for connection in list(self.running.service.connections.values()):
            connection.close(code, reason)
        await asyncio.sleep(0.05)  # let the close frames go out
        await self.running.close()

    def _forget_info(self) -> None:
        if self._info_path is not None:
            try:
                os.unlink(self._info_path)
            except FileNotFoundError:
                pass
            self._info_path = None


def main(argv: list[str] | None = None) -> None:
    """Entry point of `jupyter llmchat serve` (argv: what follows `serve`)."""
    app = LLMChatService()
    app.initialize(argv)
    app.start()
