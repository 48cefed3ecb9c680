//! The node's JSON admin API (`/api/v1/...`), served by the admin listener.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use voxline_location::{Binding, LocationStore, Timestamp};
use voxline_proxy::calls::CallControl;
use voxline_relay::RelayHandle;
use voxline_server::Core;

/// What the API reads from.
pub struct ApiState {
    pub name: String,
    pub roles: Vec<String>,
    pub started: Instant,
    pub core: Option<Arc<Core>>,
    pub location: Option<LocationStore>,
    pub relay: Option<Arc<RelayHandle>>,
    pub calls: Option<Arc<CallControl>>,
    /// The relay set the proxy anchors calls on (`[media]`).
    pub media: Option<Arc<voxline_media::MediaControl>>,
    /// The edge role's dispatcher.
    pub edge: Option<voxline_edge::Edge>,
    /// `[partitions]` and this node's name.
    pub partitions: Option<(voxline_partition::PartitionMap, String)>,
}

pub fn routes(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/dispatcher", get(dispatcher))
        .route("/api/v1/registrations", get(registrations))
        .route("/api/v1/relays", get(relays))
        .route("/api/v1/calls", get(calls))
        .route("/api/v1/drain", post(drain))
        .with_state(state)
}

async fn stats(State(s): State<Arc<ApiState>>) -> Response {
    let now = Timestamp::now();
    let location = match &s.location {
        Some(l) => match l.count(now).await {
            Ok(c) => json!({ "aors": c.aors, "bindings": c.bindings }),
            Err(e) => json!({ "error": e.to_string() }),
        },
        None => Value::Null,
    };
    let relay = s.relay.as_ref().map(|r| relay_json(r));
    let dialogs = s.calls.as_ref().map(|c| {
        let (early, confirmed) = c.dialogs().counts();
        json!({ "early": early, "confirmed": confirmed })
    });
    axum::Json(json!({
        "node": s.name,
        "dialogs": dialogs,
        "roles": s.roles,
        "uptime_secs": s.started.elapsed().as_secs(),
        "draining": s.core.as_ref().map(|c| c.is_draining()),
        "transactions": s.core.as_ref().map(|c| c.transaction_count()),
        "location": location,
        "relay": relay,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct RegQuery {
    aor: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn registrations(State(s): State<Arc<ApiState>>, Query(q): Query<RegQuery>) -> Response {
    let Some(location) = &s.location else {
        return (StatusCode::NOT_FOUND, "this node keeps no user location\n").into_response();
    };
    let now = Timestamp::now();
    match q.aor {
        Some(aor) => match location.lookup(&aor, now).await {
            Ok(bindings) => axum::Json(json!({
                "aor": aor,
                "bindings": bindings.iter().map(|b| binding_json(b, now)).collect::<Vec<_>>(),
            }))
            .into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        },
        None => match location
            .list(q.cursor.as_deref(), q.limit.unwrap_or(100).min(1000), now)
            .await
        {
            Ok(page) => axum::Json(json!({
                "registrations": page.entries.iter().map(|(aor, bs)| json!({
                    "aor": aor,
                    "bindings": bs.iter().map(|b| binding_json(b, now)).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "next": page.next,
            }))
            .into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        },
    }
}

async fn calls(State(s): State<Arc<ApiState>>) -> Response {
    match &s.calls {
        Some(c) => {
            let (early, confirmed) = c.dialogs().counts();
            axum::Json(json!({ "early": early, "confirmed": confirmed, "calls": c.list() }))
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "this node routes no calls\n").into_response(),
    }
}

#[derive(Deserialize, Default)]
struct DrainBody {
    #[serde(default = "yes")]
    on: bool,
}

fn yes() -> bool {
    true
}

async fn drain(State(s): State<Arc<ApiState>>, body: Option<axum::Json<DrainBody>>) -> Response {
    let on = body.is_none_or(|b| b.on);
    match &s.core {
        Some(core) => {
            core.set_draining(on);
            axum::Json(json!({ "draining": on })).into_response()
        }
        None => (StatusCode::NOT_FOUND, "this node has no SIP role\n").into_response(),
    }
}

/// `local`: this node's own relay (the relay role); `set`: the relays the
/// proxy anchors calls on, with their state (the proxy role, `[media]`).
async fn relays(State(s): State<Arc<ApiState>>) -> Response {
    let mut body = serde_json::Map::new();
    if let Some(r) = &s.relay {
        body.insert("local".into(), relay_json(r));
    }
    if let Some(m) = &s.media {
        body.insert("set".into(), json!(m.relays()));
    }
    axum::Json(Value::Object(body)).into_response()
}

fn relay_json(r: &RelayHandle) -> Value {
    let st = r.stats();
    json!({
        "ng": r.ng_udp_addr().to_string(),
        "sessions": st.sessions,
        "streams": st.streams,
        "packets": st.packets,
        "bytes": st.bytes,
        "forwarded": st.forwarded,
        "errors": st.errors,
        "foreign_sessions": st.foreign_sessions,
        "adopted": st.adopted,
        "redis": st.redis.map(|r| json!({
            "relay_id": r.relay_id,
            "connected": r.connected,
            "keyspace_notifications": r.keyspace_notifications,
            "pending_writes": r.pending_writes,
            "write_errors": r.write_errors,
            "resubscriptions": r.resubscriptions,
            "taken_over": r.taken_over.iter().map(|t| json!({
                "relay": t.relay,
                "trigger": t.trigger,
                "sessions": t.sessions,
            })).collect::<Vec<_>>(),
        })),
    })
}

fn binding_json(b: &Binding, now: Timestamp) -> Value {
    json!({
        "contact": b.contact,
        "expires_in": b.expires_in(now),
        "q": f64::from(b.q) / 1000.0,
        "call_id": b.call_id,
        "cseq": b.cseq,
        "transport": b.source.transport.as_str(),
        "source": b.source.remote.to_string(),
        "local": b.source.local.to_string(),
        "path": b.path,
        "instance": b.instance,
        "reg_id": b.reg_id,
        "user_agent": b.user_agent,
        "nat": b.nat,
    })
}

/// `GET /api/v1/dispatcher`: the edge's sets and destination states, and
/// the partitions this node serves.
async fn dispatcher(State(s): State<Arc<ApiState>>) -> Response {
    let partitions = s.partitions.as_ref().map(|(map, name)| {
        let (primary, backup) = map.partitions_of(name);
        json!({
            "count": map.count(),
            "node": name,
            "primary": primary,
            "backup": backup,
        })
    });
    let edge = s
        .edge
        .as_ref()
        .and_then(|e| serde_json::to_value(e.view()).ok());
    axum::Json(json!({
        "node": s.name,
        "edge": edge,
        "partitions": partitions,
    }))
    .into_response()
}

/// The `[replication]` routes: status, cutting and restoring a link,
/// asking for a full resync.
pub fn replication_routes(replication: Option<Arc<voxline_replication::Replication>>) -> Router {
    Router::new()
        .route("/api/v1/replication", get(replication_status))
        .route("/api/v1/replication/block", post(replication_block))
        .route("/api/v1/replication/resync", post(replication_resync))
        .with_state(replication)
}

type ReplicationState = State<Option<Arc<voxline_replication::Replication>>>;

fn replication_off() -> Response {
    (
        StatusCode::NOT_FOUND,
        "replication is not configured on this node\n",
    )
        .into_response()
}

/// `GET /api/v1/replication`: journal, links (state, queue, lag, counters)
/// and what arrived from each peer.
async fn replication_status(State(r): ReplicationState) -> Response {
    match r {
        Some(r) => axum::Json(r.status()).into_response(),
        None => replication_off(),
    }
}

#[derive(Deserialize)]
struct ReplicationBlock {
    peer: String,
    #[serde(default = "replication_block_default")]
    blocked: bool,
}

fn replication_block_default() -> bool {
    true
}

/// `POST /api/v1/replication/block {"peer": "b", "blocked": true}`: cut
/// (or with `false` restore) the link with a peer site, both ways.
async fn replication_block(
    State(r): ReplicationState,
    axum::Json(body): axum::Json<ReplicationBlock>,
) -> Response {
    let Some(r) = r else {
        return replication_off();
    };
    match r.set_blocked(&body.peer, body.blocked) {
        Ok(()) => axum::Json(json!({ "peer": body.peer, "blocked": body.blocked })).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    }
}

#[derive(Deserialize)]
struct ReplicationPeer {
    peer: String,
}

/// `POST /api/v1/replication/resync {"peer": "b"}`: send everything to a
/// peer site again.
async fn replication_resync(
    State(r): ReplicationState,
    axum::Json(body): axum::Json<ReplicationPeer>,
) -> Response {
    let Some(r) = r else {
        return replication_off();
    };
    match r.resync(&body.peer) {
        Ok(()) => axum::Json(json!({ "peer": body.peer, "resync": true })).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    }
}
