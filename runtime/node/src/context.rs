//! The context every handler works in: [`Node`], what a running node holds, and the views of
//! the store it caches (the deployed app, the JS limits, whether the service is open). Starting
//! and serving a node are in `node.rs`, above everything; this module is below every handler.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use consort_consensus::Consensus;
use consort_js::{Bundle, JsPool, RuntimeOptions};
use consort_kv::names::{APP_VERSIONS, ENDPOINTS, JS_RUNTIME_OPTIONS, MODULES, SERVICE_CONFIG, SERVICE_INFO};
use consort_kv::{State, SINGLETON_KEY};
use consort_ledger::AppRef;
use tokio::net::TcpListener;

use crate::config::NodeConfig;
use crate::historical::Historical;
use crate::identity::NodeIdentity;
use crate::metrics::Metrics;
use crate::recovery_state::Recovery;
use crate::tls::ServedCert;

/// The app as last read, and the app version it is, keyed by the versions of the endpoints,
/// modules and app-versions tables.
type CachedApp = ((u64, u64, u64), Option<Arc<Bundle>>, Option<AppRef>);

/// The node as the handlers see it: its configuration and identity, consensus (and through it
/// the store and the ledger), the JS pool, historical state, and what it caches of the store.
pub struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) identity: NodeIdentity,
    pub(crate) consensus: Arc<Consensus>,
    pub(crate) pool: JsPool,
    pub(crate) historical: Arc<Historical>,
    /// The previous service's files, on a node started with `recover`.
    pub(crate) recovery: Recovery,
    /// The TLS certificate this node presents (governance may re-issue it).
    pub(crate) served_cert: Arc<ServedCert>,
    /// What `/node/metrics` reports.
    pub(crate) metrics: Metrics,
    app: RwLock<Option<CachedApp>>,
    /// The JS limits as last read, keyed by the version of their table.
    js_options: RwLock<(u64, Arc<RuntimeOptions>)>,
    /// Whether the service is Open, keyed by the version of the service table.
    open: RwLock<(u64, bool)>,
    /// Whether app transactions record their inputs, keyed by the version of the service
    /// configuration table.
    records_inputs: RwLock<(u64, bool)>,
    listener: std::sync::Mutex<Option<TcpListener>>,
    pub(crate) local_addr: SocketAddr,
}

/// What a node is made of once consensus runs ([`Node::new`] adds the caches).
pub(crate) struct Parts {
    pub config: NodeConfig,
    pub identity: NodeIdentity,
    pub consensus: Arc<Consensus>,
    pub pool: JsPool,
    pub historical: Arc<Historical>,
    pub recovery: Recovery,
    pub served_cert: Arc<ServedCert>,
    pub metrics: Metrics,
    pub listener: TcpListener,
    pub local_addr: SocketAddr,
}

impl Node {
    pub(crate) fn new(p: Parts) -> Node {
        Node {
            config: p.config,
            identity: p.identity,
            consensus: p.consensus,
            pool: p.pool,
            historical: p.historical,
            recovery: p.recovery,
            served_cert: p.served_cert,
            metrics: p.metrics,
            app: RwLock::new(None),
            js_options: RwLock::new((u64::MAX, Arc::default())),
            open: RwLock::new((u64::MAX, false)),
            records_inputs: RwLock::new((u64::MAX, true)),
            listener: std::sync::Mutex::new(Some(p.listener)),
            local_addr: p.local_addr,
        }
    }

