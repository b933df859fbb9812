//! Table metrics: sizes as gauges updated on publish, plus counters of
//! updates and of items the sources skipped.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{SkipReason, Stats};

#[derive(Clone)]
pub struct IndexMetrics {
    entries: IntGauge,
    records: IntGaugeVec,
    conflicts: IntGauge,
    ptr_capped: IntGauge,
    updates: IntCounter,
    last_update: Gauge,
    skipped: IntCounterVec,
}

impl IndexMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            entries: IntGauge::new("meshdns_serviceentries", "ServiceEntries in the table")?,
            records: IntGaugeVec::new(Opts::new("meshdns_records", "Records served, by type"), &["type"])?,
            conflicts: IntGauge::new("meshdns_conflicts", "Names defined by more than one ServiceEntry")?,
            ptr_capped: IntGauge::new(
                "meshdns_ptr_capped_addresses",
                "Addresses with more hosts than one PTR answer holds (the rest not served)",
            )?,
            updates: IntCounter::new("meshdns_table_updates_total", "Tables published")?,
            last_update: Gauge::new(
                "meshdns_last_update_timestamp_seconds",
                "Unix time of the last table update",
            )?,
            skipped: IntCounterVec::new(
                Opts::new(
                    "meshdns_skipped_total",
                    "Hosts, addresses or entries not served, by reason",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(metrics.entries.clone()))?;
        registry.register(Box::new(metrics.records.clone()))?;
        registry.register(Box::new(metrics.conflicts.clone()))?;
        registry.register(Box::new(metrics.ptr_capped.clone()))?;
        registry.register(Box::new(metrics.updates.clone()))?;
        registry.register(Box::new(metrics.last_update.clone()))?;
        registry.register(Box::new(metrics.skipped.clone()))?;
        Ok(metrics)
    }

    pub(super) fn published(&self, stats: &Stats) {
        self.entries.set(stats.entries as i64);
        self.records.with_label_values(&["A"]).set(stats.a as i64);
        self.records.with_label_values(&["AAAA"]).set(stats.aaaa as i64);
        self.records.with_label_values(&["PTR"]).set(stats.ptr as i64);
        self.conflicts.set(stats.conflicts as i64);
        self.ptr_capped.set(stats.ptr_capped as i64);
        self.updates.inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_update.set(now);
    }

    pub(super) fn skipped(&self, reason: &SkipReason) {
        self.skipped.with_label_values(&[reason.label()]).inc();
    }

    pub(super) fn skipped_other(&self, label: &str) {
        self.skipped.with_label_values(&[label]).inc();
    }
}
