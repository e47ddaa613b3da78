// The web demo in a real browser: headless Chromium (Debian's package)
// driven by playwright-core. tests/it/browser.rs starts two relay nodes of one
// cluster and runs this file with RELAY_A_URL and RELAY_B_URL set; two
// browsers, one on each node, exchange a chat message and a private
// message, over WebSocket and then over SockJS forced to xhr-streaming.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const nodeA = process.env.RELAY_A_URL;
const nodeB = process.env.RELAY_B_URL;
const artifacts = process.env.ARTIFACTS_DIR ?? 'artifacts';
assert.ok(nodeA && nodeB, 'RELAY_A_URL and RELAY_B_URL must name two relay nodes');

let browser;
before(async () => {
  mkdirSync(artifacts, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
});
after(async () => { await browser?.close(); });

const PATIENCE = 10_000;

/** Opens the demo on `node` in a browser of its own and signs in. */
async function signIn(node, query, user) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (error) => console.error(`[${user}] page error:`, error));
  await page.goto(`${node}/${query}`);
  await page.fill('#user', user);
  await page.click('#sign-in button[type=submit]');
  await page.waitForSelector('#status[data-state=online]', { timeout: PATIENCE });
  return { context, page };
}

async function joinRoom(page, room) {
  await page.fill('#room', room);
  await page.dispatchEvent('#room', 'change');
  await page.waitForSelector(`#chat-log li:has-text("joined #${room}")`, { timeout: PATIENCE });
}

const modes = [
  { name: 'WebSocket', query: '' },
  { name: 'SockJS xhr-streaming', query: '?transport=sockjs&sockjs_transport=xhr-streaming' },
];

for (const mode of modes) {
  test(`two browsers on two nodes chat and message privately over ${mode.name}`, async () => {
    const run = `${Date.now().toString(36)}${modes.indexOf(mode)}`;
    const [aliceName, bobName, room] = [`alice-${run}`, `bob-${run}`, `room-${run}`];
    const alice = await signIn(nodeA, mode.query, aliceName);
    const bob = await signIn(nodeB, mode.query, bobName);
    try {
      if (mode.query) {
        const transport = await alice.page.$eval('#status', (status) => status.textContent);
        assert.match(transport, /SockJS/);
      }
      await joinRoom(alice.page, room);
      await joinRoom(bob.page, room);
      // The subscriptions are bound in RabbitMQ once their frames are in.
      await alice.page.waitForTimeout(500);

      await alice.page.fill('#chat-text', `hello room from ${aliceName}`);
      await alice.page.click('#chat-form button');
      await bob.page.waitForSelector(`#chat-log li:has-text("hello room from ${aliceName}")`, { timeout: PATIENCE });
      const sender = await bob.page.textContent(`#chat-log li:has-text("hello room from") .who`);
      assert.equal(sender, aliceName, 'the relay stamps the sender');

      await alice.page.fill('#private-to', bobName);
      await alice.page.fill('#private-text', 'just for you');
      await alice.page.click('#private-form button');
      await bob.page.waitForSelector('#private-log li:has-text("just for you")', { timeout: PATIENCE });

      await bob.page.fill('#notify-to', aliceName);
      await bob.page.fill('#notify-text', 'a notification through the API');
      await bob.page.click('#notify-form button');
      await alice.page.waitForSelector('#notification-log li:has-text("a notification through the API")', { timeout: PATIENCE });

      await alice.page.waitForSelector(`#online li:has-text("${bobName}")`, { timeout: PATIENCE });
      const file = `${artifacts}/demo-${mode.name.replace(/[^a-z]+/gi, '-').toLowerCase()}.png`;
      await alice.page.screenshot({ path: file, fullPage: true });
    } finally {
      await alice.context.close();
      await bob.context.close();
    }
  });
}

test('the page is usable at phone width', async () => {
  const context = await browser.newContext({ viewport: { width: 375, height: 740 }, isMobile: true });
  const page = await context.newPage();
  await page.goto(`${nodeA}/`);
  await page.fill('#user', `phone-${Date.now().toString(36)}`);
  await page.click('#sign-in button[type=submit]');
  await page.waitForSelector('#status[data-state=online]', { timeout: PATIENCE });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  await page.screenshot({ path: `${artifacts}/demo-phone.png`, fullPage: true });
  await context.close();
});
