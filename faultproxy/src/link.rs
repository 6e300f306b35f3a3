//! One proxied connection: two directions (upstream: client → server, downstream: server → client), each
//! reading its source, passing the data through its chain of toxics and writing it to its destination.
//! Both directions run in the connection's one task; a direction without toxics copies straight through.
//!
//! As in Toxiproxy, closing is not half-closing: when a direction ends (its source ended, a toxic closed
//! it, a write failed) it closes its destination socket, the other direction then sees its source closed,
//! runs its own end of stream through its toxics (slow_close) and closes the other socket.
//!
//! The chain of a direction changes under a live connection (toxics added, updated or removed). Data a
//! toxic holds is tagged with that toxic's position; on a change, toxics that restart (see
//! `toxics::toxicity`) let go of what they hold, which moves on through the rest of the new chain.

use std::{
    collections::VecDeque,
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::Poll,
    time::{Duration, Instant},
};

use bytes::Bytes;
use chaoslab_core::toxic::{Stream, ToxicType};
use tokio::{net::TcpStream, sync::watch};

use crate::{
    chain::{Chain, StoredToxic},
    toxics::{
        Params, bandwidth, latency, limit_data, ms, slicer,
        toxicity::{self, Fate},
    },
};

/// Toxiproxy reads with `io.Copy`'s 32 KiB buffer; chunk sizes matter to slicer, bandwidth and limit_data.
const READ_SIZE: usize = 32 * 1024;
/// Chunks read ahead while a latency toxic holds data (Toxiproxy's latency buffer).
const READ_AHEAD: usize = 1024;

/// Serves one accepted client: dials the upstream (closing the client if that fails, as Toxiproxy does),
/// then runs both directions until both have closed. Dropping the future closes both sockets.
pub(crate) async fn serve(client: TcpStream, upstream_addr: Arc<str>, chain: watch::Receiver<Chain>) {
    let upstream = match TcpStream::connect(&*upstream_addr).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(upstream = %upstream_addr, error = %e, "cannot reach the upstream; closing the client");
            return;
        }
    };
    // Go sets TCP_NODELAY on every connection; without it small replies wait for Nagle.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    // A reset_peer toxic present when the connection starts makes every close of it a reset (SO_LINGER 0).
    let linger0 = chain.borrow().iter().any(|t| t.toxic.kind == ToxicType::ResetPeer);
    if linger0 {
        for s in [&client, &upstream] {
            let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
        }
    }
    let conn = Conn { client, upstream, closed: watch::channel(0).0, linger0 };
    let up = Direction::new(&conn, Stream::Upstream, chain.clone());
    let down = Direction::new(&conn, Stream::Downstream, chain);
    tokio::join!(up.run(), down.run());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client = 1,
    Upstream = 2,
}

/// The two sockets, and which of them a direction has closed.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    closed: watch::Sender<u8>,
    linger0: bool,
}

impl Conn {
    fn socket(&self, side: Side) -> &TcpStream {
        match side {
            Side::Client => &self.client,
            Side::Upstream => &self.upstream,
        }
    }

    /// Closes a socket as Go's `Close` does for the peer: FIN now (and the other direction's reads end).
    /// With SO_LINGER 0 the socket is left to be dropped, which sends the reset, once both directions end.
    fn close(&self, side: Side) {
        if !self.linger0 {
            let _ = socket2::SockRef::from(self.socket(side)).shutdown(std::net::Shutdown::Both);
        }
        self.closed.send_modify(|m| *m |= side as u8);
    }
}

struct Chunk {
    data: Bytes,
    /// When it was read, or when the previous latency toxic let it go (latency counts from here).
    read_at: Instant,
}

/// A toxic running on this link.
struct Stage {
    id: u64,
    rev: u64,
    params: Params,
    /// The toxicity draw: acts, or passes data through untouched.
    active: bool,
    /// limit_data: bytes let through so far (kept across restarts, as Toxiproxy keeps a stub's state).
    sent: i64,
    /// bandwidth: Toxiproxy's running sleep, in ns.
    debt_ns: i64,
    /// timeout > 0: when it closes the link unless data arrives first.
    deadline: Option<Instant>,
    /// packet_loss: the next chunk is the connection's first (it waits for the handshake too).
    handshake: bool,
    /// packet_loss: whether the last transmission drawn was lost (for correlated losses).
    previous_lost: bool,
}

