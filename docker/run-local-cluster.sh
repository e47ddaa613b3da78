#!/usr/bin/env bash
# compose.yaml's topology as plain processes, for machines without a Docker
# engine: three relay nodes in cluster mode on a RabbitMQ and a Redis that
# already run (./test.sh --setup-only starts Debian's), and Debian's nginx
# in front when it is installed. Runs until Ctrl-C or SIGTERM, then stops
# every node gracefully; SIGHUP restarts the nodes one at a time, as a
# rolling deploy does.
#
#   docker/run-local-cluster.sh
#
# Then the demo is on http://localhost:8080 (nginx), or on each node's own
# port, 8081 to 8083. Settings, from the environment:
#
#   STOMP_RELAY_BIN  the relay binary [target/release/stomp-relay, built if missing]
#   AMQP_URL         [amqp://guest:guest@127.0.0.1:5672/%2f]
#   REDIS_URL        [redis://127.0.0.1:6379]
#   FRONT_PORT       nginx's port [8080]
#   FIRST_PORT       the first node's port; the others follow [8081]
#   CLUSTER_DIR      logs and nginx's files [a new temporary directory]
#   CLUSTER_NAME     node ids are {name}-1 to {name}-3 [local]
#
# Any other STOMP_RELAY_* variable reaches every node (REDIS_PREFIX, say).
set -euo pipefail
cd "$(dirname "$0")/.."
# A closed pipe or terminal makes a write fail, not the script die before
# it has stopped its nodes.
trap '' PIPE

bin=${STOMP_RELAY_BIN:-target/release/stomp-relay}
amqp_url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
front_port=${FRONT_PORT:-8080}
first_port=${FIRST_PORT:-8081}
name=${CLUSTER_NAME:-local}
dir=${CLUSTER_DIR:-$(mktemp -d -t stomp-relay-cluster.XXXXXX)}
mkdir -p "$dir"
# nginx's workers run as another user when started by root.
chmod 755 "$dir"

if [ ! -x "$bin" ]; then
    echo "building $bin (cargo build --release)"
    cargo build --release --locked --bin stomp-relay
fi

pids=()
stop() {
    trap - INT TERM EXIT
    # Signals first: saying so may fail (a closed terminal or pipe).
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    echo "stopping the cluster" || true
    wait || true
    echo "stopped" || true
    exit 0
}
trap stop INT TERM EXIT

# Starts node $1 (1 to 3) on its port; its pid takes its place in pids.
start_node() {
    local node=$1 port=${ports[$1 - 1]}
    "$bin" --listen "127.0.0.1:$port" --node-id "$name-$node" \
        --amqp-url "$amqp_url" --redis-url "$redis_url" \
        --trusted-proxies 127.0.0.1 --heart-beat-max 30000 \
        >>"$dir/relay-$node.log" 2>&1 &
    pids[$node - 1]=$!
}

# True once the node on port $1 answers /readyz with 200.
ready() {
    local status
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
    read -r -t 2 _ status _ <&3 || true
    exec 3<&-
    [ "$status" = 200 ]
}

# Waits until the node on port $1 is ready, or gives up with its log.
wait_ready() {
    for attempt in $(seq 120); do
        ready "$1" && return 0
        if [ "$attempt" = 120 ]; then
            echo "FATAL: the node on port $1 is not ready after 60 s (RabbitMQ at $amqp_url and Redis at $redis_url running?); its log:" >&2
            tail -n 20 "$dir"/relay-*.log >&2
            exit 1
        fi
        sleep 0.5
    done
}

# A rolling deploy: each node in turn stopped gracefully (its clients told
# to go over its drain period, STOMP_RELAY_DRAIN_PERIOD), then started
# again, the next once it is ready.
rolling_restart() {
    for node in 1 2 3; do
        echo "restarting $name-$node" || true
        kill -TERM "${pids[$node - 1]}" 2>/dev/null || true
        wait "${pids[$node - 1]}" || true
        start_node "$node"
        wait_ready "${ports[$node - 1]}"
        echo "restarted $name-$node" || true
    done
    echo "rolling restart done" || true
}

ports=()
for node in 1 2 3; do
    port=$((first_port + node - 1))
    ports+=("$port")
    start_node "$node"
    echo "relay $name-$node on http://127.0.0.1:$port (log: $dir/relay-$node.log)"
done
for port in "${ports[@]}"; do
    wait_ready "$port"
done

front="http://127.0.0.1:${ports[0]}"
if command -v nginx >/dev/null; then
    mkdir -p "$dir/nginx"
    sed -e "s/\${RELAY_1}/127.0.0.1:${ports[0]}/" -e "s/\${RELAY_2}/127.0.0.1:${ports[1]}/" \
        -e "s/\${RELAY_3}/127.0.0.1:${ports[2]}/" -e "s/\${FRONT_PORT}/127.0.0.1:$front_port/" \
        docker/nginx.conf.template >"$dir/nginx/stomp-relay.conf"
    cat >"$dir/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log $dir/nginx/access.log;
    client_body_temp_path $dir/nginx/body;
    proxy_temp_path $dir/nginx/proxy;
    fastcgi_temp_path $dir/nginx/fastcgi;
    uwsgi_temp_path $dir/nginx/uwsgi;
    scgi_temp_path $dir/nginx/scgi;
    include $dir/nginx/stomp-relay.conf;
}
CONF
    nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g 'daemon off;' &
    pids+=("$!")
    for _ in $(seq 40); do
        (exec 3<>"/dev/tcp/127.0.0.1/$front_port") 2>/dev/null && break
        sleep 0.25
    done
    front="http://127.0.0.1:$front_port"
    echo "nginx on $front in front of the three nodes"
else
    echo "no nginx (Debian: apt-get install nginx): use each node's own port"
fi

echo "cluster ready: the demo on $front/, STOMP on ${front/http/ws}/ws, SockJS on $front/sockjs (SIGHUP: a rolling restart)"
restart_asked=false
trap 'restart_asked=true' HUP
while true; do
    wait -n "${pids[@]}" || true
    if [ "$restart_asked" = true ]; then
        restart_asked=false
        rolling_restart
        continue
    fi
    break
done
echo "a process of the cluster ended; see $dir" >&2
