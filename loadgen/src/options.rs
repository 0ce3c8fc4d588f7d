//! What a replay is asked to do: a plain type that the replay and its
//! report both read, so that neither imports the other for it.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::limits::{CONNECTIONS_MAX, IN_FLIGHT_MAX, THREADS_MAX, TIMEOUT_MAX};
use crate::plan::Pacing;
use crate::wire::Format;

/// What a replay does.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// `HOST:PORT` of the bidder.
    pub target: String,
    pub pacing: Pacing,
    /// The measured part of the run, after the warm-up; `None`: the capture
    /// once.
    pub duration: Option<Duration>,
    /// Repeat the capture until `duration` is over.
    pub looped: bool,
    pub connections: usize,
    pub threads: usize,
    pub warmup: Duration,
    pub wire: Format,
    /// `None`: one per connection.
    pub in_flight_max: Option<usize>,
    pub timeout: Duration,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Play the exchange: send win, billing and loss notices.
    pub exchange: Option<crate::exchange::ExchangePlay>,
}

impl ReplayOptions {
    /// The in-flight cap in force.
    pub fn in_flight_max(&self) -> usize {
        self.in_flight_max.unwrap_or(self.connections)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let usage = |message: String| Err(Error::Usage(message));
        if !(1..=THREADS_MAX).contains(&self.threads) {
            return usage(format!("--threads must be 1 to {THREADS_MAX}"));
        }
        if !(self.threads..=CONNECTIONS_MAX).contains(&self.connections) {
            return usage(format!(
                "--connections must be at least --threads ({}) and at most {CONNECTIONS_MAX}: \
                 each thread needs a connection of its own",
                self.threads
            ));
        }
        if !(self.connections..=IN_FLIGHT_MAX).contains(&self.in_flight_max()) {
            return usage(format!(
                "--in-flight-max must be at least --connections ({}) and at most {IN_FLIGHT_MAX}",
                self.connections
            ));
        }
        if let Some(play) = &self.exchange
            && !(0.0..=1.0).contains(&play.win_rate)
        {
            return usage("--win-rate must be between 0 and 1".into());
        }
        if self.timeout.is_zero() || self.timeout > TIMEOUT_MAX {
            return usage(format!(
                "--timeout must be above 0 and at most {} ms",
                TIMEOUT_MAX.as_millis()
            ));
        }
        Ok(())
    }
}
