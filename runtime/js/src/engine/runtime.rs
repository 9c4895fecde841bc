//! One request in one Boa context: load the bundle's modules, install the `ccf` global bound
//! to the request's transaction, call the handler, and read back its response.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

use boa_engine::builtins::promise::PromiseState;
use boa_engine::error::{EngineError, RuntimeLimitError, TryNativeError};
use boa_engine::module::{ModuleLoader, Referrer};
use boa_engine::object::builtins::{AlignedVec, JsArray, JsArrayBuffer};
use boa_engine::object::ObjectInitializer;
use boa_engine::property::Attribute;
use boa_engine::{js_string, Context, JsError, JsNativeError, JsResult, JsString, JsValue, Module, NativeFunction, Script, Source};
use consort_kv::MapKind;

use crate::engine::bundle::{normalise_module_name, Bundle, EndpointDef};
use crate::engine::host::{HistoricalState, HostAnswer, HostQuery, KvOp, KvReply};
use crate::engine::limits::{Limit, RuntimeOptions, Watch};
use crate::engine::sources::{Drawn, SourceMode, Sources, SourcesClock};

const PRELUDE: &str = include_str!("prelude.js");

/// The authentication policies this node can check.
const KNOWN_POLICIES: [&str; 7] = ["user_cert", "member_cert", "any_cert", "no_auth", "jwt", "user_cose_sign1", "member_cose_sign1"];

pub(crate) fn check_policy(policy: &serde_json::Value) -> Result<(), String> {
    match policy {
        serde_json::Value::String(name) if KNOWN_POLICIES.contains(&name.as_str()) => Ok(()),
        serde_json::Value::String(name) => {
            Err(format!("authn policy {name:?} is not supported by this version of Consort (supported: {})", KNOWN_POLICIES.join(", ")))
        }
        serde_json::Value::Object(o) if o.len() == 1 && o.get("all_of").is_some_and(|v| v.is_array()) => {
            o["all_of"].as_array().into_iter().flatten().try_for_each(check_policy)
        }
        other => Err(format!("authn policy {other} is neither a policy name nor {{\"all_of\": [...]}}")),
    }
}

/// The request as the handler sees it (SPEC §4); its body and historical state travel beside it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct JsRequest {
    pub method: String,
    pub path: String,
    pub url: String,
    pub route: String,
    pub query: String,
    pub hostname: String,
    /// Names lowercased.
    pub headers: BTreeMap<String, String>,
    pub params: BTreeMap<String, String>,
    pub caller: Option<serde_json::Value>,
    #[serde(skip)]
    pub body: Vec<u8>,
    /// `mode: "historical"` endpoints: the transaction `ccf.historicalState` describes.
    #[serde(skip)]
    pub historical: Option<std::sync::Arc<crate::engine::host::HistoricalState>>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JsResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// From the body's type; a `content-type` header set by the handler wins.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Why a script did not produce a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ScriptError {
    /// The handler threw (or returned something that is not a response): what it threw
    /// (`Error: message`) and, when the engine has one, the stack trace at the throw.
    #[error("{message}")]
    Exception { message: String, trace: Option<String> },
    /// The bundle's modules could not be loaded or the function is missing.
    #[error("{0}")]
    Load(String),
    /// A runtime limit stopped the script; the message names the limit and its value.
    #[error("{1}")]
    Limit(Limit, String),
    /// The worker process running the script died (the script crashed it, for example by
    /// nesting a structure so deep that a built-in overflowed the stack).
    #[error("{0}")]
    Crashed(String),
}

impl ScriptError {
    /// An exception without a stack trace.
    pub fn exception(message: impl Into<String>) -> ScriptError {
        ScriptError::Exception { message: message.into(), trace: None }
    }
}

/// Which maps the running script may touch (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KvAccess {
    /// An app endpoint in `readwrite` mode.
    AppReadWrite,
    /// An app endpoint in `readonly` (or `historical`) mode.
    AppReadOnly,
    /// The constitution's `validate` and `resolve`, and ballots: framework and governance maps
    /// read-only, app maps not at all.
    GovReadOnly,
    /// The constitution's `apply`: framework maps read-only, governance maps read/write, public
    /// app maps write-only, private app maps not at all.
    GovApply,
}

impl KvAccess {
    /// Why `access` may not touch `map` this way, if it may not (SPEC §3).
    fn refusal(self, map: &str, write: bool) -> Option<String> {
        let who = match self {
            KvAccess::AppReadWrite | KvAccess::AppReadOnly => "app endpoints",
            KvAccess::GovReadOnly => "ballots, validate and resolve",
            KvAccess::GovApply => "the constitution's apply",
        };
        Some(match (MapKind::of(map), self) {
            (MapKind::Reserved, _) => format!("map {map:?}: names beginning \"ccf.\" or \"public:ccf.\" are reserved for the framework"),
            (MapKind::Internal, _) if write => format!("map {map:?} belongs to the framework: {who} may read it, never write it"),
            (MapKind::Governance, KvAccess::GovApply) => return None,
            (MapKind::Governance, _) if write => format!("map {map:?} belongs to governance: {who} may read it, never write it"),
            (MapKind::Internal | MapKind::Governance, _) => return None,
            (MapKind::App { .. }, KvAccess::GovReadOnly) => {
                format!("map {map:?} is an application map: {who} may not touch application maps")
            }
            (MapKind::App { public: false }, KvAccess::GovApply) => {
                format!("map {map:?} is a private application map: {who} may not touch it")
            }
            (MapKind::App { public: true }, KvAccess::GovApply) if !write => {
                format!("map {map:?} is an application map: {who} may write public application maps, not read them")
            }
            (MapKind::App { .. }, KvAccess::AppReadOnly) if write => format!("map {map:?}: this endpoint is readonly and may not write"),
            (MapKind::App { .. }, _) => return None,
        })
    }
}

/// Where `ccf.kv` operations go: the request's transaction, which lives in the node.
pub trait KvBackend {
    fn call(&self, op: KvOp) -> Result<KvReply, String>;
    /// Consensus questions (`ccf.consensus.*`), answered by the node.
    fn host(&self, _query: HostQuery) -> Result<HostAnswer, String> {
        Err("consensus information is not available here".into())
    }
}

struct Session {
    /// What runs: `METHOD /path` of a request, or the module function governance called; the
    /// scripts' `console` lines name it.
    what: String,
    kv: Box<dyn KvBackend>,
    access: KvAccess,
    apply_writes: Cell<Option<bool>>,
    claims_digest: Cell<Option<[u8; 32]>>,
}

/// What one run produced.
pub(crate) struct RunOutcome {
    pub response: Result<JsResponse, ScriptError>,
    pub apply_writes: Option<bool>,
    pub claims_digest: Option<[u8; 32]>,
    /// The time and random values drawn (kept when recording or replaying).
    pub drawn: Drawn,
}

struct BundleLoader {
    modules: BTreeMap<String, String>,
    cache: RefCell<HashMap<String, Module>>,
}

impl BundleLoader {
    fn load(&self, name: &str, ctx: &mut Context) -> JsResult<Module> {
        if let Some(m) = self.cache.borrow().get(name) {
            return Ok(m.clone());
        }
        let src =
            self.modules.get(name).ok_or_else(|| JsNativeError::typ().with_message(format!("module {name:?} is not in the bundle")))?;
        let module = Module::parse(Source::from_bytes(src.as_bytes()).with_path(Path::new(name)), None, ctx)?;
        self.cache.borrow_mut().insert(name.to_owned(), module.clone());
        Ok(module)
    }

    /// Resolves an import specifier against the importing module's name.
    fn resolve(&self, base: Option<&str>, specifier: &str) -> JsResult<String> {
        let joined = if specifier.starts_with("./") || specifier.starts_with("../") {
            let dir = base.and_then(|b| b.rsplit_once('/').map(|(d, _)| d)).unwrap_or("");
            format!("{dir}/{specifier}")
        } else if specifier.starts_with('/') {
            specifier.to_owned()
        } else {
            return Err(JsNativeError::typ()
                .with_message(format!("cannot import {specifier:?}: a bundle imports only its own modules (bundle your dependencies)"))
                .into());
        };
        let mut parts: Vec<&str> = Vec::new();
        for seg in joined.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
        let name = parts.join("/");
        for candidate in [name.clone(), format!("{name}.js"), format!("{name}/index.js")] {
            if self.modules.contains_key(&candidate) {
                return Ok(candidate);
            }
        }
        Err(JsNativeError::typ().with_message(format!("cannot import {specifier:?}: no module {name:?} in the bundle")).into())
    }
}

impl ModuleLoader for BundleLoader {
    async fn load_imported_module(
        self: Rc<Self>,
        referrer: Referrer,
        request: boa_engine::module::ModuleRequest,
        context: &RefCell<&mut Context>,
    ) -> JsResult<Module> {
        let base = match &referrer {
            Referrer::Module(m) => m.path().map(|p| p.to_string_lossy().into_owned()),
            _ => None,
        };
        let name = self.resolve(base.as_deref(), &request.specifier().to_std_string_escaped())?;
        self.load(&name, &mut context.borrow_mut())
    }
}

