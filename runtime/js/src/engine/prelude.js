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

  // Historical state (ccf.historicalState, ccf.historical.getStateRange): the writes of one
  // committed transaction, read-only, with its receipt.
  function keyString(b) {
    const u = new Uint8Array(b);
    let s = "";
    for (let i = 0; i < u.length; i++) s += String.fromCharCode(u[i]);
    return s;
  }
  class HistoricalKvMap {
    constructor(name, pairs, seqno) {
      this._name = name;
      this._seqno = seqno;
      this._entries = new Map();
      for (const [k, v] of pairs) if (v !== null) this._entries.set(keyString(k), [k, v]);
    }
    has(key) { return this._entries.has(keyString(buf(key, "key"))); }
    get(key) { const e = this._entries.get(keyString(buf(key, "key"))); return e === undefined ? undefined : e[1]; }
    getVersionOfPreviousWrite(key) { return this.has(key) ? this._seqno : undefined; }
    set() { return this._readOnly("set"); }
    delete() { return this._readOnly("delete"); }
    clear() { return this._readOnly("clear"); }
    _readOnly(op) { throw new Error("historical state is read-only: cannot " + op + " in map " + this._name); }
    forEach(callback) {
      if (typeof callback !== "function") throw new TypeError("forEach callback must be a function");
      for (const [k, v] of this._entries.values()) callback(v, k, this);
    }
    get size() { return this._entries.size; }
  }
  function historicalState(raw) {
    const seqno = Number(raw.transactionId.split(".")[1]);
    const opened = new Map();
    const kv = new Proxy({}, {
      get(_t, name) {
        if (typeof name !== "string") return undefined;
        let m = opened.get(name);
        if (m === undefined) { m = new HistoricalKvMap(name, raw.maps[name] || [], seqno); opened.set(name, m); }
        return m;
      },
      set() { throw new TypeError("historical state is read-only"); },
    });
    return { transactionId: raw.transactionId, receipt: JSON.parse(raw.receipt), kv };
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

  // Hooks for the constitution's apply (CCF's ccf.node / ccf.network / JWT helpers). They work
  // through ccf.kv, so the permission matrix decides where they may run: only apply may write
  // governance maps.
  const singleton = () => new ArrayBuffer(8);
  const readJson = (map, key) => {
    const v = kv[map].get(key);
    return v === undefined ? undefined : JSON.parse(bufToStr(v));
  };
  const writeJson = (map, key, value) => kv[map].set(key, strToBuf(JSON.stringify(value)));
  const notImplemented = (name) => () => {
    throw new Error(`${name} is not implemented by Consort yet`);
  };
  const SERVICE_INFO = "public:ccf.gov.service.info";
  const JWT_KEYS = "public:ccf.gov.jwt.public_signing_keys_metadata_v2";
  function dropIssuerKeys(issuer) {
    const changes = [];
    kv[JWT_KEYS].forEach((v, k) => {
      const list = JSON.parse(bufToStr(v));
      const kept = list.filter((m) => m.issuer !== issuer);
      if (kept.length !== list.length) changes.push([k, kept]);
    });
    for (const [k, kept] of changes) {
      if (kept.length === 0) kv[JWT_KEYS].delete(k);
      else writeJson(JWT_KEYS, k, kept);
    }
  }
  const node = {
    transitionServiceToOpen: (previousIdentity, nextIdentity) => {
      const info = readJson(SERVICE_INFO, singleton());
      if (info === undefined) throw new Error("the service information is missing");
      if (nextIdentity !== undefined && bufToStr(nextIdentity).trim() !== String(info.cert).trim()) {
        throw new Error("next_service_identity is not this service's certificate");
      }
      if (info.status === "Open") throw new Error("the service is already Open");
      if (info.status === "WaitingForRecoveryShares") throw new Error("the service is already waiting for recovery shares");
      if (info.status === "Recovering") {
        // A recovered service opens once members have submitted their recovery shares.
        const previous = previousIdentity === undefined ? "" : bufToStr(previousIdentity).trim();
        if (previous !== String(info.previous_service_identity).trim()) {
          throw new Error("previous_service_identity is not the certificate of the service this one recovers");
        }
        info.status = "WaitingForRecoveryShares";
      } else {
        info.status = "Open";
      }
      writeJson(SERVICE_INFO, singleton(), info);
    },
    triggerLedgerRekey: () => N.requestLedgerRekey(),
    triggerRecoverySharesRefresh: () => N.requestSharesRefresh(),
    triggerSnapshot: () => N.requestSnapshot(),
    triggerLedgerChunk: () => N.requestLedgerChunk(),
    triggerACMERefresh: notImplemented("ccf.node.triggerACMERefresh"),
  };
  function arity(name, expected, args) {
    if (args.length !== expected) {
      throw new TypeError(`${name}: passed ${args.length} arguments but expected ${expected === 0 ? "none" : expected}`);
    }
  }
  const network = {
    generateEndorsedCertificate: (...args) => {
      arity("ccf.network.generateEndorsedCertificate", 3, args);
      return N.endorseCsr(String(args[0]), String(args[1]), Number(args[2]));
    },
    generateNetworkCertificate: (...args) => {
      arity("ccf.network.generateNetworkCertificate", 2, args);
      return N.renewServiceCert(String(args[0]), Number(args[1]));
    },
    getLatestLedgerSecretSeqno: (...args) => {
      arity("ccf.network.getLatestLedgerSecretSeqno", 0, args);
      return N.latestSecretSeqno();
    },
  };
  function setJwtPublicSigningKeys(issuer, metadata, jwks) {
    issuer = String(issuer);
    if (jwks === null || typeof jwks !== "object" || !Array.isArray(jwks.keys)) throw new TypeError("jwks must be {keys: [...]}");
    const fresh = jwks.keys.map((jwk, i) => {
      if (typeof jwk.kid !== "string") throw new TypeError(`jwks.keys[${i}].kid must be a string`);
      const entry = { public_key: N.jwkDer(JSON.stringify(jwk)), issuer };
      if (typeof jwk.issuer === "string") entry.constraint = jwk.issuer;
      return [jwk.kid, entry];
    });
    dropIssuerKeys(issuer);
    for (const [kid, entry] of fresh) {
      const key = strToBuf(kid);
      const list = readJson(JWT_KEYS, key) || [];
      list.push(entry);
      writeJson(JWT_KEYS, key, list);
    }
  }

  // CCF's `ccf.tcbHexToPolicy(cpuid, tcbHex)`: an AMD SEV-SNP TCB version (8 bytes, hex, most
  // significant first) read as the product's fields; the product comes from the CPUID
  // (Fn0000_0001_EAX, hex).
  function tcbHexToPolicy(...args) {
    if (args.length !== 2) throw new TypeError(`Passed ${args.length} arguments, but expected 2`);
    const [cpuidHex, tcbHex] = args.map(String);
    if (!/^[0-9a-fA-F]{8}$/.test(cpuidHex)) throw new TypeError("CPUID could not be parsed");
    const cpuid = parseInt(cpuidHex, 16);
    const family = ((cpuid >> 8) & 0xf) + ((cpuid >> 20) & 0xff);
    const model = (((cpuid >> 16) & 0xf) << 4) | ((cpuid >> 4) & 0xf);
    const product = { "25:1": "Milan", "25:17": "Genoa", "26:1": "Turin" }[`${family}:${model}`];
    if (product === undefined) throw new Error(`SEV-SNP: Unsupported CPUID family ${family} model ${model}`);
    if (!/^([0-9a-fA-F]{2})*$/.test(tcbHex)) throw new TypeError("TCB could not be parsed from hex_str");
    if (tcbHex.length !== 16) throw new Error(`Invalid TCB version data size: ${tcbHex.length / 2}`);
    // Little-endian in the report: raw[0] is the last byte of the hex string.
    const raw = [];
    for (let i = 14; i >= 0; i -= 2) raw.push(parseInt(tcbHex.slice(i, i + 2), 16));
    const hexstring = tcbHex.toLowerCase();
    if (product === "Turin") {
      return { hexstring, microcode: raw[7], snp: raw[3], tee: raw[2], boot_loader: raw[1], fmc: raw[0] };
    }
    return { hexstring, microcode: raw[7], snp: raw[6], tee: raw[1], boot_loader: raw[0] };
  }

  // CCF's `snp_attestation.verifySnpAttestation`: byte fields of the result as ArrayBuffers.
  // Verifying UVM endorsements (Microsoft's COSE documents) is not implemented: asking for it
  // throws rather than answer without it.
  const SNP_BYTES = ["family_id", "image_id", "report_data", "measurement", "host_data", "id_key_digest", "author_key_digest",
    "report_id", "report_id_ma", "chip_id"];
  globalThis.snp_attestation = {
    verifySnpAttestation: function (...args) {
      if (args.length < 2 || args.length > 4) throw new TypeError(`Passed ${args.length} arguments, but expected between 2 and 4`);
      const [evidence, endorsements, uvmEndorsements, endorsedTcb] = args;
      if (uvmEndorsements !== undefined) {
        throw new RangeError("snp_attestation.verifySnpAttestation: verifying uvm_endorsements is not implemented by Consort");
      }
      const r = JSON.parse(N.verifySnp(evidence, endorsements, endorsedTcb === undefined ? undefined : String(endorsedTcb)));
      for (const k of SNP_BYTES) r.attestation[k] = N.b64ToBuf(r.attestation[k]);
      r.attestation.signature.r = N.b64ToBuf(r.attestation.signature.r);
      r.attestation.signature.s = N.b64ToBuf(r.attestation.signature.s);
      return r;
    },
  };

  let untrustedDateTime = false;
  let metricsLogging = false;

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
    tcbHexToPolicy,
    node,
    network,
    gov: {
      validateConstitution: (...args) => {
        if (args.length !== 1) throw new TypeError(`Passed ${args.length} arguments, but expected 1`);
        return N.checkConstitution(args[0]);
      },
    },
    setJwtPublicSigningKeys,
    removeJwtPublicSigningKeys: (issuer) => dropIssuerKeys(String(issuer)),
    // Consort compiles modules once per app version by itself: nothing to refresh.
    refreshAppBytecodeCache: () => {},
    // `Date` always tells the real time on Consort (SPEC: Date.now() works; CCF 7 does the
    // same): the switch is kept for CCF 6 apps and answers the previous setting.
    enableUntrustedDateTime: function (...args) {
      if (args.length !== 1) throw new TypeError(`Passed ${args.length} arguments, but expected 1`);
      const previous = untrustedDateTime;
      untrustedDateTime = !!args[0];
      return previous;
    },
    // Logs each request's execution time from this interpreter on (the node's log).
    enableMetricsLogging: function (...args) {
      if (args.length !== 1) throw new TypeError(`Passed ${args.length} arguments, but expected 1`);
      if (typeof args[0] !== "boolean") throw new TypeError("First argument must be a boolean");
      const previous = metricsLogging;
      metricsLogging = args[0];
      return previous;
    },
    // Consort's own helpers for constitutions.
    consort: {
      // Throws an Error naming the problem if the bundle ({metadata, modules}) would not load:
      // a module missing or not compiling, a function not exported, an unknown policy.
      validateJsApp: (bundle) => N.checkBundle(JSON.stringify(bundle)),
    },
    // Deprecated in CCF 6 but still present there: the same functions at the top level.
    generateAesKey: crypto.generateAesKey,
    generateRsaKeyPair: crypto.generateRsaKeyPair,
    generateEcdsaKeyPair: crypto.generateEcdsaKeyPair,
    wrapKey: crypto.wrapKey,
    digest: crypto.digest,
    isValidX509CertBundle: crypto.isValidX509CertBundle,
    isValidX509CertChain: crypto.isValidX509CertChain,
    historical: {
      getStateRange: (handle, from, to, expirySeconds) => {
        const states = N.stateRange(Number(handle), Number(from), Number(to), Number(expirySeconds));
        return states === null ? null : states.map(historicalState);
      },
      dropCachedStates: (handle) => N.dropStates(Number(handle)),
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

  // Set before the app's modules load, so that `export const historicalState =
  // ccf.historicalState` in @microsoft/ccf-app sees it (historical requests get a fresh
  // interpreter for this reason).
  globalThis.__consort_set_historical = function (historical) {
    globalThis.ccf.historicalState = historical === undefined ? undefined : historicalState(historical);
  };

  // Governance calls: the result as JSON text (undefined as null).
  globalThis.__consort_call = function (f, ...args) {
    const r = f(...args);
    const j = r === undefined ? undefined : JSON.stringify(r);
    return j === undefined ? "null" : j;
  };
  // The body of the request being handled. A body object kept from an earlier request (in a
  // reused interpreter) reads the current request's body, as in CCF, where the body accessors
  // read the request in progress: no request ever sees another's body.
  let currentBody = new ArrayBuffer(0);
  globalThis.__consort_invoke = function (handler, request, body) {
    const caller = request.caller;
    if (caller) {
      coseContent(caller);
      if (Array.isArray(caller.policy)) for (const p of caller.policy) coseContent(caller[p]);
    }
    currentBody = body;
    request.body = {
      text: () => N.bodyText(currentBody),
      json: () => N.bodyJson(currentBody),
      arrayBuffer: () => currentBody,
    };
    // The framework's own timing reads a monotonic clock, not the app's Date, so it takes
    // nothing from the handler's recorded time values.
    const started = N.monotonicMs();
    const r = handler(request);
    if (metricsLogging) {
      N.log("info", `JS execution metrics: ${request.method} ${request.path}: ${N.monotonicMs() - started} ms`);
    }
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

  // Boa 0.22's Array.prototype.join and toLocaleString convert each element natively, and an
  // element that is an array converts through join again: nested arrays recurse in native code
  // with no check (2 KiB of stack a level; docs/perf.md). Going through these JS wrappers makes
  // each level a JS call, which the runtime's stack limit (max_stack_bytes) counts and stops.
  const nativeJoin = Array.prototype.join;
  const nativeToLocaleString = Array.prototype.toLocaleString;
  const wrappers = {
    join(separator) { return nativeJoin.call(this, separator); },
    toLocaleString() { return nativeToLocaleString.apply(this, arguments); },
  };
  for (const name of ["join", "toLocaleString"]) {
    Object.defineProperty(Array.prototype, name, { value: wrappers[name], writable: true, enumerable: false, configurable: true });
  }

  // The other built-ins Boa 0.22 runs by native recursion as deep as the script's data goes
  // (docs/perf.md, "Native stack per nesting level"), replaced by JS that recurses through
  // calls the stack limit counts, or not at all. JSON.stringify is replaced natively
  // (runtime/js/src/json.rs). What they call is taken now, before any app code can change it.
  const { apply, defineProperty: define, deleteProperty, construct } = Reflect;
  const isArray = Array.isArray;
  const keysOf = Object.keys;
  const builtin = (holder, name, f) => Object.defineProperty(holder, name, { value: f, writable: true, enumerable: false, configurable: true });
  const toIntegerOrInfinity = (v) => { const n = +v; return n !== n || n === 0 ? 0 : Number.isFinite(n) ? Math.trunc(n) : n; };
  const toLength = (v) => { const n = toIntegerOrInfinity(v); return n <= 0 ? 0 : Math.min(n, Number.MAX_SAFE_INTEGER); };
  const createDataProperty = (o, k, value) => {
    if (!define(o, k, { value, writable: true, enumerable: true, configurable: true })) throw new TypeError(`cannot define property ${String(k)}`);
  };

  // JSON.parse with a reviver: Boa walks the result natively, and a reviver can give a key not
  // yet visited a value nested without end. The text itself nests at most 128 levels (serde_json
  // checks it first), so the native walk over the untouched result, which only records each
  // value's context (the source text of primitives), is bounded; the walk that calls the
  // reviver is this JS one.
  const nativeParse = JSON.parse;
  builtin(JSON, "parse", ({ parse(text, reviver) {
    if (typeof reviver !== "function") return nativeParse(text);
    const recorded = new Map();
    let top;
    const result = nativeParse(text, function (key, value, context) {
      let own = recorded.get(this);
      if (own === undefined) recorded.set(this, own = new Map());
      own.set(key, top = [value, context]);
      return value;
    });
    const walk = (holder, name, record) => {
      const value = holder[name];
      if (typeof value === "object" && value !== null) {
        const own = recorded.get(value);
        const visit = (key) => {
          const revived = walk(value, key, own === undefined ? undefined : own.get(key));
          if (revived === undefined) deleteProperty(value, key); else define(value, key, { value: revived, writable: true, enumerable: true, configurable: true });
        };
        if (isArray(value)) {
          const len = toLength(value.length);
          for (let i = 0; i < len; i++) visit(String(i));
        } else {
          for (const key of keysOf(value)) visit(key);
        }
      }
      const context = record !== undefined && Object.is(record[0], value) ? record[1] : {};
      return apply(reviver, holder, [name, value, context]);
    };
    return walk({ "": result }, "", top);
  } }).parse);

  // Array.prototype.flat: FlattenIntoArray with a stack of its own instead of recursion.
  const species = Symbol.species;
  builtin(Array.prototype, "flat", ({ flat(...args) {
    if (this === undefined || this === null) throw new TypeError("Array.prototype.flat called on null or undefined");
    const source = Object(this);
    const length = toLength(source.length);
    const depth = args[0] === undefined ? 1 : Math.max(toIntegerOrInfinity(args[0]), 0);
    let out;
    let C = isArray(source) ? source.constructor : undefined;
    if (C !== null && (typeof C === "object" || typeof C === "function")) C = C[species] ?? undefined;
    if (C === undefined) out = [];
    else if (typeof C !== "function") throw new TypeError("Array.prototype.flat: the species is not a constructor");
    else out = new C(0);
    let n = 0;
    const pending = [[source, length, 0, depth]];
    while (pending.length > 0) {
      const at = pending[pending.length - 1];
      if (at[2] >= at[1]) { pending.pop(); continue; }
      const key = String(at[2]++);
      if (!(key in at[0])) continue;
      const element = at[0][key];
      if (at[3] > 0 && isArray(element)) {
        pending.push([element, toLength(element.length), 0, at[3] - 1]);
      } else {
        if (n >= Number.MAX_SAFE_INTEGER) throw new TypeError("Array.prototype.flat: the result is too long");
        createDataProperty(out, String(n++), element);
      }
    }
    return out;
  } }).flat);

  // Chains Boa follows by native recursion on every use (a proxy's target and handler, a bound
  // function's target) are capped where they are built, the only places they can be: a step
  // of the script can then never take more than CHAIN_MAX levels of native stack.
  const CHAIN_MAX = 128;
  const chainDepth = new WeakMap();
  const depthOf = (v) => ((typeof v === "object" && v !== null) || typeof v === "function" ? chainDepth.get(v) ?? 0 : 0);
  const link = (what, a, b) => {
    const depth = Math.max(depthOf(a), depthOf(b)) + 1;
    if (depth > CHAIN_MAX) throw new RangeError(`${what}: a chain of more than ${CHAIN_MAX} proxies and bound functions`);
    return depth;
  };
  const NativeProxy = Proxy;
  const nativeRevocable = Proxy.revocable;
  builtin(NativeProxy, "revocable", ({ revocable(target, handler) {
    const depth = link("Proxy.revocable", target, handler);
    const r = nativeRevocable(target, handler);
    chainDepth.set(r.proxy, depth);
    return r;
  } }).revocable);
  builtin(globalThis, "Proxy", new NativeProxy(NativeProxy, {
    construct(target, args, newTarget) {
      const depth = link("Proxy", args[0], args[1]);
      const proxy = construct(target, args, newTarget);
      chainDepth.set(proxy, depth);
      return proxy;
    },
  }));
  const nativeBind = Function.prototype.bind;
  builtin(Function.prototype, "bind", ({ bind(thisArg, ...args) {
    const depth = link("Function.prototype.bind", this);
    const bound = apply(nativeBind, this, [thisArg, ...args]);
    chainDepth.set(bound, depth);
    return bound;
  } }).bind);
})();
