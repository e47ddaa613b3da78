// The stomp-relay demo: a room chat, private messages, notifications sent
// through the HTTP API and who is online, over STOMP.js on WebSocket or
// SockJS. Plain browser JavaScript; STOMP.js and sockjs-client are served
// by the relay from vendor/ (see build.rs).
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

const state = {
  client: null,
  user: null,
  room: null,
  roomSubscription: null,
  onlineTimer: null,
  // The last position (x-stream-offset) seen at each user destination, given
  // back when STOMP.js reconnects: the relay then replays what was missed.
  positions: {},
  config: { ws_path: '/ws', sockjs_path: '/sockjs' },
};

/** The relay says where its endpoints are; the defaults match its own. */
async function loadConfig() {
  try {
    const response = await fetch('config.json', { cache: 'no-store' });
    if (response.ok) state.config = await response.json();
  } catch (error) {
    console.warn('no config.json, using the default endpoints', error);
  }
}

function setStatus(stateName, text) {
  const status = $('status');
  status.className = `status ${stateName}`;
  status.dataset.state = stateName;
  status.textContent = text;
}

/** Appends a line to a log, as text (never as HTML). */
function log(listId, who, text, system = false) {
  const list = $(listId);
  const item = document.createElement('li');
  if (system) item.className = 'system';
  if (who) {
    const name = document.createElement('span');
    name.className = 'who';
    name.textContent = who;
    item.append(name);
  }
  item.append(document.createTextNode(text));
  list.append(item);
  list.scrollTop = list.scrollHeight;
}

/** Room names become one word of a topic key. */
function roomKey(name) {
  return (name || 'general').toLowerCase().replace(/[^a-z0-9_-]/g, '-').slice(0, 32) || 'general';
}

function bodyText(message) {
  try {
    const parsed = JSON.parse(message.body);
    return typeof parsed === 'object' && parsed && 'text' in parsed ? String(parsed.text) : message.body;
  } catch {
    return message.body;
  }
}

function joinRoom(name) {
  const room = roomKey(name);
  if (!state.client || !state.client.connected || room === state.room) return;
  if (state.roomSubscription) state.roomSubscription.unsubscribe();
  state.room = room;
  $('room').value = room;
  state.roomSubscription = state.client.subscribe(`/topic/chat.${room}`, (message) => {
    log('chat-log', message.headers['user-name'] || 'someone', bodyText(message));
  });
  log('chat-log', null, `joined #${room}`, true);
}

/**
 * Subscribes to one of the user's own destinations from its last position,
 * so that a reconnect misses nothing; says so when the relay could not
 * replay everything (x-stream-recovered: false).
 */
function subscribeFromLastPosition(destination, listId, show) {
  const last = state.positions[destination];
  const headers = last ? { 'x-stream-offset': last } : {};
  state.client.subscribe(destination, (message) => {
    if (message.headers['x-stream-recovered'] === 'false') {
      log(listId, null, 'some messages were missed while away', true);
    }
    if (message.headers['x-stream-offset']) state.positions[destination] = message.headers['x-stream-offset'];
    show(message);
  }, headers);
}

function connect(user, passcode, transport) {
  // Positions are the user's own: a new login starts afresh.
  state.positions = {};
  const sockjsTransport = params.get('sockjs_transport');
  const client = new StompJs.Client({
    connectHeaders: passcode ? { login: user, passcode } : { login: user },
    reconnectDelay: 2000,
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
  });
  if (transport === 'sockjs') {
    const options = sockjsTransport ? { transports: [sockjsTransport] } : {};
    client.webSocketFactory = () => new SockJS(`${location.origin}${state.config.sockjs_path}`, null, options);
  } else {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    client.brokerURL = `${scheme}://${location.host}${state.config.ws_path}`;
  }

  client.onConnect = (frame) => {
    state.user = frame.headers['user-name'] || user;
    setStatus('online', `online as ${state.user} (${transport === 'sockjs' ? 'SockJS' : 'WebSocket'})`);
    state.room = null;
    joinRoom($('room').value);
    subscribeFromLastPosition('/user/queue/private', 'private-log', (message) => {
      log('private-log', `${message.headers['user-name'] || 'someone'} →`, bodyText(message));
    });
    subscribeFromLastPosition('/user/queue/notifications', 'notification-log', (message) => {
      log('notification-log', null, bodyText(message));
    });
    refreshOnline();
  };
  client.onWebSocketClose = () => {
    if (state.client === client) setStatus('connecting', 'reconnecting…');
  };
  client.onStompError = (frame) => {
    const reason = frame.headers.message || 'error';
    log('chat-log', null, `the relay refused: ${reason}. ${frame.body || ''}`, true);
    setStatus('offline', reason);
  };

  state.client = client;
  setStatus('connecting', 'connecting…');
  client.activate();
}

