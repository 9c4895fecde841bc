// Bundles a deploy refuses, each with the deploy's words: the SDK's tests check the bundler says
// them, and the end-to-end cross-check that the node says them too.
const endpoint = (module, fn, extra = {}) => ({ js_module: module, js_function: fn, authn_policies: ["user_cert"], forwarding_required: "sometimes", mode: "readonly", ...extra });
const modules = [
  { name: "app.js", module: "export function a() {}\nexport * from './more.js';\n" },
  { name: "more.js", module: "export const b = () => 1;\nfunction c() {}\nexport { c as d };\n" },
];
const bundle = (endpoints, mods = modules) => ({ metadata: { endpoints }, modules: mods });
const SUPPORTED = "user_cert, member_cert, any_cert, no_auth, jwt, user_cose_sign1, member_cose_sign1";

/** `[name, bundle, words]`: `words` null for a bundle that deploys. */
export const cases = [
  ["deploys", bundle({ "/a": { get: endpoint("app.js", "a") }, "/b": { post: endpoint("/app.js", "b") }, "/d": { put: endpoint("./more.js", "d") } }), null],
  ["module missing", bundle({ "/x": { get: endpoint("missing.js", "a") } }), 'endpoint GET /x: js_module "missing.js" is not in the bundle'],
  ["function missing", bundle({ "/x": { get: endpoint("app.js", "nope") } }), 'endpoint GET /x: module "app.js" does not export a function "nope"'],
  ["function not exported under its name", bundle({ "/x": { get: endpoint("more.js", "c") } }), 'endpoint GET /x: module "more.js" does not export a function "c"'],
  ["unknown policy", bundle({ "/x": { get: endpoint("app.js", "a", { authn_policies: ["user_certs"] }) } }), `endpoint GET /x: authn policy "user_certs" is not supported by this version of Consort (supported: ${SUPPORTED})`],
  ["unknown policy in all_of", bundle({ "/x": { get: endpoint("app.js", "a", { authn_policies: [{ all_of: ["jwt", "nope"] }] }) } }), `endpoint GET /x: authn policy "nope" is not supported by this version of Consort (supported: ${SUPPORTED})`],
  ["unknown method", bundle({ "/x": { fetch: endpoint("app.js", "a") } }), 'endpoint FETCH /x: unknown HTTP method "fetch"'],
  ["relative path", bundle({ x: { get: endpoint("app.js", "a") } }), "endpoint x: path must start with '/'"],
  ["unbalanced template", bundle({ "/x/{id": { get: endpoint("app.js", "a") } }), "endpoint /x/{id: invalid templated path: unbalanced curly brackets"],
  ["bad forwarding", bundle({ "/x": { get: endpoint("app.js", "a", { forwarding_required: "maybe" }) } }), 'endpoint GET /x: forwarding_required must be sometimes, always or never, not "maybe"'],
  ["bad redirection", bundle({ "/x": { get: endpoint("app.js", "a", { redirection_strategy: "sideways" }) } }), 'endpoint GET /x: redirection_strategy must be none, to_primary or to_backup, not "sideways"'],
  ["module twice", bundle({}, [{ name: "a.js", module: "" }, { name: "/a.js", module: "" }]), 'bundle is invalid: module "a.js" appears twice'],
  // The node's words go on with Boa's description of the syntax error: the same up to there.
  ["module does not compile", bundle({ "/x": { get: endpoint("bad.js", "a") } }, [{ name: "bad.js", module: "export function a( {" }]), 'endpoint GET /x: module "bad.js" does not compile: SyntaxError'],
];
