//! Tenancy, whatever the protocol: from a routing name and a login to a route that may be
//! served, the tenant's gate, and a slot under its cap on client sessions.

use std::sync::Arc;

use tdb_catalog::routing::Login;
use tdb_core::TenantStatus;
use tdb_core::settings::PoolMode;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::ProxyState;
use crate::gate::Gate;
use crate::refusal::{Reason, Refusal};
use crate::route::Route;

/// A session's place in its tenant: what it reaches, the gate it passes and the token that
/// ends it, and its slot (held for as long as the session lives).
pub struct Tenancy {
    pub route: Arc<Route>,
    /// `None` for a workspace or a provisioned database (no tenant).
    pub gate: Option<Arc<Gate>>,
    /// Cancelled when the tenant is suspended, deleted or its state is otherwise no longer
    /// served.
    pub kill: CancellationToken,
    pub slot: OwnedSemaphorePermit,
}

/// Opens `database` for `login`: the route, the tenant's state, then a slot.
pub async fn enter(proxy: &ProxyState, login: &Login, database: &str) -> Result<Tenancy, Refusal> {
    let (route, gate, kill) = open_route(proxy, login, database).await?;
    let slot = take_slot(&route, proxy).await?;
    Ok(Tenancy {
        route,
        gate,
        kill,
        slot,
    })
}

/// Resolves the route and checks the tenant's state, holding the gate's kill token from before
/// the final check so a suspension that lands in between still ends the session.
async fn open_route(
    proxy: &ProxyState,
    login: &Login,
    database: &str,
) -> Result<(Arc<Route>, Option<Arc<Gate>>, CancellationToken), Refusal> {
    let route = proxy.router.resolve(login, database).await?;
    let Some(tenant_id) = route.tenant_id.clone() else {
        return Ok((route, None, CancellationToken::new()));
    };
    let gate = proxy.gates.get(&tenant_id);
    let kill = gate.kill_token();
    // A new session waits out a hold (a cutover), then goes wherever the route points after it;
    // a shutdown meanwhile is said to it as to every session.
    tokio::select! {
        biased;
        _ = proxy.shutdown.cancelled() => return Err(Refusal::shutting_down()),
        _ = gate.pass() => {}
    }
    let route = proxy.router.resolve(login, database).await?;
    match route.status {
        status if status.serves() => Ok((route, Some(gate), kill)),
        TenantStatus::Deleted => Err(Refusal::new(
            Reason::NoSuchDatabase,
            format!(
                "{} is deleted (it is in the trash; restore it to connect)",
                route.describe()
            ),
        )),
        status => Err(Refusal::new(
            Reason::Unavailable,
            format!("{} is {status}", route.describe()),
        )),
    }
}

/// A slot under the route's cap on client sessions, waiting up to `connect_wait` for one.
async fn take_slot(route: &Route, proxy: &ProxyState) -> Result<OwnedSemaphorePermit, Refusal> {
    let wait = tokio::time::timeout(
        proxy.config.connect_wait,
        route.slots.clone().acquire_owned(),
    );
    tokio::select! {
        biased;
        _ = proxy.shutdown.cancelled() => Err(Refusal::shutting_down()),
        got = wait => match got {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refusal::new(
                Reason::TooMany,
                match route.settings.pool_mode {
                    PoolMode::Session => format!(
                        "too many connections for {} (max_connections is {})",
                        route.describe(),
                        route.settings.max_connections
                    ),
                    PoolMode::Transaction => format!(
                        "too many connections for {} (max_client_connections is {})",
                        route.describe(),
                        route.settings.max_client_connections
                    ),
                },
            )),
        },
    }
}