async function refreshOnline() {
  if (!state.client) return;
  try {
    const response = await fetch('api/v1/users', { cache: 'no-store' });
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    const { users } = await response.json();
    const list = $('online');
    list.replaceChildren(...users.map(({ user, sessions }) => {
      const item = document.createElement('li');
      item.textContent = sessions > 1 ? `${user} (${sessions})` : user;
      if (user === state.user) item.className = 'me';
      return item;
    }));
    $('online-hint').textContent = '';
  } catch (error) {
    $('online-hint').textContent = `presence unavailable: ${error.message}`;
  }
}

function signIn(event) {
  event.preventDefault();
  const user = $('user').value.trim();
  if (!user) return;
  $('sign-in').classList.add('hidden');
  $('app').classList.remove('hidden');
  connect(user, $('passcode').value, $('transport').value);
  clearInterval(state.onlineTimer);
  state.onlineTimer = setInterval(refreshOnline, 3000);
}

async function signOut() {
  clearInterval(state.onlineTimer);
  const client = state.client;
  state.client = null;
  if (client) await client.deactivate();
  setStatus('offline', 'offline');
  $('app').classList.add('hidden');
  $('sign-in').classList.remove('hidden');
}

function sendChat(event) {
  event.preventDefault();
  const text = $('chat-text').value.trim();
  if (!text || !state.client?.connected) return;
  state.client.publish({
    destination: `/topic/chat.${state.room}`,
    body: JSON.stringify({ text }),
    headers: { 'content-type': 'application/json' },
  });
  $('chat-text').value = '';
}

function sendPrivate(event) {
  event.preventDefault();
  const to = $('private-to').value.trim();
  const text = $('private-text').value.trim();
  if (!to || !text || !state.client?.connected) return;
  state.client.publish({
    destination: `/user/${encodeURIComponent(to)}/queue/private`,
    body: JSON.stringify({ text }),
    headers: { 'content-type': 'application/json' },
  });
  log('private-log', `→ ${to}`, text);
  $('private-text').value = '';
}

async function sendNotification(event) {
  event.preventDefault();
  const to = $('notify-to').value.trim();
  const text = $('notify-text').value.trim();
  if (!to || !text) return;
  const hint = $('notify-result');
  try {
    const response = await fetch(`api/v1/users/${encodeURIComponent(to)}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ destination: 'notifications', body: { text }, persist: true }),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    hint.textContent = answer.kept
      ? `${to} is offline: kept until they come back`
      : `delivered to ${answer.sessions} session(s) of ${to}`;
    $('notify-text').value = '';
  } catch (error) {
    hint.textContent = `not sent: ${error.message}`;
  }
}

/** A relay built without Node.js serves the page without its libraries. */
function librariesMissing() {
  const missing = [['StompJs', '@stomp/stompjs'], ['SockJS', 'sockjs-client']]
    .filter(([global]) => typeof window[global] === 'undefined')
    .map(([, name]) => name);
  if (missing.length === 0) return false;
  setStatus('offline', 'demo unavailable');
  const note = document.createElement('p');
  note.className = 'card missing';
  note.textContent = `This relay was built without ${missing.join(' and ')}: install Node.js and npm on the machine that builds it (Debian: apt-get install nodejs npm), then build it again (cargo build --release). The relay itself works; only this page needs them.`;
  $('sign-in').replaceWith(note);
  return true;
}

document.addEventListener('DOMContentLoaded', async () => {
  if (librariesMissing()) return;
  await loadConfig();
  if (params.get('transport') === 'sockjs') $('transport').value = 'sockjs';
  $('sign-in').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('chat-form').addEventListener('submit', sendChat);
  $('private-form').addEventListener('submit', sendPrivate);
  $('notify-form').addEventListener('submit', sendNotification);
  $('room').addEventListener('change', (event) => joinRoom(event.target.value));
  $('user').focus();
});
