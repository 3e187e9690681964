#!/usr/bin/env bash
# Starts the Go Counter example app and `granary dev` in front of it; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
APP_PORT=${APP_PORT:-3000}
HTTP_PORT=${HTTP_PORT:-3500}
STORE=${STORE:-}

APP_PORT=$APP_PORT DAPR_HTTP_PORT=$HTTP_PORT ./bin/counter-go &
app_pid=$!
trap 'kill $app_pid 2>/dev/null || true; wait $app_pid 2>/dev/null || true' EXIT

args=(dev --http-port "$HTTP_PORT" --app-url "counter=http://127.0.0.1:$APP_PORT")
if [ -n "$STORE" ]; then
  args+=(--state-store "$STORE")
fi
./bin/granary "${args[@]}"
