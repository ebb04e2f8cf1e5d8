// The tdb web console: one ES module, no framework, no build step.
//
// It talks to the REST API of docs/API.md on its own origin. The session is an HttpOnly cookie
// set by POST /console/session; the page never holds an API key. Every request that can change
// something carries the session's CSRF token in X-TDB-CSRF.
//
// Pages are paths under /console (the server answers index.html for every one of them), so a
// reload or a shared link opens the same page.
//
// ---------------------------------------------------------------------------------------------
// Test ids (data-testid), by page. Every page's <h1> also has data-testid="page-title".
//
// Every page (chrome):
//   site-nav, nav-<page> (nav-projects, nav-apikeys, nav-workspaces, nav-blueprints,
//   nav-deployments, nav-tenants, nav-databases, nav-connections, nav-servers),
//   session-bar, session-project, sign-out, page-error, page-notice (a message carried over
//   from the page before, e.g. after a hard delete)
// Confirmation dialog:
//   confirm-dialog, confirm-message, confirm-input (typed confirmations), confirm-ok,
//   confirm-cancel
// A secret shown once (inside the panels below): once-panel, once-dismiss, copy-status
// Sign in (h1 "Sign in"):
//   signin-email, signin-password, signin-project, signin-submit, signin-error, signin-status,
//   signin-key, signin-key-submit, signin-key-error, signin-signup-link
// Sign up (h1 "Sign up"):
//   signup-email, signup-password, signup-project, signup-invite, signup-submit, signup-error,
//   signup-status, signup-api-key, signup-api-key-copy, signup-proxy-password,
//   signup-proxy-password-copy, signup-continue
// Projects (h1 "Projects"):
//   projects-table, project-row (data-project-id), project-switch (data-project-id),
//   project-delete (data-project-id), projects-status, projects-error, project-name,
//   project-create, project-create-error, project-api-key, project-api-key-copy,
//   project-proxy-password, project-proxy-password-copy, proxy-rotate, proxy-rotate-error,
//   rotated-proxy-password, policy-schedule, policy-daily-at, policy-keep-count,
//   policy-keep-days, policy-hourly-limit, policy-save, policy-error, policy-status,
//   invite-hours, invite-create, invite-error, invite-code
// API keys (h1 "API keys"):
//   apikeys-table, apikey-row (data-key-id), apikey-revoke (data-key-id), apikeys-error,
//   apikeys-status, apikey-name, apikey-role, apikey-scope-type, apikey-scope-values,
//   apikey-create, apikey-create-error, apikey-secret, apikey-secret-copy
// Workspaces (h1 "Workspaces"):
//   workspaces-table, workspace-row (data-workspace), workspace-delete (data-workspace),
//   workspaces-error, workspaces-status, workspace-name, workspace-database, workspace-mode,
//   workspace-create, workspace-create-error, workspace-connection-string,
//   workspace-connection-string-copy, workspace-open
// Workspace (h1 "Workspace <name>"):
//   workspace-overview, sql-input, sql-run, sql-status, sql-error, sql-meta, sql-result (holding
//   result-table: the rows of the last statement),
//   changes-table, change-row (data-change-id), change-skip, change-revert, changes-error,
//   changes-status, changes-deploy, schema-refresh, schema-tables, schema-table (data-table),
//   schema-error, import-template, import-run, import-error, import-status,
//   settings-form, settings-<field> (settings-query_timeout_ms, ...), settings-save,
//   settings-error, settings-status
// Blueprints (h1 "Blueprints"): blueprints-table, blueprint-row (data-blueprint), blueprints-error
// Blueprint (h1 "Blueprint <name>"): blueprint-schema, versions-table, version-row
//   (data-version), blueprint-deploy, blueprint-error
// Deployments (h1 "Deployments"):
//   deploy-blueprint, deploy-version, deploy-tenants, deploy-dry-run, deploy-start,
//   deploy-error, deploy-status, deployment-history, deployment-row (data-deployment-id),
//   deployments-error
// Deployment (h1 "Deployment"):
//   deployment-status, deployment-progress, deployment-counts, deployment-poll,
//   deployment-results, deployment-result-row (data-tenant), deployment-error
// Tenants (h1 "Tenants"):
//   tenant-search, tenant-status-filter, tenants-table, tenant-row (data-tenant),
//   tenants-page, tenants-prev, tenants-next, tenants-error, tenant-create-id,
//   tenant-create-blueprint, tenant-create-isolation, tenant-create-region, tenant-create,
//   tenant-create-error, tenant-create-status, tenant-connection-string,
//   tenant-connection-copy, tenant-open
// Tenant (h1 "Tenant <id>"), with tenant-nav (links tenant-tab-overview, tenant-tab-backups,
// tenant-tab-logs, tenant-tab-stats):
//   tenant-status, tenant-suspend, tenant-resume, tenant-trash, tenant-restore,
//   tenant-hard-delete, tenant-action-status, tenant-action-error, tenant-databases,
//   tenant-catch-up, credential-role, credential-blueprint, credential-create,
//   credential-error, credential-connection-string, credential-connection-string-copy,
//   move-blueprint, move-level, move-region, move-server, move-start, move-status,
//   move-error, last-move, recover-timestamp, recover-blueprint, recover-start,
//   recover-status, recover-error, recover-unavailable, recover-undo, last-recovery,
//   tenant-deployments
// Tenant backups (h1 "Backups of <id>"):
//   backup-now, backup-status, backup-error, backups-table, backup-row (data-path),
//   backup-rollback (data-path), rollback-status, rollback-error, last-rollback
// Tenant logs (h1 "Logs of <id>"):
//   logs-type, logs-search, logs-source, logs-since, logs-limit, logs-apply, logs-refresh,
//   logs-table, log-row (data-log-id), logs-empty, logs-newer, logs-older, logs-status,
//   logs-error
// Tenant stats (h1 "Statistics of <id>"):
//   stats-totals, stats-window, stats-bucket, stats-apply, stats-summary, stats-chart,
//   stats-series-table, stats-empty, stats-error
// Provisioned databases (h1 "Provisioned databases"):
//   provision-name, provision-create, provision-error, provision-status,
//   provision-connection-string, provision-connection-string-copy, provisioned-table,
//   provisioned-row (data-id), provisioned-delete (data-id), provisioned-usage,
//   provisioned-error
// Connections (h1 "Connections"):
//   connection-name, connection-type, connection-string, connection-excluded,
//   connection-create, connection-create-error, connections-table, connection-row (data-id),
//   connection-deactivate (data-id), connections-error, connections-status
// Connection (h1 "Connection <name>"):
//   connection-detail, connection-introspect, introspect-status, introspect-error,
//   introspection, connection-query-input, connection-query-run, connection-query-status,
//   connection-query-error, connection-query-result (holding result-table)
// Servers (h1 "Servers"):
//   servers-table, server-row (data-server), server-drain, server-activate, server-backup,
//   servers-status, servers-error
// ---------------------------------------------------------------------------------------------

const BASE = '/console';
const SVG_NS = 'http://www.w3.org/2000/svg';
const TENANTS_PER_PAGE = 20;
const FINAL_DEPLOYMENT = new Set(['completed', 'completed_with_errors', 'failed']);

/** The signed-in session (null when signed out) and its CSRF token. */
const session = { info: null, csrf: '', notice: '' };
/** Aborted when the page changes, so that timers of the old page stop. */
let pageAbort = new AbortController();
let renderedLocation = '';
let idCounter = 0;

// ---------------------------------------------------------------------------------------------
// DOM helpers

/** Creates an element: `props` are attributes, plus `text`, `class`, `testid`, `for` and
 * `on<event>` handlers; children are nodes or strings (null and false are skipped). */
function h(tag, props = {}, ...children) {
  return build(document.createElement(tag), props, children);
}

/** The same for SVG elements. */
function svg(tag, props = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), props, children);
}

