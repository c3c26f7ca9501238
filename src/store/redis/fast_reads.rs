//! The request path's plain reads (`GET`, `HGET`) on a direct, pipelined
//! RESP connection of the worker's own, instead of through the `redis`
//! crate's multiplexed connection (whose driver task, channels and `Value`
//! trees cost about a tenth of a proxied request).
//!
//! Only for a single node over plain TCP ([`FastReads::for_node`] says
//! when); everything else, and every call the fast connection cannot
//! answer, takes the crate's path ([`super::link`]). What it guarantees:
//!
//! - **Fresh answers.** A call queues its commands (and its slot in the
//!   FIFO of expected replies) under one lock when it starts, and the
//!   connection's flusher writes them, with the other commands queued in
//!   the same scheduler tick, in one write ([`flush_when_asked`]); replies
//!   are handed out strictly in that order. A call is never answered by a
//!   reply to a command sent before it began. A call that goes away before
//!   its replies came leaves its slot queued: its replies are read and
//!   dropped, so the order never slips.
//! - **Never worse than the crate's path.** Anything unexpected (end of
//!   stream, an I/O error, a reply that is not a bulk string, nil, simple
//!   string, integer or error, a bulk over [`MAX_BULK`]) kills the
//!   connection: its waiting calls are sent again on the crate's path
//!   (they are reads) within their own time limit, and the next call opens
//!   a new connection in the background while the crate's path serves. An
//!   error reply, or a value that is not UTF-8, sends that call (only) to
//!   the crate's path, which answers as it always did. A connection whose
//!   oldest unanswered command is older than the store's time limit (Redis
//!   stopped answering), or that was idle for `idle_check` (it may have
//!   been dropped silently by a NAT), is closed before it serves.
//! - **One reader at a time.** One waiting call (the
//!   reader) waits for the socket to be readable and reads for all,
//!   waking the calls it answered; the others wait for their slot only, so
//!   a reply wakes no call it does not answer. A reader that leaves
//!   (answered or abandoned) wakes the first call still waiting, which
//!   reads in its place.

use super::options::{RedisOptions, Topology};
use bytes::{Buf, BufMut, BytesMut};
use redis::ConnectionAddr;
use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The longest bulk string accepted (a credential is well under 1 KiB).
pub const MAX_BULK: usize = 16 << 20;
/// The longest line (an error or simple string, a length) accepted.
const MAX_LINE: usize = 4096;
/// Free room made in the read buffer before each read.
const READ_ROOM: usize = 16 * 1024;
/// How long after a failed connection attempt the next one may start.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// The fast reads of one [`super::link::Link`] (one per worker).
pub struct FastReads {
    host: String,
    port: u16,
    /// `AUTH` and `SELECT`, encoded, sent once on each new connection, and
    /// how many `+OK` they answer.
    setup: Vec<u8>,
    setup_replies: usize,
    timeout: Duration,
    idle_check: Duration,
    connect_timeout: Duration,
    status: Mutex<Status>,
    opened: AtomicU64,
    served: AtomicU64,
}

#[derive(Default)]
struct Status {
    current: Option<Arc<FastConn>>,
    connecting: bool,
    /// No connection attempt before this (after one failed).
    not_before: Option<Instant>,
}

/// One connection and what is in flight on it.
struct FastConn {
    stream: TcpStream,
    io: Mutex<Io>,
    /// Wakes the connection's flusher ([`flush_when_asked`]): commands
    /// queued in one scheduler tick go out in one write.
    flush_wanted: Arc<Notify>,
}

impl Drop for FastConn {
    fn drop(&mut self) {
        // Lets the flusher see that the connection is gone, and end.
        self.flush_wanted.notify_one();
    }
}

