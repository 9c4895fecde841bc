// startNetwork under jest (ESM: NODE_OPTIONS=--experimental-vm-modules), beforeAll/afterAll.
import { afterAll, beforeAll, expect, test } from "@jest/globals";
import { fileURLToPath } from "node:url";
import { startNetwork } from "../../src/testing.js";

const app = fileURLToPath(new URL("../../../samples/logging", import.meta.url));
let net;
beforeAll(async () => {
  net = await startNetwork({ app });
}, 120_000);
afterAll(() => net?.stop());

test("a call to the app through the harness, under jest", async () => {
  const reply = await net.user0.post("/app/log/public", { id: 2, msg: "jest" });
  expect(reply.status).toBe(200);
  const verified = await net.user0.verifiedReceipt(reply.txid);
  expect(verified.txid).toBe(reply.txid);
}, 60_000);
