// Consort's default constitution, part 1 of 4: the actions a proposal may hold. Each action
// checks its arguments in `validate(args)` (throwing an Error that says precisely what is
// wrong) and makes its change in `apply(args, proposalId)`.
//
// The four files are concatenated (actions.js, validate.js, resolve.js, apply.js) into the one
// module stored in public:ccf.gov.constitution. Values in governance maps are JSON, except
// certificates, public keys and module sources, which are kept as raw text (as CCF keeps them).

const SINGLETON = () => new ArrayBuffer(8);
const enc = (s) => ccf.strToBuf(s);
const dec = (b) => ccf.bufToStr(b);
const readJson = (map, key) => {
  const v = ccf.kv[map].get(key);
  return v === undefined ? undefined : ccf.bufToJsonCompatible(v);
};
const writeJson = (map, key, value) => ccf.kv[map].set(key, ccf.jsonCompatibleToBuf(value));

function typeOf(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (Number.isInteger(value)) return "integer";
  return typeof value;
}

// `type` is "string", "integer", "boolean", "object", "array"; a trailing "?" allows
// undefined and null.
function expect(value, type, field) {
  const optional = type.endsWith("?");
  const base = optional ? type.slice(0, -1) : type;
  if (optional && (value === undefined || value === null)) return;
  const actual = typeOf(value);
  const ok = base === actual || (base === "number" && typeof value === "number");
  if (!ok) {
    throw new Error(`${field} must be ${optional ? "absent or " : ""}of type ${base}, but is ${actual === "undefined" ? "missing" : actual}`);
  }
}

function expectOneOf(value, allowed, field) {
  if (!allowed.includes(value)) {
    throw new Error(`${field} must be one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}, but is ${JSON.stringify(value)}`);
  }
}

function expectRange(value, low, high, field) {
  if (value < low || value > high) throw new Error(`${field} must be between ${low} and ${high}, but is ${value}`);
}

function expectNoArgs(args) {
  if (args !== undefined && args !== null && !(typeof args === "object" && Object.keys(args).length === 0)) {
    throw new Error(`this action takes no arguments, but got ${JSON.stringify(args)}`);
  }
}

// Member, user and node ids: 64 lowercase or uppercase hex digits (a SHA-256).
function expectId(value, field) {
  expect(value, "string", field);
  if (!/^[0-9a-fA-F]{64}$/.test(value)) throw new Error(`${field} must be 64 hexadecimal characters (a SHA-256 id), but is ${JSON.stringify(value)}`);
}

function expectCert(value, field) {
  expect(value, "string", field);
  if (!ccf.crypto.isValidX509CertBundle(value)) throw new Error(`${field} must be a PEM X.509 certificate (bundle)`);
}

function expectJwks(jwks, field) {
  expect(jwks, "object", field);
  expect(jwks.keys, "array", `${field}.keys`);
  jwks.keys.forEach((jwk, i) => {
    const at = `${field}.keys[${i}]`;
    expect(jwk, "object", at);
    expect(jwk.kid, "string", `${at}.kid`);
    expect(jwk.kty, "string", `${at}.kty`);
    if (jwk.x5c !== undefined) {
      expect(jwk.x5c, "array", `${at}.x5c`);
      if (jwk.x5c.length === 0) throw new Error(`${at}.x5c must hold at least one certificate`);
      jwk.x5c.forEach((der, j) => {
        expect(der, "string", `${at}.x5c[${j}]`);
        expectCert(`-----BEGIN CERTIFICATE-----\n${der}\n-----END CERTIFICATE-----`, `${at}.x5c[${j}]`);
      });
    } else if (jwk.kty === "RSA") {
      expect(jwk.n, "string", `${at}.n`);
      expect(jwk.e, "string", `${at}.e`);
    } else if (jwk.kty === "EC") {
      expect(jwk.crv, "string", `${at}.crv`);
      expect(jwk.x, "string", `${at}.x`);
      expect(jwk.y, "string", `${at}.y`);
    } else {
      throw new Error(`${at} must have x5c, or kty "RSA" with n and e, or kty "EC" with crv, x and y`);
    }
  });
}