/// The flusher of one connection, a task on its worker: woken by the first
/// command queued since its last write, it runs after the tasks that were
/// already runnable (they may queue commands too) and writes them all at
/// once, so that Redis reads, and answers, a tick's reads together instead
/// of one by one. Ends when the connection dies or is dropped.
async fn flush_when_asked(conn: Weak<FastConn>, wanted: Arc<Notify>) {
    loop {
        wanted.notified().await;
        loop {
            let Some(conn) = conn.upgrade() else {
                return;
            };
            // In a block: the guard must be gone before the await below.
            let all_written = {
                let mut io = lock(&conn.io);
                if io.dead {
                    return;
                }
                if io.flush(&conn.stream).is_err() {
                    io.kill();
                    return;
                }
                io.output.is_empty()
            };
            if all_written {
                break;
            }
            // The socket's buffer is full: the rest when it has room.
            if conn.stream.writable().await.is_err() {
                lock(&conn.io).kill();
                return;
            }
        }
    }
}

struct Io {
    dead: bool,
    /// Encoded commands not written yet.
    output: BytesMut,
    /// Bytes read and not parsed yet.
    input: BytesMut,
    /// The calls waiting for replies, in the order of their commands.
    pending: VecDeque<Arc<Slot>>,
    /// When the connection was opened, or when the last call that was
    /// answered was sent (no clock is read per reply).
    last_heard: Instant,
    /// Whether a waiting call is reading for all (see [`FastConn::wait`]).
    reader: bool,
}

/// Where one call's replies go.
struct Slot {
    expected: usize,
    sent: Instant,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    values: Vec<Option<String>>,
    /// An error reply, or a value the caller cannot take as it is: the
    /// call goes to the crate's path.
    refer: bool,
    /// `Some` once every reply came (`Some(None)`: go to the crate's path).
    outcome: Option<Option<Vec<Option<String>>>>,
    waker: Option<Waker>,
}

/// One reply, as far as these reads care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A bulk string: its bytes in the buffer.
    Bulk(Range<usize>),
    Nil,
    /// A simple string: its bytes in the buffer.
    Simple(Range<usize>),
    Integer,
    Error,
}

/// A byte stream that is not the RESP these reads expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected RESP from Redis: {0}")]
pub struct ProtocolError(&'static str);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first complete reply at the start of `buf` and its length; `None`
/// while it is incomplete.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let window = &buf[..buf.len().min(MAX_LINE + 2)];
    let Some(cr) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return if window.len() == MAX_LINE + 2 {
            Err(ProtocolError("a line too long"))
        } else if window[1..].contains(&b'\n') {
            Err(ProtocolError("a malformed line"))
        } else {
            Ok(None)
        };
    };
    let line = &buf[1..cr];
    let after = cr + 2;
    match kind {
        b'$' => {
            if line == b"-1" {
                return Ok(Some((Reply::Nil, after)));
            }
            let len = decimal(line).ok_or(ProtocolError("a bad bulk length"))?;
            if len > MAX_BULK {
                return Err(ProtocolError("a bulk string too long"));
            }
            let end = after + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("a bulk string without its end"));
            }
            Ok(Some((Reply::Bulk(after..end), end + 2)))
        }
        b'+' if !line.contains(&b'\r') => Ok(Some((Reply::Simple(1..cr), after))),
        b'-' if !line.contains(&b'\r') => Ok(Some((Reply::Error, after))),
        b':' => {
            let digits = line.strip_prefix(b"-").unwrap_or(line);
            decimal(digits).ok_or(ProtocolError("a bad integer"))?;
            Ok(Some((Reply::Integer, after)))
        }
        _ => Err(ProtocolError("a reply of a kind not expected")),
    }
}

fn decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')),
    )
}

