#!/usr/bin/env bash
# node-death.sh: what one relay node's sessions cost RabbitMQ while they live
# (bindings) and when the node dies without a goodbye (kill -9).
#
# Usage:   stomp-bench/node-death.sh <relay-binary> [sessions]      (default 5000)
#   e.g.   stomp-bench/node-death.sh target/release/stomp-relay 5000
# Run it as a user that may run `rabbitmqctl` (root), on the machine of the
# RabbitMQ broker (it reads the broker's beam.smp from /proc).
#
# What it does:
#   1. measures the broker's (beam.smp) idle CPU for WINDOW seconds: the baseline;
#   2. starts the relay as one cluster node (unique node id and Redis prefix);
#   3. opens <sessions> STOMP-over-WebSocket sessions (Node.js, `ws`), each
#      logged in as its own user and subscribed to /user/queue/inbox with a
#      receipt, and holds them;
#   4. counts RabbitMQ's bindings (`rabbitmqctl list_bindings`) before the
#      relay started and with the sessions held, and those of the node queue;
#   5. kill -9 of the relay, then samples beam.smp's CPU (utime+stime) and
#      RSS every 100 ms for WINDOW seconds (longer if the node queue is not
#      gone by then), probing over AMQP (passive queue.declare) when the node
#      queue stomp.node.<id> disappears;
#   6. cleans up: the client, the Redis keys of the node's prefix, and any
#      queue or exchange named stomp.* that the relay declared in this run
#      and that did not exist before (so RabbitMQ is left as it was found;
#      skipped, with a note, while another relay node's stomp.node.* queue
#      is on the broker, since those objects may then be that node's).
# The open-files limit is raised to 65536, or to the hard limit if lower.
# Another client of the broker during a run (e.g. integration tests) skews
# the CPU figures: `other_amqp_connections` says whether there was one.
# Results are printed as `name: value` lines at the end.
#
# Environment (all optional): PORT (18081), CONCURRENCY (50 sessions set up at
# once), WINDOW (10 s, the baseline and the post-kill window), AMQP_HOST
# (127.0.0.1), AMQP_PORT (5672), AMQP_USER/AMQP_PASS (guest), REDIS_URL
# (redis://127.0.0.1:6379), NODE_MODULES (the `ws` package's node_modules;
# default tests/js/node_modules of this repository), RUST_LOG (warn),
# SAMPLES_OUT (a file to keep the post-kill samples in: "ms-since-kill
# beam-cpu-ticks beam-rss-kB" per line).
set -euo pipefail

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
RELAY_BIN=$1
SESSIONS=${2:-5000}
[[ -x $RELAY_BIN ]] || { echo "not an executable: $RELAY_BIN" >&2; exit 2; }
[[ $SESSIONS =~ ^[1-9][0-9]*$ ]] || usage

PORT=${PORT:-18081}
CONCURRENCY=${CONCURRENCY:-50}
WINDOW=${WINDOW:-10}
AMQP_HOST=${AMQP_HOST:-127.0.0.1}
AMQP_PORT=${AMQP_PORT:-5672}
AMQP_USER=${AMQP_USER:-guest}
AMQP_PASS=${AMQP_PASS:-guest}
AMQP_URL="amqp://$AMQP_USER:$AMQP_PASS@$AMQP_HOST:$AMQP_PORT/%2f"
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODE_MODULES=${NODE_MODULES:-$HERE/../tests/js/node_modules}
export RUST_LOG=${RUST_LOG:-warn}

RUN=$(date +%s)-$$
NODE_ID=bench-nd-$RUN
REDIS_PREFIX=bench-nd:$RUN:
NODE_QUEUE=stomp.node.$NODE_ID
WORK=$(mktemp -d /tmp/node-death.XXXXXX)
RELAY_PID=
CLIENT_PID=
CLK_TCK=$(getconf CLK_TCK)

# Both the relay and the client hold a socket per session.
if ! ulimit -n 65536 2>/dev/null; then
  ulimit -n "$(ulimit -Hn)"
