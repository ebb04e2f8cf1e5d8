//! How a request reaches the API: over the network with reqwest, or in-process through a tower
//! service (the API's own router) for a caller that lives inside `tdb serve`, such as `/mcp`.
//! The in-process path carries request extensions the network adds on its own, chiefly the
//! caller's peer address, so the API's per-address limits count the real client.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tower::{BoxError, ServiceExt};

use crate::ClientError;

/// The response body of an in-process service, whatever body type it answered with.
pub type InProcessBody = UnsyncBoxBody<Bytes, BoxError>;

/// An API router (or any service shaped like one), boxed so `Client` stays one type.
pub type InProcessService = tower::util::BoxCloneSyncService<
    http::Request<Full<Bytes>>,
    http::Response<InProcessBody>,
    Infallible,
>;

#[derive(Clone)]
pub(crate) enum Transport {
    Http(reqwest::Client),
    InProcess {
        service: InProcessService,
        /// Copied into every request, as a server's connection layer would add them.
        extensions: http::Extensions,
    },
}

/// One request as the client builds it, before a transport sends it.
pub(crate) struct Outgoing<'a> {
    pub method: Method,
    /// `base + path` for the network; the path alone in-process.
    pub url: String,
    pub path: &'a str,
    pub key: Option<&'a str>,
    pub json: Option<Vec<u8>>,
}

impl Transport {
    pub(crate) fn http() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_default();
        Self::Http(http)
    }

    /// Wraps `service`, mapping its response body into [`InProcessBody`].
    pub(crate) fn in_process<S, B>(service: S) -> Self
    where
        S: tower::Service<
                http::Request<Full<Bytes>>,
                Response = http::Response<B>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let service = service.map_response(|resp: http::Response<B>| {
            resp.map(|body| body.map_err(Into::into).boxed_unsync())
        });
        Self::InProcess {
            service: InProcessService::new(service),
            extensions: http::Extensions::new(),
        }
    }

    /// Sends `out`; returns the status and the body's bytes.
    pub(crate) async fn send(&self, out: Outgoing<'_>) -> Result<(u16, Bytes), ClientError> {
        match self {
            Self::Http(http) => send_http(http, out).await,
            Self::InProcess {
                service,
                extensions,
            } => send_in_process(service.clone(), extensions, out).await,
        }
    }
}

async fn send_http(http: &reqwest::Client, out: Outgoing<'_>) -> Result<(u16, Bytes), ClientError> {
    let web = reqwest::Url::parse(&out.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    let Some(target) = web else {
        let base = out.url.strip_suffix(out.path).unwrap_or(&out.url);
        return Err(ClientError::BadUrl { url: base.into() });
    };
    let mut req = http.request(out.method, target);
    if let Some(key) = out.key {
        req = req.bearer_auth(key);
    }
    if let Some(json) = out.json {
        req = req
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(json);
    }
    let url = out.url;
    let resp = req.send().await.map_err(|e| ClientError::Transport {
        url: url.clone(),
        detail: causes(&e),
    })?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(|e| ClientError::Transport {
        url,
        detail: causes(&e),
    })?;
    Ok((status, body))
}

/// Why a request failed, each cause once: reqwest's own summary ("error sending request for
/// url (…)") repeats what the message already says, and its kind ("builder error") is often
/// repeated by the cause under it, so the causes are given from the first one that differs.
fn causes(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut said: Vec<String> = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        match said.last_mut() {
            // A cause whose words its parent already gave adds nothing.
            Some(last) if last.contains(&text) => {}
            // A parent that says only the start of its cause's words ("builder error").
            Some(last) if text.contains(last.as_str()) => *last = text,
            _ => said.push(text),
        }
        next = cause.source();
    }
    if said.is_empty() {
        said.push(e.to_string());
    }
    said.join(": ")
}

async fn send_in_process(
    service: InProcessService,
    extensions: &http::Extensions,
    out: Outgoing<'_>,
) -> Result<(u16, Bytes), ClientError> {
    let failed = |detail: String| ClientError::InProcess { detail };
    let mut builder = http::Request::builder()
        .method(out.method)
        .uri(out.path)
        .header(http::header::HOST, "localhost");
    if let Some(key) = out.key {
        let value = HeaderValue::try_from(format!("Bearer {key}"))
            .map_err(|_| failed("the API key is not a valid header value".into()))?;
        builder = builder.header(AUTHORIZATION, value);
    }
    let body = match out.json {
        Some(json) => {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Full::new(Bytes::from(json))
        }
        None => Full::new(Bytes::new()),
    };
    let mut req = builder.body(body).map_err(|e| failed(e.to_string()))?;
    req.extensions_mut().extend(extensions.clone());
    let Ok(resp) = service.oneshot(req).await;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(format!("reading the response: {e}")))?
        .to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use serde_json::{Value, json};

    use crate::{Client, ClientError};

    /// Stands for the caller's address a server would add to each request.
    #[derive(Clone)]
    struct Peer(&'static str);

    /// Answers with what it received: the path, the key, the extension and the JSON body.
    async fn echo(
        req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Full<Bytes>>, Infallible> {
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        let auth = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let path = req.uri().path().to_string();
        let body = req.into_body().collect().await?.to_bytes();
        let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, answer) = match path.as_str() {
            "/api/v1/provision" => (
                201,
                json!({ "success": true, "http_status": 201, "code": "created",
                        "data": { "peer": peer, "auth": auth, "sent": sent } }),
            ),
            _ => (
                422,
                json!({ "success": false, "http_status": 422, "code": "bad_request",
                        "detail": [{ "loc": ["body", "name"], "msg": "too long" }] }),
            ),
        };
        let resp = http::Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(answer.to_string())))
            .expect("response");
        Ok(resp)
    }

    #[tokio::test]
    async fn in_process_requests_carry_the_key_the_body_and_extensions() {
        let client = Client::in_process(tower::service_fn(echo), Some("tdb_k".into()))
            .with_extension(Peer("203.0.113.9"));
        // The echo's answer is no provisioned database, so it is read as plain JSON.
        let body = json!({ "name": "staging" });
        let reply = client
            .request::<Value>(
                reqwest::Method::POST,
                "/api/v1/provision",
                Some(&body),
                true,
            )
            .await
            .expect("provision");
        assert_eq!(reply.data["data"]["peer"], "203.0.113.9");
        assert_eq!(reply.data["data"]["auth"], "Bearer tdb_k");
        assert_eq!(reply.data["data"]["sent"], json!({ "name": "staging" }));
        assert_eq!(reply.raw["code"], "created");
    }

    #[tokio::test]
    async fn validation_details_become_the_error_message() {
        let client = Client::in_process(tower::service_fn(echo), Some("tdb_k".into()));
        let err = client
            .get_connection("c1")
            .await
            .expect_err("422 is an error");
        match err {
            ClientError::Api {
                status, message, ..
            } => {
                assert_eq!(status, 422);
                assert_eq!(message, "body.name: too long");
            }
            other => panic!("{other:?}"),
        }
    }
}
