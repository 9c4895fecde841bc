// Offline verification of a Consort receipt (SPEC §7) with nothing but the service certificate:
// the transaction's leaf from its components, the Merkle root from the proof (BLAKE3), the
// signing node's P-384 signature over the root, that node's certificate endorsed by the service
// identity, and the node id its key's. Runs in Node.js and in browsers (no Node.js modules).
import { blake3 } from "@noble/hashes/blake3.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, hexToBytes, utf8ToBytes } from "@noble/hashes/utils.js";
import { p384 } from "@noble/curves/nist.js";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";

const ECDSA_WITH_SHA384 = "1.2.840.10045.4.3.3";
const EC_PUBLIC_KEY = "1.2.840.10045.2.1";
// The namedCurve parameter secp384r1 (1.3.132.0.34), DER-encoded as an EC key carries it.
const SECP384R1_DER = "06052b81040022";

/** Why a receipt does not verify: `kind` is "malformed" (not a receipt, or not well formed) or
 * "signature" (well formed, but the proof, a signature or the endorsement does not hold). */
export class ReceiptError extends Error {
  constructor(kind, message) {
    super(`${kind === "malformed" ? "malformed receipt" : "receipt does not verify"}: ${message}`);
    this.name = "ReceiptError";
    this.kind = kind;
  }
}
const malformed = (m) => new ReceiptError("malformed", m);
const invalid = (m) => new ReceiptError("signature", m);

/** Exactly these fields, each of its type (the Rust verifier refuses unknown fields too). */
function fields(value, what, spec) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw malformed(`${what} must be an object`);
  for (const key of Object.keys(value)) if (!(key in spec)) throw malformed(`${what} has an unknown field ${JSON.stringify(key)}`);
  for (const [key, type] of Object.entries(spec)) {
    const ok = type === "array" ? Array.isArray(value[key]) : type === "object" ? value[key] !== null && typeof value[key] === "object" : typeof value[key] === type;
    if (!ok) throw malformed(`${what}.${key} must be ${type === "array" || type === "object" ? `an ${type}` : `a ${type}`}`);
  }
  return value;
}

function digest(what, hex) {
  if (typeof hex !== "string" || !/^[0-9a-f]{64}$/.test(hex)) throw malformed(`${what} must be 64 lowercase hex digits`);
  return hexToBytes(hex);
}

