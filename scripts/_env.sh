# Shared by scripts/serve, scripts/test and scripts/bench: make .venv hold the locked dependencies + project.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export UV_COMPILE_BYTECODE=1

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_venv() {
  local stamp=".venv/.installed" want
  want="$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
  if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  # The venv comes from the standard library (python3-venv on Debian); uv is installed into
  # it with the venv's own pip, so no system pip or "externally managed" Python is touched.
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || { rm -rf .venv; apt_install python3-venv; python3 -m venv .venv; }
  fi
  if [ ! -x .venv/bin/uv ]; then
    .venv/bin/python -m pip --version >/dev/null 2>&1 || .venv/bin/python -m ensurepip --upgrade >/dev/null
    .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
  fi
  uv() { .venv/bin/uv "$@"; }
  uv pip install --quiet --python .venv/bin/python -r requirements.lock
  uv pip install --quiet --python .venv/bin/python --no-deps -e .
  echo "$want" > "$stamp"
}

apt_install() {
  # apt_install PACKAGE... : install Debian packages that are missing.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return
  echo "installing ${missing[*]}" >&2
  as_root apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# pg_start NAME [extra server settings...]: start a throwaway PostgreSQL cluster on a free loopback port
# with database NAME; sets PGDATA_DIR and PG_URL (asyncpg). pg_stop removes it (call it from a trap).
PGDATA_DIR=""
pg_start() {
  local name="$1"; shift
  [ -n "$(pg_bindir)" ] || apt_install postgresql
  PGDATA_DIR="$(mktemp -d /tmp/loyalty-pg.XXXXXX)"
  [ "$(id -u)" = 0 ] && chown postgres "$PGDATA_DIR"
  local port
  port="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  run_pg "$(pg_bindir)/initdb" -D "$PGDATA_DIR/data" --no-sync -A trust -U postgres -E UTF8 >/dev/null
  run_pg "$(pg_bindir)/pg_ctl" -D "$PGDATA_DIR/data" -l "$PGDATA_DIR/log" -w \
    -o "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c listen_addresses=127.0.0.1 -p $port -k $PGDATA_DIR -c max_connections=300 $*" \
    start >/dev/null
  run_pg "$(pg_bindir)/createdb" -h 127.0.0.1 -p "$port" -U postgres "$name"
  PG_URL="postgresql+asyncpg://postgres@127.0.0.1:$port/$name"
}
pg_stop() {
  if [ -n "$PGDATA_DIR" ]; then
    run_pg "$(pg_bindir)/pg_ctl" -D "$PGDATA_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PGDATA_DIR"
    PGDATA_DIR=""
  fi
}
