// End-to-end test of the page that `seer serve` serves, in headless Chromium.
//
//   SEER_URL=http://127.0.0.1:7860 SEER_TEST_IMAGE=path/to/cat.jpg \
//     [SEER_TOKEN=...] [SEER_SCREENSHOT=/tmp/seer.png] [SEER_QUERY="a photo of a cat"] \
//     [CHROMIUM=/usr/bin/chromium] node tests/browser/e2e.mjs
//
// Exits 0 when every check passed, non-zero with a message naming the failed check.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const OVERALL_TIMEOUT_MS = Number(process.env.SEER_E2E_TIMEOUT_MS || 60_000);
const STEP_TIMEOUT_MS = 20_000;

const baseUrl = (process.env.SEER_URL || '').replace(/\/+$/, '');
const testImage = process.env.SEER_TEST_IMAGE;
const token = process.env.SEER_TOKEN || '';
const screenshot = process.env.SEER_SCREENSHOT || '';
const query = process.env.SEER_QUERY || 'a photo of a cat';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

let passed = 0;
let browserContext = null;
let userDataDir = null;

function cleanup() {
  if (userDataDir) {
    try {
      fs.rmSync(userDataDir, { recursive: true, force: true });
    } catch (_) { /* best effort */ }
    userDataDir = null;
  }
}

async function die(message) {
  console.error(`e2e: FAILED: ${message}`);
  console.error(`e2e: ${passed} passed, 1 failed`);
  try {
    if (browserContext) await Promise.race([browserContext.close(), new Promise((r) => setTimeout(r, 3000))]);
  } catch (_) { /* already gone */ }
  cleanup();
  process.exit(1);
}

function ok(what) {
  passed++;
  console.log(`ok ${passed} - ${what}`);
}

async function step(what, fn) {
  try {
    const detail = await fn();
    ok(detail ? `${what} (${detail})` : what);
  } catch (e) {
    await die(`${what}: ${e && e.message ? e.message.split('\n')[0] : e}`);
  }
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

// ------------------------------------------------------------------ preconditions

if (!baseUrl) await die('set SEER_URL to the server, e.g. http://127.0.0.1:7860');
if (!testImage) await die('set SEER_TEST_IMAGE to an image file to upload');
if (!fs.existsSync(testImage)) await die(`SEER_TEST_IMAGE ${testImage} does not exist`);
if (!fs.existsSync(executablePath)) {
  await die(`no browser at ${executablePath} (apt-get install -y chromium, or set CHROMIUM)`);
}
const origin = new URL(baseUrl).origin;

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  await die(`playwright-core is not installed: run \`npm ci\` in tests/browser (${e.message.split('\n')[0]})`);
}

