//! Who is online, as the registry sees it: users, a user's sessions, the
//! live nodes.

use std::collections::BTreeMap;

use serde::Serialize;
use warp::Reply;

use super::errors::ApiError;
use super::{ApiServices, user_name};
use crate::transport::Response;

/// One live session of a user, as `GET /api/v1/users/{user}/sessions`
/// lists it.
#[derive(Debug, Serialize)]
struct SessionView {
    session: String,
    node: String,
    /// Milliseconds since the Unix epoch.
    connected_at: u64,
}

/// `GET /api/v1/users/{user}/sessions`: the user's live sessions, with
/// node and connect time.
pub async fn user_sessions(user: String, services: &ApiServices) -> Result<Response, ApiError> {
    user_name(&user)?;
    let sessions = services
        .registry
        .sessions_of(&user)
        .await
        .map_err(ApiError::unavailable)?;
    let view: Vec<SessionView> = sessions
        .into_iter()
        .map(|record| SessionView {
            session: record.session.to_string(),
            node: record.node,
            connected_at: record.connected_at,
        })
        .collect();
    Ok(warp::reply::json(&serde_json::json!({ "user": user, "sessions": view })).into_response())
}

/// `GET /api/v1/users`: every user with a live session, and how many.
pub async fn online_users(services: &ApiServices) -> Result<Response, ApiError> {
    let sessions = services
        .registry
        .all_sessions()
        .await
        .map_err(ApiError::unavailable)?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for record in sessions {
        *counts.entry(record.user).or_default() += 1;
    }
    let users: Vec<serde_json::Value> = counts
        .into_iter()
        .map(|(user, sessions)| serde_json::json!({ "user": user, "sessions": sessions }))
        .collect();
    Ok(warp::reply::json(&serde_json::json!({ "users": users })).into_response())
}

/// `GET /api/v1/nodes`: the live nodes, with address, start time and
/// session count.
pub async fn live_nodes(services: &ApiServices) -> Result<Response, ApiError> {
    let nodes = services
        .registry
        .nodes()
        .await
        .map_err(ApiError::unavailable)?;
    Ok(warp::reply::json(&serde_json::json!({ "nodes": nodes })).into_response())
}
