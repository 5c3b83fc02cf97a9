//! The HTTP surface: provider routes, the `/_fake/*` control endpoints, and the middleware
//! that records every provider request before it is answered.

use std::sync::Arc;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::providers::{self, anthropic, cohere, gemini, openai, AppState, Provider};
use crate::stream::WritePlan;

/// Largest request body accepted (and recorded).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

type Shared = Arc<AppState>;

/// Model name used in OpenAI answers when the request names none.
const OPENAI_MODEL: &str = "gpt-fake";

pub fn router(state: Shared) -> Router {
    let control = Router::new()
        .route("/_fake/health", get(|| async { "ok" }))
        .route("/_fake/requests", get(list_requests).delete(clear_requests))
        .route(
            "/_fake/reply",
            get(get_reply).put(put_reply).delete(delete_reply),
        );
    let providers = Router::new()
        // OpenAI, and the Azure OpenAI v1 paths that mirror it.
        .route("/v1/chat/completions", post(openai_chat))
        .route("/openai/v1/chat/completions", post(openai_chat))
        .route("/v1/completions", post(openai_completions))
        .route("/v1/responses", post(openai_responses))
        .route("/openai/v1/responses", post(openai_responses))
        .route("/openai/responses", post(openai_responses))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/openai/v1/embeddings", post(openai_embeddings))
        // Azure OpenAI deployment paths (`?api-version=` is accepted and ignored).
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(azure_chat),
        )
        .route(
            "/openai/deployments/{deployment}/completions",
            post(azure_completions),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(azure_embeddings),
        )
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1beta/models/{model_method}", post(gemini_generate))
        .route("/v1/models/{model_method}", post(gemini_generate))
        .route("/v2/chat", post(cohere_chat))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), record));
    control
        .merge(providers)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Records the request (method, path, query, headers, body), then passes it on intact.
async fn record(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("fake provider: cannot read request body: {e}");
            return (StatusCode::PAYLOAD_TOO_LARGE, msg).into_response();
        }
    };
    state.recorder.push(&parts, &bytes);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn list_requests(State(state): State<Shared>) -> Response {
    Json(state.recorder.list()).into_response()
}

async fn clear_requests(State(state): State<Shared>) -> StatusCode {
    state.recorder.clear();
    StatusCode::NO_CONTENT
}

async fn get_reply(State(state): State<Shared>) -> Response {
    match state.stored_reply() {
        Some(reply) => reply.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn put_reply(State(state): State<Shared>, body: Bytes) -> Response {
    match String::from_utf8(body.to_vec()) {
        Ok(reply) => {
            state.set_stored_reply(Some(reply));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(_) => (StatusCode::BAD_REQUEST, "reply must be UTF-8 text").into_response(),
    }
}

async fn delete_reply(State(state): State<Shared>) -> StatusCode {
    state.set_stored_reply(None);
    StatusCode::NO_CONTENT
}

async fn not_found(req: Request) -> Response {
    let msg = format!(
        "fake provider: no route for {} {}",
        req.method(),
        req.uri().path()
    );
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": {"message": msg, "type": "not_found"}})),
    )
        .into_response()
}

async fn openai_chat(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> Response {
    providers::handle(&s, Provider::OpenAi, &h, &body, |c| {
        openai::chat(c, OPENAI_MODEL)
    })
    .await
}

async fn openai_completions(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> Response {
    providers::handle(&s, Provider::OpenAi, &h, &body, |c| {
        openai::completions(c, OPENAI_MODEL)
    })
    .await
}

async fn openai_responses(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> Response {
    providers::handle(&s, Provider::OpenAi, &h, &body, |c| {
        openai::responses(c, OPENAI_MODEL)
    })
    .await
}

async fn openai_embeddings(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> Response {
    providers::handle(&s, Provider::OpenAi, &h, &body, |c| {
        openai::embeddings(c, "text-embedding-fake")
    })
    .await
}

async fn azure_chat(
    State(s): State<Shared>,
    Path(deployment): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    providers::handle(&s, Provider::OpenAi, &h, &body, |c| {
        openai::chat(c, &deployment)
    })
    .await
}

async fn azure_completions(
    State(s): State<Shared>,
    Path(deployment): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    providers::handle(&s, Provider::OpenAi, &h, &body, |c| {
        openai::completions(c, &deployment)
    })
    .await
}

async fn azure_embeddings(
    State(s): State<Shared>,
    Path(deployment): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    providers::handle(&s, Provider::OpenAi, &h, &body, |c| {
        openai::embeddings(c, &deployment)
    })
    .await
}

async fn anthropic_messages(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> Response {
    providers::handle(&s, Provider::Anthropic, &h, &body, anthropic::messages).await
}

async fn gemini_generate(
    State(s): State<Shared>,
    Path(model_method): Path<String>,
    RawQuery(query): RawQuery,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let alt_sse = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .any(|pair| pair == "alt=sse");
    let Some((model, method)) = gemini::parse_model_method(&model_method, alt_sse) else {
        let msg = format!("fake provider: unknown Gemini method in {model_method:?}");
        return Provider::Gemini.error(StatusCode::NOT_FOUND, &msg, WritePlan::default());
    };
    providers::handle(&s, Provider::Gemini, &h, &body, |c| {
        gemini::generate(c, model, method)
    })
    .await
}

async fn cohere_chat(State(s): State<Shared>, h: HeaderMap, body: Bytes) -> Response {
    providers::handle(&s, Provider::Cohere, &h, &body, cohere::chat).await
}