function serviceInfo() {
  const info = readJson("public:ccf.gov.service.info", SINGLETON());
  if (info === undefined) throw new Error("the service information is missing");
  return info;
}

function serviceConfig() {
  return readJson("public:ccf.gov.service.config", SINGLETON()) || {};
}

// Members with a recovery role (Participant or Owner; a key without a role is a Participant).
function recoveryMembers(activeOnly) {
  let n = 0;
  ccf.kv["public:ccf.gov.members.encryption_public_keys"].forEach((_, id) => {
    const info = readJson("public:ccf.gov.members.info", id);
    if (info === undefined || info.recovery_role === "NonParticipant") return;
    if (!activeOnly || info.status === "Active") n++;
  });
  return n;
}

function activeRecoveryMembers() {
  return recoveryMembers(true);
}

// Other open proposals are decided under the rules they were made under: when those rules
// change, they are dropped.
function dropOtherOpenProposals(keepId) {
  const infos = ccf.kv["public:ccf.gov.proposals_info"];
  const dropped = [];
  infos.forEach((v, k) => {
    const info = ccf.bufToJsonCompatible(v);
    if (dec(k) !== keepId && info.state === "Open") dropped.push([k, info]);
  });
  for (const [k, info] of dropped) {
    info.state = "Dropped";
    infos.set(k, ccf.jsonCompatibleToBuf(info));
  }
}

function validateBundle(bundle) {
  expect(bundle, "object", "bundle");
  expect(bundle.metadata, "object", "bundle.metadata");
  expect(bundle.metadata.endpoints, "object", "bundle.metadata.endpoints");
  expect(bundle.modules, "array", "bundle.modules");
  bundle.modules.forEach((m, i) => {
    expect(m, "object", `bundle.modules[${i}]`);
    expect(m.name, "string", `bundle.modules[${i}].name`);
    expect(m.module, "string", `bundle.modules[${i}].module`);
  });
  for (const [path, methods] of Object.entries(bundle.metadata.endpoints)) {
    expect(methods, "object", `bundle.metadata.endpoints["${path}"]`);
    for (const [method, def] of Object.entries(methods)) {
      const at = `bundle.metadata.endpoints["${path}"]["${method}"]`;
      expect(def, "object", at);
      expect(def.js_module, "string", `${at}.js_module`);
      expect(def.js_function, "string", `${at}.js_function`);
      expect(def.authn_policies, "array", `${at}.authn_policies`);
      if (def.mode !== undefined) expectOneOf(def.mode, ["readwrite", "readonly", "historical"], `${at}.mode`);
      if (def.forwarding_required !== undefined) expectOneOf(def.forwarding_required, ["sometimes", "always", "never"], `${at}.forwarding_required`);
      if (def.redirection_strategy !== undefined) expectOneOf(def.redirection_strategy, ["none", "to_primary", "to_backup"], `${at}.redirection_strategy`);
      expect(def.openapi, "object?", `${at}.openapi`);
      const name = def.js_module.replace(/^\/+/, "");
      if (!bundle.modules.some((m) => m.name.replace(/^\/+/, "") === name)) throw new Error(`${at}.js_module: module "${def.js_module}" is not in the bundle`);
    }
  }
  // Compiles every module and checks every endpoint's function and policies.
  ccf.consort.validateJsApp(bundle);
}

// Replaces the deployed app by `bundle` (modules stored under "/<name>", as CCF stores them).
function deployApp(bundle) {
  clearApp();
  for (const m of bundle.modules) {
    ccf.kv["public:ccf.gov.modules"].set(enc("/" + m.name.replace(/^\/+/, "")), enc(m.module));
  }
  for (const [path, methods] of Object.entries(bundle.metadata.endpoints)) {
    for (const [method, def] of Object.entries(methods)) {
      const stored = Object.assign({}, def, { js_module: "/" + def.js_module.replace(/^\/+/, "") });
      writeJson("public:ccf.gov.endpoints", enc(`${method.toUpperCase()} ${path}`), stored);
    }
  }
}

// An earlier app version's record ({version, bundle_digest, proposal_id, bundle}).
function appVersion(version) {
  const record = readJson("public:ccf.internal.app_versions", enc(String(version)));
  if (record === undefined) throw new Error(`there is no app version ${version}`);
  return record;
}

