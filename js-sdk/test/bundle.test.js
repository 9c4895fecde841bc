import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync, spawnSync } from "node:child_process";
import { buildBundle, checkBundle, BundleError } from "../src/bundle.js";
import { cases } from "./bundle-cases.js";

const BIN = new URL("../bin/consort-build-bundle.js", import.meta.url).pathname;

/** An app directory with `app.json` and the given files under `src/`. */
function app(endpoints, files) {
  const dir = mkdtempSync(join(tmpdir(), "consort-sdk-"));
  writeFileSync(join(dir, "app.json"), JSON.stringify({ endpoints }));
  for (const [name, source] of Object.entries(files)) {
    mkdirSync(join(dir, "src", name, ".."), { recursive: true });
    writeFileSync(join(dir, "src", name), source);
  }
  return dir;
}
const endpoint = (module, fn, extra = {}) => ({ js_module: module, js_function: fn, authn_policies: ["user_cert"], forwarding_required: "sometimes", mode: "readonly", ...extra });
const refusal = async (bundle) => {
  try {
    await checkBundle(bundle);
  } catch (e) {
    assert.ok(e instanceof BundleError, e);
    return e.message;
  }
  return null;
};

test("an app directory becomes bundle.json in it, every file under src/ a module, as ccf-build-bundle writes it", async () => {
  const dir = app({ "/hello": { get: endpoint("app.js", "hello") } }, {
    "app.js": 'export { hello } from "./lib/greet.js";\n',
    "lib/greet.js": "export function hello() { return { body: 'hi' }; }\n",
    "lib/data.json": "{}",
  });
  const { path } = await buildBundle(dir);
  assert.equal(path, join(dir, "bundle.json"));
  const written = JSON.parse(readFileSync(path, "utf8"));
  assert.deepEqual(written.modules.map((m) => m.name), ["app.js", "lib/data.json", "lib/greet.js"]);
  assert.deepEqual(written.metadata.endpoints["/hello"].get.js_function, "hello");
  rmSync(dir, { recursive: true });
});

test("each bundle a deploy would refuse is refused with the deploy's words", async () => {
  for (const [name, bundle, words] of cases) {
    const got = await refusal(bundle);
    if (words === null || !words.endsWith("SyntaxError")) assert.equal(got, words, name);
    else assert.ok(got?.startsWith(words), `${name}: ${got}`);
  }
});

test("the command writes the bundle, or says why not and writes nothing", () => {
  const good = app({ "/a": { get: endpoint("app.js", "a") } }, { "app.js": "export function a() {}" });
  const out = execFileSync("node", [BIN, good], { encoding: "utf8" });
  assert.match(out, /Writing bundle containing 1 modules to .*bundle\.json/);
  assert.ok(existsSync(join(good, "bundle.json")));
  const elsewhere = join(good, "elsewhere.json");
  execFileSync("node", [BIN, good, "--out", elsewhere]);
  assert.ok(existsSync(elsewhere));

  const bad = app({ "/a": { get: endpoint("app.js", "b") } }, { "app.js": "export function a() {}" });
  const run = spawnSync("node", [BIN, bad], { encoding: "utf8" });
  assert.equal(run.status, 1);
  assert.equal(run.stderr.trim(), 'consort-build-bundle: endpoint GET /a: module "app.js" does not export a function "b"');
  assert.ok(!existsSync(join(bad, "bundle.json")));

  const missing = spawnSync("node", [BIN, join(bad, "nowhere")], { encoding: "utf8" });
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /not found: .*nowhere/);
  assert.equal(spawnSync("node", [BIN], { encoding: "utf8" }).status, 2);
});
