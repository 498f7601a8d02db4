// Browser end-to-end helpers for cartero's web admin UI.
//
//   launch()            Debian's /usr/bin/chromium through playwright-core (no bundled browser)
//   test(name, fn)      register a test; fn({ page, context, browser }) gets a fresh context
//   run()               run the registered tests in order, TAP-ish output, exit 1 on failure
//   screenshot(p, n)    tests/e2e/artifacts/<n>.png
//   spawnCartero()      a real `cartero serve` on 127.0.0.1:0 with a fresh data directory
//   spawnSmtpd(args)    tests/peers/smtpd.py on 127.0.0.1:0, logging mail to <tmp>/mail/log.jsonl
//
// Environment:
//   CARTERO_BIN          the cartero binary (default $CARGO_TARGET_DIR/debug/cartero, else
//                        <repo>/target/debug/cartero)
//   PYTHON               the interpreter for the peers (default python3, as scripts/peers.sh)
//   E2E_ONLY             run only tests whose name contains this text
//   E2E_TEST_TIMEOUT_MS  per-test timeout (default 60000)
//   E2E_KEEP=1           keep the temporary data/mail directories (their paths are printed)
//   E2E_VERBOSE=1        echo the server's and peers' stderr
//
// Nothing but 127.0.0.1 is contacted: browser requests to other hosts are aborted and listed.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const E2E_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(E2E_DIR, '..', '..');
export const ARTIFACTS = path.join(E2E_DIR, 'artifacts');

const KEEP = process.env.E2E_KEEP === '1';
const VERBOSE = process.env.E2E_VERBOSE === '1';

// --- browser -----------------------------------------------------------------------------

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox', // we run as root in CI/containers; chromium refuses to start sandboxed
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches headless Debian chromium. `options` are merged into chromium.launch()'s. */
export async function launch(options = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run scripts/peers.sh (apt-get install chromium)`);
  }
  const { args = [], ...rest } = options;
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    ...rest,
  });
}

function artifactPath(name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const safe = String(name).replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 120);
  return path.join(ARTIFACTS, `${safe}.png`);
}

/** Saves a full-page screenshot to tests/e2e/artifacts/<name>.png and returns its path. */
export async function screenshot(page, name) {
  const file = artifactPath(name);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// --- test runner -------------------------------------------------------------------------

const tests = [];

/** Registers a test. `fn` receives `{ page, context, browser }`. */
export function test(name, fn, contextOptions = {}) {
  tests.push({ name, fn, contextOptions });
}

function isLocal(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    return true;
  }
  if (u.protocol === 'data:' || u.protocol === 'blob:' || u.protocol === 'about:') return true;
  return ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
}

function indent(text) {
  return String(text)
    .split('\n')
    .map((l) => `#   ${l}`)
    .join('\n');
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Runs the registered tests one after another; exits with 1 when any failed. */
export async function run() {
  const only = process.env.E2E_ONLY;
  const selected = only ? tests.filter((t) => t.name.includes(only)) : tests;
  const timeoutMs = Number(process.env.E2E_TEST_TIMEOUT_MS || 60000);
  console.log(`1..${selected.length}`);
  // A failure screenshot from an earlier run would read as a failure of this one.
  if (fs.existsSync(ARTIFACTS)) {
    for (const f of fs.readdirSync(ARTIFACTS)) {
      if (f.startsWith('FAILED-')) fs.rmSync(path.join(ARTIFACTS, f), { force: true });
    }
  }
  let failed = 0;
  const browser = await launch();
  try {
    for (const t of selected) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...t.contextOptions });
      const page = await context.newPage();
      const problems = [];
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(`console.error: ${m.text()}`);
      });
      const blocked = [];
      await context.route('**/*', (route) => {
        const url = route.request().url();
        if (isLocal(url)) return route.continue();
        blocked.push(url);
        return route.abort('blockedbyclient');
      });
      const started = Date.now();
      try {
        await withTimeout(Promise.resolve().then(() => t.fn({ page, context, browser })), timeoutMs, t.name);
        console.log(`ok - ${t.name} (${Date.now() - started} ms)`);
      } catch (err) {
        failed++;
        console.log(`not ok - ${t.name} (${Date.now() - started} ms)`);
        console.log(indent(err?.stack || err));
        try {
          const file = artifactPath(`FAILED-${t.name}`);
          await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
          console.log(`#   screenshot: ${path.relative(process.cwd(), file)}`);
        } catch (e) {
          console.log(`#   (no screenshot: ${e.message.split('\n')[0]})`);
        }
        for (const p of problems) console.log(indent(p));
      }
      for (const url of new Set(blocked)) console.log(`#   blocked non-local request: ${url}`);
      await context.close().catch(() => {});
    }
  } finally {
    await browser.close().catch(() => {});
  }
  console.log(`# ${selected.length - failed} passed, ${failed} failed`);
  cleanupAll();
  process.exit(failed ? 1 : 0);
}

