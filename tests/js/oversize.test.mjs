// A WebSocket message larger than the relay's --max-frame-size, sent in one
// message by Node's `ws` client with its default options: the client gets
// the ERROR and the close code 1009 every time, however much it is still
// sending when the relay refuses it. tests/it/limits.rs starts a relay and
// runs this file with RELAY_WS_URL set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

const url = process.env.RELAY_WS_URL;
assert.ok(url, 'RELAY_WS_URL must name the relay under test');
// SockJS's WebSocket transport: /sockjs/{server}/{session}/websocket.
const sockjsBase = process.env.RELAY_SOCKJS_WS;
assert.ok(sockjsBase, 'RELAY_SOCKJS_WS must name the SockJS prefix of the relay, as ws://...');
const TRIES = 20;

/** Sends one SEND of `mib` MiB after CONNECTED; resolves with the ERROR's
 *  message header (if one came) and the close code. */
function sendTooMuch(mib) {
  return new Promise((resolve) => {
    const socket = new WebSocket(url, ['v12.stomp']);
    let error = null;
    socket.on('open', () => socket.send('CONNECT\naccept-version:1.2\n\n\0'));
    socket.on('message', (data) => {
      const text = data.toString();
      if (text.startsWith('CONNECTED')) {
        socket.send(`SEND\ndestination:/topic/big\n\n${'x'.repeat(mib * 1024 * 1024)}\0`);
      } else if (text.startsWith('ERROR')) {
        error = text.split('\n').find((line) => line.startsWith('message:')) ?? text;
      }
    });
    socket.on('error', () => {});
    socket.on('close', (code) => resolve({ error, code }));
  });
}

/** The same over SockJS's WebSocket transport: each frame a JSON array of
 *  STOMP frames. Resolves with the ERROR's message header and SockJS's
 *  close frame. */
function sendTooMuchOverSockJs(mib) {
  return new Promise((resolve) => {
    const session = Math.random().toString(16).slice(2);
    const socket = new WebSocket(`${sockjsBase}/000/${session}/websocket`);
    let error = null;
    let closeFrame = null;
    const stomp = (frame) => JSON.stringify([`${frame}\0`]);
    socket.on('message', (data) => {
      const text = data.toString();
      if (text === 'o') {
        socket.send(stomp('CONNECT\naccept-version:1.2\n\n'));
      } else if (text.startsWith('a[')) {
        for (const frame of JSON.parse(text.slice(1))) {
          if (frame.startsWith('CONNECTED')) {
            socket.send(stomp(`SEND\ndestination:/topic/big\n\n${'x'.repeat(mib * 1024 * 1024)}`));
          } else if (frame.startsWith('ERROR')) {
            error = frame.split('\n').find((line) => line.startsWith('message:')) ?? frame;
          }
        }
      } else if (text.startsWith('c[')) {
        closeFrame = text;
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve({ error, closeFrame }));
  });
}

test(`a 20 MiB message over SockJS's WebSocket gets the ERROR and c[1009], ${TRIES} times in ${TRIES}`, async () => {
  for (let attempt = 1; attempt <= TRIES; attempt++) {
    const answer = await sendTooMuchOverSockJs(20);
    assert.deepEqual(
      answer,
      { error: 'message:frame too large', closeFrame: 'c[1009,"Message too big"]' },
      `attempt ${attempt}`,
    );
  }
});

for (const mib of [20, 64]) {
  test(`a ${mib} MiB message gets the ERROR and close 1009, ${TRIES} times in ${TRIES}`, async () => {
    for (let attempt = 1; attempt <= TRIES; attempt++) {
      const answer = await sendTooMuch(mib);
      assert.deepEqual(answer, { error: 'message:frame too large', code: 1009 }, `attempt ${attempt}`);
    }
  });
}
