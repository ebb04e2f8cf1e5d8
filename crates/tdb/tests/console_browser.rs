//! The web console in a real browser: `console/flow.mjs` drives Debian's Chromium through
//! Playwright against a real `tdb serve` (sign-up to sign-out, psql through the proxy, a
//! provisioned database and a registered connection with its introspection, CSRF, the
//! cookie's flags, axe-core on every page) and writes screenshots of every page at desktop
//! and phone width to `target/console-screenshots/` (or `$TDB_SCREENSHOTS`).
//! `scripts/test-clients.sh` installs Chromium, playwright-core and axe-core.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn screenshots() -> PathBuf {
    std::env::var_os("TDB_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots")
        })
}

#[tokio::test]
async fn the_console_flow_in_chromium() {
    let node_modules = clients_dir().join("node/node_modules");
    assert!(
        node_modules.join("playwright-core/package.json").exists()
            && node_modules.join("axe-core/package.json").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Chromium, playwright-core and axe-core: run scripts/test-clients.sh"
    );
    // The flow registers the tenant's connection string, which points at tdb's proxy on
    // loopback: registered connections reach private addresses only when this is on.
    let s = start_with_env(&[("TDB_CONNECTIONS_ALLOW_PRIVATE", "true")]).await;
    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/flow.mjs");
    let mut node = std::process::Command::new("node");
    node.arg(&flow)
        .env("TDB_CONSOLE_URL", &s.api_url)
        .env("TDB_NODE_MODULES", &node_modules)
        .env("TDB_SCREENSHOTS", screenshots());
    let out = tokio::task::spawn_blocking(move || run_client(node, "the console's browser flow"))
        .await
        .expect("the flow ran");
    println!("{out}");
    assert!(out.contains("ok "), "{out}");
    drop(s);
}