// --- child processes ---------------------------------------------------------------------

// Everything we started, so that a crash or Ctrl-C leaves no server or temp dir behind.
const children = new Set();
const tempDirs = new Set();

function cleanupAll() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
  if (!KEEP) {
    for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
    tempDirs.clear();
  }
}
process.on('exit', cleanupAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    cleanupAll();
    process.exit(130);
  });
}

function makeTempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  if (KEEP) console.log(`# kept: ${dir}`);
  return dir;
}

async function stopChild(child, timeoutMs = 10000) {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }
  children.delete(child);
  return { code: child.exitCode, signal: child.signalCode };
}

/** The cartero binary: $CARTERO_BIN, else $CARGO_TARGET_DIR/debug/cartero, else target/debug. */
export function carteroBinary() {
  if (process.env.CARTERO_BIN) return path.resolve(REPO, process.env.CARTERO_BIN);
  const target = process.env.CARGO_TARGET_DIR
    ? path.resolve(REPO, process.env.CARGO_TARGET_DIR)
    : path.join(REPO, 'target');
  return path.join(target, 'debug', 'cartero');
}

// Variables a developer's shell may carry that would make the server use something other
// than its fresh data directory.
const ISOLATE = [
  'CARTERO_CONFIG',
  'CARTERO_DATA_DIR',
  'CARTERO_DATABASE_URL',
  'CARTERO_MASTER_KEY',
  'CARTERO_FALLBACK_SMTP_URL',
  'CARTERO_LISTEN',
];

// `cartero serve` logs (tracing, to stderr) `cartero is listening address=127.0.0.1:PORT`.
// The JSON format is the easiest to read back; the text one is parsed too, ANSI stripped.
function listeningAddress(line) {
  try {
    const rec = JSON.parse(line);
    if (rec?.fields?.message === 'cartero is listening') return rec.fields.address;
  } catch {
    // not JSON
  }
  // eslint-disable-next-line no-control-regex
  const plain = line.replace(/\x1b\[[0-9;]*m/g, '');
  const m = plain.match(/cartero is listening.*?address=(\S+)/);
  return m ? m[1] : null;
}

/**
 * Starts `<bin> serve` on 127.0.0.1:0 with a fresh data directory and waits for /healthz.
 * Returns { url, port, dataDir, env, logs(), run(args, { input, env }), stop() }.
 */
export async function spawnCartero({ binary, env = {}, timeoutMs = 30000 } = {}) {
  const bin = binary ? path.resolve(REPO, binary) : carteroBinary();
  if (!fs.existsSync(bin)) {
    throw new Error(`cartero binary ${bin} is missing: build it (cargo build) or set CARTERO_BIN`);
  }
  const dataDir = makeTempDir('cartero-e2e-');
  const base = { ...process.env };
  for (const k of ISOLATE) delete base[k];
  // The environment shared by the server and run(): same data directory, same config.
  const sharedEnv = { ...base, CARTERO_DATA_DIR: dataDir, ...env };
  let filter = sharedEnv.CARTERO_LOG ?? 'info,sqlx=warn';
  if (!filter.includes('cartero::app')) filter += ',cartero::app=info'; // keep the listening line
  const serveEnv = {
    CARTERO_LISTEN: '127.0.0.1:0',
    CARTERO_LOG_FORMAT: 'json',
    ...sharedEnv,
    CARTERO_LOG: filter,
  };

  const child = spawn(bin, ['serve'], { cwd: dataDir, env: serveEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const logLines = [];
  child.stdout.on('data', (d) => {
    logLines.push(String(d));
    if (VERBOSE) process.stderr.write(`[cartero stdout] ${d}`);
  });

  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`cartero did not report its address within ${timeoutMs} ms:\n${logLines.join('\n')}`)),
      timeoutMs,
    );
    const rl = readline.createInterface({ input: child.stderr });
    rl.on('line', (line) => {
      logLines.push(line);
      if (VERBOSE) process.stderr.write(`[cartero] ${line}\n`);
      const addr = listeningAddress(line);
      if (addr) {
        clearTimeout(timer);
        resolve(addr);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`cartero serve exited (${code ?? signal}) before listening:\n${logLines.join('\n')}`));
    });
  });
  const url = `http://${address}`;
  const port = Number(address.split(':').pop());

  // The listener is bound before the line is logged; /healthz proves the router is up.
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`cartero at ${url} never answered /healthz`);
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    url,
    port,
    dataDir,
    env: sharedEnv,
    logs: () => logLines.join('\n'),
    /** Runs `<bin> ...args` against the same data directory: { code, stdout, stderr }. */
    run(args, { input, env: extra = {} } = {}) {
      return new Promise((resolve, reject) => {
        const p = spawn(bin, args, { cwd: dataDir, env: { ...sharedEnv, ...extra }, stdio: 'pipe' });
        children.add(p);
        const out = [];
        const err = [];
        p.stdout.on('data', (d) => out.push(d));
        p.stderr.on('data', (d) => err.push(d));
        p.on('error', reject);
        p.on('close', (code, signal) => {
          children.delete(p);
          resolve({
            code: code ?? signal,
            stdout: Buffer.concat(out).toString(),
            stderr: Buffer.concat(err).toString(),
          });
        });
        p.stdin.on('error', () => {}); // a command that never reads stdin may close it first
        p.stdin.end(input ?? '');
      });
    },
    /** SIGTERM (graceful shutdown), SIGKILL after 10 s; removes the data directory. */
    async stop() {
      const result = await stopChild(child);
      if (!KEEP) {
        fs.rmSync(dataDir, { recursive: true, force: true });
        tempDirs.delete(dataDir);
      }
      return result;
    },
  };
}

