// pgqrs dashboard: live updates, keyboard shortcuts, table filters.
// Plain script, no library. Everything it inserts is either text
// (textContent) or markup the server rendered and escaped.
(() => {
  'use strict';
  const meta = (n) => (document.querySelector(`meta[name="${n}"]`) || {}).content || '';
  const refresh = Number(meta('pgqrs-refresh'));
  const liveBox = document.getElementById('live');
  const liveStatus = document.getElementById('live-status');
  let busy = false;

  // Keyboard: 1-4 sections, / first filter, l live updates, Esc leaves a field.
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t.closest && t.closest('input, textarea, select, [contenteditable]')) {
      if (e.key === 'Escape') t.blur();
      return;
    }
    const nav = document.querySelectorAll('header nav a');
    if (e.key >= '1' && e.key <= String(nav.length)) {
      e.preventDefault();
      location.href = nav[Number(e.key) - 1].href;
    } else if (e.key === '/') {
      const f = document.querySelector('main input[type=search], main .filter select');
      if (f) { e.preventDefault(); f.focus(); }
    } else if (e.key === 'l' && liveBox) {
      liveBox.checked = !liveBox.checked;
      liveStatus.textContent = liveBox.checked ? '' : 'paused';
    }
  });

  // Filters: hide the rows of a table whose text lacks the filter's words.
  function applyFilters() {
    document.querySelectorAll('input[data-filter]').forEach((inp) => {
      const v = inp.value.trim().toLowerCase();
      document.querySelectorAll(inp.dataset.filter).forEach((tr) => {
        tr.hidden = v !== '' && !tr.textContent.toLowerCase().includes(v);
      });
    });
  }
  document.querySelectorAll('input[data-filter]').forEach((inp) => inp.addEventListener('input', applyFilters));

  // Charts, drawn as the server draws them (bars and line in render.go).
  const SVG = 'http://www.w3.org/2000/svg';
  const W = 150, H = 32;
  function svgEl(name, attrs) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    return el;
  }
  function chart(cls, label) {
    return svgEl('svg', { class: cls, viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': label });
  }
  function drawBars(holder, pts) {
    const top = Math.max(1, ...pts.map((p) => p.archived));
    const last = pts.length ? pts[pts.length - 1].archived : 0;
    const svg = chart('chart', `messages processed per minute, last ${pts.length} minutes; this minute ${last}`);
    const w = W / Math.max(1, pts.length);
    pts.forEach((p, i) => {
      const h = Math.max(0.5, H * p.archived / top);
      const r = svgEl('rect', { x: (i * w + 0.5).toFixed(2), y: (H - h).toFixed(2), width: Math.max(0.5, w - 1).toFixed(2), height: h.toFixed(2) });
      const title = svgEl('title', {});
      const m = new Date(p.minute);
      title.textContent = `${String(m.getUTCHours()).padStart(2, '0')}:${String(m.getUTCMinutes()).padStart(2, '0')}: ${p.archived}`;
      r.appendChild(title);
      svg.appendChild(r);
    });
    holder.replaceChildren(svg);
  }
  function drawLine(holder, pts) {
    const top = Math.max(0.001, ...pts.map((p) => p.avg_latency_seconds));
    const svg = chart('chart line', `average wait from enqueue to start per minute; longest ${fmtDur(top)}`);
    const step = W / Math.max(1, pts.length - 1);
    const points = pts.map((p, i) => `${(i * step).toFixed(2)},${(H - 1 - (H - 2) * p.avg_latency_seconds / top).toFixed(2)}`).join(' ');
    svg.appendChild(svgEl('polyline', { points }));
    holder.replaceChildren(svg);
  }
  function fmtDur(s) {
    if (s < 0.001) return '0ms';
    if (s < 1) return `${Math.floor(s * 1000)}ms`;
    if (s < 60) return `${s.toFixed(1)}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s) % 60).padStart(2, '0')}s`;
    if (s < 172800) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
    return `${Math.floor(s / 86400)}d`;
  }
  function setText(el, text) {
    if (el.textContent === text) return;
    el.textContent = text;
    el.classList.remove('changed');
    void el.offsetWidth; // restart the highlight
    el.classList.add('changed');
    el.addEventListener('animationend', () => el.classList.remove('changed'), { once: true });
  }

  // An element with data-api shows queue counts: the overview's table (one
  // row per queue) or a queue's cards. Returns true when the page's
  // server-rendered parts are out of date (a queue appeared, went or was
  // paused), so that they are fetched again.
  async function updateFromAPI(el) {
    const res = await fetch(el.dataset.api, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const d = await res.json();
    const rows = d.queues || [{ metrics: d.metrics, throughput: d.throughput }];
    let stale = false;
    for (const row of rows) {
      const m = row.metrics;
      const box = d.queues ? el.querySelector(`tr[data-queue="${CSS.escape(m.queue)}"]`) : el;
      if (!box) { stale = true; continue; }
      box.querySelectorAll('[data-k]').forEach((cell) => {
        const k = cell.dataset.k;
        if (k === 'state') {
          if ((cell.textContent.trim() === 'paused') !== m.paused) stale = true;
        } else if (k === 'oldest') {
          setText(cell, m.oldest_pending_age_seconds ? fmtDur(m.oldest_pending_age_seconds) : '—');
        } else if (k in m) {
          setText(cell, String(m[k]));
        }
      });
      box.querySelectorAll('[data-chart]').forEach((c) => (c.dataset.chart === 'bars' ? drawBars : drawLine)(c, row.throughput));
    }
    if (d.queues && el.querySelectorAll('tr[data-queue]').length !== rows.length) stale = true;
    if (d.system) document.querySelectorAll('[data-sys]').forEach((n) => setText(n, String(d.system[n.dataset.sys])));
    if (d.workers) document.querySelectorAll('[data-wk]').forEach((n) => setText(n, String(d.workers[n.dataset.wk])));
    return stale;
  }

  // Regions marked data-live are fetched again (the same page, rendered by
  // the server) and replaced when they changed, unless the user is in one
  // (focus or an open <details>). With all, the data-api parts too.
  async function swapRegions(all) {
    const sel = all ? '[data-live], [data-api]' : '[data-live]';
    const regions = document.querySelectorAll(sel);
    if (!regions.length) return;
    const res = await fetch(location.href, { cache: 'no-store', headers: { 'X-Pgqrs-Live': '1' } });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
    regions.forEach((el) => {
      const key = el.dataset.live ? `[data-live="${CSS.escape(el.dataset.live)}"]` : (el.id ? `#${CSS.escape(el.id)}` : null);
      const fresh = key && doc.querySelector(key);
      if (!fresh || el.contains(document.activeElement) || el.querySelector('details[open]')) return;
      if (fresh.innerHTML !== el.innerHTML) el.replaceWith(document.importNode(fresh, true));
    });
    applyFilters();
  }

  async function tick() {
    if (busy || document.hidden || (liveBox && !liveBox.checked)) return;
    busy = true;
    try {
      let stale = false;
      for (const el of document.querySelectorAll('[data-api]')) stale = (await updateFromAPI(el)) || stale;
      await swapRegions(stale);
      if (liveStatus) {
        liveStatus.textContent = new Date().toLocaleTimeString();
        liveStatus.classList.remove('err');
      }
    } catch (e) {
      if (liveStatus) {
        liveStatus.textContent = `update failed (${e.message})`;
        liveStatus.classList.add('err');
      }
    } finally {
      busy = false;
    }
  }
  if (refresh > 0 && document.body.dataset.page !== 'error') setInterval(tick, refresh);
})();
