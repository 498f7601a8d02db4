//! Per-account sending limits (`per_minute`, `per_hour`, `per_day`).
//!
//! The minute limit is a true sliding window over send times; hour and day are counted in
//! minute buckets (a conservative sliding window). The counts are durable: every successful
//! send is written to `account_sends` with the delivery outcome, and a window is seeded from
//! there the first time an account is used after a start, so a restart does not reset the
//! daily quota.

use std::collections::{BTreeMap, VecDeque};

use crate::domain::account::Limits;

const MINUTE_MS: i64 = 60_000;

#[derive(Debug, Default)]
pub struct SendWindow {
    /// Send times (unix ms) in the last minute.
    recent: VecDeque<i64>,
    /// Sends per unix minute, for the last day.
    buckets: BTreeMap<i64, u32>,
}

impl SendWindow {
    /// A window seeded with durable counts `(unix minute, sends)`.
    pub fn seeded(counts: &[(i64, i64)], now_ms: i64) -> SendWindow {
        let mut w = SendWindow::default();
        let this_minute = now_ms / MINUTE_MS;
        for &(minute, count) in counts {
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            *w.buckets.entry(minute).or_default() += count;
            // Sends of the last two minutes count as late in their minute: conservative.
            if minute >= this_minute - 1 {
                let at = (minute * MINUTE_MS + MINUTE_MS - 1).min(now_ms);
                for _ in 0..count.min(100_000) {
                    w.recent.push_back(at);
                }
            }
        }
        w.recent.make_contiguous().sort_unstable();
        w
    }

    fn prune(&mut self, now_ms: i64) {
        while self
            .recent
            .front()
            .is_some_and(|&t| t <= now_ms - MINUTE_MS)
        {
            self.recent.pop_front();
        }
        let day_ago = now_ms / MINUTE_MS - 1440;
        while let Some((&m, _)) = self.buckets.first_key_value() {
            if m > day_ago {
                break;
            }
            self.buckets.pop_first();
        }
    }

    fn sum_since(&self, minute: i64) -> u64 {
        self.buckets
            .range(minute..)
            .map(|(_, &c)| u64::from(c))
            .sum()
    }

    /// `Ok` when one more send fits, else the unix ms when the earliest limit frees a slot.
    pub fn check(&mut self, limits: &Limits, now_ms: i64) -> Result<(), i64> {
        self.prune(now_ms);
        let this_minute = now_ms / MINUTE_MS;
        let mut free_at: Option<i64> = None;
        let mut later = |t: i64| free_at = Some(free_at.map_or(t, |f: i64| f.max(t)));
        if let Some(max) = limits.per_minute
            && self.recent.len() as u64 >= u64::from(max)
        {
            let idx = self.recent.len() - max as usize;
            later(self.recent[idx] + MINUTE_MS);
        }
        for (max, span) in [(limits.per_hour, 60), (limits.per_day, 1440)] {
            if let Some(max) = max {
                let since = this_minute - span + 1;
                let sent = self.sum_since(since);
                if sent >= u64::from(max) {
                    // Free when enough of the oldest minutes leave the window.
                    let mut excess = sent + 1 - u64::from(max);
                    let mut at = now_ms + MINUTE_MS;
                    for (&m, &c) in self.buckets.range(since..) {
                        at = (m + span) * MINUTE_MS;
                        if u64::from(c) >= excess {
                            break;
                        }
                        excess -= u64::from(c);
                    }
                    later(at);
                }
            }
        }
        match free_at {
            None => Ok(()),
            Some(t) => Err(t.max(now_ms + 1)),
        }
    }

    /// Counts a send (made when the send is decided, so concurrent sends cannot overshoot).
    pub fn record(&mut self, now_ms: i64) {
        self.recent.push_back(now_ms);
        *self.buckets.entry(now_ms / MINUTE_MS).or_default() += 1;
    }

    /// Takes back a send that did not happen.
    pub fn unrecord(&mut self, at_ms: i64) {
        if let Some(pos) = self.recent.iter().rposition(|&t| t == at_ms) {
            self.recent.remove(pos);
        }
        if let Some(c) = self.buckets.get_mut(&(at_ms / MINUTE_MS)) {
            *c = c.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(m: Option<u32>, h: Option<u32>, d: Option<u32>) -> Limits {
        Limits {
            per_minute: m,
            per_hour: h,
            per_day: d,
        }
    }

    #[test]
    fn per_minute_is_a_sliding_window() {
        let l = limits(Some(2), None, None);
        let mut w = SendWindow::default();
        let t0 = 1_000_000_000;
        assert!(w.check(&l, t0).is_ok());
        w.record(t0);
        w.record(t0 + 10_000);
        assert_eq!(w.check(&l, t0 + 20_000), Err(t0 + 60_000));
        assert!(w.check(&l, t0 + 60_001).is_ok());
    }

    #[test]
    fn daily_counts_survive_a_restart() {
        let l = limits(None, None, Some(3));
        let now = 1_000_000_000_000;
        let minute = now / MINUTE_MS;
        let mut w = SendWindow::seeded(&[(minute - 100, 2), (minute - 5, 1)], now);
        let free = w.check(&l, now).unwrap_err();
        assert_eq!(free, (minute - 100 + 1440) * MINUTE_MS);
        let mut w = SendWindow::seeded(&[(minute - 1441, 5)], now);
        assert!(w.check(&l, now).is_ok(), "older than a day does not count");
    }

    #[test]
    fn unrecord_gives_the_slot_back() {
        let l = limits(Some(1), None, None);
        let mut w = SendWindow::default();
        w.record(5);
        assert!(w.check(&l, 6).is_err());
        w.unrecord(5);
        assert!(w.check(&l, 6).is_ok());
    }
}