impl Stage {
    /// `at_connect`: the toxic starts with the connection, not added to it later.
    fn start(t: &StoredToxic, now: Instant, rng: &mut fastrand::Rng, at_connect: bool) -> Self {
        let params = Params::of(&t.toxic);
        let deadline = match params {
            Params::Timeout { timeout_ms } if timeout_ms > 0 => Some(now + ms(timeout_ms)),
            _ => None,
        };
        Stage {
            id: t.id,
            rev: t.rev,
            params,
            active: toxicity::acts(t.toxic.toxicity, rng.f32()),
            sent: 0,
            debt_ns: 0,
            deadline,
            handshake: at_connect,
            previous_lost: false,
        }
    }
}

/// Pending steps of the data being processed; `pos` is the toxic a step belongs to (or data is about to
/// enter; `stages.len()` is the writer).
enum Work {
    Data {
        pos: usize,
        chunk: Chunk,
    },
    /// A toxic holds the data behind it until then (latency).
    WaitUntil {
        pos: usize,
        until: Instant,
    },
    /// A toxic pauses for this long from when the step is reached (slicer delay, bandwidth slices).
    Sleep {
        pos: usize,
        dur: Duration,
    },
    /// bandwidth's wait before the rest of a chunk; settles the toxic's running sleep.
    BandwidthRest {
        pos: usize,
        wait_ns: i64,
    },
    /// bandwidth at rate ≤ 0: holds until the toxic changes.
    Stall {
        pos: usize,
    },
    /// The link ends from `pos` on, after an uninterruptible pause (reset_peer's timeout).
    Close {
        pos: usize,
        after: Duration,
    },
}

/// What ended a wait.
enum Event {
    Ready,
    /// The chain changed; the caller applies it with `reconfigure`.
    Changed,
    /// The timeout toxic at this position closed the link.
    TimedOut(usize),
}

#[derive(Clone, Copy)]
struct Mode {
    /// Return as soon as a chunk is available (or the source ended).
    want_data: bool,
    /// Watch timeout toxics.
    timeouts: bool,
    /// Read ahead into the queue while a latency toxic holds data.
    read_ahead: bool,
}

const NEXT_CHUNK: Mode = Mode { want_data: true, timeouts: true, read_ahead: true };
const HOLD: Mode = Mode { want_data: false, timeouts: true, read_ahead: true };
const CLOSING: Mode = Mode { want_data: false, timeouts: false, read_ahead: false };

/// How a chain change maps the old chain onto the new one.
struct Remap {
    /// Old position → new position, for toxics that run on unchanged.
    kept: Vec<Option<usize>>,
    /// Old position (or the writer, at the end) → where data about to enter it enters the new chain.
    entry: Vec<usize>,
    /// A timeout toxic was removed: the link closes from this position.
    close_at: Option<usize>,
}

struct Closed;

struct Direction<'a> {
    conn: &'a Conn,
    stream: Stream,
    source: Side,
    dest: Side,
    chain_rx: watch::Receiver<Chain>,
    chain_gone: bool,
    closed_rx: watch::Receiver<u8>,
    stages: Vec<Stage>,
    queue: VecDeque<Chunk>,
    source_done: bool,
    /// A stack: the next step is last.
    work: Vec<Work>,
    rng: fastrand::Rng,
    buf: Box<[u8]>,
    /// The chain has been applied once (the toxics of the first application start with the connection).
    started: bool,
}

impl<'a> Direction<'a> {
    fn new(conn: &'a Conn, stream: Stream, chain_rx: watch::Receiver<Chain>) -> Self {
        let (source, dest) = match stream {
            Stream::Upstream => (Side::Client, Side::Upstream),
            Stream::Downstream => (Side::Upstream, Side::Client),
        };
        Direction {
            conn,
            stream,
            source,
            dest,
            chain_rx,
            chain_gone: false,
            closed_rx: conn.closed.subscribe(),
            stages: Vec::new(),
            queue: VecDeque::new(),
            source_done: false,
            work: Vec::new(),
            rng: fastrand::Rng::new(),
            buf: vec![0; READ_SIZE].into_boxed_slice(),
            started: false,
        }
    }

