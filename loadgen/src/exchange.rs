//! Playing the exchange's part after the auction: win, billing and loss
//! notices for the bids the bidder returned.
//!
//! With `--win-rate R`, each returned bid wins with probability R (the
//! generator's own seeded choice, so a run is repeatable). A win sends the
//! bid's `nurl` and then its `burl` with `${AUCTION_PRICE}` filled with the
//! clearing price; a loss sends its `lurl` with `${AUCTION_PRICE}` (the
//! winner's price), `${AUCTION_LOSS}` = 102 (lost to a higher bid) and
//! `${AUCTION_MIN_TO_WIN}`. Clearing prices: `first-price` charges the bid,
//! `second-price` a price drawn uniformly between half the bid and the bid
//! (the runner-up plus a cent, as a second-price exchange would). Notices
//! go out `--notice-delay` after the answer, as an exchange sends them
//! once the ad has rendered, on their own connections; their latency and
//! the spend they imply are reported beside the bid latency.

use std::time::Duration;

use serde::Serialize;

use crate::rng::Rng;
use crate::stats::new_histogram;

/// How the exchange prices a win.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Clearing {
    /// The winner pays its bid.
    FirstPrice,
    /// The winner pays the runner-up's price plus a cent (drawn between
    /// half the bid and the bid).
    SecondPrice,
}

/// What `--win-rate` asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExchangePlay {
    pub win_rate: f64,
    pub clearing: Clearing,
    pub delay: Duration,
}

/// Notice connections per replay thread.
pub const NOTICE_CONNECTIONS: usize = 4;

/// Notices queued per thread at most; past it one is counted as dropped.
pub const NOTICE_QUEUE_MAX: usize = 1 << 16;

/// Delay between an answer and its notices when none is given.
pub const NOTICE_DELAY_DEFAULT: Duration = Duration::from_millis(50);

/// A bid as the exchange read it from an answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OfferedBid {
    /// CPM.
    pub price: f64,
    pub nurl: Option<String>,
    pub burl: Option<String>,
    pub lurl: Option<String>,
}

/// The exchange's decision about one bid: notice URLs, macros filled.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub won: bool,
    /// Clearing price (win), CPM micros.
    pub clearing_cpm_micros: i64,
    pub urls: Vec<String>,
}

fn decimal(cpm_micros: i64) -> String {
    format!("{}.{:06}", cpm_micros / 1_000_000, cpm_micros % 1_000_000)
}

/// Decides a bid's fate and fills its notice URLs.
pub fn decide(play: &ExchangePlay, bid: &OfferedBid, rng: &mut Rng) -> Decision {
    let bid_micros = (bid.price * 1e6).round().max(0.0) as i64;
    let won = rng.chance(play.win_rate);
    let fill = |url: &str, price: i64, min_to_win: i64| {
        url.replace("${AUCTION_PRICE}", &decimal(price))
            .replace("${AUCTION_LOSS}", "102")
            .replace("${AUCTION_MIN_TO_WIN}", &decimal(min_to_win))
    };
    if won {
        let clearing = match play.clearing {
            Clearing::FirstPrice => bid_micros,
            Clearing::SecondPrice => (bid_micros as f64 * (0.5 + rng.unit() / 2.0)).round() as i64,
        };
        let urls = [&bid.nurl, &bid.burl]
            .into_iter()
            .flatten()
            .map(|u| fill(u, clearing, 0))
            .collect();
        Decision {
            won,
            clearing_cpm_micros: clearing,
            urls,
        }
    } else {
        let winner = (bid_micros as f64 * (1.0 + rng.unit() / 2.0)).round() as i64 + 10_000;
        let urls = bid
            .lurl
            .iter()
            .map(|u| fill(u, winner, winner + 10_000))
            .collect();
        Decision {
            won,
            clearing_cpm_micros: 0,
            urls,
        }
    }
}

/// What one impression at `cpm_micros` costs, in micros: the bidder's own
/// rounding (to the nearest micro, halves up).
pub fn impression_cost(cpm_micros: i64) -> i64 {
    (cpm_micros + 500).div_euclid(1000)
}

/// Splits `http://host:port/path?query` into the authority and the target.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let slash = rest.find('/')?;
    Some((&rest[..slash], &rest[slash..]))
}

/// Notices of one thread or run.
#[derive(Clone, Debug)]
pub struct NoticeTally {
    pub wins: u64,
    pub losses: u64,
    pub sent: u64,
    /// Answered with something other than 204, or not answered.
    pub failed: u64,
    /// Not sent: the notice queue was full.
    pub dropped: u64,
    /// Sum of the wins' impression costs, micros.
    pub spend_micros: i64,
    /// Notice round trips, µs.
    pub latency: hdrhistogram::Histogram<u64>,
    pub first_error: Option<String>,
}

impl Default for NoticeTally {
    fn default() -> Self {
        Self {
            wins: 0,
            losses: 0,
            sent: 0,
            failed: 0,
            dropped: 0,
            spend_micros: 0,
            latency: new_histogram(),
            first_error: None,
        }
    }
}

impl NoticeTally {
    pub fn add(&mut self, other: &NoticeTally) {
        self.wins += other.wins;
        self.losses += other.losses;
        self.sent += other.sent;
        self.failed += other.failed;
        self.dropped += other.dropped;
        self.spend_micros += other.spend_micros;
        let _ = self.latency.add(&other.latency);
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    pub fn reset(&mut self) {
        let mut latency = std::mem::replace(&mut self.latency, new_histogram());
        latency.reset();
        *self = NoticeTally {
            latency,
            ..NoticeTally::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wins_fill_the_clearing_price_and_losses_the_loss_macros() {
        let bid = OfferedBid {
            price: 2.0,
            nurl: Some("http://b/v1/events/win?t=x&p=${AUCTION_PRICE}".into()),
            burl: Some("http://b/v1/events/bill?t=x&p=${AUCTION_PRICE}".into()),
            lurl: Some("http://b/v1/events/loss?t=x&p=${AUCTION_PRICE}&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}".into()),
        };
        let mut rng = Rng::new(1);
        let first = ExchangePlay {
            win_rate: 1.0,
            clearing: Clearing::FirstPrice,
            delay: Duration::ZERO,
        };
        let win = decide(&first, &bid, &mut rng);
        assert!(win.won);
        assert_eq!(win.clearing_cpm_micros, 2_000_000);
        assert_eq!(win.urls[0], "http://b/v1/events/win?t=x&p=2.000000");
        assert_eq!(win.urls.len(), 2);
        let second = ExchangePlay {
            clearing: Clearing::SecondPrice,
            ..first
        };
        let win = decide(&second, &bid, &mut rng);
        assert!((1_000_000..=2_000_000).contains(&win.clearing_cpm_micros));
        let lose = ExchangePlay {
            win_rate: 0.0,
            ..first
        };
        let loss = decide(&lose, &bid, &mut rng);
        assert!(!loss.won);
        assert_eq!(loss.urls.len(), 1);
        assert!(loss.urls[0].contains("&r=102&m="), "{}", loss.urls[0]);
        assert!(!loss.urls[0].contains('$'));
        assert_eq!(
            split_url("http://127.0.0.1:8080/v1/events/win?t=1"),
            Some(("127.0.0.1:8080", "/v1/events/win?t=1"))
        );
        assert_eq!(impression_cost(1_500_000), 1_500);
    }
}
