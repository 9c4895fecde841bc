// An app as CCF's tests/npm-app is built: jsrsasign from npm bundled next to
// @microsoft/ccf-app, every ccf.crypto function behind an endpoint, and jsrsasign checking
// what ccf.crypto signs (and the other way round).
import * as rs from "jsrsasign";
import * as ccfcrypto from "@microsoft/ccf-app/crypto";

const b64ToBuf = (b64) => {
  const bin = rs.b64toBA(b64);
  return new Uint8Array(bin).buffer;
};
const bufToHex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
const json = (request) => request.body.json();

// jsrsasign loaded: its key utilities are there.
export function crypto() {
  return { body: { available: typeof rs.KEYUTIL.generateKeypair === "function", version: rs.KJUR.crypto.Util.sha256("abc") } };
}

export function generateAesKey(request) {
  return { body: ccfcrypto.generateAesKey(json(request).size) };
}

export function generateRsaKeyPair(request) {
  const { size, exponent } = json(request);
  return { body: exponent ? ccfcrypto.generateRsaKeyPair(size, exponent) : ccfcrypto.generateRsaKeyPair(size) };
}

export function generateEcdsaKeyPair(request) {
  return { body: ccfcrypto.generateEcdsaKeyPair(json(request).curve) };
}

export function generateEddsaKeyPair(request) {
  return { body: ccfcrypto.generateEddsaKeyPair(json(request).curve) };
}

function wrapParams(algo) {
  const params = { ...algo };
  if (algo.label !== undefined) params.label = b64ToBuf(algo.label);
  return params;
}

export function wrapKey(request) {
  const { key, wrappingKey, wrapAlgo } = json(request);
  return { body: ccfcrypto.wrapKey(b64ToBuf(key), b64ToBuf(wrappingKey), wrapParams(wrapAlgo)) };
}

export function unwrapKey(request) {
  const { key, unwrappingKey, wrapAlgo } = json(request);
  return { body: ccfcrypto.unwrapKey(b64ToBuf(key), b64ToBuf(unwrappingKey), wrapParams(wrapAlgo)) };
}

export function sign(request) {
  const { algorithm, key, data } = json(request);
  return { body: ccfcrypto.sign(algorithm, key, b64ToBuf(data)) };
}

export function verifySignature(request) {
  const { algorithm, key, signature, data } = json(request);
  return { body: ccfcrypto.verifySignature(algorithm, key, b64ToBuf(signature), b64ToBuf(data)) };
}

export function digest(request) {
  const { algorithm, data } = json(request);
  return { body: bufToHex(ccfcrypto.digest(algorithm, b64ToBuf(data))) };
}

export function isValidX509CertBundle(request) {
  return { body: ccfcrypto.isValidX509CertBundle(request.body.text()) };
}

export function isValidX509CertChain(request) {
  const { chain, trusted } = json(request);
  return { body: ccfcrypto.isValidX509CertChain(chain, trusted) };
}

// The PEM/JWK converters, by name: {pem, kid?} or {jwk}.
const converters = ["pubPemToJwk", "pemToJwk", "pubRsaPemToJwk", "rsaPemToJwk", "pubEddsaPemToJwk", "eddsaPemToJwk",
  "pubJwkToPem", "jwkToPem", "pubRsaJwkToPem", "rsaJwkToPem", "pubEddsaJwkToPem", "eddsaJwkToPem"];

export function convert(request) {
  const name = request.params.name;
  if (!converters.includes(name)) return { statusCode: 404, body: { error: { code: "ResourceNotFound", message: `no converter ${name}` } } };
  const { pem, kid, jwk } = json(request);
  try {
    return { body: jwk !== undefined ? ccfcrypto[name](jwk) : ccfcrypto[name](pem, kid) };
  } catch (e) {
    return { statusCode: 400, body: { error: { code: "InvalidInput", message: String(e) } } };
  }
}

// ccf.crypto signs and jsrsasign verifies (RSA-PSS: a public-key operation jsrsasign's pure-JS
// big numbers do quickly); both compute the same HMAC; jsrsasign reads the keys ccf.crypto
// makes and the service's certificate.
export function crossCheck(request) {
  const { certificate } = json(request);
  const data = "signed by one library, checked by the other";
  const rsa = ccfcrypto.generateRsaKeyPair(2048);
  const pss = ccfcrypto.sign({ name: "RSA-PSS", hash: "SHA-256", saltLength: 32 }, rsa.privateKey, ccf.strToBuf(data));
  const verifier = new rs.KJUR.crypto.Signature({ alg: "SHA256withRSAandMGF1", psssaltlen: 32 });
  verifier.init(rsa.publicKey);
  verifier.updateString(data);
  const jsrsasignVerifies = verifier.verify(bufToHex(pss));

  const mac = new rs.KJUR.crypto.Mac({ alg: "HmacSHA256", pass: { utf8: "key" } });
  mac.updateString(data);
  const ccfMac = bufToHex(ccfcrypto.sign({ name: "HMAC", hash: "SHA-256" }, "key", ccf.strToBuf(data)));

  const ec = ccfcrypto.generateEcdsaKeyPair("secp256r1");
  const x509 = new rs.X509();
  x509.readCertPEM(certificate);
  return {
    body: {
      jsrsasignVerifies,
      sameHmac: mac.doFinal() === ccfMac,
      curve: rs.KEYUTIL.getKey(ec.publicKey).curveName,
      subject: x509.getSubjectString(),
    },
  };
}