    async fn run(mut self) {
        self.reconfigure();
        loop {
            if self.chain_rx.has_changed().unwrap_or(false) {
                let r = self.reconfigure();
                if let Some(at) = r.close_at {
                    return self.close_from(at).await;
                }
            }
            if self.stages.is_empty() && self.queue.is_empty() {
                match self.pass_through().await {
                    Pass::Changed => {
                        let r = self.reconfigure();
                        if let Some(at) = r.close_at {
                            return self.close_from(at).await;
                        }
                        continue;
                    }
                    Pass::ChainGone => {
                        self.chain_gone = true;
                        continue;
                    }
                    Pass::Ended => return self.close_from(0).await,
                    Pass::WriteFailed => return self.conn.close(self.dest),
                }
            }
            let chunk = match self.queue.pop_front() {
                Some(c) => c,
                None if self.source_done => return self.close_from(0).await,
                None => match self.wait(None, NEXT_CHUNK).await {
                    Event::Ready => continue,
                    Event::Changed => {
                        let r = self.reconfigure();
                        if let Some(at) = r.close_at {
                            return self.close_from(at).await;
                        }
                        continue;
                    }
                    Event::TimedOut(at) => return self.close_from(at + 1).await,
                },
            };
            self.work.push(Work::Data { pos: 0, chunk });
            if self.run_work().await.is_err() {
                return;
            }
        }
    }

    /// No toxics: copies straight through until the chain changes or the stream ends. The watches for a
    /// chain change and for the other direction closing the source stay armed across reads (re-arming
    /// them at every read costs more than the copy).
    async fn pass_through(&mut self) -> Pass {
        let bit = self.source as u8;
        let src = self.conn.socket(self.source);
        let dest = self.conn.socket(self.dest);
        let buf = &mut self.buf;
        let chain_rx = &mut self.chain_rx;
        let chain_gone = self.chain_gone;
        let changed = async move {
            if chain_gone {
                std::future::pending::<()>().await;
            }
            chain_rx.changed().await.is_ok()
        };
        let closed = self.closed_rx.wait_for(move |m| m & bit != 0);
        tokio::pin!(changed, closed);
        let mut reads = 0u32;
        let mut drained = false;
        loop {
            let read = if drained { Err(io::ErrorKind::WouldBlock.into()) } else { read_draining(src, buf) };
            match read {
                Ok((0, _)) => return Pass::Ended,
                Ok((n, emptied)) => {
                    drained = emptied;
                    if write_all(dest, &buf[..n]).await.is_err() {
                        return Pass::WriteFailed;
                    }
                    // A busy source never blocks: look at the watches now and then.
                    reads = reads.wrapping_add(1);
                    if reads.is_multiple_of(16) {
                        if let Poll::Ready(ok) = poll_once(changed.as_mut()).await {
                            return if ok { Pass::Changed } else { Pass::ChainGone };
                        }
                        if poll_once(closed.as_mut()).await.is_ready() {
                            return Pass::Ended;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drained = false;
                    tokio::select! {
                        r = src.readable() => if r.is_err() { return Pass::Ended },
                        ok = &mut changed => return if ok { Pass::Changed } else { Pass::ChainGone },
                        _ = &mut closed => return Pass::Ended,
                    }
                }
                Err(_) => return Pass::Ended,
            }
        }
    }

    /// Applies the current chain: toxics that restart draw again (see `toxics::toxicity`).
    fn reconfigure(&mut self) -> Remap {
        let chain = self.chain_rx.borrow_and_update().clone();
        let new: Vec<&Arc<StoredToxic>> = chain.iter().filter(|t| t.toxic.stream == self.stream).collect();
        let old_ids: Vec<(u64, u64)> = self.stages.iter().map(|s| (s.id, s.rev)).collect();
        let new_ids: Vec<(u64, u64)> = new.iter().map(|t| (t.id, t.rev)).collect();
        let fates = toxicity::plan(&old_ids, &new_ids);
        let entry = toxicity::entry_points(&old_ids, &new_ids);
        let mut old: Vec<Option<Stage>> = std::mem::take(&mut self.stages).into_iter().map(Some).collect();
        let mut kept = vec![None; old.len()];
        let now = Instant::now();
        let at_connect = !std::mem::replace(&mut self.started, true);
        for (ni, (t, fate)) in new.iter().zip(fates).enumerate() {
            let stage = match fate {
                Fate::Keep(oi) => {
                    kept[oi] = Some(ni);
                    old[oi].take().expect("each old toxic maps once")
                }
                Fate::Restart(oi) => {
                    let prev = old[oi].take().expect("each old toxic maps once");
                    Stage { sent: prev.sent, ..Stage::start(t, now, &mut self.rng, false) }
                }
                Fate::Fresh => Stage::start(t, now, &mut self.rng, at_connect),
            };
            self.stages.push(stage);
        }
        // Removing a timeout toxic closes the link where it stood (Toxiproxy's cleanup), drawn or not.
        let close_at = old
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|s| matches!(s.params, Params::Timeout { .. })))
            .map(|(i, _)| entry[i])
            .min();
        Remap { kept, entry, close_at }
    }

