// One headless Chromium for a test file: Debian's /usr/bin/chromium (or CHROMIUM), driven by
// playwright-core. Nothing is downloaded; a missing browser is a clear failure, not a skip.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** How every test browser is launched (`env`, a profile, ... added by the caller); a missing
 * browser is a clear failure. */
function launchOptions(more = {}) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no browser at ${CHROMIUM}: \`make browser-tests\` installs Debian's chromium (or set CHROMIUM)`);
  }
  return { executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"], ...more };
}

/** Starts the browser; the caller closes it (`await browser.close()`). */
export async function launch() {
  return chromium.launch(launchOptions());
}

/** NSS's certutil (Debian's libnss3-tools), which writes the certificate store Chromium reads. */
export const CERTUTIL = process.env.CERTUTIL ?? "/usr/bin/certutil";

/** Starts the browser trusting `caPem` (a service certificate) as a certificate authority, as a
 * user who imported it does (README), and nothing else but the system's roots: no certificate
 * error is ignored. */
export async function launchTrusting(caPem) {
  const home = certificateStore(caPem);
  const browser = await chromium.launch(launchOptions({ env: { ...process.env, HOME: home } }));
  browser.on("disconnected", () => removeStore(home));
  return browser;
}

/** A browser context of its own Chromium that trusts `caPem` as [`launchTrusting`]'s does and
 * holds an identity (`certPath`, `keyPath`: PEM files) in its store, as a member who imported
 * its certificate and key (README) does; it presents it to `origin` when asked, without the
 * dialog in which a user would pick it. Close the context to stop the browser. */
export async function launchWithIdentity(caPem, { certPath, keyPath, origin }, options = {}) {
  const home = certificateStore(caPem, { certPath, keyPath });
  const profile = join(home, "profile");
  mkdirSync(join(profile, "Default"), { recursive: true });
  // The "auto-select certificate" site setting (what Chromium's AutoSelectCertificateForUrls
  // policy sets): any certificate the store holds, for this origin.
  const autoSelect = { [`${origin},*`]: { setting: { filters: [{}] } } };
  writeFileSync(join(profile, "Default", "Preferences"), JSON.stringify({ profile: { content_settings: { exceptions: { auto_select_certificate: autoSelect } } } }));
  const context = await chromium.launchPersistentContext(profile, launchOptions({ env: { ...process.env, HOME: home }, ...options }));
  context.on("close", () => removeStore(home));
  return context;
}

/** Removes a [`certificateStore`]'s home once the browser that used it is gone (its profile
 * may still be being written as it exits: retried, and a leftover temporary directory is no
 * failure). */
function removeStore(home) {
  rm(home, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 }).catch(() => {});
}

/** A home directory whose NSS database (Chromium's certificate store on Linux) trusts `caPem`
 * as a certificate authority and, if given, holds the identity in `certPath` and `keyPath`. */
function certificateStore(caPem, identity) {
  if (!existsSync(CERTUTIL)) {
    throw new Error(`no certutil at ${CERTUTIL}: \`make browser-tests\` installs Debian's libnss3-tools (or set CERTUTIL)`);
  }
  const home = mkdtempSync(join(tmpdir(), "consort-chromium-"));
  const db = `sql:${join(home, ".pki", "nssdb")}`;
  mkdirSync(join(home, ".pki", "nssdb"), { recursive: true });
  writeFileSync(join(home, "ca.pem"), caPem);
  execFileSync(CERTUTIL, ["-N", "-d", db, "--empty-password"]);
  execFileSync(CERTUTIL, ["-A", "-d", db, "-n", "Consort service", "-t", "C,,", "-i", join(home, "ca.pem")]);
  if (identity) {
    const p12 = join(home, "identity.p12");
    execFileSync("openssl", ["pkcs12", "-export", "-in", identity.certPath, "-inkey", identity.keyPath, "-out", p12, "-passout", "pass:"]);
    execFileSync(join(CERTUTIL, "..", "pk12util"), ["-i", p12, "-d", db, "-W", ""], { stdio: "ignore" });
  }
  return home;
}

/** A page that loads nothing from anywhere: every request it makes fails, and is recorded. */
export async function offlinePage(browser) {
  const context = await browser.newContext();
  const requests = [];
  await context.route("**/*", (route) => {
    requests.push(route.request().url());
    return route.abort();
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  return { page, requests, errors };
}

/** The address a page opened by [`securePage`] has: HTTPS, so that it is a secure context
 * (WebCrypto's `crypto.subtle` exists only in one), though nothing is fetched from it. */
export const SECURE_PAGE_URL = "https://consort.invalid/";

/** An [`offlinePage`] at [`SECURE_PAGE_URL`], showing `html` (the one request answered, from
 * here; every other request fails and is recorded). */
export async function securePage(browser, html) {
  const context = await browser.newContext();
  const requests = [];
  await context.route("**/*", (route) => {
    if (route.request().url() === SECURE_PAGE_URL) return route.fulfill({ status: 200, contentType: "text/html", body: html });
    requests.push(route.request().url());
    return route.abort();
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(SECURE_PAGE_URL);
  return { page, requests, errors };
}

/** `source` (export statements over consort-sdk's modules) bundled for the browser, as a script
 * that makes them the global `consortSdk`. A Node.js import in them would fail the build. */
export async function bundleForBrowser(source) {
  const bundled = await build({
    stdin: { contents: source, resolveDir: fileURLToPath(new URL(".", import.meta.url)) },
    bundle: true,
    platform: "browser",
    format: "iife",
    globalName: "consortSdk",
    write: false,
    logLevel: "silent",
  });
  return bundled.outputFiles[0].text;
}
