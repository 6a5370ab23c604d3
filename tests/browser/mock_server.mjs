// A throwaway stand-in for `seer serve`, for working on the page without a model:
// serves the real assets from crates/seer-server/assets and fake JSON for the API.
//
//   node tests/browser/mock_server.mjs [--port 7861] [--token T] [--delay-ms 0..N]
//     [--models mock-clip,mock-dinov2]
//
// --models serves several fake models (the page then shows its model picker); a
// name with "dino" in it has no text tower, like DINOv2. The first is the default.
//
// With --upstream http://127.0.0.1:7860 it serves the assets from disk (edit, reload)
// and forwards everything else to a running `seer serve` (loopback only), so the page
// can be worked on against the real API without rebuilding the binary.
//
// Listens on 127.0.0.1 only. The e2e test does not depend on it.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const assets = path.resolve(here, '../../crates/seer-server/assets');

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const port = Number(arg('port', process.env.PORT || 7861));
const token = arg('token', process.env.MOCK_TOKEN || '') || null;
const maxDelay = Number(arg('delay-ms', 150)); // random per search: exercises out-of-order answers
const upstream = arg('upstream', '') ? new URL(arg('upstream', '')) : null;
const MODELS = arg('models', 'mock-clip').split(',').map((s) => s.trim()).filter(Boolean).map((id) => {
  const text = !/dino/i.test(id);
  return {
    id, family: text ? 'clip' : 'dinov2', dim: text ? 512 : 384, text_tower: text, image_tower: true,
    score_rule: text ? { rule: 'softmax', scale: 100 } : null, vectors: 0,
  };
});
const DEFAULT_MODEL = MODELS[0].id;
if (upstream && !['127.0.0.1', 'localhost', '[::1]'].includes(upstream.hostname)) {
  console.error(`--upstream must be a loopback address, not ${upstream.hostname}`);
  process.exit(2);
}

function proxy(req, res) {
  const up = http.request({
    hostname: upstream.hostname.replace(/^\[|\]$/g, ''),
    port: upstream.port || 80,
    method: req.method,
    path: req.url,
    headers: { ...req.headers, host: upstream.host },
  }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  up.on('error', (e) => fail(res, 502, `upstream ${upstream.origin}: ${e.message}`));
  req.pipe(up);
}

// ------------------------------------------------------------------ fake data

const NAMES = [
  'black cat sleeping on a chair.jpg', 'cat.jpg', 'dog.jpg', 'truck.jpg', 'bee.jpg', 'cake.jpg',
  'camera.jpg', 'books.jpg', 'boats on a lake.png', 'tree.webp', 'horse.png', 'rocket.jpg',
  'coffee.png', 'astronaut.png', 'red_apple.jpg', 'groceries.jpg', 'chess-knight.tiff', 'duck.jp2',
  'motorcycle_right.png', 'kookaburras.pnm', 'magpie.pbm', 'chelsea.png', 'page.png', 'CLIP.png',
];
// Every third photo has an EXIF capture time (2019 to 2022), like a real library
// where some files carry none.
const FILES = NAMES.map((n, i) => ({
  id: 1000 + i * 7,
  path: `/photos/smoke/${n}`,
  size: 20_000 + i * 3_517,
  modified: 1_700_000_000 + i * 86_400,
  width: 640,
  height: 420,
  taken_at: i % 3 === 0 ? `${2019 + (i % 4)}-0${1 + (i % 9)}-1${i % 10} 12:00:00` : null,
}));
const FAILURES = [
  { path: '/photos/smoke/not-an-image.txt', error: 'not a supported image format' },
];

// ------------------------------------------------------------------ a tiny PNG

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
/** An RGB PNG with a diagonal gradient whose hue depends on `seed`. */
function png(width, height, seed) {
  const hue = (seed * 47) % 360;
  const rgb = (h, l) => {
    const a = 0.55 * Math.min(l, 1 - l);
    const f = (n) => {
      const k = (n + h / 30) % 12;
      return Math.round(255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
    };
    return [f(0), f(8), f(4)];
  };
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 3 + 1)] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const [r, g, b] = rgb(hue, 0.35 + 0.35 * ((x + y) / (width + height)));
      const o = y * (width * 3 + 1) + 1 + x * 3;
      raw[o] = r; raw[o + 1] = g; raw[o + 2] = b;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

// ------------------------------------------------------------------ helpers

const hash = (s) => {
  let h = 2166136261;
  for (const c of String(s)) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  return h;
};

function send(res, status, body, headers = {}) {
  const isBuf = Buffer.isBuffer(body) || typeof body === 'string';
  const data = isBuf ? body : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': isBuf ? headers['Content-Type'] || 'text/plain' : 'application/json',
    'Content-Length': Buffer.byteLength(data),
    ...headers,
  });
  res.end(data);
}
const fail = (res, status, message, headers) => send(res, status, { error: message }, headers);

function readBody(req, limit = 32 * 1024 * 1024) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
      } else parts.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

