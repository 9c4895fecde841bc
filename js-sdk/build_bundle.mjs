#!/usr/bin/env node
// Writes {"metadata": <app.json>, "modules": [{"name", "module"}]} for an app directory to
// stdout. Module names are paths relative to src/, as ccf-build-bundle names them.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: build_bundle.mjs <app dir with app.json and src/>");
  process.exit(2);
}
const src = join(dir, "src");
const modules = [];
(function walk(d) {
  for (const name of readdirSync(d).sort()) {
    const p = join(d, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith(".js") || name.endsWith(".mjs")) {
      modules.push({ name: relative(src, p).split(sep).join("/"), module: readFileSync(p, "utf8") });
    }
  }
})(src);
const metadata = JSON.parse(readFileSync(join(dir, "app.json"), "utf8"));
process.stdout.write(JSON.stringify({ metadata, modules }, null, 2) + "\n");