    /// Re-tags pending steps after a change: data moves to its entry point in the new chain; a toxic's
    /// own pause survives only if that toxic runs on unchanged.
    fn remap_work(&mut self, r: &Remap) {
        let kept = |pos: usize| r.kept.get(pos).copied().flatten();
        self.work = std::mem::take(&mut self.work)
            .into_iter()
            .filter_map(|w| match w {
                Work::Data { pos, chunk } => Some(Work::Data { pos: r.entry[pos], chunk }),
                Work::Close { pos, after } => Some(Work::Close { pos: r.entry[pos], after }),
                Work::WaitUntil { pos, until } => kept(pos).map(|pos| Work::WaitUntil { pos, until }),
                Work::Sleep { pos, dur } => kept(pos).map(|pos| Work::Sleep { pos, dur }),
                Work::BandwidthRest { pos, wait_ns } => kept(pos).map(|pos| Work::BandwidthRest { pos, wait_ns }),
                Work::Stall { pos } => kept(pos).map(|pos| Work::Stall { pos }),
            })
            .collect();
    }

    /// Runs pending steps until none is left; Err when the link has closed.
    async fn run_work(&mut self) -> Result<(), Closed> {
        while let Some(w) = self.work.pop() {
            match w {
                Work::Data { pos, chunk } if pos >= self.stages.len() => {
                    if write_all(self.conn.socket(self.dest), &chunk.data).await.is_err() {
                        self.work.clear();
                        self.conn.close(self.dest);
                        return Err(Closed);
                    }
                }
                Work::Data { pos, chunk } => self.enter(pos, chunk),
                Work::WaitUntil { pos, until } => {
                    self.hold(pos, Some(until)).await?;
                }
                Work::Sleep { pos, dur } => {
                    self.hold(pos, Some(Instant::now() + dur)).await?;
                }
                Work::BandwidthRest { pos, wait_ns } => {
                    let start = Instant::now();
                    let until = start + Duration::from_nanos(wait_ns.max(0) as u64);
                    if let Some(pos) = self.hold(pos, Some(until)).await? {
                        // Toxiproxy: `sleep -= time.Since(start)`, so oversleeping is credited.
                        let waited = start.elapsed().as_nanos().min(i64::MAX as u128) as i64;
                        self.stages[pos].debt_ns = wait_ns.saturating_sub(waited);
                    }
                }
                Work::Stall { pos } => {
                    self.hold(pos, None).await?;
                }
                Work::Close { pos, after } => {
                    if !after.is_zero() {
                        tokio::time::sleep(after).await;
                    }
                    self.close_from(pos).await;
                    return Err(Closed);
                }
            }
        }
        Ok(())
    }

