// Tampered copies of a receipt, each named: what a verifier must refuse. Shared by the SDK's
// tests and the end-to-end cross-check against the Rust verifier.
const flipHex = (hex) => (hex[0] === "0" ? "1" : "0") + hex.slice(1);
const flipBase64 = (b64) => (b64[0] === "A" ? "B" : "A") + b64.slice(1);

/** `[name, receipt]` pairs, each a copy of `receipt` changed in one way. */
export function tampered(receipt, otherCertPem) {
  const copy = () => structuredClone(receipt);
  const change = (name, f) => {
    const r = copy();
    f(r);
    return [name, r];
  };
  const cases = [
    change("write_set_digest changed", (r) => (r.leaf_components.write_set_digest = flipHex(r.leaf_components.write_set_digest))),
    change("claims_digest changed", (r) => (r.leaf_components.claims_digest = flipHex(r.leaf_components.claims_digest))),
    change("commit_evidence nonce changed", (r) => (r.leaf_components.commit_evidence = r.leaf_components.commit_evidence.replace(/.$/, (c) => (c === "0" ? "1" : "0")))),
    change("commit_evidence for another seqno", (r) => (r.leaf_components.commit_evidence = r.leaf_components.commit_evidence.replace(/^ce:(\d+)\.(\d+):/, (_, v, s) => `ce:${v}.${Number(s) + 1}:`))),
    change("commit_evidence malformed", (r) => (r.leaf_components.commit_evidence = "ce:nope")),
    change("signature changed", (r) => (r.signature = flipBase64(r.signature))),
    change("signature not base64", (r) => (r.signature = "!" + r.signature.slice(1))),
    change("node_id changed", (r) => (r.node_id = flipHex(r.node_id))),
    change("digest in upper case", (r) => (r.leaf_components.write_set_digest = r.leaf_components.write_set_digest.toUpperCase())),
    change("unknown field", (r) => (r.extra = 1)),
    change("leaf_components missing", (r) => delete r.leaf_components),
    change("cert replaced by another certificate", (r) => (r.cert = otherCertPem)),
    change("cert not PEM", (r) => (r.cert = "not a certificate")),
    change("proof element added", (r) => r.proof.push({ left: "00".repeat(32) })),
  ];
  if (receipt.proof.length > 0) {
    cases.push(
      change("proof element changed", (r) => {
        const [side] = Object.keys(r.proof[0]);
        r.proof[0][side] = flipHex(r.proof[0][side]);
      }),
      change("proof element dropped", (r) => r.proof.pop()),
      change("proof element side swapped", (r) => {
        const [side] = Object.keys(r.proof[0]);
        r.proof[0] = { [side === "left" ? "right" : "left"]: r.proof[0][side] };
      }),
      change("proof element with both sides", (r) => {
        const [side] = Object.keys(r.proof[0]);
        r.proof[0] = { left: r.proof[0][side], right: r.proof[0][side] };
      }),
    );
  }
  if (receipt.app_version) {
    cases.push(
      change("app_version.version changed", (r) => (r.app_version.version += 1)),
      change("app_version.bundle_digest changed", (r) => (r.app_version.bundle_digest = flipHex(r.app_version.bundle_digest))),
      change("app_version.entry_digest changed", (r) => (r.app_version.entry_digest = flipHex(r.app_version.entry_digest))),
      change("app_version.version not an integer", (r) => (r.app_version.version = "1")),
      change("app_version with an unknown field", (r) => (r.app_version.extra = 1)),
      change("app_version.entry_digest missing", (r) => delete r.app_version.entry_digest),
    );
  }
  return cases;
}
