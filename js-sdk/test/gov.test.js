// memberSigner on identities made by openssl (PKCS#8 and SEC1 keys, P-256 and P-384): the COSE
// Sign1 it makes decodes to CCF's header and verifies under the certificate's key; keys that
// are not the certificate's are refused. tests/e2e/sdk.rs checks the bytes against `consort gov`'s
// signer, and network.test.js has a real node accept a proposal and a ballot signed with it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { decode } from "cborg";
import { memberSigner, SignerError } from "../src/gov.js";

const dir = mkdtempSync(join(tmpdir(), "consort-gov-test-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));

/** A key (PKCS#8), the same key as SEC1, and a self-signed certificate, made by openssl. */
function identity(name, curve) {
  const [key, sec1, cert] = ["key", "sec1", "cert"].map((k) => join(dir, `${name}_${k}.pem`));
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", `ec_paramgen_curve:${curve}`, "-keyout", key, "-out", cert, "-nodes", "-subj", `/CN=${name}`, "-days", "2"], { stdio: "pipe" });
  execFileSync("openssl", ["ec", "-in", key, "-out", sec1], { stdio: "pipe" });
  return { key: readFileSync(key, "utf8"), sec1: readFileSync(sec1, "utf8"), cert: readFileSync(cert, "utf8") };
}

// COSE_Sign1 under its tag (18): the array inside.
const UNTAG = { tags: { 18: (inner) => inner() } };

const der = (pem) => Buffer.from(pem.replace(/-----[^-]+-----|\s+/g, ""), "base64");

/** The certificate's public key as WebCrypto reads it (its SPKI, found by re-encoding with node:crypto). */
async function publicKey(certPem, namedCurve) {
  const { X509Certificate } = await import("node:crypto");
  const spki = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
  return crypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve }, false, ["verify"]);
}

for (const [curve, namedCurve, alg, hash] of [["P-256", "P-256", -7, "SHA-256"], ["P-384", "P-384", -35, "SHA-384"]]) {
  test(`${curve}: CCF's protected header, a signature the certificate's key verifies`, async () => {
    const who = identity(`m-${curve}`, curve);
    const signer = await memberSigner({ key: who.key, cert: who.cert });
    assert.equal(signer.id, createHash("sha256").update(der(who.cert)).digest("hex"));
    assert.equal(signer.alg, alg);
    const payload = JSON.stringify({ ballot: "export function vote() { return true; }" });
    const bytes = await signer.sign("ballot", payload, { proposalId: "p-1", createdAt: 1_700_000_000 });
    assert.equal(bytes[0], 0xd2, "tagged COSE_Sign1 (18)");
    const [protectedBytes, unprotected, body, signature] = decode(bytes, UNTAG);
    const header = decode(protectedBytes, { useMaps: true });
    // ccf_cose_sign1's order (tests/e2e/member_tools.rs compares the bytes with CCF's tool).
    assert.deepEqual([...header.keys()], [1, 4, "ccf.gov.msg.type", "ccf.gov.msg.proposal_id", "ccf.gov.msg.created_at"]);
    assert.equal(header.get(1), alg);
    assert.equal(Buffer.from(header.get(4)).toString(), signer.id);
    assert.equal(header.get("ccf.gov.msg.type"), "ballot");
    assert.equal(header.get("ccf.gov.msg.created_at"), 1_700_000_000);
    assert.equal(header.get("ccf.gov.msg.proposal_id"), "p-1");
    assert.equal(unprotected instanceof Map ? unprotected.size : Object.keys(unprotected).length, 0);
    assert.equal(Buffer.from(body).toString(), payload);
    const { encode } = await import("cborg");
    const toBeSigned = encode(["Signature1", protectedBytes, new Uint8Array(0), body]);
    const key = await publicKey(who.cert, namedCurve);
    assert.ok(await crypto.subtle.verify({ name: "ECDSA", hash }, key, signature, toBeSigned), "verifies under the certificate's key");
    const forged = Uint8Array.from(toBeSigned);
    forged[forged.length - 2] ^= 1;
    assert.ok(!(await crypto.subtle.verify({ name: "ECDSA", hash }, key, signature, forged)), "and only that message");

    // The same key as SEC1 (`EC PRIVATE KEY`, as openssl and CCF's keygenerator.sh write it).
    const again = await memberSigner({ key: who.sec1, cert: who.cert });
    assert.equal(again.id, signer.id);
    const proposal = await again.sign("proposal", new Uint8Array([1, 2, 3]));
    const now = decode(decode(proposal, UNTAG)[0], { useMaps: true });
    assert.ok(!now.has("ccf.gov.msg.proposal_id"));
    assert.ok(Math.abs(now.get("ccf.gov.msg.created_at") - Date.now() / 1000) < 600, "created now by default");
  });
}

test("a key that is not the certificate's, or not a key, is refused before anything is signed", async () => {
  const a = identity("a", "P-384");
  const b = identity("b", "P-384");
  const small = identity("c", "P-256");
  const refusal = async (options, kind, words) => {
    await assert.rejects(memberSigner(options), (e) => e instanceof SignerError && e.kind === kind && words.test(e.message));
  };
  await refusal({ key: a.key, cert: b.cert }, "mismatch", /does not belong to the certificate/);
  await refusal({ key: a.sec1, cert: b.cert }, "mismatch", /does not belong to the certificate/);
  await refusal({ key: small.key, cert: a.cert }, "key", /not a P-384 key/);
  await refusal({ key: "not a key", cert: a.cert }, "key", /not a PEM PRIVATE KEY/);
  await refusal({ key: a.key, cert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" }, "certificate", /does not parse/);
  await refusal({ key: a.key, cert: a.key }, "certificate", /not a PEM CERTIFICATE/);
});