function build(el, props, children) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') el.textContent = String(value);
    else if (key === 'class') el.setAttribute('class', value);
    else if (key === 'testid') el.dataset.testid = value;
    else if (key === 'for') el.htmlFor = value;
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else el.setAttribute(key, value === true ? '' : String(value));
  }
  appendAll(el, children);
  return el;
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function uid(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** A labelled form control. */
function field(label, control, hint) {
  if (!control.id) control.id = uid('field');
  const wrap = h('div', { class: 'field' }, h('label', { for: control.id, text: label }), control);
  if (hint) {
    const hintId = uid('hint');
    control.setAttribute('aria-describedby', hintId);
    wrap.append(h('p', { class: 'hint', id: hintId, text: hint }));
  }
  return wrap;
}

/** A labelled checkbox, the label after the box. */
function checkField(label, control) {
  if (!control.id) control.id = uid('field');
  return h('div', { class: 'field field-check' }, control, h('label', { for: control.id, text: label }));
}

function selectOf(options, { value, ...props } = {}) {
  const el = h('select', props);
  for (const [optionValue, label] of options) el.append(h('option', { value: optionValue, text: label }));
  if (value !== undefined && value !== null) el.value = value;
  return el;
}

function button(label, props = {}) {
  return h('button', { type: 'button', ...props }, label);
}

function statusLine(testid) {
  return h('p', { class: 'status', role: 'status', 'aria-live': 'polite', testid });
}

function alertBox(testid) {
  return h('div', { class: 'alert', role: 'alert', testid });
}

function section(title, ...children) {
  const headingId = uid('section');
  return h('section', { class: 'card', 'aria-labelledby': headingId },
    h('h2', { id: headingId, text: title }), ...children);
}

function emptyNote(text, testid) {
  return h('p', { class: 'empty', testid, text });
}

function code(text) {
  return h('code', { text: text ?? '' });
}

function definitionList(pairs, testid) {
  const dl = h('dl', { class: 'facts', testid });
  for (const [term, value] of pairs) {
    if (value === undefined) continue;
    dl.append(h('div', {}, h('dt', { text: term }), h('dd', {}, value === null ? '—' : value)));
  }
  return dl;
}

/** A table in a keyboard-scrollable region. `columns`: [{label, cell(item) -> node|string}]. */
function dataTable(label, columns, items, { testid, rowTestid, rowData } = {}) {
  const table = h('table', { testid },
    h('caption', { class: 'visually-hidden', text: label }),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', text: c.label })))));
  const body = h('tbody');
  for (const item of items) {
    const row = h('tr', { testid: rowTestid });
    if (rowData) for (const [k, v] of Object.entries(rowData(item))) row.dataset[k] = v;
    for (const c of columns) row.append(h('td', { class: c.class }, c.cell(item)));
    body.append(row);
  }
  table.append(body);
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': `${label} (table)`, tabindex: '0' }, table);
}

function timeText(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return h('time', { datetime: iso, text: date.toLocaleString() });
}

function bytesText(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function msText(ms) {
  if (ms === null || ms === undefined) return '—';
  return `${Number(ms).toFixed(Number(ms) < 10 ? 2 : 1)} ms`;
}

function badge(text) {
  const kind = String(text).replace(/[^a-z_]/gi, '').toLowerCase();
  return h('span', { class: `badge badge-${kind}`, text });
}

/** A value from a result row, as text. */
function cellText(value) {
  if (value === null || value === undefined) return h('span', { class: 'null', text: 'NULL' });
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

function splitList(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

// ---------------------------------------------------------------------------------------------
// The API

/** An answer that is not a success; `envelope` is what the server said. */
class ApiError extends Error {
  constructor(envelope) {
    super(errorMessage(envelope));
    this.name = 'ApiError';
    this.envelope = envelope;
    this.status = envelope.http_status;
  }
}

/** The message of an error envelope: the REST API's `error` string, or `/api/v1`'s
 * `error.message`. */
function errorMessage(env) {
  if (typeof env.error === 'string' && env.error) return env.error;
  if (env.error && typeof env.error === 'object' && env.error.message) return env.error.message;
  if (typeof env.message === 'string' && env.message) return env.message;
  return `the request failed (HTTP ${env.http_status})`;
}

/**
 * Calls the API: returns the parsed envelope of a success, throws an ApiError carrying the
 * envelope otherwise (a network failure or an answer that is not JSON becomes one too).
 */
async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD' && session.csrf) headers['x-tdb-csrf'] = session.csrf;
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError({ success: false, http_status: 0, code: 'network_error',
      error: `tdb did not answer (${e.message}); check that it runs and try again` });
  }
  let envelope;
  try {
    envelope = await response.json();
  } catch {
    envelope = { success: response.ok, http_status: response.status,
      code: response.ok ? 'ok' : 'bad_answer',
      error: `HTTP ${response.status} ${response.statusText}: the answer was not JSON` };
  }
  if (!envelope || typeof envelope !== 'object') envelope = { success: response.ok };
  if (envelope.http_status === undefined) envelope.http_status = response.status;
  const retryAfter = response.headers.get('retry-after');
  if (!response.ok || envelope.success === false) {
    if (retryAfter) envelope.retry_after_seconds = retryAfter;
    const error = new ApiError(envelope);
    if (response.status === 401 && !path.startsWith('/console/session')) sessionLost(error);
    throw error;
  }
  return envelope;
}

/** A value as one segment of an API path. */
function seg(value) {
  return encodeURIComponent(value);
}

/** Labels for the fields errors add, in the order they are shown. */
const ERROR_LABELS = [
  ['field', 'Field'],
  ['code', 'Code'],
  ['sqlstate', 'SQLSTATE'],
  ['statement_index', 'Failed statement'],
  ['position', 'Position'],
  ['statement', 'Statement'],
  ['statements_executed', 'Statements executed before it'],
  ['detail', 'Detail'],
  ['message', 'Message'],
  ['reason', 'Reason'],
  ['deployed_to', 'Deployed to'],
  ['action_required', 'What to do'],
  ['available_fields', 'Available fields'],
  ['maximum', 'Maximum'],
  ['retry_after_seconds', 'Retry after (seconds)'],
];
const ERROR_SKIP = new Set(['success', 'http_status', 'error', 'ddl_captured']);

/** The fields of an error envelope worth showing beside its message, as [label, text]. */
function errorFacts(env) {
  const facts = [];
  const seen = new Set(ERROR_SKIP);
  const add = (key, label, value) => {
    seen.add(key);
    if (value === undefined || value === null || value === '') return;
    facts.push([label, value]);
  };
  for (const [key, label] of ERROR_LABELS) {
    let value = env[key];
    if (key === 'code' && env.error && typeof env.error === 'object') value = env.error.code;
    if (key === 'message' && value === errorMessage(env)) value = undefined;
    if (key === 'statement_index' && typeof value === 'number') {
      value = `statement ${value + 1} of the batch`;
    }
    if (key === 'detail' && Array.isArray(value)) {
      value = value.map((p) => `${(p.loc || []).join('.')}: ${p.msg}`).join('; ');
    }
    add(key, label, typeof value === 'object' && value !== null ? JSON.stringify(value) : value);
  }
  if (env.error && typeof env.error === 'object' && env.error.details) {
    const details = env.error.details;
    const text = Array.isArray(details)
      ? details.map((p) => (p && p.msg ? `${(p.loc || []).join('.')}: ${p.msg}` : JSON.stringify(p))).join('; ')
      : typeof details === 'object' ? JSON.stringify(details) : String(details);
    // A 422 under /api/v1 says the same in FastAPI's top-level `detail`: show it once.
    add('details', 'Details', facts.some(([, v]) => v === text) ? undefined : text);
  }
  for (const [key, value] of Object.entries(env)) {
    if (seen.has(key) || value === null || value === undefined) continue;
    add(key, key, typeof value === 'object' ? JSON.stringify(value) : String(value));
  }
  return facts;
}

/** Shows an error in an alert element: its message and what else the answer says. */
function showError(alertEl, error) {
  const env = error instanceof ApiError ? error.envelope : { error: String(error?.message || error) };
  const status = env.http_status ? ` (HTTP ${env.http_status})` : '';
  const facts = errorFacts(env);
  alertEl.replaceChildren(
    h('p', { class: 'alert-message' }, h('strong', { text: 'Error' + status + ': ' }), errorMessage(env)),
    errorPointer(env),
    facts.length ? definitionList(facts.map(([k, v]) => [k, String(v)])) : null,
  );
}

/**
 * The line of the failed statement that holds the character the server points at (`position`,
 * counted from 1 in `statement`), with a caret under that character; null without both.
 */
function errorPointer(env) {
  const { statement, position } = env;
  if (typeof statement !== 'string' || !Number.isInteger(position) || position < 1) return null;
  const before = Array.from(statement).slice(0, position - 1).join('');
  const lineStart = before.lastIndexOf('\n') + 1;
  const lineEnd = statement.indexOf('\n', before.length);
  const line = statement.slice(lineStart, lineEnd === -1 ? undefined : lineEnd);
  const column = Array.from(before.slice(lineStart)).length;
  return h('pre', { class: 'error-pointer', tabindex: '0', testid: 'sql-error-pointer' },
    `${line}\n${' '.repeat(column)}^`);
}

function clearAlert(alertEl) {
  alertEl?.replaceChildren();
}

/**
 * Runs an action: disables its button, shows `working` in the status line while it runs,
 * shows any error in the alert. Returns the action's result, or undefined after an error.
 */
async function act({ button: btn, status, alert, working = 'Working…', done }, fn) {
  if (btn) btn.disabled = true;
  clearAlert(alert);
  if (status) status.textContent = working;
  try {
    const result = await fn();
    if (status && done !== undefined) status.textContent = typeof done === 'function' ? done(result) : done;
    return result;
  } catch (error) {
    if (status) status.textContent = '';
    if (alert) showError(alert, error);
    else showPageError(error);
    return undefined;
  } finally {
    if (btn && btn.isConnected) btn.disabled = false;
  }
}

function showPageError(error) {
  const box = document.querySelector('[data-testid="page-error"]');
  if (box) showError(box, error);
}

// ---------------------------------------------------------------------------------------------
// Session

function setSession(env) {
  session.info = {
    project_id: env.project_id,
    project_name: env.project_name,
    role: env.role,
    scope_type: env.scope_type,
    scope_values: env.scope_values || [],
    expires_at: env.expires_at,
    signed_in_with: env.signed_in_with,
  };
  session.csrf = env.csrf_token || '';
}

function clearSession() {
  session.info = null;
  session.csrf = '';
}

/** A 401 on an API call: the session ended (expired, signed out elsewhere, key revoked). */
function sessionLost(error) {
  if (!session.info) return;
  clearSession();
  session.next = currentPath() + location.search;
  session.notice = `You were signed out: ${error.message}`;
  queueMicrotask(() => navigate('/signin', { replace: true }));
}

async function signOut() {
  try {
    await api('DELETE', '/console/session');
  } catch (error) {
    // A 401 says the session had already ended. Anything else leaves it signed in: say why
    // and stay, rather than show a sign-in page over a session that still works.
    if (!(error instanceof ApiError && error.envelope.http_status === 401)) {
      showPageError(error);
      return;
    }
  }
  session.notice = 'You are signed out.';
  clearSession();
  navigate('/signin');
}

// ---------------------------------------------------------------------------------------------
// Router

const ROUTES = [
  { path: '/signin', title: () => 'Sign in', page: pageSignIn, public: true },
  { path: '/signup', title: () => 'Sign up', page: pageSignUp, public: true },
  { path: '/', title: () => 'Console', page: pageHome },
  { path: '/projects', title: () => 'Projects', page: pageProjects, nav: 'projects' },
  { path: '/apikeys', title: () => 'API keys', page: pageApiKeys, nav: 'apikeys' },
  { path: '/workspaces', title: () => 'Workspaces', page: pageWorkspaces, nav: 'workspaces' },
  { path: '/workspaces/:id', title: (p) => `Workspace ${p.id}`, page: pageWorkspace, nav: 'workspaces' },
  { path: '/blueprints', title: () => 'Blueprints', page: pageBlueprints, nav: 'blueprints' },
  { path: '/blueprints/:name', title: (p) => `Blueprint ${p.name}`, page: pageBlueprint, nav: 'blueprints' },
  { path: '/deployments', title: () => 'Deployments', page: pageDeployments, nav: 'deployments' },
  { path: '/deployments/:id', title: () => 'Deployment', page: pageDeployment, nav: 'deployments' },
  { path: '/tenants', title: () => 'Tenants', page: pageTenants, nav: 'tenants' },
  { path: '/tenants/:id', title: (p) => `Tenant ${p.id}`, page: pageTenant, nav: 'tenants' },
  { path: '/tenants/:id/backups', title: (p) => `Backups of ${p.id}`, page: pageTenantBackups, nav: 'tenants' },
  { path: '/tenants/:id/logs', title: (p) => `Logs of ${p.id}`, page: pageTenantLogs, nav: 'tenants' },
  { path: '/tenants/:id/stats', title: (p) => `Statistics of ${p.id}`, page: pageTenantStats, nav: 'tenants' },
  { path: '/databases', title: () => 'Provisioned databases', page: pageProvisioned, nav: 'databases' },
  { path: '/connections', title: () => 'Connections', page: pageConnections, nav: 'connections' },
  { path: '/connections/:id', title: () => 'Connection', page: pageConnection, nav: 'connections' },
  { path: '/servers', title: () => 'Servers', page: pageServers, nav: 'servers' },
];

const NAV = [
  ['projects', '/projects', 'Projects'],
  ['apikeys', '/apikeys', 'API keys'],
  ['workspaces', '/workspaces', 'Workspaces'],
  ['blueprints', '/blueprints', 'Blueprints'],
  ['deployments', '/deployments', 'Deployments'],
  ['tenants', '/tenants', 'Tenants'],
  ['databases', '/databases', 'Databases'],
  ['connections', '/connections', 'Connections'],
  ['servers', '/servers', 'Servers'],
];

function matchRoute(pathname) {
  const parts = pathname.split('/').filter(Boolean);
  for (const route of ROUTES) {
    const pattern = route.path.split('/').filter(Boolean);
    if (pattern.length !== parts.length) continue;
    const params = {};
    const ok = pattern.every((part, i) => {
      if (part.startsWith(':')) {
        try {
          params[part.slice(1)] = decodeURIComponent(parts[i]);
        } catch {
          return false;
        }
        return true;
      }
      return part === parts[i];
    });
    if (ok) return { route, params };
  }
  return null;
}

/** The page's path below /console, e.g. `/tenants/acme`. */
function currentPath() {
  let p = location.pathname;
  if (p.startsWith(BASE)) p = p.slice(BASE.length);
  if (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p || '/';
}

function href(to) {
  return to === '/' ? BASE : BASE + to;
}

function link(to, text, props = {}) {
  return h('a', { href: href(to), ...props }, text);
}

function navigate(to, { replace = false } = {}) {
  const url = href(to);
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render({ focus: true });
}

/** Changes the query string of the current page without rendering it again. */
function setQuery(params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) qs.set(k, v);
  const text = qs.toString();
  history.replaceState(null, '', location.pathname + (text ? `?${text}` : ''));
  renderedLocation = location.pathname + location.search;
}

function onDocumentClick(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = event.target.closest('a[href]');
  if (!anchor || anchor.target || anchor.hasAttribute('download')) return;
  const url = new URL(anchor.href, location.href);
  if (url.origin !== location.origin) return;
  if (url.pathname !== BASE && !url.pathname.startsWith(BASE + '/')) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  event.preventDefault();
  history.pushState(null, '', url.pathname + url.search);
  render({ focus: true });
}

async function render({ focus = false } = {}) {
  pageAbort.abort();
  pageAbort = new AbortController();
  renderedLocation = location.pathname + location.search;
  const pathname = currentPath();
  const found = matchRoute(pathname);
  if (!session.info && !(found && found.route.public)) {
    if (pathname !== '/' && pathname !== '/signin') session.next = pathname + location.search;
    history.replaceState(null, '', href('/signin'));
    return render({ focus });
  }
  if (session.info && found && found.route.public) {
    history.replaceState(null, '', href('/'));
    return render({ focus });
  }
  renderChrome(found?.route);
  const main = document.getElementById('main');
  const title = found ? found.route.title(found.params) : 'Page not found';
  const heading = h('h1', { tabindex: '-1', testid: 'page-title', text: title });
  const root = h('div', { class: 'page' });
  const notice = statusLine('page-notice');
  if (session.notice && session.info) {
    notice.textContent = session.notice;
    session.notice = '';
  }
  main.replaceChildren(heading, notice, alertBox('page-error'), root);
  document.title = `${title} · tdb console`;
  if (focus) heading.focus();
  if (!found) {
    root.append(h('p', {}, 'There is no page here. ', link('/', 'Go to the console')));
    return undefined;
  }
  const ctx = {
    params: found.params,
    query: new URLSearchParams(location.search),
    signal: pageAbort.signal,
    root,
    heading,
  };
  try {
    await found.route.page(ctx);
  } catch (error) {
    if (!ctx.signal.aborted) showPageError(error);
  }
  return undefined;
}

function renderChrome(route) {
  const nav = document.getElementById('site-nav');
  const bar = document.getElementById('session-bar');
  if (!session.info) {
    nav.hidden = true;
    nav.replaceChildren();
    bar.replaceChildren();
    return;
  }
  nav.hidden = false;
  const list = h('ul');
  for (const [key, to, label] of NAV) {
    const current = route?.nav === key;
    list.append(h('li', {}, link(to, label, { testid: `nav-${key}`, 'aria-current': current ? 'page' : null })));
  }
  nav.replaceChildren(list);
  const info = session.info;
  const scope = info.scope_type === 'project' ? 'whole project' : `${info.scope_type}: ${info.scope_values.join(', ')}`;
  bar.replaceChildren(
    h('p', { class: 'session-project', testid: 'session-project' },
      h('span', { class: 'muted', text: 'Project ' }), h('strong', { text: info.project_name }),
      h('span', { class: 'muted', text: ` · ${info.role} · ${scope}` })),
    button('Sign out', { class: 'secondary', testid: 'sign-out', onclick: signOut }),
  );
}

// ---------------------------------------------------------------------------------------------
// Dialogs and secrets

/**
 * Asks for confirmation in a modal <dialog>. With `typed`, the user must type that text before
 * the confirm button works. Resolves true when confirmed.
 */
function confirmDialog({ title, message, confirmLabel = 'Confirm', typed, danger = true }) {
  return new Promise((resolve) => {
    const titleId = uid('dialog-title');
    const messageId = uid('dialog-message');
    const ok = button(confirmLabel, { class: danger ? 'danger' : 'primary', testid: 'confirm-ok' });
    const cancel = button('Cancel', { class: 'secondary', testid: 'confirm-cancel' });
    const dialog = h('dialog', { class: 'confirm', testid: 'confirm-dialog',
      'aria-labelledby': titleId, 'aria-describedby': messageId },
    h('h2', { id: titleId, text: title }),
    h('p', { id: messageId, testid: 'confirm-message', text: message }));
    let input = null;
    if (typed !== undefined) {
      input = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', testid: 'confirm-input' });
      dialog.append(field(`Type ${typed} to confirm`, input));
      ok.disabled = true;
      input.addEventListener('input', () => { ok.disabled = input.value !== typed; });
      input.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' && !ok.disabled) ok.click();
      });
    }
    dialog.append(h('div', { class: 'actions' }, ok, cancel));
    let confirmed = false;
    ok.addEventListener('click', () => {
      if (typed !== undefined && input.value !== typed) return;
      confirmed = true;
      dialog.close();
    });
    cancel.addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(confirmed);
    });
    document.body.append(dialog);
    dialog.showModal();
    (input || cancel).focus();
  });
}

/** Copies text with the Clipboard API and says how it went in `status`. */
async function copyText(text, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = 'Copied to the clipboard.';
  } catch (error) {
    status.textContent = `Could not copy (${error.message}): select the text and copy it by hand.`;
  }
}

/**
 * A panel for secrets the API shows once: each value in a read-only field with a Copy button.
 * `items`: [{label, value, testid}].
 */
function oncePanel(title, items, note) {
  const status = statusLine('copy-status');
  const panel = h('div', { class: 'once', testid: 'once-panel' },
    h('h3', { text: title }),
    h('p', { class: 'hint', text: note || 'Shown only this once: tdb keeps only a hash. Copy it now.' }));
  for (const item of items) {
    if (item.value === undefined || item.value === null) continue;
    const input = h('input', { type: 'text', readonly: true, value: item.value, testid: item.testid,
      spellcheck: 'false', autocomplete: 'off', class: 'secret' });
    panel.append(h('div', { class: 'secret-row' },
      field(item.label, input),
      button('Copy', { class: 'secondary', testid: `${item.testid}-copy`,
        'aria-label': `Copy ${item.label}`, onclick: () => copyText(item.value, status) })));
  }
  panel.append(status, button('I have copied it', { class: 'secondary', testid: 'once-dismiss',
    onclick: () => {
      // The focused button goes with the panel: focus the page's heading, not the document.
      panel.remove();
      document.querySelector('main h1')?.focus();
    } }));
  return panel;
}

// ---------------------------------------------------------------------------------------------
// Sign in and sign up

function pageSignIn(ctx) {
  const status = statusLine('signin-status');
  if (session.notice) {
    status.textContent = session.notice;
    session.notice = '';
  }
  const email = h('input', { type: 'email', required: true, autocomplete: 'username', testid: 'signin-email',
    value: session.lastEmail || null });
  const password = h('input', { type: 'password', required: true, autocomplete: 'current-password', testid: 'signin-password' });
  const project = h('input', { type: 'text', autocomplete: 'off', testid: 'signin-project' });
  const error = alertBox('signin-error');
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'signin-submit' }, 'Sign in');
  const form = h('form', { class: 'stack', 'aria-label': 'Sign in with e-mail and password' },
    field('E-mail', email),
    field('Password', password),
    field('Project (optional)', project, 'An id or a name; your oldest project when empty.'),
    submit, error);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const body = { email: email.value.trim(), password: password.value };
    if (project.value.trim()) body.project = project.value.trim();
    signIn(body, { button: submit, status, alert: error, working: 'Signing in…' });
  });

  const key = h('input', { type: 'password', required: true, autocomplete: 'off', testid: 'signin-key' });
  const keyError = alertBox('signin-key-error');
  const keySubmit = h('button', { type: 'submit', class: 'primary', testid: 'signin-key-submit' }, 'Sign in with the key');
  const keyForm = h('form', { class: 'stack', 'aria-label': 'Sign in with an API key' },
    field('API key', key, 'The session acts with this key, its role and its scope; the page never reads it back.'),
    keySubmit, keyError);
  keyForm.addEventListener('submit', (event) => {
    event.preventDefault();
    signIn({ api_key: key.value.trim() }, { button: keySubmit, status, alert: keyError, working: 'Signing in…' });
  });

  ctx.root.append(status,
    h('div', { class: 'columns' },
      section('With e-mail and password', form),
      section('With an API key', keyForm)),
    h('p', {}, 'No account yet? ', link('/signup', 'Sign up', { testid: 'signin-signup-link' })));
}

async function signIn(body, opts) {
  const env = await act(opts, () => api('POST', '/console/session', body));
  if (!env) return;
  setSession(env);
  const next = session.next && session.next.startsWith('/') ? session.next : '/';
  session.next = '';
  navigate(next);
}

function pageSignUp(ctx) {
  const email = h('input', { type: 'email', required: true, autocomplete: 'username', testid: 'signup-email' });
  const password = h('input', { type: 'password', required: true, minlength: '8', autocomplete: 'new-password', testid: 'signup-password' });
  const project = h('input', { type: 'text', autocomplete: 'off', testid: 'signup-project' });
  const invite = h('input', { type: 'text', autocomplete: 'off', testid: 'signup-invite' });
  const error = alertBox('signup-error');
  const status = statusLine('signup-status');
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'signup-submit' }, 'Sign up');
  const result = h('div');
  const form = h('form', { class: 'stack', 'aria-label': 'Sign up' },
    field('E-mail', email),
    field('Password', password, 'At least 8 characters.'),
    field('First project name (optional)', project, 'Defaults to "My Project".'),
    field('Invitation code (optional)', invite, 'Needed when this server signs up by invitation only.'),
    submit, status, error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { email: email.value.trim(), password: password.value };
    if (project.value.trim()) body.project_name = project.value.trim();
    if (invite.value.trim()) body.invite_code = invite.value.trim();
    const env = await act({ button: submit, status, alert: error, working: 'Creating the account…' },
      () => api('POST', '/signup', body));
    if (!env) return;
    session.lastEmail = body.email;
    status.textContent = env.message || 'Account created.';
    result.replaceChildren(oncePanel('Your API key and proxy password', [
      { label: 'API key', value: env.api_key, testid: 'signup-api-key' },
      { label: 'Proxy password', value: env.proxy_password, testid: 'signup-proxy-password' },
    ], `Project ${env.project_id}. Shown only this once: the API key is for the CLI and scripts, the proxy password logs in as the project id through the proxies.`),
    h('p', {}, link('/signin', 'Continue to sign in', { testid: 'signup-continue', class: 'button-link' })));
    form.hidden = true;
  });
  ctx.root.append(section('Create an account', form), result,
    h('p', {}, 'Already have an account? ', link('/signin', 'Sign in')));
}

