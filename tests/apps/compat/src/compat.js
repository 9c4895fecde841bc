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

function b64ToBuf(b64) {
  return Uint8Array.from(atobBytes(b64)).buffer;
}

// Base64 to bytes, without relying on `atob`.
function atobBytes(b64) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const out = [];
  let bits = 0;
  let value = 0;
  for (const c of b64.replace(/=+$/, "")) {
    value = (value << 6) | alphabet.indexOf(c);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >> bits) & 0xff);
    }
  }
  return out;
}

const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");

// snp_attestation.verifySnpAttestation on {evidence, endorsements (base64), endorsed_tcb?}:
// the verified fields, or the error CCF's API throws.
export function snp(request) {
  const { evidence, endorsements, endorsed_tcb, uvm_endorsements } = request.body.json();
  const args = [b64ToBuf(evidence), b64ToBuf(endorsements)];
  if (uvm_endorsements !== undefined || endorsed_tcb !== undefined) args.push(uvm_endorsements === undefined ? undefined : b64ToBuf(uvm_endorsements));
  if (endorsed_tcb !== undefined) args.push(endorsed_tcb);
  try {
    const a = snp_attestation.verifySnpAttestation(...args).attestation;
    return {
      body: {
        version: a.version,
        measurement: hex(a.measurement),
        report_data: hex(a.report_data),
        chip_id_bytes: a.chip_id.byteLength,
        reported_tcb: a.reported_tcb,
        policy: a.policy,
        flags: a.flags,
        plaform_info: a.plaform_info,
        signature_r_bytes: a.signature.r.byteLength,
        buffers: a.measurement instanceof ArrayBuffer && a.host_data instanceof ArrayBuffer,
      },
    };
  } catch (e) {
    return { statusCode: 400, body: { name: e.name, message: e.message } };
  }
}
