// A SockJS client that vanishes: connects STOMP.js over sockjs-client with
// the transport named by argv[3] to the relay at argv[2] as user argv[4],
// subscribes to its user queue, prints "ready", and kills itself with
// SIGKILL, saying goodbye to no one. Run by sockjs.test.mjs.
import { Client } from '@stomp/stompjs';
import SockJS from 'sockjs-client';

const [url, transport, user] = process.argv.slice(2);
const client = new Client({
  webSocketFactory: () => new SockJS(url, null, { transports: [transport] }),
  connectHeaders: { login: user },
  reconnectDelay: 0,
  heartbeatIncoming: 0,
  heartbeatOutgoing: 0,
});
client.onConnect = () => {
  client.watchForReceipt('subscribed', () => {
    console.log('ready');
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), 100);
  });
  client.subscribe('/user/queue/inbox', () => {}, { receipt: 'subscribed' });
};
client.activate();
