// The relay as @stomp/stompjs sees it, over Node's `ws` WebSocket.
// tests/it/stompjs.rs starts a relay and runs this file with RELAY_WS_URL set.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const url = process.env.RELAY_WS_URL;
assert.ok(url, 'RELAY_WS_URL must name the relay under test');
// A shared queue of this run only (RabbitMQ keeps queues between runs).
const workQueue = process.env.RELAY_WORK_QUEUE ?? '/queue/js.work';

const clients = [];
after(async () => {
  await Promise.all(clients.map((client) => client.deactivate()));
});

/** Connects a STOMP.js client; resolves with it and its CONNECTED frame. */
function connect(login, options = {}) {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new WebSocket(url, ['v10.stomp', 'v11.stomp', 'v12.stomp']),
      connectHeaders: login ? { login, passcode: 'secret' } : {},
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      ...options,
    });
    client.onConnect = (frame) => resolve({ client, connected: frame });
    client.onStompError = (frame) => reject(new Error(`ERROR: ${frame.headers.message}`));
    client.onWebSocketError = (event) => reject(new Error(`WebSocket error: ${event.message ?? event}`));
    clients.push(client);
    client.activate();
  });
}

/** Subscribes and waits for the relay's RECEIPT, so that the subscription
 * is in place (in cluster mode its queue is bound) before anyone sends. */
async function subscribed(client, destination, onMessage, headers = {}) {
  const receipt = `s-${Math.random().toString(36).slice(2)}`;
  const received = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
  const subscription = client.subscribe(destination, onMessage, { ...headers, receipt });
  await withTimeout(received, `receipt ${receipt}`);
  return subscription;
}

/** The next `count` messages of a subscription. */
async function collect(client, destination, count, headers = {}) {
  const messages = [];
  let done;
  const all = new Promise((resolve) => { done = resolve; });
  const subscription = await subscribed(client, destination, (message) => {
    messages.push(message);
    if (messages.length === count) done(messages);
  }, headers);
  return { subscription, all: withTimeout(all, `${count} message(s) on ${destination}`) };
}

