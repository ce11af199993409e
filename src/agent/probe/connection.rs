//! A prober's connection: shared (`Channels`) with every prober that reaches the address
//! the same way — a lean connection for checks and method probes, a tonic channel for Watch
//! streams — its resolve, connect and TLS phases exported, made again after a failure.

use std::time::Instant;

use tonic::transport::Channel;

use super::super::channels::SharedChannel;
use super::Prober;
use crate::grpc::control::TlsFacts;
use crate::grpc::lean::SharedConnection;
use crate::telemetry::probe_series::Phase;

/// What a connection of either kind measured when it was made.
struct Made {
    resolve: std::time::Duration,
    connect: std::time::Duration,
    tls: Option<TlsFacts>,
}

impl Prober {
    /// Which shared connection this prober uses (`Channels`).
    pub(super) fn channel_key(&self) -> String {
        super::super::channels::key(
            &self.address,
            self.target.address.host(),
            self.target.probe.timeout,
            &format!("{:?}", self.target.probe.tls),
        )
    }

    /// The kept lean connection (checks, method probes), shared with the probers that reach
    /// this address the same way; made (timing resolve and connect) when there is none or
    /// the last one closed. Every prober sharing it exports what making it measured.
    pub(super) async fn connection(&mut self) -> Result<SharedConnection, String> {
        if let Some((c, _)) = &self.connection {
            if !c.is_closed() {
                return Ok(c.clone());
            }
            self.drop_channel();
        }
        let key = self.channel_key();
        let channels = self.ctx.connections.clone();
        let mut shared = channels
            .get_or_connect(&key, |generation| self.connect_lean(generation))
            .await?;
        if shared.channel.is_closed() {
            // Another prober's, closed since (the server went away while it was idle).
            channels.invalidate(&key, shared.generation);
            shared = channels
                .get_or_connect(&key, |generation| self.connect_lean(generation))
                .await?;
        }
        self.export_made(&shared);
        self.connection = Some((shared.channel.clone(), shared.generation));
        Ok(shared.channel)
    }

    /// The kept tonic channel (Watch streams), shared as `connection` is.
    pub(super) async fn watch_channel(&mut self) -> Result<Channel, String> {
        if let Some((c, _)) = &self.watch_channel {
            return Ok(c.clone());
        }
        let key = self.channel_key();
        let channels = self.ctx.watch_channels.clone();
        let shared = channels
            .get_or_connect(&key, |generation| self.connect_tonic(generation))
            .await?;
        self.export_made(&shared);
        self.watch_channel = Some((shared.channel.clone(), shared.generation));
        Ok(shared.channel)
    }

    /// Exports the phases of making `shared` (its TLS handshake its own phase).
    fn export_made<C>(&self, shared: &SharedChannel<C>) {
        let facts = shared.tls.lock().ok().and_then(|g| g.clone());
        self.series(|s| {
            s.set_phase(Phase::Resolve, shared.resolve);
            let mut connect = shared.connect;
            if let Some(f) = &facts {
                // `connect` is TCP alone; the handshake is its own phase.
                connect = connect.saturating_sub(f.handshake);
                s.set_phase(Phase::Tls, f.handshake);
                if let Some(expiry) = f.earliest_expiry {
                    s.set_cert_expiry(expiry as f64);
                }
                s.set_tls_version(&f.version);
            }
            s.set_phase(Phase::Connect, connect);
        });
    }

    /// Resolves the address (timed), as a gRPC client does before connecting.
    async fn resolve(&self) -> Result<std::time::Duration, String> {
        let t0 = Instant::now();
        let resolved = tokio::time::timeout(
            self.target.probe.timeout,
            tokio::net::lookup_host(self.address.dial()),
        )
        .await;
        match resolved {
            Ok(Ok(_)) => Ok(t0.elapsed()),
            Ok(Err(e)) => Err(format!("cannot resolve {}: {e}", self.address)),
            Err(_) => Err(format!(
                "resolving {} took longer than {:?}",
                self.address, self.target.probe.timeout
            )),
        }
    }

    /// Resolves and connects: a new shared lean connection.
    async fn connect_lean(
        &self,
        generation: u64,
    ) -> Result<SharedChannel<SharedConnection>, String> {
        let resolve = self.resolve().await?;
        let t1 = Instant::now();
        let endpoint = crate::grpc::channel::Endpoint {
            address: self.address.clone(),
            connect_timeout: self.target.probe.timeout,
            tls: self.tls.clone(),
        };
        let (channel, tls) = SharedConnection::open(&endpoint)
            .await
            .map_err(|e| format!("cannot connect to {}: {}", self.address, e.first_contact()))?;
        Ok(made(
            channel,
            generation,
            Made {
                resolve,
                connect: t1.elapsed(),
                tls,
            },
        ))
    }

    /// Resolves and connects: a new shared tonic channel.
    async fn connect_tonic(&self, generation: u64) -> Result<SharedChannel<Channel>, String> {
        let resolve = self.resolve().await?;
        let t1 = Instant::now();
        let tls: crate::grpc::control::TlsFactsSlot = Default::default();
        let channel = crate::grpc::control::channel_with_facts(
            &self.address,
            None,
            self.target.probe.timeout,
            self.tls.as_ref(),
            Some(tls.clone()),
        )
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", self.address))?;
        Ok(SharedChannel {
            channel,
            generation,
            resolve,
            connect: t1.elapsed(),
            tls,
        })
    }

    /// The connection failed this prober: the next probe (of any prober sharing it) makes a
    /// new one.
    pub(super) fn drop_channel(&mut self) {
        let key = self.channel_key();
        if let Some((_, generation)) = self.connection.take() {
            self.ctx.connections.invalidate(&key, generation);
        }
        if let Some((_, generation)) = self.watch_channel.take() {
            self.ctx.watch_channels.invalidate(&key, generation);
        }
    }
}

fn made<C>(channel: C, generation: u64, m: Made) -> SharedChannel<C> {
    SharedChannel {
        channel,
        generation,
        resolve: m.resolve,
        connect: m.connect,
        tls: std::sync::Arc::new(std::sync::Mutex::new(m.tls)),
    }
}
