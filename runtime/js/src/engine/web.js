// The Web APIs npm libraries expect (web.rs says which parts are native and why). Runs before
// the prelude; the natives come in as `__web` and are hidden from the app.
(function () {
  "use strict";
  const W = globalThis.__web;
  delete globalThis.__web;
  const define = (name, value) =>
    Object.defineProperty(globalThis, name, { value, writable: true, configurable: true, enumerable: false });

  // DOMException, as far as the errors below need it (name, message, legacy code).
  const CODES = { InvalidCharacterError: 5, DataCloneError: 25, QuotaExceededError: 22, TypeMismatchError: 17 };
  class DOMException extends Error {
    constructor(message = "", name = "Error") {
      super(String(message));
      Object.defineProperty(this, "name", { value: String(name), configurable: true, writable: true });
    }
    get code() {
      return CODES[this.name] || 0;
    }
  }
  define("DOMException", DOMException);

  // A view of the bytes of an ArrayBuffer, a typed array or a DataView, copied to a new buffer.
  const bufferOf = (input, what) => {
    if (input === undefined) return new ArrayBuffer(0);
    if (input instanceof ArrayBuffer) return input.slice(0);
    if (ArrayBuffer.isView(input)) return input.buffer.slice(input.byteOffset, input.byteOffset + input.byteLength);
    throw new TypeError(`${what}: expected an ArrayBuffer, a typed array or a DataView`);
  };

  // --- TextEncoder / TextDecoder (UTF-8 only, as the Encoding Standard's TextEncoder) ---
  class TextEncoder {
    get encoding() {
      return "utf-8";
    }
    encode(input = "") {
      return new Uint8Array(W.utf8Encode(String(input)));
    }
    encodeInto(source, destination) {
      if (!(destination instanceof Uint8Array)) throw new TypeError("encodeInto: the destination must be a Uint8Array");
      const text = String(source);
      let read = 0;
      let written = 0;
      // Whole code points only, as many as fit.
      for (const ch of text) {
        const cp = ch.codePointAt(0);
        const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        if (written + size > destination.length) break;
        read += ch.length;
        written += size;
      }
      destination.set(new Uint8Array(W.utf8Encode(text.slice(0, read))), 0);
      return { read, written };
    }
  }

  const UTF8_LABELS = ["unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "utf-8", "utf8", "x-unicode20utf8"];
  class TextDecoder {
    #fatal;
    #ignoreBOM;
    #pending = new Uint8Array(0);
    #bomSeen = false;
    constructor(label = "utf-8", options = {}) {
      const name = String(label).trim().toLowerCase();
      if (!UTF8_LABELS.includes(name)) throw new RangeError(`TextDecoder: the encoding ${JSON.stringify(String(label))} is not supported (UTF-8 only)`);
      this.#fatal = !!(options && options.fatal);
      this.#ignoreBOM = !!(options && options.ignoreBOM);
    }
    get encoding() {
      return "utf-8";
    }
    get fatal() {
      return this.#fatal;
    }
    get ignoreBOM() {
      return this.#ignoreBOM;
    }
    decode(input, options = {}) {
      const stream = !!(options && options.stream);
      const fresh = new Uint8Array(bufferOf(input, "TextDecoder.decode"));
      let bytes = fresh;
      if (this.#pending.length) {
        bytes = new Uint8Array(this.#pending.length + fresh.length);
        bytes.set(this.#pending, 0);
        bytes.set(fresh, this.#pending.length);
      }
      let result;
      try {
        result = W.utf8Decode(bytes.buffer, this.#fatal, stream);
      } catch (e) {
        this.#pending = new Uint8Array(0);
        this.#bomSeen = false;
        throw e;
      }
      const [decoded, held] = result;
      let text = decoded;
      this.#pending = bytes.slice(bytes.length - held);
      if (!this.#bomSeen && text.length > 0) {
        this.#bomSeen = true;
        if (!this.#ignoreBOM && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      }
      if (!stream) {
        this.#pending = new Uint8Array(0);
        this.#bomSeen = false;
      }
      return text;
    }
  }
  define("TextEncoder", TextEncoder);
  define("TextDecoder", TextDecoder);

  // --- atob / btoa ---
  define("btoa", function btoa(data) {
    if (arguments.length < 1) throw new TypeError("btoa: 1 argument required");
    const out = W.base64Encode(String(data));
    if (out === null) throw new DOMException("btoa: the string contains characters outside of the Latin1 range", "InvalidCharacterError");
    return out;
  });
  define("atob", function atob(data) {
    if (arguments.length < 1) throw new TypeError("atob: 1 argument required");
    const out = W.base64Decode(String(data));
    if (out === null) throw new DOMException("atob: the string is not correctly encoded base64", "InvalidCharacterError");
    return out;
  });

  // --- Math.random(), through the same sources (so a replay can give its values back) ---
  const { random } = { random() { return W.random(); } };
  Object.defineProperty(Math, "random", { value: random, writable: true, configurable: true, enumerable: false });

  // --- crypto.getRandomValues / crypto.randomUUID, from the operating system's CSPRNG ---
  const INTEGER_ARRAYS = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, BigInt64Array, BigUint64Array];
  const RANDOM_MAX = W.randomBytesMax();
  const getRandomValues = (array) => {
    if (!INTEGER_ARRAYS.some((T) => array instanceof T))
      throw new DOMException("getRandomValues: the argument must be an integer typed array", "TypeMismatchError");
    if (array.byteLength > RANDOM_MAX)
      throw new DOMException(`getRandomValues: ${array.byteLength} bytes asked for, at most ${RANDOM_MAX} at once`, "QuotaExceededError");
    new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(new Uint8Array(W.randomBytes(array.byteLength)));
    return array;
  };
  const randomUUID = () => {
    const b = new Uint8Array(W.randomBytes(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  };
  define("crypto", Object.freeze({ getRandomValues, randomUUID }));

  // --- URLSearchParams / URL (parsing and setters by the `url` crate) ---
  const PARTS = ["href", "origin", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search", "hash"];
  const toUSV = (v) => String(v);
  // Module-private links between a URL and its searchParams (set in the classes' static blocks).
  let linkParams, reparseParams, setSearch;
  class URLSearchParams {
    #list = [];
    #url = null;
    static {
      linkParams = (params, url) => (params.#url = url);
      reparseParams = (params, search) => params.#parse(search.replace(/^\?/, ""));
    }
    constructor(init = "") {
      if (init instanceof URLSearchParams) {
        this.#list = init.#list.map(([k, v]) => [k, v]);
      } else if (init !== null && typeof init === "object" && typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          const p = Array.from(pair);
          if (p.length !== 2) throw new TypeError("URLSearchParams: each pair must have exactly two items");
          this.#list.push([toUSV(p[0]), toUSV(p[1])]);
        }
      } else if (init !== null && typeof init === "object") {
        for (const key of Object.keys(init)) this.#list.push([toUSV(key), toUSV(init[key])]);
      } else {
        this.#parse(String(init).replace(/^\?/, ""));
      }
    }
    #parse(text) {
      const flat = W.formParse(text);
      this.#list = [];
      for (let i = 0; i + 1 < flat.length; i += 2) this.#list.push([flat[i], flat[i + 1]]);
    }
    #update() {
      if (this.#url) setSearch(this.#url, this.toString());
    }
    get size() {
      return this.#list.length;
    }
    append(name, value) {
      this.#list.push([toUSV(name), toUSV(value)]);
      this.#update();
    }
    delete(name, value) {
      const n = toUSV(name);
      this.#list = this.#list.filter(([k, v]) => !(k === n && (value === undefined || v === toUSV(value))));
      this.#update();
    }
    get(name) {
      const found = this.#list.find(([k]) => k === toUSV(name));
      return found ? found[1] : null;
    }
    getAll(name) {
      return this.#list.filter(([k]) => k === toUSV(name)).map(([, v]) => v);
    }
    has(name, value) {
      const n = toUSV(name);
      return this.#list.some(([k, v]) => k === n && (value === undefined || v === toUSV(value)));
    }
    set(name, value) {
      const [n, v] = [toUSV(name), toUSV(value)];
      const first = this.#list.findIndex(([k]) => k === n);
      if (first < 0) this.#list.push([n, v]);
      else {
        this.#list[first][1] = v;
        this.#list = this.#list.filter(([k], i) => i <= first || k !== n);
      }
      this.#update();
    }
    sort() {
      // Stable, by code units of the names (Array.prototype.sort is stable).
      this.#list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      this.#update();
    }
    forEach(callback, thisArg) {
      for (const [k, v] of this.#list.slice()) callback.call(thisArg, v, k, this);
    }
    *entries() {
      for (const [k, v] of this.#list.slice()) yield [k, v];
    }
    *keys() {
      for (const [k] of this.#list.slice()) yield k;
    }
    *values() {
      for (const [, v] of this.#list.slice()) yield v;
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    toString() {
      return W.formSerialize(this.#list.flat());
    }
    get [Symbol.toStringTag]() {
      return "URLSearchParams";
    }
  }

  class URL {
    #parts;
    #params;
    static {
      // An empty query removes the "?" (the URL Standard's searchParams update steps).
      setSearch = (url, query) => (url.#parts = W.urlSet(url.#parts[0], "search", query));
      PARTS.forEach((part, i) => {
        const descriptor = {
          get() {
            return this.#parts[i];
          },
          configurable: true,
          enumerable: true,
        };
        if (part !== "origin")
          descriptor.set = function (value) {
            this.#parts = W.urlSet(this.#parts[0], part, toUSV(value));
            if (part === "href" || part === "search") reparseParams(this.#params, this.#parts[9]);
          };
        Object.defineProperty(URL.prototype, part, descriptor);
      });
    }
    constructor(url, base) {
      const parts = W.urlParse(toUSV(url), base === undefined ? undefined : toUSV(base));
      if (parts === null) throw new TypeError(`Invalid URL: ${JSON.stringify(String(url))}`);
      this.#parts = parts;
      this.#params = new URLSearchParams(parts[9]);
      linkParams(this.#params, this);
    }
    static canParse(url, base) {
      return W.urlParse(toUSV(url), base === undefined ? undefined : toUSV(base)) !== null;
    }
    static parse(url, base) {
      try {
        return new URL(url, base);
      } catch {
        return null;
      }
    }
    get searchParams() {
      return this.#params;
    }
    toString() {
      return this.#parts[0];
    }
    toJSON() {
      return this.#parts[0];
    }
    get [Symbol.toStringTag]() {
      return "URL";
    }
  }
  define("URL", URL);
  define("URLSearchParams", URLSearchParams);

  // --- structuredClone: the structured clone algorithm without native recursion (a work list,
  // so that however deep the value, cloning it costs heap, which the heap limit bounds) ---
  const tagOf = (v) => Object.prototype.toString.call(v).slice(8, -1);
  const ERRORS = { Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError };
  const TYPED = { Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array };
  function structuredClone(value) {
    if (arguments.length < 1) throw new TypeError("structuredClone: 1 argument required");
    const memory = new Map();
    const work = [];
    const uncloneable = (what) => new DOMException(`structuredClone: ${what} could not be cloned`, "DataCloneError");
    const clone = (v) => {
      if (typeof v === "symbol") throw uncloneable("a Symbol");
      if (typeof v === "function") throw uncloneable("a function");
      if (v === null || typeof v !== "object") return v;
      if (memory.has(v)) return memory.get(v);
      const tag = tagOf(v);
      let out;
      if (Array.isArray(v)) {
        out = new Array(v.length);
        work.push(() => Object.keys(v).forEach((k) => (out[k] = clone(v[k]))));
      } else if (tag === "Boolean" || tag === "Number" || tag === "String" || tag === "BigInt") {
        out = Object(v.valueOf());
      } else if (tag === "Date") out = new Date(v.getTime());
      else if (tag === "RegExp") out = new RegExp(v.source, v.flags);
      else if (tag === "ArrayBuffer") out = v.slice(0);
      else if (tag === "DataView") {
        const buffer = clone(v.buffer);
        out = new DataView(buffer, v.byteOffset, v.byteLength);
      } else if (ArrayBuffer.isView(v) && TYPED[tag]) {
        const buffer = clone(v.buffer);
        out = new TYPED[tag](buffer, v.byteOffset, v.length);
      } else if (tag === "Map") {
        out = new Map();
        work.push(() => Array.from(v).forEach(([k, x]) => out.set(clone(k), clone(x))));
      } else if (tag === "Set") {
        out = new Set();
        work.push(() => Array.from(v).forEach((x) => out.add(clone(x))));
      } else if (tag === "Error") {
        const Kind = ERRORS[v.name] || Error;
        out = new Kind(v.message === undefined ? undefined : String(v.message));
        if (typeof v.stack === "string") out.stack = v.stack;
      } else if (tag === "Object") {
        out = {};
        work.push(() => Object.keys(v).forEach((k) => (out[k] = clone(v[k]))));
      } else {
        throw uncloneable(`a ${tag}`);
      }
      memory.set(v, out);
      return out;
    };
    const result = clone(value);
    while (work.length) work.pop()();
    return result;
  }
  define("structuredClone", structuredClone);

  define("queueMicrotask", function queueMicrotask(callback) {
    if (typeof callback !== "function") throw new TypeError("queueMicrotask: the argument must be a function");
    Promise.resolve().then(() => callback());
  });
})();
