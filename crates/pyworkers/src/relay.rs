//! One Python worker's calls, carried out with its rank's communicator: the
//! worker process asks (a frame per call), this thread of the pack process
//! performs the call on the middleware and answers. The worker's last frame
//! is its result or its exception.

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use volley_sdk::{Comm, Element, Op, Worker};

use crate::arena::Arena;
use crate::frame;
use crate::held::Held;

/// Why a worker is lost when its process closed its connection without a result.
pub(crate) const NO_RESULT: &str =
    "the Python worker process ended without a result (its output is in the burst's logs)";

/// How a worker ended.
pub(crate) enum Ended {
    /// Its result, pickled.
    Result(Bytes),
    /// It raised: the exception's type, message and traceback, and the
    /// exception pickled (empty if it does not pickle).
    Raised { kind: String, message: String, traceback: String, pickled: Bytes },
}

enum Pending {
    Send(volley_comm::SendRequest),
    Recv(volley_comm::RecvRequest),
}

/// A call that failed: on the middleware (kept whole, so that an echo of
/// another worker's failure can be told from a cause), or for another reason.
enum Failure {
    Comm(volley_comm::Error),
    Other(String),
}

impl From<volley_comm::Error> for Failure {
    fn from(e: volley_comm::Error) -> Self {
        Failure::Comm(e)
    }
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Other(e)
    }
}

/// Serves `conn` until the worker reports how it ended. Alongside: the first
/// communication error that only echoed another worker's failure, if the
/// worker met one (whatever it then raised is a consequence, not a cause).
/// Large messages go through `arena` when there is one.
pub(crate) fn serve(
    conn: &mut UnixStream,
    worker: &Worker,
    arena: Option<Arc<Arena>>,
) -> (Result<Ended, String>, Option<volley_comm::Error>) {
    let mut echo = None;
    let mut held = Held::new(arena);
    let ended = serve_calls(conn, worker, &mut held, &mut echo);
    (ended, echo)
}

fn serve_calls(
    conn: &mut UnixStream,
    worker: &Worker,
    held: &mut Held,
    echo: &mut Option<volley_comm::Error>,
) -> Result<Ended, String> {
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut next = 0u64;
    loop {
        let (header, parts) = match frame::read(conn) {
            Ok(Some(f)) => f,
            Ok(None) => return Err(NO_RESULT.into()),
            Err(e) => return Err(format!("reading from the Python worker: {e}")),
        };
        let op = header.get("op").and_then(Value::as_str).unwrap_or_default().to_string();
        match op.as_str() {
            "result" => return Ok(Ended::Result(parts.into_iter().next().unwrap_or_default())),
            "error" => {
                let text = |k: &str| header.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                let pickled = parts.into_iter().next().unwrap_or_default();
                return Ok(Ended::Raised {
                    kind: text("type"),
                    message: text("message"),
                    traceback: text("traceback"),
                    pickled,
                });
            }
            _ => {}
        }
        held.release(&header);
        if op == "phase" {
            // `w.phase(name)`: marked here, so it goes with the worker's result.
            worker.phase(header.get("name").and_then(Value::as_str).unwrap_or_default());
            frame::write(conn, &json!({}), &[]).map_err(|e| format!("answering the Python worker: {e}"))?;
            continue;
        }
        if op == "alloc" {
            frame::write(conn, &held.stage(&header), &[]).map_err(|e| format!("answering the Python worker: {e}"))?;
            continue;
        }
        let messages = match held.staged(&header) {
            Some(staged) => staged?,
            None => frame::messages(&header, parts).map_err(|e| e.to_string())?,
        };
        let answer = perform(worker.comm(), &op, &header, messages, &mut pending, &mut next);
        let written = match answer {
            Ok((mut reply, parts)) => {
                let parts = held.lend(&mut reply, parts);
                frame::write(conn, &reply, &parts)
            }
            Err(Failure::Comm(e)) => {
                let written = frame::write(conn, &json!({"error": e.to_string()}), &[]);
                if volley_sdk::is_consequence(&e) && echo.is_none() {
                    *echo = Some(e);
                }
                written
            }
            Err(Failure::Other(e)) => frame::write(conn, &json!({"error": e}), &[]),
        };
        written.map_err(|e| format!("answering the Python worker: {e}"))?;
    }
}

type Answer = Result<(Value, Vec<Bytes>), Failure>;

