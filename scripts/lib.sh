# Shared by scripts/up, scripts/down and scripts/test. Source it; do not run it.
# Installs what siphon needs where it is missing and starts Redis and RabbitMQ if they are down.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
VAR="$ROOT/var"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {  # port, seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do port_open "$1" && return 0; sleep 0.1; done
  return 1
}

quietly() {  # what, command...: run it with its output in a log, shown only if it fails
  local what="$1" log; shift
  log="$(mktemp -t siphon-install.XXXXXX)"
  if ! "$@" >"$log" 2>&1; then
    echo "$what failed:" >&2
    tail -n 40 "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

apt_install() {  # packages...: install with apt-get, quietly
  say "installing $* with apt-get (a minute or two the first time)"
  quietly "apt-get update" $SUDO apt-get update -qq
  quietly "apt-get install $*" env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

ensure_system_packages() {  # what siphon itself runs on
  local missing=()
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
  command -v bwrap >/dev/null || missing+=(bubblewrap)  # SANDBOX=bwrap, the conversion workers' default
  ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing+=(libseccomp2)  # the forked child's seccomp filter
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

ensure_test_packages() {  # what only the test suite drives
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)  # the web page's browser tests (Playwright)
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)  # tests/e2e/test_nginx.py
  command -v ss >/dev/null || missing+=(iproute2)  # the heartbeat fault test reads the AMQP connection
  command -v pgrep >/dev/null || missing+=(procps)
  command -v socat >/dev/null || missing+=(socat)  # tests/e2e/test_hosts.py: hosts reach the loopback Redis through a relay
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

ensure_venv() {
  local stamp="$VENV/.siphon-installed" want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  [ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing siphon and its test tools into .venv (pip; a minute or two the first time)"
    quietly "pip install" "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test]"
    echo "$want" >"$stamp"
  fi
}

ensure_redis() {
  port_open 6379 && return 0
  say "starting redis-server on 127.0.0.1:6379"
  mkdir -p "$VAR/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$VAR/redis" --logfile "$VAR/redis/redis.log"
  wait_for_port 6379 20 || { echo "redis did not start; see $VAR/redis/redis.log" >&2; exit 1; }
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  say "starting rabbitmq-server on 127.0.0.1:5672"
  $SUDO rabbitmq-server -detached
  wait_for_port 5672 90 || { echo "rabbitmq did not start; see /var/log/rabbitmq" >&2; exit 1; }
  sleep 2  # the port opens a moment before the broker accepts logins
}

ensure_everything() {
  ensure_system_packages
  ensure_venv
  ensure_redis
  ensure_rabbitmq
}
