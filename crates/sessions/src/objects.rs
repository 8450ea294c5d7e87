//! The objects of one session and what each operation does to them. Pure
//! state transitions: an operation either completes now (`Step::Ready`) or
//! must wait for another one to change the object (`Step::Blocked`, with the
//! reply to give if the wait runs out); `crate::session` does the waiting.

use std::collections::{HashMap, HashSet, VecDeque};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use volley_proto::session::{BarrierState, Kind, Op, Owner, Reply};

use crate::Error;

/// Objects one session may hold.
pub const MAX_OBJECTS: usize = 100_000;
/// Bytes one session's items and values may hold together.
pub const MAX_BYTES: usize = 256 << 20;
/// Condition waiters one session may have at once.
const MAX_TICKETS: usize = 100_000;
/// Ended barrier generations remembered for waiters that ask late.
const BARRIER_HISTORY: usize = 64;

pub(crate) enum Step {
    /// The reply, and whether the objects changed (waiters must look again).
    Ready(Reply, bool),
    /// Nothing to do yet; the reply if the wait runs out.
    Blocked(Reply),
}

enum Object {
    Queue { items: VecDeque<String>, maxsize: usize, unfinished: u64, writers: u64 },
    Semaphore { value: u64, max: Option<u64>, holder: Holder },
    RecursiveLock { holder: Holder },
    Event { set: bool },
    Condition { lock: u64, waiting: VecDeque<u64>, notified: HashSet<u64> },
    Barrier(Barrier),
    Value { data: Vec<u8>, version: u64 },
}

/// Who took a lock last and how many levels they hold (as CPython's
/// semaphores track it, so that a condition can check its lock is held).
#[derive(Default)]
struct Holder {
    owner: Option<Owner>,
    levels: u64,
}

impl Holder {
    fn is(&self, owner: &str) -> bool {
        self.levels > 0 && self.owner.as_deref() == Some(owner)
    }
}

struct Barrier {
    parties: usize,
    action: bool,
    generation: u64,
    arrived: usize,
    broken: bool,
    /// The last arrival of `generation` is running the action.
    acting: bool,
    /// How ended generations ended (true: passed).
    ended: VecDeque<(u64, bool)>,
}

impl Barrier {
    fn end_generation(&mut self, passed: bool) {
        self.ended.push_back((self.generation, passed));
        if self.ended.len() > BARRIER_HISTORY {
            self.ended.pop_front();
        }
        self.generation += 1;
        self.arrived = 0;
        self.acting = false;
    }

    fn state_of(&self, generation: u64) -> Option<BarrierState> {
        if generation < self.generation {
            let passed = self.ended.iter().find(|(g, _)| *g == generation).is_none_or(|(_, passed)| *passed);
            return Some(if passed { BarrierState::Passed } else { BarrierState::Broken });
        }
        self.broken.then_some(BarrierState::Broken)
    }
}

#[derive(Default)]
pub(crate) struct Objects {
    objects: HashMap<u64, Object>,
    next: u64,
    next_ticket: u64,
    tickets: usize,
    pub(crate) bytes: usize,
}

fn decode(what: &str, text: &str) -> Result<Vec<u8>, Error> {
    STANDARD.decode(text).map_err(|e| Error::BadRequest(format!("{what} is not base64: {e}")))
}

fn refused(reason: &str) -> Step {
    Step::Ready(Reply::Refused { reason: reason.into() }, false)
}

fn changed(reply: Reply) -> Step {
    Step::Ready(reply, true)
}

fn ready(reply: Reply) -> Step {
    Step::Ready(reply, false)
}

fn flag(flag: bool) -> Reply {
    Reply::Flag { flag }
}

impl Objects {
    pub(crate) fn len(&self) -> usize {
        self.objects.len()
    }

    fn charge(&mut self, more: usize) -> Result<(), Error> {
        if self.bytes + more > MAX_BYTES {
            return Err(Error::Limit(format!(
                "the session's objects would hold more than {} MiB; take items out of its queues, or keep large data in storage and pass its key",
                MAX_BYTES >> 20
            )));
        }
        self.bytes += more;
        Ok(())
    }

