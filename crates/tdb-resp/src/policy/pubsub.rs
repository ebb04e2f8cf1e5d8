//! Pub/sub: channels share the tenant's prefix, patterns are anchored in it, keyspace
//! notification channels (which redis-server does not filter by ACL) are refused, and the
//! messages and confirmations the server pushes have the prefix taken off again.

use bytes::Bytes;

use super::reply::ReplyRewrite;
use super::rules::{forward, refuse};
use super::{Decision, Session};
use crate::frame::Frame;
use crate::prefix::Prefix;

/// Channels redis-server publishes keyspace events on, for every key of the server.
const NOTIFICATIONS: [&[u8]; 2] = [b"__keyspace@", b"__keyevent@"];

/// What RESP2's subscribed mode lets through.
pub(super) fn allowed_when_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe"
            | "psubscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "punsubscribe"
            | "sunsubscribe"
            | "ping"
            | "quit"
    )
}

/// The pub/sub rules; `None` when `name` is not a pub/sub command.
pub(super) fn decide(
    name: &str,
    args: &[Bytes],
    prefix: &Prefix,
    session: &mut Session,
) -> Option<Decision> {
    let decision = match name {
        "subscribe" | "ssubscribe" | "psubscribe" => match notifications(&args[1..]) {
            Some(refused) => refused,
            None => {
                if !session.resp3 {
                    session.subscribed = true;
                }
                subscription(name, args, prefix)
            }
        },
        "unsubscribe" | "sunsubscribe" | "punsubscribe" => subscription(name, args, prefix),
        "publish" | "spublish" => match args {
            [command, channel, message] => forward(
                vec![command.clone(), prefix.key(channel), message.clone()],
                ReplyRewrite::Keep,
                0,
            ),
            _ => return None,
        },
        "pubsub|channels" | "pubsub|shardchannels" => {
            let pattern = args.get(2).map_or(&b"*"[..], |p| &p[..]);
            let mut out = args[..2].to_vec();
            out.push(prefix.pattern(pattern));
            forward(out, ReplyRewrite::KeyList, 0)
        }
        "pubsub|numsub" | "pubsub|shardnumsub" => {
            let mut out = args[..2].to_vec();
            out.extend(args[2..].iter().map(|c| prefix.key(c)));
            forward(out, ReplyRewrite::NumSub, 0)
        }
        "pubsub|numpat" => refuse("pubsub|numpat"),
        _ => return None,
    };
    Some(decision)
}

fn notifications(channels: &[Bytes]) -> Option<Decision> {
    channels
        .iter()
        .any(|c| NOTIFICATIONS.iter().any(|n| c.starts_with(n)))
        .then(|| {
            Decision::Refuse(
                "ERR keyspace notifications are not available through tdb (they describe every \
                 tenant's keys)"
                    .into(),
            )
        })
}

/// A (un)subscription with its channels prefixed or patterns anchored.
fn subscription(name: &str, args: &[Bytes], prefix: &Prefix) -> Decision {
    let patterns = name.starts_with('p');
    let mut out = vec![args[0].clone()];
    out.extend(args[1..].iter().map(|c| {
        if patterns {
            prefix.pattern(c)
        } else {
            prefix.key(c)
        }
    }));
    let confirmations = args.len().saturating_sub(1).max(1);
    forward(out, ReplyRewrite::Subscription { confirmations }, 0)
}

/// A pub/sub frame from the server (a RESP3 push, or a RESP2 array in subscribed mode) with
/// the prefix taken off its channel and pattern; `None` when it names something outside the
/// prefix (never sent to the client). Other frames (RESP2's `pong` while subscribed) pass.
pub fn rewrite_pubsub(frame: Frame, prefix: &Prefix) -> Option<Frame> {
    let (items, push) = match frame {
        Frame::Push(items) => (items, true),
        Frame::Array(items) => (items, false),
        other => return Some(other),
    };
    let kind = items
        .first()
        .and_then(Frame::as_bytes)
        .map(|k| k.to_ascii_lowercase())
        .unwrap_or_default();
    // Which elements are channels (stripped) and which are patterns (un-anchored).
    let (channels, patterns): (&[usize], &[usize]) = match &kind[..] {
        b"message" | b"smessage" | b"subscribe" | b"ssubscribe" | b"unsubscribe"
        | b"sunsubscribe" => (&[1], &[]),
        b"pmessage" => (&[2], &[1]),
        b"psubscribe" | b"punsubscribe" => (&[], &[1]),
        // A push of any other kind (tracking invalidations) is not the tenant's.
        _ if push => return None,
        _ => return Some(Frame::Array(items)),
    };
    let mut items = items;
    for &at in channels {
        items[at] = strip_name(items.get(at)?, |b| prefix.strip(b))?;
    }
    for &at in patterns {
        items[at] = strip_name(items.get(at)?, |b| prefix.strip_pattern(b))?;
    }
    Some(if push {
        Frame::Push(items)
    } else {
        Frame::Array(items)
    })
}

/// A name frame with `strip` applied; a null (UNSUBSCRIBE with nothing subscribed) passes.
fn strip_name(frame: &Frame, strip: impl Fn(&Bytes) -> Option<Bytes>) -> Option<Frame> {
    match frame {
        Frame::Bulk(b) => strip(b).map(Frame::Bulk),
        Frame::Simple(b) => strip(b).map(Frame::Simple),
        Frame::Null | Frame::NullBulk => Some(frame.clone()),
        _ => None,
    }
}

/// Whether a RESP2 frame in subscribed mode ends it: an unsubscribe confirmation counting no
/// subscriptions left.
pub fn leaves_subscribed_mode(frame: &Frame) -> bool {
    let Some(items) = frame.as_items() else {
        return false;
    };
    let kind = items.first().and_then(Frame::as_bytes);
    let unsubscribe = kind.is_some_and(|k| {
        [&b"unsubscribe"[..], b"punsubscribe", b"sunsubscribe"]
            .iter()
            .any(|u| k.eq_ignore_ascii_case(u))
    });
    unsubscribe && items.get(2).and_then(Frame::as_integer) == Some(0)
}
