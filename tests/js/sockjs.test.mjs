// STOMP over SockJS as browsers speak it: @stomp/stompjs over sockjs-client,
// once per SockJS transport. tests/it/sockjs.rs starts a relay and runs this
// file with RELAY_SOCKJS_URL set.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Client } from '@stomp/stompjs';
import SockJS from 'sockjs-client';

const url = process.env.RELAY_SOCKJS_URL;
assert.ok(url, 'RELAY_SOCKJS_URL must name the relay under test');

const clients = [];
after(async () => {
  await Promise.all(clients.map((client) => client.deactivate()));
});

function withTimeout(promise, what, ms = 10000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Connects STOMP.js through SockJS restricted to one transport. */
function connect(login, transport) {
  return withTimeout(new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new SockJS(url, null, { transports: [transport] }),
      connectHeaders: { login, passcode: 'secret' },
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
    });
    client.onConnect = (frame) => resolve({ client, connected: frame });
    client.onStompError = (frame) => reject(new Error(`ERROR: ${frame.headers.message}`));
    client.onWebSocketClose = (event) => reject(new Error(`closed: ${event.code} ${event.reason}`));
    clients.push(client);
    client.activate();
  }), `a ${transport} connection`);
}

/** Subscribes, waiting for the RECEIPT; resolves the next message. */
async function nextMessage(client, destination) {
  const receipt = `r-${Math.random().toString(36).slice(2)}`;
  const subscribed = new Promise((resolve) => client.watchForReceipt(receipt, resolve));
  const message = new Promise((resolve) => client.subscribe(destination, resolve, { receipt }));
  await withTimeout(subscribed, `the receipt of ${destination}`);
  return withTimeout(message, `a message on ${destination}`);
}

const transports = ['websocket', 'xhr-streaming', 'xhr-polling', 'eventsource'];

for (const transport of transports) {
  test(`STOMP over SockJS ${transport}: user and topic messages both ways`, async () => {
    const user = `sockjs-${transport}-${Date.now()}`;
    const { client, connected } = await connect(user, transport);
    assert.equal(connected.headers['user-name'], user);

    const mine = nextMessage(client, '/user/queue/inbox');
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.publish({ destination: `/user/${user}/queue/inbox`, body: `hello over ${transport} \u00e9` });
    const message = await mine;
    assert.equal(message.body, `hello over ${transport} \u00e9`);
    assert.equal(message.headers['user-name'], user);

    // A topic message from a client on a plain WebSocket-less transport
    // reaches this one, and the other way round.
    const other = await connect(`${user}-peer`, transports[(transports.indexOf(transport) + 1) % transports.length]);
    const topic = `/topic/sockjs.${transport}.${Date.now()}`;
    const toPeer = nextMessage(other.client, topic);
    const toMe = nextMessage(client, topic);
    await new Promise((resolve) => setTimeout(resolve, 50));
    client.publish({ destination: topic, body: 'for both' });
    assert.equal((await toPeer).body, 'for both');
    assert.equal((await toMe).body, 'for both');
    await client.deactivate();
    await other.client.deactivate();
  });
}

/** The user's live sessions, as the relay's presence API sees them. */
async function presence(user) {
  const api = new URL(`/api/v1/users/${encodeURIComponent(user)}/sessions`, url);
  const response = await fetch(api);
  assert.equal(response.status, 200);
  return (await response.json()).sessions.length;
}

for (const transport of ['xhr-streaming', 'xhr-polling']) {
  test(`a ${transport} client killed with SIGKILL leaves presence within the disconnect delay`, async () => {
    const user = `vanishing-${transport}-${Date.now()}`;
    const child = spawn(process.execPath, ['sockjs-vanish.mjs', url, transport, user]);
    const ready = new Promise((resolve, reject) => {
      child.stdout.on('data', (data) => { if (String(data).includes('ready')) resolve(); });
      child.on('exit', (code, signal) => { if (signal !== 'SIGKILL') reject(new Error(`exited ${code}`)); });
    });
    await withTimeout(ready, `the ${transport} client to subscribe`);
    const killed = new Promise((resolve) => child.on('exit', resolve));
    await withTimeout(killed, 'the client to kill itself');
    const since = Date.now();
    // The SockJS disconnect delay is 5 s; the relay sweeps every 0.5 s.
    while (await presence(user) > 0) {
      assert.ok(Date.now() - since < 8000, `${user} still present ${Date.now() - since} ms after its client died`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });
}
