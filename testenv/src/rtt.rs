//! What a client sees of a link: the round trips of PING to a RESP server, on long-lived or on new
//! connections, and their distribution. Used to hold a proxy's model of packet loss against the
//! kernel's real loss.

use std::{
    fmt,
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
    time::timeout,
};

/// A round trip at least this long was retransmitted (Linux's minimum retransmission timeout).
pub const SLOW: Duration = Duration::from_millis(200);
/// A round trip longer than this is a timeout to a client with chaoslab-loadgen's default.
pub const TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connections {
    /// Each worker keeps one connection (replaced when a PING hits the cap); the round trip is the
    /// PING's. A connection counts once its first PING was answered within the cap, as a client's
    /// pool holds only connections that work.
    LongLived,
    /// Each sample is a new connection: connect, PING, reply.
    New,
}

/// How to measure: `samples` round trips split over `workers` concurrent connections, each capped
/// at `cap` (a sample that reaches it, or whose connection fails, counts as `cap`), all within
/// `budget`.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub connections: Connections,
    pub workers: usize,
    pub samples: usize,
    pub cap: Duration,
    pub budget: Duration,
}

/// Measures round trips to the RESP server at `addr`. Fewer than `samples` come back if the
/// budget runs out first.
pub async fn round_trips(addr: SocketAddr, probe: Probe) -> Vec<Duration> {
    let deadline = Instant::now() + probe.budget;
    let each = probe.samples.div_ceil(probe.workers.max(1));
    let mut workers = JoinSet::new();
    for _ in 0..probe.workers.max(1) {
        workers.spawn(async move {
            match probe.connections {
                Connections::LongLived => long_lived(addr, each, probe.cap, deadline).await,
                Connections::New => new_connections(addr, each, probe.cap, deadline).await,
            }
        });
    }
    workers.join_all().await.concat()
}

async fn long_lived(addr: SocketAddr, n: usize, cap: Duration, deadline: Instant) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    let mut conn = None;
    while out.len() < n && Instant::now() < deadline {
        let Some(c) = conn.as_mut() else {
            conn = working_connection(addr, cap).await;
            continue;
        };
        let t = Instant::now();
        match timeout(cap, ping(c)).await {
            Ok(Ok(())) => out.push(t.elapsed()),
            // Counted as a failed request; the client would drop the connection.
            Ok(Err(_)) | Err(_) => {
                out.push(cap);
                conn = None;
            }
        }
    }
    out
}

/// A connection whose first PING was answered within `cap`, or None.
async fn working_connection(addr: SocketAddr, cap: Duration) -> Option<TcpStream> {
    timeout(cap, async {
        let mut c = connect(addr).await?;
        ping(&mut c).await?;
        Ok::<_, std::io::Error>(c)
    })
    .await
    .ok()?
    .ok()
}

async fn new_connections(addr: SocketAddr, n: usize, cap: Duration, deadline: Instant) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n && Instant::now() < deadline {
        let t = Instant::now();
        let answered = timeout(cap, async { ping(&mut connect(addr).await?).await }).await;
        out.push(if matches!(answered, Ok(Ok(()))) { t.elapsed() } else { cap });
    }
    out
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let c = TcpStream::connect(addr).await?;
    // A client sends each request at once; Nagle would hold a PING behind an unacknowledged one.
    c.set_nodelay(true)?;
    Ok(c)
}

/// One PING and its reply. A connection may fail under heavy loss (a reset), but loss never
/// corrupts data: another reply is a bug.
async fn ping(c: &mut TcpStream) -> std::io::Result<()> {
    c.write_all(b"PING\r\n").await?;
    let mut reply = [0u8; 7];
    c.read_exact(&mut reply).await?;
    assert_eq!(&reply, b"+PONG\r\n");
    Ok(())
}

/// The distribution of some round trips.
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    sorted: Vec<Duration>,
}

impl Distribution {
    /// Panics on no samples.
    pub fn of(samples: &[Duration]) -> Self {
        assert!(!samples.is_empty(), "no round trips measured");
        let mut sorted = samples.to_vec();
        sorted.sort();
        Distribution { sorted }
    }

    pub fn n(&self) -> usize {
        self.sorted.len()
    }

    /// The `q` quantile by nearest rank (`q` is clamped to 0–1).
    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.sorted.len();
        self.sorted[((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n) - 1]
    }

    fn share(&self, f: impl Fn(Duration) -> bool) -> f64 {
        self.sorted.iter().filter(|d| f(**d)).count() as f64 / self.n() as f64
    }

    /// Share of round trips of at least [`SLOW`].
    pub fn slow(&self) -> f64 {
        self.share(|d| d >= SLOW)
    }

    /// Share of round trips longer than [`TIMEOUT`].
    pub fn timeouts(&self) -> f64 {
        self.share(|d| d > TIMEOUT)
    }

    pub fn figures(&self) -> Figures {
        let ms = |q| self.quantile(q).as_millis() as u64;
        Figures {
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            slow: self.slow(),
            timeouts: self.timeouts(),
            n: self.n(),
        }
    }

