//! Connections shared by the probers that reach one address the same way (address, TLS name
//! and options, timeout): health checks multiplex over one HTTP/2 connection, as a gRPC
//! client's channel would. A thousand targets on a few servers (health per service name,
//! or one port serving many) hold a few connections, not a thousand. Checks and method
//! probes share lean connections (`SharedConnection`, a few KB each); Watch streams, tonic
//! channels (about 40 KB each). The first prober to need a connection makes it while the
//! others wait for it; a prober that sees it fail drops it, and the next one reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::grpc::control::TlsFactsSlot;
use crate::vocabulary::HostPort;

/// A connection `C` and what making it measured (every prober sharing it exports these).
#[derive(Debug, Clone)]
pub struct SharedChannel<C> {
    /// The connection.
    pub channel: C,
    /// Tells this connection from its replacement.
    pub generation: u64,
    /// How long resolving the address took.
    pub resolve: Duration,
    /// TCP connect and TLS handshake together (the handshake is in `tls`).
    pub connect: Duration,
    /// What the connection's TLS handshakes negotiated (refreshed on reconnects).
    pub tls: TlsFactsSlot,
}

/// What must be the same for two probers to share a connection.
pub fn key(address: &HostPort, tls_name: &str, timeout: Duration, tls: &str) -> String {
    format!("{address}|{tls_name}|{timeout:?}|{tls}")
}

type Slot<C> = Arc<tokio::sync::Mutex<Option<SharedChannel<C>>>>;

#[derive(Debug)]
/// The connections probers share, one per (address, server name, timeout, TLS), made
/// once and made again after a failure.
pub struct Channels<C> {
    slots: Mutex<HashMap<String, Slot<C>>>,
    generations: std::sync::atomic::AtomicU64,
}

impl<C> Default for Channels<C> {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
            generations: Default::default(),
        }
    }
}

impl<C: Clone> Channels<C> {
    fn slot(&self, key: &str) -> Slot<C> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// The connection for `key`, made by `connect` (given the new generation) when there is
    /// none; probers asking meanwhile wait for that attempt.
    pub async fn get_or_connect<F, Fut, E>(
        &self,
        key: &str,
        connect: F,
    ) -> Result<SharedChannel<C>, E>
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<SharedChannel<C>, E>>,
    {
        let slot = self.slot(key);
        let mut held = slot.lock().await;
        if let Some(c) = held.as_ref() {
            return Ok(c.clone());
        }
        let generation = self
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let made = connect(generation).await?;
        *held = Some(made.clone());
        Ok(made)
    }

    /// Drops the connection of `key` if it is still `generation` (it failed for a prober).
    pub fn invalidate(&self, key: &str, generation: u64) {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned();
        if let Some(slot) = slot {
            // Someone holding the slot is making a new connection: nothing to drop.
            if let Ok(mut held) = slot.try_lock() {
                if held.as_ref().is_some_and(|c| c.generation == generation) {
                    *held = None;
                }
            }
        }
    }

    /// Forgets every connection to `address` (a backend that left its name).
    pub fn forget(&self, address: &HostPort) {
        let prefix = format!("{address}|");
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| !k.starts_with(&prefix));
    }

    /// Forgets every connection (a new configuration).
    pub fn clear(&self) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(generation: u64) -> SharedChannel<()> {
        SharedChannel {
            // Only the connection's identity (its generation) matters here.
            channel: (),
            generation,
            resolve: Duration::ZERO,
            connect: Duration::ZERO,
            tls: Default::default(),
        }
    }

    #[tokio::test]
    async fn probers_share_one_connection_until_it_fails() {
        let channels = Channels::default();
        let a = HostPort::parse("127.0.0.1:9").unwrap();
        let key = key(&a, "127.0.0.1", Duration::from_secs(1), "None");
        let other = super::key(&a, "api.internal", Duration::from_secs(1), "None");
        let connects = std::sync::atomic::AtomicU32::new(0);
        let connect = |g| {
            connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move { Ok::<_, String>(made(g)) }
        };
        let first = channels.get_or_connect(&key, connect).await.unwrap();
        let again = channels.get_or_connect(&key, connect).await.unwrap();
        assert_eq!(first.generation, again.generation);
        assert_eq!(connects.load(std::sync::atomic::Ordering::Relaxed), 1);
        // Another TLS name is another connection.
        let named = channels.get_or_connect(&other, connect).await.unwrap();
        assert_ne!(named.generation, first.generation);
        // A stale failure report (an older generation) does not drop the current one.
        channels.invalidate(&key, first.generation + 100);
        assert_eq!(
            channels
                .get_or_connect(&key, connect)
                .await
                .unwrap()
                .generation,
            first.generation
        );
        channels.invalidate(&key, first.generation);
        let replaced = channels.get_or_connect(&key, connect).await.unwrap();
        assert_ne!(replaced.generation, first.generation);
        // A failed attempt leaves nothing behind: the next prober tries again.
        let failed = channels
            .get_or_connect(&key, |_| async {
                Err::<SharedChannel<()>, _>("down".to_string())
            })
            .await;
        assert!(failed.is_ok(), "the slot still holds the replacement");
        channels.forget(&a);
        assert!(channels
            .get_or_connect(&key, |_| async {
                Err::<SharedChannel<()>, _>("down".to_string())
            })
            .await
            .is_err());
    }
}