/** Just enough multipart/form-data parsing for the page's forms. */
function parseMultipart(req, body) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(req.headers['content-type'] || '');
  if (!m) throw new Error('expected multipart/form-data');
  const boundary = Buffer.from(`--${m[1] || m[2]}`);
  const fields = {};
  const files = {};
  let pos = body.indexOf(boundary);
  while (pos >= 0) {
    const start = pos + boundary.length;
    if (body.slice(start, start + 2).toString() === '--') break;
    const headEnd = body.indexOf('\r\n\r\n', start);
    const next = body.indexOf(boundary, headEnd);
    if (headEnd < 0 || next < 0) break;
    const head = body.slice(start + 2, headEnd).toString();
    const content = body.slice(headEnd + 4, next - 2);
    const name = /name="([^"]*)"/i.exec(head)?.[1];
    const filename = /filename="([^"]*)"/i.exec(head)?.[1];
    if (name && filename !== undefined) files[name] = { filename, bytes: content };
    else if (name) fields[name] = content.toString();
    pos = next;
  }
  return { fields, files };
}

/** "YYYY-MM-DD[ HH:MM[:SS]]" as the stored form, or null when malformed. */
function dateBound(v, endOfDay) {
  const m = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2})(:\d{2})?)?$/.exec(v);
  if (!m) return null;
  return `${m[1]} ${m[2] || (endOfDay ? '23:59' : '00:00')}${m[3] || (endOfDay ? ':59' : ':00')}`;
}

