//! A script's non-deterministic sources: the wall clock (`Date`, `Date.now()`), `Math.random()`
//! and the random bytes behind `crypto.getRandomValues`/`crypto.randomUUID`. Each draw is live
//! and, while recording, written down; while replaying, the written-down values are given back
//! in the order they were drawn, so a transaction's handler can run again on the same inputs
//! and make the same writes (issue 23, replay). A replay that draws more than was recorded (a
//! modified app) gets live values for the rest, and says how many.

use std::cell::RefCell;

use boa_engine::context::time::{Clock, JsInstant, StdClock};
use serde::{Deserialize, Serialize};

/// What a run drew, in order per source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Draws {
    /// Wall-clock readings, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_ms: Vec<i64>,
    /// `Math.random()` results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub random: Vec<f64>,
    /// Each request for random bytes, as drawn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bytes: Vec<serde_bytes::ByteBuf>,
}

/// How the sources behave for the run in progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum SourceMode {
    /// Live values, not kept (governance, tools).
    #[default]
    Live,
    /// Live values, written down.
    Record,
    /// The values of an earlier run, in order; live ones once they run out.
    Replay(Draws),
}

#[derive(Debug, Default)]
struct State {
    mode: SourceMode,
    drawn: Draws,
    /// Per source (time, random, bytes), how many recorded values were given back.
    given: [usize; 3],
    /// How many draws found no recorded value left.
    beyond: usize,
}

/// The sources of one interpreter: set to a [`SourceMode`] for each run, read back after it.
#[derive(Debug, Default)]
pub struct Sources {
    state: RefCell<State>,
    clock: StdClock,
    /// Bytes from the OS not yet used by `Math.random()` (read 512 at a time: one system call
    /// per 64 calls instead of one each).
    pool: RefCell<Vec<u8>>,
}

/// What a run drew, and for a replay, how many draws went beyond the recording.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Drawn {
    pub draws: Draws,
    pub beyond_recording: usize,
}

impl Sources {
    /// Starts a run in `mode`.
    pub fn start(&self, mode: SourceMode) {
        *self.state.borrow_mut() = State { mode, ..State::default() };
    }

    /// Ends the run: what it drew (empty unless recording or replaying); back to live values.
    pub fn finish(&self) -> Drawn {
        let state = std::mem::take(&mut *self.state.borrow_mut());
        Drawn { draws: state.drawn, beyond_recording: state.beyond }
    }

    /// The next value of one source (`pick` selects it, `slot` counts it): recorded when
    /// replaying and one is left, else live; written down unless live.
    fn draw<T: Clone>(&self, pick: fn(&mut Draws) -> &mut Vec<T>, slot: usize, live: impl FnOnce() -> T) -> T {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let value = match &mut state.mode {
            SourceMode::Live => return live(),
            SourceMode::Record => live(),
            SourceMode::Replay(recorded) => match pick(recorded).get(state.given[slot]).cloned() {
                Some(v) => {
                    state.given[slot] += 1;
                    v
                }
                None => {
                    state.beyond += 1;
                    live()
                }
            },
        };
        pick(&mut state.drawn).push(value.clone());
        value
    }

    /// Milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> i64 {
        self.draw(|d| &mut d.time_ms, 0, || self.clock.system_time_millis())
    }

    /// A number in [0, 1), as `Math.random()` gives.
    pub fn random(&self) -> f64 {
        self.draw(|d| &mut d.random, 1, || self.live_random())
    }

    /// `n` random bytes.
    pub fn bytes(&self, n: usize) -> Result<Vec<u8>, getrandom::Error> {
        let mut failed = None;
        let drawn = self.draw(
            |d| &mut d.bytes,
            2,
            || {
                let mut b = vec![0; n];
                if let Err(e) = getrandom::fill(&mut b) {
                    failed = Some(e);
                }
                serde_bytes::ByteBuf::from(b)
            },
        );
        match failed {
            Some(e) => Err(e),
            // A recorded draw of another length (a modified app asked for more or fewer bytes):
            // as many recorded bytes as fit, the rest live.
            None if drawn.len() != n => {
                let mut b = vec![0; n];
                getrandom::fill(&mut b)?;
                let keep = drawn.len().min(n);
                b[..keep].copy_from_slice(&drawn[..keep]);
                Ok(b)
            }
            None => Ok(drawn.into_vec()),
        }
    }
}

