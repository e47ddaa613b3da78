#!/usr/bin/env bash
# Sets up what the tests need, then runs them:
#
#   ./test.sh                       everything (cargo test --workspace)
#   ./test.sh --test it browser::   cargo test's own arguments go through
#   ./test.sh --setup-only          only the setup
#
# The setup makes sure RabbitMQ answers on 127.0.0.1:5672 (guest/guest) and
# Redis on 127.0.0.1:6379, starting them, and on a Debian machine installing
# them with apt-get, when they do not; and installs Node.js with the test's
# pinned npm packages (tests/js, web-demo), Debian's Chromium and nginx, and
# Python 3's venv (schemathesis, pinned in tests/openapi/requirements.txt).
# Installing needs
# root; a test whose dependency is still missing fails saying what to
# install.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS"; }

apt_updated=
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "FATAL: $* missing, and this is not a Debian machine: install it, then run $0 again" >&2
        exit 1
    fi
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    if [ -z "$apt_updated" ]; then
        $sudo apt-get update -qq
        apt_updated=1
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

redis_answers() {
    local reply
    { exec 3<>/dev/tcp/127.0.0.1/6379; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 2 reply <&3 || true
    exec 3<&-
    [[ "$reply" == +PONG* ]]
}

wait_for() { # seconds description command...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq "$seconds"); do
        "$@" && return 0
        sleep 1
    done
    echo "FATAL: $what did not come up within ${seconds}s" >&2
    return 1
}

ensure_redis() {
    redis_answers && { echo "Redis answers on 127.0.0.1:6379"; return; }
    command -v redis-server >/dev/null || apt_install redis-server
    local dir
    dir=$(mktemp -d -t stomp-relay-redis.XXXXXX)
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir "$dir" --logfile "$dir/redis.log"
    wait_for 30 "Redis" redis_answers
    echo "Redis started (log: $dir/redis.log)"
}

ensure_rabbitmq() {
    port_open 5672 && { echo "RabbitMQ answers on 127.0.0.1:5672"; return; }
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    rabbitmq-server -detached
    wait_for 120 "RabbitMQ" port_open 5672
    rabbitmqctl await_startup >/dev/null 2>&1 || true
    echo "RabbitMQ started"
}

setup() {
    step "RabbitMQ and Redis"
    ensure_redis
    ensure_rabbitmq

    step "Node.js with STOMP.js, sockjs-client and playwright-core (tests/js)"
    command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
    npm ci --prefix tests/js --no-audit --no-fund --loglevel=error

    step "the web demo's browser libraries (web-demo)"
    npm ci --prefix web-demo --no-audit --no-fund --loglevel=error

    step "Chromium for the browser tests"
    [ -x /usr/bin/chromium ] || apt_install chromium
    /usr/bin/chromium --version

    step "nginx for the local cluster's front (docker/run-local-cluster.sh)"
    command -v nginx >/dev/null || apt_install nginx-light || apt_install nginx

    step "Python 3 venv for schemathesis (the OpenAPI test installs it)"
    python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
}

case "${1:-}" in
--setup-only)
    setup
    ;;
*)
    setup
    step "cargo test --workspace $*"
    # The feature builds in the SockJS echo services that
    # tests/it/sockjs_protocol.rs talks to; a release build has none of them.
    cargo test --workspace --locked --features stomp-relay/sockjs-protocol-test "$@"
    ;;
esac
