// Browser test of the tdb web console: drives the real pages in headless Chromium.
//
// Environment:
//   TDB_CONSOLE_URL   base URL of a running `tdb serve` API, e.g. http://127.0.0.1:8080
//   TDB_NODE_MODULES  a node_modules directory holding playwright-core and axe-core
//   TDB_SCREENSHOTS   directory for <page>-desktop.png (1280x800) and <page>-phone.png (375x740)
//   TDB_CHROMIUM      the browser (default /usr/bin/chromium)
//   TDB_PSQL          psql (default: psql on PATH)
//
// One line per step passed; the first failure prints what the page showed and exits 1.

import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const nodeModules = process.env.TDB_NODE_MODULES;
const baseUrl = (process.env.TDB_CONSOLE_URL || '').replace(/\/+$/, '');
const screenshots = process.env.TDB_SCREENSHOTS;
if (!nodeModules || !baseUrl || !screenshots) {
  console.error('FAILED: set TDB_NODE_MODULES, TDB_CONSOLE_URL and TDB_SCREENSHOTS');
  process.exit(2);
}
const require = createRequire(nodeModules.replace(/\/?$/, '/'));
const { chromium } = require('playwright-core');
const axeSource = require('axe-core').source;

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 375, height: 740 };
const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const EMAIL = `console-${run}@example.com`;
const PASSWORD = 'console-flow-password';
const PROJECT = `Console flow ${run}`;
const CSRF_TARGET = `CSRF target ${run}`;
const WORKSPACE = 'notes_app';
const TENANT = 'acme';
const PROVISIONED = `scratch-${run}`;
const CONNECTION = `acme-notes-${run}`;

mkdirSync(screenshots, { recursive: true });

let browser;
let context;
let page;
let stepCount = 0;
const problems = []; // page errors and CSP violations seen since the last step
const pagesChecked = [];

// ---------------------------------------------------------------------------------------------
// Harness

async function step(name, fn) {
  try {
    await fn();
    if (problems.length) throw new Error(`the page reported:\n  ${problems.join('\n  ')}`);
    stepCount += 1;
    console.log(`ok ${stepCount} - ${name}`);
  } catch (error) {
    console.error(`\nFAILED at step "${name}": ${error.stack || error}`);
    await describePage();
    await browser?.close().catch(() => {});
    process.exit(1);
  }
}

async function describePage() {
  if (!page) return;
  try {
    console.error(`page: ${page.url()}`);
    const title = await page.locator('h1').first().textContent({ timeout: 1000 }).catch(() => '?');
    console.error(`h1: ${title}`);
    const alerts = await page.locator('[role="alert"]').allTextContents();
    for (const text of alerts.filter((t) => t.trim())) console.error(`alert: ${text.trim()}`);
    const statuses = await page.locator('[role="status"]').allTextContents();
    for (const text of statuses.filter((t) => t.trim())) console.error(`status: ${text.trim()}`);
    await page.screenshot({ path: path.join(screenshots, 'failure.png'), fullPage: true });
    console.error(`screenshot: ${path.join(screenshots, 'failure.png')}`);
  } catch (error) {
    console.error(`(could not describe the page: ${error.message})`);
  }
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

const byTestId = (id) => page.getByTestId(id);

async function heading(text) {
  const exact = new RegExp(`^\\s*${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`);
  try {
    await page.locator('h1').filter({ hasText: exact }).first().waitFor({ timeout: 15000 });
  } catch {
    const actual = (await page.locator('h1').first().textContent().catch(() => '')).trim();
    throw new Error(`expected the page's h1 to be "${text}", it is "${actual}"`);
  }
}

/** Waits for a status line to read `wanted` (a RegExp), failing early on an alert's text. */
async function waitForText(testid, wanted, { timeout = 30000, alertId } = {}) {
  const deadline = Date.now() + timeout;
  let last = '';
  while (Date.now() < deadline) {
    last = (await byTestId(testid).first().textContent().catch(() => '')) || '';
    if (wanted.test(last)) return last;
    if (alertId) {
      const alert = ((await byTestId(alertId).first().textContent().catch(() => '')) || '').trim();
      if (alert) throw new Error(`${alertId} shows: ${alert}`);
    }
    await page.waitForTimeout(250);
  }
  throw new Error(`${testid} did not come to match ${wanted} within ${timeout} ms; it reads "${last.trim()}"`);
}

async function confirm(typed) {
  const dialog = byTestId('confirm-dialog');
  await dialog.waitFor();
  if (typed !== undefined) await byTestId('confirm-input').fill(typed);
  await byTestId('confirm-ok').click();
  await dialog.waitFor({ state: 'detached' });
}

async function navTo(key, title) {
  await byTestId(`nav-${key}`).click();
  await heading(title);
}

/** axe-core on the page as it is: no violation of serious or critical impact. */
async function axeCheck(label) {
  // The console's CSP refuses inline scripts, so an injected <script> (page.addScriptTag) would
  // be blocked; evaluating the source through the DevTools protocol is not subject to it.
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) {
    const lines = bad.flatMap((v) => [`${v.impact}: ${v.id}: ${v.help} (${v.helpUrl})`,
      ...v.nodes.map((n) => `    ${n.target.join(' ')}: ${n.failureSummary.replace(/\n/g, ' ')}`)]);
    throw new Error(`axe found ${bad.length} serious or critical violation(s) on ${label}:\n${lines.join('\n')}`);
  }
}