function pageHome() {
  navigate('/tenants', { replace: true });
}

// ---------------------------------------------------------------------------------------------
// Projects

async function pageProjects(ctx) {
  const info = session.info;
  const status = statusLine('projects-status');
  const error = alertBox('projects-error');
  const list = h('div');
  ctx.root.append(
    h('p', {}, 'You are working in ', h('strong', { text: info.project_name }), ' ', code(info.project_id), '.'),
    section('Your projects', status, error, list),
    createProjectSection(() => loadProjects()),
    rotateSection(),
    policySection(ctx),
    invitationSection());

  async function loadProjects() {
    const env = await act({ status, alert: error, working: 'Loading projects…', done: '' },
      () => api('GET', '/projects'));
    if (!env) return;
    list.replaceChildren(dataTable('Projects', [
      { label: 'Name', cell: (p) => p.name },
      { label: 'Id', cell: (p) => code(p.project_id) },
      { label: 'Status', cell: (p) => badge(p.status) },
      { label: 'API keys', cell: (p) => String(p.api_key_count) },
      { label: 'Created', cell: (p) => timeText(p.created_at) },
      { label: 'Actions', cell: (p) => projectActions(p) },
    ], env.projects, { testid: 'projects-table', rowTestid: 'project-row', rowData: (p) => ({ projectId: p.project_id }) }));
  }

  function projectActions(p) {
    if (p.project_id === info.project_id) return h('span', { class: 'muted', text: 'Current project' });
    const switchBtn = button(`Switch to ${p.name}`, { class: 'secondary', testid: 'project-switch', 'data-project-id': p.project_id });
    switchBtn.addEventListener('click', async () => {
      const env = await act({ button: switchBtn, status, alert: error, working: `Switching to ${p.name}…` },
        () => api('POST', '/console/session/project', { project: p.project_id }));
      if (!env) return;
      setSession(env);
      navigate('/projects', { replace: true });
    });
    const deleteBtn = button(`Delete ${p.name}`, { class: 'danger', testid: 'project-delete', 'data-project-id': p.project_id });
    deleteBtn.addEventListener('click', async () => {
      const yes = await confirmDialog({ title: 'Delete a project',
        message: `Delete project "${p.name}" and everything in it: its tenants, workspaces, databases and backups. This cannot be undone.`,
        confirmLabel: 'Delete the project', typed: p.name });
      if (!yes) return;
      const env = await act({ button: deleteBtn, status, alert: error, working: `Deleting ${p.name} (up to 10 s)…` },
        () => api('DELETE', `/projects/${seg(p.project_id)}`));
      if (!env) return;
      await loadProjects();
      status.textContent = `${env.message || 'Deleted.'} Status: ${env.status}.`;
    });
    return p.status === 'active' ? h('div', { class: 'row-actions' }, switchBtn, deleteBtn) : '—';
  }

  await loadProjects();
}

function createProjectSection(reload) {
  const name = h('input', { type: 'text', required: true, maxlength: '63', autocomplete: 'off', testid: 'project-name' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'project-create' }, 'Create the project');
  const status = statusLine();
  const error = alertBox('project-create-error');
  const result = h('div');
  const form = h('form', { class: 'inline-form', 'aria-label': 'Create a project' }, field('Project name', name), submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const env = await act({ button: submit, status, alert: error, working: 'Creating the project…' },
      () => api('POST', '/projects', { name: name.value.trim() }));
    if (!env) return;
    status.textContent = env.message || `Project ${env.name} created.`;
    name.value = '';
    result.replaceChildren(oncePanel(`Project ${env.name}`, [
      { label: 'Admin API key', value: env.api_key, testid: 'project-api-key' },
      { label: 'Proxy password', value: env.proxy_password, testid: 'project-proxy-password' },
    ]));
    await reload();
  });
  return section('Create a project', form, status, error, result);
}

function rotateSection() {
  const info = session.info;
  const status = statusLine();
  const error = alertBox('proxy-rotate-error');
  const result = h('div');
  const rotate = button('Rotate the proxy password', { class: 'danger', testid: 'proxy-rotate' });
  rotate.addEventListener('click', async () => {
    const yes = await confirmDialog({ title: 'Rotate the proxy password',
      message: `A new proxy password for ${info.project_name}: the old one stops working at once for every client that uses it.`,
      confirmLabel: 'Rotate it' });
    if (!yes) return;
    const env = await act({ button: rotate, status, alert: error, working: 'Rotating…' },
      () => api('POST', `/projects/${seg(info.project_id)}/proxy-password`));
    if (!env) return;
    status.textContent = env.message || 'Rotated.';
    result.replaceChildren(oncePanel('New proxy password', [
      { label: 'Proxy password', value: env.proxy_password, testid: 'rotated-proxy-password' },
    ]));
  });
  return section('Proxy password', h('p', {}, 'Clients may log in through the proxies as ', code(info.project_id),
    ' with the project\'s proxy password.'), rotate, status, error, result);
}

function policySection(ctx) {
  const info = session.info;
  const status = statusLine('policy-status');
  const error = alertBox('policy-error');
  const body = h('div');
  const load = async () => {
    const env = await act({ status, alert: error, working: 'Loading the backup policy…', done: '' },
      () => api('GET', `/projects/${seg(info.project_id)}/backup-policy`));
    if (!env || ctx.signal.aborted) return;
    body.replaceChildren(policyForm(env, status, error));
  };
  load();
  return section('Backup policy', h('p', { class: 'hint', text: 'Scheduled backups of every tenant database of this project, and how many are kept.' }), body, status, error);
}

function policyForm(policy, status, error) {
  const schedule = h('input', { type: 'checkbox', testid: 'policy-schedule', checked: policy.schedule_enabled });
  const dailyAt = h('input', { type: 'text', value: policy.daily_at, testid: 'policy-daily-at', pattern: '\\d{2}:\\d{2}(:\\d{2})?' });
  const keepCount = h('input', { type: 'number', min: '1', value: policy.keep_count, testid: 'policy-keep-count' });
  const keepDays = h('input', { type: 'number', min: '1', value: policy.keep_days, testid: 'policy-keep-days' });
  const hourly = h('input', { type: 'number', min: '1', value: policy.hourly_limit, testid: 'policy-hourly-limit' });
  const save = h('button', { type: 'submit', class: 'primary', testid: 'policy-save' }, 'Save the policy');
  const form = h('form', { class: 'grid-form', 'aria-label': 'Backup policy' },
    checkField('Daily scheduled backups', schedule),
    field('Daily at (UTC, HH:MM)', dailyAt),
    field('Keep this many per database', keepCount),
    field('Keep for days', keepDays),
    field('Manual backups per hour', hourly),
    h('div', { class: 'actions' }, save));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const patch = {};
    if (schedule.checked !== policy.schedule_enabled) patch.schedule_enabled = schedule.checked;
    if (dailyAt.value.trim() !== policy.daily_at) patch.daily_at = dailyAt.value.trim();
    for (const [key, input] of [['keep_count', keepCount], ['keep_days', keepDays], ['hourly_limit', hourly]]) {
      if (Number(input.value) !== policy[key]) patch[key] = Number(input.value);
    }
    const env = await act({ button: save, status, alert: error, working: 'Saving…' },
      () => api('PATCH', `/projects/${seg(session.info.project_id)}/backup-policy`, patch));
    if (!env) return;
    Object.assign(policy, env);
    status.textContent = 'Backup policy saved.';
  });
  return form;
}

function invitationSection() {
  const hours = h('input', { type: 'number', min: '1', max: '720', value: '168', testid: 'invite-hours' });
  const submit = h('button', { type: 'submit', class: 'secondary', testid: 'invite-create' }, 'Create an invitation code');
  const status = statusLine();
  const error = alertBox('invite-error');
  const result = h('div');
  const form = h('form', { class: 'inline-form', 'aria-label': 'Create an invitation' }, field('Expires in hours', hours), submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const env = await act({ button: submit, status, alert: error, working: 'Creating a code…' },
      () => api('POST', '/invitations', { expires_in_hours: Number(hours.value) }));
    if (!env) return;
    status.textContent = `${env.message || 'Code created.'} It expires ${new Date(env.expires_at).toLocaleString()}.`;
    result.replaceChildren(oncePanel('Invitation code', [{ label: 'Invitation code', value: env.invite_code, testid: 'invite-code' }]));
  });
  return section('Invite someone', h('p', { class: 'hint', text: 'A single-use code to sign up with, where sign-up is by invitation.' }),
    form, status, error, result);
}

// ---------------------------------------------------------------------------------------------
// API keys

async function pageApiKeys(ctx) {
  const status = statusLine('apikeys-status');
  const error = alertBox('apikeys-error');
  const list = h('div');
  ctx.root.append(section('Keys of this project', status, error, list), createKeySection(() => load()));

  async function load() {
    const env = await act({ status, alert: error, working: 'Loading keys…', done: '' }, () => api('GET', '/apikeys'));
    if (!env) return;
    if (!env.api_keys.length) {
      list.replaceChildren(emptyNote('No live keys.'));
      return;
    }
    list.replaceChildren(dataTable('API keys', [
      { label: 'Name', cell: (k) => k.name || '—' },
      { label: 'Prefix', cell: (k) => code(k.prefix) },
      { label: 'Role', cell: (k) => k.role },
      { label: 'Scope', cell: (k) => (k.scope_type === 'project' ? 'project' : `${k.scope_type}: ${k.scope_values.join(', ')}`) },
      { label: 'Created', cell: (k) => timeText(k.created_at) },
      { label: 'Last used', cell: (k) => timeText(k.last_used_at) },
      { label: 'Expires', cell: (k) => (k.expires_at ? timeText(k.expires_at) : 'never') },
      { label: 'Actions', cell: (k) => revokeButton(k) },
    ], env.api_keys, { testid: 'apikeys-table', rowTestid: 'apikey-row', rowData: (k) => ({ keyId: k.id }) }));
  }

  function revokeButton(k) {
    const btn = button(`Revoke ${k.name || k.prefix}`, { class: 'danger', testid: 'apikey-revoke', 'data-key-id': k.id });
    btn.addEventListener('click', async () => {
      const yes = await confirmDialog({ title: 'Revoke an API key',
        message: `Revoke key "${k.name || k.prefix}" (${k.prefix}…)? It stops working at once. If it is the key this console session uses, you will be signed out.`,
        confirmLabel: 'Revoke' });
      if (!yes) return;
      const env = await act({ button: btn, status, alert: error, working: 'Revoking…' },
        () => api('DELETE', `/apikeys/${seg(k.id)}`));
      if (!env) return;
      await load();
      status.textContent = env.message || 'Revoked.';
    });
    return btn;
  }

  await load();
}

function createKeySection(reload) {
  const name = h('input', { type: 'text', maxlength: '63', autocomplete: 'off', testid: 'apikey-name' });
  const role = selectOf([['admin', 'admin'], ['write', 'write'], ['read', 'read']], { testid: 'apikey-role' });
  const scopeType = selectOf([['project', 'the whole project'], ['workspace', 'named workspaces'], ['tenant', 'named tenants']],
    { testid: 'apikey-scope-type' });
  const scopeValues = h('input', { type: 'text', autocomplete: 'off', disabled: true, testid: 'apikey-scope-values' });
  scopeType.addEventListener('change', () => { scopeValues.disabled = scopeType.value === 'project'; });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'apikey-create' }, 'Create the key');
  const status = statusLine();
  const error = alertBox('apikey-create-error');
  const result = h('div');
  const form = h('form', { class: 'grid-form', 'aria-label': 'Create an API key' },
    field('Name (optional)', name),
    field('Role', role),
    field('Scope', scopeType),
    field('Workspace or tenant names', scopeValues, 'Comma-separated; only for a workspace or tenant scope.'),
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { role: role.value, scope_type: scopeType.value };
    if (name.value.trim()) body.name = name.value.trim();
    if (scopeType.value !== 'project') body.scope_values = splitList(scopeValues.value);
    const env = await act({ button: submit, status, alert: error, working: 'Creating the key…' },
      () => api('POST', '/apikeys', body));
    if (!env) return;
    status.textContent = env.message || 'Key created.';
    result.replaceChildren(oncePanel(`Key ${env.name || env.prefix}`, [
      { label: 'API key', value: env.api_key, testid: 'apikey-secret' },
    ]));
    await reload();
  });
  return section('Create a key', form, status, error, result);
}

// ---------------------------------------------------------------------------------------------
// Workspaces

async function pageWorkspaces(ctx) {
  const status = statusLine('workspaces-status');
  const error = alertBox('workspaces-error');
  const list = h('div');
  ctx.root.append(section('Your workspaces', status, error, list), createWorkspaceSection(() => load()));

  async function load() {
    const env = await act({ status, alert: error, working: 'Loading workspaces…', done: '' }, () => api('GET', '/workspaces'));
    if (!env) return;
    if (!env.workspaces.length) {
      list.replaceChildren(emptyNote('No workspaces yet: create one below.'));
      return;
    }
    list.replaceChildren(dataTable('Workspaces', [
      { label: 'Name', cell: (w) => link(`/workspaces/${seg(w.id)}`, w.name) },
      { label: 'Database', cell: (w) => w.database },
      { label: 'Mode', cell: (w) => w.mode },
      { label: 'Version', cell: (w) => (w.version === undefined || w.version === null ? '—' : String(w.version)) },
      { label: 'Created', cell: (w) => timeText(w.created_at) },
      { label: 'Actions', cell: (w) => deleteButton(w) },
    ], env.workspaces, { testid: 'workspaces-table', rowTestid: 'workspace-row', rowData: (w) => ({ workspace: w.id }) }));
  }

  function deleteButton(w) {
    const btn = button(`Delete ${w.name}`, { class: 'danger', testid: 'workspace-delete', 'data-workspace': w.id });
    btn.addEventListener('click', async () => {
      const yes = await confirmDialog({ title: 'Delete a workspace',
        message: `Delete workspace "${w.name}": its database, its role, its blueprint and all its versions. This cannot be undone.`,
        confirmLabel: 'Delete the workspace', typed: w.name });
      if (!yes) return;
      const env = await act({ button: btn, status, alert: error, working: `Deleting ${w.name}…` },
        () => api('DELETE', `/workspaces/${seg(w.id)}`));
      if (!env) return;
      await load();
      status.textContent = `${env.message || 'Deleted.'} (${env.details?.versions_deleted ?? 0} versions deleted)`;
    });
    return btn;
  }

  await load();
}

function createWorkspaceSection(reload) {
  const name = h('input', { type: 'text', required: true, autocomplete: 'off', pattern: '[a-z][a-z0-9_]{0,62}', testid: 'workspace-name' });
  const database = selectOf([['PostgreSQL', 'PostgreSQL'], ['MySQL', 'MySQL'], ['Redis', 'Redis']], { testid: 'workspace-database' });
  const mode = selectOf([['tenant', 'tenant: its DDL becomes a blueprint'], ['control', 'control: a standalone database']],
    { testid: 'workspace-mode' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'workspace-create' }, 'Create the workspace');
  const status = statusLine();
  const error = alertBox('workspace-create-error');
  const result = h('div');
  const form = h('form', { class: 'grid-form', 'aria-label': 'Create a workspace' },
    field('Name', name, 'Lower-case letters, digits and _, starting with a letter; it names the blueprint too.'),
    field('Database', database),
    field('Mode', mode),
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const env = await act({ button: submit, status, alert: error, working: 'Creating the workspace…' },
      () => api('POST', '/workspaces', { name: name.value.trim(), database: database.value, mode: mode.value }));
    if (!env) return;
    status.textContent = `Workspace ${env.id} created.`;
    name.value = '';
    result.replaceChildren(oncePanel(`Workspace ${env.id}`, [
      { label: 'Connection string', value: env.connection_string, testid: 'workspace-connection-string' },
    ], 'A login for this workspace alone, shown only this once.'),
    h('p', {}, link(`/workspaces/${seg(env.id)}`, `Open workspace ${env.id}`, { testid: 'workspace-open' })));
    await reload();
  });
  return section('Create a workspace', form, status, error, result);
}