function base64(what, text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw invalid(`${what} is not base64`);
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** The DER of the first CERTIFICATE in a PEM text. */
function pemToDer(what, pem, fail) {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(String(pem));
  if (!m) throw fail(`${what} is not a PEM certificate`);
  return base64(what, m[1].replace(/\s+/g, ""));
}

function parseCertificate(what, der, fail) {
  try {
    return AsnConvert.parse(der, Certificate);
  } catch (e) {
    throw fail(`${what} is not an X.509 certificate: ${e.message}`);
  }
}

const spkiOf = (cert) => new Uint8Array(AsnConvert.serialize(cert.tbsCertificate.subjectPublicKeyInfo));

/** The P-384 public key (an uncompressed point) a certificate certifies. */
function p384KeyOf(what, cert) {
  const spki = cert.tbsCertificate.subjectPublicKeyInfo;
  const curve = spki.algorithm.parameters ? bytesToHex(new Uint8Array(spki.algorithm.parameters)) : "";
  if (spki.algorithm.algorithm !== EC_PUBLIC_KEY || curve !== SECP384R1_DER) throw invalid(`${what}'s key is not a P-384 public key`);
  return new Uint8Array(spki.subjectPublicKey);
}

const verifyP384 = (key, message, signatureDer) => {
  try {
    return p384.verify(signatureDer, message, key, { prehash: true, lowS: false, format: "der" });
  } catch {
    return false;
  }
};

/** The transaction id a receipt's commit evidence names (`ce:<view>.<seqno>:<64 hex>`). */
function txidOf(evidence) {
  const m = /^ce:(\d+)\.(\d+):[0-9a-fA-F]{64}$/.exec(evidence);
  if (!m) throw malformed("commit_evidence is not ce:<view>.<seqno>:<64 hex>");
  return { view: Number(m[1]), seqno: Number(m[2]), txid: `${m[1]}.${m[2]}` };
}

/** `BLAKE3(entry_digest ‖ version as u64 LE ‖ bundle_digest)`: the write-set digest of an entry
 * that names the app version which ran it (Rust: `AppRef::bind`). */
function boundToApp(app) {
  fields(app, "app_version", { version: "number", bundle_digest: "string", entry_digest: "string" });
  if (!Number.isSafeInteger(app.version) || app.version < 0) throw malformed("app_version.version must be a non-negative integer");
  const version = new Uint8Array(8);
  new DataView(version.buffer).setBigUint64(0, BigInt(app.version), true);
  const bundle = digest("app_version.bundle_digest", app.bundle_digest);
  const entry = digest("app_version.entry_digest", app.entry_digest);
  const input = new Uint8Array(72);
  input.set(entry, 0);
  input.set(version, 32);
  input.set(bundle, 40);
  return bytesToHex(blake3(input));
}

/**
 * Verifies `receipt` (the JSON object `/app/receipt` answers, or its text) against the service
 * certificate (PEM). Returns `{view, seqno, txid}` of the transaction it proves, with
 * `appVersion: {version, bundleDigest}` when the app ran it (the version is bound into the
 * signed leaf); throws a ReceiptError saying why not.
 */
export function verifyReceipt(receipt, serviceCertPem) {
  if (typeof receipt === "string") {
    try {
      receipt = JSON.parse(receipt);
    } catch (e) {
      throw malformed(`not JSON: ${e.message}`);
    }
  }
  if (receipt === null || typeof receipt !== "object" || Array.isArray(receipt)) throw malformed("receipt must be an object");
  const { app_version: app, ...rest } = receipt;
  fields(rest, "receipt", { cert: "string", node_id: "string", signature: "string", proof: "array", leaf_components: "object" });
  const lc = fields(receipt.leaf_components, "leaf_components", { write_set_digest: "string", commit_evidence: "string", claims_digest: "string" });
  const tx = txidOf(lc.commit_evidence);
  digest("write_set_digest", lc.write_set_digest);
  if (app !== undefined) {
    if (boundToApp(app) !== lc.write_set_digest) throw malformed("app_version does not match write_set_digest");
    tx.appVersion = { version: app.version, bundleDigest: app.bundle_digest };
  }
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
    return out;
  };
  const leaf = blake3(concat(digest("write_set_digest", lc.write_set_digest), blake3(utf8ToBytes(lc.commit_evidence)), digest("claims_digest", lc.claims_digest)));
  const root = receipt.proof.reduce((node, element, i) => {
    if (element === null || typeof element !== "object" || Array.isArray(element)) throw malformed(`proof element ${i} must be an object`);
    const keys = Object.keys(element);
    if (keys.length !== 1 || !(keys[0] === "left" || keys[0] === "right")) throw malformed("each proof element has exactly one of left/right");
    const sibling = digest("proof element", element[keys[0]]);
    return blake3(keys[0] === "left" ? concat(sibling, node) : concat(node, sibling));
  }, leaf);

  const service = parseCertificate("the service certificate", pemToDer("the service certificate", serviceCertPem, invalid), invalid);
  const nodeCert = parseCertificate("the node certificate", pemToDer("the node certificate", receipt.cert, invalid), invalid);
  const nodeKey = p384KeyOf("the node certificate", nodeCert);
  if (bytesToHex(sha256(spkiOf(nodeCert))) !== receipt.node_id) throw invalid("node id does not match the certificate's key");
  // The node's certificate, endorsed by the service identity.
  const issuer = new Uint8Array(AsnConvert.serialize(nodeCert.tbsCertificate.issuer));
  const subject = new Uint8Array(AsnConvert.serialize(service.tbsCertificate.subject));
  if (bytesToHex(issuer) !== bytesToHex(subject)) throw invalid("the node certificate was not issued by the service certificate");
  if (nodeCert.signatureAlgorithm.algorithm !== ECDSA_WITH_SHA384) throw invalid(`unsupported endorsement algorithm ${nodeCert.signatureAlgorithm.algorithm}`);
  const tbs = new Uint8Array(nodeCert.tbsCertificateRaw ?? AsnConvert.serialize(nodeCert.tbsCertificate));
  if (!verifyP384(p384KeyOf("the service certificate", service), tbs, new Uint8Array(nodeCert.signatureValue)))
    throw invalid("the service identity's endorsement of the node certificate does not verify");
  // The node's signature over the root.
  if (!verifyP384(nodeKey, root, base64("signature", receipt.signature))) throw invalid("the signature over the Merkle root does not verify");
  return tx;
}