/** Screenshots at desktop and phone width, and axe at both. */
async function checkPage(name) {
  await page.waitForLoadState('networkidle').catch(() => {});
  await axeCheck(`${name} (desktop)`);
  await page.screenshot({ path: path.join(screenshots, `${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(150);
  await axeCheck(`${name} (phone)`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow <= 1, `${name}: the page is ${overflow}px wider than a 375px phone screen`);
  await page.screenshot({ path: path.join(screenshots, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(DESKTOP);
  if (!pagesChecked.includes(name)) pagesChecked.push(name);
}

function psql(connection, sql) {
  const result = spawnSync(process.env.TDB_PSQL || 'psql', [connection, '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    { encoding: 'utf8', timeout: 30000 });
  return { ok: result.status === 0, stdout: (result.stdout || '').trim(), stderr: (result.stderr || result.error?.message || '').trim() };
}

async function sessionFromPage() {
  return page.evaluate(async () => {
    const response = await fetch('/console/session', { credentials: 'same-origin' });
    return { status: response.status, body: await response.json() };
  });
}

async function signInWithPassword() {
  await heading('Sign in');
  await byTestId('signin-email').fill(EMAIL);
  await byTestId('signin-password').fill(PASSWORD);
  await byTestId('signin-submit').click();
  await heading('Tenants');
}

/** A page on another origin that posts a form to the console's project switch on load. */
function attackerServer(host, targetProject) {
  // The API reads a body as JSON whatever its Content-Type, so a text/plain form can send
  // JSON: the name `{"project":"` and the value `X"}` post `{"project":"=X"}`.
  const html = `<!doctype html><html lang="en"><head><title>elsewhere</title>
<script src="/submit.js" defer></script></head><body>
<form id="f" method="post" enctype="text/plain" action="${baseUrl}/console/session/project">
<input type="hidden" name='{"project":"' value='${targetProject.replace(/^=/, '')}"}'>
</form></body></html>`;
  const server = http.createServer((req, res) => {
    if (req.url === '/submit.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end("document.getElementById('f').submit();");
    } else {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html);
    }
  });
  return new Promise((resolve) => server.listen(0, host === 'localhost' ? '127.0.0.1' : host, () => {
    resolve({ server, url: `http://${host}:${server.address().port}/` });
  }));
}

// ---------------------------------------------------------------------------------------------
// The flow

browser = await chromium.launch({
  executablePath: process.env.TDB_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
context = await browser.newContext({ viewport: DESKTOP, locale: 'en-GB', timezoneId: 'UTC' });
await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: baseUrl });
page = await context.newPage();
page.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
page.on('console', (message) => {
  const text = message.text();
  if (/Content Security Policy|Refused to (execute|apply|load|connect)/i.test(text)) problems.push(`CSP: ${text}`);
});
page.setDefaultTimeout(20000);

