// The web UI in a real browser: Debian's Chromium, headless, driven by playwright-core
// (which never downloads a browser of its own here).
//
//   node tests/ui-e2e/flow.mjs <base-url, e.g. https://127.0.0.1:5000/ui/> <screenshot folder>
//
// What each account should see comes from $PORTCULLIS_E2E_SPEC (JSON, written by tests/ui.rs):
// {"users": [{"account", "password", "repositories": [...], "open": "repo", "tags": [...],
//             "search"?: "text", "explain"?: true, "phone"?: true, "delete"?: true,
//             "newest": "the repository listed first when sorted by newest image"}]}
// For each account and viewport (desktop 1280×800; phone 390×844 where asked): a wrong
// password first (the password field must have the focus after it; no version shown while
// logged out), log in, check the list is exactly the permitted repositories, search, open a
// repository and check its tags (in this order: newest first), sizes and pull lines (by tag
// and pinned to the digest), copy a pull line with the copy button and read the clipboard,
// open the first tag's own page (layers, labels, history), (admin) explain a scope, (delete,
// in the last viewport) delete the last tag through its confirmation page, log out and check
// the session is gone. Then, once, the repository page with JavaScript off: still complete,
// no copy buttons. Any console error (a Content-Security-Policy violation shows up as one) or
// page error fails the run. Screenshots of every page go to the folder. Prints
// "e2e: all flows passed" on success.

import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, outDir] = process.argv.slice(2);
if (!base || !outDir) {
  console.error('usage: node flow.mjs <base-url> <out-dir>');
  process.exit(2);
}
const spec = JSON.parse(process.env.PORTCULLIS_E2E_SPEC || '{"users": []}');
mkdirSync(outDir, { recursive: true });

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
};

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function sameList(actual, expected) {
  return JSON.stringify([...actual].sort()) === JSON.stringify([...expected].sort());
}

