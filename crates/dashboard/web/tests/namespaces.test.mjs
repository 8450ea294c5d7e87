// The bursts list (filters and id search over server-side pages) and that a
// namespace sees only its own bursts.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { unavailable, startPlatform, launchBrowser, signedIn, screenshot, waitFor } from './harness.mjs';

const skip = unavailable();

describe('the bursts list', { skip }, () => {
  let platform;
  let browser;
  let alpha;
  let hellos = [];
  let failed;
  let betas;
  before(async () => {
    platform = await startPlatform();
    browser = await launchBrowser();
    alpha = platform.keys.alpha;
    for (let i = 0; i < 30; i += 1) {
      hellos.push(await platform.burst(alpha, { function: 'hello', workers: 1, granularity: 1, params: {} }));
    }
    failed = await platform.burst(alpha, { function: 'sleep', workers: 2, granularity: 2, params: { seconds: 0.1, fail_rank: 1 } });
    betas = await platform.burst(platform.keys.beta, { function: 'hello', workers: 1, granularity: 1, params: {} });
    for (const b of [...hellos, failed]) await platform.waitFinal(alpha, b.id);
    await platform.waitFinal(platform.keys.beta, betas.id);
  });
  after(async () => {
    await browser?.close();
    await platform?.stop();
  });

  const ids = (page) => page.locator('.vlist a.vrow').evaluateAll((rows) => rows.map((r) => r.dataset.id));

  it('lists the namespace\'s bursts, filters by state and searches by id', async () => {
    const page = await signedIn(browser, platform, alpha);
    await page.goto(`${platform.url}/#/bursts`);
    const status = page.locator('#bursts-status');
    await waitFor('31 bursts', async () => (await status.innerText()).startsWith('31 bursts'));
    await page.locator(`.vlist a.vrow[data-id="${hellos[29].id}"]`).waitFor();
    await screenshot(page, 'bursts-list');

    await page.getByRole('checkbox', { name: 'failed' }).check();
    await waitFor('one failed burst', async () => (await status.innerText()).startsWith('1 burst match'));
    assert.deepEqual(await ids(page), [failed.id]);
    assert.match(await page.evaluate(() => location.hash), /state=failed/);
    await page.getByRole('checkbox', { name: 'failed' }).uncheck();
    await waitFor('31 bursts again', async () => (await status.innerText()).startsWith('31 bursts'));

    const wanted = hellos[7].id;
    const prefix = wanted.slice(0, Math.max(1, wanted.length - 2));
    await page.getByLabel('Search by id').fill(prefix);
    await waitFor('the searched burst alone (or with its id-prefix siblings)', async () => {
      const shown = await ids(page);
      return shown.includes(wanted) && shown.every((id) => id.startsWith(prefix)) && shown.length < 31;
    });
  });

  it('rows are links reached by keyboard', async () => {
    const page = await signedIn(browser, platform, alpha);
    await page.goto(`${platform.url}/#/bursts`);
    await page.locator('.vlist a.vrow').first().waitFor();
    await page.getByLabel('Search by id').focus();
    await waitFor('Tab to reach the first row', async () => {
      await page.keyboard.press('Tab');
      return page.evaluate(() => document.activeElement?.classList.contains('vrow'));
    }, 10000, 0);
    const first = await page.evaluate(() => document.activeElement.dataset.id);
    await page.keyboard.press('ArrowDown');
    const second = await page.evaluate(() => document.activeElement.dataset.id);
    assert.notEqual(first, second);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: `Burst ${second}` }).waitFor();
    await page.context().close();
  });

  it('does not show another namespace\'s burst', async () => {
    const page = await signedIn(browser, platform, alpha);
    await page.goto(`${platform.url}/#/bursts`);
    await page.locator('.vlist a.vrow').first().waitFor();
    assert.ok(!(await ids(page)).includes(betas.id));
    await page.getByLabel('Search by id').fill(betas.id);
    await waitFor('no match', async () => (await page.locator('#bursts-status').innerText()).startsWith('0 bursts'));

    await page.goto(`${platform.url}/#/bursts/${betas.id}`);
    await page.getByRole('heading', { name: 'No such burst' }).waitFor();
    assert.equal(await page.locator('#burst-request').count(), 0);
    assert.equal(await page.locator('#timeline-summary').count(), 0);

    // Beta sees it.
    const asBeta = await signedIn(browser, platform, platform.keys.beta);
    await asBeta.goto(`${platform.url}/#/bursts/${betas.id}`);
    await asBeta.locator('#burst-request').waitFor();
    await asBeta.context().close();
    await page.context().close();
  });
});