async function pageWorkspace(ctx) {
  const id = ctx.params.id;
  const ws = await api('GET', `/workspaces/${seg(id)}`);
  if (ctx.signal.aborted) return;
  const isRedis = String(ws.database).toLowerCase() === 'redis';
  const tenantMode = ws.mode === 'tenant';
  ctx.root.append(workspaceOverview(ws));
  const schema = isRedis ? null : schemaSection(id);
  const changes = tenantMode ? changesSection(id, () => schema?.reload()) : null;
  ctx.root.append(sqlSection(id, isRedis, () => {
    schema?.reload();
    changes?.reload();
  }));
  if (changes) ctx.root.append(changes.el);
  if (schema) ctx.root.append(schema.el, importSection(id, () => {
    schema.reload();
    changes?.reload();
  }));
  else ctx.root.append(section('Schema', emptyNote('A Redis workspace has no schema: its rules for keys are in the settings below.')));
  ctx.root.append(settingsSection(id, ctx));
  await Promise.all([schema?.reload(), changes?.reload()]);
}

function workspaceOverview(ws) {
  const c = ws.connection || {};
  return section('Overview', definitionList([
    ['Database', String(ws.database)],
    ['Mode', ws.mode],
    ['Blueprint version', ws.version === undefined || ws.version === null ? '—' : String(ws.version)],
    ['Pending changes', ws.undeployed_changes === undefined ? undefined : String(ws.undeployed_changes)],
    ['Connection', `${c.host}:${c.port} · database ${c.database} · user ${c.username || c.user}`],
    ['Connection string', code(ws.connection_string)],
    ['Schema error', ws.schema_error ? ws.schema_error : undefined],
    ['Created', timeText(ws.created_at)],
  ], 'workspace-overview'),
  h('p', { class: 'hint', text: 'The password is masked: it was shown once, when the workspace was created.' }));
}

function sqlSection(id, isRedis, afterRun) {
  const input = h('textarea', { rows: '8', spellcheck: 'false', autocomplete: 'off', class: 'code-input', testid: 'sql-input' });
  const run = h('button', { type: 'submit', class: 'primary', testid: 'sql-run' }, 'Run');
  const status = statusLine('sql-status');
  const error = alertBox('sql-error');
  const meta = h('p', { class: 'meta', testid: 'sql-meta' });
  const result = h('div', { testid: 'sql-result' });
  const form = h('form', { class: 'stack', 'aria-label': isRedis ? 'Redis commands' : 'SQL editor' },
    field(isRedis ? 'Commands (one per line)' : 'SQL statements', input,
      'Ctrl+Enter runs. In tenant mode, DDL that commits becomes a pending change of the blueprint.'),
    h('div', { class: 'actions' }, run));
  const submit = async () => {
    meta.textContent = '';
    result.replaceChildren();
    const env = await act({ button: run, status, alert: error, working: 'Running…' },
      () => api('POST', `/workspaces/${seg(id)}/queries`, { query: input.value }));
    if (!env) {
      afterRun();
      return;
    }
    status.textContent = `Done in ${env.execution_time}.`;
    meta.textContent = queryMeta(env);
    result.replaceChildren(resultTable(env, 'Query result'));
    afterRun();
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submit();
    }
  });
  return section(isRedis ? 'Commands' : 'SQL editor', form, status, error, meta, result);
}

function queryMeta(env) {
  const parts = [`${env.row_count} row${env.row_count === 1 ? '' : 's'}`, env.execution_time];
  if (env.statements_executed !== undefined) parts.push(`${env.statements_executed} statement(s) run`);
  if (env.ddl_captured?.length) parts.push(`DDL queued as change(s) ${env.ddl_captured.join(', ')}`);
  if (env.truncated) parts.push('truncated: more rows than max_rows_per_query');
  return parts.join(' · ');
}

/** Columns and rows of a query answer as a table. */
function resultTable(env, label) {
  if (!env.columns || !env.columns.length) return emptyNote('The last statement returned no rows.');
  const columns = env.columns.map((name, i) => ({ label: name, cell: (row) => cellText(row[i]) }));
  if (!env.rows.length) return h('div', {}, emptyNote(`No rows (columns: ${env.columns.join(', ')}).`));
  return dataTable(label, columns, env.rows, { testid: 'result-table' });
}

function schemaSection(id) {
  const status = statusLine();
  const error = alertBox('schema-error');
  const tables = h('div', { testid: 'schema-tables' });
  const refresh = button('Refresh the schema', { class: 'secondary', testid: 'schema-refresh' });
  const reload = async () => {
    const env = await act({ button: refresh, status, alert: error, working: 'Reading the schema…', done: '' },
      () => api('GET', `/workspaces/${seg(id)}/schema`));
    if (!env) return;
    tables.replaceChildren(...(env.tables.length ? env.tables.map(schemaTable) : [emptyNote('No tables yet.')]));
  };
  refresh.addEventListener('click', reload);
  return { el: section('Schema', refresh, status, error, tables), reload };
}

function schemaTable(t) {
  const details = t.index_details || [];
  const parts = [
    h('h3', { text: t.name }),
    dataTable(`Columns of ${t.name}`, [
      { label: 'Column', cell: (c) => c.name },
      { label: 'Type', cell: (c) => c.type },
      { label: 'Nullable', cell: (c) => (c.nullable ? 'yes' : 'no') },
      { label: 'Default', cell: (c) => (c.default ? code(c.default) : '—') },
      { label: 'Identity', cell: (c) => c.identity || '—' },
    ], t.columns),
  ];
  if (details.length) {
    parts.push(h('h4', { text: 'Indexes' }), dataTable(`Indexes of ${t.name}`, [
      { label: 'Index', cell: (i) => i.name },
      { label: 'Kind', cell: (i) => (i.primary ? 'primary key' : i.unique ? 'unique' : 'index') },
      { label: 'Definition', cell: (i) => code(i.definition) },
    ], details));
  } else if (t.indexes?.length) {
    parts.push(h('p', {}, `Indexes: ${t.indexes.join(', ')}`));
  }
  if (t.foreign_keys?.length) {
    parts.push(h('h4', { text: 'Foreign keys' }), dataTable(`Foreign keys of ${t.name}`, [
      { label: 'Name', cell: (f) => f.name },
      { label: 'Columns', cell: (f) => f.columns.join(', ') },
      { label: 'References', cell: (f) => `${f.references_table} (${f.references_columns.join(', ')})` },
      { label: 'Definition', cell: (f) => code(f.definition) },
    ], t.foreign_keys));
  }
  if (t.checks?.length) {
    parts.push(h('h4', { text: 'Checks' }), dataTable(`Checks of ${t.name}`, [
      { label: 'Name', cell: (c) => c.name },
      { label: 'Definition', cell: (c) => code(c.definition) },
    ], t.checks));
  }
  return h('div', { class: 'schema-table', testid: 'schema-table', 'data-table': t.name }, parts);
}

function changesSection(id, afterChange) {
  const status = statusLine('changes-status');
  const error = alertBox('changes-error');
  const list = h('div');
  const reload = async () => {
    const env = await act({ status, alert: error, working: 'Loading pending changes…', done: '' },
      () => api('GET', `/workspaces/${seg(id)}/diff`));
    if (!env) return;
    if (!env.changes.length) {
      list.replaceChildren(emptyNote('No pending changes: the blueprint is as deployed.'));
      return;
    }
    list.replaceChildren(
      dataTable('Pending changes', [
        { label: 'Id', cell: (c) => String(c.id) },
        { label: 'Kind', cell: (c) => c.tag },
        { label: 'Statement', cell: (c) => code(c.statement) },
        { label: 'Queued', cell: (c) => timeText(c.created_at) },
        { label: 'Actions', cell: (c) => changeActions(c) },
      ], env.changes, { testid: 'changes-table', rowTestid: 'change-row', rowData: (c) => ({ changeId: String(c.id) }) }),
      h('p', {}, link(`/deployments?blueprint=${encodeURIComponent(id)}`, `Deploy ${env.count} change(s)`,
        { testid: 'changes-deploy', class: 'button-link' })));
  };

  function changeActions(c) {
    const skip = button(`Skip change ${c.id}`, { class: 'secondary', testid: 'change-skip' });
    skip.addEventListener('click', async () => {
      const yes = await confirmDialog({ title: 'Skip a change',
        message: `Take change ${c.id} out of the queue? It stays in the workspace's database but will not be deployed.`,
        confirmLabel: 'Skip it' });
      if (!yes) return;
      const env = await act({ button: skip, status, alert: error, working: 'Skipping…' },
        () => api('DELETE', `/workspaces/${seg(id)}/diff/${c.id}`));
      if (!env) return;
      await reload();
      status.textContent = env.message || 'Skipped.';
      afterChange();
    });
    const revert = button(`Revert change ${c.id}`, { class: 'danger', testid: 'change-revert' });
    revert.addEventListener('click', async () => {
      const yes = await confirmDialog({ title: 'Revert a change',
        message: `Run the reverse of change ${c.id} in the workspace (${c.statement})?`, confirmLabel: 'Revert it' });
      if (!yes) return;
      const env = await act({ button: revert, status, alert: error, working: 'Reverting…' },
        () => api('POST', `/workspaces/${seg(id)}/diff/${c.id}/revert`));
      if (!env) return;
      await reload();
      status.textContent = env.message || 'Reverted.';
      afterChange();
    });
    return h('div', { class: 'row-actions' }, skip, revert);
  }

  return { el: section('Pending changes', status, error, list), reload };
}

function importSection(id, afterImport) {
  const template = selectOf([['ecommerce', 'ecommerce'], ['saas', 'saas'], ['blog', 'blog'], ['fintech', 'fintech']],
    { testid: 'import-template' });
  const submit = h('button', { type: 'submit', class: 'secondary', testid: 'import-run' }, 'Import the template');
  const status = statusLine('import-status');
  const error = alertBox('import-error');
  const report = h('div');
  const form = h('form', { class: 'inline-form', 'aria-label': 'Import a schema template' }, field('Template', template), submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const env = await act({ button: submit, status, alert: error, working: 'Importing…' },
      () => api('POST', `/workspaces/${seg(id)}/schema`, { source: 'template', template: template.value }));
    if (!env) return;
    const d = env.details || {};
    status.textContent = `${env.message || 'Imported.'} ${d.statements_executed ?? 0} run, ${d.statements_skipped ?? 0} skipped, ${d.statements_failed ?? 0} failed.`;
    report.replaceChildren(env.errors?.length
      ? dataTable('Import errors', [
        { label: 'Statement', cell: (e) => code(e.statement) },
        { label: 'Error', cell: (e) => e.error },
      ], env.errors)
      : '');
    afterImport();
  });
  return section('Import a schema', form, status, error, report);
}

const SETTING_LABELS = {
  query_timeout_ms: ['Query timeout (ms)', 'number'],
  max_rows_per_query: ['Rows per query at most', 'number'],
  max_connections: ['Connections at most', 'number'],
  pool_mode: ['Pool mode', 'pool'],
  max_client_connections: ['Client sessions at most (transaction pooling)', 'number'],
  default_ttl: ['Default TTL of keys (s, empty for none)', 'nullable'],
  max_keys: ['Keys per tenant at most (empty for no limit)', 'nullable'],
  patterns: ['Patterns (JSON, e.g. {"cache:*": {"ttl": 300}})', 'json'],
};

function settingsSection(id, ctx) {
  const status = statusLine('settings-status');
  const error = alertBox('settings-error');
  const body = h('div');
  (async () => {
    const env = await act({ status, alert: error, working: 'Loading settings…', done: '' },
      () => api('GET', `/workspaces/${seg(id)}/settings`));
    if (!env || ctx.signal.aborted) return;
    body.replaceChildren(settingsForm(id, env, status, error));
  })();
  return section('Settings', body, status, error);
}

function settingsForm(id, env, status, error) {
  const fields = env.available_fields || Object.keys(env.settings);
  const inputs = {};
  const form = h('form', { class: 'grid-form', 'aria-label': 'Workspace settings', testid: 'settings-form' });
  for (const name of fields) {
    const [label, kind] = SETTING_LABELS[name] || [name, 'text'];
    const current = env.settings[name];
    let input;
    if (kind === 'pool') {
      input = selectOf([['session', 'session'], ['transaction', 'transaction']], { value: current });
    } else if (kind === 'json') {
      input = h('textarea', { rows: '3', spellcheck: 'false', class: 'code-input' });
      input.value = current ? JSON.stringify(current) : '';
    } else {
      input = h('input', { type: kind === 'text' ? 'text' : 'number', min: '0', value: current ?? '' });
    }
    input.dataset.testid = `settings-${name}`;
    inputs[name] = { input, kind, current };
    form.append(field(label, input));
  }
  const save = h('button', { type: 'submit', class: 'primary', testid: 'settings-save' }, 'Save the settings');
  form.append(h('div', { class: 'actions' }, save));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    let patch;
    try {
      patch = settingsPatch(inputs);
    } catch (e) {
      showError(error, e);
      return;
    }
    if (!Object.keys(patch).length) {
      status.textContent = 'Nothing changed.';
      return;
    }
    const saved = await act({ button: save, status, alert: error, working: 'Saving…' },
      () => api('PATCH', `/workspaces/${seg(id)}/settings`, patch));
    if (!saved) return;
    for (const [name, entry] of Object.entries(inputs)) entry.current = saved.settings[name];
    status.textContent = saved.message || 'Saved.';
  });
  return form;
}

/** The fields whose inputs changed, in the API's types. */
function settingsPatch(inputs) {
  const patch = {};
  for (const [name, { input, kind, current }] of Object.entries(inputs)) {
    const raw = input.value.trim();
    let value;
    if (kind === 'pool' || kind === 'text') value = raw;
    else if (kind === 'number') {
      // An emptied box is not 0: say so rather than send a limit of nothing.
      if (raw === '') throw new Error(`${name}: a number is required`);
      value = Number(raw);
    } else if (kind === 'nullable') value = raw === '' ? null : Number(raw);
    else if (kind === 'json') {
      try {
        value = raw === '' ? null : JSON.parse(raw);
      } catch (e) {
        throw new Error(`${name}: not JSON (${e.message})`);
      }
    }
    if (JSON.stringify(value) !== JSON.stringify(current ?? (kind === 'number' ? undefined : null))) patch[name] = value;
  }
  return patch;
}

// ---------------------------------------------------------------------------------------------
// Blueprints

async function pageBlueprints(ctx) {
  const error = alertBox('blueprints-error');
  ctx.root.append(error);
  const env = await act({ alert: error }, () => api('GET', '/blueprints'));
  if (!env || ctx.signal.aborted) return;
  if (!env.blueprints.length) {
    ctx.root.append(emptyNote('No blueprints: a workspace in tenant mode makes one.'));
    return;
  }
  ctx.root.append(dataTable('Blueprints', [
    { label: 'Blueprint', cell: (b) => link(`/blueprints/${seg(b.name)}`, b.name) },
    { label: 'Database', cell: (b) => b.database },
    { label: 'Workspace', cell: (b) => link(`/workspaces/${seg(b.workspace_id)}`, b.workspace_id) },
    { label: 'Current version', cell: (b) => String(b.current_version) },
    { label: 'Tenants', cell: (b) => String(b.tenant_count) },
  ], env.blueprints, { testid: 'blueprints-table', rowTestid: 'blueprint-row', rowData: (b) => ({ blueprint: b.name }) }));
}

async function pageBlueprint(ctx) {
  const name = ctx.params.name;
  const error = alertBox('blueprint-error');
  ctx.root.append(error);
  const [bp, versions] = await Promise.all([
    act({ alert: error }, () => api('GET', `/blueprints/${seg(name)}`)),
    act({ alert: error }, () => api('GET', `/blueprints/${seg(name)}/versions`)),
  ]);
  if (ctx.signal.aborted) return;
  if (bp) {
    ctx.root.append(section('Current version',
      definitionList([
        ['Database', String(bp.database)],
        ['Workspace', link(`/workspaces/${seg(bp.workspace_id)}`, bp.workspace_id)],
        ['Current version', String(bp.current_version)],
        ['Tenants', String(bp.tenant_count)],
      ]),
      bp.schema?.length ? h('pre', { class: 'ddl', testid: 'blueprint-schema', text: bp.schema.map((s) => `${s};`).join('\n') })
        : emptyNote('No DDL yet.', 'blueprint-schema'),
      h('p', {}, link(`/deployments?blueprint=${encodeURIComponent(name)}`, 'Deploy this blueprint',
        { class: 'button-link', testid: 'blueprint-deploy' }))));
  }
  if (versions) {
    ctx.root.append(section('Versions', versions.versions.length
      ? dataTable('Versions', [
        { label: 'Version', cell: (v) => String(v.version) },
        { label: 'Statements', cell: (v) => String(v.ddl_count) },
        { label: 'Deployed', cell: (v) => timeText(v.deployed_at) },
        { label: 'DDL', cell: (v) => h('details', {}, h('summary', { text: `Show ${v.ddl_count} statement(s)` }),
          h('pre', { class: 'ddl', text: v.statements.map((s) => `${s};`).join('\n') })) },
      ], versions.versions, { testid: 'versions-table', rowTestid: 'version-row', rowData: (v) => ({ version: String(v.version) }) })
      : emptyNote('No version deployed yet.')));
  }
}