    /// How this distribution misses `reference` by more than `bounds`: one line per miss.
    pub fn misses(&self, reference: &Figures, bounds: &Bounds) -> Vec<String> {
        let mut out = Vec::new();
        for (q, r) in [(0.5, reference.p50_ms), (0.9, reference.p90_ms), (0.99, reference.p99_ms)] {
            let r = Duration::from_millis(r);
            let slack = bounds.rank * (q * (1.0 - q) * (1.0 / self.n() as f64 + 1.0 / reference.n as f64)).sqrt();
            let (low, high) = (self.quantile(q - slack), self.quantile(q + slack));
            let (min, max) =
                (r.div_f64(bounds.factor).saturating_sub(bounds.margin), r.mul_f64(bounds.factor) + bounds.margin);
            if high < min || low > max {
                out.push(format!(
                    "p{}: the p{:.1}–p{:.1} span {low:?}–{high:?} misses {min:?}–{max:?} (reference {r:?})",
                    (q * 100.0).round(),
                    100.0 * (q - slack),
                    100.0 * (q + slack)
                ));
            }
        }
        for (what, measured, r) in
            [("≥200 ms", self.slow(), reference.slow), ("timeouts", self.timeouts(), reference.timeouts)]
        {
            let slack =
                bounds.rank * (r.max(0.01) * (1.0 - r) * (1.0 / self.n() as f64 + 1.0 / reference.n as f64)).sqrt();
            let (low, high) = (r / bounds.factor - slack - bounds.points, r * bounds.factor + slack + bounds.points);
            if measured < low || measured > high {
                out.push(format!(
                    "{what}: {:.1} % outside {:.1}–{:.1} % (reference {:.1} %)",
                    100.0 * measured,
                    100.0 * low.max(0.0),
                    100.0 * high,
                    100.0 * r
                ));
            }
        }
        out
    }
}

/// A distribution as recorded: percentiles in ms, the share of retransmitted round trips
/// (≥ [`SLOW`]), the timeout share (> [`TIMEOUT`]) and the number of samples it came from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p99_ms: u64,
    pub slow: f64,
    pub timeouts: f64,
    pub n: usize,
}

/// How far a distribution may be from a reference. A percentile matches when the measured
/// quantiles within `rank` standard errors around it (the sampling noise of both distributions'
/// ranks) reach the reference value widened by `factor` and `margin`; the timeout share matches
/// within `rank` standard errors, `factor` and `points`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    pub rank: f64,
    pub factor: f64,
    pub margin: Duration,
    pub points: f64,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:>4} ms  p90 {:>4} ms  p99 {:>4} ms  ≥200 ms {:>5.1} %  >1 s {:>5.1} %",
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            100.0 * self.slow,
            100.0 * self.timeouts
        )
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}  (n={})", self.figures(), self.n())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// 100 samples: 0..=99 ms, the ten largest made slow and three of those timeouts.
    fn hundred() -> Distribution {
        let mut s: Vec<Duration> = (0..100).map(ms).collect();
        for (i, d) in s.iter_mut().rev().take(10).enumerate() {
            *d = if i < 3 { ms(2000) } else { ms(300) };
        }
        Distribution::of(&s)
    }

    #[test]
    fn nearest_rank_percentiles_and_shares() {
        let d = hundred();
        let f = d.figures();
        assert_eq!((f.n, f.p50_ms, f.p90_ms, f.p99_ms), (100, 49, 89, 2000));
        assert_eq!((d.slow(), d.timeouts()), (0.1, 0.03));
        assert_eq!((d.quantile(0.0), d.quantile(1.5)), (ms(0), ms(2000)));
        let one = Distribution::of(&[ms(5)]);
        assert_eq!((one.quantile(0.5), one.quantile(0.99), one.slow()), (ms(5), ms(5), 0.0));
        assert_eq!(Distribution::of(&[SLOW, TIMEOUT]).timeouts(), 0.0, "a timeout is longer than the limit");
    }

    const EXACT: Bounds = Bounds { rank: 0.0, factor: 1.0, margin: Duration::ZERO, points: 0.0 };

    #[test]
    fn a_distribution_matches_its_own_figures_and_misses_others() {
        let d = hundred();
        assert_eq!(d.misses(&d.figures(), &EXACT), Vec::<String>::new());
        let slower = Figures { p90_ms: 200, ..d.figures() };
        let misses = d.misses(&slower, &EXACT);
        assert_eq!(misses.len(), 1, "{misses:?}");
        assert!(misses[0].starts_with("p90:"), "{misses:?}");
        // Widened by a factor of 2.5, 89 ms reaches 200 / 2.5 = 80 ms.
        assert!(d.misses(&slower, &Bounds { factor: 2.5, ..EXACT }).is_empty());
        let more_timeouts = Figures { timeouts: 0.1, ..d.figures() };
        assert!(d.misses(&more_timeouts, &EXACT)[0].starts_with("timeouts:"));
        assert!(d.misses(&more_timeouts, &Bounds { points: 0.07, ..EXACT }).is_empty());
        let fewer_slow = Figures { slow: 0.3, ..d.figures() };
        assert_eq!(d.misses(&fewer_slow, &EXACT).len(), 1);
        assert!(d.misses(&fewer_slow, &EXACT)[0].starts_with("≥200 ms:"));
        assert!(d.misses(&fewer_slow, &Bounds { points: 0.2, ..EXACT }).is_empty());
    }

    #[test]
    fn the_rank_slack_spans_the_neighbouring_quantiles() {
        // p90 of `hundred` is 89 ms, p91 already 300 ms: a reference p90 of 300 ms is within the
        // rank noise of 100 against 100 samples (1.96 standard errors: ±8.3 ranks).
        let d = hundred();
        let reference = Figures { p90_ms: 300, ..d.figures() };
        assert!(!d.misses(&reference, &EXACT).is_empty());
        assert!(d.misses(&reference, &Bounds { rank: 1.96, ..EXACT }).is_empty());
    }
}
