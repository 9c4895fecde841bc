//! How an executor thread runs jobs on the engine, whatever carries them there: a worker
//! process's script thread (`worker.rs`, over pipes) and the node's own JS threads
//! (`threads.rs`, in place) share it. It keeps the interpreters endpoints ask to reuse
//! (`interpreter_reuse`), bounded by `max_cached_interpreters`, for one app at a time.

use std::collections::HashMap;

use crate::engine::bundle::Bundle;
use crate::engine::host::{Handler, HistoricalState};
use crate::engine::runtime::{Interpreter, KvBackend, RunOutcome, ScriptError};
use crate::engine::sources::SourceMode;
use crate::{KvAccess, RuntimeOptions};

/// The name the one module of a governance call is loaded under.
const CALL_MODULE: &str = "gov.js";

#[derive(Default)]
pub(crate) struct Runner {
    kept: HashMap<String, Interpreter>,
}

impl Runner {
    /// Forgets the kept interpreters (the app changed).
    pub fn clear(&mut self) {
        self.kept.clear();
    }

    /// Runs a request's handler of `bundle`, on a kept interpreter when the endpoint reuses
    /// one and it is still usable, its time and random values drawn as `sources` says; returns
    /// the outcome and whether an interpreter was reused.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        bundle: &Bundle,
        handler: &Handler,
        request: &crate::JsRequest,
        body: &[u8],
        historical: Option<&HistoricalState>,
        access: KvAccess,
        kv: Box<dyn KvBackend>,
        options: &RuntimeOptions,
        sources: SourceMode,
    ) -> Result<(RunOutcome, bool), ScriptError> {
        // A historical request gets a fresh interpreter: modules read ccf.historicalState when
        // they load (`export const historicalState` in @microsoft/ccf-app).
        let key = handler.reuse_key.clone().filter(|_| historical.is_none());
        let (mut interpreter, reused) = match key.as_deref().and_then(|k| self.kept.remove(k)).filter(|i| i.usable_for(options)) {
            Some(i) => (i, true),
            None => (Interpreter::new(bundle, options, key.is_some())?, false),
        };
        let target = (handler.js_module.as_str(), handler.js_function.as_str());
        let (outcome, sound) = interpreter.run(target, request, body, historical, access, kv, sources);
        if let (Some(key), true) = (key, sound) {
            if self.kept.len() >= options.max_cached_interpreters.max(1) as usize {
                // Keep the cache bounded: drop some other interpreter.
                if let Some(victim) = self.kept.keys().next().cloned() {
                    self.kept.remove(&victim);
                }
            }
            self.kept.insert(key, interpreter);
        }
        Ok((outcome, reused))
    }
}

/// A governance call: `function` of the module `source`, in a fresh interpreter.
pub(crate) fn call(
    source: &str,
    function: &str,
    args: &[serde_json::Value],
    access: KvAccess,
    options: &RuntimeOptions,
    kv: Box<dyn KvBackend>,
) -> Result<String, ScriptError> {
    let mut bundle = Bundle::default();
    bundle.modules.insert(CALL_MODULE.to_owned(), source.to_owned());
    let mut interpreter = Interpreter::new(&bundle, options, false)?;
    interpreter.call((CALL_MODULE, function), args, access, kv).0
}