// ---------------------------------------------------------------------------------------------
// Deployments

async function pageDeployments(ctx) {
  const historyError = alertBox('deployments-error');
  const history = h('div');
  ctx.root.append(await deployForm(ctx), section('History', historyError, history));
  const env = await act({ alert: historyError }, () => api('GET', '/deployments'));
  if (!env || ctx.signal.aborted) return;
  history.replaceChildren(env.deployments.length ? deploymentsTable(env.deployments) : emptyNote('No deployments yet.'));
}

function deploymentsTable(items) {
  return dataTable('Deployments', [
    { label: 'Deployment', cell: (d) => link(`/deployments/${seg(d.id)}`, d.id) },
    { label: 'Blueprint', cell: (d) => d.blueprint_name },
    { label: 'Version', cell: (d) => String(d.version) },
    { label: 'Status', cell: (d) => badge(d.status) },
    { label: 'Dry run', cell: (d) => (d.dry_run ? 'yes' : 'no') },
    { label: 'Tenants', cell: (d) => `${d.tenants_completed} done, ${d.tenants_failed} failed of ${d.tenants_total}` },
    { label: 'Created', cell: (d) => timeText(d.created_at) },
    { label: 'Finished', cell: (d) => timeText(d.finished_at) },
  ], items, { testid: 'deployment-history', rowTestid: 'deployment-row', rowData: (d) => ({ deploymentId: d.id }) });
}

async function deployForm(ctx) {
  const error = alertBox('deploy-error');
  const status = statusLine('deploy-status');
  const blueprints = await act({ alert: error }, () => api('GET', '/blueprints'));
  const names = (blueprints?.blueprints || []).map((b) => [b.name, `${b.name} (version ${b.current_version})`]);
  const wanted = ctx.query.get('blueprint') || '';
  if (wanted && !names.some(([n]) => n === wanted)) names.unshift([wanted, wanted]);
  const blueprint = selectOf(names.length ? names : [['', 'No blueprint yet']], { testid: 'deploy-blueprint', required: true });
  if (wanted) blueprint.value = wanted;
  const version = selectOf([['', 'A new version from the pending changes']], { testid: 'deploy-version' });
  const tenants = h('input', { type: 'text', autocomplete: 'off', testid: 'deploy-tenants' });
  const dryRun = h('input', { type: 'checkbox', testid: 'deploy-dry-run' });
  const start = h('button', { type: 'submit', class: 'primary', testid: 'deploy-start', disabled: !names.length }, 'Start the deployment');
  const loadVersions = async () => {
    version.replaceChildren(h('option', { value: '', text: 'A new version from the pending changes (or the current one again)' }));
    if (!blueprint.value) return;
    const env = await act({ alert: error }, () => api('GET', `/blueprints/${seg(blueprint.value)}/versions`));
    for (const v of env?.versions || []) {
      version.append(h('option', { value: String(v.version), text: `Version ${v.version} (${v.ddl_count} statements)` }));
    }
  };
  blueprint.addEventListener('change', loadVersions);
  const form = h('form', { class: 'grid-form', 'aria-label': 'Start a deployment' },
    field('Blueprint', blueprint),
    field('Version', version),
    field('Only these tenants (optional)', tenants, 'Comma-separated tenant ids; every tenant of the blueprint when empty.'),
    checkField('Dry run: apply and roll back on every tenant, change nothing', dryRun),
    h('div', { class: 'actions' }, start));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { blueprint_name: blueprint.value, dry_run: dryRun.checked };
    if (version.value) body.version = Number(version.value);
    const ids = splitList(tenants.value);
    if (ids.length) body.tenant_ids = ids;
    else body.deploy_all = true;
    const env = await act({ button: start, status, alert: error, working: 'Starting the deployment…' },
      () => api('POST', '/deployments', body));
    if (!env) return;
    navigate(`/deployments/${seg(env.id)}`);
  });
  await loadVersions();
  return section('Start a deployment', form, status, error);
}

async function pageDeployment(ctx) {
  const id = ctx.params.id;
  const statusText = h('strong', { testid: 'deployment-status', text: '…' });
  const progress = h('progress', { max: '1', value: '0', testid: 'deployment-progress', 'aria-label': 'Tenants done' });
  const counts = h('p', { testid: 'deployment-counts' });
  const poll = statusLine('deployment-poll');
  const error = alertBox('deployment-error');
  const facts = h('div');
  const results = h('div');
  ctx.root.append(
    h('p', {}, 'Deployment ', code(id)),
    h('div', { class: 'card' },
      h('p', { class: 'big', 'aria-live': 'polite' }, 'Status: ', statusText),
      progress, counts, poll, error, facts),
    section('Tenants', results));
  let lastStatus = '';
  poll.textContent = 'Following the deployment: it updates every second.';
  while (!ctx.signal.aborted) {
    let env;
    try {
      env = await api('GET', `/deployments/${seg(id)}`);
      clearAlert(error);
    } catch (e) {
      if (ctx.signal.aborted) return;
      showError(error, e);
      if (e.status && e.status < 500 && e.status !== 429) {
        poll.textContent = 'Stopped following: the deployment cannot be read.';
        return;
      }
      await sleep(2000, ctx.signal);
      continue;
    }
    if (ctx.signal.aborted) return;
    if (env.status !== lastStatus) statusText.textContent = env.status;
    lastStatus = env.status;
    const done = env.tenants_completed + env.tenants_failed;
    progress.max = Math.max(env.tenants_total, 1);
    progress.value = env.tenants_total ? done : (FINAL_DEPLOYMENT.has(env.status) ? 1 : 0);
    counts.textContent = `${env.tenants_completed} completed, ${env.tenants_failed} failed, ${env.tenants_total} in all.`;
    facts.replaceChildren(definitionList([
      ['Blueprint', link(`/blueprints/${seg(env.blueprint_name)}`, env.blueprint_name)],
      ['Version', String(env.version)],
      ['Dry run', env.dry_run ? 'yes: applied and rolled back, nothing changed' : 'no'],
      ['Created', timeText(env.created_at)],
      ['Started', timeText(env.started_at)],
      ['Finished', timeText(env.finished_at)],
    ]));
    results.replaceChildren(env.results?.length
      ? dataTable('Tenant results', [
        { label: 'Tenant', cell: (r) => link(`/tenants/${seg(r.tenant_id)}`, r.tenant_id) },
        { label: 'Status', cell: (r) => badge(r.status) },
        { label: 'Duration', cell: (r) => r.duration || '—' },
        { label: 'Error', cell: (r) => (r.error ? h('span', { class: 'error-text', text: r.error }) : '—') },
      ], env.results, { testid: 'deployment-results', rowTestid: 'deployment-result-row', rowData: (r) => ({ tenant: r.tenant_id }) })
      : emptyNote('No tenant to deploy to.', 'deployment-results'));
    if (FINAL_DEPLOYMENT.has(env.status)) {
      poll.textContent = `Finished: ${env.status}.`;
      return;
    }
    await sleep(1000, ctx.signal);
  }
}

// ---------------------------------------------------------------------------------------------
// Tenants

async function pageTenants(ctx) {
  const error = alertBox('tenants-error');
  const search = h('input', { type: 'search', autocomplete: 'off', testid: 'tenant-search', value: ctx.query.get('q') || '' });
  const statusFilter = selectOf([['', 'any status'], ['ready', 'ready'], ['suspended', 'suspended'], ['deleted', 'in the trash'],
    ['provisioning', 'provisioning'], ['restoring', 'restoring'], ['syncing', 'syncing'], ['migrating', 'migrating'],
    ['recovering', 'recovering'], ['failed', 'failed']], { testid: 'tenant-status-filter', value: ctx.query.get('status') || '' });
  const pageInfo = statusLine('tenants-page');
  const list = h('div');
  const prev = button('Previous page', { class: 'secondary', testid: 'tenants-prev' });
  const next = button('Next page', { class: 'secondary', testid: 'tenants-next' });
  const filters = h('form', { class: 'inline-form', role: 'search', 'aria-label': 'Search tenants' },
    field('Search tenants', search), field('Status', statusFilter));
  filters.addEventListener('submit', (event) => event.preventDefault());
  ctx.root.append(section('All tenants', filters, error, list, h('div', { class: 'pager' }, prev, pageInfo, next)));

  let tenants = [];
  let page = Math.max(1, Number(ctx.query.get('page')) || 1);
  const show = () => {
    const q = search.value.trim().toLowerCase();
    const matching = tenants.filter((t) => (!q || t.tenant_id.toLowerCase().includes(q)
      || t.databases.some((d) => d.blueprint.toLowerCase().includes(q)))
      && (!statusFilter.value || t.status === statusFilter.value));
    const pages = Math.max(1, Math.ceil(matching.length / TENANTS_PER_PAGE));
    page = Math.min(page, pages);
    const shown = matching.slice((page - 1) * TENANTS_PER_PAGE, page * TENANTS_PER_PAGE);
    list.replaceChildren(shown.length ? tenantsTable(shown) : emptyNote(tenants.length ? 'No tenant matches.' : 'No tenants yet: create one below.'));
    pageInfo.textContent = `Page ${page} of ${pages} · ${matching.length} of ${tenants.length} tenants`;
    prev.disabled = page <= 1;
    next.disabled = page >= pages;
    setQuery({ q: search.value.trim(), status: statusFilter.value, page: page > 1 ? page : '' });
  };
  search.addEventListener('input', () => { page = 1; show(); });
  statusFilter.addEventListener('change', () => { page = 1; show(); });
  prev.addEventListener('click', () => { page -= 1; show(); });
  next.addEventListener('click', () => { page += 1; show(); });
  const load = async () => {
    const env = await act({ status: pageInfo, alert: error, working: 'Loading tenants…' }, () => api('GET', '/tenants'));
    if (!env || ctx.signal.aborted) return;
    tenants = env.tenants;
    show();
  };
  ctx.root.append(await createTenantSection(load));
  await load();
}

function tenantsTable(items) {
  return dataTable('Tenants', [
    { label: 'Tenant', cell: (t) => link(`/tenants/${seg(t.tenant_id)}`, t.tenant_id) },
    { label: 'Status', cell: (t) => badge(t.status) },
    { label: 'Isolation', cell: (t) => [...new Set(t.databases.map((d) => d.isolation_level))].join(', ') || '—' },
    { label: 'Databases', cell: (t) => databasesText(t.databases) },
    { label: 'Created', cell: (t) => timeText(t.created_at) },
  ], items, { testid: 'tenants-table', rowTestid: 'tenant-row', rowData: (t) => ({ tenant: t.tenant_id }) });
}

function databasesText(databases) {
  return databases.map((d) => {
    const behind = d.behind ? ` (${d.behind.versions} behind)` : '';
    return `${d.blueprint} · ${d.database_type} · v${d.version}${behind}`;
  }).join('; ') || '—';
}

async function createTenantSection(reload) {
  const error = alertBox('tenant-create-error');
  const status = statusLine('tenant-create-status');
  const [blueprints, regions] = await Promise.all([
    act({ alert: error }, () => api('GET', '/blueprints')),
    act({ alert: error }, () => api('GET', '/regions')),
  ]);
  const tenantId = h('input', { type: 'text', required: true, autocomplete: 'off', pattern: '[a-z][a-z0-9_]{0,62}', testid: 'tenant-create-id' });
  const bpOptions = (blueprints?.blueprints || []).map((b) => [b.name, `${b.name} (version ${b.current_version})`]);
  const blueprint = selectOf(bpOptions.length ? bpOptions : [['', 'No blueprint yet']], { testid: 'tenant-create-blueprint' });
  const isolation = selectOf([['L1', 'L1: a database on a shared server'], ['L2', 'L2: a server of its own']], { testid: 'tenant-create-isolation' });
  const regionOptions = (regions?.regions || []).map((r) => [r.zone, `${r.label || r.zone}${r.is_default ? ' (default)' : ''}`]);
  const region = selectOf([['', 'the default region'], ...regionOptions], { testid: 'tenant-create-region' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'tenant-create', disabled: !bpOptions.length }, 'Create the tenant');
  const result = h('div');
  const form = h('form', { class: 'grid-form', 'aria-label': 'Create a tenant' },
    field('Tenant id', tenantId, 'Lower-case letters, digits and _, starting with a letter.'),
    field('Blueprint', blueprint, bpOptions.length ? 'A blueprint must have been deployed once.' : 'Create a workspace in tenant mode and deploy it first.'),
    field('Isolation', isolation),
    field('Region', region),
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const database = { blueprint: blueprint.value, isolation_level: isolation.value };
    if (region.value) database.region = region.value;
    const env = await act({ button: submit, status, alert: error, working: 'Creating the tenant (its database is made now)…' },
      () => api('POST', '/tenants', { tenant_id: tenantId.value.trim(), databases: [database] }));
    if (!env) return;
    tenantId.value = '';
    status.textContent = env.status === 'provisioning'
      ? `Tenant ${env.tenant_id} is provisioning: its server is being made. Its page shows when it is ready; create a login there then.`
      : `Tenant ${env.tenant_id} created (${env.status}).`;
    const items = env.databases.filter((d) => d.connection).map((d, i) => ({
      label: `Connection string (${d.blueprint})`, value: d.connection.connection_string,
      testid: i === 0 ? 'tenant-connection-string' : `tenant-connection-string-${i}`,
    }));
    result.replaceChildren(
      items.length ? oncePanel(`Tenant ${env.tenant_id}`, items, 'A login for this tenant alone, shown only this once. Copy the connection string now.') : '',
      h('p', {}, link(`/tenants/${seg(env.tenant_id)}`, `Open tenant ${env.tenant_id}`, { testid: 'tenant-open' })));
    // The Copy button of the first connection string is tenant-connection-copy.
    const copy = result.querySelector('[data-testid="tenant-connection-string-copy"]');
    if (copy) copy.dataset.testid = 'tenant-connection-copy';
    await reload();
  });
  return section('Create a tenant', form, status, error, result);
}

function tenantNav(id, current) {
  const tabs = [['overview', '', 'Overview'], ['backups', '/backups', 'Backups'], ['logs', '/logs', 'Logs'], ['stats', '/stats', 'Statistics']];
  return h('nav', { class: 'tabs', 'aria-label': `Tenant ${id}`, testid: 'tenant-nav' },
    h('ul', {}, tabs.map(([key, suffix, label]) => h('li', {},
      link(`/tenants/${seg(id)}${suffix}`, label, { testid: `tenant-tab-${key}`, 'aria-current': key === current ? 'page' : null })))));
}

const TENANT_BUSY = new Set(['provisioning', 'syncing', 'migrating', 'restoring', 'recovering']);

async function pageTenant(ctx) {
  const id = ctx.params.id;
  ctx.root.append(tenantNav(id, 'overview'));
  const body = h('div');
  ctx.root.append(body);
  const load = async () => {
    const tenant = await api('GET', `/tenants/${seg(id)}`);
    if (ctx.signal.aborted) return null;
    body.replaceChildren(
      tenantStateSection(tenant, load),
      tenantDatabasesSection(tenant),
      credentialSection(tenant),
      moveSection(tenant, load, ctx),
      recoverySection(tenant, load, ctx));
    body.append(await tenantHistorySection(id));
    return tenant;
  };
  const tenant = await load();
  // While tdb works on the tenant (provisioning, a move, a recovery, a rollback), follow it.
  if (tenant && TENANT_BUSY.has(tenant.status)) followTenant(ctx, id, load);
}

