//! Health metrics of an identity graph: the numbers that show over- and under-merging.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

use crate::graph::{IdentityGraph, NONE};
use crate::identifier::ProfileId;
use crate::log::{EntryKind, LinkEffect};

/// Size buckets of the profile size histogram.
const BUCKETS: [(u32, u32, &str); 7] = [
    (1, 1, "1"),
    (2, 2, "2"),
    (3, 5, "3-5"),
    (6, 10, "6-10"),
    (11, 50, "11-50"),
    (51, 100, "51-100"),
    (101, u32::MAX, ">100"),
];

/// A snapshot of the graph's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    /// Live profiles.
    pub profiles: usize,
    /// Identifiers in a profile.
    pub identifiers: usize,
    /// Distinct links.
    pub links: usize,
    /// Profiles by number of identifiers (`"1"`, `"2"`, `"3-5"`, ... `">100"`).
    pub size_histogram: BTreeMap<&'static str, usize>,
    /// The largest profile: a sudden jump is the over-merge alarm.
    pub largest: Option<(ProfileId, u32)>,
    /// Share of profiles that are a single anonymous identifier (visitors never
    /// identified).
    pub orphan_rate: f64,
    /// Link observations in the log.
    pub link_events: u64,
    /// Merges in the log.
    pub merges: u64,
    /// Refused links in the log.
    pub refused: u64,
    /// Merges per link observation.
    pub merge_rate: f64,
    /// Refusals per link observation (link observations plus refusals).
    pub refused_rate: f64,
    /// Merges waiting in the review queue.
    pub pending_review: usize,
    /// Expiries in the log.
    pub expired: u64,
    /// Time since each link was last seen, in milliseconds: median, 90th percentile and
    /// maximum. Old links are stale evidence holding profiles together.
    pub stale_link_age_ms: Option<(i64, i64, i64)>,
}

impl IdentityGraph {
    /// Computes the health report as of `now` (UTC milliseconds). Walks the whole graph and
    /// log: call it for monitoring, not per batch.
    pub fn health(&self, now: i64) -> HealthReport {
        let mut sizes: HashMap<u32, u32> = HashMap::new();
        let mut anonymous_only: HashMap<u32, bool> = HashMap::new();
        let mut identifiers = 0;
        for n in 0..self.interned_count() as u32 {
            let slot = self.slot_of(n);
            if slot == NONE {
                continue;
            }
            identifiers += 1;
            *sizes.entry(slot).or_default() += 1;
            let anonymous = self.rules().types[self.kind_of(n) as usize].anonymous;
            *anonymous_only.entry(slot).or_insert(true) &= anonymous;
        }
        let mut size_histogram: BTreeMap<&'static str, usize> =
            BUCKETS.iter().map(|b| (b.2, 0)).collect();
        for &size in sizes.values() {
            if let Some(b) = BUCKETS.iter().find(|b| (b.0..=b.1).contains(&size)) {
                *size_histogram.entry(b.2).or_default() += 1;
            }
        }
        let largest = sizes
            .iter()
            .max_by_key(|&(slot, size)| (*size, std::cmp::Reverse(*slot)))
            .map(|(&slot, &size)| (self.profile_uuid(slot), size));
        let orphans = sizes
            .iter()
            .filter(|&(slot, &size)| size == 1 && anonymous_only[slot])
            .count();

        let (mut link_events, mut merges, mut refused, mut expired) = (0u64, 0u64, 0u64, 0u64);
        for e in self.journal() {
            match e.kind {
                EntryKind::Link(LinkEffect::Created) => {}
                EntryKind::Link(_) => link_events += 1,
                EntryKind::Merge => merges += 1,
                EntryKind::Refused => refused += 1,
                EntryKind::Expire => expired += 1,
                _ => {}
            }
        }
        let mut ages: Vec<i64> = self
            .links()
            .map(|(_, _, w)| now.saturating_sub(w.last_seen()).max(0))
            .collect();
        ages.sort_unstable();
        let pick = |q: f64| ages[((ages.len() - 1) as f64 * q).round() as usize];
        let stale_link_age_ms = (!ages.is_empty()).then(|| (pick(0.5), pick(0.9), pick(1.0)));
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        HealthReport {
            profiles: self.profile_count(),
            identifiers,
            links: self.link_count(),
            size_histogram,
            largest,
            orphan_rate: ratio(orphans as u64, sizes.len() as u64),
            link_events,
            merges,
            refused,
            merge_rate: ratio(merges, link_events),
            refused_rate: ratio(refused, link_events + refused),
            pending_review: self
                .review_queue()
                .iter()
                .filter(|r| r.status == crate::graph::ReviewStatus::Pending)
                .count(),
            expired,
            stale_link_age_ms,
        }
    }
}

impl fmt::Display for HealthReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} profiles, {} identifiers, {} links",
            self.profiles, self.identifiers, self.links
        )?;
        let histogram: Vec<String> = BUCKETS
            .iter()
            .map(|b| format!("{}: {}", b.2, self.size_histogram.get(b.2).unwrap_or(&0)))
            .collect();
        writeln!(f, "  sizes: {}", histogram.join(", "))?;
        if let Some((id, size)) = &self.largest {
            writeln!(f, "  largest: {id} with {size} identifiers")?;
        }
        writeln!(f, "  orphan rate: {:.1}%", self.orphan_rate * 100.0)?;
        writeln!(
            f,
            "  merges: {} ({:.2}% of links), refused: {} ({:.2}%), expired: {}, pending review: {}",
            self.merges,
            self.merge_rate * 100.0,
            self.refused,
            self.refused_rate * 100.0,
            self.expired,
            self.pending_review
        )?;
        if let Some((p50, p90, max)) = self.stale_link_age_ms {
            let days = |ms: i64| ms as f64 / 86_400_000.0;
            writeln!(
                f,
                "  link age since last seen: median {:.1} d, p90 {:.1} d, max {:.1} d",
                days(p50),
                days(p90),
                days(max)
            )?;
        }
        Ok(())
    }
}
