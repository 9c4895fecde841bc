// The client's redirects and retries, against a stand-in HTTPS server that presents a real
// node's certificate (endorsed by the service certificate the client trusts): it answers what
// each case needs (503s, then a redirect to the real node).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startNetwork } from "../src/testing.js";
import { Client, ClientError } from "../src/client.js";

const app = fileURLToPath(new URL("../../samples/logging", import.meta.url));
const net = await startNetwork({ app });
after(() => net.stop());
const nodeDir = join(net.workspace, "node0");
const pem = (name) => readFileSync(join(net.workspace, "sandbox_common", name), "utf8");

/** A stand-in node: `answer(request, count)` writes each reply; resolves with its URL and the requests it saw. */
async function standIn(answer) {
  const seen = [];
  const server = https.createServer({ cert: readFileSync(join(nodeDir, "node_cert.pem")), key: readFileSync(join(nodeDir, "node_privk.pem")) }, (req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      seen.push({ method: req.method, url: req.url, body });
      answer(req, res, seen.length);
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  after(() => server.close());
  return { url: `https://127.0.0.1:${server.address().port}`, seen };
}

const client = (url, options = {}) => {
  const c = new Client({ url, serviceCert: net.serviceCert, cert: pem("user0_cert.pem"), key: pem("user0_privk.pem"), backoffMs: 10, ...options });
  after(() => c.close());
  return c;
};

test("a 503 is retried, with backoff, until an answer comes", async () => {
  const node = await standIn((req, res, n) => {
    res.writeHead(n < 3 ? 503 : 200, { "content-type": "application/json" });
    res.end(JSON.stringify({ n }));
  });
  const reply = await client(node.url).post("/app/thing", { a: 1 });
  assert.equal(reply.status, 200);
  assert.deepEqual(reply.json(), { n: 3 });
  assert.equal(node.seen.length, 3);
  assert.ok(node.seen.every((r) => r.body === '{"a":1}' && r.method === "POST"), "the same request each time");
});

test("past its retries the client returns the 503 it got", async () => {
  const node = await standIn((req, res) => {
    res.writeHead(503);
    res.end("busy");
  });
  const reply = await client(node.url, { retries: 2 }).get("/app/x");
  assert.equal(reply.status, 503);
  assert.equal(node.seen.length, 3, "the first try and two retries");
});

test("a redirect to another node is followed, with the same identity, to a real answer", async () => {
  const node = await standIn((req, res) => {
    res.writeHead(307, { location: `${net.url}${req.url}` });
    res.end();
  });
  const reply = await client(node.url).post("/app/log/public", { id: 5, msg: "redirected" });
  assert.equal(reply.status, 200, reply.text());
  assert.match(reply.txid, /^\d+\.\d+$/);
  assert.deepEqual((await net.user0.get("/app/log/public?id=5")).json(), { msg: "redirected" });
});

test("a redirect loop ends with an error", async () => {
  const node = await standIn((req, res) => {
    res.writeHead(308, { location: req.url });
    res.end();
  });
  await assert.rejects(client(node.url).get("/app/loop"), (e) => e instanceof ClientError && /more than 5 redirects/.test(e.message));
});

test("a server the service certificate does not vouch for is refused", async () => {
  const stranger = new Client({ url: net.url, serviceCert: pem("user0_cert.pem") });
  after(() => stranger.close());
  await assert.rejects(stranger.get("/app/commit"));
});
