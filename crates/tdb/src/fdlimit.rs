//! The process's file-descriptor limit: raised at start from its soft value to the hard one
//! where the system allows, and the share of it the API's connections may take, so that idle
//! clients can never use up the descriptors the catalog pools, the managed servers, backups and
//! proxy sessions need.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The limit after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    pub soft: u64,
    pub hard: u64,
    /// The soft limit before it was raised, when it was.
    pub raised_from: Option<u64>,
}

/// The kernel's ceiling on a process's descriptors when the hard limit is "unlimited".
const NR_OPEN: &str = "/proc/sys/fs/nr_open";

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (or the kernel's ceiling when that is
/// unlimited). A refusal leaves the limit as it was.
pub fn raise() -> std::io::Result<FileLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let ceiling = std::fs::read_to_string(NR_OPEN)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let target = hard.min(ceiling);
    if target <= soft {
        return Ok(FileLimit {
            soft,
            hard,
            raised_from: None,
        });
    }
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => Ok(FileLimit {
            soft: target,
            hard,
            raised_from: Some(soft),
        }),
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the file limit");
            Ok(FileLimit {
                soft,
                hard,
                raised_from: None,
            })
        }
    }
}

/// The most API connections open at once under a soft file limit of `soft`: what is left
/// after a reserve of half the limit, and at least 512 descriptors, for everything else (proxy
/// sessions take two each); never fewer than 16.
pub fn api_connection_cap(soft: u64) -> usize {
    let reserve = (soft / 2).max(512);
    usize::try_from(soft.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_leaves_a_reserve() {
        assert_eq!(api_connection_cap(256), 16);
        assert_eq!(api_connection_cap(1024), 512);
        assert_eq!(api_connection_cap(4096), 2048);
        assert_eq!(api_connection_cap(1 << 20), 1 << 19);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        let limit = raise().expect("raise");
        assert!(limit.soft >= soft && limit.soft <= hard.max(soft));
        assert_eq!(limit.hard, hard);
    }
}