    /// Carries out `op` on `object` (or creates one), or says it must wait.
    pub(crate) fn apply(&mut self, object: Option<u64>, op: &Op) -> Result<Step, Error> {
        if let Op::Create { kind } = op {
            return self.create(kind);
        }
        let id = object.ok_or_else(|| Error::BadRequest("this operation needs an object".into()))?;
        if let Op::Drop = op {
            return match self.objects.remove(&id) {
                Some(gone) => {
                    self.bytes -= held(&gone);
                    Ok(changed(Reply::Done))
                }
                None => Err(gone(id)),
            };
        }
        // A condition's operations reach its lock too: take the condition out while they run.
        if matches!(self.objects.get(&id), Some(Object::Condition { .. }))
            && let Some(Object::Condition { lock, mut waiting, mut notified }) = self.objects.remove(&id)
        {
            let step = self.condition(lock, &mut waiting, &mut notified, op);
            self.objects.insert(id, Object::Condition { lock, waiting, notified });
            return step;
        }
        let Self { objects, bytes, .. } = self;
        let object = objects.get_mut(&id).ok_or_else(|| gone(id))?;
        match object {
            Object::Queue { items, maxsize, unfinished, writers } => {
                queue(items, *maxsize, unfinished, writers, bytes, op)
            }
            Object::Semaphore { value, max, holder } => Ok(semaphore(value, *max, holder, op)),
            Object::RecursiveLock { holder } => Ok(recursive_lock(holder, op)),
            Object::Event { set } => Ok(event(set, op)),
            Object::Barrier(barrier) => Ok(barrier_op(barrier, op)),
            Object::Value { data, version } => value(data, version, bytes, op),
            Object::Condition { .. } => Ok(None),
        }
        .map(|step| step.unwrap_or_else(|| wrong_kind(op)))
    }

    fn create(&mut self, kind: &Kind) -> Result<Step, Error> {
        if self.objects.len() >= MAX_OBJECTS {
            return Err(Error::Limit(format!("a session holds at most {MAX_OBJECTS} objects")));
        }
        let object = match kind {
            Kind::Queue { maxsize } => {
                Object::Queue { items: VecDeque::new(), maxsize: *maxsize, unfinished: 0, writers: 1 }
            }
            Kind::Semaphore { value, max } => {
                if max.is_some_and(|m| *value > m) {
                    return Err(Error::BadRequest("a semaphore's value cannot exceed its max".into()));
                }
                Object::Semaphore { value: *value, max: *max, holder: Holder::default() }
            }
            Kind::RecursiveLock => Object::RecursiveLock { holder: Holder::default() },
            Kind::Event => Object::Event { set: false },
            Kind::Condition { lock } => match self.objects.get(lock) {
                Some(Object::Semaphore { .. } | Object::RecursiveLock { .. }) => {
                    Object::Condition { lock: *lock, waiting: VecDeque::new(), notified: HashSet::new() }
                }
                _ => return Err(Error::BadRequest(format!("object {lock} is not a lock of this session"))),
            },
            Kind::Barrier { parties, action } => {
                if *parties == 0 {
                    return Err(Error::BadRequest("a barrier needs at least one party".into()));
                }
                Object::Barrier(Barrier {
                    parties: *parties,
                    action: *action,
                    generation: 0,
                    arrived: 0,
                    broken: false,
                    acting: false,
                    ended: VecDeque::new(),
                })
            }
            Kind::Value { data } => {
                let data = decode("the value", data)?;
                self.charge(data.len())?;
                Object::Value { data, version: 0 }
            }
        };
        self.next += 1;
        self.objects.insert(self.next, object);
        Ok(changed(Reply::Created { object: self.next }))
    }

    fn condition(
        &mut self,
        lock: u64,
        waiting: &mut VecDeque<u64>,
        notified: &mut HashSet<u64>,
        op: &Op,
    ) -> Result<Step, Error> {
        let holder = match self.objects.get_mut(&lock) {
            Some(Object::Semaphore { holder, .. } | Object::RecursiveLock { holder }) => holder,
            _ => return Err(Error::NotFound(format!("the lock {lock} of this condition is gone"))),
        };
        Ok(match op {
            Op::Wait { owner } => {
                if !holder.is(owner) {
                    return Ok(refused("must acquire() condition before using wait()"));
                }
                if self.tickets >= MAX_TICKETS {
                    return Err(Error::Limit(format!("a session has at most {MAX_TICKETS} condition waiters")));
                }
                // Give the lock back whole: the waiter takes its levels again once notified.
                let levels = std::mem::take(&mut holder.levels);
                holder.owner = None;
                if let Some(Object::Semaphore { value, .. }) = self.objects.get_mut(&lock) {
                    *value += 1;
                }
                self.next_ticket += 1;
                self.tickets += 1;
                waiting.push_back(self.next_ticket);
                changed(Reply::Ticket { ticket: self.next_ticket, levels })
            }
            Op::Notified { ticket } => {
                if notified.remove(ticket) {
                    self.tickets -= 1;
                    ready(flag(true))
                } else if waiting.contains(ticket) {
                    Step::Blocked(flag(false))
                } else {
                    ready(flag(false))
                }
            }
            Op::Forget { ticket } => {
                let was_waiting = waiting.iter().position(|t| t == ticket).map(|i| waiting.remove(i));
                let was_notified = notified.remove(ticket);
                if was_waiting.is_some() || was_notified {
                    self.tickets -= 1;
                }
                ready(flag(was_notified))
            }
            Op::Notify { owner, n } => {
                if !holder.is(owner) {
                    return Ok(refused("lock is not owned"));
                }
                let n = n.unwrap_or(usize::MAX).min(waiting.len());
                notified.extend(waiting.drain(..n));
                changed(Reply::Done)
            }
            other => wrong_kind(other),
        })
    }
}

