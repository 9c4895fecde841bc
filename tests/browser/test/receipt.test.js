// The SDK's verifyReceipt in a real browser: consort-sdk's receipt module bundled for the
// browser (esbuild, platform "browser": a Node.js import would fail the build), loaded into a
// headless Chromium page that can fetch nothing, and given the same receipts as the Node.js
// tests: a receipt from a real node, every tampered copy of it, and a fresh one from a network
// started here. The page must reach the verdict Node.js reaches on each.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { verifyReceipt } from "consort-sdk";
import { startNetwork } from "consort-sdk/testing";
import { tampered } from "../../../js-sdk/test/tamper.js";
import { bundleForBrowser, launch, offlinePage } from "../lib/browser.js";

const sdk = (p) => fileURLToPath(new URL(`../../../js-sdk/${p}`, import.meta.url));
const fixture = (name) => readFileSync(sdk(`test/fixtures/${name}`), "utf8");

let browser;
let page;
let requests;
let errors;

before(async () => {
  const script = await bundleForBrowser('export { verifyReceipt } from "consort-sdk/receipt";');
  browser = await launch();
  ({ page, requests, errors } = await offlinePage(browser));
  await page.setContent("<!doctype html><title>verifyReceipt</title>");
  await page.addScriptTag({ content: script });
});

after(async () => {
  await browser?.close();
});

/** What the page's verifyReceipt says: "ok" or the error's message. */
function inBrowser(receipt, serviceCert) {
  return page.evaluate(async ([r, cert]) => {
    try {
      await consortSdk.verifyReceipt(r, cert);
      return "ok";
    } catch (e) {
      return `refused: ${e.message}`;
    }
  }, [receipt, serviceCert]);
}

/** The same verdict from Node.js. */
async function inNode(receipt, serviceCert) {
  try {
    await verifyReceipt(receipt, serviceCert);
    return "ok";
  } catch (e) {
    return `refused: ${e.message}`;
  }
}

test("the page is a browser's, with no Node.js in it", async () => {
  assert.equal(await page.evaluate(() => typeof process === "undefined" && typeof require === "undefined"), true);
  assert.match(await page.evaluate(() => navigator.userAgent), /Chrome\//);
});

test("a real node's receipt and every tampered copy: the browser's verdict is Node's", async () => {
  const receipt = JSON.parse(fixture("receipt.json"));
  const serviceCert = fixture("service_cert.pem");
  assert.equal(await inBrowser(receipt, serviceCert), "ok");
  assert.equal(await inBrowser(receipt, fixture("other_cert.pem")), await inNode(receipt, fixture("other_cert.pem")));
  assert.notEqual(await inBrowser(receipt, fixture("other_cert.pem")), "ok");
  const cases = tampered(receipt, fixture("other_cert.pem"));
  assert.ok(cases.length >= 14);
  for (const [name, copy] of cases) {
    const verdict = await inBrowser(copy, serviceCert);
    assert.notEqual(verdict, "ok", `${name}: the browser accepted it`);
    assert.equal(verdict, await inNode(copy, serviceCert), `${name}: the browser and Node.js disagree`);
  }
});

test("a receipt fetched from a network started now verifies in the browser", async () => {
  const net = await startNetwork({ app: fileURLToPath(new URL("../../../samples/logging", import.meta.url)) });
  try {
    const reply = await net.user0.post("/app/log/public", { id: 7, msg: "seen by a browser" });
    assert.equal(reply.status, 200);
    const receipt = await net.user0.receipt(reply.txid);
    assert.equal(await inBrowser(receipt, net.serviceCert), "ok");
    // It names the app version that ran the write (the sandbox deployed version 1).
    const verified = await page.evaluate(([r, cert]) => consortSdk.verifyReceipt(r, cert), [receipt, net.serviceCert]);
    assert.equal(verified.appVersion?.version, 1);
    assert.match(verified.appVersion.bundleDigest, /^[0-9a-f]{64}$/);
    receipt.leaf_components.write_set_digest = receipt.leaf_components.write_set_digest.replace(/^./, (c) => (c === "0" ? "1" : "0"));
    assert.match(await inBrowser(receipt, net.serviceCert), /^refused: /);
  } finally {
    await net.stop();
  }
});

test("the page fetched nothing and threw nothing", () => {
  assert.deepEqual(requests, []);
  assert.deepEqual(errors, []);
});
