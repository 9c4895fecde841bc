// Counters that replication tests use as their oracle: every POST adds one to its id's count,
// so a write applied twice shows as a count of 2, and a rolled-back one as no count at all.
const counts = ccf.kv["public:counts"];

function key(request) {
  return ccf.strToBuf(request.params.id);
}

export function increment(request) {
  const old = counts.get(key(request));
  const count = old === undefined ? 1 : Number(ccf.bufToStr(old)) + 1;
  counts.set(key(request), ccf.strToBuf(String(count)));
  return { body: { count } };
}

export function read(request) {
  const value = counts.get(key(request));
  if (value === undefined) {
    return { statusCode: 404, body: { error: { code: "ResourceNotFound", message: `no count for ${request.params.id}` } } };
  }
  return { body: { count: Number(ccf.bufToStr(value)) } };
}

// Every count at once: {id: count}.
export function all() {
  const out = {};
  counts.forEach((value, key) => {
    out[ccf.bufToStr(key)] = Number(ccf.bufToStr(value));
  });
  return { body: out };
}
