// A member's governance requests, signed as CCF's `ccf_cose_sign1` and `consort gov` sign them:
// a tagged COSE_Sign1 whose protected header holds `alg` (ES256 or ES384, from the certificate's
// curve), `kid` (the member id: SHA-256 of the certificate, hex) and the `ccf.gov.msg.*`
// parameters, signed with WebCrypto. Runs in Node.js and in browsers (no Node.js modules); the
// private key never leaves the `CryptoKey` it is imported into.
import { encode } from "cborg";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, utf8ToBytes } from "@noble/hashes/utils.js";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { ECParameters } from "@peculiar/asn1-ecc";
import { PrivateKeyInfo } from "@peculiar/asn1-pkcs8";

const EC_PUBLIC_KEY = "1.2.840.10045.2.1";
const CURVES = {
  "1.2.840.10045.3.1.7": { namedCurve: "P-256", alg: -7, hash: "SHA-256" },
  "1.3.132.0.34": { namedCurve: "P-384", alg: -35, hash: "SHA-384" },
};
// CBOR tag 18 (COSE_Sign1): major type 6, value 18, in one byte.
const COSE_SIGN1_TAG_BYTE = 0xc0 | 18;

/** Why a key and certificate cannot sign: `kind` is "certificate" (not a P-256/P-384 X.509
 * certificate), "key" (not a private key this curve reads), "mismatch" (the key is not the
 * certificate's) or "unavailable" (no WebCrypto here: a page that is not a secure context). */
export class SignerError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = "SignerError";
    this.kind = kind;
  }
}

/** The DER bytes of the PEM block labelled `label` (the first one), or null. */
function pemBlock(pem, label) {
  const m = new RegExp(`-----BEGIN ${label}-----([^-]*)-----END ${label}-----`).exec(String(pem));
  if (!m) return null;
  try {
    return Uint8Array.from(atob(m[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

function certificate(certPem) {
  const der = pemBlock(certPem, "CERTIFICATE");
  if (!der) throw new SignerError("certificate", "the certificate is not a PEM CERTIFICATE");
  let cert;
  try {
    cert = AsnConvert.parse(der, Certificate);
  } catch (e) {
    throw new SignerError("certificate", `the certificate does not parse: ${e.message}`);
  }
  const spki = cert.tbsCertificate.subjectPublicKeyInfo;
  const params = spki.algorithm.parameters ? AsnConvert.parse(spki.algorithm.parameters, ECParameters) : null;
  const curve = spki.algorithm.algorithm === EC_PUBLIC_KEY ? CURVES[params?.namedCurve] : undefined;
  if (!curve) throw new SignerError("certificate", "a member's certificate must hold an ECDSA P-256 or P-384 key");
  return { der, curve, point: new Uint8Array(spki.subjectPublicKey) };
}

/** The private key as PKCS#8 DER: a `PRIVATE KEY` block as it is, an `EC PRIVATE KEY` (SEC1, as
 * openssl and CCF's keygenerator.sh write it) wrapped for the curve. */
function pkcs8(keyPem, curveOid) {
  const plain = pemBlock(keyPem, "PRIVATE KEY");
  if (plain) return plain;
  const sec1 = pemBlock(keyPem, "EC PRIVATE KEY");
  if (!sec1) throw new SignerError("key", "the private key is not a PEM PRIVATE KEY or EC PRIVATE KEY");
  const info = new PrivateKeyInfo();
  info.privateKeyAlgorithm.algorithm = EC_PUBLIC_KEY;
  info.privateKeyAlgorithm.parameters = AsnConvert.serialize(new ECParameters({ namedCurve: curveOid }));
  info.privateKey = new OctetString(sec1);
  return new Uint8Array(AsnConvert.serialize(info));
}

const base64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/**
 * A member's signer from its private key and certificate (PEM text, as read from the files).
 * Refuses a key that is not the certificate's, or not on its curve.
 * @returns {Promise<{id: string, alg: number, sign: Function}>}
 */
export async function memberSigner({ key, cert }) {
  if (!globalThis.crypto?.subtle) {
    throw new SignerError("unavailable", "WebCrypto is not available here: a page must be served over HTTPS (or from localhost) to sign");
  }
  const c = certificate(cert);
  const curveOid = Object.keys(CURVES).find((oid) => CURVES[oid] === c.curve);
  let privateKey;
  try {
    privateKey = await crypto.subtle.importKey("pkcs8", pkcs8(key, curveOid), { name: "ECDSA", namedCurve: c.curve.namedCurve }, true, ["sign"]);
  } catch (e) {
    if (e instanceof SignerError) throw e;
    throw new SignerError("key", `the private key is not a ${c.curve.namedCurve} key as the certificate's is (${e.message})`);
  }
  // The public point of the private key, as the certificate must hold it.
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  const size = c.point.length >> 1;
  const x = base64url(c.point.subarray(1, 1 + size));
  const y = base64url(c.point.subarray(1 + size));
  if (c.point[0] !== 4 || jwk.x !== x || jwk.y !== y) throw new SignerError("mismatch", "the private key does not belong to the certificate");
  // Only signing from here on: a key that cannot be exported again.
  const signing = await crypto.subtle.importKey("jwk", { ...jwk, key_ops: ["sign"], ext: false }, { name: "ECDSA", namedCurve: c.curve.namedCurve }, false, ["sign"]);
  const id = bytesToHex(sha256(c.der));
  const { alg, hash } = c.curve;

  /**
   * Signs `payload` (bytes or text) as a governance message of type `msgType` ("proposal",
   * "ballot", "withdrawal", "ack", "state_digest", "recovery_share", ...), for `proposalId` when
   * given, created at `createdAt` (seconds since the epoch; now by default). The COSE_Sign1 bytes.
   */
  async function sign(msgType, payload, { proposalId, createdAt } = {}) {
    const at = createdAt ?? Math.floor(Date.now() / 1000);
    if (!Number.isSafeInteger(at) || at < 0) throw new TypeError("createdAt must be whole seconds since the epoch");
    // The order CCF's ccf_cose_sign1 (and `consort gov`) write them in: alg, kid, type, the
    // proposal id if any, created_at. Not CBOR's canonical order (which would put created_at
    // before proposal_id), so cborg is told not to sort the keys.
    const params = new Map([
      [1, alg],
      [4, utf8ToBytes(id)],
      ["ccf.gov.msg.type", String(msgType)],
    ]);
    if (proposalId !== undefined && proposalId !== null) params.set("ccf.gov.msg.proposal_id", String(proposalId));
    params.set("ccf.gov.msg.created_at", at);
    const protectedHeader = encode(params, { mapSorter: null });
    const body = typeof payload === "string" ? utf8ToBytes(payload) : new Uint8Array(payload);
    const toBeSigned = encode(["Signature1", protectedHeader, new Uint8Array(0), body]);
    const signature = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash }, signing, toBeSigned));
    const sign1 = encode([protectedHeader, new Map(), body, signature]);
    const out = new Uint8Array(1 + sign1.length);
    out[0] = COSE_SIGN1_TAG_BYTE;
    out.set(sign1, 1);
    return out;
  }

  return { id, alg, sign };
}