const overall = setTimeout(() => {
  die(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s`);
}, OVERALL_TIMEOUT_MS);
overall.unref();

// ------------------------------------------------------------------ browser

userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'seer-e2e-'));
try {
  browserContext = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
    timeout: STEP_TIMEOUT_MS,
  });
} catch (e) {
  await die(`cannot start ${executablePath}: ${e.message.split('\n')[0]}`);
}

const page = browserContext.pages()[0] || (await browserContext.newPage());
page.setDefaultTimeout(STEP_TIMEOUT_MS);

const pageErrors = [];
const foreignRequests = [];
const apiFailures = [];
page.on('pageerror', (e) => pageErrors.push(e.message));
page.on('console', (m) => {
  // With a token, the first API calls are answered 401 on purpose (that is how the
  // page learns to ask for it); Chromium logs those as failed resources.
  if (m.type() !== 'error') return;
  if (token && /Failed to load resource.*\b401\b/.test(m.text())) return;
  pageErrors.push(`console: ${m.text()}`);
});
page.on('request', (r) => {
  const u = r.url();
  if (!u.startsWith('data:') && !u.startsWith('blob:') && new URL(u).origin !== origin) foreignRequests.push(u);
});
page.on('response', (r) => {
  const s = r.status();
  if (s >= 500 || (s >= 400 && !(token && s === 401))) apiFailures.push(`${s} ${r.request().method()} ${r.url()}`);
});

const count = (sel) => page.locator(sel).count();

/** Waits for a response to the given API path and method; returns it. */
const apiResponse = (method, pathPrefix) => page.waitForResponse(
  (r) => r.request().method() === method && new URL(r.url()).pathname.startsWith(pathPrefix),
);

/** Throws with the text the page shows in an error box, if it shows one. */
async function failOnPageError(sel) {
  const box = page.locator(sel);
  if (await box.isVisible()) {
    const hint = (await page.locator('#auth').isVisible()) ? ' (the server wants a token: set SEER_TOKEN)' : '';
    throw new Error(`the page shows an error: ${(await box.textContent()).trim()}${hint}`);
  }
}

/** Waits until the last search has been answered, then fails on a shown error. */
async function searchSettled() {
  await page.waitForFunction(() => document.querySelector('#results')?.getAttribute('aria-busy') === 'false');
  await failOnPageError('#search-error');
}

// ------------------------------------------------------------------ checks

await step(`open ${baseUrl}/`, async () => {
  const res = await page.goto(`${baseUrl}/`, { waitUntil: 'load' });
  check(res && res.ok(), `GET / answered ${res && res.status()}`);
  await page.locator('#search-input').waitFor({ state: 'visible' });
  const title = await page.title();
  check(/seer/i.test(title), `unexpected title "${title}"`);
  return title;
});

if (token) {
  await step('the page asks for the token after a 401 and then uses it', async () => {
    await page.locator('#auth').waitFor({ state: 'visible' });
    await page.locator('#token-input').fill(token);
    const status = apiResponse('GET', '/v1/index/status');
    await page.locator('#auth-form button[type=submit]').click();
    const res = await status;
    check(res.status() === 200, `/v1/index/status answered ${res.status()} with the token`);
    check(await page.locator('#auth').isHidden(), 'the token form is still shown');
  });
}

await step('the index panel shows a file count > 0', async () => {
  await page.waitForFunction(() => {
    const t = document.querySelector('#status-files')?.textContent || '';
    return /\d/.test(t) || !document.querySelector('#index-error')?.hidden;
  });
  await failOnPageError('#index-error');
  const text = await page.locator('#status-files').textContent();
  const n = Number(text.replace(/[^\d]/g, ''));
  check(n > 0, `#status-files shows "${text}"`);
  return `${n} files`;
});

let firstId = null;
await step(`typing "${query}" shows results`, async () => {
  const searched = apiResponse('GET', '/v1/search');
  await page.locator('#search-input').click();
  await page.locator('#search-input').pressSequentially(query, { delay: 15 });
  const res = await searched;
  check(res.status() === 200, `GET /v1/search answered ${res.status()}: ${await res.text()}`);
  // The debounce may fire more than once while typing: let the last one start,
  // then wait for its answer.
  await page.waitForTimeout(400);
  await searchSettled();
  const n = await count('#results .result');
  check(n >= 1, 'no .result items');
  const scoreText = await page.locator('#results .result .score').first().textContent();
  check(Number.isFinite(Number(scoreText)), `first score is "${scoreText}"`);
  const live = await page.locator('#result-count').textContent();
  check(/\d+ result/.test(live), `the live region says "${live}"`);
  return `${n} results, top score ${scoreText}`;
});

await step('thumbnails load (naturalWidth > 0) and have alt text', async () => {
  const n = Math.min(4, await count('#results .result img'));
  check(n > 0, 'no thumbnails');
  for (let i = 0; i < n; i++) {
    const img = page.locator('#results .result img').nth(i);
    await img.scrollIntoViewIfNeeded();
    const handle = await img.elementHandle();
    await page.waitForFunction((el) => el.complete, handle);
    const [w, alt, src] = await img.evaluate((el) => [el.naturalWidth, el.alt, el.currentSrc]);
    check(w > 0, `thumbnail ${i} (${src}) did not load`);
    check(alt && alt.length > 0, `thumbnail ${i} has no alt text`);
  }
  await page.evaluate(() => window.scrollTo(0, 0));
  return `${n} checked`;
});

await step('clicking a result searches for more like it', async () => {
  firstId = await page.locator('#results .result').first().getAttribute('data-id');
  const searched = apiResponse('GET', '/v1/search');
  await page.locator('#results .result .result-like').first().click();
  const res = await searched;
  check(res.status() === 200, `like search answered ${res.status()}`);
  check(new URL(res.url()).searchParams.get('like') === firstId, `expected like=${firstId} in ${res.url()}`);
  await searchSettled();
  const ids = await page.locator('#results .result').evaluateAll((els) => els.map((e) => e.dataset.id));
  check(ids.length >= 1, 'no results for more-like-this');
  check(ids.slice(0, 3).includes(firstId), `image ${firstId} is not among its own top 3 neighbours (${ids.slice(0, 3)})`);
  const href = await page.locator('#results .result .result-open').first().getAttribute('href');
  check(href && href.includes('/v1/images/'), `the open link is "${href}"`);
  return `${ids.length} results`;
});

await step(`searching by example image ${path.basename(testImage)}`, async () => {
  const searched = apiResponse('POST', '/v1/search');
  await page.locator('#image-input').setInputFiles(testImage);
  const res = await searched;
  check(res.status() === 200, `POST /v1/search answered ${res.status()}: ${await res.text()}`);
  await searchSettled();
  const n = await count('#results .result');
  check(n >= 1, 'no results for the example image');
  const chips = await page.locator('#query-chips').textContent();
  check(chips.includes(path.basename(testImage)), `the query chips say "${chips}"`);
  check(await page.locator('#search-error').isHidden(), `error shown: ${await page.locator('#search-error').textContent()}`);
  return `${n} results`;
});

await step('zero-shot classify with labels cat,dog,car', async () => {
  await page.locator('#classify-image').setInputFiles(testImage);
  await page.locator('#classify-labels').fill('cat,dog,car');
  const classified = apiResponse('POST', '/v1/classify');
  await page.locator('#classify-submit').click();
  const res = await classified;
  check(res.status() === 200, `POST /v1/classify answered ${res.status()}: ${await res.text()}`);
  await page.waitForFunction(() => document.querySelectorAll('#classify-chart .bar').length === 3);
  const rows = await page.locator('#classify-chart .bar').evaluateAll((els) => els.map((e) => ({
    label: e.querySelector('.bar-label')?.textContent.trim(),
    text: e.textContent,
  })));
  const labels = rows.map((r) => r.label).sort();
  check(JSON.stringify(labels) === JSON.stringify(['car', 'cat', 'dog']), `bar labels are ${labels}`);
  const pcts = rows.map((r) => {
    const m = /(\d+(?:\.\d+)?)\s*%/.exec(r.text);
    check(m, `no percentage in bar "${r.text}"`);
    return Number(m[1]);
  });
  const sum = pcts.reduce((a, b) => a + b, 0);
  check(Math.abs(sum - 100) <= 1.5, `percentages ${pcts} sum to ${sum}, not ~100`);
  return rows.map((r, i) => `${r.label} ${pcts[i]}%`).join(', ');
});

await step('the page loaded nothing from other hosts and raised no errors', async () => {
  check(foreignRequests.length === 0, `requests to other hosts: ${foreignRequests.slice(0, 5).join(', ')}`);
  check(apiFailures.length === 0, `failed requests: ${apiFailures.slice(0, 5).join(', ')}`);
  check(pageErrors.length === 0, `page errors: ${pageErrors.slice(0, 5).join(' | ')}`);
});

if (screenshot) {
  await step(`screenshot to ${screenshot}`, async () => {
    fs.mkdirSync(path.dirname(path.resolve(screenshot)), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
  });
}

clearTimeout(overall);
await browserContext.close();
browserContext = null;
cleanup();
console.log(`e2e: ${passed} passed, 0 failed`);
process.exit(0);
