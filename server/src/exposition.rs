//! The Prometheus exposition: every part of the server that counts
//! something describes its metric families through an [`Exposition`] when
//! `/metrics` is scraped, reading its own atomics, and `prometheus-client`
//! encodes them (text format 0.0.4).
//!
//! The crate's own metric types are not used on the bid path: they are
//! atomics shared by every writer (a locked read-modify-write per
//! increment), while Gavel's per-core counters have one writer each and
//! increment with a relaxed load and store ([`crate::counter`]). A leaf
//! module: anything may describe its metrics without import cycles.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::counter::CallTimeHistogram;

/// A histogram as read at a scrape: per-bucket (not cumulative) counts.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations in this bucket).
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// No observations, buckets bounded by `bounds_ns`.
    pub fn empty(bounds_ns: &[u64]) -> Self {
        Self {
            buckets: bounds_ns.iter().map(|b| (*b as f64 / 1e9, 0)).collect(),
            count: 0,
            sum_seconds: 0.0,
        }
    }

    /// Adds one core's call times.
    pub fn add(&mut self, histogram: &CallTimeHistogram) {
        let (buckets, sum_ns) = histogram.read();
        for (i, n) in buckets.into_iter().enumerate() {
            if let Some((_, total)) = self.buckets.get_mut(i) {
                *total += n;
            }
            self.count += n;
        }
        self.sum_seconds += sum_ns as f64 / 1e9;
    }
}

/// What one scrape writes: metric families described from the server's
/// own counters, encoded by `prometheus-client`.
pub struct Exposition<'a> {
    encoder: DescriptorEncoder<'a>,
}

/// A family's label pairs.
type Labels<'l, const N: usize> = [(&'l str, &'l str); N];

impl<'a> Exposition<'a> {
    pub fn new(encoder: DescriptorEncoder<'a>) -> Self {
        Self { encoder }
    }

    /// `name` ends in `_total`, as the encoder writes it.
    fn family<'s>(
        &'s mut self,
        name: &'s str,
        help: &str,
        metric_type: MetricType,
    ) -> Result<MetricEncoder<'s>, fmt::Error> {
        let name = match metric_type {
            MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        self.encoder
            .encode_descriptor(name, help, None, metric_type)
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.family(name, help, MetricType::Counter)?
            .encode_counter::<NoLabelSet, _, u64>(&value, None)
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: i64) -> fmt::Result {
        self.family(name, help, MetricType::Gauge)?
            .encode_gauge(&value)
    }

    pub fn counters<'l, const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels<'l, N>, u64)>,
    ) -> fmt::Result {
        let mut family = self.family(name, help, MetricType::Counter)?;
        for (labels, value) in series {
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }

    pub fn gauges<'l, const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels<'l, N>, i64)>,
    ) -> fmt::Result {
        let mut family = self.family(name, help, MetricType::Gauge)?;
        for (labels, value) in series {
            family.encode_family(&labels)?.encode_gauge(&value)?;
        }
        Ok(())
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) -> fmt::Result {
        self.family(name, help, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)
    }

    pub fn histograms<'l, 'h, const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (Labels<'l, N>, &'h HistogramSnapshot)>,
    ) -> fmt::Result {
        let mut family = self.family(name, help, MetricType::Histogram)?;
        for (labels, h) in series {
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.buckets, None)?;
        }
        Ok(())
    }
}
