// Our conformance suite for the SockJS 0.3.3 server protocol: every URL,
// transport, framing and HTTP rule a SockJS server must follow, checked
// against the four test services a relay mounts with --sockjs-protocol-test
// (echo, disabled_websocket_echo, cookie_needed_echo and close, each with a
// 4096-byte streaming limit, 25 s heartbeat and 5 s disconnect delay).
// Plain HTTP goes over node:net with hand-written requests, so that what is
// on the wire is exactly what we mean; WebSockets go over `ws`. With a
// relay built with the sockjs-protocol-test feature:
//
//   stomp-relay --listen 127.0.0.1:18081 --sockjs-protocol-test &
//   SOCKJS_URL=http://127.0.0.1:18081 node --test --test-concurrency=1 sockjs-protocol.test.mjs
import { describe, test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { createHash, randomUUID } from 'node:crypto';
import WebSocket from 'ws';

const root = process.env.SOCKJS_URL;
if (!root) {
  throw new Error('SOCKJS_URL must name the server under test, e.g. SOCKJS_URL=http://127.0.0.1:18081');
}
const echo = `${root}/echo`;
const closing = `${root}/close`;
const noWebSocket = `${root}/disabled_websocket_echo`;
const cookies = `${root}/cookie_needed_echo`;

/** How long any single wait for the server may take. */
const PATIENCE = 3000;
const DISCONNECT_DELAY = 5000;
const GREETING = 'Welcome to SockJS!\n';
const GO_AWAY = 'c[3000,"Go away!"]';
const STILL_OPEN = 'c[2010,"Another connection still open"]';
const INTERRUPTED = 'c[1002,"Connection interrupted"]';
const UNCACHED = 'no-store, no-cache, no-transform, must-revalidate, max-age=0';
const FORM = { 'Content-Type': 'application/x-www-form-urlencoded' };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** A session URL nobody has used yet, under `service`. */
const freshSession = (service) => `${service}/000/${randomUUID()}`;
const toWs = (url) => url.replace(/^http/, 'ws');
/** A Sec-WebSocket-Key: sixteen random bytes in base64. */
const randomKey = () => Buffer.from(randomUUID().replaceAll('-', ''), 'hex').toString('base64');

/** Connections a test opened; whatever it leaves open is closed after it. */
const open = new Set();
afterEach(() => {
  for (const connection of open) connection.close();
  open.clear();
});

/**
 * Something that fills up over time (bytes, messages): `until` waits until
 * `ready()` returns a value other than undefined, `changed` wakes it. One
 * reader at a time, as each connection here has.
 */
class Waitable {
  #wake = null;

  changed() {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async until(ready, what, ms = PATIENCE) {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = ready();
      if (value !== undefined) return value;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => { clearTimeout(timer); resolve(); };
      });
    }
  }
}

/** Splits an http:// URL by hand: `new URL` would tidy `/./` and `//` away. */
function splitUrl(url) {
  const [, host, target] = /^http:\/\/([^/]+)(.*)$/.exec(url);
  const [hostname, port = '80'] = host.split(':');
  return { host, hostname, port: Number(port), target: target || '/' };
}

/** A TCP connection read as a byte stream, piece by piece. */
class Wire extends Waitable {
  #socket;
  #buffer = Buffer.alloc(0);
  #ended = false;

  static async open(url) {
    const { hostname, port } = splitUrl(url);
    const socket = net.connect({ host: hostname, port });
    await once(socket, 'connect');
    const wire = new Wire(socket);
    open.add(wire);
    return wire;
  }

