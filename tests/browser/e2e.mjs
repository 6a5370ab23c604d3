// End-to-end test of the page that `seer serve` serves, in headless Chromium.
//
//   SEER_URL=http://127.0.0.1:7860 SEER_TEST_IMAGE=path/to/cat.jpg \
//     [SEER_TOKEN=...] [SEER_SCREENSHOT=/tmp/seer.png] [SEER_QUERY="a photo of a cat"] \
//     [SEER_DATE_FROM=2020-01-01 SEER_DATE_TO=2021-12-31] \
//     [CHROMIUM=/usr/bin/chromium] node tests/browser/e2e.mjs
//
// The index needs more results than one page (20) and some, not all, photos with an
// EXIF capture time in SEER_DATE_FROM..SEER_DATE_TO. SEER_SCREENSHOT also writes
// NAME-lightbox.png and NAME-phone.png beside it. A server with one model must
// show no model picker; one with several (the default with a text tower) is
// also checked for the picker: switching models, the URL, an image-only model.
//
// Exits 0 when every check passed, non-zero with a message naming the failed check.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const OVERALL_TIMEOUT_MS = Number(process.env.SEER_E2E_TIMEOUT_MS || 120_000);
const STEP_TIMEOUT_MS = 20_000;

const baseUrl = (process.env.SEER_URL || '').replace(/\/+$/, '');
const testImage = process.env.SEER_TEST_IMAGE;
const token = process.env.SEER_TOKEN || '';
const screenshot = process.env.SEER_SCREENSHOT || '';
const query = process.env.SEER_QUERY || 'a photo of a cat';
const dateFrom = process.env.SEER_DATE_FROM || '2020-01-01';
const dateTo = process.env.SEER_DATE_TO || '2021-12-31';
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

/** What the server serves (GET /v1/models, with the token when there is one). */
const served = await page.evaluate(async (tok) => {
  const res = await fetch('/v1/models', { headers: tok ? { Authorization: `Bearer ${tok}` } : {} });
  return res.json();
}, token);
const servedModels = Array.isArray(served.models) ? served.models : [];

if (servedModels.length <= 1) {
  await step('with one model the page shows no model picker', async () => {
    await page.waitForTimeout(200); // the model list has arrived by now
    check(await page.locator('#model-select').isHidden(), 'a model picker is shown for one model');
    check(await page.locator('#model-hint').isHidden(), 'a model hint is shown for one model');
    return servedModels[0] && servedModels[0].id;
  });
}

const urlParam = (name) => new URL(page.url()).searchParams.get(name);
const shownIds = () => page.locator('#results .result').evaluateAll((els) => els.map((e) => e.dataset.id));

