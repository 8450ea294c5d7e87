// Real jobs on the dashboard: a TeraSort burst shows its phases and the bytes
// its packs sent each other (the picture the README shows), and a running
// burst is cancelled from its page.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { unavailable, startPlatform, launchBrowser, signedIn, screenshot, waitFor, VOLLEY } from './harness.mjs';

const skip = unavailable();
const run = promisify(execFile);

describe('jobs', { skip }, () => {
  let platform;
  let browser;
  let alpha;
  let data;
  before(async () => {
    data = mkdtempSync(join(tmpdir(), 'volley-dashboard-terasort-'));
    // Sandboxed packs reach only the invoker's local storage directories.
    platform = await startPlatform({ args: ['--local-storage', data] });
    browser = await launchBrowser();
    alpha = platform.keys.alpha;
  });
  after(async () => {
    await browser?.close();
    await platform?.stop();
    if (data) rmSync(data, { recursive: true, force: true });
  });

  it('shows a TeraSort burst with its phases and the bytes between its packs', async () => {
    const input = `file://${data}/in`;
    await run(VOLLEY, ['--controller', platform.url, '--api-key', alpha, 'data', 'gen', 'terasort', '--records', '200000', '--parts', '4', '--to', input], { timeout: 120000 });
    const burst = await platform.burst(alpha, { function: 'terasort', workers: 16, granularity: 4, params: { input, output: `file://${data}/out` } });
    const ended = await platform.waitFinal(alpha, burst.id, 120000);
    assert.equal(ended.state, 'succeeded', JSON.stringify(ended.error));

    const page = await signedIn(browser, platform, alpha);
    await page.goto(`${platform.url}/#/bursts/${burst.id}`);
    await waitFor('the page to show the burst succeeded', async () => (await page.locator('#burst-state').innerText()).includes('succeeded'));
    // Phases: the chart and its table, in the order the job marks them.
    await page.locator('#phases-chart canvas').first().waitFor();
    const names = await page.locator('#phases-table tbody tr td:first-child').allInnerTexts();
    assert.deepEqual(names, ['read', 'sample', 'partition', 'shuffle', 'sort', 'write']);
    // The shuffle crossed packs: remote bytes in the totals, and the matrix drawn.
    const totals = await page.locator('#traffic-totals').innerText();
    assert.match(totals, /Remote \(between packs\): [1-9][\d.]* [KMG]?i?B/, totals);
    await page.locator('#traffic-matrix canvas').first().waitFor();
    await screenshot(page, 'terasort');
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('cancels a running burst from its page', async () => {
    const burst = await platform.burst(alpha, { function: 'sleep', workers: 8, granularity: 4, params: { seconds: 60 } });
    const page = await signedIn(browser, platform, alpha);
    await page.goto(`${platform.url}/#/bursts/${burst.id}`);
    const state = page.locator('#burst-state');
    await waitFor('the burst to run', async () => (await state.innerText()).includes('running'), 60000);
    await page.locator('#cancel-burst').click();
    await waitFor('the page to show the burst cancelled', async () => (await state.innerText()).includes('cancelled'), 30000);
    const { body } = await platform.call(alpha, 'GET', `/v1/bursts/${burst.id}`);
    assert.equal(body.state, 'cancelled');
    await waitFor('the retry button', async () => (await page.locator('#retry-burst').count()) === 1, 10000);
    assert.equal(await page.locator('#cancel-burst').count(), 0);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
