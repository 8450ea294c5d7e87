// Signing in, the overview, the functions page, the theme toggle and the
// keyboard path through the navigation.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { unavailable, startPlatform, launchBrowser, signedIn, screenshot, waitFor } from './harness.mjs';

const skip = unavailable();

describe('the overview', { skip }, () => {
  let platform;
  let browser;
  before(async () => {
    platform = await startPlatform();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await platform?.stop();
  });

  it('asks for a key, then shows the invoker and the counts', async () => {
    const done = await platform.burst(platform.keys.alpha, { function: 'hello', workers: 2, granularity: 2, params: {} });
    await platform.waitFinal(platform.keys.alpha, done.id);
    const { body: invokers } = await platform.call(platform.keys.alpha, 'GET', '/v1/invokers');
    const page = await signedIn(browser, platform, platform.keys.alpha);

    const invoker = invokers[0];
    const row = page.locator('table.grid tr', { hasText: invoker.registration.name });
    await row.waitFor();
    assert.match(await row.innerText(), new RegExp(`/ ${invoker.registration.slots}\\b`));
    assert.match(await row.innerText(), /ready/);
    const succeeded = page.locator('#burst-counts [data-state="succeeded"] dd');
    await waitFor('the succeeded count to be 1', async () => (await succeeded.innerText()).trim() === '1');
    assert.equal((await page.locator('#burst-counts [data-state="failed"] dd').innerText()).trim(), '0');
    await page.locator('.chart canvas').first().waitFor();
    await screenshot(page, 'overview');

    // Signing out forgets the key: the next page asks again.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key').waitFor();
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('refuses a wrong key and says so', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${platform.url}/#/`);
    await page.getByLabel('API key').fill('x'.repeat(48));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('The controller refused the stored API key').waitFor();
    await context.close();
  });

  it('lists the built-in functions', async () => {
    const page = await signedIn(browser, platform, platform.keys.alpha);
    await page.getByRole('link', { name: 'Functions' }).click();
    const builtins = page.locator('table', { has: page.locator('caption', { hasText: 'Built-in functions' }) });
    await builtins.waitFor();
    const text = await builtins.innerText();
    for (const name of ['hello', 'sleep', 'sum']) assert.match(text, new RegExp(`\\b${name}\\b`));
    await page.context().close();
  });

  it('draws a workflow run as a graph of its steps', async () => {
    const alpha = platform.keys.alpha;
    const source = 'steps:\n  hi: {function: hello, workers: 2}\n  bye: {needs: [hi], function: hello, workers: 1}\n';
    const deployed = await platform.call(alpha, 'PUT', '/v1/workflows/greet', { kind: 'dag', source });
    assert.equal(deployed.status, 200, JSON.stringify(deployed.body));
    const started = await platform.call(alpha, 'POST', '/v1/runs', { workflow: 'greet', input: {} });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const page = await signedIn(browser, platform, alpha);
    await page.getByRole('link', { name: 'Workflow runs' }).click();
    await page.getByRole('link', { name: started.body.id }).click();
    await waitFor('the run to succeed', async () => (await page.locator('#run-state').innerText()).includes('succeeded'), 60000);
    const steps = page.locator('table', { has: page.locator('caption', { hasText: 'Each step' }) });
    assert.match(await steps.innerText(), /hi\s+succeeded/);
    assert.match(await steps.innerText(), /bye\s+succeeded\s+hi\b/, 'bye comes after hi (the workflow\'s edges)');
    await page.locator('#h-steps ~ .chart canvas').waitFor();
    // Each step links its burst.
    await steps.locator('a').first().click();
    await page.locator('#timeline-summary').waitFor();
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  it('switches to dark mode and back', async () => {
    const page = await signedIn(browser, platform, platform.keys.alpha);
    const toggle = page.getByRole('button', { name: 'Dark mode' });
    assert.equal(await toggle.getAttribute('aria-pressed'), 'false');
    const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await toggle.click();
    assert.equal(await page.locator('html').getAttribute('data-theme'), 'dark');
    assert.equal(await toggle.getAttribute('aria-pressed'), 'true');
    const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.notEqual(dark, light);
    await page.locator('.chart canvas').first().waitFor();
    await screenshot(page, 'overview-dark');
    // The choice is kept across a reload.
    await page.reload();
    await page.locator('#burst-counts').waitFor();
    assert.equal(await page.locator('html').getAttribute('data-theme'), 'dark');
    await toggle.click();
    assert.equal(await page.locator('html').getAttribute('data-theme'), 'light');
    await page.context().close();
  });

  it('follows the system theme until the user picks one', async () => {
    const page = await signedIn(browser, platform, platform.keys.alpha, { colorScheme: 'dark' });
    assert.equal(await page.locator('html').getAttribute('data-theme'), 'dark');
    await page.context().close();
  });

  it('reaches the navigation links with Tab', async () => {
    const page = await signedIn(browser, platform, platform.keys.alpha);
    // Arrive afresh, so the focus starts at the top of the document.
    await page.reload();
    await page.locator('#burst-counts').waitFor();
    const reached = [];
    for (let i = 0; i < 20 && reached.length < 5; i += 1) {
      await page.keyboard.press('Tab');
      const nav = await page.evaluate(() => (document.activeElement?.closest('nav') ? document.activeElement.textContent : null));
      if (nav) reached.push(nav);
    }
    assert.deepEqual(reached, ['Overview', 'Bursts', 'Functions', 'Workflow runs', 'Compare']);
    // Enter on the focused link follows it.
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Enter');
    await waitFor('the bursts page', async () => (await page.evaluate(() => location.hash)) === '#/bursts');
    await page.context().close();
  });
});
