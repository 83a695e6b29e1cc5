#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` from the same llama.cpp that the installed
# llama-cpp-python vendors, so bench/side_by_side.py compares jupyter-llmchat with its peer at
# one llama.cpp version. The build lives outside the repository, in a cache directory:
#
#   bench/build_llama_server.sh            # builds $LLAMA_SERVER_DIR/build/bin/llama-server
#   PYTHON=.venv/bin/python JOBS=2 bench/build_llama_server.sh
#
# Settings (environment):
#   PYTHON            interpreter whose llama-cpp-python version to match (default: python3)
#   LLAMA_SERVER_DIR  cache directory (default: ~/.cache/jupyter-llmchat/llama-server)
#   JOBS              parallel compile jobs (default: 2; the build takes ~20 min on 2 cores)
#
# The build is native (-march=native), like a llama-cpp-python built from source on this
# machine. On CPUs that report AMX, llama.cpp's AMX weight buffers crash (SIGSEGV in
# ggml_backend_amx_mul_mat) on some virtual machines; the engine loads its model without
# those extra buffer types (`use_extra_bufts=False`), and llama-server's equivalent is its
# `--no-repack` flag, which the smoke test below and bench/side_by_side.py always pass.
# The compile runs under `nice -n 19` because the machine is usually shared.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
CACHE="${LLAMA_SERVER_DIR:-$HOME/.cache/jupyter-llmchat/llama-server}"
JOBS="${JOBS:-2}"

version="$("$PYTHON" -c 'import llama_cpp; print(llama_cpp.__version__)')" || {
    echo "cannot import llama_cpp with $PYTHON; set PYTHON to the project's interpreter" >&2
    exit 1
}
src="$CACHE/llama_cpp_python-$version/vendor/llama.cpp"
build="$CACHE/build-$version"
bin="$build/bin/llama-server"
mkdir -p "$CACHE"

if [[ ! -d "$src" ]]; then
    echo "== fetching the llama-cpp-python $version sdist"
    "$PYTHON" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$CACHE"
    tar -xzf "$CACHE/llama_cpp_python-$version.tar.gz" -C "$CACHE"
fi

echo "== configuring $src -> $build"
cmake -S "$src" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=ON \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    >"$CACHE/configure.log"

echo "== building llama-server with $JOBS jobs under nice (log: $CACHE/build.log)"
nice -n 19 cmake --build "$build" --target llama-server -j "$JOBS" >"$CACHE/build.log" 2>&1 || {
    tail -30 "$CACHE/build.log" >&2
    exit 1
}
ln -sfn "$bin" "$CACHE/llama-server"

echo "== smoke test: one completion from the packaged model"
model="$("$PYTHON" -c 'from jupyter_llmchat.engine.model import default_model_path; print(default_model_path())')"
port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$bin" -m "$model" --host 127.0.0.1 --port "$port" --no-repack --no-webui -t 1 -tb 1 \
    -c 1024 --parallel 2 >"$CACHE/smoke.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { tail -20 "$CACHE/smoke.log" >&2; exit 1; }
    sleep 0.5
done
answer="$(curl -sf "http://127.0.0.1:$port/completion" -H 'Content-Type: application/json' \
    -d '{"prompt": "The capital of France is", "n_predict": 8, "temperature": 0}')"
echo "$answer" | "$PYTHON" -c 'import json, sys; d = json.load(sys.stdin); print("answer:", repr(d["content"]), "tokens:", d["tokens_predicted"])'
echo "== ready: $CACHE/llama-server (llama.cpp of llama-cpp-python $version)"
