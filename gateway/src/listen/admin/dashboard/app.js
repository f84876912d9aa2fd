// The ozg-gateway dashboard: reads the operator API of the listener that
// served it (with the operator's certificate, so it shows that operator's
// tenants only) and acts through it. No framework, no outside requests.
'use strict';

const T = {
  de: {
    skip: 'Zum Inhalt', auto: 'Automatisch aktualisieren', refresh: 'Aktualisieren',
    targets: 'Ziele', target: 'Ziel', tenant: 'Mandant', pending: 'Wartend',
    in_flight: 'In Zustellung', retry_wait: 'Wiederholung', parked_n: 'Geparkt',
    delivered: 'Zugestellt', breaker: 'Sicherung', oldest: 'Älteste wartende',
    last_error: 'Letzter Fehler', actions: 'Aktionen', parked: 'Geparkte Zustellungen',
    message_id: 'Nachricht', submission: 'Antrag', leistung: 'Leistung', attempts: 'Versuche',
    since: 'Seit', search: 'Antrag suchen', submission_id: 'Antrags-ID', show: 'Anzeigen',
    per_hour: 'Angenommen und zugestellt je Stunde (48 Stunden)', cases: 'Fallzahlen',
    by: 'Nach', destination: 'Empfänger', period: 'Zeitraum', days: 'Tage (31)',
    weeks: 'Wochen (13)', months: 'Monate (12)', csv: 'CSV herunterladen',
    retry: 'Erneut zustellen', discard: 'Verwerfen', retry_all: 'Alle geparkten erneut',
    discard_all: 'Alle geparkten verwerfen', pause: 'Anhalten', resume: 'Fortsetzen',
    accepted: 'Angenommen', discarded: 'Verworfen', replied: 'Antworten', median: 'Median (s)', p95: '95 % (s)',
    state: 'Zustand', received: 'Eingegangen', laufzettel: 'Laufzettel', event: 'Ereignis',
    time: 'Zeit', none_parked: 'Keine geparkten Zustellungen.', no_targets: 'Keine Ziele.',
    no_data: 'Keine Daten im Zeitraum.', not_found: 'Kein Antrag mit dieser ID (oder nicht für Sie sichtbar).',
    confirm_retry_all: 'Alle geparkten Zustellungen von {0} erneut zustellen?',
    confirm_discard_all: 'Alle geparkten Zustellungen von {0} verwerfen? Die versiegelten Umschläge werden gelöscht.',
    confirm_discard: 'Zustellung {0} verwerfen? Der versiegelte Umschlag wird gelöscht.',
    confirm_pause: 'Ziel {0} anhalten? Es wird nichts zugestellt, bis es fortgesetzt wird.',
    done: '{0}: {1}', touched: '{0}: {1} Zustellungen', updated: 'Stand {0}',
    ready: 'bereit', not_ready: 'NICHT BEREIT', operator: 'Bediener', paused: 'angehalten',
    closed: 'geschlossen', open: 'offen', 'half-open': 'halb offen', total: 'Summe',
    cannot_reach: 'Gateway nicht erreichbar: {0}',
    summary: '{0} · {1} wartend · {2} geparkt · {3} zugestellt · Bediener {4}',
  },
  en: {
    skip: 'Skip to content', auto: 'Refresh automatically', refresh: 'Refresh',
    targets: 'Targets', target: 'Target', tenant: 'Tenant', pending: 'Pending',
    in_flight: 'In flight', retry_wait: 'Retry wait', parked_n: 'Parked',
    delivered: 'Delivered', breaker: 'Breaker', oldest: 'Oldest waiting',
    last_error: 'Last error', actions: 'Actions', parked: 'Parked deliveries',
    message_id: 'Message', submission: 'Submission', leistung: 'Leistung', attempts: 'Attempts',
    since: 'Since', search: 'Find a submission', submission_id: 'Submission id', show: 'Show',
    per_hour: 'Accepted and delivered per hour (48 hours)', cases: 'Case statistics',
    by: 'By', destination: 'Destination', period: 'Period', days: 'Days (31)',
    weeks: 'Weeks (13)', months: 'Months (12)', csv: 'Download CSV',
    retry: 'Retry', discard: 'Discard', retry_all: 'Retry all parked',
    discard_all: 'Discard all parked', pause: 'Pause', resume: 'Resume',
    accepted: 'Accepted', discarded: 'Discarded', replied: 'Replies', median: 'Median (s)', p95: '95th pct (s)',
    state: 'State', received: 'Received', laufzettel: 'Laufzettel', event: 'Event',
    time: 'Time', none_parked: 'No parked deliveries.', no_targets: 'No targets.',
    no_data: 'No data in this period.', not_found: 'No submission with this id (or not visible to you).',
    confirm_retry_all: 'Retry every parked delivery of {0}?',
    confirm_discard_all: 'Discard every parked delivery of {0}? Their sealed envelopes are deleted.',
    confirm_discard: 'Discard delivery {0}? Its sealed envelope is deleted.',
    confirm_pause: 'Pause target {0}? Nothing is delivered until it is resumed.',
    done: '{0}: {1}', touched: '{0}: {1} deliveries', updated: 'As of {0}',
    ready: 'ready', not_ready: 'NOT READY', operator: 'Operator', paused: 'paused',
    closed: 'closed', open: 'open', 'half-open': 'half-open', total: 'Total',
    cannot_reach: 'Cannot reach the gateway: {0}',
    summary: '{0} · {1} waiting · {2} parked · {3} delivered · operator {4}',
  },
};