const shared = { connection: '', tenantPassword: '', provisioned: '', provisionedId: '' };

await step('/ redirects to the console, which shows the sign-in page', async () => {
  const response = await page.goto(`${baseUrl}/`);
  expect(response.ok(), `GET / answered ${response.status()}`);
  expect(new URL(page.url()).pathname.startsWith('/console'), `/ led to ${page.url()}`);
  await heading('Sign in');
  const csp = (await response.allHeaders())['content-security-policy'] || '';
  expect(csp.includes("script-src 'self'") && !csp.includes('unsafe-inline'), `the page's CSP is "${csp}"`);
  await checkPage('signin');
});

await step('sign up with a new e-mail: the API key and proxy password are shown once', async () => {
  await byTestId('signin-signup-link').click();
  await heading('Sign up');
  await checkPage('signup');
  await byTestId('signup-email').fill(EMAIL);
  await byTestId('signup-password').fill(PASSWORD);
  await byTestId('signup-project').fill(PROJECT);
  await byTestId('signup-submit').click();
  await byTestId('signup-api-key').waitFor();
  expect((await byTestId('signup-api-key').inputValue()).length > 10, 'no API key shown');
  expect((await byTestId('signup-proxy-password').inputValue()).length > 6, 'no proxy password shown');
  await checkPage('signup-done');
  await byTestId('signup-continue').click();
});

/** The data-testid of the focused element (or its tag when it has none). */
async function focused() {
  return page.evaluate(() => document.activeElement?.dataset?.testid || document.activeElement?.tagName || '');
}

await step('sign in with e-mail and password, by keyboard alone', async () => {
  await heading('Sign in');
  // From where the page put the focus (its heading), Tab reaches the form's fields in order,
  // and Enter submits.
  let presses = 0;
  while ((await focused()) !== 'signin-email') {
    presses += 1;
    expect(presses <= 15, `15 Tab presses did not reach the e-mail field (at ${await focused()})`);
    await page.keyboard.press('Tab');
  }
  await page.keyboard.type(EMAIL);
  await page.keyboard.press('Tab');
  expect((await focused()) === 'signin-password', `Tab from the e-mail field went to ${await focused()}`);
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await heading('Tenants');
  const bar = await byTestId('session-project').textContent();
  expect(bar.includes(PROJECT), `the session bar shows "${bar}"`);
});

await step('the session cookie is HttpOnly, SameSite=Strict, with an expiry; no key reaches the page', async () => {
  const cookies = await context.cookies(baseUrl);
  const cookie = cookies.find((c) => c.name === 'tdb_console');
  expect(cookie, `no tdb_console cookie among ${cookies.map((c) => c.name).join(', ') || 'none'}`);
  expect(cookie.httpOnly === true, 'the cookie is not HttpOnly');
  expect(cookie.sameSite === 'Strict', `the cookie's SameSite is ${cookie.sameSite}`);
  expect(cookie.expires > Date.now() / 1000 + 60, `the cookie expires at ${cookie.expires}`);
  const visible = await page.evaluate(() => document.cookie);
  expect(!visible.includes('tdb_console'), 'page scripts can read the session cookie');
  const { status, body } = await sessionFromPage();
  expect(status === 200, `GET /console/session answered ${status}`);
  expect(!JSON.stringify(body).includes('tdb_sk_'), 'the session answer holds something shaped like a key');
  expect(!('api_key' in body), 'the session answer holds api_key');
});

await step('create a PostgreSQL workspace in tenant mode', async () => {
  await navTo('workspaces', 'Workspaces');
  await byTestId('workspace-name').fill(WORKSPACE);
  await byTestId('workspace-database').selectOption('PostgreSQL');
  await byTestId('workspace-mode').selectOption('tenant');
  await byTestId('workspace-create').click();
  await byTestId('workspace-connection-string').waitFor({ timeout: 60000 });
  const url = await byTestId('workspace-connection-string').inputValue();
  expect(url.startsWith('postgresql://'), `the workspace's connection string is "${url}"`);
  await page.locator(`[data-testid="workspace-row"][data-workspace="${WORKSPACE}"]`).waitFor();
  await checkPage('workspaces');
  await byTestId('workspace-open').click();
  await heading(`Workspace ${WORKSPACE}`);
});

