// Browser-test helpers: Debian's chromium through playwright-core, the real gateway through the
// integration harness (tests/integration/lib), screenshots under build/screenshots/.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { REPO_ROOT, startGatehouse } from '../integration/lib/index.js';

export * from '../integration/lib/index.js';

// PORTAL_WEB_DIR serves another copy of the portal (e.g. to check that a test fails without a fix).
export const WEB_DIR = process.env.PORTAL_WEB_DIR ? path.resolve(process.env.PORTAL_WEB_DIR) : path.join(REPO_ROOT, 'web');
export const SCREENSHOT_DIR = path.join(process.env.BUILD_DIR ? path.resolve(REPO_ROOT, process.env.BUILD_DIR) : path.join(REPO_ROOT, 'build'), 'screenshots');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// Without the background-networking flags Chromium keeps trying hosts this network refuses.
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Launches chromium; closed after the test. Every page records console errors and failed requests. */
export async function launchBrowser(t) {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 60000 });
  t.after(() => browser.close().catch(() => {}));
  return browser;
}

/**
 * A new browser context + page on the gateway (laptop-sized by default).
 * page.problems collects console errors, page errors, HTTP errors (`http STATUS METHOD PATH`) and requests to
 * other origins (nothing may load from a CDN).
 */
export async function newPage(browser, gh, { viewport = { width: 1366, height: 900 } } = {}) {
  const context = await browser.newContext({ viewport, baseURL: gh.url });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.problems = [];
  page.on('console', (msg) => {
    // Failed responses are recorded below with their URL.
    if (msg.type() === 'error' && !/^Failed to load resource/.test(msg.text())) page.problems.push(`console: ${msg.text()}`);
  });
  page.on('response', (res) => {
    const url = new URL(res.url());
    // 401 from /auth/me is how a signed-out page learns it must sign in: expected, not a problem.
    if (res.status() >= 400 && !(res.status() === 401 && url.pathname === '/auth/me')) {
      page.problems.push(`http ${res.status()} ${res.request().method()} ${url.pathname}`);
    }
  });
  page.on('pageerror', (err) => page.problems.push(`page error: ${err.message}`));
  page.on('request', (req) => {
    const url = req.url();
    if (!url.startsWith(gh.url) && !url.startsWith('data:') && !url.startsWith('blob:')) page.problems.push(`external request: ${url}`);
  });
  return page;
}

/** Saves a full-page screenshot as build/screenshots/<name>.png and returns the path. */
export async function screenshot(page, name) {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** The gateway with the portal's files (GATEHOUSE_WEB_DIR) and an ENCRYPTION_KEY for tenant credentials. */
export async function startPortalGateway({ t, servers = {}, env = {}, ...rest } = {}) {
  if (!fs.existsSync(path.join(WEB_DIR, 'node_modules', 'chart.js'))) {
    throw new Error(`${WEB_DIR}/node_modules/chart.js is missing: run \`npm ci\` in web/ (the test script's pretest does)`);
  }
  return startGatehouse({
    t,
    servers,
    env: {
      GATEHOUSE_WEB_DIR: WEB_DIR,
      ENCRYPTION_KEY: crypto.randomBytes(32).toString('base64'),
      ...env,
    },
    ...rest,
  });
}

/** Signs in through the portal's "Admin API key" form; waits for the result (the app or the no-access page). */
export async function signInWithKey(page, key, { path: start = '/mcp-admin' } = {}) {
  await page.goto(start);
  await page.getByLabel('API key', { exact: true }).fill(key);
  await page.getByRole('button', { name: 'Sign in with the key' }).click();
  await page.locator('nav.sidebar, .noaccess').first().waitFor();
}

/** A user with their own Gatehouse API key, created through the management API as the bootstrap admin. */
export async function userWithKey(gh, email, { name = '' } = {}) {
  const created = await gh.api('POST', '/users', { email, name });
  if (created.status !== 201 && created.status !== 409) throw new Error(`create user ${email}: ${created.status} ${created.text}`);
  const key = await gh.api('POST', '/apikeys', { user_email: email, name: 'browser test' });
  if (key.status !== 201) throw new Error(`create key for ${email}: ${key.status} ${key.text}`);
  return key.body.key;
}

/** Clicks the section link in the sidebar and waits for its heading. */
export async function openSection(page, title) {
  await page.locator('nav.sidebar').getByRole('link', { name: title, exact: true }).click();
  await page.getByRole('heading', { level: 1, name: title }).waitFor();
}