/** Reloads the tenant page every 2 s while the tenant is busy. */
async function followTenant(ctx, id, load) {
  while (!ctx.signal.aborted) {
    await sleep(2000, ctx.signal);
    if (ctx.signal.aborted) return;
    try {
      const t = await load();
      if (!t || !TENANT_BUSY.has(t.status)) return;
    } catch (error) {
      showPageError(error);
      return;
    }
  }
}

function tenantStateSection(t, reload) {
  const status = statusLine('tenant-action-status');
  const error = alertBox('tenant-action-error');
  const id = t.tenant_id;
  const enc = seg(id);
  const transition = (label, testid, enabled, working, run, confirm) => {
    const btn = button(label, { class: confirm?.danger === false || !confirm ? 'secondary' : 'danger', testid, disabled: !enabled });
    btn.addEventListener('click', async () => {
      if (confirm && !(await confirmDialog(confirm))) return;
      const env = await act({ button: btn, status, alert: error, working }, run);
      if (!env) return;
      if (testid === 'tenant-hard-delete') {
        session.notice = env.message || `Tenant ${id} deleted for good.`;
        navigate('/tenants');
        return;
      }
      const message = env.message || 'Done.';
      await reload().catch(showPageError);
      const fresh = document.querySelector('[data-testid="tenant-action-status"]');
      if (fresh) fresh.textContent = message;
    });
    return btn;
  };
  const s = t.status;
  return section('State',
    definitionList([
      ['Status', h('span', { testid: 'tenant-status' }, badge(s))],
      ['Created', timeText(t.created_at)],
      ['In the trash since', t.deleted_at ? timeText(t.deleted_at) : undefined],
    ]),
    h('div', { class: 'row-actions' },
      transition('Suspend', 'tenant-suspend', s === 'ready', 'Suspending…',
        () => api('POST', `/tenants/${enc}/suspend`),
        { title: 'Suspend a tenant', message: `Suspend ${id}? Its clients are disconnected and refused until it is resumed.`,
          confirmLabel: 'Suspend', danger: false }),
      transition('Resume', 'tenant-resume', s === 'suspended', 'Resuming…', () => api('POST', `/tenants/${enc}/resume`)),
      transition('Move to the trash', 'tenant-trash', s !== 'deleted', 'Moving to the trash…',
        () => api('DELETE', `/tenants/${enc}`),
        { title: 'Move a tenant to the trash', message: `Move ${id} to the trash? It stops serving; it can be restored later.`, confirmLabel: 'Move to the trash' }),
      transition('Restore from the trash', 'tenant-restore', s === 'deleted', 'Restoring (databases behind are brought to the current version)…',
        () => api('POST', `/tenants/${enc}/restore`)),
      transition('Delete for good', 'tenant-hard-delete', true, 'Deleting the databases, roles, backups and logins…',
        () => api('DELETE', `/tenants/${enc}?hard=true`),
        { title: 'Delete a tenant for good', message: `Delete ${id} for good: its databases, roles, backups and logins are dropped. This cannot be undone.`,
          confirmLabel: 'Delete for good', typed: id })),
    status, error, lastRollbackFacts(t.last_rollback));
}

function lastRollbackFacts(r) {
  if (!r) return '';
  return h('div', { testid: 'last-rollback' }, h('h3', { text: 'Last rollback' }), definitionList([
    ['Step', badge(r.step)],
    ['Backup', code(r.storage_path)],
    ['Progress', r.bytes_total ? `${bytesText(r.bytes_done)} of ${bytesText(r.bytes_total)}` : '—'],
    ['Error', r.error ? h('span', { class: 'error-text', text: r.error }) : undefined],
    ['Started', timeText(r.created_at)],
    ['Finished', timeText(r.finished_at)],
  ]));
}

function tenantDatabasesSection(t) {
  const status = statusLine();
  const error = alertBox();
  const table = dataTable('Databases', [
    { label: 'Blueprint', cell: (d) => link(`/blueprints/${seg(d.blueprint)}`, d.blueprint) },
    { label: 'Type', cell: (d) => d.database_type },
    { label: 'Isolation', cell: (d) => d.isolation_level },
    { label: 'Region', cell: (d) => d.region },
    { label: 'Version', cell: (d) => `${d.version} of ${d.blueprint_version}` },
    { label: 'Behind', cell: (d) => behindCell(d, status, error) },
    { label: 'Connection', cell: (d) => connectionText(d.connection) },
  ], t.databases, { testid: 'tenant-databases' });
  return section('Databases', table, status, error,
    h('p', { class: 'hint', text: 'Passwords are masked: they are shown once, when the tenant or a login is created.' }));
}

function connectionText(c) {
  if (!c) return '—';
  return h('span', {}, `${c.host}:${c.port} · ${c.database} · ${c.username}`, h('br'), code(c.connection_string));
}

function behindCell(d, status, error) {
  if (!d.behind) return 'current';
  const b = d.behind;
  const btn = button('Deploy the current version', { class: 'secondary', testid: 'tenant-catch-up' });
  btn.addEventListener('click', async () => {
    const env = await act({ button: btn, status, alert: error, working: 'Starting the deployment…' },
      () => api(b.request.method, b.request.path, b.request.body));
    if (env) navigate(`/deployments/${seg(env.id)}`);
  });
  return h('div', {}, `${b.versions} version(s) behind`, b.error ? h('p', { class: 'error-text', text: b.error }) : '', btn);
}

function credentialSection(t) {
  const role = selectOf([['write', 'write: reads and writes rows'], ['read', 'read: SELECT only']], { testid: 'credential-role' });
  const blueprint = selectOf(t.databases.map((d) => [d.blueprint, d.blueprint]), { testid: 'credential-blueprint' });
  const submit = h('button', { type: 'submit', class: 'secondary', testid: 'credential-create' }, 'Create a login');
  const status = statusLine();
  const error = alertBox('credential-error');
  const result = h('div');
  const form = h('form', { class: 'inline-form', 'aria-label': 'Create a login' }, field('Role', role), field('Database', blueprint), submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { role: role.value };
    if (blueprint.value) body.blueprint = blueprint.value;
    const env = await act({ button: submit, status, alert: error, working: 'Creating a login…' },
      () => api('POST', `/tenants/${seg(t.tenant_id)}/credentials`, body));
    if (!env) return;
    status.textContent = `Login ${env.username} (${env.role}) created.`;
    result.replaceChildren(oncePanel(`Login ${env.username}`, [
      { label: 'Connection string', value: env.connection?.connection_string, testid: 'credential-connection-string' },
    ]));
  });
  return section('Logins', h('p', { class: 'hint', text: 'A new login for the proxy, for this tenant alone (admin keys only).' }), form, status, error, result);
}

function moveSection(t, reload, ctx) {
  const status = statusLine('move-status');
  const error = alertBox('move-error');
  const blueprint = selectOf(t.databases.map((d) => [d.blueprint, d.blueprint]), { testid: 'move-blueprint' });
  const level = selectOf([['1', 'L1: a shared server'], ['2', 'L2: a server of its own']], { testid: 'move-level' });
  const region = h('input', { type: 'text', autocomplete: 'off', testid: 'move-region' });
  const server = h('input', { type: 'text', autocomplete: 'off', testid: 'move-server' });
  const submit = h('button', { type: 'submit', class: 'secondary', testid: 'move-start' }, 'Move the database');
  const ready = t.status === 'ready';
  const fieldset = h('fieldset', { disabled: !ready },
    h('legend', { text: 'Move one database' }),
    field('Database', blueprint), field('Isolation level', level),
    field('Region (optional)', region, 'A zone of this server\'s regions; where it is now when empty.'),
    field('Shared server (optional, L1)', server, 'Rebalance onto this shared server; placement\'s choice when empty.'),
    h('div', { class: 'actions' }, submit));
  const form = h('form', { class: 'grid-form', 'aria-label': 'Move a database' }, fieldset);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { isolation_level: Number(level.value), blueprint: blueprint.value };
    if (region.value.trim()) body.region = region.value.trim();
    if (server.value.trim()) body.server = server.value.trim();
    const yes = await confirmDialog({ title: 'Move a database',
      message: `Move ${t.tenant_id}'s ${body.blueprint} database to L${body.isolation_level}? It keeps serving; the cutover holds its queries briefly.`,
      confirmLabel: 'Move it', danger: false });
    if (!yes) return;
    const env = await act({ button: submit, status, alert: error, working: 'Starting the move…' },
      () => api('PATCH', `/tenants/${seg(t.tenant_id)}/isolation`, body));
    if (!env) return;
    status.textContent = `${env.message} Following the move…`;
    await reload().catch(showPageError);
    followTenant(ctx, t.tenant_id, reload);
  });
  const reason = ready ? null : h('p', { class: 'hint', text: `Moves need the tenant ready; it is ${t.status}.` });
  return section('Isolation and moves', reason, form, status, error, moveFacts(t.last_move));
}

function moveFacts(m) {
  if (!m) return '';
  return h('div', { testid: 'last-move' }, h('h3', { text: 'Last move' }), definitionList([
    ['Step', badge(m.step)],
    ['Database', m.blueprint],
    ['From', `L${m.from} (${m.from_region})`],
    ['To', `L${m.to} (${m.to_region})`],
    ['Method', m.method || '—'],
    ['Held queries for', m.held_ms === null || m.held_ms === undefined ? '—' : `${m.held_ms} ms`],
    ['Error', m.error ? h('span', { class: 'error-text', text: m.error }) : undefined],
    ['Started', timeText(m.created_at)],
    ['Finished', timeText(m.finished_at)],
  ]), historyList(m.history));
}

function historyList(lines) {
  if (!lines?.length) return '';
  return h('ol', { class: 'history' }, lines.map((line) => h('li', { text: line })));
}

function recoverySection(t, reload, ctx) {
  const status = statusLine('recover-status');
  const error = alertBox('recover-error');
  const parts = [];
  if (t.pitr) {
    parts.push(h('p', {}, 'Recoverable from ', timeText(t.pitr.from), ' to ', timeText(t.pitr.to), '.'));
  } else {
    parts.push(h('p', { class: 'notice', testid: 'recover-unavailable',
      text: `Point-in-time recovery is not available now: ${t.pitr_unavailable || 'the archive holds no base backup of this tenant yet'}.` }));
  }
  const timestamp = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', testid: 'recover-timestamp',
    value: t.pitr ? t.pitr.to : '', placeholder: '2026-02-03T17:10:59Z' });
  const blueprint = selectOf(t.databases.map((d) => [d.blueprint, d.blueprint]), { testid: 'recover-blueprint' });
  const submit = h('button', { type: 'submit', class: 'danger', testid: 'recover-start' }, 'Recover to this moment');
  const fieldset = h('fieldset', { disabled: !t.pitr || t.status !== 'ready' },
    h('legend', { text: 'Recover to a moment' }),
    field('Moment (ISO 8601 with a time zone)', timestamp),
    t.databases.length > 1 ? field('Database', blueprint) : '',
    h('div', { class: 'actions' }, submit));
  const form = h('form', { class: 'grid-form', 'aria-label': 'Point-in-time recovery' }, fieldset);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { timestamp: timestamp.value.trim() };
    if (t.databases.length > 1) body.blueprint = blueprint.value;
    const yes = await confirmDialog({ title: 'Recover a tenant',
      message: `Recover ${t.tenant_id} to ${body.timestamp}? What was written after that moment is no longer served (the original is kept for a while and the recovery can be undone).`,
      confirmLabel: 'Recover' });
    if (!yes) return;
    const env = await act({ button: submit, status, alert: error, working: 'Starting the recovery…' },
      () => api('POST', `/tenants/${seg(t.tenant_id)}/recover`, body));
    if (!env) return;
    status.textContent = `${env.message} Following it…`;
    await reload().catch(showPageError);
    followTenant(ctx, t.tenant_id, reload);
  });
  parts.push(form);
  if (t.recovery_undo?.available) {
    const undo = button('Undo the last recovery', { class: 'danger', testid: 'recover-undo' });
    undo.addEventListener('click', async () => {
      const yes = await confirmDialog({ title: 'Undo a recovery',
        message: `Swap back to the original kept on ${t.recovery_undo.original_host} (${t.recovery_undo.expires_in} left)? What was written to the recovered copy goes with it.`,
        confirmLabel: 'Undo the recovery' });
      if (!yes) return;
      const env = await act({ button: undo, status, alert: error, working: 'Undoing the recovery (up to 30 s)…' },
        () => api('POST', `/tenants/${seg(t.tenant_id)}/recover-undo`));
      if (!env) return;
      status.textContent = env.message || 'Undone.';
      await reload().catch(showPageError);
    });
    parts.push(h('p', {}, `The last recovery can be undone until ${new Date(t.recovery_undo.expires_at).toLocaleString()}. `, undo));
  }
  if (t.last_recovery) parts.push(recoveryFacts(t.last_recovery));
  return section('Point-in-time recovery', ...parts, status, error);
}

function recoveryFacts(r) {
  return h('div', { testid: 'last-recovery' }, h('h3', { text: 'Last recovery' }), definitionList([
    ['Step', badge(r.step)],
    ['Database', r.blueprint],
    ['To the moment', timeText(r.target_timestamp)],
    ['Held queries for', r.held_ms === null || r.held_ms === undefined ? '—' : `${r.held_ms} ms`],
    ['Error', r.error ? h('span', { class: 'error-text', text: r.error }) : undefined],
    ['Started', timeText(r.created_at)],
    ['Finished', timeText(r.finished_at)],
  ]), historyList(r.history));
}

async function tenantHistorySection(id) {
  const error = alertBox();
  const env = await act({ alert: error }, () => api('GET', `/tenants/${seg(id)}/deployments?limit=20`));
  const body = !env ? '' : env.deployments.length
    ? dataTable('Deployments of this tenant', [
      { label: 'Deployment', cell: (d) => link(`/deployments/${seg(d.deployment_id)}`, d.deployment_id) },
      { label: 'Blueprint', cell: (d) => d.blueprint_name },
      { label: 'Version', cell: (d) => String(d.version) },
      { label: 'Dry run', cell: (d) => (d.dry_run ? 'yes' : 'no') },
      { label: 'Status', cell: (d) => badge(d.status) },
      { label: 'Duration', cell: (d) => d.duration || '—' },
      { label: 'Error', cell: (d) => d.error || '—' },
      { label: 'When', cell: (d) => timeText(d.created_at) },
    ], env.deployments, { testid: 'tenant-deployments' })
    : emptyNote('No deployment has reached this tenant yet.', 'tenant-deployments');
  return section('Deployment history', error, body);
}

// ---------------------------------------------------------------------------------------------
// Tenant backups

