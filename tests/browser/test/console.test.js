// The web console (/console) in Chromium against a real three-node network. The browser trusts
// the service certificate as a user's does (an NSS store, no certificate error ignored); the
// page is served by a node over its TLS and loads nothing from anywhere else. Its service view
// lists the three nodes and which is primary, as /node/network says; in its governance view two
// members, each with its key loaded in a page, dry-run, propose and accept set_user (each
// member's ballot shown) and the user calls the app, and a member withdraws a proposal; its
// ledger explorer shows the accepting transaction, verifies its receipt in the page and refuses
// a tampered copy, and shows the app's public writes only to a member's certificate; bad key
// files get a message and send nothing; a node that goes down is said to be down, to a read and
// to a write. Screenshots go to target/console-screenshots/ (docs/console/ with
// UPDATE_SCREENSHOTS=1).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startNetwork } from "consort-sdk/testing";
import { launchTrusting, launchWithIdentity } from "../lib/browser.js";

const repo = (p) => fileURLToPath(new URL(`../../../${p}`, import.meta.url));
const shots = process.env.UPDATE_SCREENSHOTS === "1" ? repo("docs/console") : repo("target/console-screenshots");

const VIEWPORT = { width: 1200, height: 900 };
let net;
let browser;

before(async () => {
  net = await startNetwork({ app: repo("samples/logging"), nodes: 3 });
  browser = await launchTrusting(net.serviceCert);
  mkdirSync(shots, { recursive: true });
});

after(async () => {
  await browser?.close();
  await net?.stop();
});

/** A page of the console at `url`, where every request to another origin fails and is recorded.
 * The browser trusts the service certificate, which issued the nodes' (as README tells a user
 * to): the page is over TLS that verifies, with no certificate error ignored. */
