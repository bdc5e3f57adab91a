//! The status page's charts, kept a minute per service.
//!
//! Why a minute: the chart's points are whole minutes that Cloud Monitoring publishes minutes
//! late (`CUTOVER_METRICS_DELAY`), so asking again within the same minute can only return the
//! same points. With the cache a page left open and refreshed by any number of people costs at
//! most one `timeSeries.list` per active rollout per minute, well inside Monitoring's read
//! quota and beside the one query per judged step the ticks make; and a chart is never more
//! than a minute behind what Monitoring has. Failures are kept as long (a Monitoring outage is
//! not hammered by refreshes). Entries are per service and rollout start, so a new rollout never
//! shows the previous one's curve; stale entries are dropped whenever one is added.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use crate::decision::evidence::ServiceStats;
use crate::target::ServiceRef;

/// How long a chart is reused.
pub const TTL: SignedDuration = SignedDuration::from_mins(1);

type Entry = (Timestamp, Result<ServiceStats, String>);

/// Charts by service and rollout start, with the time they were read.
#[derive(Default)]
pub struct ChartCache {
    entries: Mutex<HashMap<(String, Timestamp), Entry>>,
}

impl ChartCache {
    /// The chart of `service`'s rollout that started at `started`: the one read less than
    /// [`TTL`] before `now`, else what `read` gives (kept from `now`).
    pub async fn get_or_read<F, Fut>(
        &self,
        service: &ServiceRef,
        started: Timestamp,
        now: Timestamp,
        read: F,
    ) -> Result<ServiceStats, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ServiceStats, String>>,
    {
        let key = (service.to_string(), started);
        if let Some((at, kept)) = self.lock().get(&key)
            && now.duration_since(*at) < TTL
            && *at <= now
        {
            return kept.clone();
        }
        let fresh = read().await;
        let mut entries = self.lock();
        entries.retain(|_, (at, _)| now.duration_since(*at) < TTL);
        entries.insert(key, (now, fresh.clone()));
        fresh
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Timestamp), Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::decision::evidence::Window;

    #[tokio::test]
    async fn a_chart_is_read_once_a_minute() {
        let cache = ChartCache::default();
        let service = ServiceRef::checked("p", "us-central1", "api").unwrap();
        let t0: Timestamp = "2026-08-20T10:00:00Z".parse().unwrap();
        let reads = AtomicU32::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::Relaxed);
            Ok(ServiceStats {
                window: Window { start: t0, end: t0 },
                series: Vec::new(),
            })
        };
        for secs in [0, 10, 59] {
            let now = t0 + SignedDuration::from_secs(secs);
            cache.get_or_read(&service, t0, now, read).await.unwrap();
        }
        assert_eq!(
            reads.load(Ordering::Relaxed),
            1,
            "within the minute: cached"
        );
        let later = t0 + SignedDuration::from_secs(60);
        cache.get_or_read(&service, t0, later, read).await.unwrap();
        assert_eq!(
            reads.load(Ordering::Relaxed),
            2,
            "a minute later: read again"
        );
        cache
            .get_or_read(&service, later, later, read)
            .await
            .unwrap();
        assert_eq!(
            reads.load(Ordering::Relaxed),
            3,
            "a new rollout: its own chart"
        );
    }
}