async function pageTenantBackups(ctx) {
  const id = ctx.params.id;
  const enc = seg(id);
  const status = statusLine('backup-status');
  const error = alertBox('backup-error');
  const rollbackStatus = statusLine('rollback-status');
  const rollbackError = alertBox('rollback-error');
  const list = h('div');
  const lastRollback = h('div');
  const now = button('Back up now', { class: 'primary', testid: 'backup-now' });
  ctx.root.append(tenantNav(id, 'backups'),
    section('Back up', h('p', { class: 'hint', text: 'A dump of each database of the tenant, streamed into the backup store.' }), now, status, error),
    section('Backups', rollbackStatus, rollbackError, list, lastRollback));

  const load = async () => {
    const env = await api('GET', `/tenants/${enc}/backups`);
    if (ctx.signal.aborted) return null;
    list.replaceChildren(env.backups.length ? backupsTable(env.backups) : emptyNote('No backups yet.'));
    return env.backups;
  };

  const backupsTable = (items) => dataTable('Backups', [
    { label: 'Taken', cell: (b) => b.date, class: 'nowrap' },
    { label: 'Kind', cell: (b) => b.type },
    { label: 'Database', cell: (b) => `${b.blueprint} (${b.database_type})` },
    { label: 'Status', cell: (b) => badge(b.status) },
    { label: 'Size', cell: (b) => bytesText(b.size_bytes), class: 'nowrap' },
    { label: 'SHA-256', cell: (b) => (b.sha256 ? code(`${b.sha256.slice(0, 12)}…`) : '—') },
    { label: 'Path', cell: (b) => code(b.storage_path) },
    { label: 'Error', cell: (b) => (b.error ? h('span', { class: 'error-text', text: b.error }) : '—') },
    { label: 'Actions', cell: (b) => rollbackButton(b) },
  ], items, { testid: 'backups-table', rowTestid: 'backup-row', rowData: (b) => ({ path: b.storage_path }) });

  const rollbackButton = (b) => {
    const btn = button('Roll back', { class: 'danger', testid: 'backup-rollback', 'data-path': b.storage_path,
      disabled: b.status !== 'completed', 'aria-label': `Roll back to the backup of ${b.date} (${b.blueprint})` });
    btn.addEventListener('click', async () => {
      const yes = await confirmDialog({ title: 'Roll back a tenant',
        message: `Roll ${id}'s ${b.blueprint} database back to the backup of ${b.date}? What was written since is discarded (a safety backup is taken first, so this can itself be rolled back).`,
        confirmLabel: 'Roll back' });
      if (!yes) return;
      const env = await act({ button: btn, status: rollbackStatus, alert: rollbackError, working: 'Starting the rollback…' },
        () => api('POST', `/tenants/${enc}/rollback`, { storage_path: b.storage_path }));
      if (!env) return;
      await followRollback(env.rollback_id);
    });
    return btn;
  };

  const followRollback = async (rollbackId) => {
    rollbackStatus.textContent = 'Rolling back: queued.';
    for (let i = 0; i < 600 && !ctx.signal.aborted; i += 1) {
      let tenant;
      try {
        tenant = await api('GET', `/tenants/${enc}`);
      } catch (e) {
        showError(rollbackError, e);
        return;
      }
      const r = tenant.last_rollback;
      lastRollback.replaceChildren(lastRollbackFacts(r));
      if (r && r.rollback_id === rollbackId) {
        const bytes = r.bytes_total ? ` (${bytesText(r.bytes_done)} of ${bytesText(r.bytes_total)})` : '';
        if (r.step === 'completed') {
          rollbackStatus.textContent = 'Rollback completed: the tenant serves the restored data.';
          await load().catch((e) => showError(rollbackError, e));
          return;
        }
        if (r.step === 'failed') {
          rollbackStatus.textContent = 'Rollback failed: the tenant keeps its data.';
          showError(rollbackError, new Error(r.error || 'the rollback failed'));
          return;
        }
        rollbackStatus.textContent = `Rolling back: ${r.step}${bytes}…`;
      }
      await sleep(1000, ctx.signal);
    }
  };

  now.addEventListener('click', async () => {
    const env = await act({ button: now, status, alert: error, working: 'Starting the backup…' },
      () => api('POST', `/tenants/${enc}/backup`, {}));
    if (!env) return;
    status.textContent = `${env.message || 'Backup started.'} Waiting for it to finish…`;
    const paths = new Set(env.paths || []);
    for (let i = 0; i < 600 && !ctx.signal.aborted; i += 1) {
      await sleep(1000, ctx.signal);
      let backups;
      try {
        backups = await load();
      } catch (e) {
        showError(error, e);
        return;
      }
      const mine = (backups || []).filter((b) => paths.has(b.storage_path));
      if (mine.length && mine.every((b) => b.status !== 'pending')) {
        const failed = mine.filter((b) => b.status === 'failed');
        status.textContent = failed.length ? 'The backup failed.' : 'Backup completed.';
        if (failed.length) showError(error, new Error(failed.map((b) => `${b.blueprint}: ${b.error}`).join('; ')));
        return;
      }
    }
  });

  const tenant = await api('GET', `/tenants/${enc}`).catch((e) => {
    showError(rollbackError, e);
    return null;
  });
  if (tenant && !ctx.signal.aborted) lastRollback.replaceChildren(lastRollbackFacts(tenant.last_rollback));
  try {
    await load();
  } catch (e) {
    showError(error, e);
  }
  const running = tenant?.last_rollback;
  if (running && !['completed', 'failed'].includes(running.step)) followRollback(running.rollback_id);
}

// ---------------------------------------------------------------------------------------------
// Tenant logs

async function pageTenantLogs(ctx) {
  const id = ctx.params.id;
  const q = ctx.query;
  const type = selectOf([['', 'all statements'], ['error', 'errors only'], ['slow', 'slow only']], { testid: 'logs-type', value: q.get('type') || '' });
  const search = h('input', { type: 'search', autocomplete: 'off', testid: 'logs-search', value: q.get('search') || '' });
  const source = selectOf([['', 'any source'], ['proxy', 'proxy'], ['api', 'API']], { testid: 'logs-source', value: q.get('source') || '' });
  const since = selectOf([['', 'the whole log'], ['1h', 'the last hour'], ['24h', 'the last 24 hours'], ['7d', 'the last 7 days'], ['30d', 'the last 30 days']],
    { testid: 'logs-since', value: q.get('since') || '' });
  const limit = selectOf([['50', '50'], ['100', '100'], ['250', '250'], ['1000', '1000']], { testid: 'logs-limit', value: q.get('limit') || '50' });
  const apply = h('button', { type: 'submit', class: 'primary', testid: 'logs-apply' }, 'Apply the filters');
  const refresh = button('Refresh', { class: 'secondary', testid: 'logs-refresh' });
  const status = statusLine('logs-status');
  const error = alertBox('logs-error');
  const list = h('div');
  const newer = button('Newer', { class: 'secondary', testid: 'logs-newer' });
  const older = button('Older', { class: 'secondary', testid: 'logs-older' });
  const form = h('form', { class: 'grid-form', role: 'search', 'aria-label': 'Filter the log' },
    field('Show', type), field('Search (text in the statement)', search), field('Source', source),
    field('Since', since), field('Per page', limit), h('div', { class: 'actions' }, apply, refresh));
  ctx.root.append(tenantNav(id, 'logs'), section('Filters', form), section('Statements', status, error, list, h('div', { class: 'pager' }, newer, older)));

  let offset = Math.max(0, Number(q.get('offset')) || 0);
  const params = () => ({ type: type.value, search: search.value.trim(), source: source.value, since: since.value, limit: limit.value });
  const load = async () => {
    const p = params();
    setQuery({ ...p, limit: p.limit === '50' ? '' : p.limit, offset: offset || '' });
    const qs = new URLSearchParams({ limit: p.limit, offset: String(offset) });
    for (const key of ['type', 'search', 'source', 'since']) if (p[key]) qs.set(key, p[key]);
    const env = await act({ button: refresh, status, alert: error, working: 'Loading the log…' },
      () => api('GET', `/tenants/${seg(id)}/logs?${qs}`));
    if (!env || ctx.signal.aborted) return;
    const first = env.count ? offset + 1 : offset;
    status.textContent = env.count ? `Statements ${first} to ${offset + env.count}, newest first${env.has_more ? '; older ones follow' : ''}.` : 'No statement matches.';
    list.replaceChildren(env.logs.length ? logsTable(env.logs) : emptyNote('No statement matches these filters.', 'logs-empty'));
    newer.disabled = offset === 0;
    older.disabled = !env.has_more;
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    offset = 0;
    load();
  });
  refresh.addEventListener('click', load);
  newer.addEventListener('click', () => {
    offset = Math.max(0, offset - Number(limit.value));
    load();
  });
  older.addEventListener('click', () => {
    offset += Number(limit.value);
    load();
  });
  await load();
}

function logsTable(logs) {
  return dataTable('Query log', [
    { label: 'When', cell: (l) => timeText(l.created_at) },
    { label: 'Statement', cell: (l) => code(l.query), class: 'wide' },
    { label: 'Outcome', cell: (l) => (l.success ? badge('ok') : h('span', {}, badge('failed'), ` ${l.error_code || ''}`)) },
    { label: 'Duration', cell: (l) => msText(l.duration_ms) },
    { label: 'Rows', cell: (l) => (l.rows === null || l.rows === undefined ? '—' : String(l.rows)) },
    { label: 'Source', cell: (l) => l.source },
    { label: 'User', cell: (l) => l.username },
    { label: 'Database', cell: (l) => l.database },
  ], logs, { testid: 'logs-table', rowTestid: 'log-row', rowData: (l) => ({ logId: String(l.id) }) });
}

// ---------------------------------------------------------------------------------------------
// Tenant statistics

const WINDOW_SECONDS = { '1h': 3600, '24h': 86400, '7d': 7 * 86400, '30d': 30 * 86400 };
const BUCKET_SECONDS = { hour: 3600, day: 86400, week: 7 * 86400 };
/** The stylesheet's phone layout starts at this width. */
const NARROW_SCREEN = '(max-width: 40rem)';

async function pageTenantStats(ctx) {
  const id = ctx.params.id;
  const enc = seg(id);
  const error = alertBox('stats-error');
  const windowSel = selectOf([['1h', 'the last hour'], ['24h', 'the last 24 hours'], ['7d', 'the last 7 days'], ['30d', 'the last 30 days']],
    { testid: 'stats-window', value: ctx.query.get('window') || '24h' });
  const bucketSel = selectOf([['', 'automatic'], ['hour', 'hour'], ['day', 'day'], ['week', 'week']],
    { testid: 'stats-bucket', value: ctx.query.get('bucket') || '' });
  const apply = h('button', { type: 'submit', class: 'primary', testid: 'stats-apply' }, 'Show');
  const totals = h('div');
  const summary = h('div');
  const chart = h('div');
  const status = statusLine();
  const form = h('form', { class: 'inline-form', 'aria-label': 'Chart window' }, field('Window', windowSel), field('Bucket', bucketSel), apply);
  ctx.root.append(tenantNav(id, 'stats'), error,
    section('The whole log', totals),
    section('Queries and latency over time', form, status, summary, chart));

  const loadTotals = async () => {
    const s = await act({ alert: error }, () => api('GET', `/tenants/${enc}/logs/stats`));
    if (!s || ctx.signal.aborted) return;
    totals.replaceChildren(definitionList([
      ['Statements', String(s.total_queries)],
      ['Successful', String(s.successful)],
      ['Failed', String(s.failed)],
      ['Through the proxy', String(s.by_source?.proxy ?? 0)],
      ['Through the API', String(s.by_source?.api ?? 0)],
      ['Average duration', msText(s.avg_duration_ms)],
      [`Slow (${s.slow_threshold_ms} ms or more)`, String(s.slow_queries)],
    ], 'stats-totals'));
  };
  const loadMetrics = async () => {
    setQuery({ window: windowSel.value === '24h' ? '' : windowSel.value, bucket: bucketSel.value });
    const qs = new URLSearchParams({ window: windowSel.value });
    if (bucketSel.value) qs.set('bucket', bucketSel.value);
    const m = await act({ button: apply, status, alert: error, working: 'Loading…', done: '' },
      () => api('GET', `/tenants/${enc}/metrics?${qs}`));
    if (!m || ctx.signal.aborted) return;
    const l = m.latency_ms || {};
    summary.replaceChildren(definitionList([
      ['Statements', String(m.queries)],
      ['Failed', String(m.failed)],
      ['Slow', String(m.slow)],
      ['Success rate', m.success_rate === null || m.success_rate === undefined ? '—' : `${Number(m.success_rate).toFixed(1)} %`],
      ['Latency avg / p50 / p95 / p99 / max', [l.avg, l.p50, l.p95, l.p99, l.max].map(msText).join(' / ')],
      ['Bucket', m.bucket],
    ], 'stats-summary'));
    shown = m;
    drawChart();
  };
  let shown = null;
  const drawChart = () => {
    if (!shown) return;
    chart.replaceChildren(shown.series.length ? metricsChart(shown) : emptyNote('No statements in this window.', 'stats-empty'),
      shown.series.length ? seriesTable(shown.series) : '');
  };
  // The chart is drawn for the screen's width: draw it again when that changes class.
  window.matchMedia(NARROW_SCREEN).addEventListener('change', drawChart, { signal: ctx.signal });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    loadMetrics();
  });
  await Promise.all([loadTotals(), loadMetrics()]);
}

function seriesTable(series) {
  return h('details', {}, h('summary', { text: 'The same as a table' }), dataTable('Statements per bucket', [
    { label: 'From', cell: (b) => timeText(b.start) },
    { label: 'Statements', cell: (b) => String(b.queries) },
    { label: 'Failed', cell: (b) => String(b.failed) },
    { label: 'Slow', cell: (b) => String(b.slow) },
    { label: 'Average', cell: (b) => msText(b.avg_ms) },
    { label: 'p95', cell: (b) => msText(b.p95_ms) },
  ], series, { testid: 'stats-series-table' }));
}

/** A chart of statements per bucket (bars, left axis) and latency (lines, right axis). */
function metricsChart(m) {
  // A narrower drawing on a narrow screen keeps its labels readable once scaled down.
  const narrow = window.matchMedia(NARROW_SCREEN).matches;
  const W = narrow ? 330 : 720;
  const H = narrow ? 230 : 280;
  const pad = { left: 40, right: 58, top: 16, bottom: 40 };
  const plotW = W - pad.left - pad.right;
  const plotH = H - pad.top - pad.bottom;
  const bucketMs = (BUCKET_SECONDS[m.bucket] || 3600) * 1000;
  const starts = m.series.map((b) => new Date(b.start).getTime());
  const end = Math.max(Date.now(), ...starts.map((s) => s + bucketMs));
  const begin = Math.min(end - (WINDOW_SECONDS[m.window] || 86400) * 1000, ...starts);
  const x = (t) => pad.left + ((t - begin) / Math.max(end - begin, 1)) * plotW;
  const maxQ = niceCeiling(Math.max(...m.series.map((b) => b.queries)));
  const maxMs = niceCeiling(Math.max(...m.series.flatMap((b) => [b.avg_ms || 0, b.p95_ms || 0])));
  const yQ = (v) => pad.top + plotH - (v / maxQ) * plotH;
  const yMs = (v) => pad.top + plotH - (v / maxMs) * plotH;
  const topQ = Math.max(...m.series.map((b) => b.queries));
  const topMs = Math.max(...m.series.flatMap((b) => [b.avg_ms || 0, b.p95_ms || 0]));
  const label = `Statements and latency per ${m.bucket} over ${m.window}: at most ${topQ} statements in a ${m.bucket}, latency at most ${topMs.toFixed(1)} ms`;
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, class: 'chart', testid: 'stats-chart' },
    svg('title', { text: label }));
  const axes = svg('g', { class: 'axis' },
    svg('line', { x1: pad.left, y1: pad.top + plotH, x2: pad.left + plotW, y2: pad.top + plotH }),
    svg('line', { x1: pad.left, y1: pad.top, x2: pad.left, y2: pad.top + plotH }),
    svg('line', { x1: pad.left + plotW, y1: pad.top, x2: pad.left + plotW, y2: pad.top + plotH }));
  for (const f of [0, 0.5, 1]) {
    const yy = pad.top + plotH - f * plotH;
    axes.append(svg('line', { class: 'grid', x1: pad.left, y1: yy, x2: pad.left + plotW, y2: yy }),
      svg('text', { x: pad.left - 6, y: yy + 4, 'text-anchor': 'end', text: axisNumber(maxQ * f) }),
      svg('text', { x: pad.left + plotW + 6, y: yy + 4, 'text-anchor': 'start', text: `${axisNumber(maxMs * f)} ms` }));
  }
  for (const f of [0, 0.5, 1]) {
    const t = begin + f * (end - begin);
    const anchor = f === 0 ? 'start' : f === 1 ? 'end' : 'middle';
    axes.append(svg('text', { x: x(t), y: H - 14, 'text-anchor': anchor, text: shortTime(t, m.window) }));
  }
  chart.append(axes);
  const bars = svg('g', { class: 'bars' });
  const barW = Math.max(3, (bucketMs / Math.max(end - begin, 1)) * plotW - 2);
  m.series.forEach((b, i) => {
    const bx = x(starts[i]);
    bars.append(svg('rect', { x: bx + 1, y: yQ(b.queries), width: barW, height: Math.max(0, pad.top + plotH - yQ(b.queries)) },
      svg('title', { text: `${new Date(b.start).toLocaleString()}: ${b.queries} statements, ${b.failed} failed` })));
  });
  chart.append(bars);
  for (const [key, cls] of [['avg_ms', 'line-avg'], ['p95_ms', 'line-p95']]) {
    const points = m.series.map((b, i) => (b[key] === null || b[key] === undefined ? null
      : `${(x(starts[i]) + barW / 2 + 1).toFixed(1)},${yMs(b[key]).toFixed(1)}`)).filter(Boolean);
    if (!points.length) continue;
    chart.append(svg('polyline', { class: cls, points: points.join(' ') }));
    for (const p of points) {
      const [cx, cy] = p.split(',');
      chart.append(svg('circle', { class: cls, cx, cy, r: 3 }));
    }
  }
  const legend = h('ul', { class: 'legend' },
    h('li', {}, h('span', { class: 'swatch swatch-bars', 'aria-hidden': 'true' }), `Statements per ${m.bucket} (left axis)`),
    h('li', {}, h('span', { class: 'swatch swatch-avg', 'aria-hidden': 'true' }), 'Average latency (right axis)'),
    h('li', {}, h('span', { class: 'swatch swatch-p95', 'aria-hidden': 'true' }), 'p95 latency (right axis)'));
  return h('figure', { class: 'chart-figure' }, chart, h('figcaption', {}, legend));
}