fn js_err(msg: impl Into<String>) -> JsError {
    JsNativeError::error().with_message(msg.into()).into()
}

fn type_err(msg: impl Into<String>) -> JsError {
    JsNativeError::typ().with_message(msg.into()).into()
}

fn arg_string(args: &[JsValue], i: usize, what: &str) -> JsResult<String> {
    args.get(i).and_then(JsValue::as_string).map(|s| s.to_std_string_escaped()).ok_or_else(|| type_err(format!("{what} must be a string")))
}

fn arg_bytes(args: &[JsValue], i: usize, what: &str) -> JsResult<Vec<u8>> {
    let obj = args.get(i).and_then(JsValue::as_object).ok_or_else(|| type_err(format!("{what} must be an ArrayBuffer")))?;
    let buf = JsArrayBuffer::from_object(obj).map_err(|_| type_err(format!("{what} must be an ArrayBuffer")))?;
    Ok(buf.to_vec().unwrap_or_default())
}

fn new_buffer(bytes: &[u8], ctx: &mut Context) -> JsResult<JsValue> {
    Ok(JsArrayBuffer::from_byte_block(AlignedVec::from_slice(0, bytes), ctx)?.into())
}

/// Sends `op` to the request's transaction after checking that the script may touch `map`.
fn kv_call(ctx: &Context, map: &str, write: bool, op: KvOp) -> JsResult<KvReply> {
    let session = ctx.get_data::<Session>().ok_or_else(|| js_err("ccf.kv is only available while a request runs"))?;
    if let Some(why) = session.access.refusal(map, write) {
        return Err(js_err(why));
    }
    session.kv.call(op).map_err(|e| js_err(format!("ccf.kv: {e}")))
}

fn unexpected(reply: KvReply) -> JsError {
    js_err(format!("ccf.kv: unexpected reply {reply:?}"))
}

fn map_key(args: &[JsValue]) -> JsResult<(String, Vec<u8>)> {
    Ok((arg_string(args, 0, "map name")?, arg_bytes(args, 1, "key")?))
}

fn kv_has(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let (map, key) = map_key(args)?;
    match kv_call(ctx, &map, false, KvOp::Has { map: map.clone(), key })? {
        KvReply::Bool(b) => Ok(b.into()),
        other => Err(unexpected(other)),
    }
}

fn kv_get(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let (map, key) = map_key(args)?;
    match kv_call(ctx, &map, false, KvOp::Get { map: map.clone(), key })? {
        KvReply::Value(Some(v)) => new_buffer(&v, ctx),
        KvReply::Value(None) => Ok(JsValue::undefined()),
        other => Err(unexpected(other)),
    }
}

fn kv_version(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let (map, key) = map_key(args)?;
    match kv_call(ctx, &map, false, KvOp::Version { map: map.clone(), key })? {
        KvReply::Version(Some(v)) => Ok(JsValue::from(v as f64)),
        KvReply::Version(None) => Ok(JsValue::undefined()),
        other => Err(unexpected(other)),
    }
}

fn kv_set(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let (map, key) = map_key(args)?;
    let value = arg_bytes(args, 2, "value")?;
    kv_call(ctx, &map, true, KvOp::Put { map: map.clone(), key, value })?;
    Ok(JsValue::undefined())
}

fn kv_delete(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let (map, key) = map_key(args)?;
    match kv_call(ctx, &map, true, KvOp::Remove { map: map.clone(), key })? {
        KvReply::Bool(b) => Ok(b.into()),
        other => Err(unexpected(other)),
    }
}

fn kv_clear(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let map = arg_string(args, 0, "map name")?;
    kv_call(ctx, &map, true, KvOp::Clear { map: map.clone() })?;
    Ok(JsValue::undefined())
}

fn kv_size(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let map = arg_string(args, 0, "map name")?;
    match kv_call(ctx, &map, false, KvOp::Size { map: map.clone() })? {
        KvReply::Size(n) => Ok(JsValue::from(n as f64)),
        other => Err(unexpected(other)),
    }
}

fn kv_entries(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let map = arg_string(args, 0, "map name")?;
    let entries = match kv_call(ctx, &map, false, KvOp::Entries { map: map.clone() })? {
        KvReply::Entries(e) => e,
        other => return Err(unexpected(other)),
    };
    let mut pairs = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let pair = [new_buffer(&k, ctx)?, new_buffer(&v, ctx)?];
        pairs.push(JsArray::from_iter(pair, ctx).into());
    }
    Ok(JsArray::from_iter(pairs, ctx).into())
}

fn str_to_buf(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let s = arg_string(args, 0, "argument")?;
    new_buffer(s.as_bytes(), ctx)
}

fn buf_to_str(_: &JsValue, args: &[JsValue], _ctx: &mut Context) -> JsResult<JsValue> {
    let b = arg_bytes(args, 0, "argument")?;
    Ok(JsString::from(String::from_utf8_lossy(&b).as_ref()).into())
}

/// `__consort.bodyText(buffer)`: a request body as text, which must be UTF-8: a body that is not
/// is never silently changed (a TypeError the handler may catch, as JSON parse errors).
fn body_text(_: &JsValue, args: &[JsValue], _ctx: &mut Context) -> JsResult<JsValue> {
    let b = arg_bytes(args, 0, "argument")?;
    let text = std::str::from_utf8(&b).map_err(|e| type_err(format!("the request body is not valid UTF-8 ({e})")))?;
    Ok(JsString::from(text).into())
}

/// `__consort.bodyJson(buffer)`: a request body parsed as JSON, as `JSON.parse` of
/// `bodyText` gives it (the same `TypeError` for a body that is not UTF-8, a `SyntaxError`
/// for one that is not JSON), without making the text a JS string first.
fn body_json(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let b = arg_bytes(args, 0, "argument")?;
    std::str::from_utf8(&b).map_err(|e| type_err(format!("the request body is not valid UTF-8 ({e})")))?;
    crate::engine::json::parse(&b, ctx)
}

/// A historical state as the prelude expects it:
/// `{transactionId: "view.seqno", receipt: "<json>", maps: {name: [[key, value|null], ...]}}`.
fn historical_to_js(state: &HistoricalState, ctx: &mut Context) -> JsResult<JsValue> {
    let maps = ObjectInitializer::new(ctx).build();
    for map in &state.maps {
        let mut pairs = Vec::with_capacity(map.writes.len());
        for (k, v) in &map.writes {
            let key = new_buffer(k, ctx)?;
            let value = match v {
                Some(v) => new_buffer(v, ctx)?,
                None => JsValue::null(),
            };
            pairs.push(JsArray::from_iter([key, value], ctx).into());
        }
        let pairs = JsArray::from_iter(pairs, ctx);
        maps.set(JsString::from(map.name.as_str()), pairs, false, ctx)?;
    }
    let txid = format!("{}.{}", state.view, state.seqno);
    Ok(ObjectInitializer::new(ctx)
        .property(js_string!("transactionId"), JsString::from(txid.as_str()), Attribute::all())
        .property(js_string!("receipt"), JsString::from(state.receipt.as_str()), Attribute::all())
        .property(js_string!("maps"), maps, Attribute::all())
        .build()
        .into())
}

fn historical_range(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let (handle, from, to) = (arg_u64(args, 0, "handle")?, arg_u64(args, 1, "from")?, arg_u64(args, 2, "to")?);
    let expiry_seconds = arg_u64(args, 3, "expirySeconds")?;
    match host(ctx, HostQuery::StateRange { handle, from, to, expiry_seconds })? {
        HostAnswer::States(Ok(None)) => Ok(JsValue::null()),
        HostAnswer::States(Ok(Some(states))) => {
            let mut out = Vec::with_capacity(states.len());
            for s in &states {
                out.push(historical_to_js(s, ctx)?);
            }
            Ok(JsArray::from_iter(out, ctx).into())
        }
        HostAnswer::States(Err(e)) => Err(js_err(format!("ccf.historical.getStateRange: {e}"))),
        other => Err(js_err(format!("ccf.historical: unexpected answer {other:?}"))),
    }
}

fn historical_drop(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let handle = arg_u64(args, 0, "handle")?;
    match host(ctx, HostQuery::DropStates { handle })? {
        HostAnswer::Dropped(b) => Ok(b.into()),
        other => Err(js_err(format!("ccf.historical: unexpected answer {other:?}"))),
    }
}

/// Base64 text (from the node's caller JSON) to an ArrayBuffer.
fn b64_to_buf(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    use base64::Engine;
    let text = arg_string(args, 0, "base64 text")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| type_err(format!("bad base64: {e}")))?;
    new_buffer(&bytes, ctx)
}

