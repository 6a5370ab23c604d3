// The page's captions, questions and reranking in headless Chromium, against a
// `seer serve` whose index has captions and which has a VQA and a matching model.
//
//   SEER_URL=http://127.0.0.1:7860 SEER_QUERY=word [CHROMIUM=/usr/bin/chromium] \
//     [SEER_SCREENSHOT=/tmp/captions.png] node tests/browser/captions.mjs
//
// SEER_QUERY is a word of some stored caption. Checks: every result card shows its
// caption (as the API gives it), cards the words matched say so, the detail view
// shows the caption and answers a question as /v1/ask does, and the rerank option
// reranks. Exits 0 when every check passed, non-zero naming the failed check.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const STEP_TIMEOUT_MS = 30_000;
const baseUrl = (process.env.SEER_URL || '').replace(/\/+$/, '');
const query = process.env.SEER_QUERY || '';
const screenshot = process.env.SEER_SCREENSHOT || '';
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

let passed = 0;
let context = null;
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'seer-captions-'));

async function die(message) {
  console.error(`captions: FAILED: ${message}`);
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

/** What the API answers for `params`, from inside the page (same origin). */
const api = (url, init) => page.evaluate(async ([u, i]) => {
  const res = await fetch(u, i);
  return res.json();
}, [url, init || {}]);

let answer = null;
await step('every result card shows its caption, and which matched by words', async () => {
  const searched = page.waitForResponse((r) => r.url().includes('/v1/search'));
  await page.goto(`${baseUrl}/?q=${encodeURIComponent(query)}`);
  check((await searched).status() === 200, 'the search failed');
  await page.locator('#results .result').first().waitFor();
  answer = await api(`/v1/search?q=${encodeURIComponent(query)}&k=20`);
  check(answer.mode === 'hybrid', `the search ran as ${answer.mode}`);
  const cards = await page.$$eval('#results .result', (els) => els.map((el) => ({
    id: Number(el.dataset.id),
    caption: (el.querySelector('.result-caption') || {}).textContent || null,
    badge: !!el.querySelector('.badge'),
    matched: el.dataset.matched,
  })));
  check(cards.length === answer.results.length, `${cards.length} cards for ${answer.results.length} results`);
  let words = 0;
  for (const [i, card] of cards.entries()) {
    const r = answer.results[i];
    check(card.id === r.id, `card ${i} is ${card.id}, the API's ${r.id}`);
    check(card.caption === r.caption, `card ${i} shows "${card.caption}", not "${r.caption}"`);
    const byWords = r.matched.includes('words');
    check(card.badge === byWords, `card ${i}: badge ${card.badge}, matched ${r.matched}`);
    if (byWords) words++;
  }
  check(words > 0, `no result matched "${query}" by its caption`);
  return `${cards.length} cards, ${words} matched by words`;
});

await step('the detail view shows the caption and answers a question', async () => {
  const first = answer.results[0];
  await page.locator('#results .result .result-view').first().click();
  await page.locator('#lightbox').waitFor({ state: 'visible' });
  const caption = await page.locator('#lightbox-meta [data-field="caption"] dd').textContent();
  check(caption === first.caption, `the detail view says "${caption}"`);
  await page.locator('#ask-form').waitFor({ state: 'visible' });
  const question = 'what is in the picture?';
  await page.locator('#ask-input').fill(question);
  const asked = page.waitForResponse((r) => r.url().endsWith('/v1/ask'));
  await page.locator('#ask-submit').click();
  check((await asked).status() === 200, 'the question failed');
  const want = await page.evaluate(async ([id, q]) => {
    const f = new FormData();
    f.append('id', String(id));
    f.append('question', q);
    return (await fetch('/v1/ask', { method: 'POST', body: f })).json();
  }, [first.id, question]);
  await page.waitForFunction((a) => document.querySelector('#ask-answer').textContent === a, want.answer || '(no answer)');
  // A question past the server's 1,000 characters (1,003 once trimmed) is refused whole on the
  // page, not cut and answered as if whole.
  let sent = 0;
  const count = (r) => { if (r.url().endsWith('/v1/ask')) sent += 1; };
  page.on('request', count);
  await page.locator('#ask-input').fill('why '.repeat(251));
  await page.locator('#ask-submit').click();
  await page.waitForFunction(() => /at most 1,000 characters; this one has 1,003/.test(document.querySelector('#ask-error').textContent));
  page.off('request', count);
  check(sent === 0, 'the long question was sent');
  await page.locator('#ask-input').fill(question);
  // Arrow keys typed in the question stay in it.
  await page.locator('#ask-input').press('ArrowLeft');
  check(await page.locator('#lightbox').getAttribute('data-id') === String(first.id), 'typing moved the detail view');
  if (screenshot) await page.screenshot({ path: screenshot });
  await page.keyboard.press('Escape');
  await page.locator('#lightbox').waitFor({ state: 'hidden' });
  return `"${want.answer}"`;
});

await step('the rerank option reranks with the matching model', async () => {
  await page.locator('#options summary').click();
  const box = page.locator('#opt-rerank');
  await box.waitFor({ state: 'visible' });
  const reranked = page.waitForResponse((r) => r.url().includes('/v1/search') && r.url().includes('rerank=true'));
  await box.check();
  const body = await (await reranked).json();
  check(body.reranked > 0, `no reranking in ${JSON.stringify(body).slice(0, 200)}`);
  const p = body.results.filter((r) => typeof r.itm_probability === 'number').map((r) => r.itm_probability);
  check(p.length > 0 && p.every((x, i) => i === 0 || p[i - 1] >= x), `probabilities out of order: ${p}`);
  check(new URL(page.url()).searchParams.get('rerank') === '1', 'the address bar does not say rerank');
  return `${p.length} reranked`;
});

await step('no errors on the page or from the API', async () => {
  check(problems.length === 0, problems.slice(0, 5).join(' | '));
});

await context.close();
fs.rmSync(userDataDir, { recursive: true, force: true });
console.log(`captions: ${passed} passed, 0 failed`);
process.exit(0);
