//! Moving sessions between relays: adopting a standby session at takeover,
//! and demoting one of ours that another relay has taken.

use super::SessionTable;
use super::media::{configure_call, release_call};
use super::model::{Call, Effect, SessionError};
use crate::config::InterfaceConfig;
use crate::ports::PortPool;

impl SessionTable {
    /// Makes a standby session this relay's own: its legs move onto this
    /// table's interfaces (an address not configured here — the dead
    /// relay's — is added as an interface of its own), its port pairs are
    /// reserved, its idle clock restarts at `now_ms`. Stream keys and worker
    /// must already be this relay's. Returns the effects that activate its
    /// streams; the call is marked changed (written back as this relay's).
    pub fn adopt(
        &mut self,
        mut call: Call,
        interfaces: &[InterfaceConfig],
        now_ms: u64,
    ) -> Result<Vec<Effect>, SessionError> {
        if self.calls.contains_key(&call.call_id) {
            return Err(SessionError::Exists);
        }
        for leg in &mut call.legs {
            let Some(ifc) = interfaces.get(leg.interface) else {
                continue;
            };
            let index = self.interface_for_address(ifc);
            leg.interface = index;
            for m in &leg.media {
                if let (Some(s), Some(pool)) = (&m.rtp, self.pools.get_mut(index)) {
                    pool.reserve(s.local_port);
                }
            }
        }
        call.last_signal_ms = now_ms;
        let mut effects = Vec::new();
        configure_call(&call, &mut effects, false);
        self.changed.push(call.call_id.clone());
        self.totals.adopted += 1;
        self.calls.insert(call.call_id.clone(), call);
        Ok(effects)
    }

    /// The index of the interface bound to `ifc.address`, added (with a port
    /// pool over this relay's range) if there is none.
    fn interface_for_address(&mut self, ifc: &InterfaceConfig) -> usize {
        if let Some(i) = self
            .config
            .interfaces
            .iter()
            .position(|c| c.address == ifc.address)
        {
            return i;
        }
        tracing::info!(name = %ifc.name, address = %ifc.address, "serving a taken-over interface");
        self.config.interfaces.push(ifc.clone());
        let (min, max, quarantine_ms) = self.port_range;
        self.pools.push(PortPool::new(min, max, quarantine_ms));
        self.config.interfaces.len() - 1
    }

    /// Drops one of this relay's sessions without ending it (another relay
    /// has taken it over): its ports are released and its streams closed,
    /// nothing is written to Redis. None if unknown.
    pub fn demote(&mut self, call_id: &str, now_ms: u64) -> Option<Vec<Effect>> {
        let call = self.calls.remove(call_id)?;
        let mut effects = Vec::new();
        release_call(&call, &mut self.pools, now_ms, &mut effects);
        tracing::warn!(call_id, "session taken over by another relay, dropped here");
        Some(effects)
    }
}