async function flow(user, viewportName, last) {
  const label = `${user.account}-${viewportName}`;
  const profile = mkdtempSync(join(tmpdir(), 'portcullis-chromium-'));
  // A persistent context is how playwright passes a fresh --user-data-dir.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    ignoreHTTPSErrors: true, // the test CA is not in this profile
    viewport: VIEWPORTS[viewportName],
    isMobile: viewportName === 'phone',
    hasTouch: viewportName === 'phone',
  });
  const problems = [];
  const started = Date.now();
  try {
    const page = context.pages()[0] ?? await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    const shot = async (name) => {
      const file = join(outDir, `${label}-${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      console.log(`screenshot: ${file}`);
    };
    const noSideways = async (what) => {
      const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      check(scroll <= inner + 1, `${label}: ${what} scrolls sideways (${scroll} > ${inner})`);
    };

    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(base).origin });

    // Not logged in: the UI sends us to the login form, which does not tell the version.
    await page.goto(base);
    check(page.url() === `${base}login`, `${label}: expected the login page, got ${page.url()}`);
    check(await page.title() !== '', `${label}: the login page has no title`);
    check((await page.textContent('footer')).trim() === 'portcullis', `${label}: the footer shows more than the name while logged out`);
    await shot('1-login');
    await noSideways('the login page');

    // A wrong password: refused, the account kept, the password field focused.
    const wrongAt = problems.length;
    await page.fill('#account', user.account);
    await page.fill('#password', 'not-the-password');
    await Promise.all([page.waitForURL(`${base}login`), page.click('button[type=submit]')]);
    await page.waitForSelector('p.notice');
    check((await page.textContent('p.notice')).includes('wrong account or password'), `${label}: no notice after a wrong password`);
    check(await page.inputValue('#account') === user.account, `${label}: the account was not kept`);
    check(await page.evaluate(() => document.activeElement && document.activeElement.id) === 'password',
      `${label}: the password field does not have the focus after a wrong password`);
    problems.splice(wrongAt); // the browser logs the 401 it was sent on purpose
    await shot('1b-wrong-password');

    // Log in.
    await page.fill('#account', user.account);
    await page.fill('#password', user.password);
    await Promise.all([page.waitForURL(base), page.click('button[type=submit]')]);
    check((await page.textContent('header')).includes(user.account), `${label}: header does not name the account`);
    check(/portcullis \d+\.\d+/.test(await page.textContent('footer')), `${label}: logged in, the footer has no version`);

    // Exactly the permitted repositories.
    const names = await page.locator('ul.repos a').allTextContents();
    check(sameList(names.map((n) => n.trim()), user.repositories),
      `${label}: list ${JSON.stringify(names)} != ${JSON.stringify(user.repositories)}`);
    const metas = await page.locator('ul.repos li .meta').allTextContents();
    check(metas.length === names.length && metas.every((m) => /^\d+ tags?( · newest image \d{4}-\d\d-\d\d)?/.test(m.trim())),
      `${label}: not every repository shows its tag count and newest image: ${JSON.stringify(metas)}`);
    await shot('2-repositories');
    await noSideways('the list');

    // Sorted by the newest image.
    await Promise.all([page.waitForURL(/sort=recent/), page.click('nav.sort a:text-is("newest image first")')]);
    const recent = (await page.locator('ul.repos a').allTextContents()).map((n) => n.trim());
    check(sameList(recent, user.repositories) && recent[0] === user.newest,
      `${label}: newest first gave ${JSON.stringify(recent)}, expected ${user.newest} first`);
    await shot('2b-repositories-newest');
    await page.goto(base);

    if (user.search) {
      await page.fill('#q', user.search);
      await Promise.all([page.waitForURL(/\?q=/), page.press('#q', 'Enter')]);
      const found = (await page.locator('ul.repos a').allTextContents()).map((n) => n.trim());
      const expected = user.repositories.filter((r) => r.includes(user.search));
      check(sameList(found, expected), `${label}: search ${user.search}: ${JSON.stringify(found)} != ${JSON.stringify(expected)}`);
      await page.goto(base);
    }

    // A repository: its tags, each with a digest and a size.
    await Promise.all([page.waitForURL(`${base}repo/${user.open}`), page.click(`ul.repos a:text-is("${user.open}")`)]);
    const tags = (await page.locator('section.card h2 code').allTextContents()).map((t) => t.trim());
    check(JSON.stringify(tags) === JSON.stringify(user.tags), `${label}: tags ${JSON.stringify(tags)} != ${JSON.stringify(user.tags)} (newest first)`);
    const text = await page.textContent('main');
    check(/sha256:[0-9a-f]{64}/.test(text), `${label}: no digest on the repository page`);
    check(/\d+(\.\d)? (B|KiB|MiB)/.test(text), `${label}: no size on the repository page`);
    check(text.includes(`docker pull `) && text.includes(`/${user.open}:${user.tags[0]}`),
      `${label}: no pull command`);
    check(new RegExp(`docker pull \\S+/${user.open}@sha256:[0-9a-f]{64}`).test(text), `${label}: no pull command pinned to the digest`);

    // The copy buttons (added by the script, one per command) put the command on the clipboard.
    const commands = await page.locator('[data-copy]').count();
    const buttons = await page.locator('button.copy').count();
    check(commands > 0 && buttons === commands, `${label}: ${buttons} copy buttons for ${commands} commands`);
    const pinned = page.locator('section.card').first().locator('[data-copy]').nth(1);
    const pinnedText = (await pinned.textContent()).trim();
    await page.locator('section.card').first().locator('button.copy').nth(1).click();
    await page.waitForFunction(() => document.querySelector('button.copy[data-state]') !== null);
    const state = await page.getAttribute('button.copy[data-state]', 'data-state');
    check(state === 'ok', `${label}: the copy button says ${state}`);
    const clip = await page.evaluate(() => navigator.clipboard.readText());
    check(clip.trim() === pinnedText && clip.includes('@sha256:'), `${label}: clipboard has ${JSON.stringify(clip)}, not ${JSON.stringify(pinnedText)}`);
    await shot('3-repository');
    await noSideways('the repository page');

    // The newest tag's own page: layers, labels, history, total size.
    await Promise.all([
      page.waitForURL(`${base}repo/${user.open}/-/tag/${user.tags[0]}`),
      page.locator('section.card').first().locator('a:text-is("Layers, labels and history")').click(),
    ]);
    const tagText = await page.textContent('main');
    for (const part of ['Layers', 'Labels', 'Annotations', 'History', 'Total size', 'org.example.built-by', 'ADD file:rootfs']) {
      check(tagText.includes(part), `${label}: the tag page lacks ${part}`);
    }
    check(/@sha256:[0-9a-f]{64}/.test(tagText), `${label}: the tag page has no pinned pull line`);
    await shot('3c-tag');
    await noSideways('the tag page');

    if (user.delete && last) {
      // Delete the last tag: the confirmation lists every tag sharing its digest.
      const victim = user.tags[user.tags.length - 1];
      await page.goto(`${base}repo/${user.open}`);
      await Promise.all([
        page.waitForURL(`${base}repo/${user.open}/-/delete?tag=${victim}`),
        page.locator(`section[id="tag-${victim}"] a:text-is("Delete…")`).click(),
      ]);
      const doomed = (await page.locator('ul.doomed code').allTextContents()).map((t) => t.trim());
      check(doomed.includes(victim), `${label}: the confirmation does not list ${victim}: ${doomed}`);
      await shot('6-confirm-delete');
      await noSideways('the delete confirmation');
      await Promise.all([page.waitForURL(new RegExp(`repo/${user.open}\\?deleted=sha256`)), page.click('button.danger')]);
      const left = (await page.locator('section.card h2 code').allTextContents()).map((t) => t.trim());
      const expected = user.tags.filter((t) => !doomed.includes(t));
      check(JSON.stringify(left) === JSON.stringify(expected), `${label}: after the delete ${JSON.stringify(left)} != ${JSON.stringify(expected)}`);
      check((await page.textContent('main')).includes('Deleted:'), `${label}: no notice after the delete`);
      await shot('7-deleted');
      await noSideways('the repository page after a delete');
    }

    // Another account's repository, by editing the URL: the not-found page.
    const before = problems.length;
    const other = await page.goto(`${base}repo/secret/db`);
    if (!user.repositories.includes('secret/db')) {
      check(other.status() === 404, `${label}: secret/db answered ${other.status()}`);
      // The browser logs the 404 it was sent to on purpose.
      problems.splice(before);
      await shot('3b-not-found');
    }

    if (user.explain) {
      await page.goto(`${base}explain`);
      await page.fill('#account', 'alice');
      await page.fill('#scopes', 'repository:team/web:pull,push\nrepository:secret/db:pull');
      await Promise.all([page.waitForLoadState('load'), page.click('main button[type=submit]')]);
      const answers = await page.textContent('main');
      check(answers.includes('acl.yaml:7'), `${label}: explain does not name the deciding rule: ${answers}`);
      check(answers.includes('no rule matched'), `${label}: explain does not show the default deny`);
      await shot('4-explain');
      await noSideways('the explain page');
    }

    // Log out: back to the login page, and the session is gone.
    await page.goto(base);
    await Promise.all([page.waitForURL(`${base}login`), page.click('header button[type=submit]')]);
    await page.goto(base);
    check(page.url() === `${base}login`, `${label}: still logged in after logout (${page.url()})`);
    await shot('5-logged-out');

    check(problems.length === 0, `${label}: ${problems.join('; ')}`);
    console.log(`ok: ${label} (${Date.now() - started} ms)`);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

// The repository page with JavaScript off: everything there, no copy buttons.
async function withoutScript(user) {
  const label = `${user.account}-nojs`;
  const profile = mkdtempSync(join(tmpdir(), 'portcullis-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: ARGS, ignoreHTTPSErrors: true,
    viewport: VIEWPORTS.desktop, javaScriptEnabled: false,
  });
  try {
    const page = context.pages()[0] ?? await context.newPage();
    page.setDefaultTimeout(15000);
    await page.goto(`${base}login`);
    await page.fill('#account', user.account);
    await page.fill('#password', user.password);
    await Promise.all([page.waitForURL(base), page.click('button[type=submit]')]);
    await page.goto(`${base}repo/${user.open}`);
    const tags = (await page.locator('section.card h2 code').allTextContents()).map((t) => t.trim());
    check(tags.length > 0, `${label}: no tags without JavaScript`);
    check(await page.locator('[data-copy]').count() > 0, `${label}: no commands without JavaScript`);
    check(await page.locator('button.copy').count() === 0, `${label}: copy buttons without JavaScript do nothing`);
    const file = join(outDir, `${label}-3-repository.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`screenshot: ${file}`);
    console.log(`ok: ${label}`);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

let failed = 0;
for (const user of spec.users) {
  const viewports = user.phone ? ['desktop', 'phone'] : ['desktop'];
  for (const viewport of viewports) {
    try {
      await flow(user, viewport, viewport === viewports[viewports.length - 1]);
    } catch (e) {
      failed += 1;
      console.log(`FAILED: ${user.account}-${viewport}: ${e.message}`);
    }
  }
}
const plain = spec.users.find((u) => !u.delete) ?? spec.users[0];
if (plain) {
  try {
    await withoutScript(plain);
  } catch (e) {
    failed += 1;
    console.log(`FAILED: ${plain.account}-nojs: ${e.message}`);
  }
}
if (failed > 0) {
  console.log(`e2e: ${failed} flow(s) failed`);
  process.exit(1);
}
console.log('e2e: all flows passed');