const REFRESH_MS = 10000;
let lang = localStorage.getItem('ozg-lang') || (navigator.language || 'de').slice(0, 2);
if (!T[lang]) lang = 'en';

function t(key, ...args) {
  const s = (T[lang][key] !== undefined ? T[lang][key] : key);
  return s.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)]));
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString(lang === 'de' ? 'de-DE' : 'en-GB');
}

function seconds(s) {
  if (s === undefined || s === null) return '';
  if (s < 120) return s + ' s';
  if (s < 7200) return Math.round(s / 60) + ' min';
  if (s < 172800) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

async function api(method, path) {
  const r = await fetch(path, {
    method,
    headers: { Accept: 'application/json' },
    credentials: 'same-origin',
    cache: 'no-store',
  });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) {
    const e = new Error((body && body.detail) || ('HTTP ' + r.status));
    e.status = r.status;
    throw e;
  }
  return body;
}

function toast(msg, bad) {
  const box = document.getElementById('toast');
  box.textContent = msg;
  box.className = bad ? 'show bad' : 'show';
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.className = ''; }, 6000);
}

async function act(method, path, label, confirmText) {
  if (confirmText && !window.confirm(confirmText)) return;
  try {
    const r = await api(method, path);
    if (r && r.touched !== undefined) toast(t('touched', label, r.touched));
    else toast(t('done', label, (r && (r.state || r.action)) || 'ok'));
  } catch (e) {
    toast(e.message, true);
  }
  refresh();
}

const enc = encodeURIComponent;