/**
 * Starts tests/peers/smtpd.py on 127.0.0.1:0 (extra `args` as in tests/peers/README.md, e.g.
 * ['--mode', 'plain', '--auth', 'u:p']). Accepted mail goes to <tmp>/mail/<n>.eml and one
 * JSON line per message to logFile. Returns { port, maildir, logFile, messages(),
 * waitForMessages(n), stop() }.
 */
export async function spawnSmtpd(args = [], { timeoutMs = 20000 } = {}) {
  const python = process.env.PYTHON || 'python3';
  const dir = makeTempDir('cartero-e2e-smtpd-');
  const i = args.indexOf('--maildir');
  const maildir = i >= 0 ? path.resolve(args[i + 1]) : path.join(dir, 'mail');
  const script = path.join(REPO, 'tests', 'peers', 'smtpd.py');
  const argv = [script, '--host', '127.0.0.1', '--port', '0', ...(i >= 0 ? [] : ['--maildir', maildir]), ...args];
  const child = spawn(python, argv, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const errLines = [];
  child.stderr.on('data', (d) => {
    errLines.push(String(d));
    if (VERBOSE) process.stderr.write(`[smtpd] ${d}`);
  });

  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`smtpd.py did not print READY within ${timeoutMs} ms`)), timeoutMs);
    const rl = readline.createInterface({ input: child.stdout });
    rl.once('line', (line) => {
      clearTimeout(timer);
      const m = line.match(/^READY (\d+)/);
      if (m) resolve(Number(m[1]));
      else reject(new Error(`smtpd.py printed ${JSON.stringify(line)} instead of READY`));
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${python}: ${e.message}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(
        new Error(
          `smtpd.py exited (${code}) before READY (is aiosmtpd installed? run scripts/peers.sh):\n${errLines.join('')}`,
        ),
      );
    });
  });

  const logFile = path.join(maildir, 'log.jsonl');
  const messages = () => {
    let text = '';
    try {
      text = fs.readFileSync(logFile, 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .filter(Boolean)
      .flatMap((l) => {
        try {
          return [JSON.parse(l)];
        } catch {
          return [];
        }
      });
  };
  return {
    port,
    maildir,
    logFile,
    messages,
    /** Waits until `n` messages were accepted (or timeoutMs passes) and returns them all. */
    async waitForMessages(n, waitMs = 10000) {
      const end = Date.now() + waitMs;
      for (;;) {
        const got = messages();
        if (got.length >= n || Date.now() > end) return got;
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    /** The raw bytes of the n-th accepted message (1-based). */
    messageBody: (n) => fs.readFileSync(path.join(maildir, `${n}.eml`), 'utf8'),
    async stop() {
      const result = await stopChild(child);
      if (!KEEP) {
        fs.rmSync(dir, { recursive: true, force: true });
        tempDirs.delete(dir);
      }
      return result;
    },
  };
}