async function consolePage(url, context = null) {
  context ??= await browser.newContext({ viewport: VIEWPORT });
  const origin = new URL(url).origin;
  const elsewhere = [];
  await context.route("**/*", (route) => {
    if (new URL(route.request().url()).origin === origin) return route.continue();
    elsewhere.push(route.request().url());
    return route.abort();
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(url);
  return { page, elsewhere, errors };
}

test("the service view lists the three nodes and the primary", async () => {
  const network = (await net.user0.get("/node/network")).json();
  const { page, elsewhere, errors } = await consolePage(`${net.url}/console`);
  await page.waitForSelector("#nodes tr[data-node]");
  await page.waitForFunction(() => document.querySelectorAll("#nodes tr[data-node]").length === 3, null, { timeout: 60_000 });
  const rows = await page.$$eval("#nodes tr[data-node]", (trs) => trs.map((tr) => ({ id: tr.dataset.node, cells: [...tr.cells].map((c) => c.textContent) })));
  assert.equal(rows.length, 3);
  assert.ok(rows.every((r) => r.cells[1] === "Trusted"), JSON.stringify(rows));
  const primaries = rows.filter((r) => r.cells[2] === "primary");
  assert.deepEqual(primaries.map((r) => r.id), [network.primary_id]);
  assert.equal(await page.textContent("#service-status"), "Open");
  const fingerprint = await page.textContent("#service-fingerprint");
  assert.match(fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  const { X509Certificate } = await import("node:crypto");
  assert.equal(fingerprint, new X509Certificate(net.serviceCert).fingerprint256);
  assert.match(await page.textContent("#endpoints"), /\/log\/private/);
  assert.match(await page.textContent("#constitution"), /export function (validate|resolve|apply)/);
  assert.match(await page.textContent("#members"), /Active/);
  await page.screenshot({ path: `${shots}/service.png`, fullPage: true });
  assert.deepEqual(elsewhere, [], "the page fetched nothing from anywhere else");
  assert.deepEqual(errors, []);
});

test("a file the console does not have is a 404, and the page is sent with a policy that keeps it to its node", async () => {
  const page = await (await browser.newContext()).newPage();
  const missing = await page.goto(`${net.url}/console/nowhere.js`);
  assert.equal(missing.status(), 404);
  const index = await page.goto(`${net.url}/console/`);
  assert.equal(index.status(), 200);
  assert.match(index.headers()["content-security-policy"], /default-src 'none'; script-src 'self'/);
});

/** Loads a member's key and certificate files into the page's member panel. */
async function loadMember(page, key, cert) {
  await page.setInputFiles("#member-key", key);
  await page.setInputFiles("#member-cert", cert);
  await page.click("#load-member");
}

/** Waits until the proposal's row has a cell (`selector` in it) whose text `wanted` accepts,
 * refreshing the list: the node a page reads may apply a write after another answered it. */
async function waitForRow(page, id, selector, wanted) {
  for (;;) {
    await page.click("#refresh");
    const now = await page.textContent(`#proposals tr[data-proposal="${id}"] ${selector}`, { timeout: 1000 }).catch(() => null);
    if (now !== null && wanted(now)) return;
    await page.waitForTimeout(100);
  }
}

/** Waits until `check` holds (a bound on a hang, not on speed: 600 tries 100 ms apart). */
async function waitUntil(check, what) {
  for (let tries = 0; tries < 600; tries++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`gave up waiting for ${what}`);
}

/** Waits until the proposal's row says `state`. */
const waitForState = (page, id, state) => waitForRow(page, id, ".state", (now) => now === state);
/** Waits until the proposal's row counts `n` ballots. */
const waitForBallots = (page, id, n) => waitForRow(page, id, "td:nth-child(4)", (now) => now.startsWith(`${n} ballot(s)`));

/** What the governance test leaves for the ledger explorer's: the transaction that accepted
 * set_user (from the page's own message), alice's user id, and member1's page. */
let accepted;

test("members govern in the page: a key loaded, set_user dry-run then proposed, a second member votes (each ballot shown), the user calls the app", async () => {
  const common = join(net.workspace, "sandbox_common");
  const consort = process.env.CONSORT_BIN ?? repo("target/debug/consort");
  const dir = mkdtempSync(join(tmpdir(), "consort-console-"));
  execFileSync(consort, ["keygen", "--name", "member1", "--dir", dir]);
  execFileSync(consort, ["keygen", "--name", "alice", "--curve", "secp256r1", "--dir", dir]);
  // member1 is added by member0 with consort gov; it acknowledges its membership in the page.
  await net.gov("propose", "--set-member", join(dir, "member1_cert.pem"), "--accept");

  const second = await consolePage(`${net.url}/console#governance`);
  await loadMember(second.page, join(dir, "member1_privk.pem"), join(dir, "member1_cert.pem"));
  await second.page.click("#ack");
  await second.page.waitForSelector("#member-message");
  const member1 = await second.page.textContent("#member-id");
  // Node 0 (which the pages read) may apply the ack after the node that ran it answered.
  await waitUntil(async () => {
    const members = (await net.user0.get("/gov/service/members?api-version=2024-07-01")).json().value;
    return members.find((m) => m.memberId === member1)?.status === "Active";
  }, "member1 Active on node 0");

  const first = await consolePage(`${net.url}/console#governance`);
  await loadMember(first.page, join(common, "member0_privk.pem"), join(common, "member0_cert.pem"));
  await first.page.setInputFiles("#user-cert", join(dir, "alice_cert.pem"));
  await first.page.waitForFunction(() => document.querySelector("#proposal-text").value.includes("set_user"));
  // A dry-run first: the writes it would make, nothing stored.
  const before = (await net.user0.get("/gov/members/proposals?api-version=2024-07-01")).json().value.length;
  await first.page.click("#dry-run");
  await first.page.waitForSelector("#dry-run-result");
  const dryRun = await first.page.textContent("#dry-run-result");
  assert.match(dryRun, /it would apply\. Nothing\s+was stored/);
  assert.match(dryRun, /public:ccf\.gov\.users\.certs/);
  assert.equal((await net.user0.get("/gov/members/proposals?api-version=2024-07-01")).json().value.length, before);
  await first.page.click("#propose");
  await first.page.waitForSelector("#gov-message");
  const proposalId = /Proposed ([0-9a-f]+)/.exec(await first.page.textContent("#gov-message"))[1];
  await waitForState(first.page, proposalId, "Open");
  // Its actions, readably.
  await first.page.click(`#proposals tr[data-proposal="${proposalId}"] a`);
  await first.page.waitForSelector("tr.actions .action");
  assert.match(await first.page.textContent("tr.actions"), /set_user[\s\S]*BEGIN CERTIFICATE/);
  await first.page.click(`#proposals tr[data-proposal="${proposalId}"] .vote-for`);
  await first.page.waitForFunction((id) => document.querySelector("#gov-message")?.textContent.startsWith(`Voted on ${id}: it is Open.`), proposalId);

  // Each member's ballot: member0's source, member1's none yet.
  await waitForBallots(second.page, proposalId, 1);
  await second.page.click(`#proposals tr[data-proposal="${proposalId}"] a`);
  await second.page.waitForSelector("tr.actions table.ballots");
  const member0 = await first.page.textContent("#member-id");
  assert.match(await second.page.textContent(`table.ballots tr[data-member="${member0}"]`), /export function vote \(proposal, proposerId\) \{ return true; \}/);
  assert.match(await second.page.textContent(`table.ballots tr[data-member="${member1}"]`), /no ballot/);
  await second.page.click(`#proposals tr[data-proposal="${proposalId}"] .vote-for`);
  await waitForState(second.page, proposalId, "Accepted");
  await waitForState(first.page, proposalId, "Accepted");
  // Both ballots and the final votes, in the page where the proposal's details are still open.
  await first.page.waitForSelector(`table.ballots tr[data-member="${member1}"] pre`);
  for (const m of [member0, member1]) {
    assert.match(await first.page.textContent(`table.ballots tr[data-member="${m}"]`), /return true;[\s\S]*for$/);
  }
  await first.page.screenshot({ path: `${shots}/governance.png`, fullPage: true });

  const { Client } = await import("consort-sdk/client");
  const alice = new Client({ url: net.url, serviceCert: net.serviceCert, cert: readFileSync(join(dir, "alice_cert.pem"), "utf8"), key: readFileSync(join(dir, "alice_privk.pem"), "utf8") });
  const wrote = await alice.post("/app/log/public", { id: 9, msg: "from alice" });
  alice.close();
  assert.equal(wrote.status, 200, wrote.text());
  // Committed on node 0, which the explorer's pages read.
  await net.user0.waitForCommit(wrote.txid);
  for (const p of [first, second]) {
    assert.deepEqual(p.elsewhere, []);
    assert.deepEqual(p.errors, []);
  }
  const { X509Certificate } = await import("node:crypto");
  const aliceId = new X509Certificate(readFileSync(join(dir, "alice_cert.pem"))).fingerprint256.replaceAll(":", "").toLowerCase();
  accepted = { page: second, transactionId: await second.page.textContent("#gov-message-tx"), aliceId, wroteAt: wrote.txid };
});

test("the ledger explorer shows the accepting transaction and verifies its receipt in the page; a tampered copy fails", async () => {
  assert.ok(accepted, "the governance test ran first");
  const { page, elsewhere, errors } = accepted.page;
  assert.match(accepted.transactionId, /^\d+\.\d+$/);
  // The vote's message links to its transaction in the explorer.
  await page.click("#gov-message-tx");
  const row = `#entries tr[data-txid="${accepted.transactionId}"]`;
  await page.waitForSelector(`${row} + tr.details`);
  assert.match(await page.textContent(`${row} .tables`), /public:ccf\.gov\.users\.certs/);
  const details = `[data-details="${accepted.transactionId}"]`;
  const certs = await page.textContent(`${details} table[data-table="public:ccf.gov.users.certs"]`);
  assert.ok(certs.includes(accepted.aliceId) && certs.includes("BEGIN CERTIFICATE"), certs);
  assert.match(await page.textContent(`${details} table[data-table="public:ccf.gov.proposals_info"]`), /Accepted/);
  // Signature transactions are marked.
  await page.waitForSelector("#entries tr.signature");
  assert.match(await page.textContent("#entries tr.signature .kind"), /signature/);
  // The receipt, fetched once a signature covers the transaction, verified here.
  await page.waitForSelector("#receipt-verdict", { timeout: 60_000 });
  const verdict = await page.textContent("#receipt-verdict");
  assert.match(verdict, new RegExp(`^✔ Verified in this page: transaction ${accepted.transactionId.replace(".", "\\.")}, signed by node`), verdict);
  await page.screenshot({ path: `${shots}/ledger.png`, fullPage: true });
  // A tampered copy: one digit of its claims digest changed.
  const receipt = JSON.parse(await page.inputValue("#receipt-text"));
  const digest = receipt.leaf_components.claims_digest;
  receipt.leaf_components.claims_digest = (digest[0] === "0" ? "1" : "0") + digest.slice(1);
  await page.fill("#receipt-text", JSON.stringify(receipt, null, 2));
  await page.click("#receipt-verify");
  await page.waitForFunction(() => document.querySelector("#receipt-verdict").textContent.startsWith("✘"));
  assert.match(await page.textContent("#receipt-verdict"), /Does not verify: receipt does not verify: the signature over the Merkle root does not verify/);
  // Not JSON at all.
  await page.fill("#receipt-text", "{not json");
  await page.click("#receipt-verify");
  await page.waitForFunction(() => /malformed receipt: not JSON/.test(document.querySelector("#receipt-verdict").textContent));
  assert.deepEqual(elsewhere, []);
  assert.deepEqual(errors, []);
});

test("the app's public writes are shown to a member's certificate only; private writes never", async () => {
  assert.ok(accepted, "the governance test ran first");
  const common = join(net.workspace, "sandbox_common");
  const at = `${net.url}/console#ledger/${accepted.wroteAt}`;
  const anyone = await consolePage(at);
  const row = `#entries tr[data-txid="${accepted.wroteAt}"]`;
  await anyone.page.waitForSelector(`${row} + tr.details`);
  assert.match(await anyone.page.textContent("#ledger-info"), /You read as anyone/);
  assert.match(await anyone.page.textContent(`${row} .tables`), /1 table\(s\) only members see/);
  assert.doesNotMatch(await anyone.page.textContent("#entries"), /from alice/);

  // A browser with member0's certificate and key imported, which it presents to the node.
  const identity = { certPath: join(common, "member0_cert.pem"), keyPath: join(common, "member0_privk.pem"), origin: new URL(net.url).origin };
  const withIdentity = await launchWithIdentity(net.serviceCert, identity, { viewport: VIEWPORT });
  const member = await consolePage(at, withIdentity);
  await member.page.waitForSelector(`${row} + tr.details`);
  assert.match(await member.page.textContent("#ledger-info"), /You read as member/);
  const records = await member.page.textContent(`[data-details="${accepted.wroteAt}"] table[data-table="public:records"]`);
  assert.match(records, /from alice/);
  assert.match(await member.page.textContent(`${row} .kind`), /app v\d+/);
  for (const p of [anyone, member]) {
    assert.deepEqual(p.elsewhere, []);
    assert.deepEqual(p.errors, []);
  }
  await withIdentity.close();
});

test("a member withdraws its own open proposal in the page", async () => {
  const common = join(net.workspace, "sandbox_common");
  const { page, elsewhere, errors } = await consolePage(`${net.url}/console#governance`);
  await loadMember(page, join(common, "member0_privk.pem"), join(common, "member0_cert.pem"));
  await page.fill("#proposal-text", JSON.stringify({ actions: [{ name: "set_recovery_threshold", args: { recovery_threshold: 1 } }] }));
  await page.click("#propose");
  await page.waitForSelector("#gov-message");
  const proposalId = /Proposed ([0-9a-f]+): it is Open/.exec(await page.textContent("#gov-message"))?.[1];
  assert.ok(proposalId, await page.textContent("#gov-message"));
  await waitForState(page, proposalId, "Open");
  await page.click(`#proposals tr[data-proposal="${proposalId}"] .withdraw`);
  await page.waitForFunction(() => document.querySelector("#gov-message")?.textContent.startsWith("Withdrew"));
  assert.match(await page.textContent("#gov-message"), new RegExp(`^Withdrew ${proposalId}\\. Transaction \\d+\\.\\d+\\.$`));
  await waitForState(page, proposalId, "Withdrawn");
  const info = (await net.user0.get(`/gov/members/proposals/${proposalId}?api-version=2024-07-01`)).json();
  assert.equal(info.proposalState, "Withdrawn");
  assert.deepEqual(elsewhere, []);
  assert.deepEqual(errors, []);
});

test("a wrong key file, or a key that is not the certificate's: a clear message and nothing sent", async () => {
  const common = join(net.workspace, "sandbox_common");
  const { page } = await consolePage(`${net.url}/console#governance`);
  const posts = [];
  page.on("request", (r) => r.method() === "POST" && posts.push(r.url()));
  await loadMember(page, join(common, "service_cert.pem"), join(common, "member0_cert.pem"));
  assert.match(await page.textContent("#member-error"), /Not loaded: the private key is not a PEM PRIVATE KEY.*Nothing was sent/);
  await loadMember(page, join(common, "user0_privk.pem"), join(common, "member0_cert.pem"));
  assert.match(await page.textContent("#member-error"), /Not loaded: the private key does not belong to the certificate/);
  assert.deepEqual(posts, []);
});

test("the node a page came from goes down: the page says it cannot reach it, to a read and to a write", async () => {
  // Node 2 serves clients on the first node's port + 4; the page is its.
  const url = new URL(net.url);
  url.port = String(Number(url.port) + 4);
  const { page } = await consolePage(`${url.origin}/console#governance`);
  await page.waitForSelector("#proposals");
  const common = join(net.workspace, "sandbox_common");
  await loadMember(page, join(common, "member0_privk.pem"), join(common, "member0_cert.pem"));
  await page.waitForSelector("#propose");
  const pid = net.pids()[3];
  process.kill(pid, "SIGKILL");
  await page.click("#refresh");
  await page.waitForSelector("#gov-error");
  assert.match(await page.textContent("#gov-error"), /cannot be reached.*is it down\?/);
  // A write to it: the page says it could not be sent, and how to learn whether it took effect.
  await page.click("#propose");
  await page.waitForSelector("#proposal-error");
  assert.match(await page.textContent("#proposal-error"), /^Could not propose: .*cannot be reached.*is it down\?.*Refresh shows whether it took effect/);
});
