//! Keeps one managed server process running: restarts it with backoff when it dies, stops it in
//! order when asked. Engine-specific knowledge (how to spawn, when it is ready, how to stop it)
//! comes from a [`ManagedProcess`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::ManagedError;
use super::process::StopSignals;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// One kind of managed server process.
pub trait ManagedProcess: Send + Sync + 'static {
    /// For logs: `postgresql (shared)`.
    fn label(&self) -> String;
    /// Starts the process (without waiting for it to serve).
    fn spawn(&self) -> impl Future<Output = Result<Child, ManagedError>> + Send;
    /// Resolves once the process serves clients; fails if it exits or times out first.
    fn wait_ready(
        &self,
        child: &mut Child,
    ) -> impl Future<Output = Result<(), ManagedError>> + Send;
    /// How to stop it: an orderly signal that still ends sessions promptly, then an urgent one.
    fn stop_signals(&self) -> StopSignals;
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long the first start keeps trying a server that exits at once.
const FIRST_START_RETRIES: Duration = Duration::from_secs(30);
/// A process that served this long before dying is restarted without delay growth.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// A running supervisor; dropping it does not stop the process, [`Supervisor::shutdown`] does.
pub struct Supervisor {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// Spawns the process, waits until it is ready, and supervises it from then on.
    pub async fn start<P: ManagedProcess>(process: Arc<P>) -> Result<Self, ManagedError> {
        let child = first_start(process.as_ref()).await?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(supervise(process, child, cancel.clone()));
        Ok(Self { cancel, task })
    }

    /// Stops the process in order and waits for it to exit.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// The first start, tried again for a while when the server gives up at once: the processes of
/// a server that was just stopped (an orphan of a killed tdb) may still be on their way out.
async fn first_start<P: ManagedProcess>(process: &P) -> Result<Child, ManagedError> {
    let deadline = Instant::now() + FIRST_START_RETRIES;
    loop {
        let attempt = Instant::now();
        match spawn_ready(process).await {
            Ok(child) => return Ok(child),
            Err(e) if Instant::now() < deadline && attempt.elapsed() < FIRST_START_RETRIES => {
                tracing::warn!(server = %process.label(), error = %e, "the managed server did not start; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn spawn_ready<P: ManagedProcess>(process: &P) -> Result<Child, ManagedError> {
    let mut child = process.spawn().await?;
    if let Err(e) = process.wait_ready(&mut child).await {
        stop_child(&mut child, process.stop_signals()).await;
        return Err(e);
    }
    Ok(child)
}

/// Signals the child and reaps it; waiting on the child itself (not polling its pid, which a
/// zombie keeps alive) returns as soon as it exits. The urgent signal follows the orderly one
/// after the grace period, and a kill follows both.
async fn stop_child(child: &mut Child, signals: StopSignals) {
    for signal in [signals.orderly, signals.urgent] {
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
        if tokio::time::timeout(signals.grace, child.wait())
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!("managed server still running after {signal}");
    }
    tracing::warn!("killing the managed server");
    let _ = child.kill().await;
}

async fn supervise<P: ManagedProcess>(process: Arc<P>, child: Child, cancel: CancellationToken) {
    let label = process.label();
    let mut current = Some(child);
    let mut started = Instant::now();
    let mut backoff = Duration::from_secs(1);
    loop {
        if let Some(child) = current.as_mut() {
            tokio::select! {
                _ = cancel.cancelled() => {
                    tracing::info!(server = %label, "stopping managed server");
                    stop_child(child, process.stop_signals()).await;
                    return;
                }
                status = child.wait() => {
                    tracing::error!(server = %label, ?status, "managed server exited unexpectedly");
                    current = None;
                    if started.elapsed() >= HEALTHY_RUN {
                        backoff = Duration::from_secs(1);
                    }
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        match spawn_ready(process.as_ref()).await {
            Ok(child) => {
                tracing::info!(server = %label, "managed server restarted");
                current = Some(child);
                started = Instant::now();
            }
            Err(e) => {
                tracing::error!(server = %label, error = %e, "restarting managed server failed");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