function withTimeout(promise, what, ms = 5000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Sends and waits for the relay's RECEIPT, so the message has been routed. */
async function publish(client, destination, body, headers = {}) {
  const receipt = `r-${Math.random().toString(36).slice(2)}`;
  const received = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
  client.publish({ destination, body, headers: { ...headers, receipt } });
  await withTimeout(received, `receipt ${receipt}`);
}

test('connects with STOMP 1.2 over the v12.stomp subprotocol', async () => {
  const { client, connected } = await connect('alice');
  assert.equal(connected.headers.version, '1.2');
  assert.equal(connected.headers['user-name'], 'alice');
  assert.match(connected.headers.server, /^stomp-relay\//);
  assert.equal(client.webSocket.protocol, 'v12.stomp');
});

test('heart-beats run as the client asks, and none when it asks none', async () => {
  for (const [asked, agreed] of [[20000, '20000,20000'], [1000, '1000,1000'], [0, '0,0']]) {
    const { connected } = await connect(null, { heartbeatIncoming: asked, heartbeatOutgoing: asked });
    assert.equal(connected.headers['heart-beat'], agreed);
  }
});

/** A TCP relay in front of the relay under test whose `silence()` stops
 * every byte from the relay to the client, as a stalled server or a dead
 * link would, while the connection stays open. */
async function silencingProxy() {
  const target = new URL(url);
  const sockets = [];
  let silent = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.push(client, upstream);
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => { if (!silent) client.write(chunk); });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxied = new URL(url);
  proxied.port = String(server.address().port);
  return {
    url: proxied.toString(),
    silence: () => { silent = true; },
    close: () => { sockets.forEach((socket) => socket.destroy()); server.close(); },
  };
}

test('a client asking for 1 s heart-beats keeps a live relay and notices a silent one within seconds', async () => {
  const proxy = await silencingProxy();
  let lost;
  const heartbeatLost = new Promise((resolve) => { lost = resolve; });
  try {
    const client = new Client({
      webSocketFactory: () => new WebSocket(proxy.url, ['v12.stomp']),
      reconnectDelay: 0,
      heartbeatIncoming: 1000,
      heartbeatOutgoing: 1000,
      onHeartbeatLost: () => lost(Date.now()),
    });
    clients.push(client);
    const connected = await new Promise((resolve, reject) => {
      client.onConnect = resolve;
      client.onStompError = (frame) => reject(new Error(`ERROR: ${frame.headers.message}`));
      client.activate();
    });
    assert.equal(connected.headers['heart-beat'], '1000,1000');
    // The relay's heart-beats keep it alive past two intervals and more.
    const healthy = await Promise.race([
      heartbeatLost.then(() => false),
      new Promise((resolve) => setTimeout(() => resolve(true), 3500)),
    ]);
    assert.ok(healthy, 'STOMP.js gave up on a relay that was sending heart-beats');
    const silenced = Date.now();
    proxy.silence();
    const noticed = await withTimeout(heartbeatLost, 'the heart-beat loss', 6000);
    assert.ok(noticed - silenced < 5000, `noticed after ${noticed - silenced} ms`);
  } finally {
    proxy.close();
  }
});

test('a topic message reaches every subscriber, wildcards included', async () => {
  const { client: a } = await connect('a');
  const { client: b } = await connect('b');
  const exact = await collect(a, '/topic/js.news', 1);
  const wild = await collect(b, '/topic/js.*', 1);
  const { client: sender } = await connect('sender');
  await publish(sender, '/topic/js.news', 'headline', { 'content-type': 'text/plain' });
  const [[first], [second]] = await Promise.all([exact.all, wild.all]);
  for (const message of [first, second]) {
    assert.equal(message.body, 'headline');
    assert.equal(message.headers.destination, '/topic/js.news');
    assert.equal(message.headers['user-name'], 'sender');
  }
});

test('a private message reaches only its user', async () => {
  const { client: alice } = await connect('alice');
  const { client: eve } = await connect('eve');
  const inbox = await collect(alice, '/user/queue/private', 1);
  const eavesdropped = [];
  await subscribed(eve, '/topic/#', (message) => eavesdropped.push(message));
  await subscribed(eve, '/user/queue/private', (message) => eavesdropped.push(message));
  const { client: bob } = await connect('bob');
  await publish(bob, '/user/alice/queue/private', 'hi alice');
  const [message] = await inbox.all;
  assert.equal(message.body, 'hi alice');
  assert.equal(message.headers.destination, '/user/queue/private');
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(eavesdropped, []);
});

test('a nacked queue message comes back, an acked one does not', async () => {
  const { client: consumer } = await connect(null);
  const received = [];
  let settled;
  const done = new Promise((resolve) => { settled = resolve; });
  await subscribed(consumer, workQueue, (message) => {
    received.push(message);
    if (received.length === 1) message.nack();
    else { message.ack(); settled(); }
  }, { ack: 'client-individual' });
  await publish(consumer, workQueue, 'task');
  await withTimeout(done, 'the redelivery');
  assert.equal(received[0].headers.redelivered, 'false');
  assert.equal(received[1].body, 'task');
  assert.equal(received[1].headers.redelivered, 'true');
});

test('a transaction delivers on commit only', async () => {
  const { client } = await connect(null);
  const { all } = await collect(client, '/topic/js.tx', 1);
  const tx = client.begin();
  client.publish({ destination: '/topic/js.tx', body: 'aborted', headers: { transaction: tx.id } });
  tx.abort();
  const tx2 = client.begin();
  client.publish({ destination: '/topic/js.tx', body: 'committed', headers: { transaction: tx2.id } });
  tx2.commit();
  const [message] = await all;
  assert.equal(message.body, 'committed');
});

test('binary bodies arrive intact', async () => {
  const { client } = await connect(null);
  const { all } = await collect(client, '/topic/js.bin', 1);
  client.publish({ destination: '/topic/js.bin', binaryBody: new Uint8Array([0, 255, 1, 254]) });
  const [message] = await all;
  assert.deepEqual([...message.binaryBody], [0, 255, 1, 254]);
});

test('an invalid destination gets an ERROR and the connection closes', async () => {
  const { client } = await connect(null);
  const error = new Promise((resolve) => { client.onStompError = resolve; });
  const closed = new Promise((resolve) => { client.onWebSocketClose = resolve; });
  client.subscribe('/nowhere/at/all', () => {});
  const frame = await withTimeout(error, 'the ERROR frame');
  assert.equal(frame.headers.message, 'Unknown destination');
  assert.match(frame.body, /\/nowhere\/at\/all/);
  await withTimeout(closed, 'the close');
});

test('a page that gives back its last position when it reconnects misses nothing', async () => {
  const user = `replay-${Math.random().toString(36).slice(2)}`;
  const origin = url.replace(/^ws/, 'http').replace(/\/ws$/, '');
  const send = async (body) => {
    const answer = await fetch(`${origin}/api/v1/users/${user}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ destination: '/user/queue/feed', body }),
    });
    assert.equal(answer.status, 200, await answer.text());
  };
  // The pattern docs/clients.md gives: the last position of the
  // subscription, given back by onConnect, which runs after every reconnect.
  const bodies = [];
  let lastPosition = null;
  let subscribedAgain;
  let arrived;
  let wanted = 0;
  const client = new Client({
    webSocketFactory: () => new WebSocket(url, ['v12.stomp']),
    connectHeaders: { login: user, passcode: 'secret' },
    reconnectDelay: 200,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
  });
  clients.push(client);
  client.onConnect = () => {
    const receipt = `feed-${Math.random().toString(36).slice(2)}`;
    client.watchForReceipt(receipt, () => subscribedAgain());
    const headers = lastPosition ? { 'x-stream-offset': lastPosition, receipt } : { receipt };
    client.subscribe('/user/queue/feed', (message) => {
      lastPosition = message.headers['x-stream-offset'] ?? lastPosition;
      bodies.push(message.body);
      if (bodies.length === wanted) arrived();
    }, headers);
  };
  const subscribedOnce = () => new Promise((resolve) => { subscribedAgain = resolve; });
  const received = (count) => {
    wanted = count;
    return new Promise((resolve) => { arrived = resolve; });
  };
  let subscribing = subscribedOnce();
  client.activate();
  await withTimeout(subscribing, 'the first subscription');
  let twoArrived = received(2);
  await send('m1');
  await send('m2');
  await withTimeout(twoArrived, 'the first two messages');
  // The connection breaks (no DISCONNECT); messages go on meanwhile.
  subscribing = subscribedOnce();
  client.forceDisconnect();
  for (const body of ['m3', 'm4', 'm5']) await send(body);
  await withTimeout(subscribing, 'the subscription after the reconnect');
  const allArrived = received(6);
  await send('m6');
  await withTimeout(allArrived, 'what was missed, then m6');
  assert.deepEqual(bodies, ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']);
});