await step('the SQL editor runs DDL and the table shows in the schema', async () => {
  await byTestId('sql-input').fill('CREATE TABLE notes (id serial primary key, body text)');
  await byTestId('sql-run').click();
  await waitForText('sql-status', /^Done/, { alertId: 'sql-error' });
  const table = page.locator('[data-testid="schema-table"][data-table="notes"]');
  await table.waitFor();
  const text = await table.textContent();
  expect(text.includes('body') && text.includes('notes_pkey'), `the schema of notes reads "${text}"`);
  await page.locator('[data-testid="change-row"]').first().waitFor();
});

await step('the SQL editor shows rows as a table and errors with their message and statement', async () => {
  await byTestId('sql-input').fill("INSERT INTO notes (body) VALUES ('designed'); SELECT id, body FROM notes");
  await byTestId('sql-run').click();
  await waitForText('sql-status', /^Done/, { alertId: 'sql-error' });
  const result = await byTestId('result-table').textContent();
  expect(result.includes('designed'), `the result table reads "${result}"`);
  await byTestId('sql-input').fill('SELECT 1; SELECT * FROM no_such_table');
  await byTestId('sql-run').click();
  await byTestId('sql-error').locator('p').waitFor();
  const error = await byTestId('sql-error').textContent();
  expect(/no_such_table/.test(error) && /statement 2/.test(error), `the error reads "${error}"`);
  // The server's position: a caret under the first character of the missing table's name.
  const pointer = await byTestId('sql-error-pointer').textContent();
  expect(pointer === 'SELECT * FROM no_such_table\n              ^', `the error points at "${pointer}"`);
  await checkPage('workspace');
});

await step('blueprints list the workspace\'s blueprint, with its versions page', async () => {
  await navTo('blueprints', 'Blueprints');
  await page.locator(`[data-testid="blueprint-row"][data-blueprint="${WORKSPACE}"]`).waitFor();
  await checkPage('blueprints');
  await page.getByRole('link', { name: WORKSPACE, exact: true }).first().click();
  await heading(`Blueprint ${WORKSPACE}`);
  await checkPage('blueprint');
});

await step('deploy the blueprint and watch the progress view reach the end', async () => {
  await navTo('deployments', 'Deployments');
  await byTestId('deploy-blueprint').selectOption(WORKSPACE);
  expect(!(await byTestId('deploy-dry-run').isChecked()), 'dry run is checked by default');
  await byTestId('deploy-start').click();
  await heading('Deployment');
  const status = await waitForText('deployment-status', /^(completed|completed_with_errors|failed)$/, { timeout: 120000 });
  expect(status === 'completed', `the deployment ended ${status}`);
  await waitForText('deployment-poll', /^Finished/);
  await checkPage('deployment');
  await navTo('deployments', 'Deployments');
  await page.locator('[data-testid="deployment-row"]').first().waitFor();
  await checkPage('deployments');
});

await step('create a tenant and copy its connection string', async () => {
  await navTo('tenants', 'Tenants');
  await byTestId('tenant-create-id').fill(TENANT);
  await byTestId('tenant-create-blueprint').selectOption(WORKSPACE);
  await byTestId('tenant-create').click();
  await byTestId('tenant-connection-string').waitFor({ timeout: 120000 });
  const shown = await byTestId('tenant-connection-string').inputValue();
  await byTestId('tenant-connection-copy').click();
  await waitForText('copy-status', /Copied/);
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  expect(copied === shown && copied.startsWith('postgresql://'), `the clipboard holds "${copied}", the page shows "${shown}"`);
  shared.connection = copied;
  await page.locator(`[data-testid="tenant-row"][data-tenant="${TENANT}"]`).waitFor();
  await byTestId('tenant-search').fill('acm');
  await page.locator(`[data-testid="tenant-row"][data-tenant="${TENANT}"]`).waitFor();
  await checkPage('tenants');
  await byTestId('tenant-search').fill('zzz-nothing');
  await page.locator(`[data-testid="tenant-row"]`).first().waitFor({ state: 'detached' });
  await byTestId('tenant-search').fill('');
});