fn set_apply_writes(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let v = args.first().and_then(JsValue::as_boolean).unwrap_or(false);
    let session = ctx.get_data::<Session>().ok_or_else(|| js_err("no request is running"))?;
    session.apply_writes.set(Some(v));
    Ok(JsValue::undefined())
}

fn set_claims_digest(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let b = arg_bytes(args, 0, "claims digest")?;
    let digest: [u8; 32] = b.try_into().map_err(|b: Vec<u8>| type_err(format!("claims digest must be 32 bytes, got {}", b.len())))?;
    let session = ctx.get_data::<Session>().ok_or_else(|| js_err("no request is running"))?;
    session.claims_digest.set(Some(digest));
    Ok(JsValue::undefined())
}

fn host(ctx: &Context, query: HostQuery) -> JsResult<HostAnswer> {
    let session = ctx.get_data::<Session>().ok_or_else(|| js_err("ccf.consensus is only available while a request runs"))?;
    session.kv.host(query).map_err(|e| js_err(format!("ccf.consensus: {e}")))
}

fn arg_u64(args: &[JsValue], i: usize, what: &str) -> JsResult<u64> {
    let n = args.get(i).and_then(JsValue::as_number).ok_or_else(|| type_err(format!("{what} must be a number")))?;
    if n < 0.0 || n.fract() != 0.0 || n > 9_007_199_254_740_991.0 {
        return Err(type_err(format!("{what} must be a non-negative integer")));
    }
    Ok(n as u64)
}

fn consensus_last_committed(_: &JsValue, _args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    match host(ctx, HostQuery::LastCommitted)? {
        HostAnswer::TxId { view, seqno } => Ok(ObjectInitializer::new(ctx)
            .property(js_string!("view"), view as f64, Attribute::all())
            .property(js_string!("seqno"), seqno as f64, Attribute::all())
            .build()
            .into()),
        other => Err(js_err(format!("ccf.consensus: unexpected answer {other:?}"))),
    }
}

fn consensus_status(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let (view, seqno) = (arg_u64(args, 0, "view")?, arg_u64(args, 1, "seqno")?);
    match host(ctx, HostQuery::Status { view, seqno })? {
        HostAnswer::Status(s) => Ok(JsString::from(s.as_str()).into()),
        other => Err(js_err(format!("ccf.consensus: unexpected answer {other:?}"))),
    }
}

fn consensus_view(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let seqno = arg_u64(args, 0, "seqno")?;
    match host(ctx, HostQuery::ViewOf { seqno })? {
        HostAnswer::View(Some(v)) => Ok(JsValue::from(v as f64)),
        HostAnswer::View(None) => Ok(JsValue::null()),
        other => Err(js_err(format!("ccf.consensus: unexpected answer {other:?}"))),
    }
}

/// The session of a governance `apply`: `ccf.network`'s certificate hooks and the node
/// requests exist for the constitution only.
fn gov_apply_session<'a>(ctx: &'a Context, hook: &str) -> JsResult<&'a Session> {
    let session = ctx.get_data::<Session>().ok_or_else(|| js_err(format!("{hook} is only available while a proposal applies")))?;
    if session.access != KvAccess::GovApply {
        return Err(js_err(format!("{hook} may only be called by the constitution's apply")));
    }
    Ok(session)
}

/// `__consort.latestSecretSeqno()`.
fn latest_secret_seqno(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    match host(ctx, HostQuery::LatestLedgerSecretSeqno)? {
        HostAnswer::Seqno(s) => Ok(JsValue::from(s as f64)),
        other => Err(js_err(format!("ccf.network: unexpected answer {other:?}"))),
    }
}

fn certificate(ctx: &Context, hook: &str, query: HostQuery) -> JsResult<JsValue> {
    let session = gov_apply_session(ctx, hook)?;
    match session.kv.host(query).map_err(|e| js_err(format!("{hook}: {e}")))? {
        HostAnswer::Certificate(Ok(pem)) => Ok(JsString::from(pem.as_str()).into()),
        HostAnswer::Certificate(Err(e)) => Err(js_err(format!("{hook}: {e}"))),
        other => Err(js_err(format!("{hook}: unexpected answer {other:?}"))),
    }
}

/// `__consort.endorseCsr(csr, validFrom, days)`.
fn endorse_csr(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let (csr, valid_from, days) =
        (arg_string(args, 0, "csr")?, arg_string(args, 1, "valid_from")?, arg_u64(args, 2, "validity_period_days")?);
    certificate(ctx, "ccf.network.generateEndorsedCertificate", HostQuery::EndorseCsr { csr, valid_from, days })
}

/// `__consort.renewServiceCert(validFrom, days)`.
fn renew_service_cert(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let (valid_from, days) = (arg_string(args, 0, "valid_from")?, arg_u64(args, 1, "validity_period_days")?);
    certificate(ctx, "ccf.network.generateNetworkCertificate", HostQuery::RenewServiceCert { valid_from, days })
}

/// `__consort.requestSnapshot()`.
fn request_snapshot(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    node_request(ctx, "ccf.node.triggerSnapshot", consort_kv::SNAPSHOT_REQUESTS)
}

/// `__consort.requestLedgerChunk()`.
fn request_ledger_chunk(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    node_request(ctx, "ccf.node.triggerLedgerChunk", consort_kv::LEDGER_CHUNK_REQUESTS)
}

/// `__consort.verifySnp(evidence, endorsements, endorsedTcb?)`: CCF's
/// `snp_attestation.verifySnpAttestation` (a RangeError naming what failed), as JSON text whose
/// byte fields are base64 (the prelude makes them ArrayBuffers). AMD's roots of trust, plus
/// those the node is configured with.
fn verify_snp(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    use consort_crypto::snp::{self, Product};
    let evidence = arg_bytes(args, 0, "evidence")?;
    let endorsements = arg_bytes(args, 1, "endorsements")?;
    let endorsed_tcb = match args.get(2) {
        Some(v) if !v.is_undefined() => Some(arg_string(args, 2, "endorsed_tcb")?),
        _ => None,
    };
    let mut roots = snp::amd_roots();
    if let Ok(HostAnswer::SnpRoots(extra)) = host(ctx, HostQuery::SnpExtraRoots) {
        for (product, fingerprint) in extra {
            let product = match product.as_str() {
                "Milan" => Product::Milan,
                "Genoa" => Product::Genoa,
                "Turin" => Product::Turin,
                _ => continue,
            };
            roots.push((product, fingerprint));
        }
    }
    let q = snp::verify(&evidence, &endorsements, endorsed_tcb.as_deref(), &roots)
        .map_err(|e| -> JsError { JsNativeError::range().with_message(e.to_string()).into() })?;
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let bits =
        |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>();
    let flags: Vec<(&str, u64)> = q.flag_bits().iter().map(|(k, v)| (*k, u64::from(*v))).collect();
    let platform_info = bits(&q.platform_info_bits());
    let attestation = serde_json::json!({
        "version": q.version, "guest_svn": q.guest_svn, "policy": bits(&q.policy_bits()),
        "family_id": b64(&q.family_id), "image_id": b64(&q.image_id), "vmpl": q.vmpl, "signature_algo": q.signature_algo,
        "platform_version": q.platform_version.hex(),
        // CCF spells it `plaform_info`; its TypeScript types say `platform_info`: both are here.
        "plaform_info": platform_info, "platform_info": platform_info,
        "flags": bits(&flags),
        "report_data": b64(&q.report_data), "measurement": b64(&q.measurement), "host_data": b64(&q.host_data),
        "id_key_digest": b64(&q.id_key_digest), "author_key_digest": b64(&q.author_key_digest),
        "report_id": b64(&q.report_id), "report_id_ma": b64(&q.report_id_ma), "reported_tcb": q.reported_tcb.hex(),
        "cpuid_fam_id": q.cpuid_fam_id, "cpuid_mod_id": q.cpuid_mod_id, "cpuid_step": q.cpuid_step, "chip_id": b64(&q.chip_id),
        "committed_tcb": q.committed_tcb.hex(), "current_minor": q.current_minor, "current_build": q.current_build,
        "current_major": q.current_major, "committed_build": q.committed_build, "committed_minor": q.committed_minor,
        "committed_major": q.committed_major, "launch_tcb": q.launch_tcb.hex(),
        "signature": {"r": b64(&q.signature_r), "s": b64(&q.signature_s)},
    });
    Ok(JsString::from(serde_json::json!({ "attestation": attestation }).to_string().as_str()).into())
}

