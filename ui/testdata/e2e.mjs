// The dashboard in a real browser: Debian's chromium, driven headless by
// playwright-core (which never downloads a browser here). Run by
// TestBrowser (e2e_test.go) as: node e2e.mjs BASE_URL SHOT_DIR
// with PGQRS_PLAYWRIGHT_DIR naming the directory whose node_modules holds
// playwright-core and PGQRS_CHROMIUM the browser. It talks to the Go test
// over stdout/stdin, one line each way: "step NAME" when it wants the test
// to do something (the test answers "ok" on stdin), "pass" at the end.
import { createRequire } from 'node:module';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const require = createRequire(path.join(process.env.PGQRS_PLAYWRIGHT_DIR, 'package.json'));
const { chromium } = require('playwright-core');

const [base, shots] = process.argv.slice(2);
const rl = readline.createInterface({ input: process.stdin });
const answers = rl[Symbol.asyncIterator]();

// step asks the Go test to act and waits for its "ok".
const t0 = Date.now();
async function step(name) {
  console.log(`step ${name}`);
  console.error(`${Date.now() - t0} ms: step ${name}`);
  const { value } = await answers.next();
  if (value !== 'ok') throw new Error(`step ${name}: test answered ${value}`);
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const userDataDir = mkdtempSync(path.join(tmpdir(), 'pgqrs-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.PGQRS_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
  viewport: { width: 1440, height: 900 },
  colorScheme: 'light',
  timeout: 20000,
});
const problems = [];
try {
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(10000);
  // Anything hostile that runs leaves a trace here: alert, an <img> whose
  // onerror fired, a dialog.
  await page.addInitScript(() => {
    window.__xss = [];
    window.alert = (m) => window.__xss.push(`alert(${m})`);
    window.addEventListener('error', (e) => {
      if (e.target && e.target.tagName === 'IMG') window.__xss.push('img error handler reached');
    }, true);
  });
  page.on('dialog', (d) => { problems.push(`dialog: ${d.message()}`); d.dismiss(); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('request', (r) => { if (!r.url().startsWith(base.replace(/\/admin\/pgqrs$/, ''))) problems.push(`request outside the dashboard: ${r.url()}`); });

  // inert checks that nothing hostile ran and that no element came from
  // the hostile strings, and that they are shown as text.
  async function inert(where, mustShowText) {
    const r = await page.evaluate(() => ({
      xss: window.__xss,
      imgs: document.querySelectorAll('img[src="x"], img').length,
      scripts: [...document.scripts].map((s) => s.src || 'inline'),
      text: document.body.innerText,
    }));
    check(r.xss.length === 0, `${where}: hostile code ran: ${r.xss}`);
    check(r.imgs === 0, `${where}: ${r.imgs} <img> elements (the page has none of its own)`);
    check(r.scripts.length === 1 && r.scripts[0].endsWith('/static/app.js'), `${where}: scripts ${r.scripts}`);
    for (const s of mustShowText) check(r.text.includes(s), `${where}: text ${s} not shown`);
  }
  async function shot(name) {
    await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: false });
  }
  async function visit(p, name, texts = []) {
    const res = await page.goto(base + p, { waitUntil: 'load' });
    check(res.status() === 200, `${p}: status ${res.status()}`);
    await inert(p, texts);
    if (name) await shot(name);
  }

  // Every page.
  await visit('/queue?name=emails', 'queue', ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>']);
  await visit('/queue?name=emails&tab=dead', 'dead-letters', ['<img src=x onerror=alert(2)> charge declined']);
  await visit('/workers', 'workers', ['mailer-2']);
  await visit('/workflows', 'workflows', ['order']);
  await visit(`/run?id=${process.env.PGQRS_OK_RUN}`, 'run', ['reserve', 'approval', 'receipt']);
  await visit('/schedules', 'schedules', ['nightly-digest']);

  // Open a hostile payload's <details> (if cut) and look again.
  await visit('/queue?name=emails&tab=visible', null, ['<script>alert(1)</script>']);

  // Replay a dead letter by its button: the form posts, the page comes back.
  await visit('/queue?name=emails&tab=dead', null);
  const dead = await page.locator('button[data-action="dead.replay"]').count();
  check(dead === 2, `dead letters with a replay button: ${dead}`);
  const firstID = await page.locator('tr[data-id]').first().getAttribute('data-id');
  await Promise.all([page.waitForURL(/tab=dead/), page.locator('button[data-action="dead.replay"]').first().click()]);
  await page.waitForSelector('.flash');
  check((await page.locator('.flash').innerText()).includes(`Replayed dead letter ${firstID}`), 'replay flash');
  await inert('after replay', []);
  console.log(`replayed ${firstID}`);
  await step('check-replay');

  // Pause a queue from the overview by its button, then resume it from the
  // keyboard: focus the Resume button and press Enter.
  await visit('/', null);
  await page.locator('tr[data-queue="reports"] button[data-action="queue.pause"]').click();
  await page.waitForSelector('.flash'); // only the page after the redirect has it
  check((await page.locator('tr[data-queue="reports"] [data-k="state"]').innerText()).trim() === 'paused', 'reports shows paused');
  await step('check-pause');
  await page.locator('tr[data-queue="reports"] button[data-action="queue.resume"]').focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => (document.querySelector('.flash') || {}).textContent === 'Resumed queue reports.');
  check((await page.locator('tr[data-queue="reports"] [data-k="state"]').innerText()).trim() === 'running', 'reports shows running');
  await step('check-resume');

  // Live counts: the page stays loaded (a marker survives) while a consumer
  // drains "payments" and the counts fall.
  await visit('/', null);
  const cell = page.locator('tr[data-queue="payments"] [data-k="pending"]');
  const before = Number(await cell.innerText());
  check(before > 0, `payments pending before the drain: ${before}`);
  await page.evaluate(() => { window.__stay = 'same page'; });
  await step('drain');
  await page.waitForFunction((b) => {
    const n = Number(document.querySelector('tr[data-queue="payments"] [data-k="pending"]').textContent);
    return n < b && n > 0 ? true : n === 0;
  }, before, { timeout: 20000 });
  const during = Number(await cell.innerText());
  await page.waitForFunction(() => document.querySelector('tr[data-queue="payments"] [data-k="pending"]').textContent === '0', null, { timeout: 30000 });
  check(await page.evaluate(() => window.__stay) === 'same page', 'the overview reloaded instead of updating');
  // The throughput chart has bars for the drained messages.
  await page.waitForFunction(() => {
    const t = document.querySelector('tr[data-queue="payments"] [data-chart="bars"] svg');
    return t && /this minute [1-9]/.test(t.getAttribute('aria-label')) ||
      [...document.querySelectorAll('tr[data-queue="payments"] [data-chart="bars"] title')].some((x) => !/: 0$/.test(x.textContent));
  }, null, { timeout: 10000 });
  console.log(`live counts: ${before} → ${during} → 0 without a reload`);
  await inert('overview after the drain', []);
  await page.waitForFunction(() => !document.querySelector('.changed'), null, { timeout: 5000 });
  await shot('overview');

  // Keyboard: 2 goes to Workers, / focuses the filter.
  await page.keyboard.press('2');
  await page.waitForURL(/\/workers$/);
  await page.keyboard.press('/');
  check(await page.evaluate(() => document.activeElement && document.activeElement.id) === 'wfilter', '/ focuses the workers filter');

  check(problems.length === 0, `browser problems:\n${problems.join('\n')}`);

  // A bad ID: the 404 page (its status is logged as a console error).
  const res = await page.goto(base + '/run?id=nope');
  check(res.status() === 404, `bad run id: ${res.status()}`);
  check((await page.locator('h1').innerText()).includes('404'), '404 page');
  await shot('not-found');
  console.log('pass');
} finally {
  await context.close();
  rl.close();
}
