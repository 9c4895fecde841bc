// The SDK's memberSigner in a real browser (headless Chromium, a page that can fetch nothing):
// the page (an HTTPS one, as the node's console is: WebCrypto needs a secure context) imports a
// member's PEM key into WebCrypto and signs governance messages; Node.js
// checks each against the certificate's key and CCF's header. A key that is not the
// certificate's is refused in the page, with nothing signed.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate, createHash } from "node:crypto";
import { decode, encode } from "cborg";
import { bundleForBrowser, launch, securePage } from "../lib/browser.js";

const dir = mkdtempSync(join(tmpdir(), "consort-browser-gov-"));
let browser;
let page;
let requests;
let errors;
let script;

function identity(name, curve) {
  const [key, cert] = [join(dir, `${name}_key.pem`), join(dir, `${name}_cert.pem`)];
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", `ec_paramgen_curve:${curve}`, "-keyout", key, "-out", cert, "-nodes", "-subj", `/CN=${name}`, "-days", "2"], { stdio: "pipe" });
  return { key: readFileSync(key, "utf8"), cert: readFileSync(cert, "utf8") };
}

before(async () => {
  script = await bundleForBrowser('export { memberSigner } from "consort-sdk/gov";');
  browser = await launch();
  // WebCrypto's subtle API exists only in a secure context: an HTTPS page (answered here).
  ({ page, requests, errors } = await securePage(browser, "<!doctype html><title>memberSigner</title>"));
  await page.addScriptTag({ content: script });
});

after(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Signs in the page; the COSE bytes, or the refusal's kind and message. */
function signInPage(who, msgType, payload, options) {
  return page.evaluate(async ([w, t, p, o]) => {
    try {
      const signer = await consortSdk.memberSigner(w);
      return { id: signer.id, cose: Array.from(await signer.sign(t, p, o)) };
    } catch (e) {
      return { refused: `${e.kind}: ${e.message}` };
    }
  }, [who, msgType, payload, options]);
}

for (const [curve, hash] of [["P-256", "SHA-256"], ["P-384", "SHA-384"]]) {
  test(`${curve}: the page signs with WebCrypto what the certificate's key verifies`, async () => {
    const who = identity(`member-${curve}`, curve);
    const payload = JSON.stringify({ actions: [{ name: "set_user", args: { cert: "..." } }] });
    const signed = await signInPage(who, "ballot", payload, { proposalId: "abc", createdAt: 1_764_000_000 });
    assert.ok(signed.cose, JSON.stringify(signed));
    const der = Buffer.from(who.cert.replace(/-----[^-]+-----|\s+/g, ""), "base64");
    assert.equal(signed.id, createHash("sha256").update(der).digest("hex"));
    const [protectedBytes, , body, signature] = decode(Uint8Array.from(signed.cose), { tags: { 18: (inner) => inner() } });
    const header = decode(protectedBytes, { useMaps: true });
    assert.deepEqual([...header.entries()].map(([k, v]) => [k, v instanceof Uint8Array ? Buffer.from(v).toString() : v]), [
      [1, curve === "P-256" ? -7 : -35],
      [4, signed.id],
      ["ccf.gov.msg.type", "ballot"],
      ["ccf.gov.msg.proposal_id", "abc"],
      ["ccf.gov.msg.created_at", 1_764_000_000],
    ]);
    assert.equal(Buffer.from(body).toString(), payload);
    const spki = new X509Certificate(who.cert).publicKey.export({ type: "spki", format: "der" });
    const key = await crypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: curve }, false, ["verify"]);
    const toBeSigned = encode(["Signature1", protectedBytes, new Uint8Array(0), body]);
    assert.ok(await crypto.subtle.verify({ name: "ECDSA", hash }, key, signature, toBeSigned));
  });
}

test("in the page, a key that is not the certificate's is refused, and nothing left the page", async () => {
  const a = identity("a", "P-384");
  const b = identity("b", "P-384");
  const refused = await signInPage({ key: a.key, cert: b.cert }, "proposal", "{}", {});
  assert.equal(refused.refused, "mismatch: the private key does not belong to the certificate");
  const junk = await signInPage({ key: "junk", cert: b.cert }, "proposal", "{}", {});
  assert.match(junk.refused, /^key: /);
  // A page that is not a secure context has no WebCrypto: said so, not a TypeError.
  const insecure = await browser.newPage();
  await insecure.setContent("<!doctype html><title>insecure</title>");
  await insecure.addScriptTag({ content: script });
  const plain = await insecure.evaluate(async (w) => {
    try {
      await consortSdk.memberSigner(w);
      return "signed";
    } catch (e) {
      return `${e.kind}: ${e.message}`;
    }
  }, a);
  assert.match(plain, /^unavailable: WebCrypto/);
  assert.deepEqual(requests, [], "the page fetched nothing");
  assert.deepEqual(errors, [], "and threw nothing uncaught");
});