/// `__consort.crypto(op, paramsJson, ...buffers)`: the whole of `ccf.crypto` (see `crate::crypto`);
/// JSON answers come back as a string for the prelude to parse.
fn crypto(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    use crate::engine::crypto::{CryptoFailure, Out};
    let op = arg_string(args, 0, "operation")?;
    let params: serde_json::Value =
        serde_json::from_str(&arg_string(args, 1, "parameters")?).map_err(|e| type_err(format!("ccf.crypto.{op}: {e}")))?;
    let mut bufs = Vec::with_capacity(args.len().saturating_sub(2));
    for i in 2..args.len() {
        bufs.push(arg_bytes(args, i, "buffer")?);
    }
    match crate::engine::crypto::call(&op, &params, &bufs) {
        Ok(Out::Bytes(b)) => new_buffer(&b, ctx),
        Ok(Out::Text(t)) => Ok(JsString::from(t.as_str()).into()),
        Ok(Out::Bool(b)) => Ok(b.into()),
        Ok(Out::Json(v)) => Ok(JsString::from(v.to_string().as_str()).into()),
        Err(CryptoFailure::Range(m)) => Err(JsNativeError::range().with_message(m).into()),
        Err(CryptoFailure::Error(m)) => Err(js_err(m)),
    }
}

/// `__consort.jwkDer(jwkJson)`: a JWK's public key as base64 DER SubjectPublicKeyInfo (the form
/// JWT signing keys are kept in).
fn jwk_der(_: &JsValue, args: &[JsValue], _ctx: &mut Context) -> JsResult<JsValue> {
    use base64::Engine;
    let jwk: serde_json::Value = serde_json::from_str(&arg_string(args, 0, "jwk")?).map_err(|e| type_err(format!("jwk: {e}")))?;
    let der = crate::engine::crypto::jwk_public_key_der(&jwk)
        .map_err(|e| type_err(format!("jwk {}: {e}", jwk.get("kid").unwrap_or(&serde_json::Value::Null))))?;
    Ok(JsString::from(base64::engine::general_purpose::STANDARD.encode(der).as_str()).into())
}