  constructor(socket) {
    super();
    this.#socket = socket;
    socket.on('data', (data) => {
      this.#buffer = Buffer.concat([this.#buffer, data]);
      this.changed();
    });
    const end = () => { this.#ended = true; this.changed(); };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  write(data) { this.#socket.write(data); }

  close() { this.#socket.destroy(); }

  /** Takes the first `count(buffer, ended)` bytes once that is a number. */
  #take(count, what, ms) {
    return this.until(() => {
      const n = count(this.#buffer, this.#ended);
      if (n !== undefined) {
        const taken = this.#buffer.subarray(0, n);
        this.#buffer = this.#buffer.subarray(n);
        return taken;
      }
      if (this.#ended) throw new Error(`the server closed the connection before ${what}`);
      return undefined;
    }, what, ms);
  }

  bytes(n, what = `${n} bytes`) {
    return this.#take((buffer) => (buffer.length >= n ? n : undefined), what);
  }

  /** One line, without its line end. */
  async line(what = 'a line') {
    const taken = await this.#take((buffer) => {
      const end = buffer.indexOf('\n');
      return end < 0 ? undefined : end + 1;
    }, what);
    return taken.toString().replace(/\r?\n$/, '');
  }

  /** Whatever has arrived, or the next data; empty once the server closed. */
  some(what = 'more data') {
    return this.#take((buffer, ended) => (buffer.length || ended ? buffer.length : undefined), what);
  }

  /** Everything until the server closes the connection. */
  rest(what = 'the server to close the connection', ms = PATIENCE) {
    return this.#take((buffer, ended) => (ended ? buffer.length : undefined), what, ms);
  }

  /** Fails unless the server closes the connection without sending more. */
  async assertClosed() {
    assert.equal((await this.rest()).toString(), '', 'nothing more before the connection closes');
  }
}

/** Writes a request; POSTs always say how long their body is. */
function sendRequest(wire, method, url, { headers = {}, body, version = '1.1' } = {}) {
  const { host, target } = splitUrl(url);
  const payload = body === undefined ? undefined : Buffer.from(body);
  const lines = [`${method} ${target} HTTP/${version}`, `Host: ${host}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  if (payload !== undefined || method === 'POST') lines.push(`Content-Length: ${payload?.length ?? 0}`);
  wire.write(`${lines.join('\r\n')}\r\n\r\n`);
  if (payload?.length) wire.write(payload);
}

/** The status line and headers (names in lower case) of a response. */
async function readHead(wire) {
  const statusLine = await wire.line('the status line');
  const parts = /^HTTP\/(\d\.\d) (\d{3})/.exec(statusLine);
  assert.ok(parts, `a status line, not ${JSON.stringify(statusLine)}`);
  const headers = {};
  for (let line = await wire.line('a header'); line !== ''; line = await wire.line('a header')) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { version: parts[1], status: Number(parts[2]), headers };
}

/** How the body of a response is delimited. */
function framing({ status, headers }) {
  if (status === 101 || status === 204 || status === 304) return 'none';
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) return 'chunked';
  if (headers['content-length'] !== undefined) return 'length';
  return 'close';
}

/** One chunk of a chunked body; empty for the last one. */
async function readChunk(wire) {
  const size = parseInt(await wire.line('a chunk size'), 16);
  assert.ok(Number.isInteger(size), 'a chunk size in hex');
  if (size === 0) {
    await wire.line('the end of the chunked body');
    return Buffer.alloc(0);
  }
  const chunk = await wire.bytes(size + 2, 'a chunk');
  return chunk.subarray(0, size);
}

async function readBody(wire, head) {
  switch (framing(head)) {
    case 'none': return Buffer.alloc(0);
    case 'length': return wire.bytes(Number(head.headers['content-length']), 'the body');
    case 'close': return wire.rest('the body to end with the connection');
    default: {
      const chunks = [];
      for (let chunk = await readChunk(wire); chunk.length; chunk = await readChunk(wire)) chunks.push(chunk);
      return Buffer.concat(chunks);
    }
  }
}

/** A request and its whole response, on a connection already open. */
async function exchange(wire, method, url, options) {
  sendRequest(wire, method, url, options);
  const head = await readHead(wire);
  return { ...head, body: (await readBody(wire, head)).toString() };
}

/** A request on a connection of its own, closed once the response is in. */
async function request(method, url, options) {
  const wire = await Wire.open(url);
  try {
    return await exchange(wire, method, url, options);
  } finally {
    wire.close();
  }
}
const get = (url, options) => request('GET', url, options);
const post = (url, options) => request('POST', url, options);
const preflight = (url, options) => request('OPTIONS', url, options);

/**
 * A request whose response keeps coming: `next()` gives the next chunk (or
 * the next data, without chunking), and '' once the response has ended.
 */
async function openStream(method, url, options) {
  const wire = await Wire.open(url);
  sendRequest(wire, method, url, options);
  const head = await readHead(wire);
  const chunked = framing(head) === 'chunked';
  const next = async () => (chunked ? await readChunk(wire) : await wire.some()).toString();
  return { ...head, wire, next, close: () => wire.close() };
}

/** A WebSocket whose text messages queue up for `next()`. */
async function openSocket(url) {
  const socket = new WebSocket(url);
  const inbox = [];
  const waitable = new Waitable();
  let closedWith;
  socket.on('message', (data) => { inbox.push(data.toString()); waitable.changed(); });
  socket.on('close', (code, reason) => { closedWith = { code, reason: reason.toString() }; waitable.changed(); });
  socket.on('error', () => {});
  const connection = {
    send: (text) => socket.send(text),
    close: () => socket.terminate(),
    next: () => waitable.until(() => {
      if (inbox.length) return inbox.shift();
      if (closedWith) throw new Error(`the socket closed (${closedWith.code}) before a message came`);
      return undefined;
    }, 'a message'),
    /** Waits for the close; fails if a message comes first. */
    closed: () => waitable.until(() => {
      if (inbox.length) throw new Error(`a message came instead of a close: ${inbox[0]}`);
      return closedWith;
    }, 'the socket to close'),
    isOpen: () => socket.readyState === WebSocket.OPEN,
  };
  open.add(connection);
  await once(socket, 'open');
  return connection;
}

// What the responses must look like.

const contentType = (response) => (response.headers['content-type'] ?? '').replaceAll(' ', '');

function assertNoCookie(response) {
  assert.equal(response.headers['set-cookie'], undefined, 'no Set-Cookie');
}

/** CORS answers: the Origin sent, with credentials, or `*` without. */
function assertCors(response, origin) {
  const { headers } = response;
  if (origin) {
    assert.equal(headers['access-control-allow-origin'], origin);
    assert.equal(headers['access-control-allow-credentials'], 'true');
  } else {
    assert.equal(headers['access-control-allow-origin'], '*');
    assert.ok(!headers['access-control-allow-credentials'], 'no credentials without an Origin');
  }
}

function assertNotCached({ headers }) {
  assert.equal(headers['cache-control'], UNCACHED);
  assert.equal(headers.expires, undefined, 'no Expires');
  assert.equal(headers['last-modified'], undefined, 'no Last-Modified');
}

/** Public, cacheable for a long time (a year is usual). */
function assertCachedForLong({ headers }) {
  assert.match(headers['cache-control'] ?? '', /public/);
  assert.match(headers['cache-control'], /max-age=[1-9]\d{6,}/, 'max-age of a million seconds or more');
  assert.ok(headers.expires, 'an Expires header');
}

/** A CORS preflight is answered, cacheably, for `methods`, whatever the Origin. */
async function assertPreflight(url, methods) {
  for (const origin of [undefined, 'test', 'null']) {
    const headers = { 'Access-Control-Request-Method': methods, ...(origin && { Origin: origin }) };
    const response = await preflight(url, { headers });
    assert.ok([200, 204].includes(response.status), `200 or 204, not ${response.status}`);
    assertCachedForLong(response);
    assert.ok(Number(response.headers['access-control-max-age']) > 1000000, 'a long Access-Control-Max-Age');
    const allowed = response.headers['access-control-allow-methods'] ?? '';
    for (const method of methods.split(', ')) assert.ok(allowed.includes(method), `${method} is allowed`);
    assert.equal(response.body, '');
    assertCors(response, origin);
  }
}

/** Starts an xhr-polling session and checks its open frame. */
async function openPolling(url) {
  const response = await post(`${url}/xhr`);
  assert.equal(response.status, 200);
  assert.equal(response.body, 'o\n');
  return response;
}

async function xhrSend(url, body, headers) {
  const response = await post(`${url}/xhr_send`, { body, headers });
  assert.equal(response.status, 204);
  assert.equal(response.body, '');
  return response;
}

async function poll(url) {
  const response = await post(`${url}/xhr`);
  assert.equal(response.status, 200);
  return response.body;
}

/** Opens an xhr-streaming response and reads its prelude and open frame. */
async function openXhrStream(url, options) {
  const stream = await openStream('POST', `${url}/xhr_streaming`, options);
  assert.equal(stream.status, 200);
  assert.equal(await stream.next(), `${'h'.repeat(2048)}\n`, 'a prelude of 2048 h and a new line');
  return stream;
}

async function jsonpSend(url, body, headers = FORM) {
  const response = await post(`${url}/jsonp_send`, { body, headers });
  assert.equal(response.status, 200);
  assert.equal(response.body, 'ok');
  return response;
}

/** The iframe page, as the protocol spells it, loading `script`. */
const iframePage = (script) => `<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="${script}"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>`;

/** The head of an htmlfile response, as the protocol spells it. */
const htmlfileHead = (callback) => `<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.${callback};
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>`;

/** A frame as the htmlfile transport wraps it. */
const htmlfileFrame = (frame) => `<script>\np(${JSON.stringify(frame)});\n</script>\r\n`;

async function openHtmlfile(url) {
  const stream = await openStream('GET', `${url}/htmlfile?c=%63allback`);
  assert.equal(stream.status, 200);
  const head = await stream.next();
  assert.equal(head.trim(), htmlfileHead('callback'));
  assert.ok(head.length > 1024, `the head is padded past 1024 bytes (it has ${head.length})`);
  assert.equal(await stream.next(), htmlfileFrame('o'));
  return stream;
}

async function openEventsource(url) {
  const stream = await openStream('GET', `${url}/eventsource`);
  assert.equal(stream.status, 200);
  assert.equal(await stream.next(), '\r\n', 'a new line as prelude');
  assert.equal(await stream.next(), 'data: o\r\n\r\n');
  return stream;
}

async function openJsonp(url, callback = 'x') {
  const response = await get(`${url}/jsonp?c=${callback}`);
  assert.equal(response.status, 200);
  return response;
}

/** The bodies of a jsonp poll: the frame as a JavaScript string argument. */
const jsonpBody = (frame, callback = 'x') => `/**/${callback}(${JSON.stringify(frame)});\r\n`;

// The tests.

describe('the greeting and unknown URLs', () => {
  test('the service root greets in plain text, with or without a trailing slash', async () => {
    for (const url of [echo, `${echo}/`]) {
      const response = await get(url);
      assert.equal(response.status, 200);
      assert.equal(contentType(response), 'text/plain;charset=UTF-8');
      assert.equal(response.body, GREETING);
      assertNoCookie(response);
    }
  });

  test('paths the protocol does not define are not found', async () => {
    for (const path of ['/a', '/a.html', '//', '///', '/a/a', '/a/a/', '/a/']) {
      assert.equal((await get(echo + path)).status, 404, path);
    }
  });
});

describe('the iframe page', () => {
  async function assertIframe(url) {
    const response = await get(url);
    assert.equal(response.status, 200, url);
    assert.equal(contentType(response), 'text/html;charset=UTF-8');
    assertCachedForLong(response);
    assert.ok(response.headers.etag, 'an ETag');
    assert.equal(response.headers['last-modified'], undefined, 'no Last-Modified');
    const script = /<script src="([^"]*)"><\/script>/.exec(response.body)?.[1];
    assert.ok(script !== undefined, 'the page loads a script');
    assert.ok(script.startsWith('/') || script.startsWith('http'), `a usable script URL, not ${script}`);
    assert.equal(response.body.trim(), iframePage(script));
    assertNoCookie(response);
  }

  test('iframe.html is served as the protocol spells it, strongly cached', async () => {
    await assertIframe(`${echo}/iframe.html`);
  });

  test('versioned iframe names get the same page', async () => {
    for (const name of ['iframe-a.html', 'iframe-.html', 'iframe-0.1.2.html', 'iframe-0.1.2abc-dirty.2144.html']) {
      await assertIframe(`${echo}/${name}`);
    }
  });

  test('a query string on the iframe URL changes nothing', async () => {
    const names = ['iframe-a.html?t=1234', 'iframe-0.1.2.html?t=123414', 'iframe-0.1.2abc-dirty.2144.html?t=qweqweq123'];
    for (const name of names) {
      await assertIframe(`${echo}/${name}`);
    }
  });

  test('names that only look like the iframe page are not found', async () => {
    const names = ['iframe.htm', 'iframe', 'IFRAME.HTML', 'IFRAME', 'iframe.HTML', 'iframe.xml', 'iframe-/.html'];
    for (const name of names) {
      assert.equal((await get(`${echo}/${name}`)).status, 404, name);
    }
  });

  test('the iframe ETag is stable and If-None-Match gets an empty 304', async () => {
    const first = await get(`${echo}/iframe.html`);
    const second = await get(`${echo}/iframe.html`);
    assert.ok(first.headers.etag, 'an ETag');
    assert.equal(second.headers.etag, first.headers.etag);
    const revalidated = await get(`${echo}/iframe.html`, { headers: { 'If-None-Match': first.headers.etag } });
    assert.equal(revalidated.status, 304);
    assert.equal(revalidated.headers['content-type'], undefined, 'no Content-Type on a 304');
    assert.equal(revalidated.body, '');
  });
});

describe('/info', () => {
  test('info describes the service as uncached JSON, with CORS for the Origin', async () => {
    const response = await get(`${echo}/info`, { headers: { Origin: 'test' } });
    assert.equal(response.status, 200);
    assert.equal(contentType(response), 'application/json;charset=UTF-8');
    assertNoCookie(response);
    assertNotCached(response);
    assertCors(response, 'test');
    const info = JSON.parse(response.body);
    assert.equal(info.websocket, true);
    assert.equal(typeof info.cookie_needed, 'boolean');
    assert.deepEqual(info.origins, ['*:*']);
    assert.ok(Number.isInteger(info.entropy), 'entropy is an integer');
  });

  test('each info response carries fresh entropy from 0 to 2^32-1', async () => {
    const first = JSON.parse((await get(`${echo}/info`)).body);
    const second = JSON.parse((await get(`${echo}/info`)).body);
    for (const { entropy } of [first, second]) {
      assert.ok(Number.isInteger(entropy) && entropy >= 0 && entropy <= 0xffffffff, `entropy in range: ${entropy}`);
    }
    assert.notEqual(first.entropy, second.entropy);
  });

  test('an info preflight, with an Origin or without, is answered cacheably for OPTIONS and GET', async () => {
    await assertPreflight(`${echo}/info`, 'OPTIONS, GET');
  });

  test('a preflight from the origin null (a file:// page) is allowed for null', async () => {
    const headers = { Origin: 'null', 'Access-Control-Request-Method': 'POST' };
    const response = await preflight(`${echo}/info`, { headers });
    assert.ok([200, 204].includes(response.status), `200 or 204, not ${response.status}`);
    assert.equal(response.body, '');
    assert.equal(response.headers['access-control-allow-origin'], 'null');
  });

  test('info on the service without WebSocket says websocket is false', async () => {
    const response = await get(`${noWebSocket}/info`);
    assert.equal(response.status, 200);
    assert.equal(JSON.parse(response.body).websocket, false);
  });
});

describe('session URLs', () => {
  test('any server and session names open a session', async () => {
    const salt = randomUUID().slice(0, 8);
    for (const path of [`/a/a${salt}`, `/_/_${salt}`, `/1/${salt}`, `/abcdefgh_i-j%20/abcdefg_i-j%20${salt}`]) {
      await openPolling(echo + path);
    }
  });

  test('session paths with dots or empty parts are not found, for GET and POST', async () => {
    for (const path of ['//', '/a./a', '/a/a.', '/./.', '/', '///']) {
      assert.equal((await get(`${echo}${path}/xhr`)).status, 404, `GET ${path}/xhr`);
      assert.equal((await post(`${echo}${path}/xhr`)).status, 404, `POST ${path}/xhr`);
    }
  });

  test('the server part is ignored: a session is found under any server name', async () => {
    const session = randomUUID();
    await openPolling(`${echo}/000/${session}`);
    await xhrSend(`${echo}/000/${session}`, '["a"]');
    assert.equal(await poll(`${echo}/999/${session}`), 'a["a"]\n');
  });
});

describe('protocol basics', () => {
  test('a session opens with o and echoes a sent message back as an a frame', async () => {
    const url = freshSession(echo);
    await openPolling(url);
    await xhrSend(url, '["a"]');
    assert.equal(await poll(url), 'a["a"]\n');
  });

  test('sending to a session that does not exist is not found', async () => {
    assert.equal((await post(`${echo}/000/bad_session/xhr_send`, { body: '["a"]' })).status, 404);
  });

  test('a second polling request while one waits gets the close frame 2010', async () => {
    const url = freshSession(echo);
    await openPolling(url);
    const waiting = await Wire.open(url);
    sendRequest(waiting, 'POST', `${url}/xhr`);
    await sleep(250);
    const second = await post(`${url}/xhr`);
    assert.equal(second.status, 200);
    assert.equal(second.body, `${STILL_OPEN}\n`);
  });

  test('a session the application closes sends c[3000,"Go away!"] and keeps sending it', async () => {
    const url = freshSession(closing);
    await openPolling(url);
    assert.equal(await poll(url), `${GO_AWAY}\n`);
    assert.equal(await poll(url), `${GO_AWAY}\n`);
  });

  test('a session nobody polls is gone just after the disconnect delay', async () => {
    const idle = freshSession(echo);
    const closed = freshSession(closing);
    await openPolling(idle);
    await openPolling(closed);
    assert.equal(await poll(closed), `${GO_AWAY}\n`);
    await sleep(DISCONNECT_DELAY + 500);
    assert.equal((await post(`${idle}/xhr_send`, { body: '["a"]' })).status, 404, 'the idle session is gone');
    assert.equal(await poll(closed), 'o\n', 'the closed session is forgotten, so the URL opens a new one');
  });
});

describe('WebSocket transport', () => {
  const upgrade = (key) => ({
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': key,
    Origin: root,
  });

  test('a plain GET of a websocket URL is a 400 saying it can only upgrade to WebSocket', async () => {
    const response = await get(`${echo}/0/0/websocket`);
    assert.equal(response.status, 400);
    assert.equal(response.body.toString(), 'Can "Upgrade" only to "WebSocket".');
  });

  test('an upgrade whose Connection header is not Upgrade is refused with a 400', async () => {
    const response = await get(`${echo}/0/0/websocket`, { headers: { Upgrade: 'WebSocket', Connection: 'close' } });
    assert.equal(response.status, 400);
    assert.equal(response.body.toString(), '"Connection" must be "Upgrade".');
  });

  test('a POST to a websocket URL is a 405 allowing GET, with or without upgrade headers', async () => {
    for (const headers of [{ Upgrade: 'WebSocket', Connection: 'Upgrade' }, {}]) {
      const response = await post(`${echo}/0/0/websocket`, { headers });
      assert.equal(response.status, 405);
      assert.equal(response.headers['content-type'], undefined, 'no Content-Type');
      assert.ok(response.headers.allow, 'an Allow header');
      assert.equal(response.body, '');
    }
  });

  test('the service without WebSocket refuses the handshake', async () => {
    const response = await get(`${freshSession(noWebSocket)}/websocket`, { headers: upgrade(randomKey()) });
    assert.equal(response.status, 404);
  });

  test('a WebSocket session opens with o and echoes messages', async () => {
    const socket = await openSocket(toWs(`${freshSession(echo)}/websocket`));
    assert.equal(await socket.next(), 'o');
    socket.send('["a"]');
    assert.equal(await socket.next(), 'a["a"]');
  });

  test('a WebSocket session the application closes gets the close frame, then the socket closes', async () => {
    const socket = await openSocket(toWs(`${freshSession(closing)}/websocket`));
    assert.equal(await socket.next(), 'o');
    assert.equal(await socket.next(), GO_AWAY);
    await socket.closed();
  });

  test('the RFC 6455 handshake answers 101 with the right accept key and no Content-Length', async () => {
    const key = randomKey();
    const wire = await Wire.open(echo);
    sendRequest(wire, 'GET', `${freshSession(echo)}/websocket`, { headers: upgrade(key) });
    const head = await readHead(wire);
    assert.equal(head.status, 101);
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    assert.equal(head.headers['sec-websocket-accept'], accept);
    assert.equal(head.headers.connection?.toLowerCase(), 'upgrade');
    assert.equal(head.headers.upgrade?.toLowerCase(), 'websocket');
    assert.equal(head.headers['content-length'], undefined, 'no Content-Length');
  });

  test('empty WebSocket messages and empty arrays are ignored', async () => {
    const socket = await openSocket(toWs(`${freshSession(echo)}/websocket`));
    assert.equal(await socket.next(), 'o');
    socket.send('');
    socket.send('[]');
    socket.send('["a"]');
    assert.equal(await socket.next(), 'a["a"]');
  });

  test('two WebSockets may share a session id, each a session of its own, and the id may be reused', async () => {
    const url = toWs(`${freshSession(echo)}/websocket`);
    const first = await openSocket(url);
    assert.equal(await first.next(), 'o');
    const second = await openSocket(url);
    assert.equal(await second.next(), 'o');
    first.send('["a"]');
    assert.equal(await first.next(), 'a["a"]');
    second.send('["b"]');
    assert.equal(await second.next(), 'a["b"]');
    assert.ok(first.isOpen() && second.isOpen(), 'neither socket was closed');
    first.close();
    second.close();
    const again = await openSocket(url);
    assert.equal(await again.next(), 'o');
    again.send('["a"]');
    assert.equal(await again.next(), 'a["a"]');
  });

  test('a hixie-76 handshake read in pieces gets its headers before the key bytes are sent', async () => {
    // hixie-76 keys: a number times its count of spaces, written with the
    // spaces and some noise; the answer is the MD5 of both numbers and the
    // eight bytes sent after the headers.
    const hixieKey = (number, spaces) => {
      const digits = String(number * spaces);
      return `${digits[0]}${' '.repeat(spaces)}x${digits.slice(1, 4)}%W${digits.slice(4)}`;
    };
    const [number1, number2] = [155712099, 173347027];
    const key3 = Buffer.from('Tm[K T2u');
    const url = `${freshSession(echo)}/websocket`;
    const wire = await Wire.open(url);
    sendRequest(wire, 'GET', url, {
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'WebSocket',
        Origin: root,
        'Sec-WebSocket-Key1': hixieKey(number1, 4),
        'Sec-WebSocket-Key2': hixieKey(number2, 7),
      },
    });
    const head = await readHead(wire);
    assert.equal(head.status, 101);
    assert.equal(head.headers.connection?.toLowerCase(), 'upgrade');
    assert.equal(head.headers.upgrade?.toLowerCase(), 'websocket');
    assert.equal(head.headers['sec-websocket-location'], toWs(url));
    assert.equal(head.headers['sec-websocket-origin'], root);
    assert.equal(head.headers['content-length'], undefined, 'no Content-Length');
    wire.write(key3);
    const numbers = Buffer.alloc(8);
    numbers.writeUInt32BE(number1, 0);
    numbers.writeUInt32BE(number2, 4);
    const answer = createHash('md5').update(Buffer.concat([numbers, key3])).digest();
    assert.deepEqual(await wire.bytes(16, 'the challenge answer'), answer);
    assert.deepEqual(await wire.bytes(3, 'the open frame'), Buffer.from([0x00, 0x6f, 0xff]));
  });

  test('broken JSON on a WebSocket closes it', async () => {
    const socket = await openSocket(toWs(`${freshSession(echo)}/websocket`));
    assert.equal(await socket.next(), 'o');
    socket.send('["a');
    await socket.closed();
  });
});

describe('xhr-polling', () => {
  test('xhr and xhr_send answer preflights for OPTIONS and POST', async () => {
    for (const suffix of ['xhr', 'xhr_send']) await assertPreflight(`${echo}/abc/abc/${suffix}`, 'OPTIONS, POST');
  });

  test('xhr polls and xhr_send posts carry the right types, CORS and no caching', async () => {
    const url = freshSession(echo);
    const opened = await openPolling(url);
    assert.equal(contentType(opened), 'application/javascript;charset=UTF-8');
    assertCors(opened);
    assertNotCached(opened);
    const withOrigin = await post(`${freshSession(echo)}/xhr`, { headers: { Origin: 'test' } });
    assert.equal(withOrigin.body, 'o\n');
    assertCors(withOrigin, 'test');
    const sent = await xhrSend(url, '["x"]', { Origin: 'test' });
    assert.equal(contentType(sent), 'text/plain;charset=UTF-8', 'text/plain even on a 204');
    assertCors(sent, 'test');
    assertNotCached(sent);
    assert.equal(await poll(url), 'a["x"]\n');
  });

  test('xhr_send to an unknown session is a 404', async () => {
    assert.equal((await post(`${freshSession(echo)}/xhr_send`, { body: '["x"]' })).status, 404);
  });

  test('an xhr_send with broken JSON or no body gets a 500 saying so, and the session goes on', async () => {
    const url = freshSession(echo);
    await openPolling(url);
    const broken = await post(`${url}/xhr_send`, { body: '["x' });
    assert.equal(broken.status, 500);
    assert.match(broken.body, /Broken JSON encoding\./);
    const empty = await post(`${url}/xhr_send`, { body: '' });
    assert.equal(empty.status, 500);
    assert.match(empty.body, /Payload expected\./);
    await xhrSend(url, '["a"]');
    assert.equal(await poll(url), 'a["a"]\n');
  });

  test('xhr_send takes its body whatever the Content-Type says', async () => {
    const url = freshSession(echo);
    await openPolling(url);
    const types = ['text/plain', 'T', 'application/json', 'application/xml', '',
      'application/json; charset=utf-8', 'text/xml; charset=utf-8', 'text/xml'];
    for (const type of types) await xhrSend(url, '["a"]', { 'Content-Type': type });
    assert.equal(await poll(url), `a[${types.map(() => '"a"').join(',')}]\n`);
  });

  test('a preflight gets its Access-Control-Request-Headers echoed, and none when it asks none', async () => {
    const ask = (extra) => preflight(`${freshSession(echo)}/xhr`, {
      headers: { Origin: 'test', 'Access-Control-Request-Method': 'POST', ...extra },
    });
    for (const [extra, allowed] of [[{ 'Access-Control-Request-Headers': 'a, b, c' }, 'a, b, c'],
      [{ 'Access-Control-Request-Headers': '' }, undefined], [{}, undefined]]) {
      const response = await ask(extra);
      assert.ok([200, 204].includes(response.status), `200 or 204, not ${response.status}`);
      assertCors(response, 'test');
      assert.equal(response.headers['access-control-allow-headers'] || undefined, allowed);
    }
  });

  test('an xhr_send of an empty array is accepted and delivers nothing', async () => {
    const url = freshSession(echo);
    await openPolling(url);
    await xhrSend(url, '[]');
    await xhrSend(url, '["a"]');
    assert.equal(await poll(url), 'a["a"]\n');
  });
});

describe('xhr-streaming', () => {
  test('xhr_streaming answers preflights for OPTIONS and POST', async () => {
    await assertPreflight(`${echo}/abc/abc/xhr_streaming`, 'OPTIONS, POST');
  });

  test('an xhr stream sends a 2048-byte h prelude, the open frame and then messages', async () => {
    const url = freshSession(echo);
    const stream = await openXhrStream(url, { headers: { Origin: 'test' } });
    assert.equal(contentType(stream), 'application/javascript;charset=UTF-8');
    assertCors(stream, 'test');
    assertNotCached(stream);
    assert.equal(await stream.next(), 'o\n');
    await xhrSend(url, '["x"]');
    assert.equal(await stream.next(), 'a["x"]\n');
  });

  test('an xhr stream ends once it has carried about 4096 bytes', async () => {
    const url = freshSession(echo);
    const stream = await openXhrStream(url);
    assert.equal(await stream.next(), 'o\n');
    const message = JSON.stringify('x'.repeat(128));
    // 2 bytes of open frame, then 134 bytes a frame: the 31st passes 4096.
    for (let i = 0; i < 31; i++) {
      await xhrSend(url, `[${message}]`);
      assert.equal(await stream.next(), `a[${message}]\n`, `frame ${i + 1}`);
    }
    assert.equal(await stream.next(), '', 'the response ended');
  });
});

describe('eventsource', () => {
  test('an event stream frames each message as data: lines, uncached', async () => {
    const url = freshSession(echo);
    const stream = await openEventsource(url);
    assert.equal(contentType(stream), 'text/event-stream');
    assertNotCached(stream);
    await xhrSend(url, '["x"]');
    assert.equal(await stream.next(), 'data: a["x"]\r\n\r\n');
    // Spaces, NUL and line ends inside a message stay JSON escapes.
    await xhrSend(url, String.raw`["  \u0000\n\r "]`);
    assert.equal(await stream.next(), String.raw`data: a["  \u0000\n\r "]` + '\r\n\r\n');
  });

  test('an event stream ends once it has carried more than 4096 bytes', async () => {
    const url = freshSession(echo);
    const stream = await openEventsource(url);
    const message = JSON.stringify('x'.repeat(4096));
    await xhrSend(url, `[${message}]`);
    assert.equal(await stream.next(), `data: a[${message}]\r\n\r\n`);
    assert.equal(await stream.next(), '', 'the response ended');
  });
});

describe('htmlfile', () => {
  test('an htmlfile stream sends a padded page calling the callback, then script frames', async () => {
    const url = freshSession(echo);
    const stream = await openHtmlfile(url);
    assert.equal(contentType(stream), 'text/html;charset=UTF-8');
    assertNotCached(stream);
    await xhrSend(url, '["x"]');
    assert.equal(await stream.next(), htmlfileFrame('a["x"]'));
  });

  test('an htmlfile request without a callback gets a 500 saying one is required', async () => {
    const response = await get(`${echo}/a/a/htmlfile`);
    assert.equal(response.status, 500);
    assert.ok(response.body.includes('"callback" parameter required'), response.body);
  });

  test('an htmlfile callback with characters outside [a-zA-Z0-9-_.] gets a 500', async () => {
    for (const callback of ['%20', '*', 'abc(', 'abc%28']) {
      const response = await get(`${echo}/a/a/htmlfile?c=${callback}`);
      assert.equal(response.status, 500, callback);
      assert.ok(response.body.includes('invalid "callback" parameter'), response.body);
    }
  });

  test('an htmlfile stream ends once it has carried more than 4096 bytes', async () => {
    const url = freshSession(echo);
    const stream = await openHtmlfile(url);
    const message = 'x'.repeat(4096);
    await xhrSend(url, `["${message}"]`);
    assert.equal(await stream.next(), htmlfileFrame(`a["${message}"]`));
    assert.equal(await stream.next(), '', 'the response ended');
  });
});

describe('jsonp-polling', () => {
  test('jsonp polls call the callback with each frame, and jsonp_send answers ok', async () => {
    const url = freshSession(echo);
    const opened = await openJsonp(url, '%63allback');
    assert.equal(contentType(opened), 'application/javascript;charset=UTF-8');
    assertNotCached(opened);
    assert.equal(opened.body, jsonpBody('o', 'callback'));
    const sent = await jsonpSend(url, 'd=%5B%22x%22%5D');
    assert.equal(contentType(sent), 'text/plain;charset=UTF-8');
    assertNotCached(sent);
    assert.equal((await openJsonp(url, '%63allback')).body, jsonpBody('a["x"]', 'callback'));
  });

  test('a jsonp request without a callback gets a 500 saying one is required', async () => {
    const response = await get(`${echo}/a/a/jsonp`);
    assert.equal(response.status, 500);
    assert.ok(response.body.includes('"callback" parameter required'), response.body);
  });

  test('a jsonp callback with characters outside [a-zA-Z0-9-_.] gets a 500', async () => {
    for (const callback of ['%20', '*', 'abc(', 'abc%28']) {
      const response = await get(`${echo}/a/a/jsonp?c=${callback}`);
      assert.equal(response.status, 500, callback);
      assert.ok(response.body.includes('invalid "callback" parameter'), response.body);
    }
  });

  test('a jsonp_send with broken JSON or no payload gets a 500 saying so, and the session goes on', async () => {
    const url = freshSession(echo);
    assert.equal((await openJsonp(url)).body, jsonpBody('o'));
    const broken = await post(`${url}/jsonp_send`, { body: 'd=%5B%22x', headers: FORM });
    assert.equal(broken.status, 500);
    assert.match(broken.body, /Broken JSON encoding\./);
    for (const body of ['', 'd=', 'p=p']) {
      const response = await post(`${url}/jsonp_send`, { body, headers: FORM });
      assert.equal(response.status, 500, JSON.stringify(body));
      assert.match(response.body, /Payload expected\./);
    }
    await jsonpSend(url, 'd=%5B%22b%22%5D');
    assert.equal((await openJsonp(url)).body, jsonpBody('a["b"]'));
  });

  test('jsonp_send takes a form field d or a raw body', async () => {
    const url = freshSession(echo);
    assert.equal((await openJsonp(url)).body, jsonpBody('o'));
    await jsonpSend(url, 'd=%5B%22abc%22%5D');
    await jsonpSend(url, '["%61bc"]', { 'Content-Type': 'text/plain' });
    assert.equal((await openJsonp(url)).body, jsonpBody('a["abc","%61bc"]'));
  });

  test('a jsonp session the application closes keeps answering with the close frame', async () => {
    const url = freshSession(closing);
    assert.equal((await openJsonp(url)).body, jsonpBody('o'));
    assert.equal((await openJsonp(url)).body, jsonpBody(GO_AWAY));
    assert.equal((await openJsonp(url)).body, jsonpBody(GO_AWAY));
  });

  test('a jsonp_send of an empty array is accepted and delivers nothing', async () => {
    const url = freshSession(echo);
    assert.equal((await openJsonp(url)).body, jsonpBody('o'));
    await jsonpSend(url, 'd=%5B%5D');
    await jsonpSend(url, 'd=%5B%22x%22%5D');
    assert.equal((await openJsonp(url)).body, jsonpBody('a["x"]'));
  });
});

describe('the JSESSIONID cookie', () => {
  function assertCookie(response, value = 'dummy') {
    const [pair, path] = (response.headers['set-cookie'] ?? '').split(';');
    assert.equal(pair.trim(), `JSESSIONID=${value}`);
    assert.equal(path?.trim().toLowerCase(), 'path=/');
  }

  test('info on the cookie service says cookies are needed but sets none', async () => {
    const response = await get(`${cookies}/info`);
    assert.equal(response.status, 200);
    assertNoCookie(response);
    assert.equal(JSON.parse(response.body).cookie_needed, true);
  });

  test('only the cookie service sets the cookie', async () => {
    assertNoCookie(await openPolling(freshSession(echo)));
    assertNoCookie(await openJsonp(freshSession(echo)));
  });

  test('xhr polls on the cookie service set JSESSIONID, echoing the one the client has', async () => {
    assertCookie(await openPolling(freshSession(cookies)));
    const response = await post(`${freshSession(cookies)}/xhr`, { headers: { Cookie: 'JSESSIONID=abcdef' } });
    assert.equal(response.body, 'o\n');
    assertCookie(response, 'abcdef');
  });

  test('xhr streams on the cookie service set JSESSIONID', async () => {
    const stream = await openStream('POST', `${freshSession(cookies)}/xhr_streaming`);
    assert.equal(stream.status, 200);
    assertCookie(stream);
  });

  test('event streams on the cookie service set JSESSIONID', async () => {
    const stream = await openStream('GET', `${freshSession(cookies)}/eventsource`);
    assert.equal(stream.status, 200);
    assertCookie(stream);
  });

  test('htmlfile streams on the cookie service set JSESSIONID', async () => {
    const stream = await openStream('GET', `${freshSession(cookies)}/htmlfile?c=%63allback`);
    assert.equal(stream.status, 200);
    assertCookie(stream);
  });

  test('jsonp polls and sends on the cookie service set JSESSIONID', async () => {
    const url = freshSession(cookies);
    const opened = await openJsonp(url, '%63allback');
    assertCookie(opened);
    assert.equal(opened.body, jsonpBody('o', 'callback'));
    assertCookie(await jsonpSend(url, 'd=%5B%22x%22%5D'));
  });
});

describe('the raw WebSocket', () => {
  test('the raw WebSocket echoes text as is, without SockJS framing', async () => {
    const socket = await openSocket(toWs(`${echo}/websocket`));
    socket.send('Hello world!\uffff');
    assert.equal(await socket.next(), 'Hello world!\uffff');
  });

  test('the raw WebSocket of the closing service closes with 3000 "Go away!"', async () => {
    const socket = await openSocket(toWs(`${closing}/websocket`));
    assert.deepEqual(await socket.closed(), { code: 3000, reason: 'Go away!' });
  });
});

describe('JSON encoding', () => {
  /** The characters in the inclusive ranges given, as one string. */
  const charsIn = (...ranges) => ranges.flatMap(([from, to]) => {
    const chars = [];
    for (let code = from; code <= to; code++) chars.push(String.fromCharCode(code));
    return chars;
  }).join('');

  test('the server escapes the characters SockJS clients must not see raw', async () => {
    // Controls, zero-width and bidi marks, line and paragraph separators,
    // invisible operators and specials; sent raw where JSON allows it.
    const mustEscape = [[0x00, 0x1f], [0x200c, 0x200f], [0x2028, 0x202f], [0x2060, 0x206f], [0xfff0, 0xffff]];
    const text = charsIn(...mustEscape);
    const url = freshSession(echo);
    await openPolling(url);
    await xhrSend(url, JSON.stringify([text]));
    const body = await poll(url);
    assert.ok(body.startsWith('a[') && body.endsWith(']\n'), 'one a frame');
    const frame = body.slice(0, -1);
    const hex = (code) => `\\u{${code.toString(16)}}`;
    const raw = new RegExp(`[${mustEscape.map(([from, to]) => `${hex(from)}-${hex(to)}`).join('')}]`, 'u');
    assert.equal(raw.exec(frame), null, 'none of them travels raw');
    assert.deepEqual(JSON.parse(frame.slice(1)), [text]);
  });

  test('the server decodes every character a client sends as a JSON escape', async () => {
    // All of the BMP but lone surrogates, in messages of 4096 characters,
    // plus characters beyond it as escaped surrogate pairs.
    const everything = charsIn([0x0000, 0xd7ff], [0xe000, 0xffff]);
    const messages = [];
    for (let at = 0; at < everything.length; at += 4096) messages.push(everything.slice(at, at + 4096));
    messages.push(String.fromCodePoint(0x10000, 0x1f600, 0x10ffff));
    const escape = (text) => [...text].map((char) => {
      let units = '';
      for (let i = 0; i < char.length; i++) units += `\\u${char.charCodeAt(i).toString(16).padStart(4, '0')}`;
      return units;
    }).join('');
    const url = freshSession(echo);
    await openPolling(url);
    for (const message of messages) await xhrSend(url, `["${escape(message)}"]`);
    const body = await poll(url);
    assert.ok(body.startsWith('a[') && body.endsWith(']\n'), 'one a frame');
    assert.deepEqual(JSON.parse(body.slice(1)), messages);
  });

  test('the server decodes characters sent as raw UTF-8, beyond the BMP too', async () => {
    const text = `é€ \u{1f600} \u{10ffff} ${charsIn([0x3040, 0x309f])}`;
    const url = freshSession(echo);
    await openPolling(url);
    await xhrSend(url, JSON.stringify([text]));
    assert.deepEqual(JSON.parse((await poll(url)).slice(1)), [text]);
  });
});

describe('handling close', () => {
  test('when the application closes, the stream and the next one get the close frame and end', async () => {
    const url = freshSession(closing);
    const first = await openXhrStream(url);
    assert.equal(await first.next(), 'o\n');
    assert.equal(await first.next(), `${GO_AWAY}\n`);
    const second = await openXhrStream(url);
    assert.equal(await second.next(), `${GO_AWAY}\n`);
    assert.equal(await first.next(), '', 'the first response ended');
    assert.equal(await second.next(), '', 'the second response ended');
  });

  test('a second stream on a session gets c[2010,...] and ends, and the first stream goes on', async () => {
    const url = freshSession(echo);
    const first = await openXhrStream(url);
    assert.equal(await first.next(), 'o\n');
    const second = await openXhrStream(url);
    assert.equal(await second.next(), `${STILL_OPEN}\n`);
    assert.equal(await second.next(), '', 'the second response ended');
    await xhrSend(url, '["x"]');
    assert.equal(await first.next(), 'a["x"]\n');
  });

  test('after the client cuts an xhr stream off, the next stream gets c[1002,"Connection interrupted"]', async () => {
    const url = freshSession(echo);
    const first = await openXhrStream(url);
    assert.equal(await first.next(), 'o\n');
    const second = await openXhrStream(url);
    assert.equal(await second.next(), `${STILL_OPEN}\n`);
    assert.equal(await second.next(), '');
    first.close();
    await sleep(100); // for the server to see the connection go
    const third = await openXhrStream(url);
    assert.equal(await third.next(), `${INTERRUPTED}\n`);
  });

  test('after the client cuts a waiting xhr poll off, the next poll gets c[1002,"Connection interrupted"]', async () => {
    const url = freshSession(echo);
    await openPolling(url);
    const waiting = await Wire.open(url);
    sendRequest(waiting, 'POST', `${url}/xhr`);
    await sleep(250);
    assert.equal(await poll(url), `${STILL_OPEN}\n`);
    waiting.close();
    await sleep(100); // for the server to see the connection go
    assert.equal(await poll(url), `${INTERRUPTED}\n`);
  });
});

describe('HTTP/1.0', () => {
  test('an HTTP/1.0 request gets the greeting unchunked and the server closes the connection', async () => {
    const wire = await Wire.open(echo);
    const response = await exchange(wire, 'GET', echo, { version: '1.0' });
    assert.equal(response.status, 200);
    assert.ok(['1.0', '1.1'].includes(response.version), `HTTP/${response.version}`);
    assert.equal(response.headers['transfer-encoding'], undefined, 'no chunking in HTTP/1.0');
    assert.equal(response.body, GREETING);
    await wire.assertClosed();
  });

  test('an HTTP/1.0 keep-alive request gets a Content-Length and a kept connection, or a close', async () => {
    const wire = await Wire.open(echo);
    const keepAlive = { version: '1.0', headers: { Connection: 'Keep-Alive' } };
    const response = await exchange(wire, 'GET', echo, keepAlive);
    assert.equal(response.status, 200);
    assert.equal(response.headers['transfer-encoding'], undefined, 'no chunking in HTTP/1.0');
    assert.equal(response.body, GREETING);
    const connection = (response.headers.connection ?? '').toLowerCase();
    if (response.headers['content-length'] === undefined || connection !== 'keep-alive') {
      assert.ok(response.headers['content-length'] !== undefined || connection === 'close',
        'without a Content-Length the response says Connection: close');
      await wire.assertClosed();
    } else {
      assert.equal(response.headers['content-length'], '19');
      const again = await exchange(wire, 'GET', echo, keepAlive);
      assert.equal(again.status, 200);
      assert.equal(again.body, GREETING);
    }
  });

  test('an HTTP/1.0 stream is neither chunked nor sized, and ends with the connection', async () => {
    const url = freshSession(closing);
    const wire = await Wire.open(url);
    sendRequest(wire, 'POST', `${url}/xhr_streaming`, { version: '1.0', headers: { Connection: 'Keep-Alive' } });
    const head = await readHead(wire);
    assert.equal(head.status, 200);
    assert.equal(head.headers['transfer-encoding'], undefined, 'no chunking in HTTP/1.0');
    assert.equal(head.headers['content-length'], undefined, 'no Content-Length on a stream');
    assert.equal((await wire.bytes(2049, 'the prelude')).toString(), `${'h'.repeat(2048)}\n`);
    assert.equal((await wire.bytes(2, 'the open frame')).toString(), 'o\n');
    assert.equal((await wire.bytes(GO_AWAY.length + 1, 'the close frame')).toString(), `${GO_AWAY}\n`);
    await wire.assertClosed();
  });
});

describe('HTTP/1.1', () => {
  test('an HTTP/1.1 response is sized or chunked and the connection stays open for another', async () => {
    const wire = await Wire.open(echo);
    const keepAlive = { headers: { Connection: 'Keep-Alive' } };
    const response = await exchange(wire, 'GET', echo, keepAlive);
    assert.equal(response.status, 200);
    assert.equal(response.version, '1.1');
    assert.ok(['keep-alive', ''].includes((response.headers.connection ?? '').toLowerCase()),
      `the connection is kept, not ${response.headers.connection}`);
    if (response.headers['content-length'] !== undefined) {
      assert.equal(response.headers['content-length'], '19');
      assert.equal(response.headers['transfer-encoding'], undefined, 'not both sized and chunked');
    } else {
      assert.equal(response.headers['transfer-encoding']?.toLowerCase(), 'chunked');
    }
    assert.equal(response.body, GREETING);
    const again = await exchange(wire, 'GET', echo, keepAlive);
    assert.equal(again.status, 200);
    assert.equal(again.body, GREETING);
  });

  test('an HTTP/1.1 stream is chunked, one frame a chunk, and ends with the last chunk', async () => {
    const url = freshSession(closing);
    const stream = await openXhrStream(url, { headers: { Connection: 'Keep-Alive' } });
    assert.equal(stream.headers['transfer-encoding']?.toLowerCase(), 'chunked');
    assert.equal(stream.headers['content-length'], undefined, 'no Content-Length on a stream');
    assert.equal(await stream.next(), 'o\n');
    assert.equal(await stream.next(), `${GO_AWAY}\n`);
    assert.equal(await stream.next(), '', 'the last chunk');
  });
});
