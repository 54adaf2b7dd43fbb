#!/usr/bin/env bash
# Run a command against one local Prefect server started here and stopped on exit, so the
# command's flows (every `dvc repro` stage is one) share it instead of each starting a
# temporary server (5-10 s apiece). The server listens on 127.0.0.1 only and keeps its
# database in a temporary folder removed at exit, and goes with this script even when it is
# killed (eamm.watchdog). Usage: scripts/with_prefect_server.sh dvc repro
set -euo pipefail

if [ -n "${PREFECT_API_URL:-}" ]; then
  exec "$@"  # a server (or Prefect Cloud) is already configured: use it
fi

tmp=$(mktemp -d)
port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PREFECT_API_DATABASE_CONNECTION_URL="sqlite+aiosqlite:///$tmp/prefect.db" \
  prefect server start --host 127.0.0.1 --port "$port" >"$tmp/server.log" 2>&1 &
server=$!
# Should this script be killed (kill -9 skips the EXIT trap), a watchdog stops the server.
python -m eamm.watchdog $$ "$server" "--port $port" &
stop() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$tmp"
}
trap stop EXIT

export PREFECT_API_URL="http://127.0.0.1:$port/api"
if ! python - "$PREFECT_API_URL/health" <<'EOF'; then
import sys, time, urllib.request

for _ in range(240):
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1)
        sys.exit(0)
    except OSError:
        time.sleep(0.25)
sys.exit(1)
EOF
  echo "with_prefect_server: the Prefect server did not start within 60 s; its log:" >&2
  tail -20 "$tmp/server.log" >&2
  exit 1
fi
"$@"