await step('psql uses the copied connection string', async () => {
  const result = psql(shared.connection, "INSERT INTO notes(body) VALUES ('from psql')");
  expect(result.ok, `psql failed: ${result.stderr}`);
});

await step('the tenant page shows it ready, L1', async () => {
  await page.locator(`[data-testid="tenant-row"][data-tenant="${TENANT}"] a`).first().click();
  await heading(`Tenant ${TENANT}`);
  await waitForText('tenant-status', /^ready$/);
  const databases = await byTestId('tenant-databases').textContent();
  expect(databases.includes('L1'), `the databases read "${databases}"`);
  await checkPage('tenant');
});

await step('the tenant\'s logs show the statement psql ran', async () => {
  await byTestId('tenant-tab-logs').click();
  await heading(`Logs of ${TENANT}`);
  await byTestId('logs-search').fill('from psql');
  await byTestId('logs-source').selectOption('proxy');
  await byTestId('logs-apply').click();
  const deadline = Date.now() + 20000;
  let found = false;
  while (!found && Date.now() < deadline) {
    found = (await page.locator('[data-testid="log-row"]', { hasText: "VALUES ('from psql')" }).count()) > 0;
    if (!found) {
      await page.waitForTimeout(700);
      await byTestId('logs-refresh').click();
    }
  }
  expect(found, 'the INSERT from psql is not in the log after 20 s');
  expect(new URL(page.url()).searchParams.get('search') === 'from psql', `the filters are not in the URL: ${page.url()}`);
  await checkPage('tenant-logs');
});

await step('the tenant\'s statistics chart queries and latency', async () => {
  await byTestId('tenant-tab-stats').click();
  await heading(`Statistics of ${TENANT}`);
  await byTestId('stats-chart').waitFor();
  const bars = await page.locator('[data-testid="stats-chart"] .bars rect').count();
  expect(bars >= 1, 'the chart has no bar');
  await checkPage('tenant-stats');
});

await step('suspend the tenant (psql is refused), then resume it', async () => {
  await byTestId('tenant-tab-overview').click();
  await heading(`Tenant ${TENANT}`);
  await byTestId('tenant-suspend').click();
  await byTestId('confirm-dialog').waitFor();
  await axeCheck('the confirmation dialog');
  await page.screenshot({ path: path.join(screenshots, 'dialog-desktop.png') });
  await confirm();
  await waitForText('tenant-status', /^suspended$/, { alertId: 'tenant-action-error' });
  const refused = psql(shared.connection, 'SELECT 1');
  expect(!refused.ok && /suspended/.test(refused.stderr), `psql on a suspended tenant: ${refused.stderr || refused.stdout}`);
  await byTestId('tenant-resume').click();
  await waitForText('tenant-status', /^ready$/, { alertId: 'tenant-action-error' });
  const back = psql(shared.connection, 'SELECT count(*) FROM notes');
  expect(back.ok && back.stdout === '1', `psql after resume: ${back.stderr || back.stdout}`);
});

await step('back the tenant up now', async () => {
  await byTestId('tenant-tab-backups').click();
  await heading(`Backups of ${TENANT}`);
  await byTestId('backup-now').click();
  await waitForText('backup-status', /^(Backup completed|The backup failed)/, { timeout: 180000, alertId: 'backup-error' });
  const status = await byTestId('backup-status').textContent();
  expect(status.startsWith('Backup completed'), `backup: ${status}`);
});

await step('roll the tenant back to that backup', async () => {
  expect(psql(shared.connection, "INSERT INTO notes(body) VALUES ('after the backup')").ok, 'the second INSERT failed');
  const row = page.locator('[data-testid="backup-row"]', { hasText: 'completed' }).first();
  await row.getByTestId('backup-rollback').click();
  await confirm();
  await waitForText('rollback-status', /^Rollback (completed|failed)/, { timeout: 240000, alertId: 'rollback-error' });
  const rows = psql(shared.connection, 'SELECT string_agg(body, \',\' ORDER BY id) FROM notes');
  expect(rows.ok && rows.stdout === 'from psql', `after the rollback the tenant holds "${rows.stdout}" ${rows.stderr}`);
  await checkPage('tenant-backups');
});