/** The smallest of 2, 4, 6, 8 or 10 times a power of ten at or above `n`: an axis top whose half
 * is a round number. */
function niceCeiling(n) {
  if (!(n > 0)) return 2;
  const power = 10 ** Math.floor(Math.log10(n));
  for (const step of [2, 4, 6, 8, 10]) if (step * power >= n) return step * power;
  return 10 * power;
}

function axisNumber(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(value < 1 ? 2 : 1);
}

function shortTime(t, windowName) {
  const d = new Date(t);
  if (windowName === '1h' || windowName === '24h') return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' });
}

// ---------------------------------------------------------------------------------------------
// Provisioned databases and registered connections (/api/v1: fields inside `data`)

async function pageProvisioned(ctx) {
  const status = statusLine('provision-status');
  const error = alertBox('provision-error');
  const listError = alertBox('provisioned-error');
  const usage = h('p', { testid: 'provisioned-usage' });
  const list = h('div');
  const name = h('input', { type: 'text', required: true, maxlength: '200', autocomplete: 'off', testid: 'provision-name' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'provision-create' }, 'Provision a database');
  const result = h('div');
  const form = h('form', { class: 'inline-form', 'aria-label': 'Provision a database' }, field('Name', name), submit);
  ctx.root.append(
    h('p', { class: 'hint', text: 'A PostgreSQL database of its own on the shared server, with a login that reaches nothing else (the AutoDB-compatible /api/v1 surface).' }),
    section('Provision a database', form, status, error, result),
    section('Your provisioned databases', usage, listError, list));

  const load = async () => {
    const env = await act({ alert: listError }, () => api('GET', '/api/v1/provision'));
    if (!env || ctx.signal.aborted) return;
    const data = env.data || {};
    usage.textContent = `${data.count} of ${data.limit} used by this account (across its projects).`;
    list.replaceChildren(data.databases?.length ? dataTable('Provisioned databases', [
      { label: 'Name', cell: (d) => d.name },
      { label: 'Id', cell: (d) => code(d.id) },
      { label: 'Schema', cell: (d) => code(d.schema_name) },
      { label: 'Status', cell: (d) => badge(d.status) },
      { label: 'Created', cell: (d) => timeText(d.created_at) },
      { label: 'Actions', cell: (d) => h('div', { class: 'row-actions' },
        link(`/connections/${seg(d.connection_id)}`, `Introspect ${d.name}`), deleteButton(d)) },
    ], data.databases, { testid: 'provisioned-table', rowTestid: 'provisioned-row', rowData: (d) => ({ id: d.id }) })
      : emptyNote('No provisioned databases.'));
  };

  const deleteButton = (d) => {
    const btn = button(`Delete ${d.name}`, { class: 'danger', testid: 'provisioned-delete', 'data-id': d.id });
    btn.addEventListener('click', async () => {
      const yes = await confirmDialog({ title: 'Delete a provisioned database',
        message: `Delete "${d.name}": its schema, data, database and login are dropped. This cannot be undone.`,
        confirmLabel: 'Delete it', typed: d.name });
      if (!yes) return;
      const env = await act({ button: btn, status, alert: listError, working: `Deleting ${d.name}…` },
        () => api('DELETE', `/api/v1/provision/${seg(d.id)}`));
      if (!env) return;
      status.textContent = `${d.name} is ${env.data?.status || 'deleted'}.`;
      await load();
    });
    return btn;
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const env = await act({ button: submit, status, alert: error, working: 'Provisioning…' },
      () => api('POST', '/api/v1/provision', { name: name.value.trim() }));
    if (!env) return;
    const d = env.data || {};
    name.value = '';
    status.textContent = `Database ${d.name} is ${d.status}.`;
    result.replaceChildren(oncePanel(`Database ${d.name}`, [
      { label: 'Connection string', value: d.connection_string, testid: 'provision-connection-string' },
    ]));
    await load();
  });
  await load();
}

const DB_TYPES = ['postgresql', 'supabase', 'postgres_gcp', 'postgresql_aws', 'postgresql_local'];

async function pageConnections(ctx) {
  const status = statusLine('connections-status');
  const listError = alertBox('connections-error');
  const list = h('div');
  ctx.root.append(section('Register a connection', connectionForm(() => load())), section('Registered connections', status, listError, list));

  const load = async () => {
    const env = await act({ alert: listError }, () => api('GET', '/api/v1/connections'));
    if (!env || ctx.signal.aborted) return;
    const items = env.data?.connections || [];
    list.replaceChildren(items.length ? dataTable('Connections', [
      { label: 'Name', cell: (c) => link(`/connections/${seg(c.id)}`, c.name) },
      { label: 'Type', cell: (c) => c.db_type },
      { label: 'Server', cell: (c) => `${c.host}:${c.port}` },
      { label: 'Database', cell: (c) => c.database_name },
      { label: 'Active', cell: (c) => (c.is_active ? 'yes' : 'no') },
      { label: 'Introspected', cell: (c) => timeText(c.last_introspected_at) },
      { label: 'Created', cell: (c) => timeText(c.created_at) },
      { label: 'Actions', cell: (c) => (c.is_active ? deactivateButton(c) : '—') },
    ], items, { testid: 'connections-table', rowTestid: 'connection-row', rowData: (c) => ({ id: c.id }) })
      : emptyNote('No registered connections.'));
  };

  const deactivateButton = (c) => {
    const btn = button(`Deactivate ${c.name}`, { class: 'danger', testid: 'connection-deactivate', 'data-id': c.id });
    btn.addEventListener('click', async () => {
      const yes = await confirmDialog({ title: 'Deactivate a connection',
        message: `Deactivate "${c.name}"? It can no longer be introspected or queried.`, confirmLabel: 'Deactivate' });
      if (!yes) return;
      const env = await act({ button: btn, status, alert: listError, working: 'Deactivating…' },
        () => api('DELETE', `/api/v1/connections/${seg(c.id)}`));
      if (!env) return;
      status.textContent = `${c.name} deactivated.`;
      await load();
    });
    return btn;
  };
  await load();
}

function connectionForm(reload) {
  const name = h('input', { type: 'text', required: true, maxlength: '200', autocomplete: 'off', testid: 'connection-name' });
  const type = selectOf(DB_TYPES.map((t) => [t, t]), { testid: 'connection-type' });
  const url = h('input', { type: 'password', required: true, minlength: '10', autocomplete: 'off', testid: 'connection-string' });
  const excluded = h('input', { type: 'text', autocomplete: 'off', testid: 'connection-excluded' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'connection-create' }, 'Register');
  const status = statusLine();
  const error = alertBox('connection-create-error');
  const form = h('form', { class: 'grid-form', 'aria-label': 'Register a connection' },
    field('Name', name), field('Type', type),
    field('Connection string', url, 'postgresql://user:password@host:5432/db; sealed, never shown again.'),
    field('Excluded schemas (optional)', excluded, 'Comma-separated; Supabase\'s own schemas when empty.'),
    h('div', { class: 'actions' }, submit), status, error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { name: name.value.trim(), db_type: type.value, connection_string: url.value.trim() };
    if (excluded.value.trim()) body.excluded_schemas = splitList(excluded.value);
    const env = await act({ button: submit, status, alert: error, working: 'Registering…' },
      () => api('POST', '/api/v1/connections', body));
    if (!env) return;
    url.value = '';
    name.value = '';
    status.textContent = `Connection ${env.data?.name} registered.`;
    await reload();
  });
  return form;
}

async function pageConnection(ctx) {
  const id = ctx.params.id;
  const enc = seg(id);
  const env = await api('GET', `/api/v1/connections/${enc}`);
  if (ctx.signal.aborted) return;
  const c = env.data || {};
  const lastRead = h('span', { testid: 'connection-last-introspected' }, timeText(c.last_introspected_at));
  ctx.heading.textContent = `Connection ${c.name}`;
  document.title = `Connection ${c.name} · tdb console`;
  ctx.root.append(section('Details', definitionList([
    ['Id', code(c.id)],
    ['Type', c.db_type],
    ['Server', `${c.host}:${c.port}`],
    ['Database', c.database_name],
    ['Excluded schemas', (c.excluded_schemas || []).join(', ') || 'none'],
    ['Active', c.is_active ? 'yes' : 'no'],
    ['Last introspected', lastRead],
    ['Created', timeText(c.created_at)],
  ], 'connection-detail')), introspectSection(enc, (at) => {
    lastRead.replaceChildren(timeText(at));
  }), connectionQuerySection(enc));
}

/** The introspection of a connection; `introspected(at)` hears when one has been read. */
function introspectSection(enc, introspected) {
  const run = button('Introspect', { class: 'primary', testid: 'connection-introspect' });
  const status = statusLine('introspect-status');
  const error = alertBox('introspect-error');
  const result = h('div', { testid: 'introspection' });
  run.addEventListener('click', async () => {
    const env = await act({ button: run, status, alert: error, working: 'Reading the database…' },
      () => api('GET', `/api/v1/connections/${enc}/introspect`));
    if (!env) return;
    const d = env.data || {};
    status.textContent = `${d.table_count} table(s) in ${d.schemas?.length || 0} schema(s), read ${new Date(d.introspected_at).toLocaleString()}.`;
    result.replaceChildren(...(d.schemas || []).map(schemaOverview));
    introspected(d.introspected_at);
  });
  return section('Introspection', run, status, error, result);
}

function schemaOverview(s) {
  return h('div', { class: 'schema-overview' }, h('h3', { text: `Schema ${s.name}` }),
    s.tables.length ? s.tables.map((t) => h('div', { class: 'schema-table' },
      h('h4', { text: `${t.name} (${t.kind}${t.row_estimate === null || t.row_estimate === undefined ? '' : `, about ${t.row_estimate} row${t.row_estimate === 1 ? '' : 's'}`})` }),
      dataTable(`Columns of ${s.name}.${t.name}`, [
        { label: 'Column', cell: (c) => c.name },
        { label: 'Type', cell: (c) => c.type },
        { label: 'Nullable', cell: (c) => (c.nullable ? 'yes' : 'no') },
        { label: 'Default', cell: (c) => (c.default ? code(c.default) : '—') },
      ], t.columns),
      h('p', {}, `Primary key: ${t.primary_key?.length ? t.primary_key.join(', ') : 'none'}`),
      t.indexes?.length ? dataTable(`Indexes of ${s.name}.${t.name}`, [
        { label: 'Index', cell: (i) => i.name },
        { label: 'Columns', cell: (i) => i.columns.join(', ') },
        { label: 'Kind', cell: (i) => (i.primary ? 'primary key' : i.unique ? 'unique' : 'index') },
        { label: 'Definition', cell: (i) => code(i.definition) },
      ], t.indexes) : '',
      t.foreign_keys?.length ? dataTable(`Foreign keys of ${s.name}.${t.name}`, [
        { label: 'Name', cell: (f) => f.name },
        { label: 'Columns', cell: (f) => f.columns.join(', ') },
        { label: 'References', cell: (f) => `${f.ref_schema}.${f.ref_table} (${f.ref_columns.join(', ')})` },
        { label: 'On update / delete', cell: (f) => `${f.on_update} / ${f.on_delete}` },
      ], t.foreign_keys) : ''))
      : emptyNote('No tables.'));
}

function connectionQuerySection(enc) {
  const input = h('textarea', { rows: '5', spellcheck: 'false', class: 'code-input', testid: 'connection-query-input' });
  const run = h('button', { type: 'submit', class: 'primary', testid: 'connection-query-run' }, 'Run');
  const status = statusLine('connection-query-status');
  const error = alertBox('connection-query-error');
  const result = h('div', { testid: 'connection-query-result' });
  const form = h('form', { class: 'stack', 'aria-label': 'Query the connection' }, field('SQL', input, 'Runs as the connection\'s own user.'),
    h('div', { class: 'actions' }, run));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    result.replaceChildren();
    const env = await act({ button: run, status, alert: error, working: 'Running…' },
      () => api('POST', `/api/v1/connections/${enc}/query`, { query: input.value }));
    if (!env) return;
    const d = env.data || {};
    status.textContent = queryMeta(d);
    result.replaceChildren(resultTable(d, 'Query result'));
  });
  return section('Query', form, status, error, result);
}

// ---------------------------------------------------------------------------------------------
// Servers (operators)

async function pageServers(ctx) {
  const status = statusLine('servers-status');
  const error = alertBox('servers-error');
  const list = h('div');
  ctx.root.append(h('p', { class: 'hint', text: 'The servers tdb places databases on. Only the accounts named in the operators setting see them.' }),
    status, error, list);
  const load = async () => {
    const env = await act({ alert: error }, () => api('GET', '/servers'));
    if (!env || ctx.signal.aborted) return;
    list.replaceChildren(env.servers.length ? dataTable('Servers', [
      { label: 'Server', cell: (s) => s.name },
      { label: 'Engine', cell: (s) => s.engine },
      { label: 'Role', cell: (s) => s.role },
      { label: 'Region', cell: (s) => s.region },
      { label: 'Status', cell: (s) => badge(s.status) },
      { label: 'Tenants', cell: (s) => String(s.tenants) },
      { label: 'Databases', cell: (s) => `${s.databases}${s.max_databases ? ` of ${s.max_databases}` : ''}` },
      { label: 'Size', cell: (s) => bytesText(s.size_bytes) },
      { label: 'Archive', cell: (s) => archiveText(s.archive) },
      { label: 'Actions', cell: (s) => serverActions(s) },
    ], env.servers, { testid: 'servers-table', rowTestid: 'server-row', rowData: (s) => ({ server: s.name }) })
      : emptyNote('No servers.'));
  };
  const serverActions = (s) => {
    const actions = h('div', { class: 'row-actions' });
    if (s.role === 'shared' && (s.status === 'active' || s.status === 'draining')) {
      const draining = s.status === 'draining';
      const btn = button(draining ? `Activate ${s.name}` : `Drain ${s.name}`,
        { class: draining ? 'secondary' : 'danger', testid: draining ? 'server-activate' : 'server-drain' });
      btn.addEventListener('click', async () => {
        if (!draining && !(await confirmDialog({ title: 'Drain a server',
          message: `Drain ${s.name}? It keeps what it holds and takes no new database.`, confirmLabel: 'Drain' }))) return;
        const env = await act({ button: btn, status, alert: error, working: 'Saving…' },
          () => api('PATCH', `/servers/${seg(s.name)}`, { status: draining ? 'active' : 'draining' }));
        if (!env) return;
        await load();
        status.textContent = `${s.name} is ${draining ? 'active' : 'draining'}.`;
      });
      actions.append(btn);
    }
    if (s.archive) {
      const backup = button(`Base backup of ${s.name}`, { class: 'secondary', testid: 'server-backup' });
      backup.addEventListener('click', async () => {
        const env = await act({ button: backup, status, alert: error, working: 'Asking for a base backup…' },
          () => api('POST', `/servers/${seg(s.name)}/backup`));
        if (env) status.textContent = env.message || 'Base backup requested.';
      });
      actions.append(backup);
    }
    return actions.childElementCount ? actions : '—';
  };
  await load();
}

function archiveText(a) {
  if (!a) return 'not archived';
  const parts = [a.ready ? 'ready' : 'not ready'];
  if (a.recoverable_from) parts.push(`from ${new Date(a.recoverable_from).toLocaleString()}`);
  if (a.recoverable_to) parts.push(`to ${new Date(a.recoverable_to).toLocaleString()}`);
  if (a.error) parts.push(`error: ${a.error}`);
  return parts.join(', ');
}

// ---------------------------------------------------------------------------------------------
// Start

async function boot() {
  document.addEventListener('click', onDocumentClick);
  window.addEventListener('popstate', () => {
    if (location.pathname + location.search !== renderedLocation) render({ focus: true });
  });
  try {
    setSession(await api('GET', '/console/session'));
  } catch (error) {
    clearSession();
    if (error.status !== 401) session.notice = `Could not read the session: ${error.message}`;
  }
  await render();
}

boot();
