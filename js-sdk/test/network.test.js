// startNetwork and the client against a real node (the consort binary this repository builds,
// or $CONSORT_BIN): the logging sample deployed, a write followed to its verified receipt.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startNetwork } from "../src/testing.js";
import { Client, ClientError } from "../src/client.js";
import { memberSigner } from "../src/gov.js";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

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

test("a proposal and a ballot signed by memberSigner are accepted: the new user calls the app", async () => {
  const common = join(net.workspace, "sandbox_common");
  const read = (name) => readFileSync(join(common, name), "utf8");
  const member0 = await memberSigner({ key: read("member0_privk.pem"), cert: read("member0_cert.pem") });
  const dir = mkdtempSync(join(tmpdir(), "consort-sdk-user-"));
  const [key, cert] = [join(dir, "key.pem"), join(dir, "cert.pem")];
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout", key, "-out", cert, "-nodes", "-subj", "/CN=alice", "-days", "2"], { stdio: "pipe" });
  const anyone = net.client();
  const cose = { "content-type": "application/cose" };
  const actions = { actions: [{ name: "set_user", args: { cert: readFileSync(cert, "utf8") } }] };
  const created = await anyone.post("/gov/members/proposals:create?api-version=2024-07-01", await member0.sign("proposal", JSON.stringify(actions)), { headers: cose });
  assert.equal(created.status, 200, created.text());
  const { proposalId, proposalState } = created.json();
  assert.equal(proposalState, "Open", created.text());
  const ballot = JSON.stringify({ ballot: "export function vote(proposal, proposerId) { return true; }" });
  const path = `/gov/members/proposals/${proposalId}/ballots/${member0.id}:submit?api-version=2024-07-01`;
  const voted = await anyone.post(path, await member0.sign("ballot", ballot, { proposalId }), { headers: cose });
  assert.equal(voted.status, 200, voted.text());
  assert.equal(voted.json().proposalState, "Accepted", voted.text());
  const alice = new Client({ url: net.url, serviceCert: net.serviceCert, cert: readFileSync(cert, "utf8"), key: readFileSync(key, "utf8") });
  const wrote = await alice.post("/app/log/public", { id: 7, msg: "from alice" });
  alice.close();
  assert.equal(wrote.status, 200, wrote.text());
  // A ballot signed for another proposal id is refused by the node.
  const again = await anyone.post("/gov/members/proposals:create?api-version=2024-07-01", await member0.sign("proposal", JSON.stringify(actions)), { headers: cose });
  const wrongId = await anyone.post(`/gov/members/proposals/${again.json().proposalId}/ballots/${member0.id}:submit?api-version=2024-07-01`, await member0.sign("ballot", ballot, { proposalId }), { headers: cose });
  assert.equal(wrongId.status, 400, wrongId.text());
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
