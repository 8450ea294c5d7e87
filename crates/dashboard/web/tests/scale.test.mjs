// The sizes the dashboard is built for: a list of 1,000 bursts (paged on the
// server, only the rows in view in the page) and a burst of 1,024 workers
// (its timeline and worker list filled in live). The times printed are for
// the record; nothing asserts on them (this machine is shared and noisy).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { unavailable, startPlatform, launchBrowser, signedIn, screenshot, waitFor } from './harness.mjs';

const skip = unavailable();
const BURSTS = 1000;
const WORKERS = 1024;

describe('at scale', { skip }, () => {
  let platform;
  let browser;
  let alpha;
  before(async () => {
    platform = await startPlatform({ slots: WORKERS + 64 });
    browser = await launchBrowser();
    alpha = platform.keys.alpha;
  });
  after(async () => {
    await browser?.close();
    await platform?.stop();
  });

  it(`lists ${BURSTS} bursts a page at a time, with only the rows in view in the page`, async () => {
    const ids = [];
    for (let i = 0; i < BURSTS; i += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, () => platform.burst(alpha, { function: 'hello', workers: 1 })));
      ids.push(...batch.map((b) => b.id));
    }
    await waitFor(`${BURSTS} bursts to end`, async () => {
      const { body } = await platform.call(alpha, 'GET', '/v1/bursts/summaries?state=succeeded&limit=1');
      return body.total === BURSTS;
    }, 180000, 500);

    // Ids sort by submit time (to the millisecond; bursts submitted together may tie).
    ids.sort();
    const page = await signedIn(browser, platform, alpha);
    const opened = Date.now();
    await page.goto(`${platform.url}/#/bursts`);
    const status = page.locator('#bursts-status');
    await waitFor('the count', async () => (await status.innerText()).startsWith(`${BURSTS.toLocaleString('en')} bursts`), 30000);
    await page.locator('.vlist a.vrow').first().waitFor();
    const firstRows = Date.now() - opened;
    const drawn = await page.locator('.vlist .vrow').count();
    assert.ok(drawn < 120, `only the rows in view are in the page, not ${drawn}`);
    assert.equal(await page.locator('.vlist a.vrow').first().getAttribute('data-id'), ids[ids.length - 1], 'newest first');

    // To the end of the list: the last page comes from the server as it is reached.
    const scrolled = Date.now();
    await page.locator('.vlist a.vrow').first().focus();
    await page.keyboard.press('End');
    const oldest = page.locator(`.vlist a.vrow[data-id="${ids[0]}"]`);
    await oldest.waitFor({ timeout: 30000 });
    const lastRow = Date.now() - scrolled;
    assert.ok(await page.locator('.vlist .vrow').count() < 120);
    await screenshot(page, 'bursts-1000');
    console.log(`# ${BURSTS} bursts: first rows after ${firstRows} ms, the oldest after End in ${lastRow} ms`);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it(`follows a burst of ${WORKERS} workers live`, async () => {
    const page = await signedIn(browser, platform, alpha);
    const burst = await platform.burst(alpha, { function: 'sleep', workers: WORKERS, granularity: 64, params: { seconds: 3 } });
    const opened = Date.now();
    await page.goto(`${platform.url}/#/bursts/${burst.id}`);
    const summary = page.locator('#timeline-summary');
    await waitFor(`${WORKERS} workers started`, async () => (await summary.innerText()).startsWith(`${WORKERS} of ${WORKERS} workers started`), 90000);
    const started = Date.now() - opened;
    await waitFor('the burst to succeed', async () => (await page.locator('#burst-state').innerText()).includes('succeeded'), 90000);
    await waitFor(`${WORKERS} finished`, async () => (await summary.innerText()).includes(`· ${WORKERS} finished`), 30000);
    const workerRows = await page.locator('#h-workers ~ * .vrow').count();
    assert.ok(workerRows > 0 && workerRows < 120, `the worker list draws the rows in view, not ${workerRows}`);
    // The page still answers: the last worker is a keystroke away.
    await page.locator('#h-workers ~ * .vrow').first().focus();
    await page.keyboard.press('End');
    await page.locator(`#h-workers ~ * .vrow[data-rank="${WORKERS - 1}"]`).waitFor({ timeout: 10000 });
    await screenshot(page, 'burst-1024');
    console.log(`# ${WORKERS} workers: all started on the page ${started} ms after it opened`);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
