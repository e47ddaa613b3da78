// A rolling deploy as STOMP.js pages live through it: 100 clients behind
// nginx, each sent a message a second through the HTTP API, while every node
// of docker/run-local-cluster.sh is restarted in turn (SIGHUP to the
// script). Each page keeps the last position of its subscription and gives
// it back when STOMP.js reconnects (docs/clients.md): each gets every
// message once, in order. tests/it/local_cluster.rs starts the cluster and
// runs this file with RELAY_FRONT, RELAY_CLUSTER_PID and RELAY_USER_PREFIX.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const front = process.env.RELAY_FRONT;
assert.ok(front, 'RELAY_FRONT must name nginx, as http://host:port');
const clusterPid = Number(process.env.RELAY_CLUSTER_PID);
assert.ok(clusterPid > 0, 'RELAY_CLUSTER_PID must name the run-local-cluster.sh process');
const prefix = process.env.RELAY_USER_PREFIX ?? 'rolling';
const CLIENTS = 100;
const TICKS = '/user/queue/ticks';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A page of `user`: subscribed from its last position after every connect. */
function page(user) {
  const state = { user, bodies: [], connects: 0, lastPosition: null, client: null };
  let subscribedOnce;
  state.subscribed = new Promise((resolve) => { subscribedOnce = resolve; });
  const client = new Client({
    webSocketFactory: () => new WebSocket(`${front.replace(/^http/, 'ws')}/ws`, ['v12.stomp']),
    connectHeaders: { login: user },
    reconnectDelay: 250,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
  });
  client.onConnect = () => {
    state.connects += 1;
    const receipt = `ticks-${state.connects}`;
    client.watchForReceipt(receipt, () => subscribedOnce());
    const headers = state.lastPosition
      ? { 'x-stream-offset': state.lastPosition, receipt }
      : { receipt };
    client.subscribe(TICKS, (message) => {
      state.lastPosition = message.headers['x-stream-offset'] ?? state.lastPosition;
      state.bodies.push(Number(message.body));
    }, headers);
  };
  // "server shutting down": STOMP.js connects again after reconnectDelay.
  client.onStompError = () => {};
  client.activate();
  state.client = client;
  return state;
}

/** POSTs tick `n` to `user`, again while no node takes it (one stopping). */
async function send(user, n) {
  let last = null;
  for (let attempt = 0; attempt < 100; attempt += 1) {
    try {
      const answer = await fetch(`${front}/api/v1/users/${user}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ destination: TICKS, body: String(n) }),
      });
      if (answer.status === 200) return;
      last = `${answer.status} ${await answer.text()}`;
      // 502: nginx found the node gone before it took the request.
      assert.ok(answer.status >= 500, `${user} tick ${n}: ${last}`);
    } catch (error) {
      // nginx itself closed the connection: nothing was taken.
      if (error.code === 'ERR_ASSERTION') throw error;
      last = String(error.cause ?? error);
    }
    await sleep(50);
  }
  assert.fail(`${user} tick ${n} was never taken: ${last}`);
}

/** The nodes' start times, as the API lists them. */
async function nodeStarts() {
  try {
    const answer = await fetch(`${front}/api/v1/nodes`);
    if (answer.status !== 200) return [];
    return (await answer.json()).nodes.map((node) => node.started_at);
  } catch {
    return [];
  }
}

test('a rolling restart of every node loses no message and repeats none', { timeout: 120_000 }, async () => {
  const pages = Array.from({ length: CLIENTS }, (_, i) => page(`${prefix}-${i}`));
  try {
    await Promise.all(pages.map((state) => state.subscribed));
    const before = Date.now();
    let tick = 0;
    const round = () => Promise.all(pages.map((state) => send(state.user, tick))).then(() => { tick += 1; });
    for (let i = 0; i < 3; i += 1) {
      await round();
      await sleep(1000);
    }
    process.kill(clusterPid, 'SIGHUP');
    // Ticks go on until every node has started again, then a few more.
    const deadline = Date.now() + 90_000;
    for (;;) {
      await round();
      const starts = await nodeStarts();
      if (starts.length === 3 && starts.every((started) => started > before)) break;
      assert.ok(Date.now() < deadline, `the nodes did not all restart: ${starts}`);
      await sleep(1000);
    }
    for (let i = 0; i < 3; i += 1) {
      await sleep(1000);
      await round();
    }
    await sleep(2000);
    const expected = Array.from({ length: tick }, (_, n) => n);
    // Every node restarted: every page was told to go, and came back.
    const stayed = pages.filter((state) => state.connects < 2).map((state) => state.user);
    assert.deepEqual(stayed, [], 'pages that never reconnected');
    for (const state of pages) {
      assert.deepEqual(state.bodies, expected, `${state.user} (${state.connects} connects)`);
    }
  } finally {
    await Promise.all(pages.map((state) => state.client.deactivate()));
  }
});
