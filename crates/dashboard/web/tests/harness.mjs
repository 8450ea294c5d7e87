// What the dashboard's browser tests share: a real `volley up` (free port,
// fresh data directory, API keys of two namespaces, alpha and beta), the
// machine's Chromium driven by playwright-core, the API called from node, and
// screenshots kept as artefacts. Every wait has a timeout.
//
// Missing Chromium or volley binary: the tests are skipped with a notice on a
// developer's machine, and fail under CI (CI=true).

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../../../..');

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const VOLLEY = process.env.VOLLEY_BIN ?? join(homedir(), '.cache/volley/target/debug/volley');
export const ARTIFACTS = join(process.env.VOLLEY_ARTIFACTS ?? join(repo, 'target/artifacts'), 'dashboard');

/**
 * Why these tests cannot run here, or false. Under CI a missing piece is an
 * error, not a reason to skip.
 */
export function unavailable() {
  const missing = [];
  if (!existsSync(CHROMIUM)) missing.push(`Chromium is not at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM)`);
  if (!existsSync(VOLLEY)) missing.push(`the volley binary is not at ${VOLLEY} (cargo build -p volley, or set VOLLEY_BIN)`);
  if (!missing.length) return false;
  const reason = missing.join('; ');
  if (process.env.CI === 'true') throw new Error(`the dashboard's browser tests cannot run: ${reason}`);
  console.error(`notice: skipping the dashboard's browser tests: ${reason}`);
  return reason;
}

/** Polls `probe` until it returns a truthy value (returned) or `ms` pass (thrown, saying `what`). */
export async function waitFor(what, probe, ms = 30000, every = 100) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/**
 * Starts `volley up` (with `args` added) and waits until it serves and an invoker is ready.
 * Returns {url, keys: {alpha, beta}, call(key, method, path, body), burst(key, request), waitFinal(key, id), stop()}.
 */
export async function startPlatform({ args = [], slots = 64 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'volley-dashboard-'));
  const keys = { alpha: randomBytes(24).toString('hex'), beta: randomBytes(24).toString('hex') };
  const keysFile = join(dir, 'api-keys');
  writeFileSync(keysFile, `alpha ${keys.alpha}\nbeta ${keys.beta}\n`, { mode: 0o600 });
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(VOLLEY, ['up', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data'), '--slots', String(slots), '--api-keys', keysFile, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk) => { output = (output + chunk).slice(-20000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  child.on('exit', (code, sig) => { exited = `exited with ${code ?? sig}`; });

  const call = async (key, method, path, body) => {
    const res = await fetch(url + path, {
      method,
      headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, body: json ?? text };
  };

  const stop = async () => {
    if (exited === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10000);
      await new Promise((r) => (exited !== null ? r() : child.once('exit', r)));
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitFor('volley up to answer /healthz', async () => {
      if (exited) throw new Error(`volley up ${exited}: ${output}`);
      return (await fetch(`${url}/healthz`)).ok;
    }, 90000);
    await waitFor('an invoker to be ready', async () => {
      if (exited) throw new Error(`volley up ${exited}: ${output}`);
      const { status, body } = await call(keys.alpha, 'GET', '/v1/invokers');
      return status === 200 && body.some((i) => i.status === 'ready');
    }, 90000);
  } catch (err) {
    await stop();
    throw err;
  }

  const burst = async (key, request) => {
    const { status, body } = await call(key, 'POST', '/v1/bursts', request);
    if (status !== 201) throw new Error(`POST /v1/bursts answered ${status}: ${JSON.stringify(body)}`);
    return body;
  };
  const waitFinal = (key, id, ms = 90000) => waitFor(`burst ${id} to end`, async () => {
    const { body } = await call(key, 'GET', `/v1/bursts/${id}`);
    return ['succeeded', 'failed', 'cancelled'].includes(body?.state) && body;
  }, ms, 200);

  return { url, keys, call, burst, waitFinal, stop, output: () => output };
}

/** The machine's Chromium, headless (as root it needs --no-sandbox). */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/** A fresh page signed in as `key` through the sign-in form, on the overview. */
export async function signedIn(browser, platform, key, { colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, colorScheme });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  const problems = [];
  page.on('pageerror', (err) => problems.push(err.message));
  // The browser logs every refused request (401 before signing in, 404 of a
  // missing burst) as an error: those are answers, not problems of the page.
  page.on('console', (msg) => { if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(msg.text()); });
  page.problems = problems;
  await page.goto(`${platform.url}/#/`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#burst-counts').waitFor();
  return page;
}

/** Saves a PNG of the page under the artefacts directory. */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}
