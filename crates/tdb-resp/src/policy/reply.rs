//! Rewriting replies that carry key or channel names: the prefix comes off every name, and a
//! name without the prefix (which the server could only return through a fault elsewhere) is
//! dropped rather than shown.

use super::pubsub::rewrite_pubsub;
use crate::frame::Frame;
use crate::prefix::Prefix;

/// How a forwarded command's reply is rewritten.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyRewrite {
    /// Passed on as it is.
    Keep,
    /// A list of key or channel names (KEYS, PUBSUB CHANNELS).
    KeyList,
    /// SCAN's `[cursor, [names]]`.
    Scan,
    /// `[key, ...]` (blocking pops, LMPOP, ZMPOP); a null passes.
    KeyFirst,
    /// XREAD/XREADGROUP: `[[stream, entries], ...]`, or a map of streams in RESP3.
    Streams,
    /// PUBSUB NUMSUB: `[channel, count, ...]`, or a map in RESP3.
    NumSub,
    /// A (un)subscription: the server confirms each channel with a pub/sub frame of its own
    /// (`confirmations` of them when the client is not in subscribed mode).
    Subscription { confirmations: usize },
    /// EXEC: each element of the array as the command queued at its place.
    Exec(Vec<ReplyRewrite>),
    /// Answer this instead of what the server said (EXEC of a transaction that was
    /// discarded instead).
    Replace(Frame),
    /// A command the proxy added (a TTL rule's EXPIRE): its reply is not the client's, and
    /// its place in EXEC's array is removed.
    Hidden,
}

/// `reply` rewritten for the tenant of `prefix`.
pub fn rewrite(reply: Frame, how: &ReplyRewrite, prefix: &Prefix) -> Frame {
    if reply.is_error() || matches!(how, ReplyRewrite::Keep) {
        return reply;
    }
    if let Frame::Attribute { attributes, frame } = reply {
        return Frame::Attribute {
            attributes,
            frame: Box::new(rewrite(*frame, how, prefix)),
        };
    }
    match how {
        ReplyRewrite::Keep => reply,
        ReplyRewrite::KeyList => names(reply, prefix),
        ReplyRewrite::Scan => map_items(reply, |mut items| {
            if let Some(list) = items.get_mut(1) {
                *list = names(std::mem::replace(list, Frame::Null), prefix);
            }
            items
        }),
        ReplyRewrite::KeyFirst => key_first(reply, prefix),
        ReplyRewrite::Streams => streams(reply, prefix),
        ReplyRewrite::NumSub => numsub(reply, prefix),
        ReplyRewrite::Subscription { .. } => {
            rewrite_pubsub(reply, prefix).unwrap_or(Frame::NullArray)
        }
        ReplyRewrite::Exec(each) => map_items(reply, |items| {
            items
                .into_iter()
                .enumerate()
                .filter(|(at, _)| each.get(*at) != Some(&ReplyRewrite::Hidden))
                .map(|(at, item)| match each.get(at) {
                    Some(how) => rewrite(item, how, prefix),
                    None => item,
                })
                .collect()
        }),
        ReplyRewrite::Replace(frame) => frame.clone(),
        ReplyRewrite::Hidden => reply,
    }
}

/// Applies `f` to the elements of an array, set or push; other frames pass.
fn map_items(reply: Frame, f: impl FnOnce(Vec<Frame>) -> Vec<Frame>) -> Frame {
    match reply {
        Frame::Array(items) => Frame::Array(f(items)),
        Frame::Set(items) => Frame::Set(f(items)),
        Frame::Push(items) => Frame::Push(f(items)),
        other => other,
    }
}

/// A name with the prefix stripped; `None` for one outside it, or not a name.
fn strip(frame: &Frame, prefix: &Prefix) -> Option<Frame> {
    match frame {
        Frame::Bulk(name) => prefix.strip(name).map(Frame::Bulk),
        Frame::Simple(name) => prefix.strip(name).map(Frame::Simple),
        Frame::Verbatim { format, text } => prefix.strip(text).map(|text| Frame::Verbatim {
            format: *format,
            text,
        }),
        _ => None,
    }
}

fn names(reply: Frame, prefix: &Prefix) -> Frame {
    map_items(reply, |items| {
        items.iter().filter_map(|n| strip(n, prefix)).collect()
    })
}

fn key_first(reply: Frame, prefix: &Prefix) -> Frame {
    let Some(first) = reply.as_items().and_then(|items| items.first()) else {
        return reply;
    };
    match strip(first, prefix) {
        Some(key) => map_items(reply, |mut items| {
            items[0] = key;
            items
        }),
        None => Frame::Null,
    }
}

fn streams(reply: Frame, prefix: &Prefix) -> Frame {
    match reply {
        Frame::Map(pairs) => Frame::Map(
            pairs
                .into_iter()
                .filter_map(|(k, v)| strip(&k, prefix).map(|k| (k, v)))
                .collect(),
        ),
        other => map_items(other, |streams| {
            streams
                .into_iter()
                .filter_map(|stream| {
                    let first = stream.as_items()?.first()?;
                    let name = strip(first, prefix)?;
                    Some(map_items(stream, |mut pair| {
                        pair[0] = name;
                        pair
                    }))
                })
                .collect()
        }),
    }
}

fn numsub(reply: Frame, prefix: &Prefix) -> Frame {
    match reply {
        Frame::Map(pairs) => Frame::Map(
            pairs
                .into_iter()
                .filter_map(|(k, v)| strip(&k, prefix).map(|k| (k, v)))
                .collect(),
        ),
        other => map_items(other, |flat| {
            flat.chunks(2)
                .filter_map(|pair| match pair {
                    [name, count] => Some([strip(name, prefix)?, count.clone()]),
                    _ => None,
                })
                .flatten()
                .collect()
        }),
    }
}
