// Bundles: reading an app directory as CCF's ccf-build-bundle does (app.json + every file under
// src/), and refusing, with the words a deploy would use, a bundle a node would refuse.
import { readFileSync, readdirSync, statSync, writeFileSync, existsSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { init, parse } from "es-module-lexer";

/** Limits a node holds bundles to (runtime/js/src/engine/bundle.rs). */
export const BUNDLE_MODULES_MAX = 1024;
export const BUNDLE_ENDPOINTS_MAX = 4096;
const METHODS = ["get", "post", "put", "delete", "patch", "head", "options"];
const POLICIES = ["user_cert", "member_cert", "any_cert", "no_auth", "jwt", "user_cose_sign1", "member_cose_sign1"];

/** Why a bundle would be refused; `message` is the deploy's own wording. */
export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = "BundleError";
  }
}

const quote = (s) => JSON.stringify(String(s));

/** `{metadata, modules}` for an app directory: `app.json` and every file under `src/`, named by
 * its path relative to `src/` with `/` separators (as ccf-build-bundle names them). */
export function readAppDir(dir) {
  for (const path of [dir, join(dir, "app.json"), join(dir, "src")]) {
    if (!existsSync(path)) throw new BundleError(`not found: ${path}`);
  }
  let metadata;
  try {
    metadata = JSON.parse(readFileSync(join(dir, "app.json"), "utf8"));
  } catch (e) {
    throw new BundleError(`${join(dir, "app.json")}: ${e.message}`);
  }
  const src = join(dir, "src");
  const files = [];
  const pending = [src];
  while (pending.length) {
    const at = pending.pop();
    for (const name of readdirSync(at).sort()) {
      const path = join(at, name);
      if (statSync(path).isDirectory()) pending.push(path);
      else files.push(path);
    }
  }
  files.sort();
  const modules = files.map((path) => ({ name: relative(src, path).split(sep).join("/"), module: readFileSync(path, "utf8") }));
  return { metadata, modules };
}

const normalise = (name) => String(name).replace(/^(\.\/|\/)+/, "");

/** The module a specifier imported from `base` names, as the node's module loader resolves it. */
function resolveModule(modules, base, specifier) {
  let joined;
  if (specifier.startsWith("./") || specifier.startsWith("../")) {
    const slash = base.lastIndexOf("/");
    joined = `${slash < 0 ? "" : base.slice(0, slash)}/${specifier}`;
  } else if (specifier.startsWith("/")) joined = specifier;
  else return null;
  const parts = [];
  for (const seg of joined.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") parts.pop();
    else parts.push(seg);
  }
  const name = parts.join("/");
  return [name, `${name}.js`, `${name}/index.js`].find((c) => modules.has(c)) ?? null;
}

/** The names a module exports, following `export * from` within the bundle. Throws a
 * BundleError naming the module if one does not parse. */
function exportsOf(modules, name, seen = new Set()) {
  const names = new Set();
  const pending = [name];
  while (pending.length) {
    const at = pending.pop();
    if (seen.has(at)) continue;
    seen.add(at);
    let imports, exports;
    try {
      [imports, exports] = parse(modules.get(at), at);
    } catch (e) {
      throw new BundleError(`module ${quote(at)} does not compile: SyntaxError: ${e.message}`);
    }
    for (const e of exports) names.add(e.n);
    const source = modules.get(at);
    for (const i of imports) {
      const statement = source.slice(i.ss, i.se);
      if (i.n && /^export\s*\*\s*from/.test(statement)) {
        const target = resolveModule(modules, at, i.n);
        if (target) pending.push(target);
      }
    }
  }
  return names;
}

function checkPolicy(policy) {
  if (typeof policy === "string") {
    if (!POLICIES.includes(policy))
      throw `authn policy ${quote(policy)} is not supported by this version of Consort (supported: ${POLICIES.join(", ")})`;
    return;
  }
  if (policy && typeof policy === "object" && !Array.isArray(policy) && Object.keys(policy).length === 1 && Array.isArray(policy.all_of)) {
    policy.all_of.forEach(checkPolicy);
    return;
  }
  throw `authn policy ${JSON.stringify(policy)} is neither a policy name nor {"all_of": [...]}`;
}

/** Throws the BundleError a deploy of `bundle` would fail with; returns nothing if it would
 * deploy. What only running the modules shows (a top level that throws, an export that is not a
 * function) is left to the deploy. */
export async function checkBundle(bundle) {
  await init;
  if (!bundle || typeof bundle !== "object" || !bundle.metadata || !Array.isArray(bundle.modules))
    throw new BundleError('bundle is not valid JSON of the form {"metadata": {"endpoints": ...}, "modules": [...]}');
  if (bundle.modules.length > BUNDLE_MODULES_MAX)
    throw new BundleError(`bundle is invalid: ${bundle.modules.length} modules; at most ${BUNDLE_MODULES_MAX}`);
  const modules = new Map();
  for (const m of bundle.modules) {
    const name = normalise(m.name);
    if (modules.has(name)) throw new BundleError(`bundle is invalid: module ${quote(name)} appears twice`);
    modules.set(name, m.module);
  }
  const endpoints = bundle.metadata.endpoints ?? {};
  const count = Object.values(endpoints).reduce((n, methods) => n + Object.keys(methods).length, 0);
  if (count > BUNDLE_ENDPOINTS_MAX) throw new BundleError(`bundle is invalid: ${count} endpoints; at most ${BUNDLE_ENDPOINTS_MAX}`);
  const exported = new Map();
  for (const [path, methods] of Object.entries(endpoints)) {
    const fail = (endpoint, message) => {
      throw new BundleError(`endpoint ${endpoint}: ${message}`);
    };
    if (!path.startsWith("/")) fail(path, "path must start with '/'");
    if (path.split("{").length !== path.split("}").length) fail(path, "invalid templated path: unbalanced curly brackets");
    for (const [method, def] of Object.entries(methods)) {
      const endpoint = `${method.toUpperCase()} ${path}`;
      if (!METHODS.includes(method)) fail(endpoint, `unknown HTTP method ${quote(method)}`);
      const module = normalise(def.js_module);
      if (!modules.has(module)) fail(endpoint, `js_module ${quote(def.js_module)} is not in the bundle`);
      const forwarding = def.forwarding_required;
      if (!["sometimes", "always", "never"].includes(forwarding))
        fail(endpoint, `forwarding_required must be sometimes, always or never, not ${quote(forwarding)}`);
      const redirection = def.redirection_strategy;
      if (redirection !== undefined && redirection !== null && !["none", "to_primary", "to_backup"].includes(redirection))
        fail(endpoint, `redirection_strategy must be none, to_primary or to_backup, not ${quote(redirection)}`);
      for (const policy of def.authn_policies ?? []) {
        try {
          checkPolicy(policy);
        } catch (why) {
          fail(endpoint, why);
        }
      }
      if (!exported.has(module)) {
        try {
          exported.set(module, exportsOf(modules, module));
        } catch (e) {
          fail(endpoint, e.message);
        }
      }
      if (!exported.get(module).has(def.js_function)) fail(endpoint, `module ${quote(module)} does not export a function ${quote(def.js_function)}`);
    }
  }
}

/** Reads `dir`, checks the bundle and writes it to `out` (`<dir>/bundle.json` by default, as
 * ccf-build-bundle). Returns the bundle and where it went. */
export async function buildBundle(dir, out = join(dir, "bundle.json")) {
  const bundle = readAppDir(dir);
  await checkBundle(bundle);
  writeFileSync(out, JSON.stringify(bundle));
  return { bundle, path: out };
}
