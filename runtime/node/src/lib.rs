//! The node: the only crate that wires everything together and does IO — configuration,
//! identity files, the HTTPS server, routing, authentication, and the start of a network.

mod accept;
mod admission;
mod app;
mod auth;
mod bundle_dir;
mod call;
pub mod config;
mod console;
mod context;
mod forward;
mod genesis;
mod gov;
mod historical;
mod identity;
mod join;
mod ledger_view;
mod metrics;
mod node;
mod node_api;
mod recovery;
mod recovery_state;
pub mod replay;
mod reply;
mod routes;
mod server;
mod standin;
mod tls;

pub use bundle_dir::{load_app, AppError};
pub use config::{ConfigError, NodeConfig};
pub use context::Node;
pub use node::{ServeError, StartError};

/// Version reported by `/node/version` and `consort --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
