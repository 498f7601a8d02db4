// The web admin in a real browser (Debian's headless Chromium through playwright-core), against a
// real `cartero serve` and a real SMTP server (aiosmtpd with STARTTLS and AUTH, certificate from a
// throw-away CA made with openssl). Everything listens on 127.0.0.1.
//
// Run: node tests/e2e/admin.mjs   (scripts/test.sh runs it after the Rust tests)
// Screenshots of the main pages in Spanish and English land in tests/e2e/artifacts/.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { run, screenshot, spawnCartero, spawnSmtpd, test } from './lib.mjs';

// ----- peers -----------------------------------------------------------------------------
function makePki() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cartero-e2e-pki-'));
  const p = (f) => path.join(dir, f);
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2',
    '-subj', '/CN=cartero e2e test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('leaf.key'), '-out', p('leaf.csr'), '-subj', '/CN=localhost');
  fs.writeFileSync(p('ext.cnf'), 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ssl('x509', '-req', '-in', p('leaf.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('leaf.pem'),
    '-days', '2', '-extfile', p('ext.cnf'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return { ca: p('ca.pem'), cert: p('leaf.pem'), key: p('leaf.key') };
}

const GMAIL_USER = 'ana.garcia@gmail.com';
const GMAIL_PASSWORD = 'abcd efgh ijkl mnop'; // an app password, as Gmail issues them
const OWNER = { email: 'owner@example.com', password: 'propietaria segura 42' };

const pki = makePki();
const smtpd = await spawnSmtpd(['--mode', 'starttls', '--cert', pki.cert, '--key', pki.key,
  '--auth', `${GMAIL_USER}:${GMAIL_PASSWORD}`, '--auth-require-tls']);
const cartero = await spawnCartero({ env: { CARTERO_TLS_CA_FILE: pki.ca } });

async function cli(args, input) {
  const r = await cartero.run(args, input === undefined ? {} : { input });
  assert.equal(r.code, 0, `cartero ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}
await cli(['user', 'add', '--email', OWNER.email, '--role', 'owner', '--password-stdin'], OWNER.password + '\n');
const viewerPassword = await cli(['user', 'add', '--email', 'viewer@example.com', '--role', 'viewer']);
assert.match(viewerPassword, /^[A-Za-z0-9]{24}$/, 'a generated password is printed once');
const senderToken = await cli(['token', 'create', '--name', 'erp', '--role', 'sender']);

// ----- helpers ---------------------------------------------------------------------------
async function newPage(browser, locale, viewport) {
  const context = await browser.newContext({ locale, viewport: viewport || { width: 1280, height: 900 } });
  return watch(await context.newPage());
}

// Collects script errors and missing texts (the page logs those with console.error).
function watch(page) {
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  // Expected 4xx answers (a refused login, a validation error) are logged by the browser too.
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(m.text()); });
  page.problems = problems;
  return page;
}

async function login(page, email, password) {
  await page.goto(cartero.url + '/#/accounts');
  await page.locator('form.login [data-field=email]').fill(email);
  await page.locator('form.login [data-field=password]').fill(password);
  await page.locator('form.login button[type=submit]').click();
  await page.locator('header nav').waitFor();
}

function noConsoleErrors(page) {
  assert.deepEqual(page.problems, [], 'no script errors or missing texts');
}

async function apiSend(body) {
  const r = await fetch(cartero.url + '/v1/messages', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + senderToken, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  assert.equal(r.status, 202, text);
  return JSON.parse(text).id;
}

// ----- tests -----------------------------------------------------------------------------
test('login: Spanish from Accept-Language, English switch, clear errors, CSP set', async ({ page, browser }) => {
  watch(page);
  const response = await page.goto(cartero.url + '/');
  const csp = response.headers()['content-security-policy'];
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  await page.getByRole('heading', { name: 'Iniciar sesión en cartero' }).waitFor();
  await page.getByLabel('Correo electrónico').fill(OWNER.email);
  await page.getByLabel('Contraseña').fill('no es la contraseña');
  await page.getByRole('button', { name: 'Entrar' }).click();
  await page.getByRole('alert').filter({ hasText: 'Correo o contraseña incorrectos.' }).waitFor();
  assert.equal(await page.getByLabel('Correo electrónico').inputValue(), OWNER.email, 'what was typed stays');
  assert.equal(await page.getByLabel('Contraseña').inputValue(), '', 'the password is cleared');
  await screenshot(page, 'es-login');
  await page.getByRole('button', { name: 'EN', exact: true }).click();
  await page.getByRole('heading', { name: 'Log in to cartero' }).waitFor();
  await screenshot(page, 'en-login');
  noConsoleErrors(page);
}, { locale: 'es-ES' });

test('owner: Gmail preset → Probar conexión → wrong password → auth_failed fix → Guardar', async ({ page, browser }) => {
  watch(page);
  await login(page, OWNER.email, OWNER.password);
  await page.getByRole('link', { name: 'Nueva cuenta' }).click();
  await page.getByLabel('Descripción').fill('Gmail de Ana');
  await page.getByLabel('Correo del remitente').fill(GMAIL_USER);
  await page.getByLabel('Nombre del remitente').fill('Ana García');
  await page.getByLabel('Correo del remitente').blur();
  // The address proposes the provider's settings.
  await page.getByRole('button', { name: 'Usar la configuración de Gmail' }).click();
  assert.equal(await page.getByLabel('Servidor SMTP').inputValue(), 'smtp.gmail.com');
  assert.equal(await page.getByLabel('Puerto', { exact: true }).inputValue(), '587');
  assert.equal(await page.getByLabel('Método de encriptación', { exact: true }).inputValue(), 'starttls');
  assert.equal(await page.getByLabel('Usuario', { exact: true }).inputValue(), GMAIL_USER);
  // Choosing the encryption proposes the usual port.
  await page.getByLabel('Método de encriptación', { exact: true }).selectOption('tls');
  assert.equal(await page.getByLabel('Puerto', { exact: true }).inputValue(), '465');
  await page.getByLabel('Método de encriptación', { exact: true }).selectOption('starttls');
  assert.equal(await page.getByLabel('Puerto', { exact: true }).inputValue(), '587');
  // Turning certificate verification off warns.
  await page.getByLabel('Verificar el certificado del servidor').uncheck();
  await page.getByText('Sin verificar el certificado').waitFor();
  await page.getByLabel('Verificar el certificado del servidor').check();
  // This test's "Gmail" is the local aiosmtpd; the IMAP side is not tested here.
  await page.getByLabel('Servidor SMTP').fill('127.0.0.1');
  await page.getByLabel('Puerto', { exact: true }).fill(String(smtpd.port));
  await page.getByLabel('Vigilar el buzón por IMAP').uncheck();
  await page.getByLabel('Contraseña', { exact: true }).fill(GMAIL_PASSWORD);
  await screenshot(page, 'es-account-form');

  const before = smtpd.messages().length;
  await page.getByRole('button', { name: 'Probar conexión' }).click();
  await page.locator('#test-result').getByText('Correo enviado satisfactoriamente').waitFor({ timeout: 30000 });
  const stages = await page.locator('.stages li').evaluateAll((els) => els.map((e) => e.dataset.stage));
  for (const s of ['connect', 'greeting', 'ehlo', 'starttls', 'auth', 'mail_from', 'rcpt_to', 'data']) {
    assert.ok(stages.includes(s), `stage ${s} shown (got ${stages})`);
  }
  assert.equal((await smtpd.waitForMessages(before + 1)).length, before + 1, 'the test message arrived');
  await screenshot(page, 'es-account-test-ok');

  // A wrong password: the diagnosis and its Spanish fix.
  await page.getByLabel('Contraseña', { exact: true }).fill('contraseña equivocada');
  await page.getByRole('button', { name: 'Probar conexión' }).click();
  const diagnosis = page.locator('#test-result [data-code=auth_failed]');
  await diagnosis.waitFor({ timeout: 30000 });
  const text = await diagnosis.innerText();
  assert.match(text, /Cómo arreglarlo/);
  assert.match(text, /contraseña/i);
  assert.ok(!text.includes('contraseña equivocada'), 'the typed password is not echoed');
  const transcript = await page.locator('#test-result pre.transcript').textContent();
  assert.ok(!transcript.includes('contraseña equivocada') && !transcript.includes(GMAIL_PASSWORD), 'the transcript masks AUTH');
  await screenshot(page, 'es-account-test-auth-failed');

  // A validation error shows next to its field and keeps what was typed.
  await page.getByLabel('Contraseña', { exact: true }).fill(GMAIL_PASSWORD);
  await page.getByLabel('Puerto', { exact: true }).fill('99999');
  await page.getByRole('button', { name: 'Guardar' }).click();
  const portError = page.locator('[data-error-for=port]');
  await portError.waitFor();
  assert.match(await portError.textContent(), /puerto/i);
  assert.equal(await page.getByLabel('Descripción').inputValue(), 'Gmail de Ana');
  assert.equal(await page.getByLabel('Puerto', { exact: true }).getAttribute('aria-invalid'), 'true');

  await page.getByLabel('Puerto', { exact: true }).fill(String(smtpd.port));
  await page.getByLabel('Contraseña', { exact: true }).fill(GMAIL_PASSWORD);
  await page.getByRole('button', { name: 'Guardar' }).click();
  await page.getByText('Cuenta guardada').waitFor();
  const row = page.getByRole('row').filter({ hasText: 'Gmail de Ana' });
  await row.waitFor();
  assert.ok(!(await page.content()).includes(GMAIL_PASSWORD), 'no secret in the page');
  await screenshot(page, 'es-accounts');
  // The enabled switch saves at once.
  const toggle = row.getByRole('switch');
  await toggle.uncheck();
  await page.getByText('Cambios guardados.').waitFor();
  await toggle.check();

  // The saved account shows the password as set, never its value.
  await row.getByRole('link', { name: 'Gmail de Ana' }).click();
  assert.equal(await page.getByLabel('Contraseña', { exact: true }).getAttribute('placeholder'), '••• guardada — escriba para cambiarla');
  assert.equal(await page.getByLabel('Contraseña', { exact: true }).inputValue(), '');
  assert.ok(!(await page.content()).includes(GMAIL_PASSWORD), 'no secret in the edit form');
  assert.ok(!page.url().includes(GMAIL_PASSWORD));
  // Probar on the saved account (its stored password) is kept as the account's last test.
  await page.getByRole('button', { name: 'Probar conexión' }).click();
  await page.locator('#test-result').getByText('Correo enviado satisfactoriamente').waitFor({ timeout: 30000 });
  await page.getByRole('link', { name: 'Cancelar' }).click();
  await page.getByRole('row').filter({ hasText: 'Gmail de Ana' }).getByText('correcta').waitFor();
  noConsoleErrors(page);
}, { locale: 'es-ES' });

test('a notification sent through the API is in Mensajes with its transcript', async ({ page }) => {
  watch(page);
  const before = smtpd.messages().length;
  const id = await apiSend({ type: 'system', to: ['cliente@example.com'], subject: 'Factura 2026-118', text: 'Adjuntamos su factura.' });
  await smtpd.waitForMessages(before + 1, 20000);
  await login(page, OWNER.email, OWNER.password);
  await page.getByRole('link', { name: 'Mensajes' }).click();
  // Delivery records its outcome a moment after the server accepted the mail.
  for (let i = 0; i < 50; i++) {
    await page.getByLabel('Estado').selectOption('sent');
    await page.getByRole('button', { name: 'Filtrar' }).click();
    if (await page.getByRole('row').filter({ hasText: 'Factura 2026-118' }).count()) break;
    await page.waitForTimeout(200);
  }
  const row = page.getByRole('row').filter({ hasText: 'Factura 2026-118' });
  assert.match(await row.innerText(), /enviado/);
  await screenshot(page, 'es-messages');
  await row.getByRole('link').click();
  await page.getByRole('heading', { name: `Mensaje ${id}` }).waitFor();
  const transcript = await page.locator('pre.transcript').first().textContent();
  assert.match(transcript, /STARTTLS/);
  assert.match(transcript, /RCPT TO:<cliente@example.com>/);
  assert.ok(!transcript.includes(GMAIL_PASSWORD), 'credentials masked in the delivery transcript');
  await screenshot(page, 'es-message-detail');
  noConsoleErrors(page);
}, { locale: 'es-ES' });

test('a viewer sees everything read-only and every write answers 403', async ({ page, browser }) => {
  watch(page);
  await login(page, 'viewer@example.com', viewerPassword);
  await page.getByText('Read-only: your role (viewer (read-only)) does not allow changes here.').waitFor();
  assert.equal(await page.getByRole('link', { name: 'New account' }).count(), 0);
  const toggle = page.getByRole('switch', { name: 'Enable or disable Gmail de Ana' });
  assert.ok(await toggle.isDisabled());
  await page.getByRole('link', { name: 'Gmail de Ana' }).click();
  await page.getByLabel('SMTP server').waitFor();
  assert.ok(await page.getByLabel('SMTP server').isDisabled());
  assert.equal(await page.getByRole('button', { name: 'Save' }).count(), 0);
  assert.equal(await page.getByRole('button', { name: 'Test connection' }).count(), 0);
  await screenshot(page, 'en-account-read-only');
  // The same permission checks as the API: writes from this session are refused.
  const statuses = await page.evaluate(async () => {
    const s = await (await fetch('/ui/session')).json();
    const call = async (method, url, body) => {
      const r = await fetch(url, { method, headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf }, body: body && JSON.stringify(body) });
      return [r.status, (await r.json()).error.code];
    };
    const accounts = await (await fetch('/v1/accounts')).json();
    return [
      await call('PATCH', '/v1/accounts/' + accounts[0].id, { enabled: false }),
      await call('POST', '/v1/accounts', { name: 'x' }),
      await call('PUT', '/v1/system/fallback', { host: 'smtp.example.com' }),
      await call('PUT', '/v1/templates/x', { en: { subject: 's', text: 't' } }),
      await call('POST', '/v1/users', { email: 'z@example.com', role: 'owner' }),
      await call('POST', '/v1/tokens', { name: 'x', role: 'owner' }),
    ];
  });
  for (const s of statuses) assert.deepEqual(s, [403, 'forbidden']);
  // Without the CSRF token a session cannot write at all.
  const noCsrf = await page.evaluate(async () => {
    const r = await fetch('/v1/accounts', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    return [r.status, (await r.json()).error.code];
  });
  assert.deepEqual(noCsrf, [403, 'csrf_failed']);
  await page.getByRole('link', { name: 'System fallback account' }).click();
  await page.getByText('Changing it needs the defaults.manage permission.').waitFor();
  await page.getByRole('link', { name: 'Users and tokens' }).click();
  await page.getByRole('heading', { name: 'API tokens' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Add user' }).count(), 0);
  noConsoleErrors(page);
}, { locale: 'en-GB' });

test('fallback account: an admin sees it, only defaults.manage (owner) changes it', async ({ page, browser }) => {
  watch(page);
  await cli(['user', 'add', '--email', 'admin@example.com', '--role', 'admin', '--password-stdin'], 'administradora 2026\n');
  const admin = await newPage(browser, 'es-ES');
  await login(admin, 'admin@example.com', 'administradora 2026');
  await admin.getByRole('link', { name: 'Cuenta genérica del sistema' }).click();
  await admin.getByText('Cambiarla requiere el permiso defaults.manage.').waitFor();
  assert.ok(await admin.getByLabel('Servidor SMTP').isDisabled());
  assert.equal(await admin.getByRole('button', { name: 'Guardar' }).count(), 0);
  await admin.context().close();

  await login(page, OWNER.email, OWNER.password);
  await page.getByRole('link', { name: 'Cuenta genérica del sistema' }).click();
  await page.getByText('No hay cuenta genérica').waitFor();
  await page.getByLabel('Correo del remitente').fill('avisos@example.com');
  await page.getByLabel('Servidor SMTP').fill('127.0.0.1');
  await page.getByLabel('Método de encriptación', { exact: true }).selectOption('none');
  await page.getByLabel('Puerto', { exact: true }).fill(String(smtpd.port));
  await page.getByRole('button', { name: 'Guardar' }).click();
  await page.getByText('Definida aquí.').waitFor();
  assert.equal(await page.getByLabel('Servidor SMTP').inputValue(), '127.0.0.1');
  // Probar on the fallback in effect: this server wants AUTH after STARTTLS, which this plain
  // fallback cannot do, and the page says so with the fix.
  await page.getByRole('button', { name: 'Probar conexión' }).click();
  const diagnosis = page.locator('#test-result [data-code]');
  await diagnosis.waitFor({ timeout: 30000 });
  assert.match(await diagnosis.innerText(), /Cómo arreglarlo/);
  await screenshot(page, 'es-fallback');
  noConsoleErrors(page);
}, { locale: 'es-ES' });

test('templates: live preview in es and en; a template that does not render is refused at its field', async ({ page, browser }) => {
  watch(page);
  await login(page, OWNER.email, OWNER.password);
  await page.getByRole('link', { name: 'Plantillas' }).click();
  await page.getByRole('link', { name: 'user_invitation' }).click();
  const es = page.locator('[data-preview=es]');
  await es.waitFor();
  await page.locator('[data-field="es.subject"]').fill('Hola {{ name }}, te damos la bienvenida');
  await es.locator('.preview-subject').filter({ hasText: 'Hola Ana García, te damos la bienvenida' }).waitFor();
  assert.ok(await page.locator('[data-preview=en] .preview-subject').textContent());
  // The HTML part renders in a sandboxed frame, variables escaped.
  await page.frameLocator('[data-preview=es] iframe').locator('body').filter({ hasText: 'Ana García' }).waitFor();
  await screenshot(page, 'es-template-edit');
  await page.locator('[data-field="es.html"]').fill('<p>{% if name %}Hola</p>');
  const err = page.locator('[data-error-for="es.html"]');
  await err.filter({ hasText: /no se puede generar/ }).waitFor();
  await page.getByRole('button', { name: 'Guardar' }).click();
  await err.filter({ hasText: /línea 1/ }).waitFor();
  await page.locator('[data-field="es.html"]').fill('<p>Hola {{ name }}</p>');
  await page.getByRole('button', { name: 'Guardar' }).click();
  await page.getByText('Plantilla guardada.').waitFor();
  assert.match(await page.getByRole('row').filter({ hasText: 'user_invitation' }).innerText(), /del proyecto/);
  noConsoleErrors(page);
}, { locale: 'es-ES' });

test('users and tokens: created from the page, secrets shown once', async ({ page, browser }) => {
  watch(page);
  await login(page, OWNER.email, OWNER.password);
  await page.getByRole('link', { name: 'Usuarios y tokens' }).click();
  const userForm = page.locator('#user-form');
  await userForm.getByLabel('Correo').fill('no-es-un-correo');
  await userForm.getByRole('button', { name: 'Añadir usuario' }).click();
  await userForm.locator('[data-error-for=email]').filter({ hasText: /.+/ }).waitFor();
  await userForm.getByLabel('Correo').fill('luis@example.com');
  await userForm.getByLabel('Rol').selectOption('admin');
  await userForm.getByRole('button', { name: 'Añadir usuario' }).click();
  const password = (await page.locator('#users-status .secret-once').textContent()).trim();
  assert.match(password, /^[A-Za-z0-9]{24}$/);
  const tokenForm = page.locator('#token-form');
  await tokenForm.getByLabel('Nombre (la aplicación que lo usa)').fill('facturación');
  await tokenForm.getByLabel('Rol').selectOption('sender');
  await tokenForm.getByRole('button', { name: 'Crear token' }).click();
  const token = (await page.locator('#tokens-status .secret-once').textContent()).trim();
  assert.match(token, /^cartero_/);
  await screenshot(page, 'es-users');
  // The new user can log in with the generated password.
  const other = await newPage(browser, 'es-ES');
  await login(other, 'luis@example.com', password);
  await other.context().close();
  // Reloading shows neither secret again.
  await page.reload();
  await page.getByRole('heading', { name: 'Tokens de API' }).waitFor();
  const html = await page.content();
  assert.ok(!html.includes(password) && !html.includes(token));
  noConsoleErrors(page);
}, { locale: 'es-ES' });

test('audit log: changes from the page, the API and the CLI, secrets only as "changed"', async ({ page }) => {
  watch(page);
  const reader = await cli(['token', 'create', '--name', 'audit-reader', '--role', 'viewer']);
  const accounts = await (await fetch(cartero.url + '/v1/accounts', { headers: { Authorization: 'Bearer ' + reader } })).json();
  await cli(['account', 'disable', accounts[0].id]);
  await login(page, OWNER.email, OWNER.password);
  await page.getByRole('link', { name: 'Auditoría' }).click();
  await page.locator('tr[data-action="account.create"]').first().waitFor();
  const created = await page.locator('tr[data-action="account.create"]').first().innerText();
  assert.match(created, /user:owner@example.com/);
  assert.match(created, /web/);
  assert.match(created, /password: cambiada/);
  assert.ok(!created.includes(GMAIL_PASSWORD));
  const cliRow = await page.locator('tr[data-action="account.update"]').first().innerText();
  assert.match(cliRow, /consola/);
  assert.match(cliRow, /enabled/);
  for (const action of ['user.create', 'token.create', 'template.save', 'session.login', 'fallback.set']) {
    assert.ok(await page.locator(`tr[data-action="${action}"]`).count(), `${action} is in the audit log`);
  }
  assert.ok(!(await page.content()).includes(GMAIL_PASSWORD));
  await screenshot(page, 'es-audit');
  noConsoleErrors(page);
}, { locale: 'es-ES' });

test('a sender (an application role) is told there is nothing to see, in its language', async ({ page }) => {
  watch(page);
  await cli(['user', 'add', '--email', 'app@example.com', '--role', 'sender', '--password-stdin'], 'aplicacion de facturas\n');
  await page.goto(cartero.url + '/');
  await page.getByLabel('Correo electrónico').fill('app@example.com');
  await page.getByLabel('Contraseña').fill('aplicacion de facturas');
  await page.getByRole('button', { name: 'Entrar' }).click();
  await page.getByText('Su rol (emisor (solo enviar)) sirve para que una aplicación envíe correo').waitFor();
  assert.equal(await page.locator('header nav').count(), 0, 'no pages in the menu');
  await page.getByRole('button', { name: 'Cerrar sesión' }).waitFor();
  noConsoleErrors(page);
}, { locale: 'es-ES' });

test('typing while the login page still checks the session keeps each value in its field', async ({ page }) => {
  watch(page);
  // The real /ui/session answer, held back in the browser: the page must not move the focus
  // when it arrives (it once did, and what was typed into the password went to the email field).
  let release;
  const held = new Promise((r) => { release = r; });
  // The first check decides to show the login form; the second is the form's own.
  let checks = 0;
  await page.route('**/ui/session', async (route) => { if (++checks > 1) await held; await route.continue(); });
  await page.goto(cartero.url + '/#/accounts');
  await page.locator('form.login [data-field=email]').fill(OWNER.email);
  await page.locator('form.login [data-field=password]').focus();
  release();
  await page.waitForLoadState('networkidle');
  await page.keyboard.type(OWNER.password);
  await page.unroute('**/ui/session');
  assert.equal(await page.locator('form.login [data-field=email]').inputValue(), OWNER.email);
  assert.equal(await page.locator('form.login [data-field=password]').inputValue(), OWNER.password);
  await page.locator('form.login button[type=submit]').click();
  await page.locator('header nav').waitFor();
  noConsoleErrors(page);
}, { locale: 'es-ES' });

test('login attempts are throttled per email', async ({ page, browser }) => {
  watch(page);
  await page.goto(cartero.url + '/');
  for (let i = 0; i < 6; i++) {
    await page.locator('form.login [data-field=email]').fill('nadie@example.com');
    await page.locator('form.login [data-field=password]').fill('intento ' + i);
    await page.locator('form.login button[type=submit]').click();
    await page.getByRole('alert').waitFor();
  }
  await page.getByRole('alert').filter({ hasText: 'Demasiados intentos de acceso' }).waitFor();
}, { locale: 'es-ES' });

test('screenshots of the main pages in both languages, and at phone width', async ({ browser }) => {
  const pages = ['accounts', 'fallback', 'messages', 'templates', 'users', 'audit'];
  for (const [locale, code] of [['es-ES', 'es'], ['en-GB', 'en']]) {
    const page = await newPage(browser, locale);
    await login(page, OWNER.email, OWNER.password);
    for (const p of pages) {
      await page.goto(cartero.url + '/#/' + p);
      await page.locator(`header nav a[href="#/${p}"][aria-current=page]`).waitFor();
      await page.waitForLoadState('networkidle');
      await screenshot(page, `${code}-page-${p}`);
    }
    noConsoleErrors(page);
    await page.context().close();
  }
  const phone = await newPage(browser, 'es-ES', { width: 390, height: 844 });
  await login(phone, OWNER.email, OWNER.password);
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page fits a phone screen (overflow ${overflow}px)`);
  await phone.goto(cartero.url + '/#/accounts/new');
  await phone.getByLabel('Servidor SMTP').waitFor();
  await screenshot(phone, 'es-phone-account-form');
  // Keyboard: after a page load the skip link is the first stop.
  await phone.reload();
  await phone.getByLabel('Servidor SMTP').waitFor();
  await phone.keyboard.press('Tab');
  assert.equal(await phone.evaluate(() => document.activeElement.id), 'skip');
  await phone.keyboard.press('Enter');
  assert.equal(await phone.evaluate(() => document.activeElement.id), 'main', 'the skip link moves focus to the content');
  assert.ok(phone.url().endsWith('#/accounts/new'), 'and stays on the page');
  await phone.context().close();
});

try {
  await run();
} finally {
  await cartero.stop();
  await smtpd.stop();
}