/// Appends one command (a RESP array of bulk strings).
fn encode(out: &mut BytesMut, args: &[&[u8]]) {
    let mut digits = itoa::Buffer::new();
    out.put_u8(b'*');
    out.put_slice(digits.format(args.len()).as_bytes());
    out.put_slice(b"\r\n");
    for arg in args {
        out.put_u8(b'$');
        out.put_slice(digits.format(arg.len()).as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

impl FastReads {
    /// The fast reads of a single node reached over plain TCP, or `None`
    /// (Sentinel, Cluster, TLS, Unix sockets, bad URLs: the crate's path).
    pub fn for_node(options: &RedisOptions, client: &redis::Client) -> Option<Arc<FastReads>> {
        if !matches!(options.topology, Topology::Single { .. }) {
            return None;
        }
        let info = client.get_connection_info();
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return None;
        };
        let settings = info.redis_settings();
        let mut setup = BytesMut::new();
        let mut setup_replies = 0;
        // As the crate does: `AUTH` only with a password (a user alone
        // means nothing to Redis), `SELECT` only for another database.
        if let Some(password) = settings.password() {
            match settings.username() {
                Some(user) => encode(&mut setup, &[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => encode(&mut setup, &[b"AUTH", password.as_bytes()]),
            }
            setup_replies += 1;
        }
        if settings.db() != 0 {
            let mut db = itoa::Buffer::new();
            encode(
                &mut setup,
                &[b"SELECT", db.format(settings.db()).as_bytes()],
            );
            setup_replies += 1;
        }
        Some(Arc::new(FastReads {
            host: host.clone(),
            port: *port,
            setup: setup.to_vec(),
            setup_replies,
            timeout: options.timeout,
            idle_check: options.idle_check,
            connect_timeout: options.connect_timeout(),
            status: Mutex::new(Status::default()),
            opened: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }))
    }

    /// Fast connections opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Calls answered on fast connections so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Sends `commands` (each a command and its arguments, each answered
    /// by one reply) now and returns their values, nil as `None`; `None`
    /// when the call must take the crate's path (no fast connection fit to
    /// serve, an error reply, a value that is not UTF-8, a connection that
    /// broke).
    pub async fn read<const N: usize>(
        self: &Arc<Self>,
        commands: [&[&[u8]]; N],
    ) -> Option<[Option<String>; N]> {
        let conn = lock(&self.status).current.clone();
        let Some(conn) = conn else {
            self.open_soon();
            return None;
        };
        let now = Instant::now();
        let Some(slot) = conn.send(&commands, now, self) else {
            self.replace(&conn);
            return None;
        };
        let outcome = conn.wait(&slot).await;
        let outcome = outcome.and_then(|values| values.try_into().ok());
        if outcome.is_some() {
            self.served.fetch_add(1, Ordering::Relaxed);
        } else if lock(&conn.io).dead {
            self.replace(&conn);
        }
        outcome
    }

    /// Forgets `conn` (dead or unfit) and starts opening another.
    fn replace(self: &Arc<Self>, conn: &Arc<FastConn>) {
        let mut status = lock(&self.status);
        if status
            .current
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, conn))
        {
            status.current = None;
        }
        drop(status);
        self.open_soon();
    }

    /// Starts opening a connection in the background, unless one is being
    /// opened or the last attempt failed a moment ago.
    fn open_soon(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut status = lock(&self.status);
        if status.current.is_some()
            || status.connecting
            || status.not_before.is_some_and(|t| Instant::now() < t)
        {
            return;
        }
        status.connecting = true;
        drop(status);
        let guard = Connecting(self.clone());
        runtime.spawn(async move {
            let fast = &guard.0;
            let opened = tokio::time::timeout(fast.connect_timeout, fast.connect()).await;
            let mut status = lock(&fast.status);
            status.connecting = false;
            match opened {
                Ok(Ok(conn)) => {
                    let conn = Arc::new(conn);
                    tokio::spawn(flush_when_asked(
                        Arc::downgrade(&conn),
                        conn.flush_wanted.clone(),
                    ));
                    status.current = Some(conn);
                    status.not_before = None;
                    let id = fast.opened.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::debug!(target: "tokengate::store", host = %fast.host, port = fast.port, id, "fast Redis read connection opened");
                }
                Ok(Err(err)) => {
                    status.not_before = Some(Instant::now() + RETRY_AFTER);
                    tracing::debug!(target: "tokengate::store", host = %fast.host, port = fast.port, error = %err, "fast Redis read connection failed; reads take the usual path");
                }
                Err(_) => {
                    status.not_before = Some(Instant::now() + RETRY_AFTER);
                    tracing::debug!(target: "tokengate::store", host = %fast.host, port = fast.port, "fast Redis read connection timed out; reads take the usual path");
                }
            }
        });
    }

    /// Connects, then authenticates and selects the database.
    async fn connect(&self) -> std::io::Result<FastConn> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        stream.set_nodelay(true)?;
        if self.setup_replies > 0 {
            stream.write_all(&self.setup).await?;
            let mut input = BytesMut::with_capacity(512);
            let mut answered = 0;
            while answered < self.setup_replies {
                match parse(&input).map_err(std::io::Error::other)? {
                    Some((Reply::Simple(range), used)) if &input[range.clone()] == b"OK" => {
                        input.advance(used);
                        answered += 1;
                    }
                    // Never the reply's text: it may echo what was sent.
                    Some(_) => return Err(std::io::Error::other("AUTH or SELECT refused")),
                    None => {
                        if stream.read_buf(&mut input).await? == 0 {
                            return Err(std::io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                }
            }
            if !input.is_empty() {
                return Err(std::io::Error::other("more replies than commands"));
            }
        }
        Ok(FastConn {
            flush_wanted: Arc::new(Notify::new()),
            stream,
            io: Mutex::new(Io {
                dead: false,
                output: BytesMut::with_capacity(1024),
                input: BytesMut::with_capacity(READ_ROOM),
                pending: VecDeque::new(),
                last_heard: Instant::now(),
                reader: false,
            }),
        })
    }
}

/// Clears [`Status::connecting`] when the opening task ends in any way
/// (its runtime may be shut down before it finishes).
struct Connecting(Arc<FastReads>);

impl Drop for Connecting {
    fn drop(&mut self) {
        let mut status = lock(&self.0.status);
        if status.connecting {
            status.connecting = false;
            status.not_before = Some(Instant::now() + RETRY_AFTER);
        }
    }
}

impl FastConn {
    /// Queues `commands` with their slot and wakes the flusher;
    /// `None` when the connection is dead or unfit (see the module
    /// documentation).
    fn send(&self, commands: &[&[&[u8]]], now: Instant, limits: &FastReads) -> Option<Arc<Slot>> {
        let mut io = lock(&self.io);
        let stale = |io: &Io| {
            io.pending
                .front()
                .is_some_and(|oldest| now.saturating_duration_since(oldest.sent) >= limits.timeout)
        };
        if stale(&io) {
            // Its answer may be here, unread (its caller went away).
            io.advance(&self.stream, None);
        }
        let unfit = io.dead
            || match io.pending.front() {
                Some(oldest) => now.saturating_duration_since(oldest.sent) >= limits.timeout,
                None => now.saturating_duration_since(io.last_heard) >= limits.idle_check,
            };
        if unfit {
            io.kill();
            return None;
        }
        for command in commands {
            encode(&mut io.output, command);
        }
        let slot = Arc::new(Slot {
            expected: commands.len(),
            sent: now,
            state: Mutex::new(SlotState {
                values: Vec::with_capacity(commands.len()),
                ..SlotState::default()
            }),
        });
        io.pending.push_back(slot.clone());
        drop(io);
        // Written by the flusher, after the tasks already runnable queued
        // theirs (still after this call began: the read stays fresh).
        self.flush_wanted.notify_one();
        Some(slot)
    }

    /// Waits for `mine` to be answered. One waiting call at a time is the
    /// reader: it waits for the socket and reads for every call; the others
    /// wait for their slot. A reader that leaves (answered or abandoned)
    /// hands the role to the first call still waiting, so that a reply
    /// wakes the calls it answers and no one else.
    async fn wait(&self, mine: &Arc<Slot>) -> Option<Vec<Option<String>>> {
        let mut role = Role {
            conn: self,
            mine,
            reader: false,
        };
        loop {
            if !role.reader {
                std::future::poll_fn(|cx| {
                    let mut io = lock(&self.io);
                    let mut state = lock(&mine.state);
                    if state.outcome.is_some() {
                        return Poll::Ready(());
                    }
                    if !io.reader {
                        io.reader = true;
                        role.reader = true;
                        return Poll::Ready(());
                    }
                    register(&mut state.waker, cx.waker());
                    Poll::Pending
                })
                .await;
            }
            // (Not in the `if let`: the lock would be held while `role` drops.)
            let outcome = lock(&mine.state).outcome.take();
            if let Some(outcome) = outcome {
                return outcome;
            }
            // Only the flusher writes (all of a tick's commands at once).
            let readable = self.stream.readable();
            tokio::pin!(readable);
            let woken = std::future::poll_fn(|cx| {
                {
                    let mut state = lock(&mine.state);
                    if state.outcome.is_some() {
                        return Poll::Ready(Ok(()));
                    }
                    register(&mut state.waker, cx.waker());
                }
                readable.as_mut().poll(cx)
            })
            .await;
            let mut io = lock(&self.io);
            if woken.is_err() {
                io.kill();
                continue;
            }
            io.advance(&self.stream, Some(mine));
        }
    }
}

fn register(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(known) if known.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

/// A call waiting on a connection; when it goes (answered, failed or
/// abandoned), its waker is forgotten and, if it was the reader, the
/// first call still waiting is woken to read in its place.
struct Role<'a> {
    conn: &'a FastConn,
    mine: &'a Arc<Slot>,
    reader: bool,
}

impl Drop for Role<'_> {
    fn drop(&mut self) {
        let mut io = lock(&self.conn.io);
        lock(&self.mine.state).waker = None;
        if self.reader {
            io.reader = false;
            let next = io
                .pending
                .iter()
                .find_map(|slot| lock(&slot.state).waker.clone());
            drop(io);
            if let Some(waker) = next {
                waker.wake();
            }
        }
    }
}

impl Io {
    /// Writes what the socket takes now.
    fn flush(&mut self, stream: &TcpStream) -> std::io::Result<()> {
        while !self.output.is_empty() {
            match stream.try_write(&self.output) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.output.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what is there and hands replies out, until `mine` (if any) is
    /// answered or nothing more can be read now.
    fn advance(&mut self, stream: &TcpStream, mine: Option<&Arc<Slot>>) {
        if self.dead {
            return;
        }
        while mine.is_none_or(|mine| lock(&mine.state).outcome.is_none()) {
            if self.input.capacity() - self.input.len() < READ_ROOM / 4 {
                self.input.reserve(READ_ROOM);
            }
            match stream.try_read_buf(&mut self.input) {
                Ok(0) => {
                    self.kill();
                    break;
                }
                Ok(_) => {
                    if self.hand_out(mine).is_err() {
                        self.kill();
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.kill();
                    break;
                }
            }
        }
    }

    /// Gives every complete reply in the input to its slot, in order.
    fn hand_out(&mut self, mine: Option<&Arc<Slot>>) -> Result<(), ProtocolError> {
        while let Some((reply, used)) = parse(&self.input)? {
            let Some(slot) = self.pending.front() else {
                return Err(ProtocolError("a reply nobody asked for"));
            };
            let mut state = lock(&slot.state);
            let value = match reply {
                Reply::Nil => Some(None),
                Reply::Bulk(range) => std::str::from_utf8(&self.input[range])
                    .ok()
                    .map(|text| Some(text.to_owned())),
                Reply::Simple(_) | Reply::Integer | Reply::Error => None,
            };
            match value {
                Some(value) => state.values.push(value),
                None => {
                    state.refer = true;
                    state.values.push(None);
                }
            }
            let complete = state.values.len() == slot.expected;
            if complete {
                // It was sent after the last reply this connection had
                // before: the connection was alive at least then.
                self.last_heard = self.last_heard.max(slot.sent);
                let values = std::mem::take(&mut state.values);
                state.outcome = Some((!state.refer).then_some(values));
                let waker = state.waker.take();
                drop(state);
                let slot = self.pending.pop_front();
                // The caller reading now needs no wake-up.
                if let (Some(waker), Some(slot)) = (waker, slot) {
                    if !mine.is_some_and(|mine| Arc::ptr_eq(&slot, mine)) {
                        waker.wake();
                    }
                }
            }
            self.input.advance(used);
        }
        Ok(())
    }

    /// Marks the connection dead and sends every waiting call to the
    /// crate's path.
    fn kill(&mut self) {
        self.dead = true;
        self.output.clear();
        self.input.clear();
        for slot in self.pending.drain(..) {
            let mut state = lock(&slot.state);
            state.outcome = Some(None);
            if let Some(waker) = state.waker.take() {
                drop(state);
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(mut buf: &[u8]) -> Result<Vec<String>, ProtocolError> {
        let mut seen = Vec::new();
        while let Some((reply, used)) = parse(buf)? {
            seen.push(match reply {
                Reply::Bulk(r) => format!("bulk:{}", String::from_utf8_lossy(&buf[r])),
                Reply::Simple(r) => format!("simple:{}", String::from_utf8_lossy(&buf[r])),
                other => format!("{other:?}"),
            });
            buf = &buf[used..];
        }
        if buf.is_empty() {
            Ok(seen)
        } else {
            Ok(seen
                .into_iter()
                .chain([format!("rest:{}", buf.len())])
                .collect())
        }
    }

    const STREAM: &[u8] =
        b"$5\r\nhello\r\n$-1\r\n-ERR wrong\r\n+OK\r\n:42\r\n:-7\r\n$0\r\n\r\n$6\r\na\r\nb\r\n\r\n";

    #[test]
    fn every_kind_of_reply_is_read() {
        assert_eq!(
            all(STREAM).unwrap(),
            [
                "bulk:hello",
                "Nil",
                "Error",
                "simple:OK",
                "Integer",
                "Integer",
                "bulk:",
                "bulk:a\r\nb\r\n"
            ]
        );
    }

    #[test]
    fn a_reply_split_anywhere_is_incomplete_until_its_last_byte() {
        let mut offset = 0;
        let mut replies = 0;
        while offset < STREAM.len() {
            let rest = &STREAM[offset..];
            let (_, used) = parse(rest).unwrap().unwrap();
            for cut in 0..used {
                assert_eq!(parse(&rest[..cut]), Ok(None), "{offset} cut at {cut}");
            }
            offset += used;
            replies += 1;
        }
        assert_eq!(replies, 8);
    }

    #[test]
    fn garbage_and_oversize_are_protocol_errors() {
        for bad in [
            &b"*1\r\n$1\r\na\r\n"[..],
            b"_\r\n",
            b"%1\r\n",
            b"hello\r\n",
            b"$abc\r\n",
            b"$-2\r\n",
            b"$\r\n",
            b"$3\r\nabcde\r\n",
            b":12a\r\n",
            b"$5\nhello",
            b"$16777217\r\n",
            b"$99999999999999999999\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = vec![b'-'; MAX_LINE + 2];
        assert!(parse(&long).is_err());
        let mut short = vec![b'-'; MAX_LINE];
        assert_eq!(parse(&short), Ok(None));
        short.extend_from_slice(b"\r\n");
        assert_eq!(parse(&short), Ok(Some((Reply::Error, MAX_LINE + 2))));
        // The largest bulk accepted is announced like any other.
        let header = format!("${MAX_BULK}\r\n");
        assert_eq!(parse(header.as_bytes()), Ok(None));
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode(&mut out, &[b"GET", b"tg:cred:{a}"]);
        encode(&mut out, &[b"HGET", b"k", b""]);
        assert_eq!(
            &out[..],
            b"*2\r\n$3\r\nGET\r\n$11\r\ntg:cred:{a}\r\n*3\r\n$4\r\nHGET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
    }
}