fi
(( $(ulimit -n) > SESSIONS + 1000 )) || {
  echo "open files limit $(ulimit -n) is too low for $SESSIONS sessions" >&2; exit 1; }

log() { printf '[node-death %(%T)T] %s\n' -1 "$*" >&2; }

# ---------------------------------------------------------------- helpers (Node.js)

# A minimal AMQP 0-9-1 client: enough to probe whether a queue or exchange
# exists (passive declare), delete queues and exchanges, and watch the broker
# around the kill.
cat > "$WORK/amqp.js" <<'EOF'
'use strict';
const net = require('net');
const fs = require('fs');

class Amqp {
  constructor() { this.buf = Buffer.alloc(0); this.inbox = new Map(); this.waiters = new Map(); this.open = new Set(); }
  connect(host, port, user, pass, vhost) {
    return new Promise((resolve, reject) => {
      this.sock = net.connect(port, host, () => this.sock.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')));
      this.sock.setNoDelay(true);
      this.sock.on('data', (d) => this.onData(d));
      this.sock.on('error', (e) => this.fail(e));
      this.sock.on('close', () => this.fail(new Error('AMQP connection closed')));
      (async () => {
        await this.next(0, 10, 10); // connection.start
        this.method(0, 10, 11, Buffer.concat([u32(0), shortstr('PLAIN'), longstr(`\0${user}\0${pass}`), shortstr('en_US')]));
        const tune = (await this.next(0, 10, 30)).args;
        const channelMax = tune.readUInt16BE(0), frameMax = tune.readUInt32BE(2);
        this.method(0, 10, 31, Buffer.concat([u16(channelMax), u32(frameMax), u16(0)]));
        this.method(0, 10, 40, Buffer.concat([shortstr(vhost), shortstr(''), Buffer.from([0])]));
        await this.next(0, 10, 41);
      })().then(resolve, reject);
    });
  }
  fail(e) {
    this.dead = this.dead || e;
    for (const list of this.waiters.values()) for (const w of list) w.reject(e);
    this.waiters.clear();
  }
  onData(d) {
    this.buf = Buffer.concat([this.buf, d]);
    while (this.buf.length >= 8) {
      const type = this.buf[0], ch = this.buf.readUInt16BE(1), size = this.buf.readUInt32BE(3);
      if (this.buf.length < 8 + size) break;
      const payload = this.buf.subarray(7, 7 + size);
      if (this.buf[7 + size] !== 0xce) return this.fail(new Error('bad AMQP frame end'));
      this.buf = this.buf.subarray(8 + size);
      if (type !== 1) continue; // heartbeats, content: not used
      const m = { cls: payload.readUInt16BE(0), mth: payload.readUInt16BE(2), args: Buffer.from(payload.subarray(4)) };
      if (m.cls === 10 && m.mth === 50) { // connection.close from the broker
        this.fail(new Error(`connection closed by the broker: ${m.args.readUInt16BE(0)} ${readShortstr(m.args, 2)}`));
        continue;
      }
      const list = this.waiters.get(ch);
      if (list && list.length) list.shift().resolve(m);
      else { if (!this.inbox.has(ch)) this.inbox.set(ch, []); this.inbox.get(ch).push(m); }
    }
  }
  // The next method on channel `ch`; with cls/mth, it must be that one.
  async next(ch, cls, mth) {
    if (this.dead) throw this.dead;
    const queued = this.inbox.get(ch);
    const m = queued && queued.length ? queued.shift() : await new Promise((resolve, reject) => {
      if (!this.waiters.has(ch)) this.waiters.set(ch, []);
      this.waiters.get(ch).push({ resolve, reject });
    });
    if (cls !== undefined && (m.cls !== cls || m.mth !== mth)) throw new Error(`expected ${cls}.${mth}, got ${m.cls}.${m.mth}`);
    return m;
  }
  method(ch, cls, mth, args) {
    const payload = Buffer.concat([u16(cls), u16(mth), args]);
    this.sock.write(Buffer.concat([Buffer.from([1]), u16(ch), u32(payload.length), payload, Buffer.from([0xce])]));
  }
  async channel(ch) {
    if (this.open.has(ch)) return;
    this.method(ch, 20, 10, shortstr(''));
    await this.next(ch, 20, 11);
    this.open.add(ch);
  }
  // Sends a method on channel 1 and returns [200, reply] or, when the broker
  // closes the channel instead, [its reply code, its text].
  async call(cls, mth, args) {
    await this.channel(1);
    this.method(1, cls, mth, args);
    const m = await this.next(1);
    if (m.cls === 20 && m.mth === 40) {
      this.open.delete(1);
      this.method(1, 20, 41, Buffer.alloc(0));
      return [m.args.readUInt16BE(0), readShortstr(m.args, 2)];
    }
    return [200, m];
  }
  // 404: no such queue; 405: exclusive to another connection (it exists); 200: it exists.
  async queueCode(name) {
    return (await this.call(50, 10, Buffer.concat([u16(0), shortstr(name), Buffer.from([1]), u32(0)])))[0];
  }
  async exchangeCode(name) {
    return (await this.call(40, 10, Buffer.concat([u16(0), shortstr(name), shortstr('topic'), Buffer.from([1]), u32(0)])))[0];
  }
  // Deletes a queue that has no consumer and no message. (Quorum queues
  // refuse queue.delete's if-unused and if-empty: checked by hand instead.)
  async deleteQueue(name) {
    const [code, ok] = await this.call(50, 10, Buffer.concat([u16(0), shortstr(name), Buffer.from([1]), u32(0)]));
    if (code !== 200) return [code, ok];
    const at = 1 + ok.args[0], messages = ok.args.readUInt32BE(at), consumers = ok.args.readUInt32BE(at + 4);
    if (messages || consumers) return [406, `kept: ${messages} messages, ${consumers} consumers`];
    return this.call(50, 40, Buffer.concat([u16(0), shortstr(name), Buffer.from([0])]));
  }
  async deleteExchange(name, ifUnused) {
    return this.call(40, 20, Buffer.concat([u16(0), shortstr(name), Buffer.from([ifUnused ? 1 : 0])]));
  }
  async close() {
    try { this.method(0, 10, 50, Buffer.concat([u16(200), shortstr('bye'), u16(0), u16(0)])); await this.next(0, 10, 51); } catch (_) {}
    this.sock.destroy();
  }
}
function u16(n) { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; }
function u32(n) { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b; }
function shortstr(s) { const b = Buffer.from(s, 'utf8'); return Buffer.concat([Buffer.from([b.length]), b]); }
function longstr(s) { const b = Buffer.from(s, 'utf8'); return Buffer.concat([u32(b.length), b]); }
function readShortstr(b, at) { return b.subarray(at + 1, at + 1 + b[at]).toString('utf8'); }

// CPU ticks (utime + stime) and RSS (kB) of a process.
function sample(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const status = fs.readFileSync(`/proc/${pid}/status`, 'latin1');
  const rss = Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
  return { ticks: Number(f[11]) + Number(f[12]), rss, t: now() };
}
const start = process.hrtime.bigint();
function now() { return Number(process.hrtime.bigint() - start) / 1e6; } // ms
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function watch(a, o) {
  const beam = Number(o.beam), relay = Number(o.relay), queue = o.queue;
  const windowMs = Number(o.window) * 1000, maxMs = Number(o.max) * 1000, every = Number(o.interval);
  const busyTicks = Number(o.busyTicks);
  const code = await a.queueCode(queue);
  if (code === 404) throw new Error(`${queue} does not exist before the kill`);
  // A short look at the broker with the sessions held, just before the kill.
  const pre0 = sample(beam); await sleep(2000); const pre1 = sample(beam);
  const before = sample(beam);
  process.kill(relay, 'SIGKILL');
  const killedAt = now();
  let goneMs = null, probes = 0;
  const probing = (async () => {
    while (goneMs === null && now() - killedAt < maxMs) {
      const c = await a.queueCode(queue); probes++;
      if (c === 404) { goneMs = now() - killedAt; break; }
      await sleep(20);
    }
  })();
  const samples = [before];
  let atWindow = null, busyUntil = 0;
  for (;;) {
    const due = killedAt + samples.length * every;
    await sleep(Math.max(0, due - now()));
    const s = sample(beam); const prev = samples[samples.length - 1];
    samples.push(s);
    const elapsed = s.t - killedAt;
    if (s.ticks - prev.ticks >= busyTicks) busyUntil = elapsed;
    if (atWindow === null && elapsed >= windowMs - 1) atWindow = s;
    const quiet = elapsed - busyUntil >= 500;
    if (atWindow && ((goneMs !== null && quiet) || elapsed >= maxMs)) break;
  }
  await probing;
  const last = samples[samples.length - 1];
  let peak = before;
  for (const s of samples) if (s.rss > peak.rss) peak = s;
  const out = {
    prekill_ticks: pre1.ticks - pre0.ticks, prekill_ms: (pre1.t - pre0.t).toFixed(0),
    rss_before_kb: before.rss,
    window_ms: (atWindow.t - killedAt).toFixed(0), window_ticks: atWindow.ticks - before.ticks,
    total_ms: (last.t - killedAt).toFixed(0), total_ticks: last.ticks - before.ticks,
    rss_peak_kb: peak.rss, rss_peak_at_ms: (peak.t - killedAt).toFixed(0),
    rss_window_end_kb: atWindow.rss, rss_end_kb: last.rss,
    queue_gone_ms: goneMs === null ? 'never' : goneMs.toFixed(0), probes,
    busy_until_ms: busyUntil.toFixed(0), samples: samples.length - 1,
  };
  for (const [k, v] of Object.entries(out)) console.log(`${k}=${v}`);
  fs.writeFileSync(o.samplesFile, samples.map((s) => `${(s.t - killedAt).toFixed(0)} ${s.ticks} ${s.rss}`).join('\n') + '\n');
}

async function main() {
  const [mode, ...rest] = process.argv.slice(2);
  const o = {};
  for (let i = 0; i < rest.length; i += 2) o[rest[i].replace(/^--/, '')] = rest[i + 1];
  const a = new Amqp();
  await a.connect(o.host, Number(o.port), o.user, o.pass, '/');
  try {
    if (mode === 'watch') await watch(a, o);
    else if (mode === 'queue-exists') console.log((await a.queueCode(o.name)) === 404 ? 'no' : 'yes');
    else if (mode === 'exchange-exists') console.log((await a.exchangeCode(o.name)) === 404 ? 'no' : 'yes');
    else if (mode === 'delete-queue') { const [c, r] = await a.deleteQueue(o.name); console.log(c === 200 ? 'deleted' : `${c} ${r}`); }
    else if (mode === 'delete-exchange') { const [c, r] = await a.deleteExchange(o.name, o.ifUnused === 'yes'); console.log(c === 200 ? 'deleted' : `${c} ${r}`); }
    else throw new Error(`unknown mode ${mode}`);
  } finally { await a.close(); }
}
main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
EOF

# The sessions: each logs in as its own user, subscribes to its user
# destination with a receipt, and is held until the process is killed.
cat > "$WORK/clients.js" <<'EOF'
'use strict';
const WebSocket = require('ws');
const [url, total, concurrency, run] = process.argv.slice(2);
const n = Number(total);
const held = [];
let next = 0, lost = 0;
const t0 = Date.now();
function open(i) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, ['v12.stomp'], { perMessageDeflate: false });
    let stage = 0, buf = '';
    const fail = (e) => { if (stage < 2) { stage = 3; clearTimeout(timer); ws.terminate(); reject(e); } };
    const timer = setTimeout(() => fail(new Error(`session ${i}: no receipt in 60 s`)), 60000);
    ws.on('open', () => ws.send(`CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nlogin:u${i}-${run}\n\n\0`));
    ws.on('message', (data) => {
      buf += data.toString();
      let z;
      while ((z = buf.indexOf('\0')) >= 0) {
        const frame = buf.slice(0, z).replace(/^[\r\n]+/, ''); buf = buf.slice(z + 1);
        const command = frame.split('\n', 1)[0].trim();
        if (command === 'CONNECTED' && stage === 0) {
          stage = 1;
          ws.send(`SUBSCRIBE\nid:0\ndestination:/user/queue/inbox\nack:auto\nreceipt:r${i}\n\n\0`);
        } else if (command === 'RECEIPT' && stage === 1) {
          stage = 2; clearTimeout(timer); resolve(ws);
        } else if (command === 'ERROR') {
          fail(new Error(`session ${i}: ${frame.slice(0, 300).replace(/\n/g, ' | ')}`));
        }
      }
    });
    ws.on('error', (e) => fail(new Error(`session ${i}: ${e.message}`)));
    ws.on('close', () => { if (stage === 2) lost++; else fail(new Error(`session ${i}: closed during set-up`)); });
  });
}
async function worker() {
  while (next < n) {
    const i = next++;
    held.push(await open(i));
  }
}
Promise.all(Array.from({ length: Math.min(Number(concurrency), n) }, worker)).then(
  () => console.log(`READY ${held.length} ${((Date.now() - t0) / 1000).toFixed(1)}`),
  (e) => { console.error(`FAILED ${e.message}`); process.exit(1); },
);
process.on('SIGTERM', () => { console.error(`client: ${lost} of ${held.length} sessions were closed by the server`); process.exit(0); });
EOF

