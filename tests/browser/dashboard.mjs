// Drives Debian's chromium (through playwright-core) against a running
// gateway's dashboard, as tests/tests/dashboard.rs asks: one operator sees a
// parked delivery with its error and retries it, then finds the submission
// delivered; an operator of another tenant sees none of it.
//
// Usage: node dashboard.mjs <job.json>; prints what it saw as JSON, exit 0
// when every check held.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const origin = new URL(job.url).origin;
const seen = {};

function check(ok, what) {
  if (!ok) throw new Error('check failed: ' + what);
}

const browser = await chromium.launch({
  executablePath: job.chromium || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run'],
});

async function open(operator, locale) {
  const context = await browser.newContext({
    clientCertificates: [{ origin, certPath: operator.cert, keyPath: operator.key }],
    ignoreHTTPSErrors: true,
    locale,
    viewport: { width: 1366, height: 900 },
  });
  const page = await context.newPage();
  page.on('dialog', (d) => d.accept());
  await page.goto(job.url + '/dashboard/');
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 20000 });
  return { context, page };
}

try {
  // The operator of the parked delivery's tenant.
  const { page } = await open(job.operator, 'de-DE');
  seen.title = await page.title();
  seen.lang = await page.getAttribute('html', 'lang');
  const target = page.locator(`#targets tr[data-target="${job.target}"]`);
  await target.waitFor();
  seen.target_row = (await target.innerText()).replace(/\s+/g, ' ');
  const row = page.locator(`#parked tr[data-message="${job.message_id}"]`);
  await row.waitFor();
  seen.parked_row = (await row.innerText()).replace(/\s+/g, ' ');
  check(seen.parked_row.includes(job.error_contains), `the parked row shows its error (${job.error_contains})`);
  // Charts: one bar per hour and series, drawn as SVG.
  seen.hourly_bars = await page.locator('#hourly rect').count();
  check(seen.hourly_bars === 96, 'two series of 48 hourly bars');
  seen.case_rows = await page.locator('#cases tbody tr').count();
  check(seen.case_rows > 0, 'case statistics rows');
  if (job.screenshot) await page.screenshot({ path: job.screenshot, fullPage: true });

  // Keyboard: the first Tab reaches the skip link, Enter on a focused button acts.
  await page.keyboard.press('Tab');
  seen.first_focus = await page.evaluate(() => document.activeElement && document.activeElement.className);
  check(seen.first_focus === 'skip', 'the skip link is the first stop');

  // Retry: the row leaves the parked list, the submission turns delivered.
  await row.locator('button[data-action="retry"]').focus();
  await page.keyboard.press('Enter');
  await row.waitFor({ state: 'detached', timeout: 20000 });
  seen.retried = true;
  let state = '';
  for (let i = 0; i < 40 && !state.includes('delivered'); i++) {
    await page.fill('#sid', job.submission_id);
    await page.press('#sid', 'Enter');
    await page.waitForSelector('#submission-deliveries', { timeout: 10000 });
    state = await page.locator(`#submission-deliveries tr:has-text("${job.target}")`).innerText();
    if (!state.includes('delivered')) await page.waitForTimeout(500);
  }
  seen.after_retry = state.replace(/\s+/g, ' ');
  check(state.includes('delivered'), 'the retried delivery was delivered');
  seen.laufzettel = await page.locator('.laufzettel li').count();
  check(seen.laufzettel >= 3, 'the Laufzettel lists the submission\'s records');

  // English labels on request.
  await page.click('#lang');
  seen.lang_after = await page.getAttribute('html', 'lang');
  seen.heading_en = await page.locator('#h-targets').innerText();
  check(seen.lang_after === 'en' && seen.heading_en === 'Targets', 'English labels');
  const content = await page.content();
  check(!content.includes(job.marker), 'no personal data on the page');

  // An operator of another tenant.
  const other = await open(job.other, 'en-GB');
  seen.other_targets = await other.page.locator('#targets tbody tr[data-target]').evaluateAll((rows) => rows.map((r) => r.dataset.target));
  check(!seen.other_targets.includes(job.target), 'the other tenant does not see the target');
  const otherContent = await other.page.content();
  check(!otherContent.includes(job.message_id) && !otherContent.includes(job.submission_id), 'nor the delivery');
  await other.page.fill('#sid', job.submission_id);
  await other.page.press('#sid', 'Enter');
  await other.page.waitForSelector('#submission p.bad', { timeout: 10000 });
  seen.other_search = await other.page.locator('#submission').innerText();
  seen.ok = true;
} catch (e) {
  seen.ok = false;
  seen.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen, null, 2));
process.exit(seen.ok ? 0 : 1);
