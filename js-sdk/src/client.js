// A client for a Consort (or CCF) service from Node.js: mutual TLS with the caller's
// certificate, the service certificate as the only trusted root, CCF's redirects followed,
// 503s retried with backoff, and a transaction followed to its commit and its verified receipt.
import https from "node:https";
import { verifyReceipt } from "./receipt.js";

const TXID_HEADER = "x-ms-ccf-transaction-id";
const REDIRECTS_MAX = 5;

/** A reply: status, headers (lower-case names), the body as bytes, and the transaction id. */
export class Reply {
  constructor(status, headers, body) {
    this.status = status;
    this.headers = headers;
    this.body = body;
    this.txid = headers[TXID_HEADER] ?? null;
  }
  get ok() {
    return this.status >= 200 && this.status < 300;
  }
  text() {
    return this.body.toString("utf8");
  }
  json() {
    return JSON.parse(this.text());
  }
}

/** A request that did not get a reply worth returning; `reply` is the last one, if any. */
export class ClientError extends Error {
  constructor(message, reply = null) {
    super(message);
    this.name = "ClientError";
    this.reply = reply;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Client {
  /**
   * @param {object} options `url` of a node (`https://host:port`), `serviceCert` (PEM, the only
   * trusted root), `cert` and `key` (PEM) of the caller or none for anonymous calls, `retries`
   * of a 503 (default 5) and the first `backoffMs` (default 100, doubled each time).
   */
  constructor({ url, serviceCert, cert, key, retries = 5, backoffMs = 100 }) {
    if (!url || !serviceCert) throw new TypeError("Client: url and serviceCert are required");
    this.url = new URL(url);
    this.serviceCert = serviceCert;
    this.retries = retries;
    this.backoffMs = backoffMs;
    this.agent = new https.Agent({ ca: serviceCert, cert, key, keepAlive: true, maxSockets: 8 });
  }

  /** Closes the kept-alive connections. */
  close() {
    this.agent.destroy();
  }

  #once(url, method, body, headers) {
    return new Promise((resolve, reject) => {
      const req = https.request(url, { method, agent: this.agent, headers }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve(new Reply(res.statusCode, res.headers, Buffer.concat(chunks))));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(body);
    });
  }

  /**
   * Sends a request and returns its Reply: a redirect to another node (307/308 with `Location`)
   * is followed, a 503 is retried after a growing pause (or the `Retry-After` it names).
   * `body` may be an object (sent as JSON), a string or bytes.
   */
  async request(method, path, { body, headers = {} } = {}) {
    let payload = body;
    const sent = { ...headers };
    if (body !== undefined && !(typeof body === "string" || body instanceof Uint8Array)) {
      payload = JSON.stringify(body);
      sent["content-type"] ??= "application/json";
    }
    // The body is whole in memory: sent with its length rather than in chunks.
    if (payload !== undefined) sent["content-length"] = String(Buffer.byteLength(payload));
    let url = new URL(path, this.url);
    let pause = this.backoffMs;
    let redirects = 0;
    for (let attempt = 0; ; ) {
      const reply = await this.#once(url, method, payload, sent);
      if ((reply.status === 307 || reply.status === 308) && reply.headers.location) {
        if (++redirects > REDIRECTS_MAX) throw new ClientError(`${method} ${path}: more than ${REDIRECTS_MAX} redirects`, reply);
        url = new URL(reply.headers.location, url);
        continue;
      }
      if (reply.status === 503 && attempt < this.retries) {
        attempt += 1;
        const after = Number(reply.headers["retry-after"]);
        await sleep(Number.isFinite(after) && after > 0 ? after * 1000 : pause);
        pause *= 2;
        continue;
      }
      return reply;
    }
  }

  get(path, options) {
    return this.request("GET", path, options);
  }
  post(path, body, options = {}) {
    return this.request("POST", path, { ...options, body });
  }
  put(path, body, options = {}) {
    return this.request("PUT", path, { ...options, body });
  }
  delete(path, options) {
    return this.request("DELETE", path, options);
  }

  /**
   * Waits until `txid` is committed (`/app/tx`): resolves with `"Committed"`; throws if the
   * service says it is `Invalid` (it will never commit), or after `timeoutMs` (default 30 s).
   */
  async waitForCommit(txid, { timeoutMs = 30_000, pollMs = 50 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = await this.get(`/app/tx?transaction_id=${encodeURIComponent(txid)}`);
      const status = reply.ok ? reply.json().status : null;
      if (status === "Committed") return status;
      if (status === "Invalid") throw new ClientError(`transaction ${txid} is invalid: it will not commit`, reply);
      if (Date.now() > deadline) throw new ClientError(`transaction ${txid} not committed within ${timeoutMs} ms (last status ${status ?? reply.status})`, reply);
      await sleep(pollMs);
    }
  }

  /** The receipt of a committed transaction (waits for the commit first). */
  async receipt(txid, options = {}) {
    await this.waitForCommit(txid, options);
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    for (;;) {
      const reply = await this.get(`/app/receipt?transaction_id=${encodeURIComponent(txid)}`);
      if (reply.ok) return reply.json();
      const pending = reply.status === 404 && reply.text().includes("TransactionPendingOrUnknown");
      if (!pending || Date.now() > deadline) throw new ClientError(`no receipt for ${txid}: ${reply.status} ${reply.text()}`, reply);
      await sleep(options.pollMs ?? 50);
    }
  }

  /** The receipt of `txid`, verified against the service certificate: `{receipt, view, seqno, txid}`. */
  async verifiedReceipt(txid, options = {}) {
    const receipt = await this.receipt(txid, options);
    return { receipt, ...verifyReceipt(receipt, this.serviceCert) };
  }
}
