"""A JupyterHub where every user's server shares one set of llmchat rooms and one model.

Copy this file next to where you run `jupyterhub`, adjust the settings block, then:

    jupyterhub -f jupyterhub_config.py

The Hub starts two managed services beside the users' servers: Debian's `redis-server`
(the rooms every user server shares) and llama-cpp-python's OpenAI-compatible server (the
one model every user server asks). Each user's single-user server runs the llmchat
extension with `room_bus` and `model_backend` pointing at them, so a teacher's broadcast
from a cell reaches every student's widget, and 200 students mean one model, not 200.

This example logs anyone in with any name (DummyAuthenticator) and runs every server as
the Hub's own OS user (SimpleLocalProcessSpawner): for a trial on one machine. For a real
class, keep the llmchat lines and use your authenticator and spawner (docs/jupyterhub.md).
Every setting can be given from the environment, as the project's tests do.
"""

import os
import shutil
import sys

c = get_config()  # noqa: F821 (JupyterHub provides it)

# -- settings -------------------------------------------------------------------------------
HUB_PORT = int(os.environ.get("LLMCHAT_HUB_PORT", "8000"))
REDIS_PORT = int(os.environ.get("LLMCHAT_REDIS_PORT", "6390"))
MODEL_PORT = int(os.environ.get("LLMCHAT_MODEL_PORT", "8765"))
MODEL_THREADS = int(os.environ.get("LLMCHAT_MODEL_THREADS", "2"))
# Any GGUF ("" = the small model the jupyter-llmchat package ships).
MODEL_PATH = os.environ.get("LLMCHAT_MODEL_PATH", "")
WORK_DIR = os.environ.get("LLMCHAT_HUB_DIR", os.path.abspath("llmchat-hub"))
# ---------------------------------------------------------------------------------------------

os.makedirs(WORK_DIR, exist_ok=True)

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = HUB_PORT
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.db_url = f"sqlite:///{os.path.join(WORK_DIR, 'jupyterhub.sqlite')}"
c.JupyterHub.cookie_secret_file = os.path.join(WORK_DIR, "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = os.path.join(WORK_DIR, "proxy.pid")
c.ConfigurableHTTPProxy.command = [os.environ.get("LLMCHAT_CHP", "configurable-http-proxy")]

# Trial authentication and spawning: anyone, any name, one OS user, homes under WORK_DIR.
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"teacher"}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(WORK_DIR, "home", "{username}")
# The single-user server of the environment the Hub runs in (where jupyter-llmchat is installed).
c.Spawner.cmd = [os.path.join(os.path.dirname(sys.executable), "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120

# The shared parts, started and restarted by the Hub.
c.JupyterHub.services = [
    {
        "name": "llmchat-redis",
        "command": [
            shutil.which("redis-server") or "redis-server",
            "--bind", "127.0.0.1", "--port", str(REDIS_PORT),
            "--dir", WORK_DIR, "--appendonly", "yes",  # rooms survive a Redis restart
        ],
    },
    {
        # llama-cpp-python's OpenAI-compatible server, laid out like llmchat's own engine.
        "name": "llmchat-model",
        "command": [
            sys.executable, "-m", "jupyter_llmchat.engine.model_server",
            "--host", "127.0.0.1", "--port", str(MODEL_PORT),
            "--n_threads", str(MODEL_THREADS), "--n_threads_batch", str(MODEL_THREADS),
            "--n_ctx", "8192", "--interrupt_requests", "False",
        ] + (["--model", MODEL_PATH] if MODEL_PATH else []),
    },
]

# Every user's server: the llmchat extension on the shared rooms and the shared model.
llmchat_args = [
    f"--LLMChat.room_bus=redis://127.0.0.1:{REDIS_PORT}/0",
    "--LLMChat.model_backend=openai",
    f"--LLMChat.openai_base_url=http://127.0.0.1:{MODEL_PORT}/v1",
]
c.Spawner.args = llmchat_args + (["--allow-root"] if os.geteuid() == 0 else [])