/// `__consort.checkBundle(bundleJson)`: throws unless the bundle would load (`validate_bundle`).
///
/// The modules' top level runs without the yields that let a handler be stopped at its limits
/// (Boa 0.22 evaluates a module in one go), so a module that allocates without end would only
/// be stopped by the governance call's hard limits, seconds later. The check therefore runs on
/// a thread of its own, which this thread watches: past [`VALIDATION_TIME_MS`], or once the
/// process has grown by [`VALIDATION_RSS_GROWTH_MAX`], the bundle is refused at once and the
/// thread abandoned; the worker then asks the node to retire it (`FromWorker::Retire`), which
/// ends the thread with the process.
fn check_bundle(_: &JsValue, args: &[JsValue], _ctx: &mut Context) -> JsResult<JsValue> {
    let json = arg_string(args, 0, "bundle")?;
    let bundle = Bundle::from_json(json.as_bytes()).map_err(|e| js_err(format!("bundle: {e}")))?;
    let (done, outcome) = std::sync::mpsc::channel();
    let checker = std::thread::Builder::new()
        .name("consort-bundle-check".into())
        .stack_size(BUNDLE_CHECK_STACK_BYTES)
        // The watch below is what stops it; the thread's own backstop sits well behind.
        .spawn(move || done.send(validate_bundle_within(&bundle, 8 * VALIDATION_TIME_MS).map_err(|e| e.to_string())))
        .map_err(|e| js_err(format!("bundle: cannot start its check: {e}")))?;
    let started = std::time::Instant::now();
    let rss_before = resident_bytes();
    let deadline = started + std::time::Duration::from_millis(VALIDATION_TIME_MS);
    loop {
        match outcome.recv_timeout(std::time::Duration::from_millis(5)) {
            Ok(result) => {
                let _ = checker.join();
                return result.map(|()| JsValue::undefined()).map_err(|e| js_err(format!("bundle: {e}")));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(js_err("bundle: its check crashed (a module's top level overflowed the stack?)"));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        let why = if std::time::Instant::now() >= deadline {
            format!("its modules did not finish loading within the time limit of validation ({VALIDATION_TIME_MS} ms)")
        } else if resident_bytes().saturating_sub(rss_before) > VALIDATION_RSS_GROWTH_MAX {
            format!("its modules allocated more than validation allows ({} MiB) while loading", VALIDATION_RSS_GROWTH_MAX >> 20)
        } else {
            continue;
        };
        BUNDLE_CHECK_ABANDONED.store(true, std::sync::atomic::Ordering::Relaxed);
        return Err(js_err(format!("bundle: {why}")));
    }
}

/// The stack of a bundle check's thread (as a JS worker's script thread has).
const BUNDLE_CHECK_STACK_BYTES: usize = 256 * 1024 * 1024;
/// How much a bundle check may grow the process before it is refused: the validation heap
/// limit with room for the allocator's and the collector's slack.
const VALIDATION_RSS_GROWTH_MAX: u64 = 4 * VALIDATION_HEAP_BYTES;

/// Set when a bundle check was abandoned while its thread still runs.
static BUNDLE_CHECK_ABANDONED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a bundle check was abandoned in this process (its thread may still be running).
pub fn bundle_check_abandoned() -> bool {
    BUNDLE_CHECK_ABANDONED.load(std::sync::atomic::Ordering::Relaxed)
}

/// This process's resident memory (0 where `/proc` cannot say).
fn resident_bytes() -> u64 {
    crate::executors::pool::resident_bytes(std::process::id()).unwrap_or(0)
}

/// `__consort.checkConstitution(source)`: throws a TypeError unless `validate_constitution`
/// accepts the source.
fn check_constitution(_: &JsValue, args: &[JsValue], _ctx: &mut Context) -> JsResult<JsValue> {
    let source = match args.first() {
        Some(v) if v.is_string() => arg_string(args, 0, "constitution")?,
        _ => return Err(type_err("constitution is not a string")),
    };
    validate_constitution(&source).map_err(type_err)?;
    Ok(JsValue::from(true))
}

/// Records a request the node acts on in the same transaction (`ccf.node.triggerLedgerRekey`,
/// `ccf.node.triggerRecoverySharesRefresh`): only the constitution's `apply` may ask (the one
/// place a script writes to a framework table, and only these keys).
fn node_request(ctx: &mut Context, hook: &str, table: &str) -> JsResult<JsValue> {
    let session = gov_apply_session(ctx, hook)?;
    let op = KvOp::Put { map: table.into(), key: Vec::new(), value: vec![1] };
    session.kv.call(op).map_err(|e| js_err(format!("{hook}: {e}")))?;
    Ok(JsValue::undefined())
}

/// `__consort.requestLedgerRekey()`.
fn request_ledger_rekey(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    node_request(ctx, "ccf.node.triggerLedgerRekey", consort_kv::LEDGER_REKEY_REQUESTS)
}

/// `__consort.requestSharesRefresh()`.
fn request_shares_refresh(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    node_request(ctx, "ccf.node.triggerRecoverySharesRefresh", consort_kv::RECOVERY_SHARES_REFRESH_REQUESTS)
}

fn pem_to_id(_: &JsValue, args: &[JsValue], _ctx: &mut Context) -> JsResult<JsValue> {
    let pem = arg_string(args, 0, "pem")?;
    let der = consort_crypto::cert_der_from_pem(&pem).map_err(|e| type_err(format!("ccf.pemToId: {e}")))?;
    Ok(JsString::from(consort_crypto::id_of_cert_der(&der).as_str()).into())
}

/// `console.*`: a line in the node's log (target `consort::app`) naming what ran, the request
/// (`request="GET /app/x"`) or the governance function.
fn log(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let level = arg_string(args, 0, "level")?;
    let msg = arg_string(args, 1, "message")?;
    let what = ctx.get_data::<Session>().map_or("", |s| s.what.as_str()).to_owned();
    match level.as_str() {
        "error" => tracing::error!(target: "consort::app", request = %what, "{msg}"),
        "warn" => tracing::warn!(target: "consort::app", request = %what, "{msg}"),
        "debug" => tracing::debug!(target: "consort::app", request = %what, "{msg}"),
        _ => tracing::info!(target: "consort::app", request = %what, "{msg}"),
    }
    Ok(JsValue::undefined())
}

pub(crate) type Native = fn(&JsValue, &[JsValue], &mut Context) -> JsResult<JsValue>;

/// Makes `natives` the methods of a new global object `name` (glue scripts take it and delete it).
pub(crate) fn register_natives(ctx: &mut Context, name: JsString, natives: &[(&str, Native, usize)]) -> JsResult<()> {
    let mut init = ObjectInitializer::new(ctx);
    for &(function, f, len) in natives {
        init.function(NativeFunction::from_fn_ptr(f), JsString::from(function), len);
    }
    let object = init.build();
    ctx.register_global_property(name, object, Attribute::all())
}

fn install_globals(ctx: &mut Context) -> JsResult<()> {
    let natives: [(&str, Native, usize); 35] = [
        ("kvHas", kv_has, 2),
        ("kvGet", kv_get, 2),
        ("kvVersion", kv_version, 2),
        ("kvSet", kv_set, 3),
        ("kvDelete", kv_delete, 2),
        ("kvClear", kv_clear, 1),
        ("kvSize", kv_size, 1),
        ("kvEntries", kv_entries, 1),
        ("strToBuf", str_to_buf, 1),
        ("bufToStr", buf_to_str, 1),
        ("bodyText", body_text, 1),
        ("bodyJson", body_json, 1),
        ("b64ToBuf", b64_to_buf, 1),
        ("stateRange", historical_range, 4),
        ("dropStates", historical_drop, 1),
        ("setApplyWrites", set_apply_writes, 1),
        ("setClaimsDigest", set_claims_digest, 1),
        ("log", log, 2),
        ("monotonicMs", |_, _, ctx| Ok(JsValue::from(ctx.clock().now().millis_since_epoch() as f64)), 0),
        ("lastCommitted", consensus_last_committed, 0),
        ("txStatus", consensus_status, 2),
        ("viewOf", consensus_view, 1),
        ("crypto", crypto, 2),
        ("pemToId", pem_to_id, 1),
        ("jwkDer", jwk_der, 1),
        ("checkBundle", check_bundle, 1),
        ("requestLedgerRekey", request_ledger_rekey, 0),
        ("requestSharesRefresh", request_shares_refresh, 0),
        ("requestSnapshot", request_snapshot, 0),
        ("requestLedgerChunk", request_ledger_chunk, 0),
        ("latestSecretSeqno", latest_secret_seqno, 0),
        ("endorseCsr", endorse_csr, 3),
        ("renewServiceCert", renew_service_cert, 2),
        ("checkConstitution", check_constitution, 1),
        ("verifySnp", verify_snp, 3),
    ];
    register_natives(ctx, js_string!("__consort"), &natives)?;
    crate::engine::json::install(ctx)?;
    crate::engine::web::install(ctx)?;
    ctx.eval(Source::from_bytes(PRELUDE))?;
    Ok(())
}

fn describe(err: &JsError, ctx: &mut Context) -> String {
    match err.try_native(ctx) {
        Ok(native) => format!("{}: {}", native.kind(), native.message()),
        Err(_) => err.to_string(),
    }
}

/// The stack trace of a thrown error object (the frames of its `stack`, innermost first,
/// without the framework's), if it has one.
fn trace_of(err: &JsError, ctx: &mut Context) -> Option<String> {
    let thrown = err.clone().into_opaque(ctx).ok()?;
    let stack = thrown.as_object()?.get(boa_engine::js_string!("stack"), ctx).ok()?;
    app_frames(&stack.as_string()?.to_std_string_escaped())
}

/// The app's frames of a `stack` string. Boa's has only `    at <function> (<module>:<line>:
/// <column>)` lines, the innermost first (no message line, unlike V8's, so none is skipped); a
/// `stack` the script set itself may hold anything, and only its frame lines are kept. Frames
/// of the framework's own glue (the prelude and the call into the handler) have no module name.
fn app_frames(stack: &str) -> Option<String> {
    let frames: Vec<&str> = stack.lines().filter(|line| line.trim_start().starts_with("at ") && !line.contains("(unknown at ")).collect();
    (!frames.is_empty()).then(|| frames.join("\n"))
}

/// Which runtime limit, if any, an uncatchable engine error stands for.
fn limit_of(err: &JsError, ctx: &mut Context) -> Option<Limit> {
    match err.try_native(ctx) {
        Err(TryNativeError::EngineError { source: EngineError::NoInstructionsRemain }) => Some(Limit::Time),
        Err(TryNativeError::EngineError { source: EngineError::RuntimeLimit(RuntimeLimitError::LoopIteration) }) => Some(Limit::Time),
        Err(TryNativeError::EngineError { source: EngineError::RuntimeLimit(_) }) => Some(Limit::Stack),
        _ => None,
    }
}

/// An error from running script code: the limit if it was one, else the exception.
fn script_error(err: &JsError, ctx: &mut Context, options: &RuntimeOptions, loading: bool) -> ScriptError {
    match limit_of(err, ctx) {
        Some(limit) => ScriptError::Limit(limit, limit.describe(options)),
        None if loading => ScriptError::Load(describe(err, ctx)),
        None => ScriptError::Exception { message: describe(err, ctx), trace: trace_of(err, ctx) },
    }
}

/// Loads, links and evaluates the endpoint's module; returns the exported handler.
fn load_handler(
    ctx: &mut Context,
    loader: &BundleLoader,
    (js_module, js_function): (&str, &str),
    options: &RuntimeOptions,
) -> Result<JsValue, ScriptError> {
    let name = normalise_module_name(js_module);
    let module =
        loader.load(&name, ctx).map_err(|e| ScriptError::Load(format!("module {name:?} does not compile: {}", describe(&e, ctx))))?;
    evaluate_module(ctx, &module, options).map_err(|e| match e {
        ScriptError::Load(why) => ScriptError::Load(format!("module {name:?} failed to load: {why}")),
        other => other,
    })?;
    // The export is taken by importing that one binding from a small entry module, never
    // through `module.namespace()`: Boa 0.22 never frees a namespace object (it keeps its
    // module in an untraced field, which the collector counts as a root), and with it the
    // whole realm, about 0.5 MB per fresh interpreter.
    let quote = |s: &str| serde_json::to_string(s).expect("a string serialises");
    let entry =
        format!("import {{ {} as handler }} from {}; globalThis.{EXPORT_SLOT} = handler;", quote(js_function), quote(&format!("/{name}")));
    let not_exported = || ScriptError::Load(format!("module {name:?} does not export a function {js_function:?}"));
    let entry =
        Module::parse(Source::from_bytes(entry.as_bytes()).with_path(Path::new(ENTRY_MODULE)), None, ctx).map_err(|_| not_exported())?;
    evaluate_module(ctx, &entry, options).map_err(|e| match e {
        ScriptError::Load(_) => not_exported(),
        other => other,
    })?;
    let global = ctx.global_object();
    let f = global.get(js_string!(EXPORT_SLOT), ctx).map_err(|e| ScriptError::Load(describe(&e, ctx)))?;
    global.delete_property_or_throw(js_string!(EXPORT_SLOT), ctx).map_err(|e| ScriptError::Load(describe(&e, ctx)))?;
    if !f.is_callable() {
        return Err(not_exported());
    }
    Ok(f)
}

/// Where the entry module leaves the export for [`load_handler`] (deleted right after).
const EXPORT_SLOT: &str = "__consort_export";
/// The entry module's name, outside the bundle's namespace (bundle modules have no `<`).
const ENTRY_MODULE: &str = "<consort entry>";

/// Loads, links and evaluates `module`, running the jobs it queues.
fn evaluate_module(ctx: &mut Context, module: &Module, options: &RuntimeOptions) -> Result<(), ScriptError> {
    let promise = module.load_link_evaluate(ctx);
    ctx.run_jobs().map_err(|e| script_error(&e, ctx, options, true))?;
    match promise.state() {
        PromiseState::Fulfilled(_) => Ok(()),
        PromiseState::Rejected(v) => {
            let e = JsError::from_opaque(v);
            if let Some(limit) = limit_of(&e, ctx) {
                return Err(ScriptError::Limit(limit, limit.describe(options)));
            }
            Err(ScriptError::Load(describe(&e, ctx)))
        }
        PromiseState::Pending => Err(ScriptError::Load("it did not finish loading (top-level await is not supported)".into())),
    }
}

/// The least call depth a context is given: Boa 0.22 panics when it cannot create a module's
/// promise for lack of depth, so a `max_stack_bytes` below this (16 KiB) fails every request
/// at once with a stack overflow, before any of the app's code runs, which is what CCF does
/// with a stack too small to enter the handler.
const MIN_RECURSION_LIMIT: usize = 16;

/// Boa's default host hooks, except that a string compiled at run time (`eval`, `new Function`)
/// is refused with a catchable `RangeError` before it is parsed when it would nest deeper than
/// the parser's stack allows ([`crate::nesting`]): Boa's parser has no stack check of its own.
struct Hooks;

impl boa_engine::context::HostHooks for Hooks {
    fn ensure_can_compile_strings(
        &self,
        _realm: boa_engine::realm::Realm,
        parameters: &[boa_engine::JsString],
        body: &boa_engine::JsString,
        _direct: bool,
        _context: &mut Context,
    ) -> JsResult<()> {
        for (what, src) in parameters.iter().map(|p| ("a parameter list given to Function", p)).chain([("the compiled string", body)]) {
            crate::engine::nesting::check_source(what, &src.to_std_string_escaped()).map_err(|e| JsNativeError::range().with_message(e))?;
        }
        Ok(())
    }
}

/// A context for `bundle`: its module loader, and the sources of time and randomness it draws
/// from (kept as context data, for the natives).
fn new_context(
    bundle: &Bundle,
    options: &RuntimeOptions,
    instruction_budget: usize,
) -> Result<(Context, Rc<BundleLoader>, Rc<Sources>), ScriptError> {
    if options.recursion_limit() < MIN_RECURSION_LIMIT {
        return Err(ScriptError::Limit(Limit::Stack, Limit::Stack.describe(options)));
    }
    let loader = Rc::new(BundleLoader { modules: bundle.modules.clone(), cache: RefCell::new(HashMap::new()) });
    let sources = Rc::new(Sources::default());
    let mut ctx = Context::builder()
        .host_hooks(Rc::new(Hooks))
        .clock(Rc::new(SourcesClock(sources.clone())))
        .module_loader(loader.clone())
        .instructions_remaining(instruction_budget)
        .build()
        .map_err(|e| ScriptError::Load(e.to_string()))?;
    ctx.insert_data(sources.clone());
    // The framework's globals are installed under Boa's own limits; the service's limits,
    // however small, hold for the app's code from its first module on.
    install_globals(&mut ctx).map_err(|e| ScriptError::Load(format!("installing the ccf global: {e}")))?;
    ctx.runtime_limits_mut().set_recursion_limit(options.recursion_limit());
    ctx.runtime_limits_mut().set_stack_size_limit(options.vm_stack_values());
    Ok((ctx, loader, sources))
}

/// A reused interpreter may run this many requests' worth of instructions before it is
/// replaced (each request is still held to its own time limit by the yields and by the
/// node's watchdog; this only bounds the backstop).
const REUSE_BUDGET_FACTOR: usize = 256;

/// A Boa context with the app's modules loaded: fresh for one request, or kept across requests
/// that share an `interpreter_reuse` key (their module state persists, as in CCF).
pub(crate) struct Interpreter {
    ctx: Context,
    loader: Rc<BundleLoader>,
    /// `__consort_invoke(...__consort_args)`, compiled once.
    invoke: Script,
    /// `__consort_call(...__consort_args)`, compiled on first use (governance calls).
    call_script: Option<Script>,
    handlers: HashMap<(String, String), JsValue>,
    options: RuntimeOptions,
    /// Whether `ccf.historicalState` is set (cleared by the next non-historical request).
    historical_set: bool,
    /// Where `Date`, `Math.random()` and `crypto`'s random bytes come from.
    sources: Rc<Sources>,
}

impl Interpreter {
    pub fn new(bundle: &Bundle, options: &RuntimeOptions, reused: bool) -> Result<Interpreter, ScriptError> {
        let budget = if reused { options.instruction_budget().saturating_mul(REUSE_BUDGET_FACTOR) } else { options.instruction_budget() };
        let (mut ctx, loader, sources) = new_context(bundle, options, budget)?;
        let invoke = Script::parse(Source::from_bytes("__consort_invoke(...__consort_args)"), None, &mut ctx)
            .map_err(|e| ScriptError::Load(e.to_string()))?;
        Ok(Interpreter {
            ctx,
            loader,
            invoke,
            call_script: None,
            handlers: HashMap::new(),
            options: options.clone(),
            historical_set: false,
            sources,
        })
    }

    /// Whether this interpreter can take another request under `options`.
    pub fn usable_for(&self, options: &RuntimeOptions) -> bool {
        self.options == *options && self.ctx.instructions_remaining() >= options.instruction_budget()
    }

    /// Runs one request on `target` (module, function) with `ccf.kv` going to `kv`, and the time
    /// and random values drawn as `sources` says (live, recorded, or given back from a
    /// recording). The second value says whether the interpreter is still sound (a script
    /// stopped by a limit leaves it mid-execution).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        target: (&str, &str),
        request: &JsRequest,
        body: &[u8],
        historical: Option<&HistoricalState>,
        access: KvAccess,
        kv: Box<dyn KvBackend>,
        sources: SourceMode,
    ) -> (RunOutcome, bool) {
        let what = format!("{} {}", request.method, request.url);
        self.sources.start(sources);
        let (response, session) = self.with_session(what, access, kv, |i, watch| i.invoke(target, request, body, historical, watch));
        let drawn = self.sources.finish();
        let sound = !matches!(response, Err(ScriptError::Limit(..)));
        let outcome = RunOutcome { response, apply_writes: session.apply_writes.get(), claims_digest: session.claims_digest.get(), drawn };
        (outcome, sound)
    }

    /// Runs `f` under this request's time watch with `ccf.kv` bound to `kv`; hands back the
    /// session (what the script set through `ccf.rpc`).
    fn with_session<T>(
        &mut self,
        what: String,
        access: KvAccess,
        kv: Box<dyn KvBackend>,
        f: impl FnOnce(&mut Self, &Watch) -> Result<T, ScriptError>,
    ) -> (Result<T, ScriptError>, Box<Session>) {
        let watch = Watch::start(&self.options);
        self.ctx.insert_data(Session { what, kv, access, apply_writes: Cell::new(None), claims_digest: Cell::new(None) });
        let result = f(self, &watch);
        let session = self.ctx.remove_data::<Session>().expect("session inserted above");
        (result, session)
    }

    fn handler(&mut self, (js_module, js_function): (&str, &str)) -> Result<JsValue, ScriptError> {
        let key = (js_module.to_owned(), js_function.to_owned());
        if let Some(h) = self.handlers.get(&key) {
            return Ok(h.clone());
        }
        let h = load_handler(&mut self.ctx, &self.loader, (js_module, js_function), &self.options)?;
        self.handlers.insert(key, h.clone());
        Ok(h)
    }

    /// Calls `function` exported by `module` with `args` (governance: the constitution's
    /// `validate`, `resolve` and `apply`, a ballot's `vote`). Returns its result as JSON text
    /// (`null` for `undefined`), and whether the interpreter is still sound.
    pub fn call(
        &mut self,
        (module, function): (&str, &str),
        args: &[serde_json::Value],
        access: KvAccess,
        kv: Box<dyn KvBackend>,
    ) -> (Result<String, ScriptError>, bool) {
        let (result, _) =
            self.with_session(format!("{module}:{function}"), access, kv, |i, watch| i.call_function((module, function), args, watch));
        let sound = !matches!(result, Err(ScriptError::Limit(..)));
        (result, sound)
    }

    fn call_function(&mut self, target: (&str, &str), args: &[serde_json::Value], watch: &Watch) -> Result<String, ScriptError> {
        let f = self.handler(target)?;
        let ctx = &mut self.ctx;
        let script = match &self.call_script {
            Some(s) => s.clone(),
            None => {
                let s = Script::parse(Source::from_bytes("__consort_call(...__consort_args)"), None, ctx)
                    .map_err(|e| ScriptError::Load(e.to_string()))?;
                self.call_script = Some(s.clone());
                s
            }
        };
        let mut values = vec![f];
        for a in args {
            values.push(JsValue::from_json(a, ctx).map_err(|e| ScriptError::exception(describe(&e, ctx)))?);
        }
        let result = evaluate(ctx, &script, values, watch, &self.options)?;
        result
            .as_string()
            .map(|s| s.to_std_string_escaped())
            .ok_or_else(|| ScriptError::exception("internal: the call's result was not serialised"))
    }

    /// `ccf.historicalState` for this request (or none), through the prelude's builder.
    fn set_historical(&mut self, historical: Option<&HistoricalState>) -> Result<(), ScriptError> {
        let ctx = &mut self.ctx;
        let fail = |e: JsError, ctx: &mut Context| ScriptError::exception(describe(&e, ctx));
        let value = match historical {
            Some(h) => historical_to_js(h, ctx).map_err(|e| fail(e, ctx))?,
            None => JsValue::undefined(),
        };
        let setter = ctx.global_object().get(js_string!("__consort_set_historical"), ctx).map_err(|e| fail(e, ctx))?;
        let setter = setter.as_callable().ok_or_else(|| ScriptError::Load("the prelude's historical setter is missing".into()))?;
        setter.call(&JsValue::undefined(), &[value], ctx).map_err(|e| fail(e, ctx))?;
        self.historical_set = historical.is_some();
        Ok(())
    }

    fn invoke(
        &mut self,
        target: (&str, &str),
        request: &JsRequest,
        body: &[u8],
        historical: Option<&HistoricalState>,
        watch: &Watch,
    ) -> Result<JsResponse, ScriptError> {
        if historical.is_some() || self.historical_set {
            self.set_historical(historical)?;
        }
        let handler = self.handler(target)?;
        let ctx = &mut self.ctx;
        let body = new_buffer(body, ctx).map_err(|e| ScriptError::exception(describe(&e, ctx)))?;
        let request = request_object(request, ctx).map_err(|e| ScriptError::exception(describe(&e, ctx)))?;
        let result = evaluate(ctx, &self.invoke, vec![handler, request, body], watch, &self.options)?;
        read_response(&result, ctx)
    }
}

/// The request object a handler gets, built directly: what `JsValue::from_json` of its JSON
/// gives, without the JSON in between.
fn request_object(r: &JsRequest, ctx: &mut Context) -> JsResult<JsValue> {
    let text = |s: &str| JsValue::from(JsString::from(s));
    let strings = |m: &BTreeMap<String, String>, ctx: &mut Context| -> JsResult<JsValue> {
        let o = boa_engine::JsObject::with_object_proto(ctx.intrinsics());
        for (k, v) in m {
            o.create_data_property_or_throw(JsString::from(k.as_str()), text(v), ctx)?;
        }
        Ok(o.into())
    };
    // In the order the request object has always had (its JSON's: serde_json sorts keys).
    let fields = [
        (
            js_string!("caller"),
            match &r.caller {
                Some(caller) => JsValue::from_json(caller, ctx)?,
                None => JsValue::null(),
            },
        ),
        (js_string!("headers"), strings(&r.headers, ctx)?),
        (js_string!("hostname"), text(&r.hostname)),
        (js_string!("method"), text(&r.method)),
        (js_string!("params"), strings(&r.params, ctx)?),
        (js_string!("path"), text(&r.path)),
        (js_string!("query"), text(&r.query)),
        (js_string!("route"), text(&r.route)),
        (js_string!("url"), text(&r.url)),
    ];
    let o = boa_engine::JsObject::with_object_proto(ctx.intrinsics());
    for (k, v) in fields {
        o.create_data_property_or_throw(k, v, ctx)?;
    }
    Ok(o.into())
}

/// Runs `script` (which spreads `__consort_args`) with `args`, as an async script so that it
/// yields to `watch` (see `limits`), then the jobs it queued.
fn evaluate(
    ctx: &mut Context,
    script: &Script,
    args: Vec<JsValue>,
    watch: &Watch,
    options: &RuntimeOptions,
) -> Result<JsValue, ScriptError> {
    if let Some(limit) = watch.exceeded() {
        return Err(ScriptError::Limit(limit, limit.describe(options)));
    }
    let args = JsArray::from_iter(args, ctx);
    ctx.global_object().set(js_string!("__consort_args"), args, false, ctx).map_err(|e| ScriptError::Load(e.to_string()))?;
    let result = match watch.drive(script.evaluate_async_with_budget(ctx, crate::engine::limits::YIELD_BUDGET)) {
        Err(limit) => return Err(ScriptError::Limit(limit, limit.describe(options))),
        Ok(r) => r.and_then(|v| ctx.run_jobs().map(|()| v)),
    };
    result.map_err(|e| script_error(&e, ctx, options, false))
}

/// The limits a bundle's modules load under when a proposal is checked: well inside the
/// governance call's own, so that a module that loops or allocates without end at its top level
/// is a prompt validation failure, not a stopped proposal (see `check_bundle`).
const VALIDATION_TIME_MS: u64 = 2000;
const VALIDATION_HEAP_BYTES: u64 = 64 * 1024 * 1024;

/// Checks at deploy time that every endpoint's module compiles and exports its function.
pub fn validate_bundle(bundle: &Bundle) -> Result<(), crate::BundleError> {
    validate_bundle_within(bundle, VALIDATION_TIME_MS)
}

/// [`validate_bundle`] with its modules' own time limit (the backstop of the instruction budget
/// at their top level) at `time_ms`.
fn validate_bundle_within(bundle: &Bundle, time_ms: u64) -> Result<(), crate::BundleError> {
    let options = RuntimeOptions { max_execution_time_ms: time_ms, max_heap_bytes: VALIDATION_HEAP_BYTES, ..RuntimeOptions::default() };
    // One context for the whole bundle: each module compiles and runs once, however many
    // endpoints name it (a bundled npm library can be half a megabyte).
    let (mut ctx, loader, _) =
        new_context(bundle, &options, options.instruction_budget()).map_err(|e| crate::BundleError::Invalid(e.to_string()))?;
    for (path, methods) in &bundle.metadata.endpoints {
        for (method, def) in methods {
            load_handler(&mut ctx, &loader, (&def.js_module, &def.js_function), &options).map_err(|e| crate::BundleError::Endpoint {
                endpoint: format!("{} {path}", method.to_uppercase()),
                message: e.to_string(),
            })?;
        }
    }
    Ok(())
}

/// CCF's `ccf.gov.validateConstitution`: the source is a module that exports `validate(input)`,
/// `resolve(proposal, proposerId, votes[, proposalId])` and `apply(proposal, proposerId)`,
/// each taking the number of arguments CCF checks (a function's `length`). The errors are
/// CCF's words.
pub fn validate_constitution(source: &str) -> Result<(), String> {
    const PATH: &str = "proposed constitution";
    if source.is_empty() {
        return Err("constitution is empty".into());
    }
    let specs: [(&str, &[&str], &[&str]); 3] = [
        ("validate", &["input"], &[]),
        ("resolve", &["proposal", "proposerId", "votes"], &["proposalId"]),
        ("apply", &["proposal", "proposerId"], &[]),
    ];
    let mut bundle = Bundle::default();
    bundle.modules.insert("constitution.js".into(), source.to_owned());
    let options = RuntimeOptions::default();
    for (name, required, optional) in specs {
        let (mut ctx, loader, _) = new_context(&bundle, &options, options.instruction_budget()).map_err(|e| e.to_string())?;
        let f = load_handler(&mut ctx, &loader, ("constitution.js", name), &options)
            .map_err(|e| format!("{PATH} does not export a function named {name}: {e}"))?;
        let length =
            f.as_object().and_then(|o| o.get(js_string!("length"), &mut ctx).ok()).and_then(|l| l.as_number()).unwrap_or(0.0) as usize;
        let plural = |n: usize| if n == 1 { "arg" } else { "args" };
        let actual = format!("{PATH} exports function {name} with {length} {}", plural(length));
        let (min, max) = (required.len(), required.len() + optional.len());
        if length < min || length > max {
            return Err(if optional.is_empty() {
                format!("{actual}, expected {min} {} ({})", plural(min), required.join(", "))
            } else {
                format!("{actual}, expected between {min} and {max} args ({}[, {}])", required.join(", "), optional.join(", "))
            });
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct ResponseMeta {
    status: u16,
    headers: Vec<(String, String)>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
}

fn read_response(result: &JsValue, ctx: &mut Context) -> Result<JsResponse, ScriptError> {
    let bad = |what: &str| ScriptError::exception(format!("internal: malformed handler result ({what})"));
    let arr = result.as_object().ok_or_else(|| bad("not an array"))?;
    let meta = arr.get(0, ctx).map_err(|_| bad("meta"))?.as_string().ok_or_else(|| bad("meta"))?.to_std_string_escaped();
    let meta: ResponseMeta = serde_json::from_str(&meta).map_err(|_| bad("meta json"))?;
    let body = arr.get(1, ctx).map_err(|_| bad("body"))?;
    let body = body.as_object().and_then(|o| JsArrayBuffer::from_object(o).ok()).and_then(|b| b.to_vec()).unwrap_or_default();
    Ok(JsResponse { status: meta.status, headers: meta.headers, content_type: meta.content_type, body })
}

/// `ccf.kv` straight on a transaction in this process (no worker, no pipe).
struct LocalKv(RefCell<consort_kv::Tx>);

impl KvBackend for LocalKv {
    fn call(&self, op: KvOp) -> Result<KvReply, String> {
        Ok(op.apply(&mut self.0.borrow_mut()))
    }
}

/// The bare-engine baseline of `make bench`: calls one endpoint `iterations` times on one
/// reused interpreter in this thread, each call on a fresh transaction of `store`, with no
/// worker process, no pipe and no HTTP. Returns the time taken.
pub fn bench_direct_calls(
    bundle: &Bundle,
    endpoint: &EndpointDef,
    request: &JsRequest,
    store: &consort_kv::Store,
    iterations: usize,
) -> Result<std::time::Duration, ScriptError> {
    let options = RuntimeOptions::default();
    let mut interpreter = Interpreter::new(bundle, &options, true)?;
    let started = std::time::Instant::now();
    for _ in 0..iterations {
        if !interpreter.usable_for(&options) {
            interpreter = Interpreter::new(bundle, &options, true)?;
        }
        let kv = Box::new(LocalKv(RefCell::new(store.begin())));
        let target = (endpoint.js_module.as_str(), endpoint.js_function.as_str());
        let (outcome, _) = interpreter.run(target, request, &request.body, None, KvAccess::AppReadOnly, kv, SourceMode::Live);
        outcome.response?;
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §3's access rules, every kind of map under every access, reading and writing:
    /// `r` may read, `w` may write, `-` refused.
    #[test]
    fn kv_access_rules_for_every_kind_of_map() {
        let maps = ["public:ccf.internal.signatures", "public:ccf.gov.members.info", "public:ccf.other", "public:records", "records"];
        let table = [
            //                          internal gov   reserved public private
            (KvAccess::AppReadWrite, ["r-", "r-", "--", "rw", "rw"]),
            (KvAccess::AppReadOnly, ["r-", "r-", "--", "r-", "r-"]),
            (KvAccess::GovReadOnly, ["r-", "r-", "--", "--", "--"]),
            (KvAccess::GovApply, ["r-", "rw", "--", "-w", "--"]),
        ];
        for (access, expected) in table {
            for (map, rule) in maps.iter().zip(expected) {
                let got = format!(
                    "{}{}",
                    if access.refusal(map, false).is_none() { 'r' } else { '-' },
                    if access.refusal(map, true).is_none() { 'w' } else { '-' }
                );
                assert_eq!(got, rule, "{access:?} on {map}");
            }
        }
        // The same rules hold for the names without `public:` (private framework maps).
        for access in [KvAccess::AppReadWrite, KvAccess::AppReadOnly, KvAccess::GovReadOnly, KvAccess::GovApply] {
            for (public, private) in
                [("public:ccf.internal.x", "ccf.internal.x"), ("public:ccf.gov.x", "ccf.gov.x"), ("public:ccf.y", "ccf.y")]
            {
                for write in [false, true] {
                    assert_eq!(access.refusal(public, write).is_none(), access.refusal(private, write).is_none(), "{access:?} {private}");
                }
            }
        }
        let why = KvAccess::AppReadOnly.refusal("records", true).expect("refused");
        assert!(why.contains("readonly"), "{why}");
    }

    /// A trace starts at the frame that made the error and goes outwards, naming the module,
    /// line and column of each; a `stack` the script replaced keeps only its frame lines.
    #[test]
    fn traces_start_at_the_innermost_frame() {
        let mut ctx = Context::builder().instructions_remaining(usize::MAX).build().expect("context");
        let code = "function check() {\n  throw new Error('boom');\n}\nfunction handler() { check(); }\nhandler();\n";
        let source = Source::from_bytes(code).with_path(std::path::Path::new("app.js"));
        let err = ctx.eval(source).expect_err("it throws");
        let trace = trace_of(&err, &mut ctx).expect("a trace");
        let frames: Vec<&str> = trace.lines().map(str::trim).collect();
        assert_eq!(frames.first(), Some(&"at check (app.js:2:9)"), "{trace}");
        assert!(frames.get(1).is_some_and(|f| f.starts_with("at handler (app.js:4:")), "{trace}");
        assert!(frames.iter().all(|f| !f.contains("unknown at ")), "{trace}");

        assert_eq!(app_frames("Error: boom\n    at f (app.js:1:2)\n    at <main> (unknown at 3:4)"), Some("    at f (app.js:1:2)".into()));
        assert_eq!(app_frames("replaced by the script"), None);
        assert_eq!(app_frames(""), None);
    }

    /// The request object built directly is the one its JSON gives: same keys, order, values.
    #[test]
    fn the_request_object_is_its_json() {
        let mut ctx = Context::builder().instructions_remaining(usize::MAX).build().expect("context");
        let caller = serde_json::json!({"policy": "user_cert", "id": "ab", "data": {"n": [1, -0.5, null, true]}, "cert": "PEM"});
        let headers = BTreeMap::from([("content-type".to_owned(), "application/json".to_owned()), ("x-é".to_owned(), "ü".to_owned())]);
        let full = JsRequest {
            method: "POST".into(),
            path: "/app/log/private".into(),
            url: "/app/log/private?id=1".into(),
            route: "/app/log/{kind}".into(),
            query: "id=1".into(),
            hostname: "127.0.0.1:8000".into(),
            headers,
            params: BTreeMap::from([("kind".to_owned(), "private".to_owned())]),
            caller: Some(caller),
            ..Default::default()
        };
        for request in [full, JsRequest::default()] {
            let direct = request_object(&request, &mut ctx).expect("built");
            let via_json = JsValue::from_json(&serde_json::to_value(&request).expect("json"), &mut ctx).expect("built");
            // The engine's own JSON.stringify keeps the keys' order (serde_json's map would sort).
            let text = |v: JsValue, ctx: &mut Context| {
                let stringify = ctx.eval(Source::from_bytes("JSON.stringify")).expect("stringify");
                let s = stringify.as_callable().expect("function").call(&JsValue::undefined(), &[v], ctx).expect("text");
                s.to_string(ctx).expect("string").to_std_string_escaped()
            };
            let (direct, via_json) = (text(direct, &mut ctx), text(via_json, &mut ctx));
            assert!(direct.starts_with(r#"{"caller":"#), "{direct}");
            assert_eq!(direct, via_json);
        }
    }

    /// A handler that reads the clock and draws random values, run once recording and once
    /// replaying the recording: the same answer; run live: another.
    #[test]
    fn a_recorded_run_replays_to_the_same_answer() {
        let json = serde_json::json!({
            "metadata": {"endpoints": {"/f": {"get": {"js_module": "m.js", "js_function": "f", "authn_policies": []}}}},
            "modules": [{"name": "m.js", "module": "export function f() {
                const bytes = crypto.getRandomValues(new Uint8Array(4));
                return { body: JSON.stringify([Date.now(), new Date().toISOString(), Math.random(), Array.from(bytes), crypto.randomUUID()]) };
            }"}],
        });
        let bundle = Bundle::from_json(json.to_string().as_bytes()).expect("bundle");
        let target = ("m.js", "f");
        let request = JsRequest { method: "GET".into(), path: "/app/f".into(), ..Default::default() };
        let store = consort_kv::Store::default();
        let options = RuntimeOptions::default();
        let mut interpreter = Interpreter::new(&bundle, &options, true).expect("interpreter");
        let mut run = |mode: SourceMode| {
            let kv = Box::new(LocalKv(RefCell::new(store.begin())));
            let (outcome, _) = interpreter.run(target, &request, &[], None, KvAccess::AppReadOnly, kv, mode);
            (String::from_utf8(outcome.response.expect("response").body).expect("text"), outcome.drawn)
        };
        let (recorded, drawn) = run(SourceMode::Record);
        assert_eq!((drawn.draws.time_ms.len(), drawn.draws.random.len(), drawn.draws.bytes.len()), (2, 1, 2), "{recorded}");
        let (replayed, again) = run(SourceMode::Replay(drawn.draws.clone()));
        assert_eq!(replayed, recorded);
        assert_eq!((again.draws, again.beyond_recording), (drawn.draws, 0));
        let (live, nothing) = run(SourceMode::Live);
        assert_ne!(live, recorded);
        assert_eq!(nothing, Drawn::default());
        // Math.random is still a plain function of Math.
        let (shape, _) = {
            let json = serde_json::json!({
                "metadata": {"endpoints": {"/g": {"get": {"js_module": "g.js", "js_function": "g", "authn_policies": []}}}},
                "modules": [{"name": "g.js", "module": "export function g() { const d = Object.getOwnPropertyDescriptor(Math, 'random'); return { body: [Math.random.name, Math.random.length, d.enumerable, d.writable, typeof Math.random()].join() }; }"}],
            });
            let bundle = Bundle::from_json(json.to_string().as_bytes()).expect("bundle");
            let mut i = Interpreter::new(&bundle, &options, false).expect("interpreter");
            let kv = Box::new(LocalKv(RefCell::new(store.begin())));
            let (outcome, _) = i.run(("g.js", "g"), &request, &[], None, KvAccess::AppReadOnly, kv, SourceMode::Live);
            (String::from_utf8(outcome.response.expect("response").body).expect("text"), outcome.drawn)
        };
        assert_eq!(shape, "random,0,false,true,number");
    }

    /// A fresh interpreter per request must give all its memory back: Boa 0.22 keeps a whole
    /// realm alive for every module namespace object, which `load_handler` therefore avoids.
    #[test]
    fn fresh_interpreters_give_their_memory_back() {
        let json = serde_json::json!({
            "metadata": {"endpoints": {"/f": {"get": {"js_module": "m.js", "js_function": "f", "authn_policies": []}}}},
            "modules": [{"name": "m.js", "module": "import { g } from './n.js'; export function f(request) { return { body: g() }; }"},
                        {"name": "n.js", "module": "export function g() { return ccf.kv['public:t'].size; }"}],
        });
        let bundle = Bundle::from_json(json.to_string().as_bytes()).expect("bundle");
        let m = bundle.route("GET", "/f").expect("route");
        let target = (m.endpoint.js_module.as_str(), m.endpoint.js_function.as_str());
        let request = JsRequest { method: "GET".into(), path: "/app/f".into(), ..Default::default() };
        let store = consort_kv::Store::default();
        let options = RuntimeOptions::default();
        let run = || {
            let mut interpreter = Interpreter::new(&bundle, &options, false).expect("interpreter");
            let kv = Box::new(LocalKv(RefCell::new(store.begin())));
            let (outcome, _) = interpreter.run(target, &request, &[], None, KvAccess::AppReadOnly, kv, SourceMode::Live);
            assert_eq!(outcome.response.expect("response").body, b"0");
        };
        for _ in 0..20 {
            run();
        }
        boa_gc::force_collect();
        let before = consort_alloc::thread_live_bytes();
        for _ in 0..200 {
            run();
        }
        boa_gc::force_collect();
        let grew = consort_alloc::thread_live_bytes() - before;
        // A leaked realm is about 0.5 MB, so a leak would show as 100 MB here.
        assert!(grew < 16 * 1024 * 1024, "200 fresh interpreters kept {grew} bytes");
    }
}
