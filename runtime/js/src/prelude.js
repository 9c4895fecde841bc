// The JS half of the `ccf` global (SPEC §4, global.d.ts of @microsoft/ccf-app 6.x). Natives
// come in as `__consort` and are hidden from the app before its modules run.
(function () {
  "use strict";
  const N = globalThis.__consort;
  delete globalThis.__consort;

  function buf(x, what) {
    if (!(x instanceof ArrayBuffer)) {
      throw new TypeError(what + " must be an ArrayBuffer, got " + (x === null ? "null" : typeof x));
    }
    return x;
  }

  class KvMap {
    constructor(name) { this._name = name; }
    has(key) { return N.kvHas(this._name, buf(key, "key")); }
    get(key) { return N.kvGet(this._name, buf(key, "key")); }
    getVersionOfPreviousWrite(key) { return N.kvVersion(this._name, buf(key, "key")); }
    set(key, value) { N.kvSet(this._name, buf(key, "key"), buf(value, "value")); return this; }
    delete(key) { return N.kvDelete(this._name, buf(key, "key")); }
    clear() { N.kvClear(this._name); }
    forEach(callback) {
      if (typeof callback !== "function") throw new TypeError("forEach callback must be a function");
      for (const [k, v] of N.kvEntries(this._name)) callback(v, k, this);
    }
    get size() { return N.kvSize(this._name); }
  }

  const handles = new Map();
  const kv = new Proxy({}, {
    get(_target, name) {
      if (typeof name !== "string") return undefined;
      let h = handles.get(name);
      if (h === undefined) { h = new KvMap(name); handles.set(name, h); }
      return h;
    },
    set() { throw new TypeError("ccf.kv is read-only: use ccf.kv[name].set(key, value)"); },
  });

  function unsupported(name) {
    return function () { throw new Error(name + " is not supported by this version of Consort"); };
  }

  // ccf.crypto: argument shaping only; the work and CCF's checks are in Rust (crypto/mod.rs).
  const C = (op, params, ...bufs) => N.crypto(op, JSON.stringify(params), ...bufs);
  const J = (op, params, ...bufs) => JSON.parse(C(op, params, ...bufs));
  const signAlgo = (a) => ({ name: String(a && a.name), hash: a && a.hash !== undefined ? String(a.hash) : undefined,
    saltLength: a && a.saltLength !== undefined ? Number(a.saltLength) : undefined });
  const wrapArgs = (key, wrappingKey, a) => {
    const label = a && a.label instanceof ArrayBuffer ? [a.label] : [];
    return [{ algorithm: { name: String(a && a.name), aesKeySize: a && a.aesKeySize !== undefined ? Number(a.aesKeySize) : undefined } },
      buf(key, "key"), buf(wrappingKey, "wrapping key"), ...label];
  };
  const kidOf = (kid) => (kid === undefined ? undefined : String(kid));
  const crypto = {
    digest: (algorithm, data) => C("digest", { algorithm: String(algorithm) }, buf(data, "data")),
    sign: (algorithm, key, data) => C("sign", { algorithm: signAlgo(algorithm), key: String(key) }, buf(data, "plaintext")),
    verifySignature: (algorithm, key, signature, data) =>
      C("verifySignature", { algorithm: signAlgo(algorithm), key: String(key) }, buf(signature, "signature"), buf(data, "plaintext")),
    generateAesKey: (size) => C("generateAesKey", { size: Number(size) }),
    generateRsaKeyPair: (size, exponent) =>
      J("generateRsaKeyPair", { size: Number(size), exponent: exponent === undefined ? undefined : Number(exponent) }),
    generateEcdsaKeyPair: (curve) => J("generateEcdsaKeyPair", { curve: String(curve) }),
    generateEddsaKeyPair: (curve) => J("generateEddsaKeyPair", { curve: String(curve) }),
    wrapKey: (key, wrappingKey, algo) => C("wrapKey", ...wrapArgs(key, wrappingKey, algo)),
    unwrapKey: (key, unwrappingKey, algo) => C("unwrapKey", ...wrapArgs(key, unwrappingKey, algo)),
    isValidX509CertBundle: (pem) => C("isValidX509CertBundle", { pem: String(pem) }),
    isValidX509CertChain: (chain, trusted) => C("isValidX509CertChain", { chain: String(chain), trusted: String(trusted) }),
  };
  for (const name of ["pubPemToJwk", "pemToJwk", "pubRsaPemToJwk", "rsaPemToJwk", "pubEddsaPemToJwk", "eddsaPemToJwk"]) {
    crypto[name] = (pem, kid) => J(name, { pem: String(pem), kid: kidOf(kid) });
  }
  for (const name of ["pubJwkToPem", "jwkToPem", "pubRsaJwkToPem", "rsaJwkToPem", "pubEddsaJwkToPem", "eddsaJwkToPem"]) {
    crypto[name] = (jwk) => C(name, { jwk });
  }

  const strToBuf = (s) => N.strToBuf(String(s));
  const bufToStr = (b) => N.bufToStr(buf(b, "argument"));
  globalThis.ccf = {
    kv,
    strToBuf,
    bufToStr,
    jsonCompatibleToBuf: (v) => N.strToBuf(JSON.stringify(v)),
    bufToJsonCompatible: (b) => JSON.parse(bufToStr(b)),
    rpc: {
      setApplyWrites: (v) => N.setApplyWrites(!!v),
      setClaimsDigest: (b) => N.setClaimsDigest(buf(b, "claims digest")),
    },
    pemToId: (pem) => N.pemToId(String(pem)),
    // Deprecated in CCF 6 but still present there: the same functions at the top level.
    generateAesKey: crypto.generateAesKey,
    generateRsaKeyPair: crypto.generateRsaKeyPair,
    generateEcdsaKeyPair: crypto.generateEcdsaKeyPair,
    wrapKey: crypto.wrapKey,
    digest: crypto.digest,
    isValidX509CertBundle: crypto.isValidX509CertBundle,
    isValidX509CertChain: crypto.isValidX509CertChain,
    // @microsoft/ccf-app binds these when it loads, so they must exist even before they work.
    historical: {
      getStateRange: unsupported("ccf.historical.getStateRange"),
      dropCachedStates: unsupported("ccf.historical.dropCachedStates"),
    },
    consensus: {
      getLastCommittedTxId: () => N.lastCommitted(),
      getStatusForTxId: (view, seqno) => N.txStatus(view, seqno),
      getViewForSeqno: (seqno) => N.viewOf(seqno),
    },
    crypto,
  };

  function fmt(a) {
    if (typeof a === "string") return a;
    if (a instanceof Error) return String(a) + (a.stack ? "\n" + a.stack : "");
    try { const j = JSON.stringify(a); return j === undefined ? String(a) : j; } catch (_) { return String(a); }
  }
  const log = (level) => (...args) => N.log(level, args.map(fmt).join(" "));
  globalThis.console = { log: log("info"), info: log("info"), warn: log("warn"), error: log("error"), debug: log("debug") };

  // Calls a handler and turns its answer into [metaJson, bodyArrayBuffer] (SPEC §4 body rules).
  // A COSE-signed caller's content arrives as base64 in the caller JSON; CCF hands it over as
  // an ArrayBuffer.
  function coseContent(identity) {
    if (identity && identity.cose && typeof identity.cose.content === "string") {
      identity.cose.content = N.b64ToBuf(identity.cose.content);
    }
  }

  globalThis.__consort_invoke = function (handler, request, body) {
    const caller = request.caller;
    if (caller) {
      coseContent(caller);
      if (Array.isArray(caller.policy)) for (const p of caller.policy) coseContent(caller[p]);
    }
    request.body = {
      text: () => N.bufToStr(body),
      json: () => JSON.parse(N.bufToStr(body)),
      arrayBuffer: () => body,
    };
    const r = handler(request);
    if (r === null || typeof r !== "object" || Array.isArray(r)) {
      throw new TypeError("handler must return an object {statusCode?, headers?, body?}, got " + (r === null ? "null" : Array.isArray(r) ? "an array" : typeof r));
    }
    let status = r.statusCode === undefined ? 200 : r.statusCode;
    if (typeof status !== "number" || !Number.isInteger(status) || status < 100 || status > 599) {
      throw new TypeError("statusCode must be an integer from 100 to 599, got " + JSON.stringify(status));
    }
    const headers = [];
    if (r.headers !== undefined && r.headers !== null) {
      if (typeof r.headers !== "object") throw new TypeError("headers must be an object of strings");
      for (const [k, v] of Object.entries(r.headers)) headers.push([String(k), String(v)]);
    }
    let contentType = null;
    let out;
    const b = r.body;
    if (b === undefined || b === null) {
      out = new ArrayBuffer(0);
    } else if (b instanceof ArrayBuffer) {
      out = b; contentType = "application/octet-stream";
    } else if (ArrayBuffer.isView(b)) {
      out = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength); contentType = "application/octet-stream";
    } else if (typeof b === "string") {
      out = N.strToBuf(b); contentType = "text/plain";
    } else {
      const j = JSON.stringify(b);
      out = N.strToBuf(j === undefined ? "null" : j); contentType = "application/json";
    }
    return [JSON.stringify({ status, headers, contentType }), out];
  };
})();
