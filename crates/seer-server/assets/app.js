// seer web page: search (paged, by date, state in the URL), search by example,
// captions on results, a detail view with "more like this" and questions about
// the photo (with a VQA model), click-to-segment (with a SAM model), boxes for
// typed labels and "show where" (with a detection model), reranking (with a matching model), zero-shot
// classify, index status. Plain ES2020, no dependencies, nothing loaded from other hosts.
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
    image: null, // File: search by example
    lastImage: null, // the last example, to come back to with the back button
    like: null, // {id, name}: more like this indexed photo
    model: null, // the picked model's id; null: the server's default
    controller: null,
    seq: 0,
    timer: null,
    request: null, // what the shown results answer (for the next page)
    results: [],
    more: false,
    loadingMore: false,
  };
  const searchInput = $('#search-input');
  const resultsEl = $('#results');
  const countEl = $('#result-count');
  const searchErr = $('#search-error');
  const loadMoreBtn = $('#load-more');
  const DEFAULT_K = '20';

  function options() {
    return {
      k: $('#opt-k').value,
      min_score: $('#opt-min-score').value.trim(),
      path: $('#opt-path').value.trim(),
      from: $('#opt-from').value,
      to: $('#opt-to').value,
      rerank: rerankOn(),
    };
  }

  /** Whether results are reranked: the box is ticked and the server can. */
  const rerankOn = () => !!(models.tasks && models.tasks.match) && $('#opt-rerank').checked;

  const hasQuery = () => !!((textSearch() && searchInput.value.trim()) || search.image || search.like);

  // ------------------------------------------------------------------ models
  // A server may serve several models (e.g. SigLIP 2 for text, DINOv2 for
  // similar photos); then a picker chooses the one that searches. The picked
  // model is in the URL (?model=, only when not the default). A model without a
  // text tower searches by example image and "Similar" only.

  // tasks: the server's language models ({caption, ask, match}: ids or null).
  const models = { list: [], default: null, tasks: {} };
  const modelSelect = $('#model-select');
  const TEXT_PLACEHOLDER = searchInput.placeholder;

  /** A short name for a model id: a folder's last component, a hub id as is. */
  const modelName = (id) => (String(id).startsWith('/') ? fileName(id) : String(id));
  /** The served model that searches now (null until the list has loaded). */
  const currentModel = () => models.list.find((m) => m.id === (search.model || models.default)) || null;
  /** Whether the current model can search by text (true until known otherwise). */
  const textSearch = () => {
    const m = currentModel();
    return !m || m.text_tower !== false;
  };

  function renderModel() {
    const several = models.list.length > 1;
    modelSelect.hidden = !several;
    if (several) modelSelect.value = (currentModel() || {}).id || models.default;
    const m = currentModel();
    const imageOnly = !textSearch();
    searchInput.disabled = imageOnly;
    searchInput.placeholder = imageOnly
      ? `${modelName(m.id)}: search by image`
      : TEXT_PLACEHOLDER;
    const hint = $('#model-hint');
    hint.hidden = !imageOnly;
    hint.textContent = imageOnly
      ? `${modelName(m.id)} has no text tower: search with an example image (drop, paste or “Search by image…”) or “Similar” on a photo.`
      : '';
  }

  /** Loads the served models; a picker appears when there are several. */
  async function loadModels() {
    try {
      const data = await api('/v1/models');
      models.list = Array.isArray(data.models) ? data.models : [];
      models.default = data.default || (models.list[0] && models.list[0].id) || null;
      models.tasks = data.tasks || {};
    } catch (e) {
      return; // 401: asked for the token; loaded again once it is given
    }
    modelSelect.textContent = '';
    for (const m of models.list) {
      const label = `${modelName(m.id)}${m.text_tower ? '' : ' (images)'}`;
      const option = new Option(label, m.id);
      option.title = `${m.id} · ${m.family}, ${m.dim}-d, ${fmtInt(m.vectors)} vectors`;
      modelSelect.add(option);
    }
    // A model from the URL that this server does not serve: the default.
    const known = !search.model || models.list.some((m) => m.id === search.model);
    if (!known) search.model = null;
    renderModel();
    for (const el of document.querySelectorAll('.rerank-option')) el.hidden = !models.tasks.match;
    if (!known && hasQuery()) runSearch('none');
  }

  modelSelect.addEventListener('change', () => {
    search.model = modelSelect.value === models.default ? null : modelSelect.value;
    renderModel();
    refreshHealth();
    runSearch('push');
  });

  // ------------------------------------------------------------------ URL state
  // The query lives in the address bar (?q=&model=&like=&from=&to=&k=&min_score=&path=),
  // so a reload, a bookmark or a shared link shows the same search, and the back
  // button goes back through searches. An example image cannot be put in a URL.

  function stateParams() {
    const o = options();
    const p = new URLSearchParams();
    const q = textSearch() ? searchInput.value.trim() : '';
    if (q) p.set('q', q);
    if (search.model) p.set('model', search.model);
    if (search.like) p.set('like', String(search.like.id));
    if (o.from) p.set('from', o.from);
    if (o.to) p.set('to', o.to);
    if (o.k !== DEFAULT_K) p.set('k', o.k);
    if (o.min_score) p.set('min_score', o.min_score);
    if (o.path) p.set('path', o.path);
    if (o.rerank) p.set('rerank', '1');
    return p;
  }

  /** Records the current search in history: `typing` replaces the entry that
   *  typing made (one entry per query, not per keystroke), anything else pushes. */
  function recordHistory(how) {
    if (how === 'none') return;
    const qs = stateParams().toString();
    const url = `${location.pathname}${qs ? `?${qs}` : ''}`;
    const state = { typing: how === 'typing', image: !!search.image };
    const same = url === location.pathname + location.search && !!(history.state && history.state.image) === state.image;
    if (same) return;
    if (how === 'typing' && history.state && history.state.typing) history.replaceState(state, '', url);
    else history.pushState(state, '', url);
  }

  /** Sets the inputs from the address bar (on load and on back/forward). */
  function applyUrl() {
    const p = new URLSearchParams(location.search);
    search.model = p.get('model') || null;
    renderModel();
    searchInput.value = p.get('q') || '';
    const like = Number(p.get('like'));
    search.like = p.get('like') && Number.isSafeInteger(like)
      ? { id: like, name: search.like && search.like.id === like ? search.like.name : `photo ${like}` }
      : null;
    search.image = history.state && history.state.image && search.lastImage ? search.lastImage : null;
    $('#opt-from').value = p.get('from') || '';
    $('#opt-to').value = p.get('to') || '';
    const k = p.get('k') || DEFAULT_K;
    const select = $('#opt-k');
    if (![...select.options].some((o) => o.value === k)) select.add(new Option(k, k));
    select.value = k;
    $('#opt-min-score').value = p.get('min_score') || '';
    $('#opt-path').value = p.get('path') || '';
    $('#opt-rerank').checked = p.get('rerank') === '1';
    if (p.get('min_score') || p.get('path') || p.get('k') || p.get('rerank')) $('#options').open = true;
    renderDates();
    renderChips();
  }

  window.addEventListener('popstate', () => {
    closeLightbox({ restoreFocus: false });
    applyUrl();
    runSearch('none');
  });

  // ------------------------------------------------------------------ chips, dates

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
        runSearch('push');
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

  function renderDates() {
    const any = !!($('#opt-from').value || $('#opt-to').value);
    $('#dates-clear').hidden = !any;
    $('#dates-hint').hidden = !any;
  }

  // ------------------------------------------------------------------ requests

  /** One page of results for `req` (a snapshot of the query), from `offset`. */
  function fetchPage(req, offset, signal) {
    if (req.image) {
      const form = new FormData();
      form.append('image', req.image, req.image.name || 'pasted.png');
      if (req.q) form.append('q', req.q);
      if (req.model) form.append('model', req.model);
      if (req.like) form.append('like', String(req.like));
      form.append('k', req.k);
      if (offset) form.append('offset', String(offset));
      for (const key of ['min_score', 'path', 'from', 'to']) if (req[key]) form.append(key, req[key]);
      if (req.rerank && req.q) form.append('rerank', 'true');
      return api('/v1/search', { method: 'POST', body: form, signal });
    }
    const params = new URLSearchParams();
    if (req.q) params.set('q', req.q);
    if (req.model) params.set('model', req.model);
    if (req.like) params.set('like', String(req.like));
    params.set('k', req.k);
    if (offset) params.set('offset', String(offset));
    for (const key of ['min_score', 'path', 'from', 'to']) if (req[key]) params.set(key, req[key]);
    if (req.rerank && req.q) params.set('rerank', 'true');
    return api(`/v1/search?${params}`, { signal });
  }

  function scheduleSearch() {
    clearTimeout(search.timer);
    search.timer = setTimeout(() => runSearch('typing'), DEBOUNCE_MS);
  }

  /** Runs the search the inputs describe and records it in history (`how`:
   *  'push', 'typing' or 'none'). */
  async function runSearch(how = 'push') {
    clearTimeout(search.timer);
    if (search.controller) search.controller.abort();
    // An image-only model ignores the typed text (kept for the next model).
    const q = textSearch() ? searchInput.value.trim() : '';
    search.q = q;
    recordHistory(how);
    const seq = ++search.seq;
    search.loadingMore = false;
    if (!hasQuery()) {
      search.controller = null;
      search.request = null;
      renderResults([], false);
      countEl.textContent = '';
      showError(searchErr, null);
      resultsEl.setAttribute('aria-busy', 'false');
      return;
    }
    const controller = new AbortController();
    search.controller = controller;
    const req = { q, image: search.image, like: search.like && search.like.id, model: search.model, ...options() };
    resultsEl.setAttribute('aria-busy', 'true');
    try {
      const data = await fetchPage(req, 0, controller.signal);
      if (seq !== search.seq) return; // a newer search started: this answer is stale
      showError(searchErr, null);
      search.request = req;
      if (search.like && data.like && data.like.id === search.like.id) {
        search.like.name = fileName(data.like.path);
        renderChips();
      }
      renderResults(Array.isArray(data.results) ? data.results : [], !!data.more);
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
    if (seq === search.seq) fillViewport();
  }

  /** The next page of the shown search, appended. */
  async function loadMore() {
    if (!search.more || search.loadingMore || !search.request || search.controller) return;
    const seq = search.seq;
    search.loadingMore = true;
    loadMoreBtn.disabled = true;
    loadMoreBtn.textContent = 'Loading…';
    const controller = new AbortController();
    search.controller = controller;
    try {
      const data = await fetchPage(search.request, search.results.length, controller.signal);
      if (seq !== search.seq) return;
      const seen = new Set(search.results.map((r) => r.id));
      const fresh = (Array.isArray(data.results) ? data.results : []).filter((r) => !seen.has(r.id));
      appendResults(fresh, !!data.more && fresh.length > 0);
    } catch (e) {
      if (isAbort(e) || seq !== search.seq) return;
      showError(searchErr, e);
    } finally {
      if (seq === search.seq) {
        search.loadingMore = false;
        search.controller = null;
        loadMoreBtn.disabled = false;
        loadMoreBtn.textContent = 'Load more';
      }
    }
    if (seq === search.seq) fillViewport();
  }

  // Infinite scroll: the next page loads when the end of the list comes near.
  const SCROLL_MARGIN_PX = 300;
  function fillViewport() {
    if (!search.more || loadMoreBtn.hidden || layout.dataset.tab !== 'search' && isNarrow()) return;
    if (loadMoreBtn.getBoundingClientRect().top < window.innerHeight + SCROLL_MARGIN_PX) loadMore();
  }
  if ('IntersectionObserver' in window) {
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    }, { rootMargin: `${SCROLL_MARGIN_PX}px` }).observe(loadMoreBtn);
  }
  loadMoreBtn.addEventListener('click', loadMore);

  // ------------------------------------------------------------------ results

  function describe() {
    return [search.q && `“${search.q}”`, search.image && 'the example image', search.like && `photos like ${search.like.name}`]
      .filter(Boolean).join(' + ');
  }

  function renderCount() {
    const n = search.results.length;
    const dated = search.request && (search.request.from || search.request.to) ? ' (by capture date)' : '';
    countEl.textContent = n
      ? `${n}${search.more ? '+' : ''} result${n === 1 && !search.more ? '' : 's'} for ${describe()}${dated}`
      : `No results for ${describe()}${dated}`;
  }

  function renderResults(results, more) {
    releaseBlobUrls();
    resultsEl.textContent = '';
    search.results = [];
    appendResults(results, more);
  }

  function appendResults(results, more) {
    const frag = document.createDocumentFragment();
    for (const r of results) {
      const index = search.results.length;
      search.results.push(r);
      frag.append(resultCard(r, index));
    }
    resultsEl.append(frag);
    search.more = more;
    loadMoreBtn.hidden = !more;
    if (search.request) renderCount();
    if (lightbox.open) renderLightbox();
  }

  function resultCard(r, index) {
    const name = fileName(r.path);
    const li = document.createElement('li');
    li.className = 'result';
    li.dataset.id = String(r.id);
    li.dataset.score = String(r.score);
    if (r.taken_at) li.dataset.taken = r.taken_at;

    const view = document.createElement('button');
    view.type = 'button';
    view.className = 'result-view';
    view.title = `${r.path}\nClick to view`;
    view.setAttribute('aria-label', `${name}, score ${Number(r.score).toFixed(3)}: view`);
    const img = document.createElement('img');
    img.alt = name;
    img.loading = 'lazy';
    img.decoding = 'async';
    img.addEventListener('error', () => img.classList.add('broken'), { once: true });
    setImageSource(img, r.thumbnail || `/v1/images/${r.id}/thumbnail`);
    view.append(img);
    view.addEventListener('click', () => openLightbox(index));

    const meta = document.createElement('div');
    meta.className = 'result-meta';
    const label = document.createElement('span');
    label.className = 'result-name';
    label.textContent = name;
    label.title = r.path;
    const score = document.createElement('span');
    score.className = 'score';
    score.textContent = Number(r.score).toFixed(3);
    const like = document.createElement('button');
    like.type = 'button';
    like.className = 'link result-like';
    like.textContent = 'Similar';
    like.setAttribute('aria-label', `More like ${name}`);
    like.addEventListener('click', () => moreLike(r.id, name));
    meta.append(label, score);
    if (typeof r.itm_probability === 'number') {
      score.title = `Reranked: ${(r.itm_probability * 100).toFixed(1)}% match (similarity ${Number(r.score).toFixed(3)})`;
    }
    const matched = Array.isArray(r.matched) ? r.matched : [];
    li.dataset.matched = matched.join(' ');
    if (matched.includes('words')) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = 'caption matches';
      badge.title = 'Its caption has words of your search';
      meta.append(badge);
    }
    if (r.caption) {
      const caption = document.createElement('p');
      caption.className = 'result-caption';
      caption.textContent = r.caption;
      caption.title = r.caption;
      meta.append(caption);
    }
    meta.append(like);
    if (showWhereQuery()) {
      const where = document.createElement('button');
      where.type = 'button';
      where.className = 'link result-where';
      where.textContent = 'Show where';
      where.setAttribute('aria-label', `Show where “${showWhereQuery()}” is in ${name}`);
      where.addEventListener('click', () => {
        openLightbox(index);
        showWhere();
      });
      meta.append(where);
    }

    li.append(view, meta);
    return li;
  }

  function moreLike(id, name) {
    closeLightbox({ restoreFocus: false });
    search.like = { id, name };
    search.image = null;
    searchInput.value = '';
    renderChips();
    runSearch('push');
    window.scrollTo({ top: 0, behavior: 'smooth' });
  }

  function searchByImage(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith('image/')) {
      showError(searchErr, new Error(`${file.name || 'That file'} is not an image`));
      return;
    }
    search.image = file;
    search.lastImage = file;
    search.like = null;
    searchInput.value = '';
    renderChips();
    showTab('search');
    runSearch('push');
  }

  searchInput.addEventListener('input', scheduleSearch);
  $('#search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    runSearch('push');
  });
  for (const id of ['#opt-k', '#opt-min-score', '#opt-path', '#opt-from', '#opt-to', '#opt-rerank']) {
    $(id).addEventListener('change', () => {
      renderDates();
      runSearch('push');
    });
  }
  $('#opt-path').addEventListener('input', scheduleSearch);
  $('#dates-clear').addEventListener('click', () => {
    $('#opt-from').value = '';
    $('#opt-to').value = '';
    renderDates();
    runSearch('push');
  });
  $('#image-pick').addEventListener('click', () => $('#image-input').click());
  $('#image-input').addEventListener('change', (e) => {
    const file = e.target.files && e.target.files[0];
    searchByImage(file);
    e.target.value = '';
  });

  // ------------------------------------------------------------------ lightbox

  const lightbox = $('#lightbox');
  const lightboxImg = $('#lightbox-img');
  let lightboxIndex = -1;
  let lightboxOpener = null;
  // Formats browsers show; others (TIFF, PNM, JPEG 2000…) are shown as the thumbnail.
  const BROWSER_FORMATS = /\.(jpe?g|jfif|png|gif|webp|bmp|avif)$/i;

  function fmtBytes(n) {
    if (typeof n !== 'number') return '–';
    if (n < 1024) return `${n} B`;
    const units = ['KB', 'MB', 'GB'];
    let v = n / 1024;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]} (${fmtInt(n)} bytes)`;
  }
  const fmtTime = (secs) => (typeof secs === 'number'
    ? new Date(secs * 1000).toLocaleString('sv-SE').replace(/:\d\d$/, '') : '–');

  function openLightbox(index) {
    if (!search.results[index]) return;
    lightboxOpener = document.activeElement;
    lightboxIndex = index;
    renderLightbox();
    if (!lightbox.open) lightbox.showModal();
    $('#lightbox-close').focus({ preventScroll: true });
  }

  function closeLightbox({ restoreFocus = true } = {}) {
    if (!lightbox.open) return;
    lightbox.close();
    const card = resultsEl.querySelectorAll('.result-view')[lightboxIndex];
    const back = card || lightboxOpener;
    if (restoreFocus && back && back.focus) back.focus({ preventScroll: false });
  }

  function moveLightbox(step) {
    const next = lightboxIndex + step;
    if (next < 0) return;
    if (next >= search.results.length) {
      if (search.more) loadMore(); // shows the next photo once its page arrives
      return;
    }
    lightboxIndex = next;
    renderLightbox();
  }

  function renderLightbox() {
    const r = search.results[lightboxIndex];
    if (!r) return;
    const name = fileName(r.path);
    lightbox.dataset.id = String(r.id);
    $('#lightbox-title').textContent = name;
    $('#lightbox-pos').textContent = `${lightboxIndex + 1} of ${search.results.length}${search.more ? '+' : ''} · score ${Number(r.score).toFixed(3)}`;
    const meta = $('#lightbox-meta');
    meta.textContent = '';
    const row = (key, term, value) => {
      const div = document.createElement('div');
      div.dataset.field = key;
      const dt = document.createElement('dt');
      dt.textContent = term;
      const dd = document.createElement('dd');
      dd.textContent = value;
      div.append(dt, dd);
      meta.append(div);
    };
    if (r.caption) row('caption', 'Caption', r.caption);
    if (typeof r.itm_probability === 'number') row('match', 'Match', `${(r.itm_probability * 100).toFixed(1)}%`);
    row('path', 'Path', r.path);
    row('size', 'Size', fmtBytes(r.size));
    row('dimensions', 'Dimensions', r.width && r.height ? `${r.width} × ${r.height} px` : '–');
    row('taken', 'Taken', r.taken_at || 'no EXIF capture time');
    row('modified', 'Modified', fmtTime(r.modified));
    renderAsk(r.id);
    renderVision(r);
    const url = r.url || `/v1/images/${r.id}`;
    const open = $('#lightbox-open');
    open.href = url;
    open.setAttribute('aria-label', `Open the original of ${name}`);
    $('#lightbox-prev').disabled = lightboxIndex === 0;
    $('#lightbox-next').disabled = lightboxIndex >= search.results.length - 1 && !search.more;
    lightboxImg.alt = name;
    lightboxImg.classList.remove('broken');
    const thumb = r.thumbnail || `/v1/images/${r.id}/thumbnail`;
    const id = r.id;
    setImageSource(lightboxImg, thumb);
    if (BROWSER_FORMATS.test(r.path)) {
      // The original replaces the thumbnail once it has loaded (if still shown).
      const full = new Image();
      full.decoding = 'async';
      full.addEventListener('load', () => {
        if (lightbox.dataset.id === String(id)) lightboxImg.src = full.src;
      }, { once: true });
      setImageSource(full, url);
    }
  }

  // Questions about the shown photo, answered by the server's VQA model.
  let askController = null;
  let askedId = null;
  function renderAsk(id) {
    const form = $('#ask-form');
    form.hidden = !models.tasks.ask;
    if (askedId === id) return;
    askedId = id;
    if (askController) askController.abort();
    $('#ask-answer').textContent = '';
    showError($('#ask-error'), null);
  }

  $('#ask-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const question = $('#ask-input').value.trim();
    const id = askedId;
    if (!question || id === null) {
      $('#ask-input').focus();
      return;
    }
    if (askController) askController.abort();
    const controller = new AbortController();
    askController = controller;
    const form = new FormData();
    form.append('id', String(id));
    form.append('question', question);
    const button = $('#ask-submit');
    button.disabled = true;
    $('#ask-answer').textContent = 'Thinking…';
    showError($('#ask-error'), null);
    try {
      const data = await api('/v1/ask', { method: 'POST', body: form, signal: controller.signal });
      if (askController !== controller || askedId !== id) return;
      $('#ask-answer').textContent = data.answer ? `${data.answer}` : '(no answer)';
    } catch (ex) {
      if (isAbort(ex)) return;
      $('#ask-answer').textContent = '';
      showError($('#ask-error'), ex);
    } finally {
      if (askController === controller) {
        askController = null;
        button.disabled = false;
      }
    }
  });

  // ------------------------------------------------------------------ segment and detect
  // With a segmentation model (SAM) a click on the shown photo outlines the
  // object under it: the mask is drawn over the photo, and each further click
  // (Alt- or right-click: not part of it) refines it, sending the last mask
  // back by its mask_id. The server caches the photo's embedding, so only the
  // first click runs the image encoder. With a detection model (OWL-ViT) typed
  // labels are found and boxed, and "Show where" boxes a text search's words.

  const stage = $('#lightbox-stage');
  const maskOverlay = $('#mask-overlay');
  const boxOverlay = $('#box-overlay');
  const vision = { id: null, points: [], maskId: null, controller: null, detectController: null };
  // Boxes drawn at most; "show where" draws the best and up to two more.
  const MAX_BOXES_DRAWN = 50;
  const SHOW_WHERE_MIN_SCORE = 0.1;

  /** The words of the shown text search, when the server can find them in a photo. */
  const showWhereQuery = () => (models.tasks.detect && search.request && search.request.q) || '';

  function clearOverlay(kind) {
    for (const el of boxOverlay.querySelectorAll(kind)) el.remove();
  }

  function clearSegment() {
    if (vision.controller) vision.controller.abort();
    vision.controller = null;
    vision.points = [];
    vision.maskId = null;
    maskOverlay.hidden = true;
    maskOverlay.removeAttribute('src');
    delete maskOverlay.dataset.maskId;
    clearOverlay('.seg-point');
    $('#segment-status').textContent = '';
    $('#segment-clear').hidden = true;
    showError($('#segment-error'), null);
  }

  function clearBoxes() {
    if (vision.detectController) vision.detectController.abort();
    vision.detectController = null;
    clearOverlay('.det-box');
    $('#detect-status').textContent = '';
    showError($('#detect-error'), null);
  }

  function renderVision(r) {
    $('#segment-tools').hidden = !models.tasks.segment;
    stage.classList.toggle('segmentable', !!models.tasks.segment);
    $('#detect-form').hidden = !models.tasks.detect;
    const q = showWhereQuery();
    const where = $('#show-where');
    where.hidden = !q;
    where.textContent = q ? `Show where “${q}” is` : 'Show where';
    if (vision.id === r.id) return;
    vision.id = r.id;
    clearSegment();
    clearBoxes();
  }

  const pct = (v) => `${(v * 100).toFixed(3)}%`;

  function drawPoints() {
    clearOverlay('.seg-point');
    for (const [x, y, label] of vision.points) {
      const dot = document.createElement('span');
      dot.className = `seg-point${label ? '' : ' negative'}`;
      dot.style.left = pct(x);
      dot.style.top = pct(y);
      boxOverlay.append(dot);
    }
  }

  async function segmentAt(event, positive) {
    if (!models.tasks.segment || vision.id === null) return;
    const rect = lightboxImg.getBoundingClientRect();
    if (!rect.width || !rect.height) return;
    const x = Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width));
    const y = Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height));
    vision.points.push([x, y, positive ? 1 : 0]);
    drawPoints();
    if (vision.controller) vision.controller.abort();
    const controller = new AbortController();
    vision.controller = controller;
    const id = vision.id;
    const form = new FormData();
    form.append('id', String(id));
    form.append('normalized', 'true');
    form.append('points', JSON.stringify(vision.points));
    if (vision.maskId) form.append('mask_id', vision.maskId);
    const status = $('#segment-status');
    status.textContent = 'Outlining…';
    showError($('#segment-error'), null);
    try {
      const data = await api('/v1/segment', { method: 'POST', body: form, signal: controller.signal });
      if (vision.controller !== controller || vision.id !== id) return;
      const masks = Array.isArray(data.masks) ? data.masks : [];
      const best = masks.reduce((a, m) => (!a || m.iou > a.iou ? m : a), null);
      if (!best) {
        status.textContent = 'No mask';
        return;
      }
      vision.maskId = best.mask_id;
      maskOverlay.src = best.png;
      maskOverlay.dataset.maskId = best.mask_id;
      maskOverlay.hidden = false;
      const t = data.timing || {};
      const share = data.width && data.height ? (best.area / (data.width * data.height)) * 100 : 0;
      status.textContent = `Mask: ${fmtInt(best.area)} px (${share.toFixed(1)}% of the photo), IoU ${Number(best.iou).toFixed(2)} · `
        + `${data.cached ? 'cached embedding, ' : `embedded in ${Math.round(t.embed_ms || 0)} ms, `}decoder ${Number(t.decoder_ms || 0).toFixed(1)} ms`;
      status.dataset.cached = String(!!data.cached);
      $('#segment-clear').hidden = false;
    } catch (ex) {
      if (isAbort(ex)) return;
      vision.points.pop();
      drawPoints();
      status.textContent = '';
      showError($('#segment-error'), ex);
    } finally {
      if (vision.controller === controller) vision.controller = null;
    }
  }

  lightboxImg.addEventListener('click', (e) => segmentAt(e, !e.altKey));
  lightboxImg.addEventListener('contextmenu', (e) => {
    if (!models.tasks.segment) return;
    e.preventDefault();
    segmentAt(e, false);
  });
  $('#segment-clear').addEventListener('click', clearSegment);

  function drawBoxes(data, detections) {
    clearOverlay('.det-box');
    const w = Number(data.width);
    const h = Number(data.height);
    if (!w || !h) return;
    detections.forEach((d, i) => {
      const [x0, y0, x1, y1] = d.box.map(Number);
      const left = Math.max(0, x0);
      const top = Math.max(0, y0);
      const div = document.createElement('div');
      div.className = `det-box${i === 0 ? ' best' : ''}`;
      div.style.left = pct(left / w);
      div.style.top = pct(top / h);
      div.style.width = pct((Math.min(w, x1) - left) / w);
      div.style.height = pct((Math.min(h, y1) - top) / h);
      div.dataset.label = d.label;
      div.dataset.score = String(d.score);
      const label = document.createElement('span');
      label.className = 'det-label';
      label.textContent = `${d.label} ${(Number(d.score) * 100).toFixed(0)}%`;
      div.append(label);
      boxOverlay.append(div);
    });
  }

  /** Finds `labels` in the shown photo; `pick` chooses what to draw. */
  async function detectIn(labels, threshold, pick) {
    if (vision.id === null) return;
    if (vision.detectController) vision.detectController.abort();
    const controller = new AbortController();
    vision.detectController = controller;
    const id = vision.id;
    const form = new FormData();
    form.append('id', String(id));
    form.append('labels', labels.join(','));
    form.append('threshold', String(threshold));
    const status = $('#detect-status');
    const button = $('#detect-submit');
    button.disabled = true;
    status.textContent = 'Looking…';
    showError($('#detect-error'), null);
    try {
      const data = await api('/v1/detect', { method: 'POST', body: form, signal: controller.signal });
      if (vision.detectController !== controller || vision.id !== id) return;
      const all = Array.isArray(data.detections) ? data.detections : [];
      const shown = pick(all);
      drawBoxes(data, shown);
      status.textContent = shown.length
        ? `${shown.length} box${shown.length === 1 ? '' : 'es'}${all.length > shown.length ? ` (best ${shown.length} of ${all.length})` : ''} · ${Number((data.timing || {}).detect_ms || 0).toFixed(0)} ms`
        : `Found no ${labels.map((l) => `“${l}”`).join(', ')} scoring ${threshold} or more`;
    } catch (ex) {
      if (isAbort(ex)) return;
      status.textContent = '';
      showError($('#detect-error'), ex);
    } finally {
      if (vision.detectController === controller) {
        vision.detectController = null;
        button.disabled = false;
      }
    }
  }

  $('#detect-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const labels = $('#detect-input').value.split(',').map((l) => l.trim()).filter(Boolean);
    if (!labels.length) {
      showError($('#detect-error'), new Error('Type what to find, e.g. a cat, a bicycle'));
      $('#detect-input').focus();
      return;
    }
    const raw = $('#detect-threshold').value.trim();
    const threshold = raw === '' ? 0.1 : Number(raw);
    if (!Number.isFinite(threshold) || threshold < 0 || threshold > 1) {
      showError($('#detect-error'), new Error('The minimum score is a number from 0 to 1'));
      $('#detect-threshold').focus();
      return;
    }
    detectIn(labels, threshold, (all) => all.slice(0, MAX_BOXES_DRAWN));
  });

  /** Boxes where the search's words are in the shown photo: the best box
   *  (it is in the results for a reason), and up to two more that score well. */
  function showWhere() {
    const q = showWhereQuery();
    if (!q) return;
    detectIn([q], 0, (all) => all.filter((d, i) => i === 0
      || (i < 3 && d.score >= SHOW_WHERE_MIN_SCORE && d.score >= all[0].score / 2)));
  }
  $('#show-where').addEventListener('click', showWhere);

  $('#lightbox-close').addEventListener('click', () => closeLightbox());
  $('#lightbox-prev').addEventListener('click', () => moveLightbox(-1));
  $('#lightbox-next').addEventListener('click', () => moveLightbox(1));
  $('#lightbox-like').addEventListener('click', () => {
    const r = search.results[lightboxIndex];
    if (r) moreLike(r.id, fileName(r.path));
  });
  $('#lightbox-open').addEventListener('click', (ev) => openOriginal(ev, $('#lightbox-open').getAttribute('href')));
  lightbox.addEventListener('keydown', (e) => {
    const typing = e.target && ['ask-input', 'detect-input', 'detect-threshold'].includes(e.target.id);
    if (typing && e.key !== 'Escape') return; // typing a question or labels
    if (e.key === 'ArrowLeft') { e.preventDefault(); moveLightbox(-1); }
    else if (e.key === 'ArrowRight') { e.preventDefault(); moveLightbox(1); }
    else if (e.key === 'Escape') { e.preventDefault(); closeLightbox(); }
  });
  lightbox.addEventListener('cancel', (e) => { e.preventDefault(); closeLightbox(); });
  // A click on the backdrop (outside the dialog's box) closes it.
  lightbox.addEventListener('click', (e) => {
    if (e.target === lightbox) closeLightbox();
  });

  // ------------------------------------------------------------------ tabs (narrow screens)

  const layout = $('#layout');
  const isNarrow = () => window.matchMedia('(max-width: 900px)').matches;
  function showTab(name) {
    layout.dataset.tab = name;
    for (const b of document.querySelectorAll('#tabs .tab')) {
      b.setAttribute('aria-pressed', String(b.dataset.tab === name));
    }
  }
  for (const b of document.querySelectorAll('#tabs .tab')) {
    b.addEventListener('click', () => {
      showTab(b.dataset.tab);
      window.scrollTo({ top: 0 });
    });
  }

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

  /** Classifying needs a text tower: the picked model when it has one, else
   *  the first served model that has (null while the list is unknown). */
  const classifyModel = () => {
    const m = currentModel();
    return m && m.text_tower ? m : models.list.find((x) => x.text_tower) || null;
  };

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
    const model = classifyModel();
    if (model) form.append('model', model.id);
    const button = $('#classify-submit');
    button.disabled = true;
    chart.setAttribute('aria-busy', 'true');
    status.textContent = model && models.list.length > 1 ? `Classifying with ${modelName(model.id)}…` : 'Classifying…';
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
      loadModels().then(refreshHealth);
      if (hasQuery()) runSearch('none');
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
    const m = currentModel();
    if (models.list.length > 1 && m) {
      el.textContent = `${modelName(m.id)} · ${fmtInt(m.vectors)} vectors · ${models.list.length} models`;
      el.classList.remove('bad');
      return;
    }
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
    loadModels().then(refreshHealth);
    refreshStatus();
    if (hasQuery()) runSearch('none');
  }

  // ------------------------------------------------------------------ start

  auth.load();
  applyUrl();
  refreshAll();
  if (!searchInput.value) searchInput.focus({ preventScroll: true });
})();
