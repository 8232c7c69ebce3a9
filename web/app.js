// yci's pages, made live. Served as /static/app.js (embedded from web/).
//
// The server renders every page in full; this script only
//  - keeps the parts marked data-live current: it long-polls /api/changes and,
//    when the store's version moves, fetches the page again and swaps them;
//  - keeps "3 min ago" ages current;
//  - runs a build's rebuild and cancel buttons with the admin token (asked
//    once, kept in this browser's localStorage);
//  - shows a job's log (#log): the tail first, earlier parts on demand, then
//    follows it live; ANSI colours by ansi_up (escaped by it), line numbers
//    that link to their line (#L123).
// Nothing here builds HTML from data except ansi_up's escaped output and
// numbers; everything else is server-rendered and escaped there.

const TOKEN_KEY = 'yci-admin-token';
const CHUNK = 1 << 20;          // bytes of log fetched at a time
const MAX_LINES = 100000;       // lines kept on the page while following
const MIN_REFRESH_MS = 1000;    // at most one page refresh a second

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const finalStatus = (s) => !!s && s !== 'queued' && s !== 'running';

// ---- live sections -------------------------------------------------------

let version = document.body.dataset.version || '0';
let refreshing = null;

async function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const r = await fetch(location.href, { cache: 'no-store' });
      if (!r.ok) return;
      const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
      for (const old of document.querySelectorAll('[data-live]')) {
        const fresh = doc.getElementById(old.id);
        if (fresh) old.replaceWith(document.adoptNode(fresh));
      }
      if (doc.body.dataset.version) version = doc.body.dataset.version;
      ages();
    } catch (e) {
      // the server is away: the next change or tick tries again
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function watchChanges() {
  let last = 0;
  for (;;) {
    let v;
    try {
      const r = await fetch('/api/changes?since=' + encodeURIComponent(version) + '&wait=25',
                            { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      v = String((await r.json()).version);
    } catch (e) {
      await sleep(3000);
      continue;
    }
    if (v === version) continue;
    const wait = last + MIN_REFRESH_MS - Date.now();
    if (wait > 0) await sleep(wait);
    last = Date.now();
    const before = version;
    await refresh();
    if (version === before) version = v; // the page did not say: take the change's
  }
}

function ages() {
  const now = Date.now();
  for (const t of document.querySelectorAll('time.age[data-ms]')) {
    const s = Math.max(0, Math.floor((now - Number(t.dataset.ms)) / 1000));
    t.textContent = s < 60 ? s + ' s ago'
      : s < 3600 ? Math.floor(s / 60) + ' min ago'
      : s < 86400 ? Math.floor(s / 3600) + ' h ago'
      : Math.floor(s / 86400) + ' days ago';
  }
}

// ---- build actions ---------------------------------------------------------

async function buildAction(btn, action) {
  const out = btn.parentElement.querySelector('.action-result');
  const say = (text) => { if (out) out.textContent = text; };
  let token = localStorage.getItem(TOKEN_KEY);
  if (!token) {
    token = window.prompt('The admin token (the file admin-token in the server\'s data ' +
                          'directory). It is kept in this browser.');
    if (!token) return;
    token = token.trim();
  }
  btn.disabled = true;
  say(action === 'rebuild' ? 'rebuilding…' : 'cancelling…');
  try {
    const r = await fetch('/api/builds/' + encodeURIComponent(btn.dataset.build) + '/' + action,
                          { method: 'POST', headers: { Authorization: 'Bearer ' + token } });
    const j = await r.json().catch(() => ({}));
    if (r.status === 401 || r.status === 403) {
      localStorage.removeItem(TOKEN_KEY);
      say('the token was refused (' + (j.error || r.status) + '): try again');
      return;
    }
    if (!r.ok) {
      say('failed: ' + (j.error || 'HTTP ' + r.status));
      return;
    }
    localStorage.setItem(TOKEN_KEY, token);
    if (action === 'rebuild' && Number.isInteger(j.id)) {
      location.assign('/builds/' + j.id);
      return;
    }
    say('cancelled ' + (j.cancelled ?? 0) + ' job(s)');
    refresh();
  } catch (e) {
    say('failed: ' + e.message);
  } finally {
    btn.disabled = false;
  }
}

// ---- the log -------------------------------------------------------------

let AnsiUp = null;

function makeAnsi() {
  const a = new AnsiUp();
  a.use_classes = true;
  // Classes only, and true colours as data attributes set through the DOM
  // afterwards: the Content-Security-Policy forbids style attributes.
  a.transform_to_html = function (f) {
    let txt = f.text;
    if (txt.length === 0) return txt;
    txt = this.escape_txt_for_html(txt);
    const cls = [];
    let data = '';
    if (f.bold) cls.push('ansi-bold');
    if (f.faint) cls.push('ansi-faint');
    if (f.italic) cls.push('ansi-italic');
    if (f.underline) cls.push('ansi-underline');
    for (const [c, k] of [[f.fg, 'fg'], [f.bg, 'bg']]) {
      if (!c) continue;
      if (c.class_name !== 'truecolor') cls.push(c.class_name + '-' + k);
      else data += ' data-' + k + '="' + c.rgb.map((n) => n | 0).join(',') + '"';
    }
    if (!cls.length && !data) return txt;
    return '<span' + (cls.length ? ' class="' + cls.join(' ') + '"' : '') + data + '>' +
      txt + '</span>';
  };
  return a;
}

function applyColours(root) {
  for (const s of root.querySelectorAll('[data-fg]')) {
    s.style.color = 'rgb(' + s.dataset.fg + ')';
    s.removeAttribute('data-fg');
  }
  for (const s of root.querySelectorAll('[data-bg]')) {
    s.style.backgroundColor = 'rgb(' + s.dataset.bg + ')';
    s.removeAttribute('data-bg');
  }
}

function concat(a, b) {
  if (!a.length) return b;
  const c = new Uint8Array(a.length + b.length);
  c.set(a);
  c.set(b, a.length);
  return c;
}

class LogView {
  constructor(el) {
    this.el = el;
    this.job = el.dataset.job;
    this.attempt = Number(el.dataset.attempt) || 0;
    this.asked = el.dataset.asked === '1';
    this.status = el.dataset.status;
    this.start = 0;        // byte offset of the first line shown
    this.firstLine = 1;    // its number
    this.end = 0;          // bytes read up to here
    this.nextLine = 1;     // number of the next complete line
    this.pending = new Uint8Array(0); // an incomplete last line
    this.partialEl = null;
    this.moreEl = null;
    this.lineCount = 0;    // complete lines of the tail on the page
    this.headEnd = null;   // the head: bytes [0, headEnd) shown above the gap
    this.headLine = 1;     // the number of the head's next line
    this.headCount = 0;
    this.ansi = makeAnsi();
    this.decoder = new TextDecoder();
    this.stick = true;     // keep the end in view
    this.stateEl = document.querySelector('.log-state');
    window.addEventListener('scroll', () => {
      this.stick = window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
    }, { passive: true });
  }

  setState(text) { if (this.stateEl) this.stateEl.textContent = text; }

  url(params) {
    let u = '/api/jobs/' + encodeURIComponent(this.job) + '/log?';
    if (this.attempt > 0) u += 'attempt=' + this.attempt + '&';
    return u + params;
  }

  async get(params) {
    const r = await fetch(this.url(params), { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    return { r, bytes: new Uint8Array(await r.arrayBuffer()) };
  }

  lineHtml(n, offset, html) {
    return '<div class="ln" id="L' + n + '" data-o="' + offset + '"><a class="n" href="#L' + n +
      '" data-n="' + n + '"></a><span class="t">' + html + '</span></div>';
  }

  // Complete lines of bytes (starting at byte offset `at`), rendered with ansi.
  render(bytes, at, firstNumber, ansi) {
    const parts = [];
    let n = firstNumber, from = 0;
    for (;;) {
      const nl = bytes.indexOf(10, from);
      if (nl < 0) break;
      const text = this.decoder.decode(bytes.subarray(from, nl));
      parts.push(this.lineHtml(n++, at + from, ansi.ansi_to_html(text)));
      from = nl + 1;
    }
    return { html: parts.join(''), count: n - firstNumber, used: from };
  }

  append(bytes) {
    const all = concat(this.pending, bytes);
    const at = this.end - all.length; // all ends where the bytes read end
    const { html, count, used } = this.render(all, at, this.nextLine, this.ansi);
    this.nextLine += count;
    this.lineCount += count;
    this.pending = all.slice(used);
    if (html) this.el.insertBefore(this.nodes(html), this.partialEl);
    this.showPartial();
    this.trim();
    if (this.stick) window.scrollTo(0, document.body.scrollHeight);
  }

  // The incomplete last line, as plain text until it is complete.
  showPartial() {
    if (!this.pending.length) {
      if (this.partialEl) this.partialEl.remove();
      this.partialEl = null;
      return;
    }
    if (!this.partialEl) {
      this.partialEl = document.createElement('div');
      this.partialEl.className = 'ln partial';
      const n = document.createElement('a');
      n.className = 'n';
      const t = document.createElement('span');
      t.className = 't';
      this.partialEl.append(n, t);
      this.el.appendChild(this.partialEl);
    }
    this.partialEl.firstChild.dataset.n = this.nextLine;
    this.partialEl.lastChild.textContent = this.decoder.decode(this.pending);
  }

  // Following a long job: keep at most MAX_LINES lines on the page.
  trim() {
    if (this.lineCount <= MAX_LINES) return;
    const lines = this.el.querySelectorAll(this.moreEl ? '.gap ~ .ln:not(.partial)'
                                                       : '.ln:not(.partial)');
    const drop = lines.length - MAX_LINES + MAX_LINES / 5;
    const keep = lines[drop];
    for (let i = 0; i < drop; i++) lines[i].remove();
    this.lineCount = lines.length - drop;
    this.start = Number(keep.dataset.o);
    this.firstLine = Number(keep.id.slice(1));
    this.showMore();
  }

  // The gap between the head (lines from the start, loaded on demand) and
  // the tail: buttons that load the next lines of the head, or earlier
  // lines of the tail.
  showMore() {
    if (this.start === 0 || (this.headEnd !== null && this.headEnd >= this.start)) {
      if (this.moreEl) this.moreEl.remove();
      this.moreEl = null;
      if (this.headEnd !== null) {
        this.lineCount += this.headCount;
        this.headEnd = null;
      }
      this.start = 0;
      this.firstLine = 1;
      return;
    }
    if (!this.moreEl) {
      this.moreEl = document.createElement('div');
      this.moreEl.className = 'gap';
      for (const a of ['later', 'earlier']) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'more';
        b.dataset.action = a;
        this.moreEl.appendChild(b);
      }
      this.el.prepend(this.moreEl);
    }
    const gap = this.start - (this.headEnd || 0);
    const mb = (n) => (n / 1048576).toFixed(1) + ' MB';
    const [later, earlier] = this.moreEl.children;
    later.textContent = this.headEnd === null ? 'Load the start of the log'
      : 'Load lines after ' + (this.headLine - 1);
    earlier.textContent = 'Load lines before ' + this.firstLine + ' (' + mb(gap) +
      ' not shown)';
  }

  // Lines from bytes as nodes, true colours applied.
  nodes(html) {
    const tmp = document.createElement('div');
    tmp.innerHTML = html;
    applyColours(tmp);
    const frag = document.createDocumentFragment();
    while (tmp.firstChild) frag.appendChild(tmp.firstChild);
    return frag;
  }

  // Extend the tail backwards by a chunk.
  async loadEarlier() {
    if (!this.moreEl || this.loading) return;
    this.loading = true;
    try {
      const lo = Math.max(this.headEnd || 0, this.start - CHUNK);
      const { bytes } = await this.get('offset=' + lo + '&limit=' + (this.start - lo));
      let b = bytes, at = lo;
      if (lo > (this.headEnd || 0)) {
        const nl = b.indexOf(10);
        if (nl < 0) return; // a line longer than a chunk: the raw log has it
        b = b.subarray(nl + 1);
        at = lo + nl + 1;
      }
      let lines = 0;
      for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) lines++;
      const first = this.firstLine - lines;
      const { html } = this.render(b, at, first, makeAnsi());
      const heightBefore = document.body.scrollHeight;
      this.el.insertBefore(this.nodes(html), this.moreEl.nextSibling);
      this.lineCount += lines;
      this.start = at;
      this.firstLine = first;
      this.showMore();
      window.scrollBy(0, document.body.scrollHeight - heightBefore); // keep the view still
    } finally {
      this.loading = false;
    }
  }

  // Extend the head (the lines from the start) forwards by a chunk.
  async loadLater() {
    if (!this.moreEl || this.loading) return;
    this.loading = true;
    try {
      if (this.headEnd === null) {
        this.headEnd = 0;
        this.headLine = 1;
        this.headCount = 0;
        this.headAnsi = makeAnsi();
      }
      const hi = Math.min(this.start, this.headEnd + CHUNK);
      const { bytes } = await this.get('offset=' + this.headEnd + '&limit=' + (hi - this.headEnd));
      let b = bytes;
      if (hi < this.start) {
        const nl = b.lastIndexOf(10);
        if (nl < 0) return;
        b = b.subarray(0, nl + 1);
      }
      const { html, count } = this.render(b, this.headEnd, this.headLine, this.headAnsi);
      this.el.insertBefore(this.nodes(html), this.moreEl);
      this.headEnd += b.length;
      this.headLine += count;
      this.headCount += count;
      this.showMore();
    } finally {
      this.loading = false;
    }
  }

  async goTo(n) {
    for (let i = 0; i < 16 && this.moreEl && n < this.firstLine; i++) {
      const inHead = this.headEnd !== null && n < this.headLine;
      if (inHead) break;
      // nearer the start than the tail: load from the start
      if (n - (this.headEnd === null ? 1 : this.headLine) < this.firstLine - n) await this.loadLater();
      else await this.loadEarlier();
    }
    const el = document.getElementById('L' + n);
    if (!el) {
      this.setState('line ' + n + ' is not loaded: use the buttons above, or the raw log');
      return;
    }
    for (const h of this.el.querySelectorAll('.ln.hl')) h.classList.remove('hl');
    el.classList.add('hl');
    this.stick = false;
    el.scrollIntoView({ block: 'center' });
  }

  async open() {
    try {
      if (this.attempt > 0) {
        const size = Number(this.el.dataset.size) || 0;
        const from = size > CHUNK ? size - CHUNK : 0;
        const { r, bytes } = await this.get('offset=' + from + '&limit=' + (size - from) +
                                            (from > 0 ? '&lines=1' : ''));
        let b = bytes;
        this.end = from + bytes.length;
        if (from > 0) {
          const before = Number(r.headers.get('X-Yci-Lines-Before')) || 0;
          const nl = b.indexOf(10);
          if (nl >= 0) {
            b = b.subarray(nl + 1);
            this.start = from + nl + 1;
            this.firstLine = before + 2;
          } else {
            this.start = from;
            this.firstLine = before + 1;
          }
          this.nextLine = this.firstLine;
          this.showMore();
        }
        this.append(b);
      }
      const m = /^#L(\d+)$/.exec(location.hash);
      if (m) await this.goTo(Number(m[1]));
      if (finalStatus(this.status)) this.finish(this.status);
      else await this.follow();
    } catch (e) {
      this.setState('cannot read the log: ' + e.message);
    }
  }

  async follow() {
    this.setState('following the job as it prints…');
    for (;;) {
      let res;
      try {
        res = await this.get('offset=' + this.end + '&wait=25');
      } catch (e) {
        this.setState('connection lost: trying again…');
        await sleep(2000);
        continue;
      }
      const { r, bytes } = res;
      const status = r.headers.get('X-Yci-Job-Status') || '';
      const current = Number(r.headers.get('X-Yci-Current-Attempt')) || 0;
      if (this.attempt === 0 && current > 0) {
        this.attempt = current; // the first attempt started
        this.setState('following the job as it prints…');
        continue;
      }
      if (bytes.length) {
        this.end += bytes.length;
        this.append(bytes);
        continue;
      }
      if (finalStatus(status) || (this.attempt > 0 && current !== this.attempt)) {
        this.finish(status);
        if (!this.asked && current > this.attempt && !finalStatus(status)) {
          this.setState('attempt ' + this.attempt + ' ended; following attempt ' + current + '…');
          await sleep(1000);
          location.reload();
        }
        return;
      }
      if (this.attempt === 0) this.setState('waiting for a runner…');
    }
  }

  finish(status) {
    if (this.pending.length) {
      // the last line had no newline: show it as a line
      this.pending = concat(this.pending, new Uint8Array([10]));
      this.end += 1;
      this.append(new Uint8Array(0));
      this.end -= 1;
    }
    const empty = !this.el.querySelector('.ln');
    this.setState(empty ? 'the log is empty' : 'job ' + (status || 'over'));
    refresh();
  }
}

let logView = null;

// ---- wiring --------------------------------------------------------------

document.addEventListener('click', (ev) => {
  const btn = ev.target.closest('button[data-action]');
  if (!btn) return;
  const action = btn.dataset.action;
  if (action === 'rebuild' || action === 'cancel') buildAction(btn, action);
  else if (action === 'end') {
    window.scrollTo(0, document.body.scrollHeight);
    if (logView) logView.stick = true;
  } else if (action === 'top') {
    window.scrollTo(0, 0);
    if (logView) logView.stick = false;
  } else if (action === 'earlier' && logView) {
    logView.loadEarlier();
  } else if (action === 'later' && logView) {
    logView.loadLater();
  }
});

window.addEventListener('hashchange', () => {
  const m = /^#L(\d+)$/.exec(location.hash);
  if (m && logView) logView.goTo(Number(m[1]));
});

async function main() {
  setInterval(ages, 15000);
  const live = document.querySelectorAll('[data-live]');
  if (live.length) watchChanges();
  const every = Number(document.querySelector('[data-refresh]')?.dataset.refresh);
  if (every > 0) setInterval(refresh, every * 1000);
  const logEl = document.getElementById('log');
  if (logEl) {
    ({ AnsiUp } = await import('/static/ansi_up.js?v=' +
                                encodeURIComponent(document.body.dataset.assets || '')));
    logView = new LogView(logEl);
    logView.open();
  }
}

main();