await step(`typing "${query}" shows results and puts the query in the URL`, async () => {
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
  check(/\d+\+? result/.test(live), `the live region says "${live}"`);
  check(urlParam('q') === query, `the address is ${page.url()}`);
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

await step('scrolling to the end loads the next page of results', async () => {
  await page.waitForTimeout(300); // let any page that fills the window arrive
  await searchSettled();
  const before = await shownIds();
  check(await page.locator('#load-more').isVisible(), `all ${before.length} results came at once: nothing to page`);
  const paged = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/search'
    && Number(new URL(r.url()).searchParams.get('offset')) > 0);
  await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  const res = await paged;
  check(res.status() === 200, `the next page answered ${res.status()}`);
  await page.waitForFunction((n) => document.querySelectorAll('#results .result').length > n, before.length);
  const after = await shownIds();
  check(new Set(after).size === after.length, 'a photo is shown twice');
  check(JSON.stringify(after.slice(0, before.length)) === JSON.stringify(before), 'the first page changed');
  await page.evaluate(() => window.scrollTo(0, 0));
  return `${before.length} -> ${after.length} results, offset=${new URL(res.url()).searchParams.get('offset')}`;
});

let firstId = null;
let firstPath = null;
await step('clicking a thumbnail opens the detail view with its metadata', async () => {
  firstId = await page.locator('#results .result').first().getAttribute('data-id');
  await page.locator('#results .result .result-view').first().click();
  const box = page.locator('#lightbox');
  await box.waitFor({ state: 'visible' });
  check(await box.getAttribute('data-id') === firstId, `the detail view shows ${await box.getAttribute('data-id')}, not ${firstId}`);
  const field = (f) => page.locator(`#lightbox-meta [data-field="${f}"] dd`).textContent();
  firstPath = (await field('path')).trim();
  check(firstPath.includes('/'), `path "${firstPath}"`);
  const size = await field('size');
  check(/\d+(\.\d+)? (B|KB|MB|GB)/.test(size), `size "${size}"`);
  const dims = await field('dimensions');
  check(/^\d+ × \d+ px$/.test(dims.trim()), `dimensions "${dims}"`);
  const taken = await field('taken');
  check(taken.trim().length > 0, 'no capture time field');
  const img = page.locator('#lightbox-img');
  await page.waitForFunction(() => {
    const i = document.querySelector('#lightbox-img');
    return i.complete && i.naturalWidth > 0;
  });
  check((await img.getAttribute('alt')).length > 0, 'the detail image has no alt text');
  const href = await page.locator('#lightbox-open').getAttribute('href');
  check(href === `/v1/images/${firstId}`, `the open-original link is "${href}"`);
  if (screenshot) await page.screenshot({ path: screenshot.replace(/(\.png)?$/, '-lightbox.png') });
  return `${firstPath}: ${size}, ${dims.trim()}, taken ${taken.trim()}`;
});

await step('arrow keys move between results in the detail view, Escape closes it', async () => {
  const ids = await shownIds();
  const box = page.locator('#lightbox');
  await page.keyboard.press('ArrowRight');
  await page.waitForFunction((id) => document.querySelector('#lightbox').dataset.id === id, ids[1]);
  const second = (await page.locator('#lightbox-meta [data-field="path"] dd').textContent()).trim();
  check(second !== firstPath, 'the path did not change with the photo');
  await page.keyboard.press('ArrowLeft');
  await page.waitForFunction((id) => document.querySelector('#lightbox').dataset.id === id, ids[0]);
  await page.keyboard.press('Escape');
  await box.waitFor({ state: 'hidden' });
  const focused = await page.evaluate(() => document.activeElement?.closest('.result')?.dataset.id);
  check(focused === ids[0], `focus went to ${focused}, not back to the thumbnail`);
  return `${ids[0]} -> ${ids[1]} -> ${ids[0]}, closed`;
});

await step('"more like this" in the detail view searches without the photo itself', async () => {
  await page.locator('#results .result .result-view').first().click();
  await page.locator('#lightbox').waitFor({ state: 'visible' });
  const searched = page.waitForResponse((r) => new URL(r.url()).searchParams.get('like') === firstId);
  await page.locator('#lightbox-like').click();
  const res = await searched;
  check(res.status() === 200, `like search answered ${res.status()}`);
  await page.locator('#lightbox').waitFor({ state: 'hidden' });
  await searchSettled();
  const ids = await shownIds();
  check(ids.length >= 1, 'no results for more-like-this');
  check(!ids.includes(firstId), `image ${firstId} is among its own results`);
  check(urlParam('like') === firstId && !urlParam('q'), `the address is ${page.url()}`);
  const chips = await page.locator('#query-chips').textContent();
  const name = firstPath.split('/').pop();
  check(chips.includes(name), `the chips say "${chips}", not ${name}`);
  return `${ids.length} results`;
});

await step('the back button returns to the text search; forward to more-like-this', async () => {
  const back = apiResponse('GET', '/v1/search');
  await page.goBack();
  const res = await back;
  check(new URL(res.url()).searchParams.get('q') === query, `after back the page searched ${res.url()}`);
  await searchSettled();
  check(urlParam('q') === query && !urlParam('like'), `after back the address is ${page.url()}`);
  check(await page.locator('#search-input').inputValue() === query, 'the search box lost the query');
  check((await page.locator('#query-chips').textContent()).trim() === '', 'the more-like chip is still shown');
  const fwd = apiResponse('GET', '/v1/search');
  await page.goForward();
  check(new URL((await fwd).url()).searchParams.get('like') === firstId, 'forward did not search like again');
  await searchSettled();
  check(!(await shownIds()).includes(firstId), 'forward shows the photo among its own results');
  await page.goBack();
  await page.waitForFunction((q) => document.querySelector('#search-input').value === q, query);
  await page.waitForTimeout(50);
  await searchSettled();
});

await step(`the date filter ${dateFrom}..${dateTo} keeps only photos taken then`, async () => {
  await searchSettled();
  const before = await count('#results .result');
  const searched = page.waitForResponse((r) => new URL(r.url()).searchParams.get('to') === dateTo);
  await page.locator('#opt-from').fill(dateFrom);
  await page.locator('#opt-to').fill(dateTo);
  const res = await searched;
  check(res.status() === 200, `the dated search answered ${res.status()}: ${await res.text()}`);
  check(new URL(res.url()).searchParams.get('from') === dateFrom, `from not sent: ${res.url()}`);
  await page.waitForTimeout(100);
  await searchSettled();
  const taken = await page.locator('#results .result').evaluateAll((els) => els.map((e) => e.dataset.taken || ''));
  check(taken.length >= 1, 'no results in the date range');
  check(taken.length < before, `the date filter did not reduce the results (${before} -> ${taken.length})`);
  const bad = taken.filter((t) => !(t >= dateFrom && t.slice(0, 10) <= dateTo));
  check(bad.length === 0, `results taken outside the range: ${bad}`);
  check(urlParam('from') === dateFrom && urlParam('to') === dateTo && urlParam('q') === query, `the address is ${page.url()}`);
  return `${before} -> ${taken.length} results`;
});

await step('a reload restores the query, the dates and the results from the URL', async () => {
  const idsBefore = await shownIds();
  const searched = apiResponse('GET', '/v1/search');
  await page.reload({ waitUntil: 'load' });
  const res = await searched;
  check(res.status() === 200, `the restored search answered ${res.status()}`);
  await page.waitForTimeout(100);
  await searchSettled();
  check(await page.locator('#search-input').inputValue() === query, 'the query was not restored');
  check(await page.locator('#opt-from').inputValue() === dateFrom, 'from was not restored');
  check(await page.locator('#opt-to').inputValue() === dateTo, 'to was not restored');
  const ids = await shownIds();
  check(JSON.stringify(ids) === JSON.stringify(idsBefore), `other results after reload: ${ids} vs ${idsBefore}`);
  await page.locator('#dates-clear').click();
  await page.waitForTimeout(100);
  await searchSettled();
  check(!urlParam('from') && !urlParam('to'), `clearing the dates left ${page.url()}`);
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

await step('duplicates: the measured threshold groups near-copies, shown with thumbnails', async () => {
  const found = apiResponse('GET', '/v1/duplicates');
  await page.locator('#dupes-submit').click();
  const res = await found;
  check(res.status() === 200, `GET /v1/duplicates answered ${res.status()}: ${await res.text()}`);
  check(!new URL(res.url()).searchParams.has('threshold'), `the page sent a threshold: ${res.url()}`);
  const data = await res.json();
  await page.waitForFunction(() => /at threshold/.test(document.querySelector('#dupes-status').textContent)
    || !document.querySelector('#dupes-error').hidden);
  await failOnPageError('#dupes-error');
  check(data.total >= 1, `no duplicates among the test photos: ${JSON.stringify(data)}`);
  const placeholder = await page.locator('#dupes-threshold').getAttribute('placeholder');
  check(placeholder === Number(data.threshold).toFixed(4), `the threshold box says "${placeholder}", the server ${data.threshold}`);
  const sizes = await page.locator('#dupes-list .dupe-group').evaluateAll((els) => els.map((e) => e.querySelectorAll('.dupe-file').length));
  check(sizes.length === Math.min(20, data.total), `${sizes.length} groups shown of ${data.total}`);
  check(sizes.every((n, i) => n >= 2 && n === data.groups[i].files.length), `group sizes ${sizes}`);
  const status = await page.locator('#dupes-status').textContent();
  check(status.includes(Number(data.threshold).toFixed(4)), `the status says "${status}"`);
  await page.locator('#dupes-list .dupe-file img').first().scrollIntoViewIfNeeded();
  await page.waitForFunction(() => {
    const img = document.querySelector('#dupes-list .dupe-file img');
    return img && img.complete && img.naturalWidth > 0;
  });
  // A threshold out of range is refused on the page, before any request.
  let asked = false;
  const watch = (r) => { if (new URL(r.url()).pathname === '/v1/duplicates') asked = true; };
  page.on('request', watch);
  await page.locator('#dupes-threshold').fill('2');
  await page.locator('#dupes-submit').click();
  await page.locator('#dupes-error').waitFor({ state: 'visible' });
  const refused = await page.locator('#dupes-error').textContent();
  check(/-1 to 1/.test(refused), `the error says "${refused}"`);
  page.off('request', watch);
  check(!asked, 'a threshold of 2 was sent to the server');
  // A threshold given is the one used.
  const given = apiResponse('GET', '/v1/duplicates');
  await page.locator('#dupes-threshold').fill('0.5');
  await page.locator('#dupes-submit').click();
  const again = await given;
  check(new URL(again.url()).searchParams.get('threshold') === '0.5', `the request was ${again.url()}`);
  await page.waitForFunction(() => /at threshold 0\.5000/.test(document.querySelector('#dupes-status').textContent));
  check(await page.locator('#dupes-error').isHidden(), 'the earlier error is still shown');
  await page.locator('#dupes-threshold').fill('');
  return `${data.total} groups at the measured ${Number(data.threshold).toFixed(4)} (${sizes.join(', ')} files)`;
});

if (servedModels.length > 1) {
  const other = servedModels.find((m) => !m.text_tower) || servedModels.find((m) => !m.default);
  const imageOnly = !other.text_tower;
  const searchWith = (cond) => page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/search' && cond(r));
  let likeId = null;

  await step(`the picker lists the ${servedModels.length} models, the default picked`, async () => {
    const picker = page.locator('#model-select');
    await picker.waitFor({ state: 'visible' });
    const values = await picker.locator('option').evaluateAll((os) => os.map((o) => o.value));
    check(JSON.stringify(values) === JSON.stringify(servedModels.map((m) => m.id)), `the options are ${values}`);
    check(await picker.inputValue() === served.default, `${await picker.inputValue()} is picked, not ${served.default}`);
    check(!urlParam('model'), `the default model is in the address: ${page.url()}`);
    // A "more like this" search with the default model: no model in the request.
    likeId = await page.locator('#results .result').first().getAttribute('data-id');
    const searched = searchWith((r) => new URL(r.url()).searchParams.get('like') === likeId);
    await page.locator('#results .result .result-like').first().click();
    const res = await searched;
    check(res.status() === 200, `the like search answered ${res.status()}`);
    check(!new URL(res.url()).searchParams.has('model'), `the default's request names a model: ${res.url()}`);
    await searchSettled();
    return values.join(', ');
  });

  await step(`picking ${other.id} searches with it${imageOnly ? '; text search is off' : ''}`, async () => {
    const searched = searchWith((r) => new URL(r.url()).searchParams.get('model') === other.id);
    await page.locator('#model-select').selectOption(other.id);
    const res = await searched;
    check(res.status() === 200, `the search with ${other.id} answered ${res.status()}: ${await res.text()}`);
    check(new URL(res.url()).searchParams.get('like') === likeId, `the like search was not kept: ${res.url()}`);
    await searchSettled();
    const ids = await shownIds();
    check(ids.length >= 1 && !ids.includes(likeId), `results ${ids} for like ${likeId}`);
    check(urlParam('model') === other.id && urlParam('like') === likeId, `the address is ${page.url()}`);
    if (imageOnly) {
      check(await page.locator('#search-input').isDisabled(), 'the text box is enabled for an image-only model');
      const hint = await page.locator('#model-hint').textContent();
      check(await page.locator('#model-hint').isVisible() && /image/i.test(hint), `the hint says "${hint}"`);
      // "Similar" on a result still works with the image-only model.
      const next = ids[0];
      const similar = searchWith((r) => new URL(r.url()).searchParams.get('like') === next
        && new URL(r.url()).searchParams.get('model') === other.id);
      await page.locator('#results .result .result-like').first().click();
      check((await similar).status() === 200, 'Similar failed with the image-only model');
      await searchSettled();
      likeId = next;
    }
    return `${ids.length} results`;
  });

  await step('a reload keeps the picked model; picking the default drops it from the URL', async () => {
    const searched = searchWith((r) => new URL(r.url()).searchParams.get('model') === other.id);
    await page.reload({ waitUntil: 'load' });
    check((await searched).status() === 200, 'the restored search failed');
    await searchSettled();
    await page.waitForFunction((id) => document.querySelector('#model-select').value === id, other.id);
    if (imageOnly) check(await page.locator('#search-input').isDisabled(), 'the text box is enabled after reload');
    const back = searchWith((r) => !new URL(r.url()).searchParams.has('model'));
    await page.locator('#model-select').selectOption(served.default);
    check((await back).status() === 200, 'the search with the default failed');
    await searchSettled();
    check(!urlParam('model'), `the address still names a model: ${page.url()}`);
    check(await page.locator('#search-input').isEnabled(), 'the text box stays disabled');
    check(await page.locator('#model-hint').isHidden(), 'the image-only hint stays');
  });
}

if (screenshot) {
  await step(`desktop screenshot to ${screenshot}`, async () => {
    fs.mkdirSync(path.dirname(path.resolve(screenshot)), { recursive: true });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshot, fullPage: true });
  });
}

await step('on a 390×844 phone the results are a grid and classify is a tap away', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(100);
  const tops = await page.locator('#results .result').evaluateAll((els) => els.slice(0, 6)
    .map((e) => Math.round(e.getBoundingClientRect().top)));
  const perRow = tops.filter((t) => t === tops[0]).length;
  check(perRow >= 2, `${perRow} photo per row (tops ${tops})`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  check(overflow <= 390, `the page is ${overflow} px wide`);
  if (servedModels.length > 1) {
    const picker = await page.locator('#model-select').boundingBox();
    check(picker && picker.x >= 0 && picker.x + picker.width <= 390, `the model picker is off screen (${JSON.stringify(picker)})`);
  }
  const tab = page.locator('#tab-classify');
  check(await tab.isVisible(), 'no classify tab');
  const tabBox = await tab.boundingBox();
  check(tabBox && tabBox.y >= 0 && tabBox.y + tabBox.height <= 844, `the classify tab is off screen (${JSON.stringify(tabBox)})`);
  if (screenshot) await page.screenshot({ path: screenshot.replace(/(\.png)?$/, '-phone.png') });
  await tab.click();
  const panel = page.locator('#classify-panel');
  await panel.waitFor({ state: 'visible' });
  const box = await panel.boundingBox();
  check(box && box.y >= 0 && box.y < 844 / 2, `the classify panel starts at y=${box && box.y}`);
  check(await page.locator('#results').isHidden(), 'the results still take the screen');
  check(await page.evaluate(() => window.scrollY) === 0, 'reaching classify scrolled the page');
  await page.locator('#tab-search').click();
  await page.locator('#results').waitFor({ state: 'visible' });
  // The detail view fits the phone.
  await page.locator('#results .result .result-view').first().click();
  await page.locator('#lightbox').waitFor({ state: 'visible' });
  const lb = await page.locator('#lightbox').boundingBox();
  check(lb.width <= 390, `the detail view is ${lb.width} px wide`);
  await page.keyboard.press('Escape');
  await page.locator('#lightbox').waitFor({ state: 'hidden' });
  await page.setViewportSize({ width: 1280, height: 900 });
  return `${perRow} per row`;
});

await step('the page loaded nothing from other hosts and raised no errors', async () => {
  check(foreignRequests.length === 0, `requests to other hosts: ${foreignRequests.slice(0, 5).join(', ')}`);
  check(apiFailures.length === 0, `failed requests: ${apiFailures.slice(0, 5).join(', ')}`);
  check(pageErrors.length === 0, `page errors: ${pageErrors.slice(0, 5).join(' | ')}`);
});

clearTimeout(overall);
await browserContext.close();
browserContext = null;
cleanup();
console.log(`e2e: ${passed} passed, 0 failed`);
process.exit(0);
