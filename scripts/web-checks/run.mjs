// Browser checks of the web page that `seer serve` serves, for the page's
// corner cases: tokens, the detail view during a re-index, escaped file
// names, failed requests, models named in the address bar, the header when the
// server goes away, long words, classify and detect limits, filter values,
// the index panel's counts when the server goes away.
// (tests/browser/e2e.mjs, which CI runs, covers the ordinary walk through.)
//
//   (cd /tmp/pw && npm install playwright-core)     # anywhere outside the repo
//   PLAYWRIGHT_DIR=/tmp/pw node scripts/web-checks/run.mjs [--only token,names] [--assets-from-disk]
//
// It builds an index of the smoke photos (plus files named with a backslash, a
// newline and invalid UTF-8) in a temporary folder, starts the servers it
// needs on free loopback ports (plain, with --token, with three models, with
// SAM and OWLv2, with a small --max-body, on an empty index), drives Debian's
// chromium, and stops everything it started.
//
// Environment: SEER_BIN (default target/release/seer: build it first with
// `cargo build --release -p seer-cli --bin seer`, the assets are built in),
// SEER_SHARED_DATA (default ../shared/data), CHROMIUM (default /usr/bin/chromium),
// PLAYWRIGHT_DIR (a folder whose node_modules holds playwright-core; also
// looked for in tests/browser and the current folder), WEB_CHECKS_OUT (where
// screenshots go; default a temporary folder, printed).
//
// --assets-from-disk serves index.html, app.js and style.css from
// crates/seer-server/assets through a loopback proxy in front of each server,
// so the page can be checked without rebuilding the binary; --assets DIR serves
// them from DIR instead (e.g. an older version, to see which checks it fails).
//
// Exits 0 when every check passed; 1 with the failed checks named.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const value = (name) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const only = value('only') ? value('only').split(',').map((s) => s.trim()) : null;
const fromDisk = flag('assets-from-disk') || !!value('assets');

const seerBin = process.env.SEER_BIN || path.join(repo, 'target/release/seer');
const shared = process.env.SEER_SHARED_DATA || path.resolve(repo, '../shared/data');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const tokenizer = path.join(shared, 'clip-tokenizer/bpe_simple_vocab_16e6.txt.gz');
const CLIP = path.join(repo, 'fixtures/models/openclip-vit');
const DINO = path.join(repo, 'fixtures/families/dinov2-tiny');
const QUICKGELU = path.join(repo, 'fixtures/models/hf-vit-quickgelu');
const SAM = path.join(repo, 'fixtures/sam/sam-tiny');
const OWL = path.join(repo, 'fixtures/owlvit/owlv2-tiny');
const TOKEN = 'sekrit123sekrit123'; // 16 characters at least: seer serve refuses shorter ones
const assetsDir = path.resolve(value('assets') || path.join(repo, 'crates/seer-server/assets'));

function loadPlaywright() {
  const dirs = [process.env.PLAYWRIGHT_DIR, path.join(repo, 'tests/browser'), process.cwd(), here].filter(Boolean);
  for (const dir of dirs) {
    try {
      return createRequire(path.join(path.resolve(dir), 'noop.js'))('playwright-core');
    } catch (_) { /* next */ }
  }
  console.error(`web-checks: playwright-core not found (looked in ${dirs.join(', ')}): `
    + '`npm install playwright-core` in a folder and set PLAYWRIGHT_DIR to it');
  process.exit(2);
}

for (const [what, p] of [['seer binary', seerBin], ['chromium', chromiumPath], ['tokenizer', tokenizer], ['model', CLIP]]) {
  if (!fs.existsSync(p)) {
    console.error(`web-checks: no ${what} at ${p}`);
    process.exit(2);
  }
}
const { chromium } = loadPlaywright();

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'seer-web-checks-'));
const outDir = process.env.WEB_CHECKS_OUT || path.join(work, 'shots');
fs.mkdirSync(outDir, { recursive: true });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ the index

const photos = path.join(work, 'photos');
const indexDir = path.join(work, 'index');
function buildIndex() {
  fs.cpSync(path.join(shared, 'smoke'), photos, { recursive: true });
  const odd = path.join(photos, 'odd');
  fs.mkdirSync(odd);
  const cat = path.join(shared, 'smoke/rclip-formats/cat.jpg');
  fs.copyFileSync(cat, path.join(odd, 'back\\slash.jpg'));
  fs.copyFileSync(cat, path.join(odd, 'new\nline.jpg'));
  fs.copyFileSync(cat, Buffer.concat([Buffer.from(`${odd}/bad`), Buffer.from([0xff, 0xfe]), Buffer.from('name.jpg')]));
  for (const model of [CLIP, DINO, QUICKGELU]) {
    const r = spawnSync(seerBin, ['index', '--index', indexDir, '-m', model, '--tokenizer', tokenizer, photos], { encoding: 'utf8' });
    if (r.status !== 0 && r.status !== 1) throw new Error(`seer index failed: ${r.stderr}`);
  }
}

// ------------------------------------------------------------------ servers

const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
  s.on('error', reject);
});

const ASSETS = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/assets/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/assets/style.css': ['style.css', 'text/css; charset=utf-8'],
};

/** A loopback proxy serving the assets from disk; a request the server does
 *  not answer is cut off (as a stopped server's would be), not answered 502. */