fn gone(id: u64) -> Error {
    Error::NotFound(format!("object {id} is not in this session (deleted, or never made)"))
}

fn wrong_kind(op: &Op) -> Step {
    refused(&format!("the object does not take the {} operation", op.name()))
}

fn held(object: &Object) -> usize {
    match object {
        Object::Queue { items, .. } => items.iter().map(String::len).sum(),
        Object::Value { data, .. } => data.len(),
        _ => 0,
    }
}

/// `None`: the object does not take this operation.
type Outcome = Result<Option<Step>, Error>;

fn queue(
    items: &mut VecDeque<String>,
    maxsize: usize,
    unfinished: &mut u64,
    writers: &mut u64,
    bytes: &mut usize,
    op: &Op,
) -> Outcome {
    Ok(Some(match op {
        Op::Put { item } => {
            if maxsize > 0 && items.len() >= maxsize {
                Step::Blocked(Reply::Full)
            } else {
                if *bytes + item.len() > MAX_BYTES {
                    return Err(Error::Limit(format!(
                        "the session's queues would hold more than {} MiB; take items out first, or keep large data in storage and pass its key",
                        MAX_BYTES >> 20
                    )));
                }
                *bytes += item.len();
                items.push_back(item.clone());
                *unfinished += 1;
                changed(Reply::Done)
            }
        }
        Op::Get | Op::GetMany { .. } => {
            let max = if let Op::GetMany { max } = op { (*max).max(1) } else { 1 };
            if items.is_empty() {
                if *writers == 0 { ready(Reply::Eof) } else { Step::Blocked(Reply::Empty) }
            } else {
                let taken: Vec<String> = items.drain(..max.min(items.len())).collect();
                *bytes -= taken.iter().map(String::len).sum::<usize>();
                changed(Reply::Items { items: taken })
            }
        }
        Op::Size => ready(Reply::Count { count: items.len() as u64 }),
        Op::TaskDone => {
            if *unfinished == 0 {
                refused("task_done() called too many times")
            } else {
                *unfinished -= 1;
                changed(Reply::Done)
            }
        }
        Op::Join => {
            if *unfinished == 0 {
                ready(flag(true))
            } else {
                Step::Blocked(flag(false))
            }
        }
        Op::OpenWriting => {
            *writers += 1;
            changed(Reply::Done)
        }
        Op::CloseWriting => {
            *writers = writers.saturating_sub(1);
            changed(Reply::Done)
        }
        _ => return Ok(None),
    }))
}

fn semaphore(value: &mut u64, max: Option<u64>, holder: &mut Holder, op: &Op) -> Option<Step> {
    Some(match op {
        Op::Acquire { owner } => {
            if *value == 0 {
                Step::Blocked(flag(false))
            } else {
                *value -= 1;
                holder.levels += 1;
                holder.owner = Some(owner.clone());
                changed(flag(true))
            }
        }
        Op::Release { .. } => {
            if max.is_some_and(|m| *value >= m) {
                refused("semaphore or lock released too many times")
            } else {
                *value += 1;
                holder.levels = holder.levels.saturating_sub(1);
                changed(Reply::Done)
            }
        }
        Op::Value => ready(Reply::Count { count: *value }),
        Op::Owned { owner } => ready(flag(holder.is(owner))),
        _ => return None,
    })
}