    /// The listener [`Node::serve`](crate::Node::serve) takes, once.
    pub(crate) fn take_listener(&self) -> Option<TcpListener> {
        self.listener.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub fn rpc_address(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn service_cert_pem(&self) -> &str {
        &self.identity.service_cert_pem
    }

    pub fn node_id(&self) -> &str {
        &self.identity.node_id
    }

    /// The deployed app, re-read from the store only when its tables changed.
    pub(crate) fn app(&self) -> Result<Option<Arc<Bundle>>, String> {
        self.app_at(&self.consensus.store().snapshot())
    }

    /// The deployed app as of `state`.
    pub(crate) fn app_at(&self, state: &State) -> Result<Option<Arc<Bundle>>, String> {
        self.app_and_version_at(state).map(|(app, _)| app)
    }

    /// The deployed app as of `state`, and which app version it is (none before the first, or
    /// on a ledger from before versions were recorded).
    pub(crate) fn app_and_version_at(&self, state: &State) -> Result<(Option<Arc<Bundle>>, Option<AppRef>), String> {
        let versions = (state.map_version(ENDPOINTS), state.map_version(MODULES), state.map_version(APP_VERSIONS));
        if let Some((v, app, version)) = self.app.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if *v == versions {
                return Ok((app.clone(), *version));
            }
        }
        let app = read_app(state)?.map(Arc::new);
        let version = latest_app_version(state);
        *self.app.write().unwrap_or_else(|p| p.into_inner()) = Some((versions, app.clone(), version));
        Ok((app, version))
    }

    /// Whether app transactions record their inputs in their ledger entries as of `state`: the
    /// service configuration's `record_inputs` (set by governance), true unless set to false.
    pub(crate) fn records_inputs_at(&self, state: &State) -> bool {
        cached(&self.records_inputs, state.map_version(SERVICE_CONFIG), || {
            singleton_json(state, SERVICE_CONFIG).is_none_or(|config| config["record_inputs"] != false)
        })
    }

    /// Whether the service is `Open` as of `state` (app endpoints answer 503 until it is),
    /// re-read only when the service table changed.
    pub(crate) fn is_open_at(&self, state: &State) -> bool {
        cached(&self.open, state.map_version(SERVICE_INFO), || {
            singleton_json(state, SERVICE_INFO).is_some_and(|info| info["status"] == "Open")
        })
    }

    /// The service's JS limits, re-read only when their table changed. A missing or invalid
    /// value falls back to the defaults (and says so in the log).
    pub(crate) fn js_options(&self) -> Arc<RuntimeOptions> {
        self.js_options_at(&self.consensus.store().snapshot())
    }

    /// The JS limits as of `state`.
    pub(crate) fn js_options_at(&self, state: &State) -> Arc<RuntimeOptions> {
        cached(&self.js_options, state.map_version(JS_RUNTIME_OPTIONS), || {
            Arc::new(match state.get(JS_RUNTIME_OPTIONS, &SINGLETON_KEY).map(|v| serde_json::from_slice::<RuntimeOptions>(v)) {
                Some(Ok(o)) => o,
                Some(_) => {
                    tracing::warn!("{JS_RUNTIME_OPTIONS} holds an invalid value; using the defaults");
                    RuntimeOptions::default()
                }
                None => RuntimeOptions::default(),
            })
        })
    }
}

/// The newest recorded app version (`consort_gov::app_versions`), as the ledger names it.
fn latest_app_version(state: &State) -> Option<AppRef> {
    #[derive(serde::Deserialize)]
    struct Head {
        version: u64,
        bundle_digest: String,
    }
    let newest = state.iter(APP_VERSIONS).filter_map(|(_, v)| serde_json::from_slice::<Head>(v).ok()).max_by_key(|h| h.version)?;
    let digest = hex::decode(&newest.bundle_digest).ok()?.try_into().ok()?;
    Some(AppRef { version: newest.version, bundle_digest: digest })
}

/// What `cell` holds for `version` of the table it is read from, else `read()` (kept for that
/// version): a view of the store re-read only when its table changed.
fn cached<T: Clone>(cell: &RwLock<(u64, T)>, version: u64, read: impl FnOnce() -> T) -> T {
    {
        let held = cell.read().unwrap_or_else(|p| p.into_inner());
        if held.0 == version {
            return held.1.clone();
        }
    }
    let value = read();
    *cell.write().unwrap_or_else(|p| p.into_inner()) = (version, value.clone());
    value
}

/// The singleton value of `table` as JSON, if it is.
fn singleton_json(state: &State, table: &str) -> Option<serde_json::Value> {
    state.get(table, &SINGLETON_KEY).and_then(|v| serde_json::from_slice(v).ok())
}

/// Reads the deployed app back from the store, as the constitution's `set_js_app` writes it
/// (endpoints keyed `"<METHOD> <path>"`, modules under `/<name>`); `None` if no app is deployed.
pub fn read_app(state: &State) -> Result<Option<Bundle>, String> {
    let mut bundle = Bundle::default();
    for (key, value) in state.iter(ENDPOINTS) {
        let key = String::from_utf8_lossy(key);
        let (method, path) = key.split_once(' ').ok_or_else(|| format!("bad endpoint key {key:?}"))?;
        let mut def: consort_js::EndpointDef = serde_json::from_slice(value).map_err(|e| format!("endpoint {key}: {e}"))?;
        def.js_module = def.js_module.trim_start_matches('/').to_owned();
        bundle.metadata.endpoints.entry(path.to_owned()).or_default().insert(method.to_ascii_lowercase(), def);
    }
    for (key, value) in state.iter(MODULES) {
        let name = String::from_utf8_lossy(key);
        let source = String::from_utf8(value.to_vec()).map_err(|_| format!("module {name}: not UTF-8 text"))?;
        bundle.modules.insert(name.trim_start_matches('/').to_owned(), source);
    }
    Ok((!bundle.metadata.endpoints.is_empty()).then_some(bundle))
}
