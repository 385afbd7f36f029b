//! The node's role as a type: standalone, producer or edge, decided once from the settings.
//!
//! What differs between the roles sits here and in the two market views (`local`, `remote`),
//! so the wiring and the REST handlers do not branch on a flag:
//!
//! * a **standalone** node runs the feed and the processor and serves its own clients;
//! * a **producer** does the same and also hands every channel's ticks to Redis (publishing
//!   while it holds the lease, a warm standby otherwise);
//! * an **edge** runs no feed and no processor: its ticks come from Redis, byte for byte, and
//!   its REST routes answer from the producer's state there.

use std::sync::Arc;

use crate::base::redact_url;
use crate::bridge::{self, producer, BridgeSettings, BrokerStatus, Role};

/// A Redis connection's settings, client and status, for a producer or an edge.
#[derive(Clone)]
pub struct Broker {
    pub settings: BridgeSettings,
    pub client: redis::Client,
    pub status: Arc<BrokerStatus>,
}

/// What this node is in its deployment.
#[derive(Clone)]
pub enum NodeRole {
    Standalone,
    Producer(Broker),
    Edge(Broker),
}

impl NodeRole {
    /// The role `role` names, with its broker (reached with `settings`) when it has one.
    pub fn new(role: Role, settings: BridgeSettings) -> Result<NodeRole, bridge::BridgeError> {
        if role == Role::Standalone {
            return Ok(NodeRole::Standalone);
        }
        let client = bridge::client(&settings)?;
        let status = Arc::new(BrokerStatus::new(role, producer::node_name()));
        tracing::info!(
            role = ?role,
            redis = %redact_url(&settings.url),
            prefix = %settings.prefix,
            "scale-out through Redis"
        );
        let broker = Broker {
            settings,
            client,
            status,
        };
        Ok(match role {
            Role::Edge => NodeRole::Edge(broker),
            _ => NodeRole::Producer(broker),
        })
    }

    /// `standalone`, `producer` or `edge`, as `/health` says it.
    pub fn name(&self) -> &'static str {
        match self {
            NodeRole::Standalone => "standalone",
            NodeRole::Producer(_) => "producer",
            NodeRole::Edge(_) => "edge",
        }
    }

    /// True for an edge: no feed, no processor of its own.
    pub fn is_edge(&self) -> bool {
        matches!(self, NodeRole::Edge(_))
    }

    /// The broker's status, for `/health` and `/metrics` (none when standalone).
    pub fn broker_status(&self) -> Option<Arc<BrokerStatus>> {
        match self {
            NodeRole::Standalone => None,
            NodeRole::Producer(b) | NodeRole::Edge(b) => Some(b.status.clone()),
        }
    }
}
