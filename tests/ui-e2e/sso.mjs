// Single sign-on in a real browser: Debian's Chromium, headless, driven by playwright-core.
//
//   node tests/ui-e2e/sso.mjs <base-url, e.g. https://127.0.0.1:5000/ui/> <screenshot folder>
//
// $PORTCULLIS_E2E_SPEC (JSON, written by tests/sso.rs):
//   {"login": "pat", "provider": "localhost:PORT", "repositories": [...]}
// After the sign-in it makes a CLI access key on its page and prints "key: <secret>" for the
// test to push with.
// The provider (tests/oidc-provider/server.mjs) is on another site than portcullis, so this
// checks what only a browser enforces: the flow cookie comes back with the provider's
// cross-site redirect (SameSite=Lax), and the SameSite=Strict session cookie is in force once
// the callback page has moved on to the UI. Then the list must be exactly the repositories the
// ACL grants the person's groups. Any console or page error fails the run. Prints
// "sso e2e: passed" on success.

import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, outDir] = process.argv.slice(2);
const spec = JSON.parse(process.env.PORTCULLIS_E2E_SPEC || '{}');
mkdirSync(outDir, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const profile = mkdtempSync(join(tmpdir(), 'portcullis-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  ignoreHTTPSErrors: true, // the test CAs are not in this profile
  viewport: { width: 1280, height: 800 },
});
const problems = [];
let failed = false;
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(15000);
  // Only portcullis' own pages count: the provider's development pages load fonts from the
  // internet, which this machine cannot reach.
  const ours = () => new URL(page.url()).origin === new URL(base).origin;
  page.on('console', (msg) => {
    const where = msg.location().url || page.url();
    if (msg.type() === 'error' && ours() && !where.includes(spec.provider)) problems.push(`console: ${msg.text()} (${where})`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  const shot = async (name) => {
    const file = join(outDir, `sso-${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`screenshot: ${file}`);
  };

  await page.goto(base);
  check(page.url() === `${base}login`, `expected the login page, got ${page.url()}`);
  const button = page.locator('a.sso');
  check((await button.textContent()).trim() === `Sign in with ${spec.provider}`,
    `the button says ${await button.textContent()}`);
  await shot('1-login');

  // To the provider and its own login form.
  await Promise.all([page.waitForURL((u) => u.host === spec.provider), button.click()]);
  await page.fill('input[name=login]', spec.login);
  await page.fill('input[name=password]', 'anything');
  await shot('2-provider');
  // Back through the callback, which moves on to the UI by itself.
  await Promise.all([page.waitForURL(base), page.click('button[type=submit]')]);
  check((await page.textContent('header')).includes(spec.login), 'the header does not name the person');
  const names = (await page.locator('ul.repos a').allTextContents()).map((n) => n.trim()).sort();
  check(JSON.stringify(names) === JSON.stringify([...spec.repositories].sort()),
    `list ${JSON.stringify(names)} != ${JSON.stringify(spec.repositories)}`);
  await shot('3-repositories');

  // A CLI access key: made on its page, shown once with the docker login line.
  await Promise.all([page.waitForURL(`${base}keys`), page.click('nav a:text-is("CLI access keys")')]);
  await page.fill('#description', 'e2e laptop');
  check(await page.inputValue('#days') === '90', 'a new key does not default to 90 days');
  await Promise.all([page.waitForLoadState('load'), page.click('main button[type=submit]')]);
  const secret = (await page.textContent('#secret')).trim();
  check(/^pcl_[A-Za-z0-9]{43}$/.test(secret), `no key shown: ${secret}`);
  const line = (await page.textContent('#login-line')).trim();
  const host = new URL(base).host;
  check(line === `echo '${secret}' | docker login ${host} -u ${spec.login} --password-stdin`, `login line: ${line}`);
  check((await page.textContent('ul.keys')).includes('e2e laptop'), 'the new key is not listed');
  await shot('4-cli-key');
  console.log(`key: ${secret}`);

  // Log out: the session is gone.
  await Promise.all([page.waitForURL(`${base}login`), page.click('header button[type=submit]')]);
  await page.goto(base);
  check(page.url() === `${base}login`, `still signed in after logout (${page.url()})`);

  check(problems.length === 0, problems.join('; '));
  console.log('sso e2e: passed');
} catch (e) {
  failed = true;
  console.log(`FAILED: ${e.message}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
