// Smoke test of the e2e scaffolding: headless Debian chromium starts here (as root too),
// and the cartero / smtpd.py helpers work.  Run: node tests/e2e/smoke.mjs
import assert from 'node:assert/strict';
import net from 'node:net';

import { run, screenshot, spawnCartero, spawnSmtpd, test } from './lib.mjs';

test('chromium renders a page', async ({ page }) => {
  await page.goto('data:text/html,<h1>hola</h1>');
  assert.equal(await page.locator('h1').textContent(), 'hola');
  const file = await screenshot(page, 'smoke-hola');
  console.log(`#   screenshot: ${file}`);
});

test('cartero and smtpd.py start on 127.0.0.1', async ({ page }) => {
  const smtpd = await spawnSmtpd(['--mode', 'plain']);
  const cartero = await spawnCartero();
  try {
    // The peer greets.
    const greeting = await new Promise((resolve, reject) => {
      const s = net.connect(smtpd.port, '127.0.0.1');
      s.once('data', (d) => {
        s.end('QUIT\r\n');
        resolve(String(d));
      });
      s.once('error', reject);
    });
    assert.match(greeting, /^220 /);

    // The CLI shares the server's data directory.
    const token = await cartero.run(['token', 'create', '--name', 'e2e', '--role', 'sender']);
    assert.equal(token.code, 0, token.stderr);
    assert.match(token.stdout.trim(), /^cartero_/);

    // The browser reaches the server.
    const response = await page.goto(`${cartero.url}/healthz`);
    assert.equal(response.status(), 200);
  } finally {
    await cartero.stop();
    await smtpd.stop();
  }
});

await run();
