// The web console (/console) in Chromium against a real three-node network: the page is served
// by a node over its TLS, loads nothing from anywhere else, and its service view lists the
// three nodes and which is primary, as /node/network says. Screenshots go to
// target/console-screenshots/ (docs/console/ with UPDATE_SCREENSHOTS=1).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { startNetwork } from "consort-sdk/testing";
import { launch } from "../lib/browser.js";

const repo = (p) => fileURLToPath(new URL(`../../../${p}`, import.meta.url));
const shots = process.env.UPDATE_SCREENSHOTS === "1" ? repo("docs/console") : repo("target/console-screenshots");

let net;
let browser;

before(async () => {
  net = await startNetwork({ app: repo("samples/logging"), nodes: 3 });
  browser = await launch();
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  await net?.stop();
});

/** A page of the console at `url`, where every request to another origin fails and is recorded.
 * The service certificate is the node's issuer, which this test browser is not given: it skips
 * the TLS check instead (README says how to trust the service certificate in a real browser). */
async function consolePage(url) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 900 } });
  const origin = new URL(url).origin;
  const elsewhere = [];
  await context.route("**/*", (route) => {
    if (new URL(route.request().url()).origin === origin) return route.continue();
    elsewhere.push(route.request().url());
    return route.abort();
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  return { page, elsewhere, errors };
}

test("the service view lists the three nodes and the primary", async () => {
  const network = (await net.user0.get("/node/network")).json();
  const { page, elsewhere, errors } = await consolePage(`${net.url}/console`);
  await page.waitForSelector("#nodes tr[data-node]");
  await page.waitForFunction(() => document.querySelectorAll("#nodes tr[data-node]").length === 3, null, { timeout: 60_000 });
  const rows = await page.$$eval("#nodes tr[data-node]", (trs) => trs.map((tr) => ({ id: tr.dataset.node, cells: [...tr.cells].map((c) => c.textContent) })));
  assert.equal(rows.length, 3);
  assert.ok(rows.every((r) => r.cells[1] === "Trusted"), JSON.stringify(rows));
  const primaries = rows.filter((r) => r.cells[2] === "primary");
  assert.deepEqual(primaries.map((r) => r.id), [network.primary_id]);
  assert.equal(await page.textContent("#service-status"), "Open");
  const fingerprint = await page.textContent("#service-fingerprint");
  assert.match(fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  const { X509Certificate } = await import("node:crypto");
  assert.equal(fingerprint, new X509Certificate(net.serviceCert).fingerprint256);
  assert.match(await page.textContent("#endpoints"), /\/log\/private/);
  assert.match(await page.textContent("#constitution"), /export function (validate|resolve|apply)/);
  assert.match(await page.textContent("#members"), /Active/);
  await page.screenshot({ path: `${shots}/service.png`, fullPage: true });
  assert.deepEqual(elsewhere, [], "the page fetched nothing from anywhere else");
  assert.deepEqual(errors, []);
});

test("a file the console does not have is a 404, and the page is sent with a policy that keeps it to its node", async () => {
  const page = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage();
  const missing = await page.goto(`${net.url}/console/nowhere.js`);
  assert.equal(missing.status(), 404);
  const index = await page.goto(`${net.url}/console/`);
  assert.equal(index.status(), 200);
  assert.match(index.headers()["content-security-policy"], /default-src 'none'; script-src 'self'/);
});
