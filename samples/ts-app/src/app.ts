// A TypeScript app on Consort, written against @microsoft/ccf-app 6.0.1 exactly as for CCF:
// typed KV maps with converters, crypto (digests, ECDSA signatures, JWKs), consensus queries, and
// historical queries.
import * as ccfapp from "@microsoft/ccf-app";
import { digest, generateEcdsaKeyPair, pubPemToJwk, sign, verifySignature } from "@microsoft/ccf-app/crypto";
import { historicalState } from "@microsoft/ccf-app/historical";

type Item = {
  name: string;
  tags: string[];
};

// Private map of items by id, values as JSON; a public counter of writes by id.
const items = ccfapp.typedKv("items", ccfapp.string, ccfapp.json<Item>());
const writes = ccfapp.typedKv("public:item_writes", ccfapp.string, ccfapp.uint32);

type Req = ccfapp.Request<Item & { id: string }>;

function error(statusCode: number, code: string, message: string): ccfapp.Response {
  return { statusCode, body: { error: { code, message } } };
}

export function putItem(request: Req): ccfapp.Response {
  let body: Item & { id: string };
  try {
    body = request.body.json();
  } catch {
    return error(400, "InvalidInput", "body must be JSON");
  }
  if (typeof body?.id !== "string" || typeof body.name !== "string" || !Array.isArray(body.tags)) {
    return error(400, "InvalidInput", 'body must be {"id": string, "name": string, "tags": string[]}');
  }
  items.set(body.id, { name: body.name, tags: body.tags });
  writes.set(body.id, (writes.get(body.id) ?? 0) + 1);
  return { statusCode: 201, body: { id: body.id, writes: writes.get(body.id) } };
}

export function getItem(request: ccfapp.Request): ccfapp.Response<Item> | ccfapp.Response {
  const id = request.params["id"];
  const item = items.get(id);
  if (item === undefined) return error(404, "ResourceNotFound", `no item ${id}`);
  return { body: item };
}

export function listItems(): ccfapp.Response {
  const all: Record<string, Item> = {};
  items.forEach((value, key) => {
    all[key] = value;
  });
  return { body: { count: items.size, items: all } };
}

export function hashItem(request: ccfapp.Request): ccfapp.Response {
  const item = items.get(request.params["id"]);
  if (item === undefined) return error(404, "ResourceNotFound", `no item ${request.params["id"]}`);
  const bytes = new Uint8Array(digest("SHA-256", ccfapp.json<Item>().encode(item)));
  return { body: { sha256: Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("") } };
}

export function committed(): ccfapp.Response {
  const last = ccfapp.getLastCommittedTxId();
  return { body: { view: last.view, seqno: last.seqno, status: ccfapp.getStatusForTxId(last.view, last.seqno) } };
}

// Signs an item with a fresh ECDSA P-256 key: the caller gets the P1363 signature over the item's
// JSON bytes, the public key as PEM and as a JWK, and whether the service's own check passed.
export function signItem(request: ccfapp.Request): ccfapp.Response {
  const item = items.get(request.params["id"]);
  if (item === undefined) return error(404, "ResourceNotFound", `no item ${request.params["id"]}`);
  const bytes = ccfapp.json<Item>().encode(item);
  const keys = generateEcdsaKeyPair("secp256r1");
  const algorithm = { name: "ECDSA", hash: "SHA-256" } as const;
  const signature = sign(algorithm, keys.privateKey, bytes);
  return {
    body: {
      signature: Array.from(new Uint8Array(signature), (b) => b.toString(16).padStart(2, "0")).join(""),
      publicKey: keys.publicKey,
      jwk: pubPemToJwk(keys.publicKey, "item-key"),
      verified: verifySignature(algorithm, keys.publicKey, signature, bytes),
    },
  };
}

// An item as the transaction named by the x-ms-ccf-transaction-id header wrote it (a
// `mode: "historical"` endpoint), with that transaction's receipt.
export function getItemAt(request: ccfapp.Request): ccfapp.Response {
  if (historicalState === undefined) return error(500, "InternalError", "no historical state");
  const past = ccfapp.typedKv(historicalState.kv["items"], ccfapp.string, ccfapp.json<Item>());
  const item = past.get(request.params["id"]);
  if (item === undefined) {
    return error(404, "ResourceNotFound", `transaction ${historicalState.transactionId} did not write item ${request.params["id"]}`);
  }
  return { body: { item, transactionId: historicalState.transactionId, receipt: historicalState.receipt } };
}