function diskProxy(upstreamPort) {
  const server = http.createServer((req, res) => {
    const asset = ASSETS[new URL(req.url, 'http://x').pathname];
    if (asset && req.method === 'GET') {
      res.writeHead(200, { 'Content-Type': asset[1], 'Cache-Control': 'no-store' });
      res.end(fs.readFileSync(path.join(assetsDir, asset[0])));
      return;
    }
    const up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    // The body is sent whole, so an answer given before it is all read (a 413
    // for a body over --max-body) is passed on, not lost to EPIPE.
    up.on('error', () => setTimeout(() => { if (!res.headersSent) req.socket.destroy(); }, 200));
    const body = [];
    req.on('data', (c) => body.push(c));
    req.on('end', () => up.end(Buffer.concat(body)));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const servers = [];
class Server {
  constructor(name, args) {
    this.name = name;
    this.args = args;
    this.proc = null;
  }

  async start() {
    if (!this.port) this.port = await freePort();
    const log = fs.openSync(path.join(work, `${this.name}.log`), 'a');
    const index = serverIndex[this.name] || indexDir;
    if (!fs.existsSync(index)) fs.mkdirSync(index, { recursive: true });
    this.proc = spawn(seerBin, ['serve', '--index', index, '--bind', `127.0.0.1:${this.port}`, '--tokenizer', tokenizer, ...this.args], {
      stdio: ['ignore', log, log],
    });
    if (fromDisk && !this.proxy) this.proxy = await diskProxy(this.port);
    this.url = `http://127.0.0.1:${fromDisk ? this.proxy.address().port : this.port}`;
    for (let i = 0; i < 300; i++) {
      if (!this.running) throw new Error(`${this.name} exited: ${fs.readFileSync(path.join(work, `${this.name}.log`), 'utf8')}`);
      try {
        const res = await fetch(`http://127.0.0.1:${this.port}/healthz`);
        if (res.ok) return this;
      } catch (_) { /* not yet */ }
      await sleep(100);
    }
    throw new Error(`${this.name} did not start`);
  }

  get running() {
    // A process ended by a signal has a null exitCode (and its signalCode).
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async stop() {
    if (!this.running) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    if (this.running) {
      this.proc.kill('SIGKILL');
      await exited;
    }
  }
}

const serverSpecs = {
  plain: ['-m', CLIP],
  token: ['-m', CLIP, '--token', TOKEN],
  models: ['-m', CLIP, '-m', DINO, '-m', QUICKGELU],
  vision: ['-m', CLIP, '--segment-model', SAM, '--detect-model', OWL],
  small: ['-m', CLIP, '--max-body', '200000'], // a 413 for an ordinary photo
  empty: ['-m', CLIP],
  video: ['-m', CLIP],
};
// Servers on another index than the shared one: `empty` has nothing indexed,
// `video` a video and a photo (see checks.video).
const serverIndex = { empty: path.join(work, 'empty-index'), video: path.join(work, 'video-index') };
async function server(name) {
  let s = servers.find((x) => x.name === name);
  if (!s) {
    s = new Server(name, serverSpecs[name]);
    servers.push(s);
    await s.start();
  }
  return s;
}

// ------------------------------------------------------------------ browser

let browser = null;
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A fresh browser context on `srv`; records page errors, API calls and answers. */
async function open(srv, urlPath = '/', { viewport = { width: 1280, height: 900 }, mobile = false } = {}) {
  const ctx = await browser.newContext({ viewport, isMobile: mobile, hasTouch: mobile, deviceScaleFactor: mobile ? 2 : 1 });
  const page = await ctx.newPage();
  page.setDefaultTimeout(15000);
  const errors = [];
  const calls = [];
  const answers = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/v1/')) calls.push({ method: r.method(), url: u, headers: r.headers() });
  });
  page.on('response', (r) => answers.push({ status: r.status(), url: new URL(r.url()) }));
  if (urlPath !== null) await page.goto(srv.url + urlPath);
  return { ctx, page, errors, calls, answers, srv };
}

const searches = (calls) => calls.filter((c) => c.url.pathname === '/v1/search');
const settled = (page) => page.waitForFunction(() => document.querySelector('#results').getAttribute('aria-busy') === 'false');
const shownIds = (page) => page.$$eval('#results .result', (els) => els.map((e) => e.dataset.id));
const param = (page, name) => new URL(page.url()).searchParams.get(name);
const text = (page, sel) => page.locator(sel).textContent();
const wide = (page) => page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
const shot = (page, name) => page.screenshot({ path: path.join(outDir, `${name}.png`) });

function check(cond, message) {
  if (!cond) throw new Error(message);
}

// ------------------------------------------------------------------ checks

const checks = {};

/** 4: elements with the hidden attribute stay hidden (the vision tools without
 *  SAM/OWL), and show when the server has the models. */
checks.hidden = async () => {
  const p = await open(await server('plain'), '/?q=cat');
  await settled(p.page);
  await p.page.locator('#results .result-view').first().click();
  await p.page.locator('#lightbox').waitFor({ state: 'visible' });
  const shown = await p.page.evaluate(() => [...document.querySelectorAll('[hidden]')]
    .filter((e) => getComputedStyle(e).display !== 'none').map((e) => `#${e.id}.${e.className}`));
  check(shown.length === 0, `hidden but displayed: ${shown.join(', ')}`);
  check(await p.page.locator('#segment-tools').isHidden() && await p.page.locator('#detect-form').isHidden(), 'vision tools shown without the models');
  await p.ctx.close();
  const v = await open(await server('vision'), '/?q=cat');
  await settled(v.page);
  await v.page.locator('#results .result-view').first().click();
  await v.page.locator('#segment-tools').waitFor({ state: 'visible' });
  await v.page.locator('#detect-form').waitFor({ state: 'visible' });
  await v.ctx.close();
};

/** 2 and 8: a token with characters a header cannot carry is refused at entry,
 *  whitespace and zero-width characters around it are dropped, a bad stored
 *  token is dropped and asked for again; the header shows the model and its
 *  vector count with the token. */
checks.token = async () => {
  const srv = await server('token');
  const p = await open(srv, '/');
  const { page } = p;
  await page.locator('#auth').waitFor({ state: 'visible' });
  const stored = () => page.evaluate(() => sessionStorage.getItem('seer.token'));
  await page.fill('#token-input', '猫token');
  await page.press('#token-input', 'Enter');
  await page.locator('#auth-error').waitFor({ state: 'visible' });
  check(/printable ASCII/.test(await text(page, '#auth-error')), `auth error: ${await text(page, '#auth-error')}`);
  check(await page.locator('#auth').isVisible(), 'the token panel closed for a bad token');
  check(await stored() === null, 'a bad token was stored');
  await shot(page, 'token-refused');
  check(!/cannot reach/.test(await text(page, '#index-error')), 'a bad token made the server look unreachable');
  await page.fill('#token-input', '   ');
  await page.press('#token-input', 'Enter');
  check(/blank/.test(await text(page, '#auth-error')), `blank token: ${await text(page, '#auth-error')}`);

  await page.fill('#token-input', `\u200b ${TOKEN}\u200b\ufeff `);
  await page.press('#token-input', 'Enter');
  await page.locator('#auth').waitFor({ state: 'hidden' });
  check(await stored() === TOKEN, `stored token ${JSON.stringify(await stored())}`);
  await page.waitForFunction(() => /\d[\d,]* vectors/.test(document.querySelector('#health').textContent));
  const health = await text(page, '#health');
  check(!/–/.test(health), `header: ${health}`);
  await page.fill('#search-input', 'cat');
  await page.waitForFunction(() => document.querySelectorAll('#results .result').length > 0);

  // A stored token that cannot work is dropped and asked for again.
  await page.evaluate(() => sessionStorage.setItem('seer.token', 'sekrit\u200b123'));
  await page.reload();
  await page.locator('#auth').waitFor({ state: 'visible' });
  check(/saved token was dropped/.test(await text(page, '#auth-error')), `after reload: ${await text(page, '#auth-error')}`);
  check(await stored() === null, 'the bad stored token is still stored');
  await sleep(500);
  check(!/cannot reach/.test(await text(page, '#search-error') + await text(page, '#index-error')), 'a bad stored token made the server look unreachable');
  // ... and one in a #token= link.
  await page.goto('about:blank'); // (a change of the fragment alone loads nothing)
  await page.goto(`${srv.url}/?q=cat#token=${encodeURIComponent('猫')}`);
  await page.locator('#auth-error').waitFor({ state: 'visible' });
  check(/token in the link was dropped/.test(await text(page, '#auth-error')), `link token: ${await text(page, '#auth-error')}`);
  check(!page.url().includes('#'), `the token stays in the address: ${page.url()}`);
  await page.goto('about:blank');
  await page.goto(`${srv.url}/?q=cat#token=${TOKEN}`);
  await page.waitForFunction(() => document.querySelectorAll('#results .result').length > 0);
  check(await page.locator('#auth').isHidden(), 'a good link token was not taken');
  check(p.errors.length === 0, `page errors: ${p.errors}`);
  await p.ctx.close();
};

/** 3: the open detail view keeps its photo when the results change under it
 *  (a re-index re-runs the search): found by id, or kept detached. */
checks.lightbox = async () => {
  const p = await open(await server('plain'), '/?q=a%20photo%20of%20a%20bird&k=10');
  const { page } = p;
  await settled(page);
  let mode = 'as is';
  let dropId = null;
  await page.route('**/v1/search?**', async (route) => {
    const res = await route.fetch();
    const data = await res.json();
    if (mode === 'reverse') data.results.reverse();
    if (mode === 'drop') data.results = data.results.filter((r) => String(r.id) !== dropId);
    await route.fulfill({ response: res, json: data });
  });
  const ids = await shownIds(page);
  await page.locator('#results .result-view').nth(2).click();
  await page.locator('#lightbox').waitFor({ state: 'visible' });
  const id0 = await page.getAttribute('#lightbox', 'data-id');
  const title0 = await text(page, '#lightbox-title');
  check(id0 === ids[2], `opened ${id0}, not ${ids[2]}`);
  await page.fill('#ask-input', 'typing something').catch(() => {});

  const reindex = async () => {
    const rerun = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/search', { timeout: 30000 });
    await page.evaluate(() => document.querySelector('#reindex').click()); // behind the modal dialog
    await rerun;
    await page.waitForFunction(() => document.querySelector('#results').getAttribute('aria-busy') === 'false');
    await sleep(200);
  };
  mode = 'reverse';
  await reindex();
  check(await page.evaluate(() => document.querySelector('#lightbox').open), 'the detail view closed');
  const after = await shownIds(page);
  check(after[0] === ids[ids.length - 1], 'the results were not reversed (the check did not run)');
  check(await page.getAttribute('#lightbox', 'data-id') === id0, `the detail view switched from ${id0} to ${await page.getAttribute('#lightbox', 'data-id')}`);
  check(await text(page, '#lightbox-title') === title0, 'the title changed');
  const pos = await text(page, '#lightbox-pos');
  check(pos.startsWith(`${after.indexOf(id0) + 1} of`), `position "${pos}" after reversing`);
  await page.keyboard.press('ArrowRight');
  await page.waitForFunction((id) => document.querySelector('#lightbox').dataset.id === id, after[after.indexOf(id0) + 1]);
  await page.keyboard.press('ArrowLeft');
  await page.waitForFunction((id) => document.querySelector('#lightbox').dataset.id === id, id0);

  mode = 'drop';
  dropId = id0;
  await reindex();
  check(await page.getAttribute('#lightbox', 'data-id') === id0, 'the detail view switched when its photo left the results');
  check(await page.getAttribute('#lightbox', 'data-detached') === 'true', 'not marked detached');
  check(/No longer among the results/.test(await text(page, '#lightbox-pos')), `position: ${await text(page, '#lightbox-pos')}`);
  check(await page.locator('#lightbox-next').isDisabled() && await page.locator('#lightbox-prev').isDisabled(), 'stepping is offered from a detached photo');
  await page.keyboard.press('ArrowRight');
  await sleep(200);
  check(await page.getAttribute('#lightbox', 'data-id') === id0, '→ left the detached photo for another');
  await shot(page, 'lightbox-detached');
  check(p.errors.length === 0, `page errors: ${p.errors}`);
  await p.ctx.close();
};

/** 5: file names with seer's escapes are whole (a backslash is not a separator). */
checks.names = async () => {
  const p = await open(await server('plain'), null);
  const { page } = p;
  const expect = { '*slash*': 'back\\\\slash.jpg', '*line.jpg': 'new\\nline.jpg', '*name*': 'bad\\xff\\xfename.jpg' };
  for (const [glob, name] of Object.entries(expect)) {
    await page.goto(`${p.srv.url}/?q=cat&k=100&path=${encodeURIComponent(glob)}`);
    await settled(page);
    const names = await page.$$eval('#results .result-name', (els) => els.map((e) => e.textContent));
    check(names.length === 1 && names[0] === name, `${glob}: names ${JSON.stringify(names)}, not ${JSON.stringify(name)}`);
    await page.locator('#results .result-view').first().click();
    check(await text(page, '#lightbox-title') === name, `detail title ${await text(page, '#lightbox-title')}`);
    await page.locator('#lightbox-like').click();
    await page.waitForFunction((n) => document.querySelector('#query-chips').textContent.includes(n), name);
  }
  // A Windows path (every backslash escaped; no server here runs on Windows).
  const real = (await shownIds(page))[0];
  await page.route('**/v1/search?**', (route) => route.fulfill({
    json: { model: 'x', offset: 0, more: false, results: [{ id: Number(real), score: 0.5, path: 'C:\\\\photos\\\\new\\\\back\\\\slash\\nx.jpg' }] },
  }));
  await page.goto(`${p.srv.url}/?q=windows`);
  await page.waitForFunction(() => document.querySelectorAll('#results .result-name').length === 1);
  const win = await text(page, '#results .result-name');
  check(win === 'slash\\nx.jpg', `Windows name ${JSON.stringify(win)}`);
  await p.ctx.close();
};

/** 6: a failed search clears the results and stops paging the query before;
 *  a failed next page stops the infinite scroll; a failed classify clears the chart. */
checks.failure = async () => {
  const p = await open(await server('plain'), '/?q=cat&k=10');
  const { page, calls } = p;
  await settled(page);
  check((await shownIds(page)).length === 10 && await page.locator('#load-more').isVisible(), 'no second page to test with');
  await page.route(/\/v1\/search\?.*q=dog/, (route) => route.fulfill({ status: 500, json: { error: 'search exploded' } }));
  await page.fill('#search-input', 'dog');
  await page.locator('#search-error').waitFor({ state: 'visible' });
  await settled(page);
  check((await shownIds(page)).length === 0, 'the results of "cat" stay under the error');
  check(await page.locator('#load-more').isHidden(), 'Load more is still offered');
  check(await text(page, '#result-count') === 'Search failed', `count line: ${await text(page, '#result-count')}`);
  const before = searches(calls).length;
  await page.mouse.wheel(0, 5000);
  await sleep(1200);
  check(searches(calls).slice(before).every((c) => !c.url.searchParams.has('offset')), 'a page of the old query was fetched');

  await page.unroute(/\/v1\/search\?.*q=dog/);
  // From the top, so the first page comes alone (near the list's end the next
  // one loads at once: the side column keeps the page tall while it is empty).
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.fill('#search-input', 'cat');
  await page.waitForFunction(() => document.querySelectorAll('#results .result').length === 10);
  await page.route(/\/v1\/search\?.*offset=/, (route) => route.fulfill({ status: 500, json: { error: 'page exploded' } }));
  const n0 = searches(calls).length;
  await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  await page.locator('#search-error').waitFor({ state: 'visible' });
  await sleep(1500);
  const tries = searches(calls).slice(n0).filter((c) => c.url.searchParams.has('offset')).length;
  check(tries === 1, `the failed page was fetched ${tries} times`);
  check((await shownIds(page)).length === 10, 'the first page went with the failed second');
  await page.unroute(/\/v1\/search\?.*offset=/);
  await page.locator('#load-more').click();
  await page.waitForFunction(() => document.querySelectorAll('#results .result').length > 10);
  check(await page.locator('#search-error').isHidden(), 'the error stays after the page loaded');

  const image = path.join(shared, 'smoke/rclip-formats/cat.jpg');
  await page.locator('#classify-image').setInputFiles(image);
  await page.fill('#classify-labels', 'cat, dog');
  await page.click('#classify-submit');
  await page.waitForFunction(() => document.querySelectorAll('#classify-chart .bar').length === 2);
  await page.route('**/v1/classify', (route) => route.fulfill({ status: 500, json: { error: 'classify exploded' } }));
  await page.click('#classify-submit');
  await page.locator('#classify-error').waitFor({ state: 'visible' });
  check(await page.locator('#classify-chart .bar').count() === 0, 'the chart before stays under the error');
  check(await text(page, '#classify-status') === 'Classification failed', `status ${await text(page, '#classify-status')}`);
  check(p.errors.length === 0, `page errors: ${p.errors}`);
  await p.ctx.close();
};

/** 7: a model in the address bar by its folder's name, an image-only model,
 *  an alias (the server says which model), an unknown name; the header
 *  follows back and forward. */
checks.models = async () => {
  const srv = await server('models');
  const p = await open(srv, null);
  const { page, calls, answers } = p;
  const list = await (await fetch(`${srv.url}/v1/models`)).json();
  const idOf = (dir) => list.models.find((m) => m.id.endsWith(`/${path.basename(dir)}`)).id;
  const quick = idOf(QUICKGELU);
  const dino = idOf(DINO);

  await page.goto(`${srv.url}/?q=dog&model=hf-vit-quickgelu`);
  await settled(page);
  const sent = searches(calls);
  check(sent.length >= 1 && sent.every((c) => c.url.searchParams.get('model') === quick), `searches: ${sent.map((c) => c.url.search)}`);
  check(param(page, 'model') === quick, `address ${page.url()}`);
  check(await page.inputValue('#model-select') === quick, `picker ${await page.inputValue('#model-select')}`);
  check((await shownIds(page)).length > 0 && await page.locator('#search-error').isHidden(), 'no results with the folder name');
  await page.waitForFunction(() => /hf-vit-quickgelu/.test(document.querySelector('#health').textContent));

  calls.length = 0;
  answers.length = 0;
  await page.goto(`${srv.url}/?q=dog&model=${encodeURIComponent(dino)}`);
  await page.waitForFunction(() => document.querySelector('#search-input').disabled);
  await sleep(800);
  check(searches(calls).every((c) => !c.url.searchParams.get('q')), `a text search went to the image-only model: ${searches(calls).map((c) => c.url.search)}`);
  check(answers.every((a) => a.status < 400), `failed requests: ${answers.filter((a) => a.status >= 400).map((a) => `${a.status} ${a.url}`)}`);
  check(await page.locator('#search-error').isHidden() && await page.locator('#model-hint').isVisible(), 'no image-only hint, or an error');

  // An alias: the page cannot resolve it, sends it, and takes the id the answer names.
  await page.route(/\/v1\/search\?.*model=ViT-Test/, async (route) => {
    const u = new URL(route.request().url());
    u.searchParams.set('model', quick);
    const res = await route.fetch({ url: u.toString() });
    await route.fulfill({ response: res, json: await res.json() });
  });
  await page.goto(`${srv.url}/?q=dog&model=ViT-Test`);
  await page.waitForFunction((id) => new URL(location.href).searchParams.get('model') === id, quick);
  check(await page.inputValue('#model-select') === quick, 'the picker does not show the model the server used');
  await page.unroute(/\/v1\/search\?.*model=ViT-Test/);

  await page.goto(`${srv.url}/?q=dog&model=nonesuch`);
  await page.locator('#search-error').waitFor({ state: 'visible' });
  check(/does not serve model 'nonesuch'/.test(await text(page, '#search-error')), `error: ${await text(page, '#search-error')}`);

  await page.goto(`${srv.url}/?q=cat`);
  await settled(page);
  await page.selectOption('#model-select', dino);
  await page.waitForFunction(() => /dinov2-tiny/.test(document.querySelector('#health').textContent));
  await page.selectOption('#model-select', quick);
  await page.waitForFunction(() => /hf-vit-quickgelu/.test(document.querySelector('#health').textContent));
  await page.goBack();
  await page.waitForFunction(() => /dinov2-tiny/.test(document.querySelector('#health').textContent));
  check(await page.inputValue('#model-select') === dino, 'back: the picker');
  await page.goBack();
  await page.waitForFunction(() => /openclip-vit/.test(document.querySelector('#health').textContent));
  await page.goForward();
  await page.waitForFunction(() => /dinov2-tiny/.test(document.querySelector('#health').textContent));
  check(p.errors.length === 0, `page errors: ${p.errors}`);
  await p.ctx.close();
};

/** 8: the header says when the server is unreachable, and the errors that
 *  said so go once it answers again. */
checks.health = async () => {
  const srv = await server('plain');
  const p = await open(srv, '/?q=cat');
  const { page } = p;
  await settled(page);
  await page.waitForFunction(() => /vectors/.test(document.querySelector('#health').textContent));
  await srv.stop();
  await page.fill('#search-input', 'dog');
  await page.locator('#search-error').waitFor({ state: 'visible' });
  check(/cannot reach the server: is `seer serve` still running\?/.test(await text(page, '#search-error')), `error: ${await text(page, '#search-error')}`);
  await page.waitForFunction(() => /unreachable/.test(document.querySelector('#health').textContent));
  check(!/vectors/.test(await text(page, '#health')), 'the header keeps the model while unreachable');
  await shot(page, 'server-down');
  await srv.start();
  await page.waitForFunction(() => /vectors/.test(document.querySelector('#health').textContent), null, { timeout: 30000 });
  await page.locator('#search-error').waitFor({ state: 'hidden' });
  await page.waitForFunction(() => document.querySelectorAll('#results .result').length > 0);
  check(await page.inputValue('#search-input') === 'dog', 'the query changed');
  await p.ctx.close();
};

/** 13: the index panel does not keep its last counts while the server cannot
 *  be reached: it says so (as the header does), and fills again once the server
 *  answers. */
checks.index = async () => {
  const srv = await server('plain');
  const p = await open(srv, '/');
  const { page } = p;
  const counts = () => page.$$eval('#index-panel .counts dd', (els) => els.map((e) => e.textContent));
  await page.waitForFunction(() => /^\d[\d,]*$/.test(document.querySelector('#status-files').textContent));
  const before = await counts();
  check(before.every((c) => /^\d[\d,]*$/.test(c)), `counts before: ${before}`);
  check(!/unreachable/i.test(await page.locator('#index-panel').innerText()), 'the index panel says unreachable before the server went');
  await srv.stop();
  try {
    await page.fill('#search-input', 'dog'); // any request finds the server gone
    await page.waitForFunction(() => /unreachable/.test(document.querySelector('#health').textContent));
    await sleep(300);
    const down = await counts();
    check(down.every((c) => !/\d/.test(c)), `the index panel keeps its counts while the server is unreachable: ${down} (were ${before})`);
    const panel = await page.locator('#index-panel').innerText();
    check(/unreachable/i.test(panel), `the index panel does not say the server is unreachable: ${panel.replace(/\s+/g, ' ')}`);
    check(!/Last run:/.test(panel), 'the index panel keeps its last run while unreachable');
    await shot(page, 'index-server-down');
    // A re-index asked for meanwhile fails as unreachable and keeps the counts unknown.
    await page.click('#reindex');
    await page.locator('#index-error').waitFor({ state: 'visible' });
    check(/cannot reach/.test(await text(page, '#index-error')), `re-index error: ${await text(page, '#index-error')}`);
    check((await counts()).every((c) => !/\d/.test(c)), `counts after a failed re-index: ${await counts()}`);
  } finally {
    // Back up even when a check above failed, for the checks after this one.
    if (!srv.running) await srv.start();
  }
  await page.waitForFunction(() => /vectors/.test(document.querySelector('#health').textContent), null, { timeout: 30000 });
  await page.waitForFunction(() => /^\d[\d,]*$/.test(document.querySelector('#status-files').textContent));
  const after = await counts();
  check(after.join() === before.join(), `counts after the server is back: ${after} (were ${before})`);
  const back = await page.locator('#index-panel').innerText();
  check(!/unreachable|cannot reach/i.test(back), `the index panel still says unreachable: ${back.replace(/\s+/g, ' ')}`);
  check(await page.locator('#index-error').isHidden(), `index error stays: ${await text(page, '#index-error')}`);
  check(p.errors.length === 0, `page errors: ${p.errors}`);
  await p.ctx.close();
};

/** 9: long unbroken words wrap instead of widening the page. */
checks.overflow = async () => {
  const srv = await server('plain');
  const long = 'x'.repeat(400);
  for (const [viewport, mobile, tag] of [[{ width: 1280, height: 900 }, false, 'desktop'], [{ width: 375, height: 740 }, true, 'phone']]) {
    const p = await open(srv, `/?q=${long}`, { viewport, mobile });
    const { page } = p;
    await settled(page);
    let w = await wide(page);
    check(w.scroll <= w.client, `${tag}: the page is ${w.scroll} px wide for ${w.client}`);
    if (!mobile) {
      const [line, side] = await page.evaluate(() => [document.querySelector('#result-count').getBoundingClientRect().right,
        document.querySelector('.side').getBoundingClientRect().left]);
      check(line <= side, `the count line (to ${line}) runs into the side panel (from ${side})`);
    }
    await shot(page, `long-query-${tag}`);
    // An example image with a long name: its chip.
    await page.locator('#image-input').setInputFiles({ name: `${'y'.repeat(300)}.png`, mimeType: 'image/png', buffer: fs.readFileSync(path.join(shared, 'smoke/skimage/chelsea.png')) });
    await page.waitForFunction(() => /Example image/.test(document.querySelector('#query-chips').textContent));
    await settled(page);
    w = await wide(page);
    check(w.scroll <= w.client, `${tag}: with a long chip the page is ${w.scroll} px wide`);
    if (mobile) await page.click('#tab-classify');
    await page.locator('#classify-image').setInputFiles(path.join(shared, 'smoke/rclip-formats/cat.jpg'));
    await page.fill('#classify-labels', `${'z'.repeat(400)}, cat`);
    await page.click('#classify-submit');
    await page.waitForFunction(() => /Best/.test(document.querySelector('#classify-status').textContent));
    w = await wide(page);
    check(w.scroll <= w.client, `${tag}: after classify the page is ${w.scroll} px wide`);
    const status = await page.evaluate(() => { const e = document.querySelector('#classify-status'); return [e.scrollWidth, e.clientWidth]; });
    check(status[0] <= status[1], `the classify status overflows (${status})`);
    await shot(page, `long-classify-${tag}`);
    check(p.errors.length === 0, `page errors: ${p.errors}`);
    await p.ctx.close();
  }
};

/** 10: the imagenet option's prompt count, the 1,000-label limit, and a busy
 *  state while a classification takes long. */
checks.classify = async () => {
  const p = await open(await server('plain'), '/');
  const { page, calls } = p;
  const option = await page.locator('#classify-templates option[value=imagenet]').textContent();
  check(/\b7 prompts\b/.test(option), `the option says "${option}"`);
  await page.locator('#classify-image').setInputFiles(path.join(shared, 'smoke/rclip-formats/cat.jpg'));
  await page.fill('#classify-labels', Array.from({ length: 1001 }, (_, i) => `label ${i}`).join(','));
  await page.click('#classify-submit');
  await page.locator('#classify-error').waitFor({ state: 'visible' });
  check(/At most 1,000 labels/.test(await text(page, '#classify-error')), `error: ${await text(page, '#classify-error')}`);
  check(!calls.some((c) => c.url.pathname === '/v1/classify'), '1,001 labels were sent');
  // 1,000 labels with imagenet: 7,000 prompts, sent, busy until answered.
  await page.route('**/v1/classify', async (route) => {
    await sleep(2500);
    await route.continue();
  });
  await page.fill('#classify-labels', Array.from({ length: 1000 }, (_, i) => `thing ${i}`).join(','));
  await page.selectOption('#classify-templates', 'imagenet');
  await page.click('#classify-submit');
  await page.waitForFunction(() => / [12] s$/.test(document.querySelector('#classify-status').textContent));
  const busy = await text(page, '#classify-status');
  check(/Classifying.*7,000 prompts/.test(busy), `busy status: ${busy}`);
  check(await page.locator('#classify-submit').isDisabled(), 'the button is enabled while busy');
  await page.waitForFunction(() => /Best/.test(document.querySelector('#classify-status').textContent), null, { timeout: 120000 });
  check(await page.locator('#classify-chart .bar').count() === 1000, 'not 1,000 bars');
  check(await page.locator('#classify-error').isHidden(), `error: ${await text(page, '#classify-error')}`);
  await p.ctx.close();
};

/** 11: detect labels: no silent cut at 1,000 characters; the server's limits
 *  (32 labels, 1,000 characters each) said on the page. */
checks.detect = async () => {
  const p = await open(await server('vision'), '/?q=cat');
  const { page, calls } = p;
  check(await page.getAttribute('#detect-input', 'maxlength') === null, 'the detect box still has a maxlength');
  await settled(page);
  await page.locator('#results .result-view').first().click();
  await page.locator('#detect-form').waitFor({ state: 'visible' });
  const sent = () => calls.filter((c) => c.url.pathname === '/v1/detect').length;
  await page.fill('#detect-input', Array.from({ length: 33 }, (_, i) => `thing ${i}`).join(', '));
  await page.click('#detect-submit');
  await page.locator('#detect-error').waitFor({ state: 'visible' });
  check(/At most 32 labels/.test(await text(page, '#detect-error')), `error: ${await text(page, '#detect-error')}`);
  await page.fill('#detect-input', `a cat, ${'w'.repeat(1001)}`);
  await page.click('#detect-submit');
  await page.waitForFunction(() => /1,000 characters/.test(document.querySelector('#detect-error').textContent));
  check(sent() === 0, 'a refused label list was sent');
  // 33 labels with a repeat are 32 as the server counts them.
  await page.fill('#detect-input', [...Array.from({ length: 32 }, (_, i) => `thing ${i}`), 'thing 0'].join(', '));
  const answered = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/detect');
  await page.click('#detect-submit');
  check((await answered).status() === 200, 'detect with 32 labels failed');
  await page.locator('#detect-error').waitFor({ state: 'hidden' });
  await p.ctx.close();
};

/** 12: filter values: min score -1..1, real dates, from <= to; the address
 *  holds only what is applied. */
checks.filters = async () => {
  const srv = await server('plain');
  const p = await open(srv, null);
  const { page, calls } = p;
  for (const [query, key, bad] of [['min_score=abc', 'min_score', 'abc'], ['min_score=1.5', 'min_score', '1.5'],
    ['from=2023-02-30', 'from', '2023-02-30'], ['to=2023-13-01', 'to', '2023-13-01'], ['k=abc', 'k', 'abc']]) {
    calls.length = 0;
    await page.goto(`${srv.url}/?q=cat&${query}`);
    await settled(page);
    check(param(page, key) === null, `${query}: the address still has it: ${page.url()}`);
    check(param(page, 'q') === 'cat', `${query}: the query went: ${page.url()}`);
    check(searches(calls).every((c) => !c.url.searchParams.has(key) || key === 'k'), `${query}: sent`);
    check(await page.locator('#filter-error').isVisible() && (await text(page, '#filter-error')).includes(bad), `${query}: note ${await text(page, '#filter-error')}`);
    check((await shownIds(page)).length > 0, `${query}: no results`);
  }
  await page.goto(`${srv.url}/?q=cat&min_score=0.01`);
  await settled(page);
  check(param(page, 'min_score') === '0.01' && await page.locator('#filter-error').isHidden(), 'a good min score was dropped');
  calls.length = 0;
  await page.fill('#opt-min-score', '1.5');
  await page.press('#opt-min-score', 'Enter');
  await page.locator('#filter-error').waitFor({ state: 'visible' });
  check(/−1 to 1/.test(await text(page, '#filter-error')), `error: ${await text(page, '#filter-error')}`);
  await sleep(400);
  check(searches(calls).length === 0, 'searched with a min score of 1.5');
  check(param(page, 'min_score') === '0.01', `the address: ${page.url()}`);
  check((await shownIds(page)).length === 0, 'results shown under an unapplied filter');
  check(await page.getAttribute('#opt-min-score', 'aria-invalid') === 'true', 'not marked invalid');
  await shot(page, 'filter-invalid');
  await page.fill('#opt-min-score', '0.02');
  await page.press('#opt-min-score', 'Enter');
  await page.waitForFunction(() => new URL(location.href).searchParams.get('min_score') === '0.02');
  await settled(page);
  check(await page.locator('#filter-error').isHidden(), 'the error stays once fixed');
  // from after to
  await page.fill('#opt-from', '2022-05-01');
  await page.fill('#opt-to', '2021-05-01');
  await page.waitForFunction(() => /later than/.test(document.querySelector('#filter-error').textContent));
  check(param(page, 'to') !== '2021-05-01', 'an impossible range went to the address');
  await page.click('#dates-clear');
  await page.locator('#filter-error').waitFor({ state: 'hidden' });
  check(p.errors.length === 0, `page errors: ${p.errors}`);
  await p.ctx.close();
};

/** 13: a slow search says it is searching (not the last search's count), and
 *  Enter again on the same search does not send it twice. */
checks.busy = async () => {
  const p = await open(await server('plain'), '/?q=cat');
  const { page, calls } = p;
  await settled(page);
  check(/results? for “cat”/.test(await text(page, '#result-count')), `count: ${await text(page, '#result-count')}`);
  let release;
  const held = new Promise((r) => { release = r; });
  await page.route('**/v1/search?**', async (route) => {
    await held;
    await route.continue().catch(() => {}); // an aborted request cannot continue
  });
  calls.length = 0;
  await page.fill('#search-input', 'a dog');
  await page.press('#search-input', 'Enter');
  await page.waitForFunction(() => document.querySelector('#results').getAttribute('aria-busy') === 'true');
  const busy = await text(page, '#result-count');
  check(/Searching for “a dog”/.test(busy), `while busy the count says: ${busy}`);
  await page.press('#search-input', 'Enter');
  await page.press('#search-input', 'Enter');
  await sleep(300);
  await shot(page, 'busy');
  release();
  await settled(page);
  check(searches(calls).length === 1, `the same search was sent ${searches(calls).length} times`);
  check(/results? for “a dog”/.test(await text(page, '#result-count')), `count after: ${await text(page, '#result-count')}`);
  // No results under a filter say which way to look.
  await page.unroute('**/v1/search?**');
  await page.goto(`${p.srv.url}/?q=cat&min_score=0.99`);
  await settled(page);
  check(/No results for “cat” with these filters: a lower minimum score/.test(await text(page, '#result-count')), `no results: ${await text(page, '#result-count')}`);
  // Another search while one is on its way still replaces it.
  await page.fill('#search-input', 'a bird');
  await page.press('#search-input', 'Enter');
  await page.waitForFunction(() => /for “a bird”/.test(document.querySelector('#result-count').textContent));
  check(p.errors.length === 0, `page errors: ${p.errors}`);
  await p.ctx.close();
};

/** 14: error answers in words: a 413 for an upload names the file, its size and
 *  the server's limit in MB; a 403 or 500 without a JSON message says what it
 *  means, not only the HTTP status. */
checks.errors = async () => {
  const p = await open(await server('small'), '/', { viewport: { width: 375, height: 740 }, mobile: true });
  const { page } = p;
  await page.locator('#search-input').waitFor();
  const jpg = fs.readFileSync(path.join(shared, 'smoke/rclip-formats/cat.jpg'));
  const big = Buffer.concat([jpg, Buffer.alloc(Math.max(0, 300000 - jpg.length))]);
  await page.setInputFiles('#image-input', { name: 'holiday.jpg', mimeType: 'image/jpeg', buffer: big });
  await page.locator('#search-error').waitFor({ state: 'visible' });
  const e413 = await text(page, '#search-error');
  check(/holiday\.jpg \(0\.3 MB\) is too large.*at most 0\.2 MB/.test(e413), `413: ${e413}`);
  await shot(page, 'error-413');
  for (const [status, body, want] of [[403, 'Forbidden', /refused this request \(403 Forbidden\)/], [500, '<html>oops</html>', /failed to answer \(500 Internal Server Error\)/]]) {
    await page.route('**/v1/search**', (route) => route.fulfill({ status, body, contentType: 'text/plain' }));
    await page.fill('#search-input', `cat ${status}`);
    await page.press('#search-input', 'Enter');
    await page.waitForFunction((s) => document.querySelector('#search-error').textContent.includes(String(s)), status);
    const said = await text(page, '#search-error');
    check(want.test(said), `${status}: ${said}`);
    await page.unroute('**/v1/search**');
  }
  check(p.errors.length === 0, `page errors: ${p.errors}`);
  await p.ctx.close();
};

/** 15: an empty index says how to fill it; a full one does not. */
checks.empty = async () => {
  const p = await open(await server('empty'), '/');
  await p.page.locator('#empty-index').waitFor({ state: 'visible' });
  check(/Nothing is indexed yet/.test(await text(p.page, '#empty-index')), `note: ${await text(p.page, '#empty-index')}`);
  await shot(p.page, 'empty-index');
  await p.ctx.close();
  const q = await open(await server('plain'), '/');
  await q.page.waitForFunction(() => /vectors/.test(document.querySelector('#health').textContent));
  check(await q.page.locator('#empty-index').isHidden(), 'the empty-index note shows with an index');
  await q.ctx.close();
};

/** A video hit: its tile shows the frame at the hit's time (thumbnail?t=) and
 *  a "▶ 0:05" badge, and says so to screen readers; its detail view plays the
 *  video from that time and lists the sampled frames as buttons to seek to.
 *  Needs ffmpeg (to index the video): without it the check fails, saying so. */
checks.video = async () => {
  const probe = spawnSync('ffmpeg', ['-version'], { encoding: 'utf8' });
  check(probe.status === 0, 'the video check needs ffmpeg (and ffprobe) on PATH: install ffmpeg (e.g. `apt install ffmpeg`)');
  const media = path.join(work, 'video-media');
  if (!fs.existsSync(media)) {
    fs.mkdirSync(media);
    fs.copyFileSync(path.join(repo, 'fixtures/video/colors.mkv'), path.join(media, 'colors.mkv'));
    fs.copyFileSync(path.join(shared, 'smoke/rclip-formats/cat.jpg'), path.join(media, 'cat.jpg'));
    const r = spawnSync(seerBin, ['index', '--index', serverIndex.video, '-m', CLIP, '--tokenizer', tokenizer, media], { encoding: 'utf8' });
    check(r.status === 0, `seer index of the video failed: ${r.stderr}`);
  }
  const p = await open(await server('video'), '/?q=a%20green%20square');
  const { page } = p;
  await settled(page);
  const tile = page.locator('#results .result[data-time]');
  check(await tile.count() === 1, `${await tile.count()} video hits, not 1`);
  const time = Number(await tile.getAttribute('data-time'));
  const clock = `0:0${Math.floor(time)}`;
  check(Number.isFinite(time) && time > 0 && time < 7, `time ${time}`);
  const badge = (await tile.locator('.video-badge').textContent()).trim();
  check(badge === `▶ ${clock}`, `badge “${badge}”, not “▶ ${clock}”`);
  const label = await tile.locator('.result-view').getAttribute('aria-label');
  check(label.includes(`video at ${clock}`), `the tile's label “${label}” does not say it is a video at ${clock}`);
  const thumb = await tile.locator('img').getAttribute('src');
  check(thumb.endsWith(`/thumbnail?t=${time}`), `the tile shows ${thumb}, not the frame at ${time}`);
  await page.waitForFunction(() => [...document.querySelectorAll('#results .result[data-time] img')].every((i) => i.complete && i.naturalWidth > 0));
  const photo = page.locator('#results .result:not([data-time])');
  check(await photo.locator('.video-badge').count() === 0, 'a photo has a video badge');
  // The index panel counts the video and its sampled frames (3 at the default 2 s).
  await page.waitForFunction(() => !document.querySelector('#status-videos').hidden);
  const counted = (await page.locator('#status-videos').textContent()).trim();
  check(counted === '1 video among them (3 sampled frames)', `the index panel says “${counted}”`);
  await shot(page, 'video-results');

  // By keyboard: focus the tile, Enter opens the detail view.
  await tile.locator('.result-view').focus();
  await page.keyboard.press('Enter');
  await page.locator('#lightbox').waitFor({ state: 'visible' });
  const video = page.locator('#lightbox-video');
  await video.waitFor({ state: 'visible' });
  check(await page.locator('#lightbox-img').isHidden(), 'the still image shows beside the video');
  const src = await video.getAttribute('src');
  check(src && src.endsWith(`/v1/images/${await tile.getAttribute('data-id')}#t=${time}`), `the video's src is ${src}, not from ${time}`);
  check(await video.getAttribute('controls') !== null, 'the video has no controls');
  check(await video.getAttribute('preload') === 'metadata', 'the video preloads more than its metadata');
  const seeks = page.locator('#lightbox-frames button');
  await seeks.first().waitFor({ state: 'visible' });
  const times = await seeks.evaluateAll((els) => els.map((e) => [e.textContent, e.getAttribute('aria-label'), e.getAttribute('aria-current')]));
  check(JSON.stringify(times.map((t) => t[0])) === JSON.stringify(['0:01', '0:03', '0:05']), `seek points ${JSON.stringify(times)}`);
  check(times.every((t) => /^Play from \d:\d\d$/.test(t[1])), `seek labels ${JSON.stringify(times)}`);
  check(times.filter((t) => t[2] === 'true').length === 1 && times.find((t) => t[2] === 'true')[0] === clock,
    `the hit's frame is not the current seek point: ${JSON.stringify(times)}`);
  // A seek point by keyboard: it becomes the current one.
  const last = seeks.last();
  await last.focus();
  await page.keyboard.press('Enter');
  check(await last.getAttribute('aria-current') === 'true', 'Enter on a seek point does not make it current');
  check(await page.locator('#ask-form').isHidden() && await page.locator('#detect-form').isHidden(), 'photo tools show for a video');
  await shot(page, 'video-detail');
  await page.keyboard.press('Escape');
  await page.locator('#lightbox').waitFor({ state: 'hidden' });
  check(p.errors.length === 0, `page errors: ${p.errors.join('; ')}`);
  await p.ctx.close();
};

/** 16: on a phone (375 px) the file names under the thumbnails are readable
 *  (chelsea.png whole, not "chelse…"), "Similar" is a finger-sized target,
 *  and the header's vector count is not cut off by a long model path. */
checks.phone = async () => {
  const p = await open(await server('plain'), '/?q=a%20cat', { viewport: { width: 375, height: 740 }, mobile: true });
  const { page } = p;
  await settled(page);
  const names = await page.$$eval('#results .result-name', (els) => els.map((e) => ({ name: e.textContent, cut: e.scrollWidth > e.clientWidth })));
  const chelsea = names.find((n) => n.name === 'chelsea.png');
  check(chelsea && !chelsea.cut, `chelsea.png is cut: ${JSON.stringify(names.slice(0, 4))}`);
  const small = await page.$$eval('#results .result-like', (els) => els.filter((e) => e.getBoundingClientRect().height < 24).length);
  check(small === 0, `${small} "Similar" buttons under 24 px high`);
  await page.waitForFunction(() => /vectors/.test(document.querySelector('#health').textContent));
  const count = await page.evaluate(() => {
    const h = document.querySelector('#health');
    const r = document.createRange();
    const node = [...h.querySelectorAll('*'), h].flatMap((e) => [...e.childNodes]).find((n) => n.nodeType === 3 && /vectors/.test(n.textContent));
    r.selectNodeContents(node);
    return { right: r.getBoundingClientRect().right, edge: h.getBoundingClientRect().right };
  });
  check(count.right <= count.edge + 1, `the vector count is cut off: ${JSON.stringify(count)}`);
  const w = await wide(page);
  check(w.scroll <= w.client, `the page scrolls sideways: ${JSON.stringify(w)}`);
  // The search box's placeholder (its example) is read whole, not cut.
  const fits = await page.evaluate(() => {
    const box = document.querySelector('#search-input');
    const cs = getComputedStyle(box);
    const ctx = document.createElement('canvas').getContext('2d');
    ctx.font = `${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
    const room = box.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    return { text: ctx.measureText(box.placeholder).width, room };
  });
  check(fits.text <= fits.room, `the search placeholder is cut: ${JSON.stringify(fits)}`);
  await shot(page, 'phone-results');
  check(p.errors.length === 0, `page errors: ${p.errors}`);
  await p.ctx.close();
};

/** 17: the keyboard focus ring stands out from the panel it is drawn on
 *  (3:1, WCAG 1.4.11) in the light and the dark scheme. */
checks.focus = async () => {
  for (const colorScheme of ['light', 'dark']) {
    const p = await open(await server('plain'), null);
    await p.page.emulateMedia({ colorScheme });
    await p.page.goto(`${p.srv.url}/`);
    await p.page.locator('#search-input').waitFor();
    await p.page.focus('#search-input'); // a text box shows its ring however it is focused
    const ratio = await p.page.evaluate(() => {
      const rgb = (c) => c.match(/[\d.]+/g).slice(0, 3).map(Number);
      const lum = (c) => {
        const [r, g, b] = rgb(c).map((v) => { const x = v / 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
      };
      const el = document.activeElement;
      const ring = getComputedStyle(el).outlineColor;
      const panel = getComputedStyle(el.closest('.panel')).backgroundColor;
      const [a, b] = [lum(ring), lum(panel)].sort((x, y) => y - x);
      return { id: el.id, ring, panel, ratio: (a + 0.05) / (b + 0.05) };
    });
    check(ratio.id === 'search-input', `focus on ${ratio.id}`);
    check(ratio.ratio >= 3, `${colorScheme}: the focus ring ${ratio.ring} on ${ratio.panel} is ${ratio.ratio.toFixed(2)}:1`);
    await p.ctx.close();
  }
};

// ------------------------------------------------------------------ run

const order = ['hidden', 'token', 'lightbox', 'names', 'failure', 'models', 'overflow', 'classify', 'detect', 'filters', 'health', 'index',
  'busy', 'errors', 'empty', 'phone', 'focus', 'video'];
const failed = [];
let code = 0;
try {
  console.log(`web-checks: working in ${work}${fromDisk ? ' (assets from disk)' : ''}`);
  buildIndex();
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: LAUNCH_ARGS });
  for (const name of order) {
    if (only && !only.includes(name)) continue;
    const t0 = Date.now();
    try {
      await checks[name]();
      console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (e) {
      failed.push(name);
      console.log(`not ok - ${name}: ${String(e && e.message || e).split('\n')[0]}`);
    }
  }
  console.log(`web-checks: ${failed.length ? `FAILED: ${failed.join(', ')}` : 'all passed'}; screenshots in ${outDir}`);
  code = failed.length ? 1 : 0;
} catch (e) {
  console.error(`web-checks: ${e.stack || e}`);
  code = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  for (const s of servers) {
    await s.stop();
    if (s.proxy) s.proxy.close();
  }
  if (!process.env.WEB_CHECKS_KEEP) {
    fs.rmSync(path.join(work, 'index'), { recursive: true, force: true });
    fs.rmSync(photos, { recursive: true, force: true });
  }
}
process.exit(code);
