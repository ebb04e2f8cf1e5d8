//! Whose API key a tool call uses. Over stdio the server acts for one user: the key the CLI was
//! configured with. Over HTTP every request carries its own bearer key, so each call is made
//! with the key of the client that sent it, never with a key of the server's.

use std::sync::Arc;

use ::http::header::AUTHORIZATION;
use ::http::request::Parts;
use rmcp::model::Extensions;
use tdb_client::Client;

/// Adds what else an HTTP request's call should carry (the peer address, for rate limits).
pub type Prepare = Arc<dyn Fn(&Parts, Client) -> Client + Send + Sync>;

#[derive(Clone)]
pub enum Caller {
    /// Every call uses this client and its key.
    Fixed(Client),
    /// Every call uses `base` with the bearer key of the HTTP request that carried the call,
    /// after `prepare` has added what the request should pass on.
    PerRequest { base: Client, prepare: Prepare },
}

/// Why a call has no client to make it with; answered as a tool error.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("this call came without its HTTP request; send it to /mcp")]
    NotHttp,
    #[error("Authorization header must be 'Bearer <api_key>'")]
    NoBearer,
}

impl Caller {
    pub fn per_request(
        base: Client,
        prepare: impl Fn(&Parts, Client) -> Client + Send + Sync + 'static,
    ) -> Self {
        Self::PerRequest {
            base,
            prepare: Arc::new(prepare),
        }
    }

    /// The client for one call; `extensions` are the MCP request's, which hold the HTTP
    /// request's parts when the call came over HTTP.
    pub(crate) fn client(&self, extensions: &Extensions) -> Result<Client, CallerError> {
        match self {
            Self::Fixed(client) => Ok(client.clone()),
            Self::PerRequest { base, prepare } => {
                let parts = extensions.get::<Parts>().ok_or(CallerError::NotHttp)?;
                let key = bearer(parts).ok_or(CallerError::NoBearer)?;
                Ok(prepare(parts, base.with_key(key)))
            }
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(auth: Option<&str>) -> Parts {
        let mut builder = ::http::Request::builder().uri("/mcp");
        if let Some(value) = auth {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder.body(()).expect("request").into_parts().0
    }

    #[test]
    fn the_bearer_key_comes_from_the_request() {
        assert_eq!(bearer(&parts(Some("Bearer tdb_abc"))), Some("tdb_abc"));
        assert_eq!(bearer(&parts(Some("bearer  tdb_abc "))), Some("tdb_abc"));
        assert_eq!(bearer(&parts(Some("Basic dXNlcg=="))), None);
        assert_eq!(bearer(&parts(Some("Bearer "))), None);
        assert_eq!(bearer(&parts(None)), None);
    }

    #[test]
    fn a_per_request_caller_needs_the_http_parts() {
        let caller = Caller::per_request(Client::new("http://127.0.0.1:1", None), |_, c| c);
        let err = caller.client(&Extensions::new()).err();
        assert!(matches!(err, Some(CallerError::NotHttp)));
        let mut ext = Extensions::new();
        ext.insert(parts(None));
        assert!(matches!(caller.client(&ext), Err(CallerError::NoBearer)));
        let mut ext = Extensions::new();
        ext.insert(parts(Some("Bearer k")));
        assert!(caller.client(&ext).is_ok());
    }
}