function rank(seed, k, offset, { minScore, glob, likeId, from, to } = {}) {
  // "More like this" leaves the photo itself out.
  let rows = FILES.filter((f) => f.id !== likeId)
    .map((f) => ({ ...f, score: 0.12 + ((hash(`${seed}:${f.id}`) % 2000) / 10000) }));
  if (from || to) {
    rows = rows.filter((r) => r.taken_at && (!from || r.taken_at >= from) && (!to || r.taken_at <= to));
  }
  if (glob) {
    const re = new RegExp(`^${glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
    rows = rows.filter((r) => re.test(r.path));
  }
  if (Number.isFinite(minScore)) rows = rows.filter((r) => r.score >= minScore);
  rows.sort((a, b) => b.score - a.score);
  return {
    more: rows.length > offset + k,
    results: rows.slice(offset, offset + k).map((r) => ({ ...described(r), score: Number(r.score.toFixed(4)) })),
  };
}

const described = (f) => ({
  id: f.id, path: f.path, size: f.size, modified: f.modified, width: f.width, height: f.height,
  taken_at: f.taken_at, url: `/v1/images/${f.id}`, thumbnail: `/v1/images/${f.id}/thumbnail`,
});

/** The model a request names (default without one), or null after a 400. */
function pickModel(res, name) {
  if (!name) return MODELS[0];
  const m = MODELS.find((x) => x.id === name);
  if (!m) {
    const served = MODELS.map((x, i) => (i ? x.id : `${x.id} (default)`)).join(', ');
    fail(res, 400, `this server does not serve model '${name}'; it serves ${served}`);
    return null;
  }
  return m;
}

function searchAnswer(res, p) {
  const model = pickModel(res, p.model);
  if (!model) return;
  if (p.q && !model.text_tower) {
    return fail(res, 400, `model '${model.id}' (${model.family}) embeds images only: it has no text tower`);
  }
  const likeId = p.like !== undefined && p.like !== '' ? Number(p.like) : undefined;
  if (!p.q && !p.image && likeId === undefined) {
    return fail(res, 400, 'give q (text), an image upload, or like (an image id)');
  }
  if (likeId !== undefined && !FILES.some((f) => f.id === likeId)) {
    return fail(res, 404, `no indexed image ${likeId}`);
  }
  const k = Math.max(1, Math.min(1000, Number(p.k) || 20));
  const offset = Math.max(0, Number(p.offset) || 0);
  const from = p.from ? dateBound(p.from, false) : undefined;
  const to = p.to ? dateBound(p.to, true) : undefined;
  if (from === null) return fail(res, 400, `from must be a date YYYY-MM-DD, not '${p.from}'`);
  if (to === null) return fail(res, 400, `to must be a date YYYY-MM-DD, not '${p.to}'`);
  const seed = `${model.id}|${p.q || ''}|${p.image ? p.image.bytes.length : ''}|${likeId ?? ''}`;
  const { results, more } = rank(seed, k, offset, {
    minScore: p.min_score ? Number(p.min_score) : undefined,
    glob: p.path || undefined,
    likeId,
    from,
    to,
  });
  const answer = { model: model.id, offset, more, results };
  if (likeId !== undefined) answer.like = described(FILES.find((f) => f.id === likeId));
  const delay = Math.floor(Math.random() * maxDelay);
  setTimeout(() => send(res, 200, answer), delay);
}

// ------------------------------------------------------------------ index job

const job = { running: false, planned: 0, done: 0, timer: null, last: null };
function startJob() {
  job.running = true;
  job.planned = 0;
  job.done = 0;
  let ticks = 0;
  job.timer = setInterval(() => {
    ticks++;
    if (ticks === 2) job.planned = 12;
    if (ticks > 2) job.done = Math.min(job.planned, job.done + 3);
    if (ticks > 2 && job.done >= job.planned) {
      clearInterval(job.timer);
      job.running = false;
      job.last = {
        model: DEFAULT_MODEL, added: 12, skipped: FILES.length - 12, moved: 0, copied: 0, touched: 0,
        removed: 0, failed: 0, still_failing: FAILURES.length, seconds: 2.4, failures: [],
      };
    }
  }, 400);
}

// ------------------------------------------------------------------ server

const ASSETS = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/assets/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/assets/style.css': ['style.css', 'text/css; charset=utf-8'],
};

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const p = url.pathname;
  try {
    if (req.method === 'GET' && ASSETS[p]) {
      const [file, type] = ASSETS[p];
      return send(res, 200, fs.readFileSync(path.join(assets, file)), { 'Content-Type': type });
    }
    if (upstream) return proxy(req, res);
    if (req.method === 'GET' && p === '/healthz') {
      return send(res, 200, { status: 'ok', model: DEFAULT_MODEL, vectors: FILES.length });
    }
    if (p.startsWith('/v1/') || p === '/metrics') {
      if (token && req.headers.authorization !== `Bearer ${token}`) {
        return fail(res, 401, 'missing or wrong bearer token');
      }
    }
    if (p === '/v1/models' && req.method === 'GET') {
      const models = MODELS.map((m, i) => ({ ...m, vectors: FILES.length, default: i === 0 }));
      return send(res, 200, { default: DEFAULT_MODEL, models });
    }
    if (p === '/v1/search' && req.method === 'GET') {
      return searchAnswer(res, Object.fromEntries(url.searchParams));
    }
    if (p === '/v1/search' && req.method === 'POST') {
      const { fields, files } = parseMultipart(req, await readBody(req));
      return searchAnswer(res, { ...fields, image: files.image });
    }
    let m = /^\/v1\/images\/(-?\d+)(\/thumbnail)?$/.exec(p);
    if (m && req.method === 'GET') {
      const id = Number(m[1]);
      if (!FILES.some((f) => f.id === id)) return fail(res, 404, `no indexed image ${id}`);
      const [w, h] = m[2] ? [256, 170 + (id % 60)] : [640, 420];
      return send(res, 200, png(w, h, id), { 'Content-Type': 'image/png', 'Cache-Control': 'max-age=60' });
    }
    if (p === '/v1/classify' && req.method === 'POST') {
      const { fields, files } = parseMultipart(req, await readBody(req));
      if (!files.image) return fail(res, 400, 'upload the image as field "image"');
      const model = pickModel(res, fields.model);
      if (!model) return;
      if (!model.text_tower) return fail(res, 400, `model '${model.id}' (${model.family}) embeds images only: it has no text tower`);
      const labels = (fields.labels || '').split(',').map((s) => s.trim()).filter(Boolean);
      if (!labels.length) return fail(res, 400, 'give 1 to 1000 comma-separated "labels"');
      const logits = labels.map((l) => (hash(`${l}:${files.image.bytes.length}`) % 1000) / 150);
      const max = Math.max(...logits);
      const ex = logits.map((x) => Math.exp(x - max));
      const sum = ex.reduce((a, b) => a + b, 0);
      const predictions = labels
        .map((label, index) => ({ label, index, probability: ex[index] / sum }))
        .sort((a, b) => b.probability - a.probability);
      return setTimeout(() => send(res, 200, { predictions }), 80);
    }
    if (p === '/v1/embed' && req.method === 'POST') {
      const body = JSON.parse((await readBody(req)).toString() || '{}');
      const texts = body.texts || [];
      const images = body.images || [];
      if (!texts.length && !images.length) return fail(res, 400, 'give "texts" and/or "images" (base64)');
      const vec = (s) => Array.from({ length: 8 }, (_, i) => ((hash(`${s}:${i}`) % 2000) - 1000) / 1000);
      const embeddings = [
        ...texts.map((t) => ({ input: t, embedding: vec(t) })),
        ...images.map((b, i) => ({ input: `image ${i}`, embedding: vec(b.length) })),
      ];
      return send(res, 200, { model: body.model || DEFAULT_MODEL, dim: 8, embeddings });
    }
    if (p === '/v1/index' && req.method === 'POST') {
      if (job.running) return fail(res, 409, 'an index job is already running');
      startJob();
      return send(res, 202, { started: true });
    }
    if (p === '/v1/index/status' && req.method === 'GET') {
      return send(res, 200, {
        running: job.running, planned: job.planned, done: job.done,
        files: FILES.length + FAILURES.length, vectors: FILES.length,
        failures: FAILURES.length, failure_list: FAILURES, last: job.last, error: null,
      });
    }
    return fail(res, 404, `no route ${req.method} ${p}`);
  } catch (e) {
    return fail(res, 400, e.message);
  }
});

server.listen(port, '127.0.0.1', () => {
  const mode = upstream ? ` (page from disk, API from ${upstream.origin})` : token ? ' (token required)' : '';
  console.log(`mock seer listening on http://127.0.0.1:${server.address().port}${mode}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
