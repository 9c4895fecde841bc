// startNetwork and the client against a real node (the consort binary this repository builds,
// or $CONSORT_BIN): the logging sample deployed, a write followed to its verified receipt.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startNetwork } from "../src/testing.js";
import { ClientError } from "../src/client.js";

const app = fileURLToPath(new URL("../../samples/logging", import.meta.url));
const net = await startNetwork({ app });
after(() => net.stop());

test("a write, its commit and its receipt, verified", async () => {
  const reply = await net.user0.post("/app/log/public", { id: 42, msg: "from the SDK" });
  assert.equal(reply.status, 200, reply.text());
  assert.match(reply.txid, /^\d+\.\d+$/);
  assert.equal(await net.user0.waitForCommit(reply.txid), "Committed");
  const verified = await net.user0.verifiedReceipt(reply.txid);
  assert.equal(verified.txid, reply.txid);
  assert.ok(verified.receipt.proof.length >= 0 && verified.receipt.cert.includes("BEGIN CERTIFICATE"));
  const read = await net.user0.get("/app/log/public?id=42");
  assert.deepEqual(read.json(), { msg: "from the SDK" });
});

test("real error shapes: no identity, unknown path, a transaction that never happened", async () => {
  const anonymous = net.client();
  const refused = await anonymous.get("/app/log/public?id=42");
  assert.equal(refused.status, 401);
  assert.equal(refused.json().error.code, "InvalidAuthenticationInfo");
  const missing = await net.user0.get("/app/nowhere");
  assert.equal(missing.status, 404);
  await assert.rejects(net.user0.waitForCommit("99.1", { timeoutMs: 500 }), ClientError);
});

test("member0 governs: consort gov as member0, and member0's own HTTPS calls", async () => {
  const members = await net.member0.get("/gov/service/members?api-version=2024-07-01");
  assert.equal(members.status, 200, members.text());
  assert.ok(Object.keys(members.json().value ?? members.json()).length >= 1);
  const info = await net.gov("info");
  assert.match(info, /member/i);
});

test("stop() stops every process it started", async () => {
  const second = await startNetwork({ app });
  const pids = second.pids();
  assert.ok(pids.length >= 2, `the sandbox and its node: ${pids}`);
  await second.stop();
  const running = pids.filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  assert.deepEqual(running, [], "no process of the network is left");
  assert.ok(!existsSync(second.workspace), "the temporary workspace is removed");
  await assert.rejects(second.user0.get("/app/commit"));
});

test("an app that would not deploy fails startNetwork with the reason, and leaves nothing running", async () => {
  const dir = mkdtempSync(join(tmpdir(), "consort-sdk-bad-"));
  mkdirSync(join(dir, "src"));
  writeFileSync(join(dir, "src", "app.js"), "export function a() {}");
  writeFileSync(join(dir, "app.json"), JSON.stringify({ endpoints: { "/b": { get: { js_module: "app.js", js_function: "b", authn_policies: [], forwarding_required: "never", mode: "readonly" } } } }));
  await assert.rejects(startNetwork({ app: dir }), (e) => /does not export a function "b"/.test(e.message));
  await assert.rejects(startNetwork({ app: join(dir, "nowhere") }), /no app at/);
});
