#!/usr/bin/env node
// consort-build-bundle <app dir> [--out FILE]: a drop-in for CCF's ccf-build-bundle that also
// refuses, with the deploy's own words, a bundle a node would refuse.
import { buildBundle, BundleError } from "../src/bundle.js";

const args = process.argv.slice(2);
const outAt = args.indexOf("--out");
const out = outAt >= 0 ? args.splice(outAt, 2)[1] : undefined;
if (args.length !== 1 || (outAt >= 0 && !out)) {
  console.error("usage: consort-build-bundle <app dir with app.json and src/> [--out FILE]");
  process.exit(2);
}
try {
  const { bundle, path } = await buildBundle(args[0], out);
  console.log(`Writing bundle containing ${bundle.modules.length} modules to ${path}`);
} catch (e) {
  if (!(e instanceof BundleError)) throw e;
  console.error(`consort-build-bundle: ${e.message}`);
  process.exit(1);
}