await step('projects: create one (key and proxy password shown once) and list it', async () => {
  await navTo('projects', 'Projects');
  await byTestId('project-name').fill(`=${CSRF_TARGET}`);
  await byTestId('project-create').click();
  await byTestId('project-api-key').waitFor();
  expect((await byTestId('project-proxy-password').inputValue()).length > 6, 'no proxy password shown');
  await page.locator('[data-testid="project-row"]', { hasText: CSRF_TARGET }).waitFor();
  await checkPage('projects');
});

await step('API keys: create a read key scoped to the tenant, shown once', async () => {
  await navTo('apikeys', 'API keys');
  await byTestId('apikey-name').fill('reader');
  await byTestId('apikey-role').selectOption('read');
  await byTestId('apikey-scope-type').selectOption('tenant');
  await byTestId('apikey-scope-values').fill(TENANT);
  await byTestId('apikey-create').click();
  await byTestId('apikey-secret').waitFor();
  await page.locator('[data-testid="apikey-row"]', { hasText: 'reader' }).waitFor();
  await checkPage('apikeys');
});

await step('the provisioned databases, connections and servers pages render', async () => {
  await navTo('databases', 'Provisioned databases');
  await byTestId('provisioned-usage').waitFor();
  await checkPage('databases');
  await navTo('connections', 'Connections');
  await checkPage('connections');
  await navTo('servers', 'Servers');
  await page.locator('[data-testid="servers-table"], [data-testid="servers-error"] p').first().waitFor();
  await checkPage('servers');
});

await step('provision a database on the Databases page: its connection string shown once, then listed', async () => {
  await navTo('databases', 'Provisioned databases');
  await byTestId('provisioned-usage').waitFor();
  const before = await byTestId('provisioned-usage').textContent();
  const used = Number((before.match(/^(\d+) of \d+ used/) || [])[1]);
  expect(Number.isInteger(used), `the usage line reads "${before}"`);
  await byTestId('provision-name').fill(PROVISIONED);
  await byTestId('provision-create').click();
  await byTestId('provision-connection-string').waitFor({ timeout: 60000 }).catch(async () => {
    const alert = ((await byTestId('provision-error').textContent().catch(() => '')) || '').trim();
    throw new Error(`no connection string was shown after provisioning${alert ? `; provision-error shows: ${alert}` : ''}`);
  });
  const url = await byTestId('provision-connection-string').inputValue();
  expect(url.startsWith('postgresql://'), `the provisioned database's connection string is "${url}"`);
  await waitForText('provision-status', new RegExp(`^Database ${PROVISIONED} is active\\.$`), { alertId: 'provision-error' });
  shared.provisioned = url;
  // The connection string routes to the database by its schema's name, which the list shows.
  const database = decodeURIComponent(new URL(url).pathname.slice(1));
  expect(/^tenant_[0-9a-f]+_[0-9a-f]+$/.test(database), `the connection string names the database "${database}"`);
  const row = page.locator('[data-testid="provisioned-row"]', { hasText: PROVISIONED });
  await row.waitFor();
  shared.provisionedId = await row.getAttribute('data-id');
  const text = await row.textContent();
  expect(text.includes(database) && text.includes(shared.provisionedId) && text.includes('active'),
    `the listed database reads "${text}"; expected its id, its schema ${database} and "active"`);
  expect((await row.getByRole('link', { name: `Introspect ${PROVISIONED}` }).count()) === 1, 'the row has no Introspect link');
  await waitForText('provisioned-usage', new RegExp(`^${used + 1} of \\d+ used`));
  // The login works: psql through the proxy, into the database's own schema.
  const made = psql(url, "CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept VALUES (7); SELECT id FROM kept");
  expect(made.ok && made.stdout.split('\n').pop() === '7', `psql on the provisioned database: ${made.stderr || made.stdout}`);
  await checkPage('databases');
  await byTestId('once-dismiss').click();
  await byTestId('once-panel').waitFor({ state: 'detached' });
});

