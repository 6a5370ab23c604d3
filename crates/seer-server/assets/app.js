// seer web page: search, search by example, "more like this", zero-shot classify,
// index status. Plain ES2020, no dependencies, nothing loaded from other hosts.
'use strict';

(() => {
  const $ = (sel) => document.querySelector(sel);
  const TOKEN_KEY = 'seer.token';
  const DEBOUNCE_MS = 250;
  const MAX_BUSY_RETRIES = 2;

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  const auth = {
    token: null,
    load() {
      // #token=... in the URL wins; it is moved to sessionStorage and removed from the
      // address bar so it does not end up in bookmarks or screenshots.
      const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
      if (m) {
        try {
          sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
        } catch (_) { /* storage disabled: keep it in memory */ }
        this.token = decodeURIComponent(m[1]);
        history.replaceState(null, '', location.pathname + location.search);
        return;
      }
      try {
        this.token = sessionStorage.getItem(TOKEN_KEY);
      } catch (_) {
        this.token = null;
      }
    },
    set(token) {
      this.token = token || null;
      try {
        if (token) sessionStorage.setItem(TOKEN_KEY, token);
        else sessionStorage.removeItem(TOKEN_KEY);
      } catch (_) { /* ignore */ }
    },
    headers(extra = {}) {
      return this.token ? { ...extra, Authorization: `Bearer ${this.token}` } : extra;
    },
  };

  const sleep = (ms, signal) => new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener('abort', () => {
        clearTimeout(t);
        reject(new DOMException('aborted', 'AbortError'));
      }, { once: true });
    }
  });

  /** fetch() with the token, JSON errors turned into ApiError, 401 asking for a
   *  token and 503 retried after Retry-After (a busy server asks clients to back off). */
  async function api(path, { method = 'GET', body, json, signal, retryBusy = true, raw = false } = {}) {
    const headers = auth.headers(json !== undefined ? { 'Content-Type': 'application/json' } : {});
    const init = { method, headers, signal, body: json !== undefined ? JSON.stringify(json) : body };
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await fetch(path, init);
      } catch (e) {
        if (e.name === 'AbortError') throw e;
        throw new ApiError(0, `cannot reach the server (${e.message})`);
      }
      if (res.status === 503 && retryBusy && attempt < MAX_BUSY_RETRIES) {
        const after = Number(res.headers.get('Retry-After'));
        const wait = Number.isFinite(after) && after > 0 ? Math.min(after, 10) * 1000 : 1000;
        await sleep(wait * (attempt + 1), signal);
        continue;
      }
      if (res.ok) return raw ? res : res.json();
      let message = `${res.status} ${res.statusText}`;
      try {
        const data = await res.json();
        if (data && data.error) message = data.error;
      } catch (_) { /* not JSON */ }
      if (res.status === 401) askForToken(auth.token ? 'The token was refused; enter the right one.' : null);
      if (res.status === 503) {
        const after = res.headers.get('Retry-After');
        message = `The server is busy${after ? `; try again in ${after} s` : ''} (${message})`;
      }
      throw new ApiError(res.status, message);
    }
  }

  const isAbort = (e) => e && e.name === 'AbortError';

  // ------------------------------------------------------------------ helpers

  const fileName = (path) => String(path).split(/[\\/]/).pop() || String(path);

  function showError(el, err) {
    if (!err) {
      el.hidden = true;
      el.textContent = '';
      return;
    }
    el.textContent = err.status === 401 ? 'Authorization needed: enter the API token above.' : String(err.message || err);
    el.hidden = false;
  }

  const fmtInt = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : '–');

  /** Images under /v1 need the token when there is one, and <img> cannot send
   *  headers: then they are fetched and shown from blob: URLs. */
  const blobUrls = new Set();
  function setImageSource(img, url) {
    if (!auth.token) {
      img.src = url;
      return;
    }
    api(url, { raw: true })
      .then((res) => res.blob())
      .then((blob) => {
        const u = URL.createObjectURL(blob);
        blobUrls.add(u);
        img.src = u;
      })
      .catch((e) => {
        img.classList.add('broken');
        img.title = `thumbnail failed: ${e.message}`;
      });
  }
  function releaseBlobUrls() {
    for (const u of blobUrls) URL.revokeObjectURL(u);
    blobUrls.clear();
  }

  function openOriginal(event, url) {
    if (!auth.token) return; // a plain link works
    event.preventDefault();
    const win = window.open('', '_blank');
    api(url, { raw: true })
      .then((res) => res.blob())
      .then((blob) => {
        const u = URL.createObjectURL(blob);
        if (win) win.location.href = u;
        else location.href = u;
      })
      .catch((e) => {
        if (win) win.close();
        showError($('#search-error'), e);
      });
  }

  // ------------------------------------------------------------------ token

  function askForToken(message) {
    const panel = $('#auth');
    const wasHidden = panel.hidden;
    panel.hidden = false;
    const hint = panel.querySelector('.hint');
    if (message) hint.textContent = message;
    if (wasHidden) $('#token-input').focus();
  }

  $('#auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('#token-input').value.trim();
    if (!token) return;
    auth.set(token);
    $('#token-input').value = '';
    $('#auth').hidden = true;
    refreshAll();
  });

  // ------------------------------------------------------------------ search

  const search = {
    q: '',
    image: null, // File
    like: null, // {id, name}
    controller: null,
    seq: 0,
    shown: 0,
    timer: null,
  };
  const searchInput = $('#search-input');
  const resultsEl = $('#results');
  const countEl = $('#result-count');
  const searchErr = $('#search-error');

  function options() {
    const k = $('#opt-k').value;
    const min = $('#opt-min-score').value.trim();
    const path = $('#opt-path').value.trim();
    return { k, min_score: min, path };
  }

  function renderChips() {
    const chips = $('#query-chips');
    chips.textContent = '';
    const chip = (text, label, onRemove) => {
      const span = document.createElement('span');
      span.className = 'chip';
      span.textContent = text;
      const x = document.createElement('button');
      x.type = 'button';
      x.className = 'chip-remove';
      x.setAttribute('aria-label', label);
      x.textContent = '×';
      x.addEventListener('click', () => {
        onRemove();
        renderChips();
        runSearch();
        searchInput.focus();
      });
      span.append(x);
      chips.append(span);
    };
    if (search.image) {
      chip(`Example image: ${search.image.name || 'pasted image'}`, 'Remove the example image', () => { search.image = null; });
    }
    if (search.like) {
      chip(`More like: ${search.like.name}`, 'Stop searching for similar photos', () => { search.like = null; });
    }
  }

  function scheduleSearch() {
    clearTimeout(search.timer);
    search.timer = setTimeout(runSearch, DEBOUNCE_MS);
  }

  async function runSearch() {
    clearTimeout(search.timer);
    if (search.controller) search.controller.abort();
    const q = searchInput.value.trim();
    search.q = q;
    const seq = ++search.seq;
    if (!q && !search.image && !search.like) {
      search.controller = null;
      renderResults([]);
      countEl.textContent = '';
      showError(searchErr, null);
      resultsEl.setAttribute('aria-busy', 'false');
      return;
    }
    const controller = new AbortController();
    search.controller = controller;
    const opts = options();
    resultsEl.setAttribute('aria-busy', 'true');
    try {
      let data;
      if (search.image) {
        const form = new FormData();
        form.append('image', search.image, search.image.name || 'pasted.png');
        if (q) form.append('q', q);
        if (search.like) form.append('like', String(search.like.id));
        form.append('k', opts.k);
        if (opts.min_score) form.append('min_score', opts.min_score);
        if (opts.path) form.append('path', opts.path);
        data = await api('/v1/search', { method: 'POST', body: form, signal: controller.signal });
      } else {
        const params = new URLSearchParams();
        if (q) params.set('q', q);
        if (search.like) params.set('like', String(search.like.id));
        params.set('k', opts.k);
        if (opts.min_score) params.set('min_score', opts.min_score);
        if (opts.path) params.set('path', opts.path);
        data = await api(`/v1/search?${params}`, { signal: controller.signal });
      }
      if (seq !== search.seq) return; // a newer search started: this answer is stale
      showError(searchErr, null);
      const results = Array.isArray(data.results) ? data.results : [];
      renderResults(results);
      const what = [q && `“${q}”`, search.image && 'the example image', search.like && search.like.name]
        .filter(Boolean).join(' + ');
      countEl.textContent = results.length
        ? `${results.length} result${results.length === 1 ? '' : 's'} for ${what}`
        : `No results for ${what}`;
    } catch (e) {
      if (isAbort(e) || seq !== search.seq) return;
      showError(searchErr, e);
      countEl.textContent = 'Search failed';
    } finally {
      if (seq === search.seq) {
        resultsEl.setAttribute('aria-busy', 'false');
        search.controller = null;
      }
    }
  }

  function renderResults(results) {
    releaseBlobUrls();
    resultsEl.textContent = '';
    const frag = document.createDocumentFragment();
    for (const r of results) {
      const name = fileName(r.path);
      const li = document.createElement('li');
      li.className = 'result';
      li.dataset.id = String(r.id);
      li.dataset.score = String(r.score);

      const like = document.createElement('button');
      like.type = 'button';
      like.className = 'result-like';
      like.title = `${r.path}\nClick for more like this`;
      like.setAttribute('aria-label', `${name}, score ${Number(r.score).toFixed(3)}: more like this`);
      const img = document.createElement('img');
      img.alt = name;
      img.loading = 'lazy';
      img.decoding = 'async';
      img.addEventListener('error', () => img.classList.add('broken'), { once: true });
      setImageSource(img, r.thumbnail || `/v1/images/${r.id}/thumbnail`);
      like.append(img);
      like.addEventListener('click', () => moreLike(r.id, name));

      const meta = document.createElement('div');
      meta.className = 'result-meta';
      const label = document.createElement('span');
      label.className = 'result-name';
      label.textContent = name;
      label.title = r.path;
      const score = document.createElement('span');
      score.className = 'score';
      score.textContent = Number(r.score).toFixed(3);
      const open = document.createElement('a');
      open.className = 'result-open';
      open.href = r.url || `/v1/images/${r.id}`;
      open.target = '_blank';
      open.rel = 'noopener';
      open.textContent = 'Open';
      open.setAttribute('aria-label', `Open the original of ${name}`);
      open.addEventListener('click', (ev) => openOriginal(ev, open.getAttribute('href')));
      meta.append(label, score, open);

      li.append(like, meta);
      frag.append(li);
    }
    resultsEl.append(frag);
    search.shown = results.length;
  }

  function moreLike(id, name) {
    search.like = { id, name };
    search.image = null;
    searchInput.value = '';
    renderChips();
    runSearch();
    window.scrollTo({ top: 0, behavior: 'smooth' });
  }

  function searchByImage(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith('image/')) {
      showError(searchErr, new Error(`${file.name || 'That file'} is not an image`));
      return;
    }
    search.image = file;
    search.like = null;
    searchInput.value = '';
    renderChips();
    runSearch();
  }

  searchInput.addEventListener('input', scheduleSearch);
  $('#search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    runSearch();
  });
  for (const id of ['#opt-k', '#opt-min-score', '#opt-path']) {
    $(id).addEventListener('change', runSearch);
  }
  $('#opt-path').addEventListener('input', scheduleSearch);
  $('#image-pick').addEventListener('click', () => $('#image-input').click());
  $('#image-input').addEventListener('change', (e) => {
    const file = e.target.files && e.target.files[0];
    searchByImage(file);
    e.target.value = '';
  });

  // ------------------------------------------------------------------ drag, drop, paste

  const overlay = $('#drop-overlay');
  let dragDepth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');
  const firstImage = (list) => Array.from(list || []).find((f) => !f.type || f.type.startsWith('image/'));
  const inClassify = (node) => !!(node && node.closest && node.closest('#classify-panel'));

  document.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    dragDepth++;
    overlay.hidden = inClassify(e.target);
    $('#classify-drop').classList.toggle('dragging', inClassify(e.target));
  });
  document.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    overlay.hidden = inClassify(e.target);
    $('#classify-drop').classList.toggle('dragging', inClassify(e.target));
  });
  document.addEventListener('dragleave', (e) => {
    if (!hasFiles(e)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) {
      overlay.hidden = true;
      $('#classify-drop').classList.remove('dragging');
    }
  });
  document.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth = 0;
    overlay.hidden = true;
    $('#classify-drop').classList.remove('dragging');
    const file = firstImage(e.dataTransfer.files);
    if (!file) {
      showError(inClassify(e.target) ? $('#classify-error') : searchErr, new Error('Drop an image file'));
      return;
    }
    if (inClassify(e.target)) setClassifyImage(file);
    else searchByImage(file);
  });
  document.addEventListener('paste', (e) => {
    const items = e.clipboardData ? Array.from(e.clipboardData.items || []) : [];
    const item = items.find((i) => i.kind === 'file' && i.type.startsWith('image/'));
    if (!item) return; // ordinary text paste
    const file = item.getAsFile();
    if (!file) return;
    e.preventDefault();
    if (inClassify(document.activeElement)) setClassifyImage(file);
    else searchByImage(file);
  });

  // ------------------------------------------------------------------ classify

  let classifyFile = null;
  let classifyPreviewUrl = null;
  const chart = $('#classify-chart');

  function setClassifyImage(file) {
    classifyFile = file;
    const preview = $('#classify-preview');
    if (classifyPreviewUrl) URL.revokeObjectURL(classifyPreviewUrl);
    classifyPreviewUrl = file ? URL.createObjectURL(file) : null;
    preview.hidden = !file;
    if (file) {
      preview.src = classifyPreviewUrl;
      preview.alt = file.name || 'pasted image';
    }
    $('#classify-status').textContent = file ? `Image: ${file.name || 'pasted image'}` : '';
  }

  $('#classify-image').addEventListener('change', (e) => {
    setClassifyImage(e.target.files && e.target.files[0]);
  });

  function renderChart(predictions) {
    chart.textContent = '';
    for (const p of predictions) {
      const pct = Math.max(0, Math.min(1, Number(p.probability))) * 100;
      const li = document.createElement('li');
      li.className = 'bar';
      li.dataset.label = p.label;
      li.dataset.probability = String(p.probability);
      const label = document.createElement('span');
      label.className = 'bar-label';
      label.textContent = p.label;
      label.title = p.label;
      const track = document.createElement('span');
      track.className = 'bar-track';
      track.setAttribute('aria-hidden', 'true');
      const fill = document.createElement('span');
      fill.className = 'bar-fill';
      fill.style.width = `${pct.toFixed(2)}%`;
      track.append(fill);
      const value = document.createElement('span');
      value.className = 'bar-value';
      value.textContent = `${pct.toFixed(1)}%`;
      li.append(label, track, value);
      chart.append(li);
    }
  }

  let classifyController = null;
  $('#classify-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = $('#classify-error');
    const status = $('#classify-status');
    const labels = $('#classify-labels').value.split(',').map((s) => s.trim()).filter(Boolean);
    if (!classifyFile) {
      showError(err, new Error('Choose an image to classify'));
      $('#classify-image').focus();
      return;
    }
    if (!labels.length) {
      showError(err, new Error('Type at least one label, e.g. cat, dog, car'));
      $('#classify-labels').focus();
      return;
    }
    if (classifyController) classifyController.abort();
    const controller = new AbortController();
    classifyController = controller;
    const form = new FormData();
    form.append('image', classifyFile, classifyFile.name || 'pasted.png');
    form.append('labels', labels.join(','));
    form.append('templates', $('#classify-templates').value);
    const button = $('#classify-submit');
    button.disabled = true;
    chart.setAttribute('aria-busy', 'true');
    status.textContent = 'Classifying…';
    showError(err, null);
    try {
      const data = await api('/v1/classify', { method: 'POST', body: form, signal: controller.signal });
      if (classifyController !== controller) return;
      const preds = Array.isArray(data.predictions) ? data.predictions : [];
      renderChart(preds);
      status.textContent = preds.length
        ? `Best: ${preds[0].label} (${(preds[0].probability * 100).toFixed(1)}%)`
        : 'No predictions';
    } catch (ex) {
      if (isAbort(ex)) return;
      showError(err, ex);
      status.textContent = 'Classification failed';
    } finally {
      if (classifyController === controller) {
        classifyController = null;
        button.disabled = false;
        chart.setAttribute('aria-busy', 'false');
      }
    }
  });

  // ------------------------------------------------------------------ index status

  let pollTimer = null;
  let wasRunning = false;

  function renderStatus(s) {
    $('#status-files').textContent = fmtInt(s.files);
    $('#status-vectors').textContent = fmtInt(s.vectors);
    $('#status-failures').textContent = fmtInt(s.failures);
    const list = $('#failure-list');
    list.textContent = '';
    const failures = Array.isArray(s.failure_list) ? s.failure_list : [];
    for (const f of failures) {
      const li = document.createElement('li');
      const p = document.createElement('code');
      p.textContent = f.path;
      const m = document.createElement('span');
      m.textContent = f.error;
      li.append(p, m);
      list.append(li);
    }
    if (s.failures > failures.length) {
      const li = document.createElement('li');
      li.textContent = `…and ${fmtInt(s.failures - failures.length)} more (see \`seer status\`)`;
      list.append(li);
    }
    $('#failure-count').textContent = fmtInt(s.failures || 0);
    $('#failure-details').hidden = !s.failures;

    const wrap = $('#index-progress-wrap');
    const progress = $('#index-progress');
    wrap.hidden = !s.running;
    if (s.running) {
      if (s.planned > 0) {
        progress.max = s.planned;
        progress.value = Math.min(s.done, s.planned);
        $('#index-progress-text').textContent = `Indexing: ${fmtInt(s.done)} of ${fmtInt(s.planned)} images`;
      } else {
        progress.removeAttribute('value');
        $('#index-progress-text').textContent = 'Indexing: looking for new and changed files…';
      }
    }
    $('#reindex').disabled = !!s.running;
    $('#reindex').textContent = s.running ? 'Indexing…' : 'Re-index';

    const last = s.last;
    const parts = [];
    if (last && typeof last === 'object') {
      for (const [k, v] of Object.entries(last)) {
        if (k === 'seconds' || typeof v !== 'number') continue;
        if (v || k === 'added') parts.push(`${k.replace(/_/g, ' ')} ${fmtInt(v)}`);
      }
      if (typeof last.seconds === 'number') parts.push(`in ${last.seconds.toFixed(1)} s`);
    }
    $('#index-last').textContent = parts.length ? `Last run: ${parts.join(', ')}` : '';
    showError($('#index-error'), s.error ? new Error(`Last index run failed: ${s.error}`) : null);

    if (wasRunning && !s.running) {
      $('#index-live').textContent = s.error ? 'Indexing failed' : `Indexing finished: ${fmtInt(s.files)} files`;
      refreshHealth();
      if (search.q || search.image || search.like) runSearch();
    }
    wasRunning = !!s.running;
  }

  async function refreshStatus() {
    clearTimeout(pollTimer);
    try {
      const s = await api('/v1/index/status');
      renderStatus(s);
      if (s.running) pollTimer = setTimeout(refreshStatus, 1000);
    } catch (e) {
      showError($('#index-error'), e);
      if (wasRunning && e.status !== 401) pollTimer = setTimeout(refreshStatus, 3000);
    }
  }

  $('#reindex').addEventListener('click', async () => {
    const button = $('#reindex');
    button.disabled = true;
    showError($('#index-error'), null);
    try {
      await api('/v1/index', { method: 'POST', retryBusy: false });
      $('#index-live').textContent = 'Indexing started';
      wasRunning = true;
    } catch (e) {
      if (e.status !== 409) showError($('#index-error'), e); // 409: one is already running
    }
    refreshStatus();
  });

  // ------------------------------------------------------------------ health

  async function refreshHealth() {
    const el = $('#health');
    try {
      const res = await fetch('/healthz');
      const h = await res.json();
      el.textContent = `${h.model || 'model'} · ${fmtInt(h.vectors)} vectors`;
      el.classList.remove('bad');
    } catch (e) {
      el.textContent = 'server unreachable';
      el.classList.add('bad');
    }
  }

  function refreshAll() {
    refreshHealth();
    refreshStatus();
    if (search.q || search.image || search.like || searchInput.value.trim()) runSearch();
  }

  // ------------------------------------------------------------------ start

  auth.load();
  refreshAll();
  if (!searchInput.value) searchInput.focus({ preventScroll: true });
})();
