// One headless Chromium for a test file: Debian's /usr/bin/chromium (or CHROMIUM), driven by
// playwright-core. Nothing is downloaded; a missing browser is a clear failure, not a skip.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Starts the browser; the caller closes it (`await browser.close()`). */
export async function launch() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no browser at ${CHROMIUM}: \`make browser-tests\` installs Debian's chromium (or set CHROMIUM)`);
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
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