function renderTargets(targets) {
  const body = document.querySelector('#targets tbody');
  body.replaceChildren();
  if (!targets.length) {
    body.append(el('tr', {}, el('td', { colspan: 11, class: 'muted' }, t('no_targets'))));
    return;
  }
  for (const x of targets) {
    const q = (s) => x.queue[s] || 0;
    const state = x.paused ? t('paused') : t(x.breaker.state);
    const actions = el('td', { class: 'actions' });
    if (q('parked') > 0) {
      actions.append(
        el('button', { type: 'button', onclick: () => act('POST', `/admin/v1/targets/${enc(x.id)}/parked/retry?all=true`, x.id, t('confirm_retry_all', x.id)) }, t('retry_all')),
        el('button', { type: 'button', class: 'danger', onclick: () => act('POST', `/admin/v1/targets/${enc(x.id)}/parked/discard?all=true`, x.id, t('confirm_discard_all', x.id)) }, t('discard_all')),
      );
    }
    if (x.origin !== 'none') {
      actions.append(x.paused
        ? el('button', { type: 'button', onclick: () => act('POST', `/admin/v1/targets/${enc(x.id)}/resume`, x.id) }, t('resume'))
        : el('button', { type: 'button', onclick: () => act('POST', `/admin/v1/targets/${enc(x.id)}/pause?reason=dashboard`, x.id, t('confirm_pause', x.id)) }, t('pause')));
    }
    body.append(el('tr', { 'data-target': x.id },
      el('th', { scope: 'row' }, x.id, x.description ? el('div', { class: 'muted' }, x.description) : null),
      el('td', {}, x.tenant || ''),
      el('td', { class: 'num' }, q('pending')),
      el('td', { class: 'num' }, q('in_flight')),
      el('td', { class: 'num' }, q('retry_wait')),
      el('td', { class: 'num' + (q('parked') ? ' warn' : '') }, q('parked')),
      el('td', { class: 'num' }, q('delivered')),
      el('td', { class: 'state-' + (x.paused ? 'paused' : x.breaker.state) }, state),
      el('td', {}, seconds(x.oldest_waiting_seconds)),
      el('td', { class: 'error' }, x.last_error || ''),
      actions,
    ));
  }
}

function renderParked(rows) {
  const body = document.querySelector('#parked tbody');
  body.replaceChildren();
  if (!rows.length) {
    body.append(el('tr', {}, el('td', { colspan: 8, class: 'muted' }, t('none_parked'))));
    return;
  }
  for (const d of rows) {
    body.append(el('tr', { 'data-message': d.message_id },
      el('td', { class: 'id' }, d.message_id),
      el('td', { class: 'id' }, el('button', { type: 'button', class: 'link', onclick: () => showSubmission(d.submission_id) }, d.submission_id)),
      el('td', {}, d.target),
      el('td', {}, d.leistung),
      el('td', { class: 'num' }, d.attempts),
      el('td', { class: 'error' }, d.last_error || ''),
      el('td', {}, when(d.updated_at)),
      el('td', { class: 'actions' },
        el('button', { type: 'button', 'data-action': 'retry', onclick: () => act('POST', `/admin/v1/deliveries/${enc(d.message_id)}/retry`, d.message_id) }, t('retry')),
        el('button', { type: 'button', class: 'danger', 'data-action': 'discard', onclick: () => act('POST', `/admin/v1/deliveries/${enc(d.message_id)}/discard`, d.message_id, t('confirm_discard', d.message_id)) }, t('discard')),
      ),
    ));
  }
}

