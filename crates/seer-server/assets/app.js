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

  // What the server accepts as a token (`seer serve --token`): printable ASCII,
  // not blank, no whitespace around it. Anything else could never match, and a
  // character outside Latin-1 cannot even be put in a header (fetch throws).
  // Pasting often brings invisible characters along: whitespace and zero-width
  // characters around the token are dropped.
  const TOKEN_EDGES = /^[\s\u200b-\u200d\u2060\ufeff]+|[\s\u200b-\u200d\u2060\ufeff]+$/g;
  const cleanToken = (raw) => String(raw == null ? '' : raw).replace(TOKEN_EDGES, '');
  /** Why `token` (cleaned) cannot work, or null when it can. */
  function tokenProblem(token) {
    if (!token) return 'Enter the API token (it cannot be blank).';
    const bad = [...token].find((c) => c < ' ' || c > '~');
    if (bad !== undefined) {
      const code = `U+${bad.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
      const visible = !/[\s\p{C}\u200b-\u200f\u2060\ufeff]/u.test(bad);
      return `A token is printable ASCII only (letters, digits, punctuation, spaces); this one has ${code}${visible ? ` (“${bad}”)` : ', an invisible character'}. Check what was pasted.`;
    }
    return null;
  }

  const auth = {
    token: null,
    /** Why the token found at load (URL or storage) was dropped, if it was. */
    dropped: null,
    load() {
      // #token=... in the URL wins; it is moved to sessionStorage and removed from the
      // address bar so it does not end up in bookmarks or screenshots.
      const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
      let token = null;
      if (m) {
        try {
          token = decodeURIComponent(m[1]);
        } catch (_) {
          token = m[1];
        }
        history.replaceState(history.state, '', location.pathname + location.search);
      } else {
        try {
          token = sessionStorage.getItem(TOKEN_KEY);
        } catch (_) {
          token = null;
        }
      }
      if (token === null) return;
      const clean = cleanToken(token);
      const problem = tokenProblem(clean);
      if (problem) {
        // A token that cannot work is dropped, and the page asks again.
        this.set(null);
        this.dropped = `The ${m ? 'token in the link' : 'saved token'} was dropped: ${problem}`;
        return;
      }
      this.set(clean);
    },
    set(token) {
      this.token = token || null;
      try {
        if (token) sessionStorage.setItem(TOKEN_KEY, token);
        else sessionStorage.removeItem(TOKEN_KEY);
      } catch (_) { /* storage disabled: keep it in memory */ }
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
    if (auth.token && tokenProblem(auth.token)) {
      // Cannot happen through the token form; a header fetch refuses must not
      // pass for an unreachable server.
      const problem = tokenProblem(auth.token);
      auth.set(null);
      askForToken(`The token was dropped: ${problem}`);
      throw new ApiError(401, problem);
    }
    const headers = auth.headers(json !== undefined ? { 'Content-Type': 'application/json' } : {});
    const init = { method, headers, signal, body: json !== undefined ? JSON.stringify(json) : body };
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await fetch(path, init);
      } catch (e) {
        if (e.name === 'AbortError') throw e;
        connection.lost();
        throw new ApiError(0, `The page cannot reach the server: is \`seer serve\` still running? (${e.message})`);
      }
      connection.found();
      if (res.status === 503 && retryBusy && attempt < MAX_BUSY_RETRIES) {
        const after = Number(res.headers.get('Retry-After'));
        const wait = Number.isFinite(after) && after > 0 ? Math.min(after, 10) * 1000 : 1000;
        await sleep(wait * (attempt + 1), signal);
        continue;
      }
      if (res.ok) return raw ? res : res.json();
      let message = '';
      try {
        const data = await res.json();
        if (data && data.error) message = data.error;
      } catch (_) { /* not JSON */ }
      message = plainError(res.status, res.statusText, message, body);
      if (res.status === 401) askForToken(auth.token ? 'The token was refused; enter the right one.' : null);
      if (res.status === 503) {
        const after = res.headers.get('Retry-After');
        message = `The server is busy${after ? `; try again in ${after} s` : ''} (${message})`;
      }
      throw new ApiError(res.status, message);
    }
  }

  const isAbort = (e) => e && e.name === 'AbortError';

  /** An error answer in words a person understands: what went wrong first,
   *  the server's own words (or the HTTP status) after, for the log. */
  function plainError(status, statusText, serverMessage, body) {
    const code = `${status}${statusText ? ` ${statusText}` : ''}`;
    if (status === 413) {
      const file = body instanceof FormData ? [...body.values()].find((v) => v instanceof Blob) : null;
      const limit = /at most (\d+)/.exec(serverMessage || '');
      const mb = (n) => `${(n / 1048576).toFixed(n < 10485760 ? 1 : 0)} MB`;
      const what = file ? `${file.name || 'The image'} (${mb(file.size)}) is` : 'The upload is';
      return `${what} too large for this server${limit ? `, which takes at most ${mb(Number(limit[1]))}` : ''}: `
        + 'choose a smaller image (the server\'s limit is set by `seer serve --max-body`).';
    }
    if (serverMessage || status === 503) return serverMessage || code; // 503: said below
    if (status === 403) return `The server refused this request (${code}): it may need other permissions or a different token.`;
    if (status === 404) return `The server does not know this request (${code}): is it an older seer?`;
    if (status >= 500) return `The server failed to answer (${code}); its log says why. Try again in a moment.`;
    return `The server refused this request (${code}).`;
  }

  // ------------------------------------------------------------------ helpers

  /** The file name of a path as the API shows it. Paths are shown with seer's
   *  escapes (a backslash in a name is `\\`, a newline `\n`, an invalid byte
   *  `\xff`, …), so only `/` separates; a Windows path (shown as `C:\\dir\\a.jpg`,
   *  every backslash escaped) is split at its escaped backslashes. */
  function fileName(path) {
    const s = String(path);
    const windows = !s.includes('/') && /^(?:[A-Za-z]:\\\\|\\\\\\\\)/.test(s);
    let name = '';
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (c === '/') {
        name = '';
      } else if (c === '\\' && i + 1 < s.length) {
        // One escape, kept whole: \\ \n \r \t \xNN \u{N…}.
        const next = s[i + 1];
        let end = i + 2;
        if (next === 'x') end = i + 4;
        else if (next === 'u' && s[i + 2] === '{') end = s.indexOf('}', i) + 1 || s.length;
        if (next === '\\' && windows) name = '';
        else name += s.slice(i, end);
        i = end - 1;
      } else {
        name += c;
      }
    }
    return name || s;
  }

  /** Shows `err` in the error box `el` (hides it for none). An error saying the
   *  server cannot be reached is marked, so it goes once the server answers. */
  function showError(el, err) {
    if (!err) {
      el.hidden = true;
      el.textContent = '';
      delete el.dataset.unreachable;
      return;
    }
    el.textContent = err.status === 401 ? 'Authorization needed: enter the API token above.' : String(err.message || err);
    if (err.status === 0) el.dataset.unreachable = 'true';
    else delete el.dataset.unreachable;
    el.hidden = false;
  }

  const fmtInt = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : '–');

  /** Images under /v1 need the token when there is one, and <img> cannot send
   *  headers: then they are fetched and shown from blob: URLs. */
  const blobUrls = new Set();
  function setImageSource(img, url, urls = blobUrls) {
    if (!auth.token) {
      img.src = url;
      return;
    }
    api(url, { raw: true })
      .then((res) => res.blob())
      .then((blob) => {
        const u = URL.createObjectURL(blob);
        urls.add(u);
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

  /** Shows the token panel; `message` (why it is asked again) in its error box. */
  function askForToken(message) {
    const panel = $('#auth');
    const wasHidden = panel.hidden;
    panel.hidden = false;
    const err = $('#auth-error');
    // A 401 without a message keeps what the panel already says (e.g. why a
    // saved token was dropped).
    if (message || wasHidden) {
      err.textContent = message || '';
      err.hidden = !message;
      $('#token-input').setAttribute('aria-invalid', String(!!message));
    }
    if (wasHidden) $('#token-input').focus();
  }

  $('#auth-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('#token-input');
    const token = cleanToken(input.value);
    const problem = tokenProblem(token);
    if (problem) {
      // Kept out of storage and headers; the panel stays open to fix it.
      askForToken(problem);
      input.focus();
      return;
    }
    auth.set(token);
    input.value = '';
    input.removeAttribute('aria-invalid');
    $('#auth-error').hidden = true;
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
    pageFailed: false, // the next page failed: no more paging on scroll until a click
  };
  const searchInput = $('#search-input');
  const resultsEl = $('#results');
  const countEl = $('#result-count');
  const searchErr = $('#search-error');
  const loadMoreBtn = $('#load-more');
  const DEFAULT_K = '20';

  /** The search options as applied: a filter value that cannot be applied is
   *  left out (runSearch refuses to search while one is there; see filterProblem). */
  function options() {
    const min = $('#opt-min-score').value.trim();
    const from = $('#opt-from').value;
    const to = $('#opt-to').value;
    return {
      k: $('#opt-k').value,
      min_score: min !== '' && Number(min) >= -1 && Number(min) <= 1 ? min : '',
      path: $('#opt-path').value.trim(),
      from: isRealDate(from) ? from : '',
      to: isRealDate(to) ? to : '',
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
  // search.model is the picked model's id, or (until the server says which model
  // it is) a name from the address bar that the page could not resolve.
  const models = { list: [], default: null, tasks: {}, loaded: false };
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

  /** A model id's last path component (a folder's name; a hub id's name). */
  const lastComponent = (id) => String(id).replace(/\/+$/, '').split('/').pop();

  /** The served model `name` names, resolved as the server does: the id itself,
   *  else the one id whose last path component it is. Null when the page cannot
   *  tell (an alias, an ambiguous or unknown name): then the server decides. */
  function resolveModel(name) {
    if (models.list.some((m) => m.id === name)) return name;
    const loose = models.list.filter((m) => lastComponent(m.id) === name);
    return loose.length === 1 ? loose[0].id : null;
  }

  /** Resolves search.model against the served models once they are known
   *  (the default is kept as null: it is not put in the address bar). */
  function settleModel() {
    if (!models.loaded || !search.model) return;
    const id = resolveModel(search.model);
    if (id) search.model = id === models.default ? null : id;
  }

  /** Takes the model a search answer says it used, when the request named one
   *  the page could not resolve (an alias): the picker and the address follow. */
  function adoptModel(used) {
    if (!search.model || currentModel() || !used) return;
    const m = models.list.find((x) => x.id === used);
    if (!m) return;
    search.model = m.id === models.default ? null : m.id;
    if (search.request) search.request.model = search.model;
    renderModel();
    syncUrl();
    refreshHealth();
  }

  function renderModel() {
    const several = models.list.length > 1;
    modelSelect.hidden = !several;
    // A name the page could not resolve: no option is picked until the server says.
    if (several) modelSelect.value = (currentModel() || {}).id || (search.model ? '' : models.default);
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
      models.loaded = true;
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
    // A model from the address bar by a folder's name: its id, in the address too.
    // One the page cannot resolve is sent as given; the server says which it is
    // (adoptModel) or why not.
    settleModel();
    renderModel();
    syncUrl();
    for (const el of document.querySelectorAll('.rerank-option')) el.hidden = !models.tasks.match;
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

  /** Replaces the address with what is applied (no new history entry), e.g.
   *  once a model name is resolved or a value the page cannot apply is left out. */
  function syncUrl() {
    const qs = stateParams().toString();
    const url = `${location.pathname}${qs ? `?${qs}` : ''}`;
    if (url !== location.pathname + location.search) history.replaceState(history.state, '', url);
  }

  // ------------------------------------------------------------------ filters
  // The filters are checked before a search: a value the server would refuse (or
  // the inputs cannot show) is never sent, and the address holds only what is applied.

  const filterErr = $('#filter-error');
  /** Why values in a link were left out (shown until the next search the user makes). */
  let linkNote = '';
  const MIN_SCORE_RULE = 'a number from −1 to 1';

  /** Whether `v` is a real calendar date YYYY-MM-DD. */
  function isRealDate(v) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v);
    if (!m) return false;
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const t = new Date(Date.UTC(2000, mo - 1, d));
    t.setUTCFullYear(y);
    return y >= 1 && t.getUTCFullYear() === y && t.getUTCMonth() === mo - 1 && t.getUTCDate() === d;
  }

  /** Why the filter inputs cannot be applied ({el, message}), or null. */
  function filterProblem() {
    const min = $('#opt-min-score');
    const raw = min.value.trim();
    if (min.validity.badInput || (raw !== '' && !(Number(raw) >= -1 && Number(raw) <= 1))) {
      return { el: min, message: `The minimum score is ${MIN_SCORE_RULE}, not ${raw ? `“${raw}”` : 'that'}: fix or clear it to search.` };
    }
    const from = $('#opt-from');
    const to = $('#opt-to');
    for (const [el, what] of [[from, 'The “taken on or after” date'], [to, 'The “taken on or before” date']]) {
      if (el.validity.badInput || (el.value && !isRealDate(el.value))) {
        return { el, message: `${what} is not a complete, real date: finish or clear it to search.` };
      }
    }
    if (from.value && to.value && from.value > to.value) {
      return { el: to, message: `“Taken on or after” (${from.value}) is later than “on or before” (${to.value}): no photo can match.` };
    }
    return null;
  }

  /** Shows what is wrong with the filters (or the note about the link). */
  function renderFilterProblem(problem) {
    for (const id of ['#opt-min-score', '#opt-from', '#opt-to']) {
      const el = $(id);
      if (problem && problem.el === el) el.setAttribute('aria-invalid', 'true');
      else el.removeAttribute('aria-invalid');
    }
    if (problem && problem.el === $('#opt-min-score')) $('#options').open = true;
    const text = problem ? problem.message : linkNote;
    showError(filterErr, text ? new Error(text) : null);
  }

  /** Sets the inputs from the address bar (on load and on back/forward). Values
   *  the page cannot apply are left out, said so, and dropped from the address. */
  function applyUrl() {
    const p = new URLSearchParams(location.search);
    const dropped = [];
    search.model = (p.get('model') || '').trim() || null;
    settleModel();
    renderModel();
    searchInput.value = p.get('q') || '';
    const rawLike = p.get('like');
    const like = Number(rawLike);
    search.like = rawLike && Number.isSafeInteger(like) && like >= 0
      ? { id: like, name: search.like && search.like.id === like ? search.like.name : `photo ${like}` }
      : null;
    if (rawLike && !search.like) dropped.push(`like “${rawLike}” (not a photo id)`);
    search.image = history.state && history.state.image && search.lastImage ? search.lastImage : null;
    for (const [key, id, what] of [['from', '#opt-from', 'taken on or after'], ['to', '#opt-to', 'taken on or before']]) {
      const raw = (p.get(key) || '').trim();
      const ok = !raw || isRealDate(raw);
      $(id).value = ok ? raw : '';
      if (!ok) dropped.push(`${what} “${raw}” (not a real date YYYY-MM-DD)`);
    }
    const rawK = (p.get('k') || '').trim();
    const kOk = /^\d+$/.test(rawK) && Number(rawK) >= 1 && Number(rawK) <= 1000;
    if (rawK && !kOk) dropped.push(`results per page “${rawK}” (1 to 1000)`);
    const k = kOk ? String(Number(rawK)) : DEFAULT_K;
    const select = $('#opt-k');
    if (![...select.options].some((o) => o.value === k)) select.add(new Option(k, k));
    select.value = k;
    const minInput = $('#opt-min-score');
    const rawMin = (p.get('min_score') || '').trim();
    minInput.value = rawMin;
    // A number input empties itself for what is not a number.
    const minOk = !rawMin || (minInput.value !== '' && Number(rawMin) >= -1 && Number(rawMin) <= 1);
    if (!minOk) {
      minInput.value = '';
      dropped.push(`minimum score “${rawMin}” (${MIN_SCORE_RULE})`);
    }
    $('#opt-path').value = p.get('path') || '';
    $('#opt-rerank').checked = p.get('rerank') === '1';
    if (p.get('min_score') || p.get('path') || p.get('k') || p.get('rerank')) $('#options').open = true;
    linkNote = dropped.length ? `Left out of the link, as the page cannot apply them: ${dropped.join('; ')}.` : '';
    renderFilterProblem(null);
    renderDates();
    renderChips();
    syncUrl();
  }

  window.addEventListener('popstate', () => {
    closeLightbox({ restoreFocus: false });
    applyUrl();
    refreshHealth(); // the header names the model the address picks
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

  /** The search the inputs describe now. */
  function currentRequest() {
    const q = textSearch() ? searchInput.value.trim() : '';
    return { q, image: search.image, like: search.like && search.like.id, model: search.model, ...options() };
  }

  /** Equal for the same search (an image by its name, size and time). */
  function requestKey(req) {
    const img = req.image;
    return JSON.stringify({ ...req, image: img ? [img.name, img.size, img.lastModified] : null });
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
    const seq = ++search.seq;
    search.loadingMore = false;
    search.pageFailed = false;
    if (how !== 'none') linkNote = ''; // the user searches: the note about the link is done
    const problem = filterProblem();
    renderFilterProblem(problem);
    if (problem) {
      // Nothing is searched (nor recorded) with a filter that cannot be applied,
      // and no results are shown that it does not filter.
      search.controller = null;
      search.request = null;
      renderResults([], false);
      countEl.textContent = hasQuery() ? 'Not searched: fix the filter above' : '';
      showError(searchErr, null);
      resultsEl.setAttribute('aria-busy', 'false');
      return;
    }
    recordHistory(how);
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
    const req = currentRequest();
    search.pending = requestKey(req);
    resultsEl.setAttribute('aria-busy', 'true');
    // Said at once, so a slow answer is not read as the last search's count.
    countEl.textContent = `Searching for ${describe()}…`;
    try {
      const data = await fetchPage(req, 0, controller.signal);
      if (seq !== search.seq) return; // a newer search started: this answer is stale
      showError(searchErr, null);
      search.request = req;
      adoptModel(data.model);
      if (search.like && data.like && data.like.id === search.like.id) {
        search.like.name = fileName(data.like.path);
        renderChips();
      }
      renderResults(Array.isArray(data.results) ? data.results : [], !!data.more);
    } catch (e) {
      if (isAbort(e) || seq !== search.seq) return;
      // The results of the search before are not this search's: they go, and
      // with them the paging of that search.
      search.request = null;
      renderResults([], false);
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
  async function loadMore({ retry = false } = {}) {
    if (!search.more || search.loadingMore || !search.request || search.controller) return;
    if (search.pageFailed && !retry) return; // after a failure only a click tries again
    search.pageFailed = false;
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
      showError(searchErr, null);
      appendResults(fresh, !!data.more && fresh.length > 0);
    } catch (e) {
      if (isAbort(e) || seq !== search.seq) return;
      // The shown results stay (they are this search's); scrolling stops
      // fetching until "Load more" is clicked again.
      search.pageFailed = true;
      showError(searchErr, e);
    } finally {
      if (seq === search.seq) {
        search.loadingMore = false;
        search.controller = null;
        loadMoreBtn.disabled = false;
        loadMoreBtn.textContent = search.pageFailed ? 'Try loading more again' : 'Load more';
      }
    }
    if (seq === search.seq) fillViewport();
  }

  // Infinite scroll: the next page loads when the end of the list comes near.
  const SCROLL_MARGIN_PX = 300;
  function fillViewport() {
    if (!search.more || search.pageFailed || loadMoreBtn.hidden || layout.dataset.tab !== 'search' && isNarrow()) return;
    if (loadMoreBtn.getBoundingClientRect().top < window.innerHeight + SCROLL_MARGIN_PX) loadMore();
  }
  if ('IntersectionObserver' in window) {
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadMore();
    }, { rootMargin: `${SCROLL_MARGIN_PX}px` }).observe(loadMoreBtn);
  }
  // A jump past the list's end (to the bottom of a page whose side column is
  // taller than the results) never makes the button intersect: the scroll
  // position is looked at too, once a frame at most.
  let scrollLook = false;
  window.addEventListener('scroll', () => {
    if (scrollLook) return;
    scrollLook = true;
    requestAnimationFrame(() => {
      scrollLook = false;
      fillViewport();
    });
  }, { passive: true });
  loadMoreBtn.addEventListener('click', () => loadMore({ retry: true }));

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
      : `No results for ${describe()}${dated}${filtered(search.request) ? ' with these filters: a lower minimum score, another path or wider dates may find some' : ''}`;
  }

  /** Whether `req` narrows the search (a minimum score, a path, dates). */
  const filtered = (req) => !!req && ['min_score', 'path', 'from', 'to'].some((key) => req[key]);

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
    if (lightbox.open) syncLightbox();
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
    const video = isVideoHit(r);
    view.setAttribute('aria-label', video
      ? `${name}, video at ${fmtClock(r.time)}, score ${Number(r.score).toFixed(3)}: play`
      : `${name}, score ${Number(r.score).toFixed(3)}: view`);
    const img = document.createElement('img');
    img.alt = name;
    img.loading = 'lazy';
    img.decoding = 'async';
    img.addEventListener('error', () => img.classList.add('broken'), { once: true });
    // A video hit's thumbnail (from the server) is its frame at the hit's time.
    setImageSource(img, r.thumbnail || `/v1/images/${r.id}/thumbnail`);
    view.append(img);
    if (video) {
      li.dataset.time = String(r.time);
      const badge = document.createElement('span');
      badge.className = 'video-badge';
      badge.setAttribute('aria-hidden', 'true'); // the button's label says it
      badge.textContent = `▶ ${fmtClock(r.time)}`;
      view.append(badge);
    }
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
    // Enter again while the same search is on its way is not a second search
    // (it would cancel the first and start over).
    if (search.controller && !search.loadingMore && search.pending === requestKey(currentRequest())) return;
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

  // ------------------------------------------------------------------ videos

  /** A video's search hit carries the time (seconds) of its best frame. */
  const isVideoHit = (r) => typeof r.time === 'number' && Number.isFinite(r.time);
  /** Seconds as a player shows them: 0:03, 1:02:03. */
  function fmtClock(secs) {
    const total = Math.max(0, Math.floor(Number(secs) || 0));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const ss = String(total % 60).padStart(2, '0');
    return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
  }

  // ------------------------------------------------------------------ lightbox

  const lightbox = $('#lightbox');
  const lightboxImg = $('#lightbox-img');
  const lightboxVideo = $('#lightbox-video');
  const lightboxFrames = $('#lightbox-frames');
  let framesController = null;
  // The shown photo (a result), and where it is in search.results: -1 when the
  // results changed under it (a re-index, a new search) and it is not among
  // them any more; it stays shown, never another photo in its place.
  let lightboxItem = null;
  let lightboxIndex = -1;
  let lightboxOpener = null;
  let lightboxWantsNext = false; // → at the end: show the next photo once its page arrives
  const lightboxBlobUrls = new Set();
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
    showInLightbox(index);
    if (!lightbox.open) lightbox.showModal();
    $('#lightbox-close').focus({ preventScroll: true });
  }

  function showInLightbox(index) {
    const r = search.results[index];
    const changed = !lightboxItem || lightboxItem.id !== r.id || !lightbox.open;
    lightboxIndex = index;
    lightboxItem = r;
    lightboxWantsNext = false;
    renderLightbox(changed);
  }

  /** After the results changed: the shown photo is found again by its id, its
   *  details refreshed from the new results (or kept, when it is not among them). */
  function syncLightbox() {
    if (!lightboxItem) return;
    const index = search.results.findIndex((r) => r.id === lightboxItem.id);
    if (index >= 0 && lightboxWantsNext && search.results[index + 1]) {
      showInLightbox(index + 1);
      return;
    }
    lightboxIndex = index;
    if (index >= 0) lightboxItem = search.results[index];
    renderLightbox(false);
  }

  function closeLightbox({ restoreFocus = true } = {}) {
    if (!lightbox.open) return;
    lightbox.close();
    lightboxVideo.pause();
    lightboxWantsNext = false;
    const card = lightboxItem && resultsEl.querySelector(`.result[data-id="${lightboxItem.id}"] .result-view`);
    const back = card || lightboxOpener;
    if (restoreFocus && back && back.focus && back.isConnected) back.focus({ preventScroll: false });
  }

  function moveLightbox(step) {
    if (lightboxIndex < 0) return; // not among the results any more: nowhere to step
    const next = lightboxIndex + step;
    if (next < 0) return;
    if (next >= search.results.length) {
      if (search.more) {
        lightboxWantsNext = true; // shown once its page arrives (syncLightbox)
        loadMore();
      }
      return;
    }
    showInLightbox(next);
  }

  /** Shows lightboxItem; `changed`: another photo than before, so the image
   *  and the tools are set afresh (otherwise only the details are refreshed). */
  function renderLightbox(changed) {
    const r = lightboxItem;
    if (!r) return;
    const name = fileName(r.path);
    lightbox.dataset.id = String(r.id);
    lightbox.dataset.detached = String(lightboxIndex < 0);
    $('#lightbox-title').textContent = name;
    $('#lightbox-pos').textContent = lightboxIndex >= 0
      ? `${lightboxIndex + 1} of ${search.results.length}${search.more ? '+' : ''} · score ${Number(r.score).toFixed(3)}`
      : `No longer among the results of this search · score ${Number(r.score).toFixed(3)} before`;
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
    const video = isVideoHit(r);
    // A photo's capture time is EXIF's; a video's is its container's creation_time.
    row('taken', 'Taken', r.taken_at || (video ? 'no creation time recorded' : 'no EXIF capture time'));
    row('modified', 'Modified', fmtTime(r.modified));
    if (video) row('time', 'Found at', fmtClock(r.time));
    // Questions, outlines and boxes are about photos, not videos.
    if (video) {
      $('#ask-form').hidden = true;
      $('#segment-tools').hidden = true;
      $('#detect-form').hidden = true;
      $('#show-where').hidden = true;
    } else {
      renderAsk(r.id);
      renderVision(r);
    }
    const url = r.url || `/v1/images/${r.id}`;
    const open = $('#lightbox-open');
    open.href = url;
    open.setAttribute('aria-label', `Open the original of ${name}`);
    $('#lightbox-prev').disabled = lightboxIndex <= 0;
    $('#lightbox-next').disabled = lightboxIndex < 0 || (lightboxIndex >= search.results.length - 1 && !search.more);
    lightboxImg.alt = name;
    if (!changed) return; // the same photo: its image stays as it is
    for (const u of lightboxBlobUrls) URL.revokeObjectURL(u);
    lightboxBlobUrls.clear();
    lightboxImg.hidden = video;
    lightbox.dataset.video = String(video);
    renderVideo(video ? r : null, url, name);
    if (video) return;
    lightboxImg.classList.remove('broken');
    const thumb = r.thumbnail || `/v1/images/${r.id}/thumbnail`;
    const id = r.id;
    setImageSource(lightboxImg, thumb, lightboxBlobUrls);
    if (BROWSER_FORMATS.test(r.path)) {
      // The original replaces the thumbnail once it has loaded (if still shown).
      const full = new Image();
      full.decoding = 'async';
      full.addEventListener('load', () => {
        if (lightbox.dataset.id === String(id)) lightboxImg.src = full.src;
      }, { once: true });
      setImageSource(full, url, lightboxBlobUrls);
    }
  }

  /** The detail view of a video: it plays from the hit's time, and the frames
   *  the index sampled are listed as points to seek to. `r` null: no video. */
  function renderVideo(r, url, name) {
    if (framesController) framesController.abort();
    framesController = null;
    lightboxFrames.textContent = '';
    $('#lightbox-frames-section').hidden = true;
    if (!r) {
      lightboxVideo.pause();
      lightboxVideo.removeAttribute('src');
      lightboxVideo.hidden = true;
      lightboxVideo.load();
      return;
    }
    lightboxVideo.hidden = false;
    lightboxVideo.setAttribute('aria-label', `${name}, from ${fmtClock(r.time)}`);
    const start = `#t=${r.time}`;
    if (!auth.token) {
      lightboxVideo.src = url + start; // the server answers ranges: the player seeks in it
    } else {
      // A <video> cannot send the token: the file is fetched and played from a blob: URL.
      lightboxVideo.removeAttribute('src');
      const id = r.id;
      api(url, { raw: true })
        .then((res) => res.blob())
        .then((blob) => {
          const u = URL.createObjectURL(blob);
          lightboxBlobUrls.add(u);
          if (lightbox.dataset.id === String(id)) lightboxVideo.src = u + start;
        })
        .catch((e) => { lightboxVideo.title = `the video failed to load: ${e.message}`; });
    }
    const controller = new AbortController();
    framesController = controller;
    api(`/v1/images/${r.id}/info`, { signal: controller.signal })
      .then((info) => {
        if (controller.signal.aborted) return;
        const frames = info && info.video && Array.isArray(info.video.frames) ? info.video.frames : [];
        for (const t of frames) {
          const li = document.createElement('li');
          const seek = document.createElement('button');
          seek.type = 'button';
          seek.className = 'secondary frame-seek';
          seek.dataset.time = String(t);
          seek.textContent = fmtClock(t);
          seek.setAttribute('aria-label', `Play from ${fmtClock(t)}`);
          if (Math.abs(t - r.time) < 0.0005) seek.setAttribute('aria-current', 'true');
          seek.addEventListener('click', () => {
            for (const b of lightboxFrames.querySelectorAll('button')) b.removeAttribute('aria-current');
            seek.setAttribute('aria-current', 'true');
            lightboxVideo.currentTime = t;
            lightboxVideo.play().catch(() => { /* autoplay refused: it stays paused there */ });
          });
          li.append(seek);
          lightboxFrames.append(li);
        }
        $('#lightbox-frames-section').hidden = frames.length === 0;
      })
      .catch(() => { /* the seek points are a help; the video plays without them */ });
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
    // The server's limit (a cut question would be answered as if whole).
    const MAX_QUESTION_CHARS = 1000;
    if ([...question].length > MAX_QUESTION_CHARS) {
      showError($('#ask-error'), new Error(
        `A question is at most ${fmtInt(MAX_QUESTION_CHARS)} characters; this one has ${fmtInt([...question].length)}.`));
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
  // The server's limits on /v1/detect: 32 labels, each at most 1,000 characters.
  const MAX_DETECT_LABELS = 32;
  const MAX_LABEL_CHARS = 1000;
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
    // As the server counts them (/v1/detect): trimmed, blanks and repeats left out.
    const labels = [...new Set($('#detect-input').value.split(',').map((l) => l.trim()).filter(Boolean))];
    const refuse = (message) => {
      showError($('#detect-error'), new Error(message));
      $('#detect-input').focus();
    };
    if (!labels.length) {
      refuse('Type what to find, e.g. a cat, a bicycle');
      return;
    }
    if (labels.length > MAX_DETECT_LABELS) {
      refuse(`At most ${MAX_DETECT_LABELS} labels at once; there are ${labels.length}.`);
      return;
    }
    const long = labels.find((l) => [...l].length > MAX_LABEL_CHARS);
    if (long) {
      refuse(`A label is at most ${fmtInt(MAX_LABEL_CHARS)} characters; “${long.slice(0, 40)}…” has ${fmtInt([...long].length)}.`);
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
    const r = lightboxItem;
    if (r) moreLike(r.id, fileName(r.path));
  });
  $('#lightbox-open').addEventListener('click', (ev) => openOriginal(ev, $('#lightbox-open').getAttribute('href')));
  lightbox.addEventListener('keydown', (e) => {
    const typing = e.target && (['ask-input', 'detect-input', 'detect-threshold'].includes(e.target.id)
      || e.target === lightboxVideo); // the player's own keys seek in the video
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

  // ------------------------------------------------------------------ duplicates

  /** Groups of near-duplicates (/v1/duplicates) of the model the search uses,
   *  a page at a time; their thumbnails' blob URLs are their own. */
  const DUPES_PAGE = 20;
  const dupes = { seq: 0, offset: 0, params: null, urls: new Set() };
  const dupesList = $('#dupes-list');
  const dupesStatus = $('#dupes-status');
  const dupesErr = $('#dupes-error');
  const dupesMore = $('#dupes-more');
  const dupesSubmit = $('#dupes-submit');
  const dupesThreshold = $('#dupes-threshold');

  async function findDuplicates(more) {
    const seq = ++dupes.seq;
    showError(dupesErr, null);
    if (!more) {
      const raw = dupesThreshold.value.trim();
      const t = Number(raw);
      if (raw && !(Number.isFinite(t) && t >= -1 && t <= 1)) {
        showError(dupesErr, new Error('The threshold is a similarity from -1 to 1 (or empty: the measured one).'));
        return;
      }
      const params = new URLSearchParams({ k: String(DUPES_PAGE) });
      const model = search.model || models.default;
      if (model) params.set('model', model);
      if (raw) params.set('threshold', raw);
      dupes.params = params;
      dupes.offset = 0;
      for (const u of dupes.urls) URL.revokeObjectURL(u);
      dupes.urls.clear();
      dupesList.replaceChildren();
      dupesStatus.textContent = raw
        ? 'Looking for duplicates…'
        : 'Looking for duplicates… (the first time, seer measures the threshold on altered copies of your photos)';
    } else {
      dupesStatus.textContent = 'Loading more groups…';
    }
    const params = new URLSearchParams(dupes.params);
    if (dupes.offset) params.set('offset', String(dupes.offset));
    dupesSubmit.disabled = true;
    dupesMore.hidden = true;
    try {
      const data = await api(`/v1/duplicates?${params}`);
      if (seq !== dupes.seq) return;
      const groups = Array.isArray(data.groups) ? data.groups : [];
      groups.forEach((g, i) => dupesList.append(dupeGroup(g, dupes.offset + i)));
      dupes.offset += groups.length;
      dupesMore.hidden = !data.more;
      const threshold = Number(data.threshold).toFixed(4);
      if (!dupes.params.has('threshold')) dupesThreshold.placeholder = threshold;
      const c = data.calibration;
      const how = c && !dupes.params.has('threshold')
        ? ` (measured: it catches 99% of ${fmtInt(c.duplicate_pairs)} altered copies of ${fmtInt(c.images)} photos)`
        : '';
      dupesStatus.textContent = data.total
        ? `${fmtInt(data.total)} ${data.total === 1 ? 'group' : 'groups'} of duplicates at threshold ${threshold}${how}`
        : `No duplicates at threshold ${threshold}${how}`;
    } catch (e) {
      if (seq !== dupes.seq) return;
      dupesStatus.textContent = '';
      showError(dupesErr, e);
      dupesMore.hidden = !more;
    } finally {
      if (seq === dupes.seq) dupesSubmit.disabled = false;
    }
  }

  /** One group: each file's thumbnail (opening the original), name, pixel size
   *  and file size, which tell which copy to keep, and its similarity to the first. */
  function dupeGroup(g, n) {
    const files = Array.isArray(g.files) ? g.files : [];
    const li = document.createElement('li');
    li.className = 'dupe-group';
    li.setAttribute('aria-label', `Group ${n + 1}: ${fmtInt(typeof g.size === 'number' ? g.size : files.length)} files`);
    files.forEach((f, i) => {
      const name = fileName(f.path);
      const a = document.createElement('a');
      a.className = 'dupe-file';
      a.href = f.url;
      a.target = '_blank';
      a.rel = 'noopener';
      a.dataset.id = String(f.id);
      const size = typeof f.width === 'number' ? `${f.width} × ${f.height} px` : '';
      a.title = [f.path, size, typeof f.size === 'number' ? fmtBytes(f.size) : '',
        i ? `similarity ${Number(f.score).toFixed(3)} to the first` : ''].filter(Boolean).join('\n');
      a.addEventListener('click', (e) => openOriginal(e, f.url));
      const img = document.createElement('img');
      img.alt = name;
      img.loading = 'lazy';
      img.decoding = 'async';
      img.addEventListener('error', () => img.classList.add('broken'), { once: true });
      setImageSource(img, f.thumbnail, dupes.urls);
      const label = document.createElement('span');
      label.textContent = name;
      const score = document.createElement('span');
      score.className = 'dupe-score';
      score.textContent = i ? Number(f.score).toFixed(3) : 'first';
      a.append(img, label, score);
      if (size) {
        const dims = document.createElement('span');
        dims.className = 'dupe-score';
        dims.textContent = `${f.width}×${f.height}`;
        a.append(dims);
      }
      li.append(a);
    });
    // The server lists the first 200 files of a group (a low threshold can
    // chain a whole library into one).
    const total = typeof g.size === 'number' ? g.size : files.length;
    if (total > files.length) {
      const rest = document.createElement('span');
      rest.className = 'dupe-rest hint';
      rest.textContent = `and ${fmtInt(total - files.length)} more: a higher threshold splits this group`;
      li.append(rest);
    }
    return li;
  }

  $('#dupes-form').addEventListener('submit', (e) => {
    e.preventDefault();
    findDuplicates(false);
  });
  dupesMore.addEventListener('click', () => findDuplicates(true));

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

  // The server's limits: /v1/classify takes 1 to 1,000 labels; "imagenet" is
  // seer_engine::prompts::IMAGENET_TEMPLATES, 7 prompts per label.
  const MAX_CLASSIFY_LABELS = 1000;
  const IMAGENET_TEMPLATE_COUNT = 7;
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
    if (labels.length > MAX_CLASSIFY_LABELS) {
      showError(err, new Error(`At most ${fmtInt(MAX_CLASSIFY_LABELS)} labels at once; there are ${fmtInt(labels.length)}.`));
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
    button.textContent = 'Classifying…';
    chart.setAttribute('aria-busy', 'true');
    // Many labels take a while the first time (every label's prompts are embedded;
    // the server keeps them, so the same labels again are quick): the status
    // says how long it has been working. The page sets no time limit of its own:
    // the server answers within its own (--timeout, 60 s by default).
    const templates = $('#classify-templates').value === 'imagenet' ? IMAGENET_TEMPLATE_COUNT : 1;
    const prompts = labels.length * templates;
    const what = `${model && models.list.length > 1 ? `Classifying with ${modelName(model.id)}` : 'Classifying'}`
      + `${prompts > 50 ? ` (${fmtInt(labels.length)} labels, ${fmtInt(prompts)} prompts: the first time with these labels can take a while)` : ''}`;
    const started = Date.now();
    const tick = () => {
      const secs = Math.floor((Date.now() - started) / 1000);
      status.textContent = `${what}…${secs >= 1 ? ` ${secs} s` : ''}`;
    };
    tick();
    const ticker = setInterval(tick, 1000);
    status.dataset.busy = 'true';
    showError(err, null);
    try {
      const data = await api('/v1/classify', { method: 'POST', body: form, signal: controller.signal });
      if (classifyController !== controller) return;
      const preds = Array.isArray(data.predictions) ? data.predictions : [];
      renderChart(preds);
      const secs = (Date.now() - started) / 1000;
      status.textContent = preds.length
        ? `Best: ${preds[0].label} (${(preds[0].probability * 100).toFixed(1)}%)${secs >= 2 ? ` · ${secs.toFixed(0)} s` : ''}`
        : 'No predictions';
    } catch (ex) {
      if (isAbort(ex) || classifyController !== controller) return;
      // The chart of the classification before is not this one's answer.
      renderChart([]);
      showError(err, ex);
      status.textContent = 'Classification failed';
    } finally {
      clearInterval(ticker);
      if (classifyController === controller) {
        classifyController = null;
        button.disabled = false;
        button.textContent = 'Classify';
        chart.setAttribute('aria-busy', 'false');
        delete status.dataset.busy;
      }
    }
  });

  // ------------------------------------------------------------------ index status

  let pollTimer = null;
  let wasRunning = false;

  /** While the server cannot be reached, the index panel says so and shows no
   *  counts (what it showed may no longer be true: the index may have changed,
   *  a run may have finished or failed); the next status it gets fills it again. */
  function statusUnknown() {
    for (const id of ['#status-files', '#status-vectors', '#status-failures']) $(id).textContent = '–';
    $('#status-videos').hidden = true;
    const note = $('#index-unknown');
    note.textContent = 'Server unreachable: the counts are unknown until it answers again.';
    note.hidden = false;
    $('#failure-list').textContent = '';
    $('#failure-details').hidden = true;
    $('#index-progress-wrap').hidden = true;
    $('#index-last').textContent = '';
    $('#reindex').disabled = false;
    $('#reindex').textContent = 'Re-index';
  }

  function renderStatus(s) {
    $('#index-unknown').hidden = true;
    $('#status-files').textContent = fmtInt(s.files);
    $('#status-vectors').textContent = fmtInt(s.vectors);
    $('#status-failures').textContent = fmtInt(s.failures);
    const videos = $('#status-videos');
    videos.hidden = !(s.videos > 0);
    videos.textContent = s.videos > 0
      ? `${fmtInt(s.videos)} ${s.videos === 1 ? 'video' : 'videos'} among them (${fmtInt(s.frames)} sampled frames)`
      : '';
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

  // Whether the server answers. When a request cannot reach it the header says so
  // (not the model and count it had before) and /healthz is tried now and then;
  // once it answers, the errors that said it was unreachable go, and what they
  // were about is loaded again.
  const connection = {
    down: false,
    timer: null,
    delay: 0,
    lost() {
      if (!this.down) {
        this.down = true;
        this.delay = 2000;
      }
      const el = $('#health');
      el.textContent = 'server unreachable: trying again…';
      el.classList.add('bad');
      statusUnknown();
      if (!this.timer) this.timer = setTimeout(() => this.probe(), this.delay);
    },
    async probe() {
      this.timer = null;
      try {
        const res = await fetch('/healthz', { headers: auth.headers(), cache: 'no-store' });
        if (!res.ok) throw new Error(String(res.status));
      } catch (_) {
        this.delay = Math.min(this.delay * 2, 15000);
        this.lost();
        return;
      }
      this.found();
    },
    found() {
      if (!this.down) return;
      this.down = false;
      clearTimeout(this.timer);
      this.timer = null;
      for (const el of document.querySelectorAll('.error[data-unreachable]')) showError(el, null);
      // The counts stay blank until the status comes (refreshAll asks for it).
      $('#index-unknown').hidden = true;
      if ($('#classify-status').textContent === 'Classification failed') $('#classify-status').textContent = '';
      refreshAll();
    },
  };

  async function refreshHealth() {
    const el = $('#health');
    let h;
    try {
      const res = await fetch('/healthz', { headers: auth.headers(), cache: 'no-store' });
      h = await res.json();
    } catch (e) {
      connection.lost();
      return;
    }
    connection.found();
    el.classList.remove('bad');
    const m = currentModel();
    // An empty index says how to fill it, rather than leaving a blank page.
    const vectors = models.list.length > 1 && m ? m.vectors : h && h.vectors;
    $('#empty-index').hidden = vectors !== 0;
    // The model (a long path, often) gives way on a narrow screen; the count
    // after it stays whole. The whole line is its title.
    const twoParts = (model, rest) => {
      const name = document.createElement('span');
      name.className = 'health-model';
      name.textContent = model;
      const after = document.createElement('span');
      after.className = 'health-rest';
      after.textContent = rest;
      el.replaceChildren(name, after);
      el.title = el.textContent;
    };
    el.removeAttribute('title');
    if (models.list.length > 1 && m) {
      twoParts(modelName(m.id), ` · ${fmtInt(m.vectors)} vectors · ${models.list.length} models`);
    } else if (h && h.model) {
      twoParts(h.model, ` · ${fmtInt(h.vectors)} vectors`);
    } else {
      // /healthz names the model only with the token (on a server that wants one).
      el.textContent = auth.token ? 'connected' : 'connected · needs a token';
    }
  }

  function refreshAll() {
    const loaded = loadModels();
    loaded.then(refreshHealth);
    refreshStatus();
    // The first search waits for the model list, so a model in the address bar
    // is resolved (and an image-only one known) before it runs; unless the user
    // has searched meanwhile.
    const seq = search.seq;
    loaded.then(() => {
      if (seq === search.seq && hasQuery()) runSearch('none');
    });
  }

  // ------------------------------------------------------------------ start

  auth.load();
  if (auth.dropped) askForToken(auth.dropped);
  applyUrl();
  refreshAll();
  if (!searchInput.value && $('#auth').hidden) searchInput.focus({ preventScroll: true });
})();
