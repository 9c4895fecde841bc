import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { verifyReceipt, ReceiptError } from "../src/index.js";
import { tampered } from "./tamper.js";

const fixture = (name) => readFileSync(new URL(`./fixtures/${name}`, import.meta.url), "utf8");
const receipt = JSON.parse(fixture("receipt.json"));
const serviceCert = fixture("service_cert.pem");
const otherCert = fixture("other_cert.pem");

test("a receipt a node issued verifies against its service certificate", () => {
  assert.deepEqual(verifyReceipt(receipt, serviceCert), { view: 1, seqno: 9, txid: "1.9" });
  assert.deepEqual(verifyReceipt(JSON.stringify(receipt), serviceCert).txid, "1.9", "the receipt's text works too");
});

test("a receipt of a transaction the app ran names the app version, bound into the signed leaf", () => {
  const appReceipt = JSON.parse(fixture("app/receipt.json"));
  const appCert = fixture("app/service_cert.pem");
  const verified = verifyReceipt(appReceipt, appCert);
  assert.deepEqual(verified, { view: 1, seqno: 8, txid: "1.8", appVersion: { version: 1, bundleDigest: appReceipt.app_version.bundle_digest } });
  // A receipt from before app versions (or of a governance transaction) names none.
  assert.equal(verifyReceipt(receipt, serviceCert).appVersion, undefined);
  const cases = tampered(appReceipt, otherCert).filter(([name]) => name.startsWith("app_version"));
  assert.equal(cases.length, 6);
  for (const [name, copy] of cases) {
    assert.throws(() => verifyReceipt(copy, appCert), (e) => e instanceof ReceiptError && e.kind === "malformed", name);
  }
  const other = structuredClone(appReceipt);
  other.app_version.version = 2;
  assert.throws(() => verifyReceipt(other, appCert), { message: "malformed receipt: app_version does not match write_set_digest" });
});

test("every tampered copy is refused, with a reason", () => {
  const cases = tampered(receipt, otherCert);
  assert.ok(cases.length >= 15, `${cases.length} cases`);
  for (const [name, copy] of cases) {
    assert.throws(() => verifyReceipt(copy, serviceCert), (e) => e instanceof ReceiptError && e.message.length > 20, name);
  }
});

test("the reasons say which part failed", () => {
  const reason = (f) => {
    try {
      f();
    } catch (e) {
      return [e.kind, e.message];
    }
    assert.fail("no error");
  };
  assert.deepEqual(reason(() => verifyReceipt(receipt, otherCert)), ["signature", "receipt does not verify: the node certificate was not issued by the service certificate"]);
  assert.deepEqual(reason(() => verifyReceipt("{", serviceCert))[0], "malformed");
  assert.deepEqual(reason(() => verifyReceipt({ ...receipt, extra: 1 }, serviceCert)), ["malformed", 'malformed receipt: receipt has an unknown field "extra"']);
  assert.deepEqual(reason(() => verifyReceipt(receipt, "nope")), ["signature", "receipt does not verify: the service certificate is not a PEM certificate"]);
  const changed = structuredClone(receipt);
  changed.leaf_components.claims_digest = "1".repeat(64);
  assert.deepEqual(reason(() => verifyReceipt(changed, serviceCert)), ["signature", "receipt does not verify: the signature over the Merkle root does not verify"]);
});

test("the verifier uses nothing of Node.js (it runs in browsers)", () => {
  for (const file of ["../src/receipt.js", "../src/index.js"]) {
    const source = readFileSync(new URL(file, import.meta.url), "utf8");
    assert.doesNotMatch(source, /from\s+["']node:|require\(/, file);
  }
});
