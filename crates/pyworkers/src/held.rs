//! The arena slots one Python worker holds: slots it asked for to write a
//! message into (until its call names them), and messages lent to it (until
//! it says it no longer maps them). A worker that ends, however it ends,
//! drops all of them with this.
//!
//! The worker's side is `python/volley/_arena.py`. Its requests may carry
//! `"freed": [ids]`; `{"op": "alloc", "sizes": [n, ...]}` is answered with
//! `{"slots": [[id, offset], ...]}` (or `null`: send through the socket); a
//! call then names its messages with `"staged": [ids]`. A reply's large
//! parts are sent as `"shm": [[part, id, offset, length], ...]`, the part
//! itself left empty.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::arena::{Arena, Slot};

/// Parts at least this large are lent through the arena rather than written
/// to the socket (mapping costs a few system calls: smaller ones are cheaper
/// copied). The worker stages its own large messages from the same size.
pub(crate) const LARGE: usize = 64 << 10;

pub(crate) struct Held {
    arena: Option<Arc<Arena>>,
    next: u64,
    staged: HashMap<u64, Slot>,
    lent: HashMap<u64, Bytes>,
}

impl Held {
    pub(crate) fn new(arena: Option<Arc<Arena>>) -> Held {
        Held { arena, next: 0, staged: HashMap::new(), lent: HashMap::new() }
    }

    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Lets go of what the request says the worker no longer maps.
    pub(crate) fn release(&mut self, header: &Value) {
        for id in ids(header, "freed") {
            self.lent.remove(&id);
            self.staged.remove(&id);
        }
    }

    /// Slots for messages of `sizes` bytes, or `null` if there is no room
    /// (the worker then sends them through the socket).
    pub(crate) fn stage(&mut self, header: &Value) -> Value {
        let sizes: Vec<usize> = ids(header, "sizes").map(|n| n as usize).collect();
        let Some(arena) = self.arena.clone() else { return json!({"slots": null}) };
        let mut slots = Vec::with_capacity(sizes.len());
        for size in sizes {
            let Some(slot) = arena.take(size) else {
                // The slots taken for this call so far are dropped: freed.
                return json!({"slots": null});
            };
            slots.push(slot);
        }
        let answer: Vec<Value> = slots
            .into_iter()
            .map(|slot| {
                let id = self.id();
                let offset = slot.offset();
                self.staged.insert(id, slot);
                json!([id, offset])
            })
            .collect();
        json!({ "slots": answer })
    }

    /// The messages a call names by their slots (`None` if it names none).
    pub(crate) fn staged(&mut self, header: &Value) -> Option<Result<Vec<Bytes>, String>> {
        header.get("staged")?;
        Some(
            ids(header, "staged")
                .map(|id| {
                    self.staged
                        .remove(&id)
                        .map(Slot::into_bytes)
                        .ok_or_else(|| format!("the Python worker named slot {id}, which it was not given"))
                })
                .collect(),
        )
    }

    /// A reply's parts, its large ones lent through the arena: one already
    /// there (a message of a worker of this pack) without a copy, another
    /// copied in once.
    pub(crate) fn lend(&mut self, reply: &mut Value, mut parts: Vec<Bytes>) -> Vec<Bytes> {
        let Some(arena) = self.arena.clone() else { return parts };
        let mut shm = Vec::new();
        for (index, part) in parts.iter_mut().enumerate() {
            if part.len() < LARGE {
                continue;
            }
            let (offset, lent) = match arena.offset_of(part) {
                Some(offset) => (offset, part.clone()),
                None => match arena.copy(part) {
                    Some(slot) => (slot.offset(), slot.into_bytes()),
                    None => continue,
                },
            };
            let id = self.id();
            shm.push(json!([index, id, offset, part.len()]));
            self.lent.insert(id, lent);
            *part = Bytes::new();
        }
        if !shm.is_empty()
            && let Value::Object(fields) = reply
        {
            fields.insert("shm".into(), Value::Array(shm));
        }
        parts
    }
}

fn ids<'a>(header: &'a Value, key: &str) -> impl Iterator<Item = u64> + 'a {
    header.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_parts_are_lent_once_and_released_when_the_worker_says_so() {
        let arena = Arena::new().unwrap();
        let mut held = Held::new(Some(arena.clone()));
        let staged = held.stage(&json!({"sizes": [LARGE]}));
        let [id, _offset] = serde_json::from_value::<[u64; 2]>(staged["slots"][0].clone()).unwrap();
        let sent = held.staged(&json!({"staged": [id]})).unwrap().unwrap();
        assert!(held.staged(&json!({"staged": [id]})).unwrap().is_err(), "a slot is named once");
        let from_elsewhere = Bytes::from(vec![3u8; LARGE]);
        let small = Bytes::from_static(b"small");
        let mut reply = json!({});
        let parts = held.lend(&mut reply, vec![sent[0].clone(), small.clone(), from_elsewhere]);
        assert_eq!(parts[1], small);
        assert!(parts[0].is_empty() && parts[2].is_empty());
        let shm = reply["shm"].as_array().unwrap();
        assert_eq!(shm.len(), 2);
        // The worker's own message is lent where it is; the other is copied in.
        assert_eq!(shm[0][2].as_u64(), arena.offset_of(&sent[0]));
        let copied = shm[1][2].as_u64().unwrap();
        assert_ne!(copied, shm[0][2].as_u64().unwrap());
        drop(sent);
        held.release(&json!({"freed": [shm[0][1], shm[1][1]]}));
        assert!(held.lent.is_empty());
    }

    #[test]
    fn without_an_arena_everything_goes_through_the_socket() {
        let mut held = Held::new(None);
        assert_eq!(held.stage(&json!({"sizes": [1 << 20]})), json!({"slots": null}));
        let mut reply = json!({});
        let parts = held.lend(&mut reply, vec![Bytes::from(vec![0u8; 1 << 20])]);
        assert_eq!(parts[0].len(), 1 << 20);
        assert_eq!(reply, json!({}));
    }
}
