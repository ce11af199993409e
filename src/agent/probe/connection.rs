//! A prober's connection: shared (`Channels`) with every prober that reaches the address
//! the same way, its resolve, connect and TLS phases exported, made again after a failure.

use std::time::Instant;

use tonic::transport::Channel;

use super::super::channels::{Channels, SharedChannel};
use super::Prober;
use crate::telemetry::probe_series::Phase;

impl Prober {
    /// Which shared connection this prober uses (`Channels`).
    pub(super) fn channel_key(&self) -> String {
        Channels::key(
            &self.address,
            self.target.address.host(),
            self.target.probe.timeout,
            &format!("{:?}", self.target.probe.tls),
        )
    }

    /// The kept channel: the connection shared with the probers that reach this address the
    /// same way, made (timing resolve and connect) when there is none. Every prober sharing
    /// it exports what making it measured.
    pub(super) async fn channel(&mut self) -> Result<Channel, String> {
        if let Some((c, _)) = &self.channel {
            return Ok(c.clone());
        }
        let key = self.channel_key();
        let channels = self.ctx.channels.clone();
        let shared = channels
            .get_or_connect(&key, |generation| self.connect(generation))
            .await?;
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
        self.channel = Some((shared.channel.clone(), shared.generation));
        Ok(shared.channel)
    }

    /// Resolves and connects: a new shared connection.
    pub(super) async fn connect(&self, generation: u64) -> Result<SharedChannel, String> {
        let t0 = Instant::now();
        let resolved = tokio::time::timeout(
            self.target.probe.timeout,
            tokio::net::lookup_host(self.address.dial()),
        )
        .await;
        let resolve = t0.elapsed();
        match resolved {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("cannot resolve {}: {e}", self.address)),
            Err(_) => {
                return Err(format!(
                    "resolving {} took longer than {:?}",
                    self.address, self.target.probe.timeout
                ))
            }
        }
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
        if let Some((_, generation)) = self.channel.take() {
            self.ctx
                .channels
                .invalidate(&self.channel_key(), generation);
        }
    }
}