function clearApp() {
  ccf.kv["public:ccf.gov.modules"].clear();
  ccf.kv["public:ccf.gov.endpoints"].clear();
}

function setMemberInfo(id, update) {
  const info = readJson("public:ccf.gov.members.info", enc(id));
  if (info === undefined) throw new Error(`member ${id} does not exist`);
  writeJson("public:ccf.gov.members.info", enc(id), Object.assign(info, update));
}

// Recovery shares are re-issued for the new threshold.
function setRecoveryThreshold(threshold) {
  const info = serviceInfo();
  if (info.status === "WaitingForRecoveryShares") {
    throw new Error(`the recovery threshold cannot change while the service is ${info.status}`);
  }
  // Once open, shares go to active members only; before, members are yet to activate.
  const members = info.status === "Open" ? activeRecoveryMembers() : recoveryMembers();
  if (threshold > members) {
    throw new Error(`recovery_threshold ${threshold} is above the number of ${info.status === "Open" ? "active " : ""}recovery members (${members})`);
  }
  const config = serviceConfig();
  config.recovery_threshold = threshold;
  writeJson("public:ccf.gov.service.config", SINGLETON(), config);
  ccf.node.triggerRecoverySharesRefresh();
}

// A certificate validity period: `valid_from` is an X.509 UTC time ("20250101000000Z"), the
// period at most the service configuration's maximum (a year unless set).
function expectValidity(args) {
  expect(args.valid_from, "string", "valid_from");
  expect(args.validity_period_days, "integer?", "validity_period_days");
  if (args.validity_period_days !== undefined && args.validity_period_days !== null) {
    expectRange(args.validity_period_days, 1, Number.MAX_SAFE_INTEGER, "validity_period_days");
  }
}

function validityDays(requested, maxKey, what) {
  const max = serviceConfig()[maxKey] ?? 365;
  if (requested === undefined || requested === null) return max;
  if (requested > max) throw new Error(`validity_period_days ${requested} is above the ${what} maximum of ${max} days`);
  return requested;
}

// The node's certificate signing request endorsed by the service for the given period,
// recorded where the node reads it (it presents it from then on).
function endorseNode(nodeId, info, validFrom, requestedDays) {
  if (typeof info.certificate_signing_request !== "string") throw new Error(`node ${nodeId} has no certificate signing request`);
  const days = validityDays(requestedDays, "maximum_node_certificate_validity_days", "node certificate");
  const cert = ccf.network.generateEndorsedCertificate(info.certificate_signing_request, validFrom, days);
  ccf.kv["public:ccf.gov.nodes.endorsed_certificates"].set(enc(nodeId), enc(cert));
}

function trustedNode(nodeId) {
  const info = readJson("public:ccf.gov.nodes.info", enc(nodeId));
  if (info === undefined) throw new Error(`node ${nodeId} does not exist`);
  if (info.status !== "Trusted") throw new Error(`node ${nodeId} is ${info.status}, not Trusted`);
  return info;
}

function expectHex(value, field, bytes) {
  expect(value, "string", field);
  if (!new RegExp(`^[0-9a-fA-F]{${bytes * 2}}$`).test(value)) throw new Error(`${field} must be ${bytes} bytes of hex, but is ${JSON.stringify(value)}`);
}

// TEE-only rules (code ids, SEV-SNP measurements, host data, UVM endorsements, TCB versions):
// Consort runs no TEE, so these are recorded in CCF's tables, shown by /gov/service/join-policy,
// and have no effect on who may join. A new rule changes what open proposals would mean, so
// they are dropped, as CCF does.
function allowToJoin(map, key, value, proposalId) {
  ccf.kv[map].set(enc(key), ccf.jsonCompatibleToBuf(value));
  dropOtherOpenProposals(proposalId);
}