async function showSubmission(id) {
  const out = document.getElementById('submission');
  document.getElementById('sid').value = id;
  out.replaceChildren();
  let s;
  try {
    s = await api('GET', `/admin/v1/submissions/${enc(id.trim())}`);
  } catch (e) {
    out.append(el('p', { class: 'bad' }, e.status === 404 ? t('not_found') : e.message));
    return;
  }
  out.append(el('p', {}, `${t('leistung')} ${s.leistung} · ${t('destination')} ${s.destination} · ${t('received')} ${when(s.received_at)}`));
  const deliveries = el('table', { id: 'submission-deliveries' },
    el('thead', {}, el('tr', {}, el('th', {}, t('target')), el('th', {}, t('state')), el('th', { class: 'num' }, t('attempts')), el('th', {}, t('last_error')))),
    el('tbody', {}, ...s.deliveries.map((d) => el('tr', {},
      el('td', {}, d.target), el('td', { class: 'state-' + d.state }, d.state),
      el('td', { class: 'num' }, d.attempts === undefined ? '' : d.attempts), el('td', { class: 'error' }, d.last_error || '')))));
  const laufzettel = el('ol', { class: 'laufzettel' }, ...s.laufzettel.map((r) =>
    el('li', {}, el('time', { datetime: r.ts }, when(r.ts)), ' ', el('strong', {}, r.event), r.target ? ` → ${r.target}` : '')));
  out.append(deliveries, el('h3', {}, t('laufzettel')), laufzettel);
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// Grouped bars: `series` = [{name, cls, values}], one value per label.
function barChart(box, labels, series, title) {
  box.replaceChildren();
  const W = 900, H = 220, L = 44, B = 34, top = 12;
  // Four gridlines at round numbers: a step of 1, 2 or 5 times a power of ten.
  const top4 = Math.max(4, ...series.flatMap((s) => s.values)) / 4;
  const pow = Math.pow(10, Math.floor(Math.log10(top4)));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((x) => x >= top4);
  const max = step * 4;
  const n = labels.length, group = (W - L - 8) / Math.max(1, n);
  const bar = Math.min(40, Math.max(1, (group - 2) / series.length));
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'bars' });
  chart.append(svg('title', {}, title));
  for (let i = 0; i <= 4; i++) {
    const v = step * i, y = H - B - ((H - B - top) * i) / 4;
    chart.append(svg('line', { x1: L, x2: W, y1: y, y2: y, class: 'grid' }), svg('text', { x: L - 4, y: y + 4, class: 'axis', 'text-anchor': 'end' }, v));
  }
  labels.forEach((label, i) => {
    series.forEach((s, j) => {
      const v = s.values[i] || 0, h = ((H - B - top) * v) / max;
      const x = L + i * group + (group - bar * series.length) / 2 + j * bar;
      const r = svg('rect', { x, y: H - B - h, width: Math.max(1, bar - 1), height: h, class: s.cls });
      r.append(svg('title', {}, `${label} · ${s.name}: ${v}`));
      chart.append(r);
    });
    if (n <= 16 || i % Math.ceil(n / 12) === 0) {
      chart.append(svg('text', { x: L + i * group + group / 2, y: H - B + 16, class: 'axis', 'text-anchor': 'middle' }, label));
    }
  });
  const legend = el('p', { class: 'legend' }, ...series.map((s) => el('span', { class: 'key ' + s.cls }, s.name)));
  box.append(chart, legend);
}

async function renderHourly() {
  const stats = await api('GET', '/admin/v1/stats?period=hour');
  const byHour = new Map(stats.rows.map((r) => [r.period, r]));
  // The last 48 hours as the API names them (local hours of the statistics' zone).
  const labels = [], acc = [], del = [];
  const last = stats.rows.length ? stats.rows[stats.rows.length - 1].period : null;
  const end = last ? new Date(last.slice(0, 10) + 'T00:00:00Z').getTime() + Number(last.slice(11, 13)) * 3600e3 : Date.now();
  const newest = Math.max(end, hourKeyMs(new Date()));
  for (let h = 47; h >= 0; h--) {
    const d = new Date(newest - h * 3600e3);
    const key = d.toISOString().slice(0, 13);
    const r = byHour.get(key);
    labels.push(key.slice(11, 13) + 'h');
    acc.push(r ? r.accepted : 0);
    del.push(r ? r.delivered : 0);
  }
  barChart(document.getElementById('hourly'), labels,
    [{ name: t('accepted'), cls: 's-accepted', values: acc }, { name: t('delivered'), cls: 's-delivered', values: del }],
    t('per_hour'));
}

// The current local hour as a "UTC" instant whose ISO digits are the local time
// (how the API labels hours: in the statistics' zone).
function hourKeyMs(now) {
  return Date.UTC(now.getFullYear(), now.getMonth(), now.getDate(), now.getHours());
}