impl Sources {
    /// A uniformly distributed double in [0, 1): 53 random bits from the OS.
    fn live_random(&self) -> f64 {
        let mut pool = self.pool.borrow_mut();
        if pool.len() < 8 {
            let mut fresh = vec![0u8; 512];
            // The OS's source does not fail on Linux once booted; were it to, 0 is still a value
            // Math.random may return, and the failure shows in crypto's calls, which report it.
            if getrandom::fill(&mut fresh).is_err() {
                return 0.0;
            }
            *pool = fresh;
        }
        let at = pool.len() - 8;
        let bits = u64::from_le_bytes(pool[at..].try_into().expect("8 bytes"));
        pool.truncate(at);
        (bits >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The engine's clock, with its wall-clock readings going through the sources.
#[derive(Debug, Default)]
pub struct SourcesClock(pub std::rc::Rc<Sources>);

impl Clock for SourcesClock {
    fn now(&self) -> JsInstant {
        self.0.clock.now()
    }

    fn system_time_millis(&self) -> i64 {
        self.0.time_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_is_given_back_in_order_then_live_values_follow() {
        let sources = Sources::default();
        sources.start(SourceMode::Live);
        let _ = (sources.time_ms(), sources.random(), sources.bytes(4).expect("bytes"));
        assert_eq!(sources.finish(), Drawn::default(), "live draws are not kept");

        sources.start(SourceMode::Record);
        let recorded = (sources.time_ms(), sources.random(), sources.random(), sources.bytes(16).expect("bytes"));
        let drawn = sources.finish();
        assert_eq!((drawn.draws.time_ms.len(), drawn.draws.random.len(), drawn.draws.bytes.len()), (1, 2, 1));
        assert!((0.0..1.0).contains(&recorded.1) && (0.0..1.0).contains(&recorded.2));
        assert!(recorded.0 > 1_700_000_000_000, "the wall clock, in ms");

        sources.start(SourceMode::Replay(drawn.draws.clone()));
        let replayed = (sources.time_ms(), sources.random(), sources.random(), sources.bytes(16).expect("bytes"));
        assert_eq!(replayed, recorded);
        // One more than recorded: a live value, counted.
        let extra = sources.random();
        assert!((0.0..1.0).contains(&extra));
        let again = sources.finish();
        assert_eq!(again.beyond_recording, 1);
        assert_eq!(again.draws.random[..2], drawn.draws.random[..]);

        // Bytes asked for in another length: the recorded ones as far as they go.
        sources.start(SourceMode::Replay(drawn.draws.clone()));
        let longer = sources.bytes(20).expect("bytes");
        assert_eq!(longer[..16], recorded.3[..]);
        let shorter = {
            sources.start(SourceMode::Replay(drawn.draws));
            sources.bytes(8).expect("bytes")
        };
        assert_eq!(shorter[..], recorded.3[..8]);
    }

    #[test]
    fn live_random_numbers_are_in_range_and_vary() {
        let sources = Sources::default();
        let values: Vec<f64> = (0..1000).map(|_| sources.random()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let mut distinct = values.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert_eq!(distinct.len(), 1000);
        let mean = values.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }

    #[test]
    fn draws_round_trip_through_json() {
        let draws = Draws { time_ms: vec![1, 2], random: vec![0.25], bytes: vec![serde_bytes::ByteBuf::from(vec![1, 2, 3])] };
        let json = serde_json::to_string(&draws).expect("json");
        assert_eq!(serde_json::from_str::<Draws>(&json).expect("back"), draws);
        assert_eq!(serde_json::to_string(&Draws::default()).expect("json"), "{}");
    }
}