fn recursive_lock(holder: &mut Holder, op: &Op) -> Option<Step> {
    Some(match op {
        Op::Acquire { owner } => {
            if holder.levels == 0 {
                holder.owner = Some(owner.clone());
                holder.levels = 1;
                changed(flag(true))
            } else if holder.is(owner) {
                holder.levels += 1;
                changed(flag(true))
            } else {
                Step::Blocked(flag(false))
            }
        }
        Op::Release { owner } => {
            if !holder.is(owner) {
                refused("attempt to release recursive lock not owned by thread")
            } else {
                holder.levels -= 1;
                if holder.levels == 0 {
                    holder.owner = None;
                }
                changed(Reply::Done)
            }
        }
        Op::Value => ready(Reply::Count { count: holder.levels }),
        Op::Owned { owner } => ready(flag(holder.is(owner))),
        _ => return None,
    })
}

fn event(set: &mut bool, op: &Op) -> Option<Step> {
    Some(match op {
        Op::Set => {
            *set = true;
            changed(Reply::Done)
        }
        Op::Clear => {
            *set = false;
            changed(Reply::Done)
        }
        Op::IsSet if *set => ready(flag(true)),
        Op::IsSet => Step::Blocked(flag(false)),
        _ => return None,
    })
}

fn barrier_op(b: &mut Barrier, op: &Op) -> Option<Step> {
    let state = |b: &Barrier| Reply::Barrier {
        state: if b.broken { BarrierState::Broken } else { BarrierState::Waiting },
        waiting: b.arrived,
    };
    Some(match op {
        Op::Arrive => {
            if b.broken {
                return Some(ready(Reply::Arrived { index: 0, generation: b.generation, state: BarrierState::Broken }));
            }
            if b.acting {
                // The last generation's action is running: arrive in the next one.
                return Some(Step::Blocked(state(b)));
            }
            let index = b.arrived;
            let generation = b.generation;
            b.arrived += 1;
            let state = if b.arrived < b.parties {
                BarrierState::Waiting
            } else if b.action {
                b.acting = true;
                BarrierState::RunAction
            } else {
                b.end_generation(true);
                BarrierState::Passed
            };
            changed(Reply::Arrived { index, generation, state })
        }
        Op::Passed { generation } => match b.state_of(*generation) {
            Some(state) => ready(Reply::Barrier { state, waiting: b.arrived }),
            None => Step::Blocked(state(b)),
        },
        Op::Pass { generation, ok } => {
            if !b.acting || *generation != b.generation {
                return Some(refused("no action of this generation is running"));
            }
            if *ok {
                b.end_generation(true);
            } else {
                b.acting = false;
                b.broken = true;
            }
            changed(Reply::Done)
        }
        Op::Abort => {
            b.broken = true;
            changed(Reply::Done)
        }
        Op::Reset => {
            if b.arrived > 0 || b.acting {
                b.end_generation(false);
            }
            b.broken = false;
            changed(Reply::Done)
        }
        Op::BarrierState => ready(state(b)),
        _ => return None,
    })
}

fn value(data: &mut Vec<u8>, version: &mut u64, bytes: &mut usize, op: &Op) -> Outcome {
    let range = |offset: usize, len: usize, size: usize| {
        offset.checked_add(len).filter(|end| *end <= size).map(|end| offset..end).ok_or_else(|| {
            Error::BadRequest(format!(
                "bytes {offset}..{} are outside the value's {size} bytes",
                offset.saturating_add(len)
            ))
        })
    };
    Ok(Some(match op {
        Op::Read { offset, len } => {
            let len = len.unwrap_or(data.len().saturating_sub(*offset));
            let r = range(*offset, len, data.len())?;
            ready(Reply::Data { data: STANDARD.encode(&data[r]), version: *version })
        }
        Op::Write { offset, data: given } => {
            let given = decode("data", given)?;
            let r = range(*offset, given.len(), data.len())?;
            data[r].copy_from_slice(&given);
            *version += 1;
            changed(Reply::Version { version: *version })
        }
        Op::Swap { version: expected, data: given } => {
            if *expected != *version {
                ready(Reply::Conflict { data: STANDARD.encode(&data[..]), version: *version })
            } else {
                let given = decode("data", given)?;
                if *bytes - data.len() + given.len() > MAX_BYTES {
                    return Err(Error::Limit(format!(
                        "the session's values would hold more than {} MiB",
                        MAX_BYTES >> 20
                    )));
                }
                *bytes = *bytes - data.len() + given.len();
                *data = given;
                *version += 1;
                changed(Reply::Version { version: *version })
            }
        }
        _ => return Ok(None),
    }))
}