fn perform(
    comm: &Comm,
    op: &str,
    header: &Value,
    messages: Vec<Bytes>,
    pending: &mut HashMap<u64, Pending>,
    next: &mut u64,
) -> Answer {
    let num = |k: &str| header.get(k).and_then(Value::as_u64).map(|n| n as usize);
    let rank = |k: &str| num(k).ok_or_else(|| Failure::Other(format!("{op} needs {k}")));
    let tag = header.get("tag").and_then(Value::as_u64).unwrap_or(0);
    let first = || messages.first().cloned().unwrap_or_default();
    let done = |parts: Vec<Bytes>| Ok((json!({}), parts));
    match op {
        "send" => comm.send(rank("dst")?, tag, first()).map_err(Failure::Comm).and_then(|_| done(vec![])),
        "recv" => {
            let (src, data) = match num("src") {
                Some(src) => (src, comm.recv(src, tag).map_err(Failure::Comm)?),
                None => comm.recv_any(tag).map_err(Failure::Comm)?,
            };
            Ok((json!({"src": src}), vec![data]))
        }
        "isend" => {
            *next += 1;
            pending.insert(*next, Pending::Send(comm.isend(rank("dst")?, tag, first())));
            Ok((json!({"req": *next}), vec![]))
        }
        "irecv" => {
            *next += 1;
            let req = match num("src") {
                Some(src) => comm.irecv(src, tag),
                None => comm.irecv_any(tag),
            };
            pending.insert(*next, Pending::Recv(req));
            Ok((json!({"req": *next}), vec![]))
        }
        "test" | "wait" => {
            let id = header.get("req").and_then(Value::as_u64).unwrap_or(0);
            let Some(req) = pending.remove(&id) else { return Err(format!("no request {id}").into()) };
            match (op, req) {
                ("test", Pending::Send(r)) if !r.test() => {
                    pending.insert(id, Pending::Send(r));
                    Ok((json!({"done": false}), vec![]))
                }
                ("test", Pending::Recv(mut r)) => match r.test() {
                    None => {
                        pending.insert(id, Pending::Recv(r));
                        Ok((json!({"done": false}), vec![]))
                    }
                    Some(got) => {
                        got.map(|(src, data)| (json!({"done": true, "src": src}), vec![data])).map_err(Failure::Comm)
                    }
                },
                (_, Pending::Send(r)) => r.wait().map(|_| (json!({"done": true}), vec![])).map_err(Failure::Comm),
                (_, Pending::Recv(r)) => {
                    r.wait().map(|(src, data)| (json!({"done": true, "src": src}), vec![data])).map_err(Failure::Comm)
                }
            }
        }
        "barrier" => comm.barrier().map_err(Failure::Comm).and_then(|_| done(vec![])),
        "broadcast" => comm.broadcast(rank("root")?, first()).map_err(Failure::Comm).map(|d| (json!({}), vec![d])),
        "scatter" => comm.scatter(rank("root")?, messages).map_err(Failure::Comm).map(|d| (json!({}), vec![d])),
        "gather" => match comm.gather(rank("root")?, first()).map_err(Failure::Comm)? {
            Some(all) => Ok((json!({"root": true}), all)),
            None => Ok((json!({"root": false}), vec![])),
        },
        "all_gather" => comm.all_gather(first()).map_err(Failure::Comm).map(|all| (json!({}), all)),
        "all_to_all" => comm.all_to_all(messages).map_err(Failure::Comm).map(|all| (json!({}), all)),
        "reduce" => reduce(comm, header, &first()),
        other => Err(format!("no call {other:?}").into()),
    }
}

/// `all_reduce`, `reduce` to `root`, or `reduce_scatter` (`scatter`), of
/// little-endian numbers of `dtype`.
fn reduce(comm: &Comm, header: &Value, data: &[u8]) -> Answer {
    let op = match header.get("reduce").and_then(Value::as_str) {
        Some("sum") => Op::Sum,
        Some("min") => Op::Min,
        Some("max") => Op::Max,
        other => return Err(format!("no reduction {other:?}: sum, min or max").into()),
    };
    let to = match (header.get("scatter").and_then(Value::as_bool), header.get("root").and_then(Value::as_u64)) {
        (Some(true), _) => To::Blocks,
        (_, Some(root)) => To::Root(root as usize),
        _ => To::All,
    };
    match header.get("dtype").and_then(Value::as_str) {
        Some("f64") => typed::<f64>(comm, data, op, to),
        Some("f32") => typed::<f32>(comm, data, op, to),
        Some("i64") => typed::<i64>(comm, data, op, to),
        Some("u64") => typed::<u64>(comm, data, op, to),
        other => Err(format!("cannot reduce {other:?}: f64, f32, i64 or u64").into()),
    }
}

/// Where a reduction's result goes.
enum To {
    All,
    Root(usize),
    Blocks,
}

fn typed<T: Element>(comm: &Comm, data: &[u8], op: Op, to: To) -> Answer {
    if !data.len().is_multiple_of(T::SIZE) {
        return Err(format!("{} bytes are not whole numbers of {} bytes", data.len(), T::SIZE).into());
    }
    let values: Vec<T> = data.chunks_exact(T::SIZE).map(T::read).collect();
    let reduced = match to {
        To::Root(root) => comm.reduce(root, &values, op)?,
        To::All => Some(comm.all_reduce(&values, op)?),
        To::Blocks => Some(comm.reduce_scatter(&values, op)?),
    };
    let parts = reduced
        .map(|v| {
            let mut out = Vec::with_capacity(v.len() * T::SIZE);
            v.into_iter().for_each(|x| x.write(&mut out));
            vec![Bytes::from(out)]
        })
        .unwrap_or_default();
    Ok((json!({}), parts))
}