    /// Data enters the toxic at `pos`: queues what the toxic does with it.
    fn enter(&mut self, pos: usize, chunk: Chunk) {
        let next = pos + 1;
        let stage = &mut self.stages[pos];
        if !stage.active {
            self.work.push(Work::Data { pos: next, chunk });
            return;
        }
        let now = Instant::now();
        let len = chunk.data.len();
        let mut steps = Vec::new();
        match stage.params {
            Params::Latency { latency_ms, jitter_ms } => {
                let delay = latency::delay(latency_ms, jitter_ms, self.rng.f64());
                let (until, carried) = latency::release(chunk.read_at, now, delay);
                steps.push(Work::WaitUntil { pos, until });
                steps.push(Work::Data { pos: next, chunk: Chunk { data: chunk.data, read_at: carried } });
            }
            Params::PacketLoss(loss) => {
                let rng = &mut self.rng;
                let late = loss.late(stage.handshake, &mut stage.previous_lost, &mut || rng.f64());
                stage.handshake = false;
                // As latency: late from its read time, and in order behind the chunks before it.
                let (until, carried) = latency::release(chunk.read_at, now, late);
                steps.push(Work::WaitUntil { pos, until });
                steps.push(Work::Data { pos: next, chunk: Chunk { data: chunk.data, read_at: carried } });
            }
            Params::Timeout { timeout_ms } => {
                // The data is dropped; data keeps the link open for another `timeout`.
                if timeout_ms > 0 {
                    stage.deadline = Some(now + ms(timeout_ms));
                }
            }
            Params::SlowClose { .. } => steps.push(Work::Data { pos: next, chunk }),
            Params::ResetPeer { timeout_ms } => steps.push(Work::Close { pos: next, after: ms(timeout_ms) }),
            Params::LimitData { bytes } => {
                let step = limit_data::step(bytes, stage.sent, len);
                stage.sent += step.pass as i64;
                if step.pass > 0 {
                    let data = chunk.data.slice(..step.pass);
                    steps.push(Work::Data { pos: next, chunk: Chunk { data, read_at: chunk.read_at } });
                }
                if step.close {
                    steps.push(Work::Close { pos: next, after: Duration::ZERO });
                }
            }
            Params::Bandwidth { rate_kb } => match bandwidth::plan(rate_kb, len, stage.debt_ns) {
                bandwidth::Plan::Stall => {
                    steps.push(Work::Stall { pos });
                    steps.push(Work::Data { pos: next, chunk });
                }
                bandwidth::Plan::Paced { slices, rest_wait_ns, rest } => {
                    let mut off = 0;
                    for s in slices {
                        steps.push(Work::Sleep { pos, dur: bandwidth::SLICE });
                        let data = chunk.data.slice(off..off + s);
                        steps.push(Work::Data { pos: next, chunk: Chunk { data, read_at: chunk.read_at } });
                        off += s;
                    }
                    steps.push(Work::BandwidthRest { pos, wait_ns: rest_wait_ns });
                    if rest > 0 {
                        let data = chunk.data.slice(off..);
                        steps.push(Work::Data { pos: next, chunk: Chunk { data, read_at: chunk.read_at } });
                    }
                }
            },
            Params::Slicer { average_size, size_variation, delay_us } => {
                let rng = &mut self.rng;
                for (a, b) in slicer::pieces(len, average_size, size_variation, &mut |n| rng.i64(0..n)) {
                    let data = chunk.data.slice(a..b);
                    steps.push(Work::Data { pos: next, chunk: Chunk { data, read_at: chunk.read_at } });
                    if delay_us > 0 {
                        steps.push(Work::Sleep { pos, dur: Duration::from_micros(delay_us as u64) });
                    }
                }
            }
        }
        self.work.extend(steps.into_iter().rev());
    }

    /// Waits for the toxic at `pos` to let go (None: until it changes). Returns its position if the wait
    /// ran out, None if a change restarted or removed it first (it lets go of what it holds).
    async fn hold(&mut self, mut pos: usize, until: Option<Instant>) -> Result<Option<usize>, Closed> {
        loop {
            match self.wait(until, HOLD).await {
                Event::Ready => return Ok(Some(pos)),
                Event::Changed => {
                    let r = self.reconfigure();
                    if let Some(at) = r.close_at {
                        self.close_from(at).await;
                        return Err(Closed);
                    }
                    self.remap_work(&r);
                    match r.kept.get(pos).copied().flatten() {
                        Some(p) => pos = p,
                        None => return Ok(None),
                    }
                }
                Event::TimedOut(at) => {
                    self.close_from(at + 1).await;
                    return Err(Closed);
                }
            }
        }
    }

