// Click-to-segment, boxes for typed labels and "show where" in headless
// Chromium, against a `seer serve --segment-model M --detect-model M`.
//
//   SEER_URL=http://127.0.0.1:7860 SEER_QUERY="a photo" [CHROMIUM=/usr/bin/chromium] \
//     [SEER_SCREENSHOT=/tmp/segment.png] node tests/browser/segment.mjs
//
// Checks: result cards offer "Show where"; a click on the photo in the detail
// view draws the best mask /v1/segment answered, over the photo; a second click
// sends that mask back (mask_id) and is answered from the cached embedding;
// typed labels are boxed as /v1/detect answers; "show where" boxes the search's
// words. Exits 0 when every check passed, non-zero naming the failed check.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const STEP_TIMEOUT_MS = 60_000;
const baseUrl = (process.env.SEER_URL || '').replace(/\/+$/, '');
const query = process.env.SEER_QUERY || '';
const screenshot = process.env.SEER_SCREENSHOT || '';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

let passed = 0;
let context = null;
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'seer-segment-'));

async function die(message) {
  console.error(`segment: FAILED: ${message}`);
  try {
    if (context) await Promise.race([context.close(), new Promise((r) => setTimeout(r, 3000))]);
  } catch (_) { /* already gone */ }
  fs.rmSync(userDataDir, { recursive: true, force: true });
  process.exit(1);
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

async function step(what, fn) {
  try {
    const detail = await fn();
    passed++;
    console.log(`ok ${passed} - ${what}${detail ? ` (${detail})` : ''}`);
  } catch (e) {
    await die(`${what}: ${e && e.message ? e.message.split('\n')[0] : e}`);
  }
}

if (!baseUrl || !query) await die('set SEER_URL and SEER_QUERY');
const { chromium } = await import('playwright-core');
context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  viewport: { width: 1280, height: 900 },
  timeout: STEP_TIMEOUT_MS,
});
const page = context.pages()[0] || (await context.newPage());
page.setDefaultTimeout(STEP_TIMEOUT_MS);
const problems = [];
page.on('pageerror', (e) => problems.push(e.message));
page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
page.on('response', (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });

const img = page.locator('#lightbox-img');
const overlay = page.locator('#mask-overlay');

/** Clicks the shown photo at fractions (fx, fy) of its size; the /v1/segment
 *  request and answer. */
async function clickPhoto(fx, fy) {
  const box = await img.boundingBox();
  check(box && box.width > 0 && box.height > 0, 'the photo has no size');
  const answered = page.waitForResponse((r) => r.url().endsWith('/v1/segment'));
  await page.mouse.click(box.x + box.width * fx, box.y + box.height * fy);
  const response = await answered;
  check(response.status() === 200, `/v1/segment answered ${response.status()}`);
  return { sent: response.request().postData() || '', data: await response.json() };
}

const best = (masks) => masks.reduce((a, m) => (!a || m.iou > a.iou ? m : a), null);

/** The drawn mask: shown, loaded, the answer's best mask, and covering the photo. */
async function checkDrawn(data) {
  const want = best(data.masks);
  check(want, 'no masks in the answer');
  await page.waitForFunction((id) => {
    const o = document.querySelector('#mask-overlay');
    return o && !o.hidden && o.dataset.maskId === id && o.complete && o.naturalWidth > 0;
  }, want.mask_id);
  const src = await overlay.getAttribute('src');
  check(src === want.png, 'the overlay is not the best mask\'s PNG');
  const [a, b] = [await img.boundingBox(), await overlay.boundingBox()];
  check(['x', 'y', 'width', 'height'].every((k) => Math.abs(a[k] - b[k]) <= 1.5),
    `the mask (${JSON.stringify(b)}) does not lie over the photo (${JSON.stringify(a)})`);
  // What the canvas sees where the mask is drawn: as many pixels as the mask has.
  const drawn = await page.evaluate(() => {
    const o = document.querySelector('#mask-overlay');
    const c = document.createElement('canvas');
    c.width = o.naturalWidth;
    c.height = o.naturalHeight;
    const g = c.getContext('2d');
    g.drawImage(o, 0, 0);
    const px = g.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
    return n;
  });
  check((drawn > 0) === (want.area > 0), `${drawn} pixels drawn for a mask of ${want.area}`);
  return want;
}

await step('result cards offer "show where" for a text search', async () => {
  const searched = page.waitForResponse((r) => r.url().includes('/v1/search'));
  await page.goto(`${baseUrl}/?q=${encodeURIComponent(query)}`);
  check((await searched).status() === 200, 'the search failed');
  await page.locator('#results .result').first().waitFor();
  const cards = await page.locator('#results .result').count();
  const where = await page.locator('#results .result .result-where').count();
  check(cards > 0 && where === cards, `${where} "show where" buttons on ${cards} cards`);
  return `${cards} cards`;
});