async function renderCases() {
  const by = document.getElementById('cases-by').value;
  const period = document.getElementById('cases-period').value;
  const query = `/admin/v1/stats?period=${period}&by=${by}`;
  document.getElementById('cases-csv').setAttribute('href', query + '&format=csv');
  const stats = await api('GET', query);
  const totals = new Map();
  for (const r of stats.rows) {
    const k = r[by] || '—';
    const x = totals.get(k) || { accepted: 0, delivered: 0 };
    x.accepted += r.accepted; x.delivered += r.delivered;
    totals.set(k, x);
  }
  const keys = [...totals.keys()].sort((a, b) => (totals.get(b).accepted + totals.get(b).delivered) - (totals.get(a).accepted + totals.get(a).delivered)).slice(0, 20);
  const chart = document.getElementById('cases-chart');
  if (!keys.length) chart.replaceChildren(el('p', { class: 'muted' }, t('no_data')));
  else barChart(chart, keys, [
    { name: t('accepted'), cls: 's-accepted', values: keys.map((k) => totals.get(k).accepted) },
    { name: t('delivered'), cls: 's-delivered', values: keys.map((k) => totals.get(k).delivered) },
  ], `${t('cases')} ${stats.from} – ${stats.to}`);
  const head = document.querySelector('#cases thead');
  head.replaceChildren(el('tr', {}, el('th', {}, t('period')), el('th', {}, t(by)),
    ...['accepted', 'delivered', 'parked_n', 'discarded', 'replied', 'median', 'p95'].map((k) => el('th', { class: 'num' }, t(k)))));
  const body = document.querySelector('#cases tbody');
  body.replaceChildren(...stats.rows.slice().reverse().slice(0, 200).map((r) => el('tr', {},
    el('td', {}, r.period), el('td', {}, r[by] || '—'),
    el('td', { class: 'num' }, r.accepted), el('td', { class: 'num' }, r.delivered),
    el('td', { class: 'num' }, r.parked), el('td', { class: 'num' }, r.discarded),
    el('td', { class: 'num' }, r.replied),
    el('td', { class: 'num' }, r.delivery_median_seconds ?? ''), el('td', { class: 'num' }, r.delivery_p95_seconds ?? ''))));
}

let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const [status, targets, parked] = await Promise.all([
      api('GET', '/admin/v1/status'),
      api('GET', '/admin/v1/targets'),
      api('GET', '/admin/v1/deliveries?state=parked&limit=200'),
    ]);
    const q = status.queue || {};
    document.getElementById('summary').textContent = t('summary',
      status.ready ? t('ready') : `${t('not_ready')}: ${status.not_ready_because || ''}`,
      (q.pending || 0) + (q.retry_wait || 0), q.parked || 0, q.delivered || 0, status.operator.id);
    renderTargets(targets.targets);
    renderParked(parked.deliveries);
    await Promise.all([renderHourly(), renderCases()]);
    document.getElementById('updated').textContent = t('updated', new Date().toLocaleTimeString(lang === 'de' ? 'de-DE' : 'en-GB'));
    document.body.dataset.loaded = 'true';
  } catch (e) {
    toast(t('cannot_reach', e.message), true);
  } finally {
    refreshing = false;
  }
}

function translate() {
  document.documentElement.lang = lang;
  for (const e of document.querySelectorAll('[data-t]')) e.textContent = t(e.dataset.t);
  const other = lang === 'de' ? 'en' : 'de';
  const button = document.getElementById('lang');
  button.textContent = other === 'en' ? 'English' : 'Deutsch';
  button.lang = other;
}

document.addEventListener('DOMContentLoaded', () => {
  translate();
  document.getElementById('lang').addEventListener('click', () => {
    lang = lang === 'de' ? 'en' : 'de';
    localStorage.setItem('ozg-lang', lang);
    translate();
    refresh();
  });
  document.getElementById('refresh').addEventListener('click', refresh);
  document.getElementById('search').addEventListener('submit', (ev) => {
    ev.preventDefault();
    showSubmission(document.getElementById('sid').value);
  });
  for (const id of ['cases-by', 'cases-period']) {
    document.getElementById(id).addEventListener('change', () => renderCases().catch((e) => toast(e.message, true)));
  }
  setInterval(() => { if (document.getElementById('auto').checked && !document.hidden) refresh(); }, REFRESH_MS);
  refresh();
});
