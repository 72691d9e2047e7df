// Skein dashboard: plain JavaScript over this node's JSON API (/v1/...).
// Tables are updated in place every 2 s (rows keyed by name or id), so a
// number typed into a scale box or a focused button survives a refresh.
// Measured usage (/v1/top) comes with that refresh; recent events follow
// the journal with a long poll (/v1/events?after=&wait=) of their own.
// Every value from the API is inserted as text, never as HTML.
'use strict';

(function () {
  const REFRESH_MS = 2000;
  const LOG_TAIL = 100;
  const TOKEN_KEY = 'skein.apiToken';
  const EVENTS_MAX = 50;
  const EVENTS_WAIT_S = 25;
  const EVENTS_BACKOFF_MAX_MS = 15000;

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------
  // API token (localStorage) and calls
  // ---------------------------------------------------------------------

  function loadToken() {
    try {
      return localStorage.getItem(TOKEN_KEY) || '';
    } catch (_) {
      return '';
    }
  }

  function storeToken(value) {
    try {
      if (value) localStorage.setItem(TOKEN_KEY, value);
      else localStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Storage disabled: the token still lives for this page.
    }
  }

  let token = loadToken();

  /** An API failure: HTTP status (0 when no answer), message, details. */
  class ApiError extends Error {
    constructor(status, message, details) {
      super(message);
      this.status = status;
      this.details = details || [];
    }
  }

  /**
   * Calls the API. Resolves with the parsed JSON body (or text when
   * `asText`), rejects with an ApiError carrying the `{error, details}` body.
   * `signal` (an AbortSignal) cancels the call.
   */
  async function api(method, path, body, asText, signal) {
    const headers = { Accept: asText ? 'text/plain' : 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method, headers, cache: 'no-store' };
    if (signal) init.signal = signal;
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, 'cannot reach this node (' + e.message + ')');
    }
    const raw = await resp.text();
    if (!resp.ok) {
      let message = raw.trim() || resp.statusText || 'request failed';
      let details = [];
      try {
        const j = JSON.parse(raw);
        if (j && typeof j.error === 'string') {
          message = j.error;
          if (Array.isArray(j.details)) details = j.details;
        }
      } catch (_) {
        // Not JSON: keep the text.
      }
      if (resp.status === 401) {
        message = token
          ? 'token required: the saved API token was refused (' + message + ')'
          : 'token required: enter the API token above (' + message + ')';
      } else if (resp.status === 403) {
        message = 'token rejected: ' + message;
      }
      throw new ApiError(resp.status, message, details);
    }
    if (asText) return raw;
    if (!raw) return null;
    try {
      return JSON.parse(raw);
    } catch (e) {
      throw new ApiError(resp.status, method + ' ' + path + ': invalid JSON (' + e.message + ')');
    }
  }

  const enc = encodeURIComponent;

  // ---------------------------------------------------------------------
  // Banner (errors) and notice (successes)
  // ---------------------------------------------------------------------

  // Keyed errors: 'refresh', 'logs' and 'events' clear themselves when the
  // next call succeeds; 'action' stays until dismissed or the next action
  // succeeds.
  const errors = new Map();

  function showError(key, err) {
    const status = err && err.status !== undefined ? err.status : 0;
    const message = err && err.message ? err.message : String(err);
    const details = (err && err.details) || [];
    errors.set(key, { status, message, details });
    renderBanner();
  }

  function clearError(key) {
    if (errors.delete(key)) renderBanner();
  }

  function renderBanner() {
    const banner = $('banner');
    banner.replaceChildren();
    if (errors.size === 0) {
      banner.hidden = true;
      return;
    }
    const seen = new Set();
    for (const [key, e] of errors) {
      if (seen.has(e.message)) continue;
      seen.add(e.message);
      const item = el('div', 'banner-item');
      if (e.status === 401) item.classList.add('auth');
      const p = el('p');
      p.append(el('strong', null, 'Error: '), document.createTextNode(e.message));
      item.append(p);
      if (e.details.length) {
        const ul = el('ul');
        for (const d of e.details) {
          const text = d && typeof d === 'object'
            ? (d.field ? d.field + ': ' : '') + (d.message || JSON.stringify(d))
            : String(d);
          ul.append(el('li', null, text));
        }
        item.append(ul);
      }
      if (key === 'action') {
        const b = el('button', 'dismiss', 'Dismiss');
        b.type = 'button';
        b.addEventListener('click', () => clearError('action'));
        item.append(b);
      }
      banner.append(item);
    }
    banner.hidden = false;
  }

  let noticeTimer = null;
  function notice(text) {
    const n = $('notice');
    n.textContent = text;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.textContent = ''; }, 5000);
  }

  // ---------------------------------------------------------------------
  // DOM helpers
  // ---------------------------------------------------------------------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function button(cls, text, label) {
    const b = el('button', cls, text);
    b.type = 'button';
    if (label) b.setAttribute('aria-label', label);
    return b;
  }

  function setText(node, text) {
    const t = text === undefined || text === null ? '' : String(text);
    if (node.textContent !== t) node.textContent = t;
  }

  /** Rebuilds `node`'s children with `build` only when `sig` changed. */
  function setContent(node, sig, build) {
    if (node.dataset.sig === sig) return;
    node.dataset.sig = sig;
    node.replaceChildren(...build());
  }

  /**
   * Makes `tbody` show one row per item, in order, reusing rows by key:
   * `create(item)` builds a row once, `update(tr, item)` refreshes it.
   */
  function syncRows(tbody, items, key, create, update, emptyText) {
    const old = new Map();
    for (const tr of Array.from(tbody.rows)) old.set(tr.dataset.key, tr);
    const rows = [];
    if (items.length === 0) {
      let tr = old.get('');
      if (!tr) {
        tr = el('tr', 'empty');
        tr.dataset.key = '';
        const td = el('td', null, emptyText);
        td.colSpan = tbody.parentElement.tHead.rows[0].cells.length;
        tr.append(td);
      }
      rows.push(tr);
    }
    for (const item of items) {
      const k = key(item);
      let tr = old.get(k);
      if (!tr) {
        tr = create(item);
        tr.dataset.key = k;
      }
      update(tr, item);
      rows.push(tr);
    }
    const keep = new Set(rows);
    for (const tr of old.values()) if (!keep.has(tr)) tr.remove();
    rows.forEach((tr, i) => {
      if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] || null);
    });
  }

  function cells(tr, n) {
    for (let i = 0; i < n; i++) tr.append(el('td'));
    return tr.cells;
  }

  function fmtCpu(m) {
    if (m < 1000) return m + 'm';
    return +(m / 1000).toFixed(2) + (m === 1000 ? ' core' : ' cores');
  }

  function fmtBytes(b) {
    const units = ['B', 'Ki', 'Mi', 'Gi', 'Ti'];
    let v = b;
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (i === 0 ? v : +v.toFixed(1)) + (i === 0 ? ' B' : units[i]);
  }

  /** A usage bar (ARIA meter) with its text, e.g. "250m / 4 cores (6%)". */
  function usageBar(used, cap, fmt) {
    const pct = cap > 0 ? Math.min(100, (used * 100) / cap) : 0;
    const text = fmt(used) + ' / ' + fmt(cap) + ' (' + Math.round(pct) + '%)';
    const wrap = el('div', 'usage');
    const bar = el('div', 'bar');
    bar.setAttribute('role', 'meter');
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', String(cap));
    bar.setAttribute('aria-valuenow', String(Math.min(used, cap)));
    bar.setAttribute('aria-valuetext', text);
    const fill = el('div', 'fill' + (pct >= 90 ? ' hot' : pct >= 70 ? ' warm' : ''));
    fill.style.width = pct.toFixed(1) + '%';
    bar.append(fill);
    wrap.append(bar, el('span', 'usage-text', text));
    return [wrap];
  }

  function fmtSeconds(s) {
    if (s < 1) return Math.round(s * 1000) + ' ms';
    if (s < 120) return +s.toFixed(1) + ' s';
    if (s < 7200) return +(s / 60).toFixed(1) + ' min';
    return +(s / 3600).toFixed(1) + ' h';
  }

  /** "12.5Mi / 64Mi (20%)"; just the value when there is no limit. */
  function fmtOfLimit(used, limit, fmt) {
    if (!(limit > 0)) return fmt(used);
    return fmt(used) + ' / ' + fmt(limit) + ' (' + Math.round((used * 100) / limit) + '%)';
  }

  function badge(text, kind) {
    return el('span', 'badge badge-' + kind, text);
  }

  // ---------------------------------------------------------------------
  // Actions
  // ---------------------------------------------------------------------

  /** Runs an API call for a button: busy while it runs, banner on error. */
  async function act(btn, what, call) {
    if (btn) {
      btn.disabled = true;
      btn.setAttribute('aria-busy', 'true');
    }
    try {
      await call();
      clearError('action');
      notice(what);
    } catch (e) {
      showError('action', e);
    } finally {
      if (btn) {
        btn.disabled = false;
        btn.removeAttribute('aria-busy');
      }
      refresh();
    }
  }

  function restartAlloc(btn, id) {
    act(btn, 'restarted allocation ' + id, () =>
      api('POST', '/v1/allocs/' + enc(id) + '/restart'));
  }

  function restartJob(btn, name) {
    act(btn, 'restarted job ' + name, () =>
      api('POST', '/v1/jobs/' + enc(name) + '/restart'));
  }

  function stopJob(btn, name) {
    if (!window.confirm('Stop job ' + name + '? Its containers will be removed.')) return;
    act(btn, 'stopped job ' + name, () => api('DELETE', '/v1/jobs/' + enc(name)));
  }

  function scaleJob(btn, input, name) {
    const n = Number(input.value);
    if (input.value.trim() === '' || !Number.isInteger(n) || n < 0) {
      showError('action', new ApiError(0, 'replicas must be a whole number ≥ 0'));
      input.focus();
      return;
    }
    act(btn, 'scaled job ' + name + ' to ' + n, async () => {
      await api('POST', '/v1/jobs/' + enc(name) + '/scale', { replicas: n });
      delete input.dataset.dirty;
    });
  }

  // ---------------------------------------------------------------------
  // Tables
  // ---------------------------------------------------------------------

  let nodeNames = new Map();

  // Measured usage from the last /v1/top: node id → node line, allocation
  // id → container line. Kept when a refresh of /v1/top fails.
  let nodeUsage = new Map();
  let allocUsage = new Map();

  function setUsage(top) {
    nodeUsage = new Map((top.nodes || []).map((n) => [n.id, n]));
    allocUsage = new Map((top.containers || []).map((c) => [c.alloc, c]));
  }

  const NOT_MEASURED = '—';

  function notMeasured() {
    const s = el('span', 'muted', NOT_MEASURED);
    s.title = 'not measured yet';
    return [s];
  }

  function renderNodes(nodes) {
    nodes.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    nodeNames = new Map(nodes.map((n) => [n.id, n.name]));
    setText($('nodes-count'), '(' + nodes.length + ')');
    syncRows($('nodes').tBodies[0], nodes, (n) => n.id,
      () => {
        const tr = el('tr');
        const c = cells(tr, 9);
        c[5].className = 'cpu-used';
        c[6].className = 'mem-used';
        return tr;
      },
      (tr, n) => {
        const c = tr.cells;
        setText(c[0], n.name);
        c[0].title = 'id ' + n.id + ' · ' + n.address + ' · skein ' + n.version;
        setContent(c[1], n.health, () => [badge(n.health, n.health)]);
        setContent(c[2], n.role, () => [badge(n.role, 'role-' + n.role)]);
        const cap = n.capacity || {};
        const used = n.allocated || {};
        setContent(c[3], used.cpu_millis + '/' + cap.cpu_millis,
          () => usageBar(used.cpu_millis || 0, cap.cpu_millis || 0, fmtCpu));
        setContent(c[4], used.memory_bytes + '/' + cap.memory_bytes,
          () => usageBar(used.memory_bytes || 0, cap.memory_bytes || 0, fmtBytes));
        const u = nodeUsage.get(n.id);
        if (u) {
          const cpu = u.used_cpu_millis || 0;
          const mem = u.used_memory_bytes || 0;
          setContent(c[5], 'u' + cpu + '/' + cap.cpu_millis,
            () => usageBar(cpu, cap.cpu_millis || 0, fmtCpu));
          setContent(c[6], 'u' + mem + '/' + cap.memory_bytes,
            () => usageBar(mem, cap.memory_bytes || 0, fmtBytes));
          const title = u.containers + ' container' + (u.containers === 1 ? '' : 's') + ' measured';
          c[5].title = title;
          c[6].title = title;
        } else {
          setContent(c[5], '-', notMeasured);
          setContent(c[6], '-', notMeasured);
          c[5].title = '';
          c[6].title = '';
        }
        setText(c[7], n.allocations);
        const labels = Object.entries(n.labels || {});
        setContent(c[8], JSON.stringify(labels), () =>
          labels.length
            ? labels.map(([k, v]) => el('span', 'chip', k + '=' + v))
            : [el('span', 'muted', '—')]);
      },
      'No nodes known yet.');
  }

  function renderJobs(jobs) {
    jobs.sort((a, b) => a.spec.name.localeCompare(b.spec.name));
    setText($('jobs-count'), '(' + jobs.length + ')');
    syncRows($('jobs').tBodies[0], jobs, (j) => j.spec.name,
      (j) => {
        const name = j.spec.name;
        const tr = el('tr');
        const c = cells(tr, 6);
        const actions = el('div', 'actions');
        const restart = button('restart-job', 'Restart', 'Restart job ' + name);
        restart.dataset.job = name;
        restart.dataset.testid = 'restart-job-' + name;
        restart.addEventListener('click', () => restartJob(restart, name));
        const stop = button('stop danger', 'Stop', 'Stop job ' + name);
        stop.dataset.job = name;
        stop.dataset.testid = 'stop-job-' + name;
        stop.addEventListener('click', () => stopJob(stop, name));
        const form = el('form', 'scale-form');
        const input = el('input', 'replicas');
        input.type = 'number';
        input.min = '0';
        input.step = '1';
        input.required = true;
        input.dataset.job = name;
        input.setAttribute('aria-label', 'Replicas for job ' + name);
        input.addEventListener('input', () => { input.dataset.dirty = '1'; });
        const scale = el('button', 'scale', 'Scale');
        scale.type = 'submit';
        scale.dataset.job = name;
        scale.dataset.testid = 'scale-job-' + name;
        scale.setAttribute('aria-label', 'Scale job ' + name);
        form.append(input, scale);
        form.addEventListener('submit', (ev) => {
          ev.preventDefault();
          scaleJob(scale, input, name);
        });
        actions.append(restart, stop, form);
        c[5].append(actions);
        return tr;
      },
      (tr, j) => {
        const c = tr.cells;
        setContent(c[0], j.spec.name + (j.stopped ? '/s' : ''), () => {
          const out = [el('span', 'name', j.spec.name)];
          if (j.stopped) out.push(document.createTextNode(' '), badge('stopped', 'stopped'));
          return out;
        });
        setText(c[1], j.spec.image);
        const ok = !j.stopped && j.running === j.desired;
        setContent(c[2], j.running + '/' + j.desired + '/' + ok, () =>
          [el('span', ok ? 'ok' : 'warn', j.running + ' / ' + j.desired)]);
        setText(c[3], j.version);
        const r = j.rollout;
        c[4].dataset.rollout = r ? r.state : '';
        c[4].title = (r && r.message) || '';
        setContent(c[4], r ? JSON.stringify(r) : '-', () => rolloutCell(r));
        tr.classList.toggle('stopped', !!j.stopped);
        const input = c[5].querySelector('input.replicas');
        if (document.activeElement !== input && !input.dataset.dirty) {
          const v = String(j.desired);
          if (input.value !== v) input.value = v;
        }
        const stop = c[5].querySelector('button.stop');
        stop.disabled = !!j.stopped || stop.getAttribute('aria-busy') === 'true';
      },
      'No jobs. Apply one with `skein apply -f job.yaml`.');
  }

  /** An image fetch's progress: bytes, layers and where from. */
  function pullText(p) {
    const mb = (n) => (n / 1e6).toFixed(1);
    let t = p.bytes_total > 0 ? mb(p.bytes_done) + '/' + mb(p.bytes_total) + ' MB'
      : mb(p.bytes_done) + ' MB';
    if (p.layers_total > 0) t += ', ' + p.layers_done + '/' + p.layers_total + ' layers';
    t += ' from ' + p.source;
    if (p.attempt > 1) t += ' (attempt ' + p.attempt + ')';
    return t;
  }

  /** A job's latest rollout: state, versions and progress. */
  function rolloutCell(r) {
    if (!r) return [document.createTextNode('—')];
    const kind = { progressing: 'state-pending', complete: 'state-complete',
      'rolled-back': 'state-failed', failed: 'state-failed' }[r.state] || 'state-pending';
    const versions = r.from_version == null ? 'v' + r.to_version
      : 'v' + r.from_version + ' → v' + r.to_version;
    const out = [badge(r.state, kind), document.createTextNode(' ' + versions)];
    if (r.state === 'progressing') {
      out.push(document.createTextNode(': ' + r.updated + '/' + r.desired + ' updated, '
        + r.available + ' ready, ' + r.outdated + ' old'));
    } else if (r.message) {
      out.push(document.createTextNode(': ' + r.message));
    }
    return out;
  }

  let selectedAlloc = null;

  function fmtPorts(ports) {
    return (ports || []).map((p) =>
      p.host_port + '→' + p.container_port + '/' + p.protocol + (p.name ? ' (' + p.name + ')' : ''));
  }

  function renderAllocs(allocs) {
    setText($('allocs-count'), '(' + allocs.length + ')');
    syncRows($('allocs').tBodies[0], allocs, (a) => a.id,
      (a) => {
        const id = a.id;
        const tr = el('tr', 'alloc');
        tr.dataset.alloc = id;
        const c = cells(tr, 11);
        c[7].className = 'cpu-used num';
        c[8].className = 'mem-used num';
        const open = button('logs-link', id, 'Show logs of allocation ' + id);
        open.dataset.alloc = id;
        open.dataset.testid = 'logs-' + id;
        open.addEventListener('click', () => openLogs(id));
        c[0].append(open);
        const restart = button('restart', 'Restart', 'Restart allocation ' + id);
        restart.dataset.alloc = id;
        restart.dataset.testid = 'restart-alloc-' + id;
        restart.addEventListener('click', (ev) => {
          ev.stopPropagation();
          restartAlloc(restart, id);
        });
        c[10].append(restart);
        tr.addEventListener('click', (ev) => {
          if (ev.target.closest('button, input, a')) return;
          openLogs(id);
        });
        return tr;
      },
      (tr, a) => {
        const c = tr.cells;
        const s = a.status || {};
        setText(c[1], a.job);
        setText(c[2], a.node_name || a.node_id);
        c[2].title = 'node ' + a.node_id;
        const pull = s.state === 'pulling' && s.pull ? pullText(s.pull) : '';
        setContent(c[3], s.state + '|' + (s.message || '') + '|' + pull, () => {
          const out = [badge(s.state, 'state-' + s.state)];
          if (pull) out.push(el('div', 'message', pull));
          else if (s.message) out.push(el('div', 'message', s.message));
          return out;
        });
        setText(c[4], s.exit_code === null || s.exit_code === undefined ? '—' : s.exit_code);
        setText(c[5], s.restarts);
        setContent(c[6], String(!!s.ready), () =>
          [el('span', s.ready ? 'ok' : 'muted', s.ready ? 'yes' : 'no')]);
        const u = allocUsage.get(a.id);
        if (u) {
          const cpu = fmtCpu(u.cpu_millis || 0);
          const mem = fmtOfLimit(u.memory_bytes || 0, u.memory_limit_bytes || 0, fmtBytes);
          setContent(c[7], 'u' + cpu, () => [document.createTextNode(cpu)]);
          setContent(c[8], 'u' + mem, () => [document.createTextNode(mem)]);
          const at = 'measured ' + new Date(u.sampled_at_ms).toLocaleTimeString();
          c[7].title = at + ' · ' + fmtSeconds((u.cpu_total_ns || 0) / 1e9) + ' of CPU time in total';
          c[8].title = at;
        } else {
          setContent(c[7], '-', notMeasured);
          setContent(c[8], '-', notMeasured);
          c[7].title = '';
          c[8].title = '';
        }
        const ports = fmtPorts(a.ports);
        setContent(c[9], ports.join(','), () =>
          ports.length ? ports.map((p) => el('span', 'chip', p)) : [el('span', 'muted', '—')]);
        const sel = a.id === selectedAlloc;
        tr.classList.toggle('selected', sel);
        c[0].firstChild.setAttribute('aria-pressed', String(sel));
        const cid = s.container_id ? s.container_id.slice(0, 12) : '';
        tr.dataset.container = cid;
        tr.title = cid ? 'container ' + cid : '';
      },
      'No allocations.');
    if (selectedAlloc && !allocs.some((a) => a.id === selectedAlloc)) {
      setText($('logs-state'), 'allocation ' + selectedAlloc + ' no longer exists');
      clearError('logs');
      logsGone = true;
    }
  }

  function renderServices(services) {
    services.sort((a, b) => a.name.localeCompare(b.name));
    setText($('services-count'), '(' + services.length + ')');
    syncRows($('services').tBodies[0], services, (s) => s.name,
      () => {
        const tr = el('tr');
        cells(tr, 4);
        return tr;
      },
      (tr, s) => {
        const c = tr.cells;
        setText(c[0], s.name + '.service.skein');
        setText(c[1], s.job);
        setText(c[2], s.publish === null || s.publish === undefined ? '—' : s.publish);
        const eps = (s.endpoints || []).map((e) => e.addr + ' (' + e.alloc + ' on ' + e.node + ')');
        setContent(c[3], eps.join(','), () =>
          eps.length ? eps.map((e) => el('div', 'endpoint', e)) : [el('span', 'warn', 'no ready endpoint')]);
      },
      'No services.');
  }

  function renderStatus(st) {
    const parts = [];
    if (st) {
      parts.push('node ' + st.node_name);
      const leader = st.leader_id ? nodeNames.get(st.leader_id) || st.leader_id : null;
      parts.push(leader ? 'leader ' + leader : 'no leader');
      parts.push('term ' + st.term);
      parts.push('skein ' + st.version);
    }
    parts.push('updated ' + new Date().toLocaleTimeString());
    setText($('status-line'), parts.join(' · '));
  }

  // ---------------------------------------------------------------------
  // Logs panel
  // ---------------------------------------------------------------------

  let logsGone = false;

  function openLogs(id) {
    selectedAlloc = id;
    logsGone = false;
    const panel = $('logs');
    panel.hidden = false;
    setText($('logs-title'), 'Logs of ' + id);
    setText($('logs-state'), 'loading…');
    setText($('logs-body'), '');
    for (const tr of $('allocs').tBodies[0].rows) {
      const sel = tr.dataset.key === id;
      tr.classList.toggle('selected', sel);
      const b = tr.querySelector('button.logs-link');
      if (b) b.setAttribute('aria-pressed', String(sel));
    }
    loadLogs();
    panel.scrollIntoView({ block: 'nearest' });
  }

  function closeLogs() {
    selectedAlloc = null;
    $('logs').hidden = true;
    clearError('logs');
    for (const tr of $('allocs').tBodies[0].rows) {
      tr.classList.remove('selected');
      const b = tr.querySelector('button.logs-link');
      if (b) b.setAttribute('aria-pressed', 'false');
    }
  }

  async function loadLogs() {
    const id = selectedAlloc;
    if (!id || logsGone) return;
    try {
      const text = await api('GET', '/v1/allocs/' + enc(id) + '/logs?tail=' + LOG_TAIL, undefined, true);
      if (selectedAlloc !== id) return;
      const pre = $('logs-body');
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      setText(pre, text || '');
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      setText($('logs-state'), (text ? 'last ' + LOG_TAIL + ' lines' : 'no output yet') +
        ' · ' + new Date().toLocaleTimeString());
      clearError('logs');
    } catch (e) {
      if (selectedAlloc !== id) return;
      setText($('logs-state'), 'unavailable');
      showError('logs', new ApiError(e.status, 'logs of ' + id + ': ' + e.message, e.details));
    }
  }

  // ---------------------------------------------------------------------
  // Recent events (long poll)
  // ---------------------------------------------------------------------

  // The newest EVENTS_MAX events, newest first. `evCursor` is the `next` of
  // the last answer (null: load the tail afresh). Each run of the follow
  // loop has a generation: restartEvents() ends the current run (aborting
  // its call or its back-off) and starts a new one, e.g. for a new token.
  let evList = [];
  let evCursor = null;
  let evGen = 0;
  let evAbort = null;
  let evWake = null;
  let evNetDown = false;

  const EVENT_BAD = new Set(['start_failed', 'node_down', 'rolled_back', 'unplaceable']);
  const EVENT_WARN = new Set(['node_suspect']);
  const EVENT_OK = new Set(['started', 'node_up', 'rollout_complete']);

  /** How an event is marked: 'bad', 'warn', 'ok' or '' (plain). */
  function eventSeverity(e) {
    if (EVENT_BAD.has(e.kind)) return 'bad';
    if (e.kind === 'exited') return e.exit_code ? 'warn' : '';
    if (EVENT_WARN.has(e.kind)) return 'warn';
    if (EVENT_OK.has(e.kind)) return 'ok';
    return '';
  }

  function fmtEventTime(d) {
    return d.toDateString() === new Date().toDateString()
      ? d.toLocaleTimeString()
      : d.toLocaleString();
  }

  function renderEvents() {
    setText($('events-count'), '(' + evList.length + ')');
    syncRows($('events').tBodies[0], evList, (e) => e.origin + '/' + e.seq,
      (e) => {
        const sev = eventSeverity(e);
        const tr = el('tr', 'event' + (sev ? ' ev-' + sev : ''));
        tr.dataset.kind = e.kind;
        if (e.job) tr.dataset.job = e.job;
        if (e.alloc) tr.dataset.alloc = e.alloc;
        const c = cells(tr, 7);
        const d = new Date(e.time_ms);
        if (Number.isNaN(d.getTime())) {
          c[0].append(el('span', 'muted', '?'));
        } else {
          const t = el('time', null, fmtEventTime(d));
          t.dateTime = d.toISOString();
          t.title = d.toISOString() + ' (clock of ' + (e.origin || 'the reporting node') + ')';
          c[0].append(t);
        }
        c[0].className = 'num';
        if (sev === 'bad' || sev === 'warn') {
          c[1].append(el('span', 'sr-only', sev === 'bad' ? 'Problem: ' : 'Warning: '));
        }
        c[1].append(badge(e.kind, 'ev-' + (sev || 'info')));
        setText(c[2], e.node || '');
        setText(c[3], e.job || '');
        c[4].className = 'mono';
        setText(c[4], e.alloc || '');
        c[5].className = 'num';
        if (e.exit_code !== null && e.exit_code !== undefined) {
          c[5].append(el('span', e.exit_code === 0 ? null : 'warn', e.exit_code));
        }
        c[6].className = 'ev-message';
        setText(c[6], e.message);
        return tr;
      },
      () => {},
      'No events yet.');
  }

  /** Waits `ms`, or less when restartEvents() or a refresh wakes it. */
  function eventsPause(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (evWake === done) evWake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      evWake = done;
    });
  }

  /** One run of the follow loop: the tail, then long polls after it. */
  async function followEvents(gen, signal) {
    let backoff = 0;
    while (gen === evGen) {
      const first = evCursor === null;
      const path = first
        ? '/v1/events?tail=' + EVENTS_MAX
        : '/v1/events?after=' + evCursor + '&wait=' + EVENTS_WAIT_S + '&tail=' + EVENTS_MAX;
      const started = Date.now();
      try {
        const r = await api('GET', path, undefined, false, signal);
        if (gen !== evGen) return;
        if (!r || !Array.isArray(r.events) || typeof r.next !== 'number') {
          throw new ApiError(0, 'unexpected answer from /v1/events');
        }
        const fresh = r.events.slice().reverse();
        evList = first ? fresh : fresh.concat(evList).slice(0, EVENTS_MAX);
        evCursor = r.next;
        evNetDown = false;
        backoff = 0;
        renderEvents();
        clearError('events');
        setText($('events-state'), 'live');
        // A long poll that answers at once with nothing would spin.
        if (!first && fresh.length === 0 && Date.now() - started < 1000) {
          await eventsPause(1000);
        }
      } catch (e) {
        if (gen !== evGen) return;
        // The node may have restarted (its journal starts again at 1):
        // load the tail afresh once it answers.
        evCursor = null;
        evNetDown = !e.status;
        backoff = Math.min(backoff ? backoff * 2 : 1000, EVENTS_BACKOFF_MAX_MS);
        // Same text as the refresh error when the cause is the same (one
        // banner line): no answer, or the token.
        const same = !e.status || e.status === 401 || e.status === 403;
        showError('events', same ? e : new ApiError(e.status, 'live events: ' + e.message, e.details));
        setText($('events-state'), 'interrupted, retrying in ' + Math.round(backoff / 1000) + ' s');
        await eventsPause(backoff);
      }
    }
  }

  /** Ends the current follow loop, if any, and starts a new one. */
  function restartEvents() {
    evGen++;
    if (evAbort) evAbort.abort();
    if (evWake) evWake();
    evAbort = new AbortController();
    evCursor = null;
    setText($('events-state'), 'loading…');
    followEvents(evGen, evAbort.signal);
  }

  // ---------------------------------------------------------------------
  // Refresh loop
  // ---------------------------------------------------------------------

  let inflight = null;
  let again = false;

  /** Reloads everything; a call during a refresh queues one more. */
  function refresh() {
    if (inflight) {
      again = true;
      return inflight;
    }
    inflight = (async () => {
      try {
        await reload();
      } catch (e) {
        showError('refresh', new ApiError(0, 'dashboard error: ' + e.message));
      }
    })().finally(() => {
      inflight = null;
      if (again) {
        again = false;
        refresh();
      }
    });
    return inflight;
  }

  /** Fetches every table, renders what answered, reports what failed. */
  async function reload() {
    const calls = ['/v1/status', '/v1/nodes', '/v1/jobs', '/v1/allocs', '/v1/services', '/v1/top'];
    const res = await Promise.allSettled(calls.map((p) => api('GET', p)));
    const failed = res.filter((r) => r.status === 'rejected').map((r) => r.reason);
    const val = (i) => (res[i].status === 'fulfilled' && Array.isArray(res[i].value) ? res[i].value : null);
    const top = res[5].status === 'fulfilled' ? res[5].value : null;
    if (top && Array.isArray(top.nodes) && Array.isArray(top.containers)) setUsage(top);
    if (val(1)) renderNodes(val(1));
    if (val(2)) renderJobs(val(2));
    if (val(3)) renderAllocs(val(3));
    if (val(4)) renderServices(val(4));
    if (res[0].status === 'fulfilled') renderStatus(res[0].value);
    if (failed.length) {
      showError('refresh', failed[0]);
      if (failed.length === calls.length) {
        setText($('status-line'), 'last update failed at ' + new Date().toLocaleTimeString());
      }
    } else {
      clearError('refresh');
    }
    // The node answers again: the events loop need not wait out its back-off.
    if (failed.length < calls.length && evNetDown && evWake) evWake();
    await loadLogs();
  }

  async function loop() {
    try {
      await refresh();
    } finally {
      setTimeout(loop, REFRESH_MS);
    }
  }

  // ---------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------

  function showTokenState() {
    setText($('token-state'), token ? 'token saved' : 'no token');
    $('token-input').placeholder = token ? '•••••• (saved)' : 'not set';
  }

  function init() {
    $('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = $('token-input');
      token = input.value.trim();
      input.value = '';
      storeToken(token);
      showTokenState();
      notice(token ? 'API token saved in this browser' : 'API token cleared');
      refresh();
      restartEvents();
    });
    $('token-clear').addEventListener('click', () => {
      token = '';
      $('token-input').value = '';
      storeToken('');
      showTokenState();
      notice('API token cleared');
      refresh();
      restartEvents();
    });
    $('logs-close').addEventListener('click', closeLogs);
    showTokenState();
    loop();
    restartEvents();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
