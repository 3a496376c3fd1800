//! [`ClientBuilder`]: everything a client is built from, set before anything starts.
//!
//! The bindings build their clients here: the SDK that usage records and the
//! `User-Agent` name, and the reporter's initial link state (a phone app launched in
//! the background or offline), which must be in force before the usage reporter task
//! starts: set after construction, a first batch could already be on its way. Tests
//! (and replays) also set the clock the client's usage reporter and policy client read.

use std::sync::Arc;

use crate::config::Config;
use crate::error::Result;
use crate::usage::{Clock, LinkState, NetworkClass, SdkInfo, SystemClock};

use super::Client;

/// Builds a [`Client`]: `Client::builder(config).sdk(..).suspended(true).build()`.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    config: Config,
    sdk: SdkInfo,
    link: LinkState,
    clock: Arc<dyn Clock>,
}

impl ClientBuilder {
    /// A builder for `config`, as the Rust SDK (`gaterouter-rust`), reporting not
    /// suspended, on Wi-Fi.
    pub fn new(config: Config) -> Self {
        ClientBuilder {
            config,
            sdk: SdkInfo::rust(),
            link: LinkState::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The SDK usage records and the `User-Agent` name.
    pub fn sdk(mut self, sdk: SdkInfo) -> Self {
        self.sdk = sdk;
        self
    }

    /// [`ClientBuilder::sdk`] from its parts: `name` (`gaterouter-node`), `version` (the
    /// version of that package: a binding passes its own, see [`SdkInfo::version`]) and
    /// the host `language`.
    pub fn sdk_named(
        self,
        name: impl Into<String>,
        version: impl Into<String>,
        language: impl Into<String>,
    ) -> Self {
        self.sdk(SdkInfo {
            name: name.into(),
            version: version.into(),
            language: language.into(),
        })
    }

    /// Start with usage-record delivery suspended (an app launched in the background);
    /// [`Client::resume_reporting`] starts it.
    pub fn suspended(mut self, suspended: bool) -> Self {
        self.link.suspended = suspended;
        self
    }

    /// The network class at start (default Wi-Fi).
    pub fn network_class(mut self, network: NetworkClass) -> Self {
        self.link.network = network;
        self
    }

    /// Where the client's usage pipeline and policy client read "now" (default the
    /// system clock): the reporter's batch ages, backoff and retries, feedback
    /// timestamps, the delivery report's ages, the policy cache's lifetime, budget
    /// windows and signed requests' timestamps. A [`crate::usage::ManualClock`] lets a
    /// test move them without sleeping.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validate the config and start the client (its reporter and policy fetch need a
    /// tokio runtime when a collector is configured: build inside one).
    pub fn build(self) -> Result<Client> {
        Client::build(self.config, self.sdk, self.link, self.clock)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::client::testing::{ask, records_config};

    /// A collector that only counts the connections made to it (and closes them): its
    /// URL and the count.
    async fn counting_collector() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        tokio::spawn({
            let hits = hits.clone();
            async move {
                while let Ok((sock, _)) = listener.accept().await {
                    hits.fetch_add(1, Ordering::SeqCst);
                    drop(sock);
                }
            }
        });
        (url, hits)
    }

    /// Whether the reporter connected within `limit` (looked at every 10 ms).
    async fn sent_within(hits: &AtomicUsize, limit: Duration) -> bool {
        let start = std::time::Instant::now();
        while hits.load(Ordering::SeqCst) == 0 {
            if start.elapsed() > limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    #[test]
    fn the_builder_names_the_sdk_and_sets_the_link_before_start() {
        let dir = tempfile::tempdir().unwrap();
        let c = Client::builder(records_config(dir.path()))
            .sdk_named("gaterouter-test", "9.9.9", "test")
            .suspended(true)
            .network_class(NetworkClass::Cellular)
            .build()
            .unwrap();
        let link = c.reporting_link().unwrap();
        assert!(link.suspended);
        assert_eq!(link.network, NetworkClass::Cellular);
        assert_eq!(c.identity().api_key_id.as_deref(), Some("k_test"));
    }

    /// The uniffi client used to suspend after construction: a reporter with records
    /// waiting from the last run could send a batch first. Built suspended, it sends
    /// nothing until resumed.
    #[tokio::test]
    async fn a_client_built_suspended_sends_nothing_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = records_config(dir.path());
        // Last run: one record (a failed call) left in the spool.
        let first = Client::new(cfg.clone()).unwrap();
        let _ = first.chat(ask("openai/gpt-4o-mini")).await;
        first.shutdown().await.unwrap();
        drop(first);

        let (url, hits) = counting_collector().await;
        let mut cfg = cfg;
        cfg.reporting.collector_url = Some(url);
        cfg.reporting.batch_max_age_ms = 1;
        cfg.policy.enforce = crate::config::EnforceMode::Off;
        let c = Client::builder(cfg).suspended(true).build().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "nothing sent while suspended"
        );
        c.resume_reporting();
        assert!(
            sent_within(&hits, Duration::from_secs(2)).await,
            "resumed: the waiting record is sent"
        );
        let _ = c.close(Duration::ZERO).await;
    }

    /// The reporter reads the builder's clock: a batch waits for its age on that clock,
    /// not on the wall's (60 s here, which the test never sleeps).
    #[tokio::test]
    async fn the_usage_reporter_reads_the_builders_clock() {
        let dir = tempfile::tempdir().unwrap();
        let (url, hits) = counting_collector().await;
        let mut cfg = records_config(dir.path());
        cfg.reporting.collector_url = Some(url);
        cfg.reporting.batch_max_age_ms = 60_000;
        cfg.policy.enforce = crate::config::EnforceMode::Off;
        let clock = Arc::new(crate::usage::ManualClock::new());
        let c = Client::builder(cfg).clock(clock.clone()).build().unwrap();
        let _ = c.chat(ask("openai/gpt-4o-mini")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "one record, 0 s old on the client's clock: the batch waits"
        );
        clock.advance(Duration::from_secs(61));
        let _ = c.chat(ask("openai/gpt-4o-mini")).await;
        assert!(
            sent_within(&hits, Duration::from_secs(3)).await,
            "61 s later on the client's clock the batch is sent"
        );
        let _ = c.close(Duration::ZERO).await;
    }
}