const actions = new Map([
  ["set_constitution", {
    validate: (args) => {
      expect(args.constitution, "string", "constitution");
      ccf.gov.validateConstitution(args.constitution);
    },
    apply: (args, proposalId) => {
      writeJson("public:ccf.gov.constitution", SINGLETON(), args.constitution);
      dropOtherOpenProposals(proposalId);
    },
  }],
  ["set_member", {
    validate: (args) => {
      expectCert(args.cert, "cert");
      expect(args.encryption_pub_key, "string?", "encryption_pub_key");
      expect(args.member_data, "object?", "member_data");
      if (args.recovery_role !== undefined) {
        expectOneOf(args.recovery_role, ["NonParticipant", "Participant", "Owner"], "recovery_role");
        if (args.encryption_pub_key === undefined || args.encryption_pub_key === null) {
          throw new Error("recovery_role needs an encryption_pub_key");
        }
      }
    },
    apply: (args) => {
      const id = ccf.pemToId(args.cert);
      ccf.kv["public:ccf.gov.members.certs"].set(enc(id), enc(args.cert));
      const keys = ccf.kv["public:ccf.gov.members.encryption_public_keys"];
      if (args.encryption_pub_key) keys.set(enc(id), enc(args.encryption_pub_key));
      else keys.delete(enc(id));
      const role = args.recovery_role || (args.encryption_pub_key ? "Participant" : "NonParticipant");
      writeJson("public:ccf.gov.members.info", enc(id), { status: "Accepted", member_data: args.member_data ?? null, recovery_role: role });
      // The state the new member acknowledges to become active: the latest signed root, as CCF
      // records it (the member may also ask for a fresher one with state-digests/{id}:update).
      const signature = readJson("public:ccf.internal.signatures", SINGLETON());
      writeJson("public:ccf.gov.members.acks", enc(id), signature === undefined ? {} : { state_digest: signature.root });
    },
  }],
  ["remove_member", {
    validate: (args) => expectId(args.member_id, "member_id"),
    apply: (args) => {
      const id = enc(args.member_id);
      const info = readJson("public:ccf.gov.members.info", id);
      if (info === undefined) return; // already gone
      const recovery = ccf.kv["public:ccf.gov.members.encryption_public_keys"].has(id);
      if (info.status === "Active" && recovery) {
        const threshold = serviceConfig().recovery_threshold || 0;
        if (activeRecoveryMembers() - 1 < threshold) {
          throw new Error(`removing member ${args.member_id} would leave fewer active recovery members than the recovery threshold (${threshold})`);
        }
      }
      for (const map of ["info", "certs", "encryption_public_keys", "acks"]) ccf.kv[`public:ccf.gov.members.${map}`].delete(id);
    },
  }],
  ["set_member_data", {
    validate: (args) => {
      expectId(args.member_id, "member_id");
      expect(args.member_data, "object?", "member_data");
    },
    apply: (args) => setMemberInfo(args.member_id, { member_data: args.member_data ?? null }),
  }],
  ["set_user", {
    validate: (args) => {
      expectCert(args.cert, "cert");
      expect(args.user_data, "object?", "user_data");
    },
    apply: (args) => {
      const id = enc(ccf.pemToId(args.cert));
      ccf.kv["public:ccf.gov.users.certs"].set(id, enc(args.cert));
      if (args.user_data === undefined || args.user_data === null) ccf.kv["public:ccf.gov.users.info"].delete(id);
      else writeJson("public:ccf.gov.users.info", id, { user_data: args.user_data });
    },
  }],
  ["remove_user", {
    validate: (args) => expectId(args.user_id, "user_id"),
    apply: (args) => {
      ccf.kv["public:ccf.gov.users.certs"].delete(enc(args.user_id));
      ccf.kv["public:ccf.gov.users.info"].delete(enc(args.user_id));
    },
  }],
  ["set_user_data", {
    validate: (args) => {
      expectId(args.user_id, "user_id");
      expect(args.user_data, "object?", "user_data");
    },
    apply: (args) => {
      const id = enc(args.user_id);
      if (!ccf.kv["public:ccf.gov.users.certs"].has(id)) throw new Error(`user ${args.user_id} does not exist`);
      if (args.user_data === undefined || args.user_data === null) ccf.kv["public:ccf.gov.users.info"].delete(id);
      else writeJson("public:ccf.gov.users.info", id, { user_data: args.user_data });
    },
  }],
  ["set_js_app", {
    validate: (args) => {
      validateBundle(args.bundle);
      expect(args.disable_bytecode_cache, "boolean?", "disable_bytecode_cache");
    },
    apply: (args) => deployApp(args.bundle),
  }],
  // Consort's: deploys again the bundle of an earlier app version (GET
  // /gov/service/javascript-app/versions); the node records it as the next version.
  ["rollback_js_app", {
    validate: (args) => {
      expect(args, "object", "args");
      expect(args.version, "integer", "version");
      for (const k of Object.keys(args)) if (k !== "version") throw new Error(`unknown argument ${JSON.stringify(k)} (rollback_js_app takes only version)`);
      appVersion(args.version);
    },
    apply: (args) => deployApp(appVersion(args.version).bundle),
  }],
  ["remove_js_app", {
    validate: (args) => expectNoArgs(args),
    apply: () => clearApp(),
  }],
  ["set_js_runtime_options", {
    validate: (args) => {
      expect(args.max_heap_bytes, "integer", "max_heap_bytes");
      expectRange(args.max_heap_bytes, 0, Number.MAX_SAFE_INTEGER, "max_heap_bytes");
      expect(args.max_stack_bytes, "integer", "max_stack_bytes");
      expectRange(args.max_stack_bytes, 0, Number.MAX_SAFE_INTEGER, "max_stack_bytes");
      expect(args.max_execution_time_ms, "integer", "max_execution_time_ms");
      expectRange(args.max_execution_time_ms, 0, Number.MAX_SAFE_INTEGER, "max_execution_time_ms");
      expect(args.log_exception_details, "boolean?", "log_exception_details");
      expect(args.return_exception_details, "boolean?", "return_exception_details");
      expect(args.max_cached_interpreters, "integer?", "max_cached_interpreters");
      const known = ["max_heap_bytes", "max_stack_bytes", "max_execution_time_ms", "log_exception_details", "return_exception_details", "max_cached_interpreters"];
      for (const k of Object.keys(args)) if (!known.includes(k)) throw new Error(`unknown runtime option ${JSON.stringify(k)} (known: ${known.join(", ")})`);
    },
    apply: (args) => writeJson("public:ccf.gov.js_runtime_options", SINGLETON(), args),
  }],
  ["transition_service_to_open", {
    validate: (args) => {
      expectCert(args.next_service_identity, "next_service_identity");
      if (args.previous_service_identity !== undefined) expectCert(args.previous_service_identity, "previous_service_identity");
    },
    apply: (args) => {
      const previous = args.previous_service_identity === undefined ? undefined : enc(args.previous_service_identity);
      ccf.node.transitionServiceToOpen(previous, enc(args.next_service_identity));
    },
  }],
  ["transition_node_to_trusted", {
    validate: (args) => {
      expectId(args.node_id, "node_id");
      expect(args.valid_from, "string?", "valid_from");
      expect(args.validity_period_days, "integer?", "validity_period_days");
    },
    apply: (args) => {
      const info = readJson("public:ccf.gov.nodes.info", enc(args.node_id));
      if (info === undefined) throw new Error(`node ${args.node_id} does not exist`);
      if (info.status === "Retired") throw new Error(`node ${args.node_id} is retired`);
      if (info.status !== "Trusted") info.ledger_secret_seqno = ccf.network.getLatestLedgerSecretSeqno();
      info.status = "Trusted";
      writeJson("public:ccf.gov.nodes.info", enc(args.node_id), info);
      // With a validity period the node's certificate is endorsed from its signing request for
      // that period, as in CCF; without one it keeps the certificate it was given at its join.
      if (args.valid_from !== undefined && args.valid_from !== null) endorseNode(args.node_id, info, args.valid_from, args.validity_period_days);
    },
  }],
  ["remove_node", {
    validate: (args) => expectId(args.node_id, "node_id"),
    apply: (args) => {
      const info = readJson("public:ccf.gov.nodes.info", enc(args.node_id));
      if (info === undefined) return; // already gone
      info.status = "Retired";
      writeJson("public:ccf.gov.nodes.info", enc(args.node_id), info);
    },
  }],
  ["set_recovery_threshold", {
    validate: (args) => {
      expect(args.recovery_threshold, "integer", "recovery_threshold");
      expectRange(args.recovery_threshold, 1, 254, "recovery_threshold");
    },
    apply: (args) => setRecoveryThreshold(args.recovery_threshold),
  }],
  ["trigger_recovery_shares_refresh", {
    validate: (args) => expectNoArgs(args),
    apply: () => ccf.node.triggerRecoverySharesRefresh(),
  }],
  ["set_recent_cose_proposals_window_size", {
    validate: (args) => {
      expect(args.proposal_window_size, "integer", "proposal_window_size");
      expectRange(args.proposal_window_size, 1, 10000, "proposal_window_size");
    },
    apply: (args) => {
      const config = serviceConfig();
      config.recent_cose_proposals_window_size = args.proposal_window_size;
      writeJson("public:ccf.gov.service.config", SINGLETON(), config);
    },
  }],
  ["trigger_ledger_rekey", {
    validate: (args) => expectNoArgs(args),
    apply: () => ccf.node.triggerLedgerRekey(),
  }],
  ["set_jwt_issuer", {
    validate: (args) => {
      expect(args.issuer, "string", "issuer");
      expect(args.auto_refresh, "boolean?", "auto_refresh");
      if (args.auto_refresh) throw new Error("auto_refresh is not supported by Consort: set the keys with jwks");
      expect(args.ca_cert_bundle_name, "string?", "ca_cert_bundle_name");
      if (args.jwks !== undefined) expectJwks(args.jwks, "jwks");
    },
    apply: (args) => {
      const metadata = { auto_refresh: false };
      if (args.ca_cert_bundle_name) metadata.ca_cert_bundle_name = args.ca_cert_bundle_name;
      if (args.jwks !== undefined) ccf.setJwtPublicSigningKeys(args.issuer, metadata, args.jwks);
      writeJson("public:ccf.gov.jwt.issuers", enc(args.issuer), metadata);
    },
  }],
  ["set_jwt_public_signing_keys", {
    validate: (args) => {
      expect(args.issuer, "string", "issuer");
      expectJwks(args.jwks, "jwks");
    },
    apply: (args) => {
      const metadata = readJson("public:ccf.gov.jwt.issuers", enc(args.issuer));
      if (metadata === undefined) throw new Error(`JWT issuer ${args.issuer} is not set`);
      ccf.setJwtPublicSigningKeys(args.issuer, metadata, args.jwks);
    },
  }],
  ["set_service_configuration", {
    validate: (args) => {
      expect(args, "object", "args");
      const known = ["reconfiguration_type", "recovery_threshold", "recent_cose_proposals_window_size", "record_inputs"];
      for (const k of Object.keys(args)) if (!known.includes(k)) throw new Error(`${k} cannot be changed by set_service_configuration (only ${known.join(", ")})`);
      if (args.reconfiguration_type !== undefined) expectOneOf(args.reconfiguration_type, ["OneTransaction", "TwoTransaction"], "reconfiguration_type");
      expect(args.recovery_threshold, "integer?", "recovery_threshold");
      if (args.recovery_threshold !== undefined) expectRange(args.recovery_threshold, 1, 254, "recovery_threshold");
      expect(args.recent_cose_proposals_window_size, "integer?", "recent_cose_proposals_window_size");
      if (args.recent_cose_proposals_window_size !== undefined) expectRange(args.recent_cose_proposals_window_size, 1, 10000, "recent_cose_proposals_window_size");
      expect(args.record_inputs, "boolean?", "record_inputs");
    },
    apply: (args) => {
      const config = serviceConfig();
      const from = config.reconfiguration_type ?? "OneTransaction";
      if (args.reconfiguration_type !== undefined && args.reconfiguration_type !== from && !(from === "OneTransaction" && args.reconfiguration_type === "TwoTransaction")) {
        throw new Error(`the reconfiguration type cannot change from ${from} to ${args.reconfiguration_type}`);
      }
      // Consort reconfigures Raft in one step either way (openraft's joint consensus); the
      // setting is recorded as CCF records it.
      if (args.reconfiguration_type !== undefined) config.reconfiguration_type = args.reconfiguration_type;
      if (args.recent_cose_proposals_window_size !== undefined) config.recent_cose_proposals_window_size = args.recent_cose_proposals_window_size;
      // Consort: whether app transactions carry their inputs, sealed, for replay (on unless false).
      if (args.record_inputs !== undefined) config.record_inputs = args.record_inputs;
      writeJson("public:ccf.gov.service.config", SINGLETON(), config);
      if (args.recovery_threshold !== undefined && args.recovery_threshold !== config.recovery_threshold) setRecoveryThreshold(args.recovery_threshold);
    },
  }],
  ["set_ca_cert_bundle", {
    validate: (args) => {
      expect(args.name, "string", "name");
      expectCert(args.cert_bundle, "cert_bundle");
    },
    apply: (args) => ccf.kv["public:ccf.gov.tls.ca_cert_bundles"].set(enc(args.name), enc(args.cert_bundle)),
  }],
  ["remove_ca_cert_bundle", {
    validate: (args) => expect(args.name, "string", "name"),
    apply: (args) => ccf.kv["public:ccf.gov.tls.ca_cert_bundles"].delete(enc(args.name)),
  }],
  ["set_node_data", {
    validate: (args) => expectId(args.node_id, "node_id"),
    apply: (args) => {
      const info = readJson("public:ccf.gov.nodes.info", enc(args.node_id));
      if (info === undefined) throw new Error(`node ${args.node_id} does not exist`);
      info.node_data = args.node_data;
      writeJson("public:ccf.gov.nodes.info", enc(args.node_id), info);
    },
  }],
  ["set_node_certificate_validity", {
    validate: (args) => {
      expectId(args.node_id, "node_id");
      expectValidity(args);
    },
    apply: (args) => endorseNode(args.node_id, trustedNode(args.node_id), args.valid_from, args.validity_period_days),
  }],
  ["set_all_nodes_certificate_validity", {
    validate: (args) => expectValidity(args),
    apply: (args) => {
      const trusted = [];
      ccf.kv["public:ccf.gov.nodes.info"].forEach((v, k) => {
        const info = ccf.bufToJsonCompatible(v);
        if (info.status === "Trusted") trusted.push([dec(k), info]);
      });
      for (const [id, info] of trusted) endorseNode(id, info, args.valid_from, args.validity_period_days);
    },
  }],
  ["set_service_certificate_validity", {
    validate: (args) => expectValidity(args),
    apply: (args) => {
      const days = validityDays(args.validity_period_days, "maximum_service_certificate_validity_days", "service certificate");
      const info = serviceInfo();
      info.cert = ccf.network.generateNetworkCertificate(args.valid_from, days);
      writeJson("public:ccf.gov.service.info", SINGLETON(), info);
    },
  }],
  ["assert_service_identity", {
    validate: (args) => {
      expectCert(args.service_identity, "service_identity");
      if (serviceInfo().cert !== args.service_identity) throw new Error("the service identity is not this service's certificate");
    },
    apply: () => {},
  }],
  ["trigger_snapshot", {
    validate: (args) => expectNoArgs(args),
    apply: () => ccf.node.triggerSnapshot(),
  }],
  ["trigger_ledger_chunk", {
    validate: (args) => expectNoArgs(args),
    apply: () => ccf.node.triggerLedgerChunk(),
  }],
  ["refresh_js_app_bytecode_cache", {
    validate: (args) => expectNoArgs(args),
    apply: () => ccf.refreshAppBytecodeCache(),
  }],
  ["add_node_code", {
    validate: (args) => expectHex(args.code_id, "code_id", 32),
    apply: (args, proposalId) => allowToJoin("public:ccf.gov.nodes.code_ids", args.code_id, "AllowedToJoin", proposalId),
  }],
  ["remove_node_code", {
    validate: (args) => expectHex(args.code_id, "code_id", 32),
    apply: (args) => ccf.kv["public:ccf.gov.nodes.code_ids"].delete(enc(args.code_id)),
  }],
  ["add_snp_measurement", {
    validate: (args) => expectHex(args.measurement, "measurement", 48),
    apply: (args, proposalId) => allowToJoin("public:ccf.gov.nodes.snp.measurements", args.measurement, "AllowedToJoin", proposalId),
  }],
  ["remove_snp_measurement", {
    validate: (args) => expectHex(args.measurement, "measurement", 48),
    apply: (args) => ccf.kv["public:ccf.gov.nodes.snp.measurements"].delete(enc(args.measurement)),
  }],
  ["add_snp_host_data", {
    validate: (args) => {
      expectHex(args.host_data, "host_data", 32);
      expect(args.security_policy, "string?", "security_policy");
      if (args.security_policy) {
        const digest = Array.from(new Uint8Array(ccf.crypto.digest("SHA-256", enc(args.security_policy))), (b) => b.toString(16).padStart(2, "0")).join("");
        if (digest !== args.host_data.toLowerCase()) throw new Error(`host_data ${args.host_data} is not the SHA-256 of security_policy (${digest})`);
      }
    },
    apply: (args, proposalId) => allowToJoin("public:ccf.gov.nodes.snp.host_data", args.host_data, args.security_policy ?? "", proposalId),
  }],
  ["remove_snp_host_data", {
    validate: (args) => expectHex(args.host_data, "host_data", 32),
    apply: (args) => ccf.kv["public:ccf.gov.nodes.snp.host_data"].delete(enc(args.host_data)),
  }],
  ["add_snp_uvm_endorsement", {
    validate: (args) => {
      expect(args.did, "string", "did");
      expect(args.feed, "string", "feed");
      expect(args.svn, "string", "svn");
    },
    apply: (args, proposalId) => {
      const feeds = readJson("public:ccf.gov.nodes.snp.uvm_endorsements", enc(args.did)) || {};
      feeds[args.feed] = { svn: args.svn };
      allowToJoin("public:ccf.gov.nodes.snp.uvm_endorsements", args.did, feeds, proposalId);
    },
  }],
  ["remove_snp_uvm_endorsement", {
    validate: (args) => {
      expect(args.did, "string", "did");
      expect(args.feed, "string", "feed");
    },
    apply: (args) => {
      const map = "public:ccf.gov.nodes.snp.uvm_endorsements";
      const feeds = readJson(map, enc(args.did));
      if (feeds === undefined || !(args.feed in feeds)) throw new Error(`no UVM endorsement for did ${args.did} and feed ${args.feed}`);
      delete feeds[args.feed];
      if (Object.keys(feeds).length === 0) ccf.kv[map].delete(enc(args.did));
      else writeJson(map, enc(args.did), feeds);
    },
  }],
  ["set_snp_minimum_tcb_version", {
    validate: (args) => {
      expectHex(args.cpuid, "cpuid", 4);
      expect(args.tcb_version, "object", "tcb_version");
      for (const f of ["boot_loader", "tee", "snp", "microcode"]) expect(args.tcb_version[f], "integer", `tcb_version.${f}`);
      expect(args.tcb_version.fmc, "integer?", "tcb_version.fmc");
    },
    apply: (args, proposalId) => allowToJoin("public:ccf.gov.nodes.snp.tcb_versions", args.cpuid, args.tcb_version, proposalId),
  }],
  ["set_snp_minimum_tcb_version_hex", {
    validate: (args) => {
      expectHex(args.cpuid, "cpuid", 4);
      expectHex(args.tcb_version, "tcb_version", 8);
      ccf.tcbHexToPolicy(args.cpuid, args.tcb_version);
    },
    apply: (args, proposalId) => allowToJoin("public:ccf.gov.nodes.snp.tcb_versions", args.cpuid, ccf.tcbHexToPolicy(args.cpuid, args.tcb_version), proposalId),
  }],
  ["remove_snp_minimum_tcb_version", {
    validate: (args) => expectHex(args.cpuid, "cpuid", 4),
    apply: (args) => ccf.kv["public:ccf.gov.nodes.snp.tcb_versions"].delete(enc(args.cpuid)),
  }],
  ["remove_jwt_issuer", {
    validate: (args) => expect(args.issuer, "string", "issuer"),
    apply: (args) => {
      if (!ccf.kv["public:ccf.gov.jwt.issuers"].has(enc(args.issuer))) return;
      ccf.kv["public:ccf.gov.jwt.issuers"].delete(enc(args.issuer));
      ccf.removeJwtPublicSigningKeys(args.issuer);
    },
  }],
]);
