// Endpoints that show CCF's behaviour where Consort once differed (issue 17).

export function mine() {
  return { body: { mine: true } };
}

export function echo(request) {
  return { body: { route: request.route, path: request.path, params: request.params, method: request.method } };
}

function thrower() {
  throw new Error("boom from the handler");
}

export function throws() {
  thrower();
}

// CCF's limit test endpoints (tests/js-custom-authorization): recursion, allocation and a busy
// wait, each sized by the request.
function recurse(depth) {
  return depth <= 0 ? 0 : 1 + recurse(depth - 1);
}

export function recursive(request) {
  return { body: { depth: recurse(request.body.json().depth) } };
}

export function alloc(request) {
  const buffer = new Uint8Array(request.body.json().size);
  return { body: { size: buffer.length } };
}

export function sleep(request) {
  const until = Date.now() + request.body.json().time;
  let spins = 0;
  while (Date.now() < until) spins++;
  return { body: { spins: spins > 0 } };
}

// Date tells the real time whether or not the CCF 6 switch is on; the switches answer their
// previous setting.
export function time() {
  const before = Date.now();
  const first = ccf.enableUntrustedDateTime(true);
  const second = ccf.enableUntrustedDateTime(false);
  const metrics = [ccf.enableMetricsLogging(true), ccf.enableMetricsLogging(false)];
  let refused = null;
  try {
    ccf.enableMetricsLogging("yes");
  } catch (e) {
    refused = String(e);
  }
  return { body: { before, after: new Date().getTime(), switch: [first, second], metrics, refused } };
}