    /// The end of the stream enters the chain at `pos`: slow_close and reset_peer delay it, then the
    /// destination is closed. Pending data is dropped, as Toxiproxy's closed toxics drop it.
    async fn close_from(&mut self, mut pos: usize) {
        self.work.clear();
        'stages: while pos < self.stages.len() {
            let stage = &self.stages[pos];
            if stage.active {
                match stage.params {
                    Params::SlowClose { delay_ms } => {
                        let until = Instant::now() + ms(delay_ms);
                        loop {
                            match self.wait(Some(until), CLOSING).await {
                                Event::Ready | Event::TimedOut(_) => break,
                                Event::Changed => {
                                    let r = self.reconfigure();
                                    match r.kept.get(pos).copied().flatten() {
                                        Some(p) => pos = p,
                                        None => {
                                            // Restarted (waits again, as configured now) or removed.
                                            pos = r.entry[pos];
                                            continue 'stages;
                                        }
                                    }
                                }
                            }
                        }
                    }
                    Params::ResetPeer { timeout_ms } => tokio::time::sleep(ms(timeout_ms)).await,
                    _ => {}
                }
            }
            pos += 1;
        }
        self.conn.close(self.dest);
    }

    /// The earliest timeout toxic due to close the link, with its position.
    fn next_timeout(&self) -> Option<(Instant, usize)> {
        self.stages.iter().enumerate().filter(|(_, s)| s.active).filter_map(|(i, s)| s.deadline.map(|d| (d, i))).min()
    }

    /// Waits for `until`, a chain change, a timeout toxic, or (in `NEXT_CHUNK` mode) data, reading the
    /// source meanwhile when data is wanted or a latency toxic lets it read ahead.
    async fn wait(&mut self, until: Option<Instant>, mode: Mode) -> Event {
        loop {
            if mode.want_data && (!self.queue.is_empty() || self.source_done) {
                return Event::Ready;
            }
            let timeout = if mode.timeouts { self.next_timeout() } else { None };
            // A holding toxic lets the source be read on meanwhile: later chunks are timed from
            // their own read (TCP's receiver, too, buffers what arrives behind a lost segment).
            let latency_active = self
                .stages
                .iter()
                .any(|s| s.active && matches!(s.params, Params::Latency { .. } | Params::PacketLoss(_)));
            let may_read = !self.source_done
                && (mode.want_data || (mode.read_ahead && latency_active && self.queue.len() < READ_AHEAD));
            let bit = self.source as u8;
            let src = self.conn.socket(self.source);
            let woke = tokio::select! {
                biased;
                r = self.chain_rx.changed(), if !self.chain_gone => Woke::Changed(r.is_ok()),
                _ = sleep_until(until), if until.is_some() => Woke::Until,
                _ = sleep_until(timeout.map(|t| t.0)), if timeout.is_some() => Woke::Timeout,
                _ = self.closed_rx.wait_for(|m| m & bit != 0), if !self.source_done => Woke::SourceClosed,
                r = src.readable(), if may_read => Woke::Readable(r.is_ok()),
            };
            match woke {
                Woke::Changed(true) => return Event::Changed,
                Woke::Changed(false) => self.chain_gone = true,
                Woke::Until => return Event::Ready,
                Woke::Timeout => return Event::TimedOut(timeout.map_or(0, |t| t.1)),
                Woke::SourceClosed | Woke::Readable(false) => self.source_done = true,
                Woke::Readable(true) => self.read_once(),
            }
        }
    }

    fn read_once(&mut self) {
        match self.conn.socket(self.source).try_read(&mut self.buf) {
            Ok(0) => self.source_done = true,
            Ok(n) => {
                self.queue.push_back(Chunk { data: Bytes::copy_from_slice(&self.buf[..n]), read_at: Instant::now() })
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.source_done = true,
        }
    }
}

/// What a `select!` in a wait saw (handled after the select, which borrows the direction).
enum Woke {
    Changed(bool),
    Until,
    Timeout,
    SourceClosed,
    Readable(bool),
}

enum Pass {
    /// The chain changed (seen, not yet applied).
    Changed,
    ChainGone,
    Ended,
    WriteFailed,
}

/// Polls a future once: Ready if it is done, Pending otherwise (its waker stays registered).
async fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    let mut f = Some(f);
    std::future::poll_fn(|cx| Poll::Ready(f.take().expect("polled once").poll(cx))).await
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// One read, and whether it emptied the socket. A read shorter than the buffer took all there was,
/// so the socket's readiness is cleared with it: the next wait goes straight to epoll instead of
/// first making a read that can only fail with EAGAIN (one syscall in three on a request-reply
/// stream). Safe against data that arrives meanwhile: tokio clears readiness only if no new event
/// came since it was observed.
fn read_draining(sock: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    use std::io::Read;
    let mut short = None;
    let res = sock.try_io(tokio::io::Interest::READABLE, || {
        let n = (&*socket2::SockRef::from(sock)).read(buf)?;
        if n > 0 && n < buf.len() {
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (res, short) {
        (_, Some(n)) => Ok((n, true)),
        (Ok(n), None) => Ok((n, false)),
        (Err(e), None) => Err(e),
    }
}

async fn write_all(sock: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match sock.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => sock.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