amqp() { NODE_PATH=$NODE_MODULES node "$WORK/amqp.js" "$1" --host "$AMQP_HOST" --port "$AMQP_PORT" --user "$AMQP_USER" --pass "$AMQP_PASS" "${@:2}"; }

# The broker's Erlang VM (not the short-lived VMs of rabbitmqctl).
broker_pid() {
  local pid
  for pid in $(pgrep -f beam.smp); do
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- '-s rabbit boot'; then echo "$pid"; return; fi
  done
  echo "no RabbitMQ beam.smp process found" >&2; return 1
}
cpu_ticks() { local stat f; read -r stat < "/proc/$1/stat"; read -ra f <<< "${stat##*) }"; echo $(( f[11] + f[12] )); }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
bindings() { rabbitmqctl list_bindings -q --no-table-headers | wc -l; }
stomp_names() { rabbitmqctl "list_$1" -q --no-table-headers name | awk '/^stomp\./ && !/^stomp\.(node|session)\./' | sort; }

# ------------------------------------------------------------------------ cleanup

cleanup() {
  local rc=$?
  set +e
  if [[ -n $CLIENT_PID ]] && kill -0 "$CLIENT_PID" 2>/dev/null; then kill "$CLIENT_PID"; wait "$CLIENT_PID" 2>/dev/null; fi
  if [[ -n $RELAY_PID ]] && kill -0 "$RELAY_PID" 2>/dev/null; then kill -9 "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null; fi
  redis-cli -u "$REDIS_URL" --scan --pattern "${REDIS_PREFIX}*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" del > /dev/null
  # The node queue goes with the node's connection; wait for it.
  for _ in $(seq 100); do [[ $(amqp queue-exists --name "$NODE_QUEUE" 2>/dev/null) == no ]] && break; sleep 0.2; done
  # What the relay declared durably in this run (stomp.dispatch, its
  # exchanges), if it was not there before: queues first (only without
  # consumers or messages), then exchanges (only those no longer the source
  # of a binding). Nothing at all while another relay node uses the broker:
  # those objects may be its own.
  if [[ -f $WORK/queues.before ]]; then
    local name others
    others=$(rabbitmqctl list_queues -q --no-table-headers name | grep '^stomp\.node\.' | grep -vc "^$NODE_QUEUE\$" || true)
    if (( others > 0 )); then
      log "another relay node uses RabbitMQ ($others stomp.node.* queues): leaving stomp.* queues and exchanges as they are"
    else
      for name in $(comm -13 "$WORK/queues.before" <(stomp_names queues)); do
        log "deleting queue $name (declared by this run): $(amqp delete-queue --name "$name")"
      done
      for _ in 1 2; do   # twice: an exchange may be the source of another's binding
        for name in $(comm -13 "$WORK/exchanges.before" <(stomp_names exchanges)); do
          log "deleting exchange $name (declared by this run): $(amqp delete-exchange --name "$name" --ifUnused yes)"
        done
      done
    fi
  fi
  if (( rc != 0 )); then
    log "failed; relay log tail:"; tail -n 20 "$WORK/relay.log" >&2 2>/dev/null
    log "client stderr:"; tail -n 20 "$WORK/client.err" >&2 2>/dev/null
  fi
  local left
  left=$(rabbitmqctl list_queues -q --no-table-headers name | grep -c "^$NODE_QUEUE\$" || true)
  (( left == 0 )) || log "WARNING: $NODE_QUEUE is still in RabbitMQ"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------ the run

BEAM=$(broker_pid)
log "run $RUN: relay $RELAY_BIN, $SESSIONS sessions, broker beam.smp pid $BEAM, open files $(ulimit -n)"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then echo "port $PORT is in use" >&2; exit 1; fi
stomp_names queues > "$WORK/queues.before"
stomp_names exchanges > "$WORK/exchanges.before"
BINDINGS_BEFORE=$(bindings)
CONNECTIONS_BEFORE=$(rabbitmqctl list_connections -q --no-table-headers name | grep -c . || true)
(( CONNECTIONS_BEFORE == 0 )) || log "WARNING: RabbitMQ has $CONNECTIONS_BEFORE other connections: the broker is not idle, figures will be noisy"

log "idle baseline: ${WINDOW} s of beam.smp CPU before the relay starts"
sleep 2   # let the rabbitmqctl calls above fade
t0=$(date +%s.%N); c0=$(cpu_ticks "$BEAM"); RSS_IDLE=$(rss_kb "$BEAM")
sleep "$WINDOW"
t1=$(date +%s.%N); c1=$(cpu_ticks "$BEAM")
BASE_TICKS=$(( c1 - c0 ))
BASE_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')

log "starting the relay as node $NODE_ID on 127.0.0.1:$PORT"
"$RELAY_BIN" --listen "127.0.0.1:$PORT" --amqp-url "$AMQP_URL" --redis-url "$REDIS_URL" \
  --node-id "$NODE_ID" --redis-prefix "$REDIS_PREFIX" > "$WORK/relay.log" 2>&1 &
RELAY_PID=$!
for i in $(seq 300); do
  kill -0 "$RELAY_PID" 2>/dev/null || { echo "the relay exited" >&2; exit 1; }
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    [[ $(amqp queue-exists --name "$NODE_QUEUE") == yes ]] && break
  fi
  (( i < 300 )) || { echo "the relay did not listen in 30 s" >&2; exit 1; }
  sleep 0.1
done

log "opening $SESSIONS sessions, $CONCURRENCY at a time"
NODE_PATH=$NODE_MODULES node "$WORK/clients.js" "ws://127.0.0.1:$PORT/ws" "$SESSIONS" "$CONCURRENCY" "$RUN" \
  > "$WORK/client.out" 2> "$WORK/client.err" &
CLIENT_PID=$!
for i in $(seq 3000); do
  grep -q '^READY' "$WORK/client.out" && break
  kill -0 "$CLIENT_PID" 2>/dev/null || { echo "the client failed: $(tail -n 3 "$WORK/client.err")" >&2; exit 1; }
  (( i < 3000 )) || { echo "the sessions were not set up in 300 s" >&2; exit 1; }
  sleep 0.1
done
read -r _ OPENED SETUP_S < "$WORK/client.out"

BINDINGS_WITH=$(bindings)
NODE_QUEUE_BINDINGS=$(rabbitmqctl list_bindings -q --no-table-headers destination_name | grep -c "^$NODE_QUEUE\$" || true)
log "bindings: $BINDINGS_BEFORE before, $BINDINGS_WITH with the sessions; settling 3 s before the kill"
sleep 3

log "kill -9 of the relay (pid $RELAY_PID); watching beam.smp"
# (The shell's own stderr is muted meanwhile: it would report "Killed".)
exec 3>&2 2>/dev/null
amqp watch --beam "$BEAM" --relay "$RELAY_PID" --queue "$NODE_QUEUE" --window "$WINDOW" --max 120 \
  --interval 100 --busyTicks 3 --samplesFile "$WORK/samples" > "$WORK/watch.out" 2> "$WORK/watch.err" \
  || { exec 2>&3 3>&-; cat "$WORK/watch.err" >&2; exit 1; }
wait "$RELAY_PID" || true
exec 2>&3 3>&-
RELAY_PID=
CONNECTIONS_AFTER=$(rabbitmqctl list_connections -q --no-table-headers name | grep -c . || true)
[[ -z ${SAMPLES_OUT:-} ]] || cp "$WORK/samples" "$SAMPLES_OUT"
declare -A W
while IFS='=' read -r k v; do W[$k]=$v; done < "$WORK/watch.out"

report() {
  awk -v tck="$CLK_TCK" -v bt="$BASE_TICKS" -v bs="$BASE_SECONDS" \
      -v wt="${W[window_ticks]}" -v wms="${W[window_ms]}" -v tt="${W[total_ticks]}" -v tms="${W[total_ms]}" \
      -v pt="${W[prekill_ticks]}" -v pms="${W[prekill_ms]}" -v win="$WINDOW" \
      -v rb="${W[rss_before_kb]}" -v rp="${W[rss_peak_kb]}" -v rpa="${W[rss_peak_at_ms]}" \
      -v rw="${W[rss_window_end_kb]}" -v ri="$RSS_IDLE" -v gone="${W[queue_gone_ms]}" -v busy="${W[busy_until_ms]}" '
    BEGIN {
      rate = bt / tck / bs                       # baseline CPU s per s
      raw = wt / tck; base = rate * wms / 1000
      printf "baseline_cpu_s: %.2f (beam.smp, %.1f s idle before the relay started)\n", bt / tck, bs
      printf "prekill_cpu_s: %.2f (per %d s, sessions held, just before the kill)\n", pt / tck / (pms / 1000) * win, win
      printf "after_kill_cpu_s_raw: %.2f (beam.smp, %.1f s from the kill)\n", raw, wms / 1000
      printf "after_kill_cpu_s_minus_baseline: %.2f\n", raw - base
      if (tms - wms > 150)
        printf "after_kill_cpu_s_minus_baseline_until_quiet: %.2f (%.1f s: the queue outlived the window)\n", tt / tck - rate * tms / 1000, tms / 1000
      printf "rss_idle_mib: %.1f\n", ri / 1024
      printf "rss_before_kill_mib: %.1f\n", rb / 1024
      printf "rss_peak_mib: %.1f (at %.1f s)\n", rp / 1024, rpa / 1000
      printf "rss_peak_increase_mib: %.1f\n", (rp - rb) / 1024
      printf "rss_after_mib: %.1f (at %.1f s)\n", rw / 1024, wms / 1000
      if (gone == "never") printf "node_queue_gone_after_s: never (within the watch)\n"
      else printf "node_queue_gone_after_s: %.2f\n", gone / 1000
      printf "broker_busy_until_s: %.1f (last 100 ms with >= 30 ms of beam.smp CPU)\n", busy / 1000
    }'
}

echo "relay: $RELAY_BIN"
echo "node_id: $NODE_ID"
echo "sessions: $OPENED (each subscribed to /user/queue/inbox, receipts received; set-up ${SETUP_S} s)"
echo "other_amqp_connections: $CONNECTIONS_BEFORE at start, $CONNECTIONS_AFTER after the watch (0 and 0: the broker was ours alone)"
echo "bindings_before: $BINDINGS_BEFORE"
echo "bindings_with_sessions: $BINDINGS_WITH"
echo "bindings_added: $(( BINDINGS_WITH - BINDINGS_BEFORE ))"
echo "node_queue_bindings: $NODE_QUEUE_BINDINGS"
report
