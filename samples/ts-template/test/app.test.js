// The app's tests, against a real node: `npm test` builds the app, then starts a one-node
// network with it (consort-sdk/testing) for these tests and stops it at the end.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startNetwork } from "consort-sdk/testing";

const net = await startNetwork({ app: "./dist" });
after(() => net.stop());

test("a note is added, read back and counted", async () => {
  const added = await net.user0.post("/app/notes", { text: "hello" });
  assert.equal(added.status, 201, added.text());
  const { id } = added.json();
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const note = await net.user0.get(`/app/notes/${id}`);
  assert.equal(note.json().text, "hello");
  assert.equal((await net.user0.get("/app/notes")).json().count, 1);
});

test("the write is committed and its receipt verifies against the service certificate", async () => {
  const added = await net.user0.post("/app/notes", { text: "kept" });
  const verified = await net.user0.verifiedReceipt(added.txid);
  assert.equal(verified.txid, added.txid);
});

test("bad input and unknown notes get the app's errors", async () => {
  const bad = await net.user0.post("/app/notes", { text: "" });
  assert.equal(bad.status, 400);
  assert.equal(bad.json().error.code, "InvalidInput");
  const notJson = await net.user0.post("/app/notes", "not json", { headers: { "content-type": "application/json" } });
  assert.equal(notJson.status, 400);
  const missing = await net.user0.get("/app/notes/nope");
  assert.equal(missing.status, 404);
  assert.equal(missing.json().error.code, "NoteNotFound");
});

test("only users may call it", async () => {
  const anonymous = await net.client().get("/app/notes");
  assert.equal(anonymous.status, 401);
});
