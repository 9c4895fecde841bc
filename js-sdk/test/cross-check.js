// For the end-to-end cross-check with the Rust side (tests/e2e/sdk.rs): reads a JSON request
// from the file named on the command line and prints, as JSON,
// - for {receipts, serviceCert, otherCert}: each receipt and its tampered copies with this
//   verifier's verdict ({name, receipt, verdict: "ok" | "malformed" | "signature"});
// - for {bundles: true}: each bundle case with the bundler's refusal ({name, bundle, words});
// - for {sign: [{key, cert, msgType, proposalId, createdAt, payload}]}: each signed by
//   memberSigner ({cose: hex}).
import { readFileSync } from "node:fs";
import { verifyReceipt } from "../src/index.js";
import { checkBundle } from "../src/bundle.js";
import { tampered } from "./tamper.js";
import { cases } from "./bundle-cases.js";
import { memberSigner } from "../src/gov.js";

const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
const verdict = (receipt) => {
  try {
    verifyReceipt(receipt, request.serviceCert);
    return "ok";
  } catch (e) {
    if (!e.kind) throw e;
    return e.kind;
  }
};
const out = [];
if (request.sign) {
  for (const { key, cert, msgType, proposalId, createdAt, payload } of request.sign) {
    const signer = await memberSigner({ key, cert });
    out.push({ cose: Buffer.from(await signer.sign(msgType, payload, { proposalId, createdAt })).toString("hex") });
  }
} else if (request.bundles) {
  for (const [name, bundle] of cases) {
    let words = null;
    try {
      await checkBundle(bundle);
    } catch (e) {
      words = e.message;
    }
    out.push({ name, bundle, words });
  }
} else {
  request.receipts.forEach((receipt, i) => {
    out.push({ name: `receipt ${i}`, receipt, verdict: verdict(receipt) });
    for (const [name, copy] of tampered(receipt, request.otherCert)) out.push({ name: `receipt ${i}: ${name}`, receipt: copy, verdict: verdict(copy) });
  });
}
process.stdout.write(JSON.stringify(out));