let first = null;
await step('a click on the photo draws its mask over it', async () => {
  await page.locator('#results .result .result-view').first().click();
  await page.locator('#lightbox').waitFor({ state: 'visible' });
  await page.locator('#segment-tools').waitFor({ state: 'visible' });
  await page.waitForFunction(() => {
    const i = document.querySelector('#lightbox-img');
    return i.complete && i.naturalWidth > 0;
  });
  const { sent, data } = await clickPhoto(0.5, 0.5);
  check(!sent.includes('mask_id'), 'the first click sent a mask');
  check(data.cached === false, 'the first click found a cached embedding');
  first = await checkDrawn(data);
  check(await page.locator('#box-overlay .seg-point').count() === 1, 'the click is not marked');
  const status = await page.locator('#segment-status').textContent();
  check(status.startsWith('Mask:'), `status says "${status}"`);
  return `${data.masks.length} masks, best IoU ${first.iou.toFixed(3)}, area ${first.area}`;
});

await step('a second click refines that mask from the cached embedding', async () => {
  const { sent, data } = await clickPhoto(0.25, 0.3);
  check(sent.includes(first.mask_id), 'the second click did not send the mask back');
  check(data.cached === true, 'the second click embedded the photo again');
  check(data.timing && data.timing.embed_ms === null && data.timing.decoder_ms >= 0, `timing ${JSON.stringify(data.timing)}`);
  const second = await checkDrawn(data);
  check(second.mask_id !== first.mask_id, 'the mask was not replaced');
  check(await page.locator('#segment-status').getAttribute('data-cached') === 'true', 'the page does not say cached');
  check(await page.locator('#box-overlay .seg-point').count() === 2, 'two clicks are not marked');
  await page.locator('#segment-clear').click();
  check(await overlay.isHidden(), 'Clear left the mask');
  return `decoder ${data.timing.decoder_ms} ms`;
});

await step('typed labels are boxed as /v1/detect answers', async () => {
  await page.locator('#detect-input').fill('a cat, a rocket');
  await page.locator('#detect-threshold').fill('0');
  const answered = page.waitForResponse((r) => r.url().endsWith('/v1/detect'));
  await page.locator('#detect-submit').click();
  const response = await answered;
  check(response.status() === 200, `/v1/detect answered ${response.status()}`);
  const data = await response.json();
  const want = data.detections.slice(0, 50);
  check(want.length > 0, 'threshold 0 found nothing');
  await page.waitForFunction((n) => document.querySelectorAll('#box-overlay .det-box').length === n, want.length);
  const drawn = await page.$$eval('#box-overlay .det-box', (els) => els.map((e) => ({ label: e.dataset.label, score: Number(e.dataset.score) })));
  drawn.forEach((d, i) => check(d.label === want[i].label && d.score === want[i].score, `box ${i} is ${JSON.stringify(d)}`));
  const [a, b] = [await img.boundingBox(), await page.locator('#box-overlay .det-box').first().boundingBox()];
  check(b.x >= a.x - 2 && b.y >= a.y - 2 && b.x + b.width <= a.x + a.width + 2 && b.y + b.height <= a.y + a.height + 2,
    'the best box is not on the photo');
  return `${want.length} boxes`;
});

await step('"show where" boxes the search\'s words', async () => {
  const where = page.locator('#show-where');
  await where.waitFor({ state: 'visible' });
  const answered = page.waitForResponse((r) => r.url().endsWith('/v1/detect'));
  await where.click();
  const response = await answered;
  check(response.status() === 200, `/v1/detect answered ${response.status()}`);
  check((response.request().postData() || '').includes(query), 'the search\'s words were not sent');
  const data = await response.json();
  check(data.detections.length > 0, 'nothing found at threshold 0');
  await page.waitForFunction(() => document.querySelectorAll('#box-overlay .det-box').length > 0);
  const labels = await page.$$eval('#box-overlay .det-box', (els) => els.map((e) => e.dataset.label));
  check(labels.length <= 3 && labels.every((l) => l === query), `boxes ${labels}`);
  check(await page.locator('#box-overlay .det-box.best').count() === 1, 'no best box');
  if (screenshot) await page.screenshot({ path: screenshot });
  await page.keyboard.press('Escape');
  await page.locator('#lightbox').waitFor({ state: 'hidden' });
  // From a result card: the detail view opens with the boxes.
  const fromCard = page.waitForResponse((r) => r.url().endsWith('/v1/detect'));
  await page.locator('#results .result .result-where').nth(1).click();
  check((await fromCard).status() === 200, 'show where from a card failed');
  await page.locator('#lightbox').waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.querySelectorAll('#box-overlay .det-box').length > 0);
  return `${labels.length} boxes`;
});

await step('no errors on the page or from the API', async () => {
  check(problems.length === 0, problems.slice(0, 5).join(' | '));
});

await context.close();
fs.rmSync(userDataDir, { recursive: true, force: true });
console.log(`segment: ${passed} passed, 0 failed`);
process.exit(0);
