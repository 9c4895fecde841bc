// The logging sample, in the shape of CCF's JS logging app: records in a private map (sealed
// in the ledger) and a public map (in the clear), addressed by id.
import { BadQuery, parseQuery, notFound, badRequest } from "./util.js";

const privateRecords = ccf.kv["records"];
const publicRecords = ccf.kv["public:records"];

function key(id) {
  return ccf.strToBuf(String(id));
}

function idFrom(request) {
  const id = parseQuery(request.query).id;
  return id === undefined || id === "" ? undefined : id;
}

// A handler whose malformed query (`?id=%zz`) is the client's error, answered with a 400.
function answering(handler) {
  return (request) => {
    try {
      return handler(request);
    } catch (e) {
      if (e instanceof BadQuery) return badRequest(e.message);
      throw e;
    }
  };
}

function record(map, request) {
  let body;
  try {
    body = request.body.json();
  } catch (e) {
    return badRequest("body must be JSON: {\"id\": ..., \"msg\": \"...\"}");
  }
  if (body === null || typeof body !== "object" || body.id === undefined || typeof body.msg !== "string") {
    return badRequest("body must be {\"id\": <number or string>, \"msg\": <string>}");
  }
  map.set(key(body.id), ccf.strToBuf(body.msg));
  return { body: true };
}

function fetch(map, request) {
  const id = idFrom(request);
  if (id === undefined) return badRequest("missing query parameter id");
  const msg = map.get(key(id));
  if (msg === undefined) return notFound(`No such record: ${id}.`);
  return { body: { msg: ccf.bufToStr(msg) } };
}

function remove(map, request) {
  const id = idFrom(request);
  if (id === undefined) return badRequest("missing query parameter id");
  if (!map.has(key(id))) return notFound(`No such record: ${id}.`);
  map.delete(key(id));
  return { body: true };
}

function count(map) {
  return { body: map.size };
}

export const recordPrivate = (r) => record(privateRecords, r);
export const getPrivate = answering((r) => fetch(privateRecords, r));
export const deletePrivate = answering((r) => remove(privateRecords, r));
export const countPrivate = () => count(privateRecords);
export const recordPublic = (r) => record(publicRecords, r);
export const getPublic = answering((r) => fetch(publicRecords, r));
export const deletePublic = answering((r) => remove(publicRecords, r));
export const countPublic = () => count(publicRecords);

// Who is calling, as the authentication policy saw it.
export function whoAmI(request) {
  return { body: request.caller };
}

// What consensus says about a transaction id (?transaction_id=<view>.<seqno>), through
// ccf.consensus, with the last committed id.
export const consensusStatus = answering((request) => {
  const txid = parseQuery(request.query).transaction_id || "";
  const m = /^(\d+)\.(\d+)$/.exec(txid);
  if (!m) return badRequest("transaction_id=<view>.<seqno> is required");
  const [view, seqno] = [Number(m[1]), Number(m[2])];
  return {
    body: {
      status: ccf.consensus.getStatusForTxId(view, seqno),
      viewOfSeqno: ccf.consensus.getViewForSeqno(seqno),
      lastCommitted: ccf.consensus.getLastCommittedTxId(),
    },
  };
});

// Historical queries, as in CCF's logging app. On `mode: "historical"` endpoints the
// transaction comes from the x-ms-ccf-transaction-id request header, and
// ccf.historicalState.kv holds what that transaction wrote.
export const getHistorical = answering((request) => {
  const id = idFrom(request);
  if (id === undefined) return badRequest("missing query parameter id");
  const state = ccf.historicalState;
  const msg = state.kv["records"].get(key(id));
  if (msg === undefined) return notFound(`Transaction ${state.transactionId} did not write record ${id}.`);
  return { body: { msg: ccf.bufToStr(msg) } };
});

export function getHistoricalWithReceipt(request) {
  const answer = getHistorical(request);
  if (answer.statusCode !== undefined) return answer;
  return { body: { msg: answer.body.msg, transactionId: ccf.historicalState.transactionId, receipt: ccf.historicalState.receipt } };
}

// Every write of public record `id` between two seqnos, through ccf.historical.getStateRange;
// 202 with retry-after while the range loads.
export const getPublicRange = answering((request) => {
  const q = parseQuery(request.query);
  const id = q.id;
  const from = Number(q.from_seqno);
  const to = Number(q.to_seqno);
  if (id === undefined || !Number.isInteger(from) || !Number.isInteger(to)) {
    return badRequest("id, from_seqno and to_seqno are required");
  }
  // One handle per (from, to) range, as CCF's sample derives it.
  const handle = from * 1000003 + to;
  let states;
  try {
    states = ccf.historical.getStateRange(handle, from, to, 60);
  } catch (e) {
    return badRequest(e.message);
  }
  if (states === null) {
    return { statusCode: 202, headers: { "retry-after": "1" }, body: `Historical range ${from}..${to} is loading; retry.` };
  }
  const entries = [];
  for (const s of states) {
    const msg = s.kv["public:records"].get(key(id));
    if (msg !== undefined) entries.push({ seqno: Number(s.transactionId.split(".")[1]), msg: ccf.bufToStr(msg) });
  }
  return { body: { entries } };
});
