//! The HTTP face: routes and the state they read, nothing else.
//!
//! * [`upgrade`]: `GET /ws/{market,foreign,index,alerts,board}`, the channels' WebSocket doors
//!   (the handshake checked by [`crate::broadcast::handshake`], then the socket handed to its
//!   own task in [`crate::broadcast::connection`]).
//! * [`rest`]: `GET /api/market/snapshot`, `/api/market/board`, `/api/market/foreign-detail`,
//!   `/api/market/volume-stats`, `/api/market/basis-trend?minutes=N`, `/api/market/alerts`,
//!   `/api/vn30-components`, `/api/schema`, `/api/schema/board`: the routes the original
//!   frontend polls, with the original's shapes, and the board's; CORS from `CORS_ORIGINS`.
//!   `/api/history/...` is [`crate::history::api`].
//! * [`ingest`]: `POST /api/ingest` and `GET /ws/ingest` (when `INGEST_TOKEN` is set).
//! * [`operations`]: `GET /health`, `GET /metrics` (Prometheus text), `GET /` (the dashboard)
//!   and its assets.
//! * [`guard`]: the token and origin checks every door shares; [`view`]: the market as the
//!   routes read it, local or remote, so no handler branches on the node's role.
//! * [`write_timeout`]: the IO every HTTP connection is served on, which cuts a response the
//!   client does not read within `HTTP_WRITE_TIMEOUT` (and is taken off again at an upgrade).
//!
//! Handlers are small: state comes in through [`AppState`], the work happens in the market,
//! broadcast and feed modules.

pub mod denials;
pub mod guard;
pub mod ingest;
pub mod operations;
pub mod rest;
pub mod upgrade;
pub mod view;
pub mod write_timeout;

use std::sync::Arc;
use std::time::Instant;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::base::shutdown::Phase;
use crate::base::time::Clock;
use crate::broadcast::admission::Admission;
use crate::broadcast::channels::Channels;
use crate::feed::ingest::Ingest;
use crate::feed::recorder::Recorder;
use crate::feed::FeedStats;
use crate::market::SharedMarket;

pub use denials::Denials;
pub use guard::{OriginPolicy, Tokens};
pub use view::MarketView;

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Every channel's hub, by name (`market`, `foreign`, `index`, `alerts`, `board`); the
    /// first is `/ws/market`'s.
    pub channels: Channels,
    /// The phase of shutdown that client connections belong to (the ingest bridges' too).
    pub clients: Phase,
    /// The market as the REST routes read it (this node's processor, or the producer's state).
    pub view: Arc<dyn MarketView>,
    /// This node's own processor, for `/metrics` (none on an edge).
    pub market: Option<SharedMarket>,
    /// The history database, when history is on.
    pub history: Option<Arc<crate::history::History>>,
    pub clock: Arc<dyn Clock>,
    pub feed: Arc<FeedStats>,
    /// The ingest endpoints, when `INGEST_TOKEN` is set.
    pub ingest: Option<Arc<Ingest>>,
    pub recorder: Option<Arc<Recorder>>,
    /// The tokens the doors take (`WS_AUTH_TOKEN`, `ADMIN_TOKEN`, `PUBLIC_REST`).
    pub tokens: Arc<Tokens>,
    /// Refused tokens, for the warning logged at most once a second per address.
    pub denials: Arc<Denials>,
    /// This node's role (`standalone`, `producer`, `edge`), for `/health`.
    pub role: &'static str,
    /// Who may open a WebSocket, and how many.
    pub admission: Arc<Admission>,
    /// The checkpoint writer's record, when checkpoints are on.
    pub checkpoint: Option<Arc<crate::checkpoint::CheckpointStatus>>,
    /// Which browser origins may open a WebSocket.
    pub origins: Arc<OriginPolicy>,
    /// The Redis bridge's state (`ROLE=producer` or `edge`).
    pub broker: Option<Arc<crate::bridge::BrokerStatus>>,
    pub started: Instant,
}

/// Builds the router.
pub fn router(state: AppState, cors_origins: &[String]) -> Router {
    // `*` means any origin (as the README says); tower-http refuses `*` inside a list.
    let allow_origin = if cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    // The headers a page asks to send are mirrored back: a wildcard would not cover
    // `Authorization`, which browsers never send under `*`.
    let cors = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request());
    let api = Router::new()
        .route("/api/market/snapshot", get(rest::snapshot))
        .route("/api/market/board", get(rest::board))
        .route("/api/market/foreign-detail", get(rest::foreign_detail))
        .route("/api/market/volume-stats", get(rest::volume_stats))
        .route("/api/market/basis-trend", get(rest::basis_trend))
        .route("/api/market/alerts", get(rest::alerts))
        .route("/api/vn30-components", get(rest::vn30_components))
        .route("/api/schema", get(rest::schema))
        .route("/api/schema/board", get(rest::board_schema))
        .nest_service(
            "/api/history",
            crate::history::api::router(state.history.clone()),
        )
        // The token first, CORS around it: a refusal carries CORS headers, a preflight is
        // answered without a token.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::data_routes,
        ))
        .layer(cors);
    let mut router = Router::new();
    for (name, _) in state.channels.iter() {
        router = router.route(
            &format!("/ws/{name}"),
            get(move |app, peer, q, req| upgrade::channel(name, app, peer, q, req)),
        );
    }
    router
        .route("/ws/ingest", get(ingest::ws_ingest))
        .route("/api/ingest", post(ingest::ingest_post))
        .route("/health", get(operations::health))
        .route("/metrics", get(operations::metrics))
        .route("/", get(operations::dashboard))
        .route("/assets/{*path}", get(operations::asset))
        .route("/favicon.svg", get(operations::favicon))
        .route("/favicon.ico", get(operations::favicon))
        .merge(api)
        .with_state(state)
}

fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn plain(status: StatusCode, text: &str) -> Response {
    (status, format!("{text}\n")).into_response()
}