await step('register the tenant\'s connection string on the Connections page', async () => {
  await navTo('connections', 'Connections');
  await byTestId('connection-name').fill(CONNECTION);
  await byTestId('connection-type').selectOption('postgresql');
  await byTestId('connection-string').fill(shared.connection);
  await byTestId('connection-create').click();
  const row = page.locator('[data-testid="connection-row"]', { hasText: CONNECTION });
  await row.waitFor().catch(async () => {
    const alert = ((await byTestId('connection-create-error').textContent().catch(() => '')) || '').trim();
    throw new Error(`the connection is not listed${alert ? `; connection-create-error shows: ${alert}` : ''}`);
  });
  const { hostname, port, pathname } = new URL(shared.connection);
  const text = await row.textContent();
  expect(text.includes(`${hostname}:${port}`) && text.includes(decodeURIComponent(pathname.slice(1))) && /yes/.test(text),
    `the registered connection reads "${text}"; expected ${hostname}:${port}, database ${pathname.slice(1)}, active`);
  expect(!(await page.content()).includes(new URL(shared.connection).password),
    'the page still holds the connection string\'s password after registering');
  await checkPage('connections');
});

await step('the connection\'s page introspects the tenant (the notes table) and runs a query', async () => {
  await page.locator('[data-testid="connection-row"]', { hasText: CONNECTION }).getByRole('link', { name: CONNECTION, exact: true }).click();
  await heading(`Connection ${CONNECTION}`);
  const detail = await byTestId('connection-detail').textContent();
  expect(detail.includes('postgresql') && /Active\s*yes/.test(detail), `the connection's details read "${detail}"`);
  await byTestId('connection-introspect').click();
  await waitForText('introspect-status', /^\d+ table\(s\) in \d+ schema\(s\)/, { timeout: 60000, alertId: 'introspect-error' });
  const status = await byTestId('introspect-status').textContent();
  expect(!/^0 table/.test(status), `introspection: ${status}`);
  const lastRead = await byTestId('connection-last-introspected').textContent();
  expect(lastRead !== '—', `the details still say it was never introspected ("${lastRead}")`);
  const notes = byTestId('introspection').locator('.schema-table', { has: page.locator('h4', { hasText: /^notes \(/ }) });
  await notes.first().waitFor({ timeout: 5000 }).catch(async () => {
    const seen = await byTestId('introspection').locator('h4').allTextContents();
    throw new Error(`the introspection has no notes table; it lists: ${seen.join(', ') || 'nothing'}`);
  });
  const table = await notes.first().textContent();
  expect(table.includes('body') && table.includes('Primary key: id') && table.includes('notes_pkey'),
    `the notes table reads "${table}"`);
  await byTestId('connection-query-input').fill('SELECT id, body FROM notes ORDER BY id');
  await byTestId('connection-query-run').click();
  await waitForText('connection-query-status', /^\d+ rows? · /, { alertId: 'connection-query-error' });
  const rows = await byTestId('connection-query-result').getByTestId('result-table').textContent();
  expect(rows.includes('from psql') && !rows.includes('after the backup'), `the query's result reads "${rows}"`);
  // An error is shown with the server's message, not swallowed.
  await byTestId('connection-query-input').fill('SELECT * FROM no_such_table');
  await byTestId('connection-query-run').click();
  await byTestId('connection-query-error').locator('p').waitFor();
  const error = await byTestId('connection-query-error').textContent();
  expect(/no_such_table/.test(error), `the query error reads "${error}"`);
  await byTestId('connection-query-input').fill('SELECT id, body FROM notes ORDER BY id');
  await byTestId('connection-query-run').click();
  await waitForText('connection-query-status', /^\d+ rows? · /, { alertId: 'connection-query-error' });
  await checkPage('connection');
  // The list says when it was introspected (the sixth column, "—" before).
  await navTo('connections', 'Connections');
  const introspected = page.locator('[data-testid="connection-row"]', { hasText: CONNECTION }).locator('td').nth(5);
  await introspected.locator('time').waitFor({ timeout: 5000 }).catch(async () => {
    throw new Error(`the list's Introspected column reads "${await introspected.textContent()}" after the introspection`);
  });
});

await step('delete the provisioned database through its confirmation dialog', async () => {
  await navTo('databases', 'Provisioned databases');
  const row = page.locator(`[data-testid="provisioned-row"][data-id="${shared.provisionedId}"]`);
  await row.waitFor();
  await row.getByTestId('provisioned-delete').click();
  await byTestId('confirm-dialog').waitFor();
  const message = await byTestId('confirm-message').textContent();
  expect(message.includes(PROVISIONED), `the dialog asks "${message}"`);
  expect(await byTestId('confirm-ok').isDisabled(), 'the dialog confirms before the name is typed');
  await axeCheck('the typed confirmation dialog');
  await confirm(PROVISIONED);
  await waitForText('provision-status', new RegExp(`^${PROVISIONED} is deleted\\.$`), { alertId: 'provisioned-error' });
  await row.waitFor({ state: 'detached' });
  const gone = psql(shared.provisioned, 'SELECT 1');
  expect(!gone.ok, `psql on the deleted database still works: ${gone.stdout}`);
});

await step('sign out: the session ends and the cookie is cleared', async () => {
  await byTestId('sign-out').click();
  await heading('Sign in');
  await waitForText('signin-status', /signed out/);
  const cookie = (await context.cookies(baseUrl)).find((c) => c.name === 'tdb_console' && c.value);
  expect(!cookie, 'the session cookie is still set');
  const { status } = await sessionFromPage();
  expect(status === 401, `GET /console/session after sign-out answered ${status}`);
});

await step('a request without the X-TDB-CSRF header is refused with 403', async () => {
  await signInWithPassword();
  const answers = await page.evaluate(async (target) => {
    const send = async (method, url, headers, body) => {
      const response = await fetch(url, { method, headers, body, credentials: 'same-origin' });
      return response.status;
    };
    const json = { 'content-type': 'application/json' };
    return {
      switchNoHeader: await send('POST', '/console/session/project', json, JSON.stringify({ project: target })),
      switchWrongHeader: await send('POST', '/console/session/project', { ...json, 'x-tdb-csrf': 'wrong' }, JSON.stringify({ project: target })),
      createNoHeader: await send('POST', '/workspaces', json, JSON.stringify({ name: 'csrf_ws', database: 'PostgreSQL', mode: 'tenant' })),
      signOutNoHeader: await send('DELETE', '/console/session', {}),
    };
  }, `=${CSRF_TARGET}`);
  for (const [what, status] of Object.entries(answers)) expect(status === 403, `${what} answered ${status}`);
  const { body } = await sessionFromPage();
  expect(body.project_name === PROJECT, `the session moved to ${body.project_name}`);
});

await step('a cross-site form post is refused and leaves the session as it was', async () => {
  const target = new URL(baseUrl);
  // Another site (localhost and 127.0.0.1 are different sites), and the same site on another
  // port (the cookie goes along there; the CSRF header check alone refuses it).
  const hosts = [target.hostname === 'localhost' ? '127.0.0.1' : 'localhost', target.hostname];
  for (const host of hosts) {
    const { server, url } = await attackerServer(host, `=${CSRF_TARGET}`);
    try {
      const attack = await context.newPage();
      const answer = attack.waitForResponse((r) => r.url().endsWith('/console/session/project'), { timeout: 15000 });
      await attack.goto(url);
      const response = await answer;
      expect(response.status() < 200 || response.status() >= 300,
        `the form post from ${url} answered ${response.status()}: ${await response.text()}`);
      await attack.close();
    } finally {
      server.close();
    }
  }
  const { status, body } = await sessionFromPage();
  expect(status === 200 && body.project_name === PROJECT, `after the posts the session is ${status} ${body.project_name}`);
});

await step('switch projects through the console session, then sign out', async () => {
  await page.goto(`${baseUrl}/console/projects`);
  await heading('Projects');
  await page.locator('[data-testid="project-row"]', { hasText: CSRF_TARGET }).getByTestId('project-switch').click();
  await page.locator('[data-testid="session-project"]', { hasText: CSRF_TARGET }).waitFor();
  await byTestId('sign-out').click();
  await heading('Sign in');
});

await browser.close();
console.log(`console flow: all ${stepCount} steps passed`);
console.log(`pages checked with axe and screenshotted: ${pagesChecked.join(', ')}`);
