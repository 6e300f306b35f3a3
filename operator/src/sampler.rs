//! Scraping the client's metrics while a scenario runs. One task per running scenario feeds the
//! shared [`RunRecorder`]; the reconciler reads finished phases from it and writes them to status.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chaoslab_core::{
    api::{ClientSpec, Fault, PhaseObservation, Timings},
    client_metrics::Reader,
    engine::Plan,
    observation::{AbortRule, RunRecorder},
};
use jiff::{SignedDuration, Timestamp};
use tokio::task::JoinHandle;

use crate::client_source::Source;

/// What the times are measured for: the run's faults and its targets' names.
#[derive(Clone, Copy)]
pub struct Judging<'a> {
    pub faults: &'a [Fault],
    pub target_names: &'a [String],
}

pub struct Sampler {
    state: Mutex<State>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    recorder: RunRecorder,
    /// spec.client, which may be edited while the run goes on, and where it says to read.
    client: ClientSpec,
    source: Result<Source, String>,
    reader: Reader,
    /// Phases that started before this sampler (an operator restart) are incomplete: not reported.
    created: Timestamp,
    grace: SignedDuration,
    abort_at: Option<Timestamp>,
    last_error: Option<String>,
    /// When the last recorded values were taken.
    last_at: Option<Timestamp>,
}

impl State {
    fn new(
        source: (&str, &ClientSpec),
        plan: Plan,
        abort: Option<AbortRule>,
        created: Timestamp,
        grace: SignedDuration,
    ) -> Self {
        let (ns, client) = source;
        Self {
            recorder: RunRecorder::new(plan, abort),
            client: client.clone(),
            source: Source::of(ns, client),
            reader: Reader::of(client),
            created,
            grace,
            abort_at: None,
            last_error: None,
            last_at: None,
        }
    }

    /// Observations of the phases that ended and were watched from their start.
    fn finished(&self) -> Vec<PhaseObservation> {
        let plan = *self.recorder.plan();
        self.recorder
            .finished()
            .iter()
            .filter(|o| plan.starts(o.phase).is_some_and(|start| start + self.grace >= self.created))
            .cloned()
            .collect()
    }

    /// A running scenario's spec may be edited: the new client source and mapping, abort rule and
    /// phase lengths apply from the next sample on (finished phases stay as they were observed).
    fn adopt(&mut self, source: (&str, &ClientSpec), plan: Plan, abort: Option<AbortRule>, judging: Judging) {
        self.recorder.set_plan(plan);
        self.recorder.set_abort(abort);
        self.recorder.set_targets(judging.faults, judging.target_names);
        let (ns, client) = source;
        if self.client != *client {
            if self.client.mapping() != client.mapping() || self.client.server_labels != client.server_labels {
                self.reader = Reader::of(client);
            }
            self.client = client.clone();
            self.source = Source::of(ns, client);
            self.last_error = None;
        }
    }
}

impl Sampler {
    /// Observations of the phases that ended and were watched from their start.
    pub fn finished(&self) -> Vec<PhaseObservation> {
        self.state.lock().expect("sampler state").finished()
    }

    /// The times measured so far (status.timings).
    pub fn timings(&self) -> Timings {
        self.state.lock().expect("sampler state").recorder.timings()
    }

    pub fn abort_at(&self) -> Option<Timestamp> {
        self.state.lock().expect("sampler state").abort_at
    }

    pub fn last_error(&self) -> Option<String> {
        self.state.lock().expect("sampler state").last_error.clone()
    }

    /// The client's replicas in the last reading, and those read before that are gone.
    pub fn replicas(&self) -> (Vec<String>, Vec<String>) {
        let s = self.state.lock().expect("sampler state");
        let r = s.reader.replicas();
        let owned = |v: Vec<&str>| v.into_iter().map(String::from).collect();
        (owned(r.current()), owned(r.gone()))
    }

    /// Finishes phases that ended by `now` even if no scrape came after their end.
    pub fn close_until(&self, now: Timestamp) {
        self.state.lock().expect("sampler state").recorder.close_until(now);
    }
}

/// The samplers of all running scenarios, by uid.
pub struct Samplers {
    http: reqwest::Client,
    /// Lists the client's pods (spec.client.podSelector); None in tests without an apiserver.
    kube: Option<kube::Client>,
    interval: Duration,
    running: Mutex<HashMap<String, Arc<Sampler>>>,
}

impl Samplers {
    /// Fails where no HTTP client can be built, e.g. without CA certificates in the system.
    pub fn new(interval: Duration, kube: Option<kube::Client>) -> Result<Self, reqwest::Error> {
        chaoslab_toxiproxy::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(interval.max(Duration::from_secs(1)))
            .user_agent(concat!("chaoslab-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, kube, interval, running: Mutex::new(HashMap::new()) })
    }

    /// The sampler of `uid`, started if needed with `since` as the moment from which it watches (the
    /// reconcile's start); an existing one adopts `source` (namespace, spec.client), `plan`, `abort`
    /// and `judging` (aborts, edits).
    pub fn ensure(
        &self,
        uid: &str,
        source: (&str, &ClientSpec),
        plan: Plan,
        abort: Option<AbortRule>,
        judging: Judging,
        since: Timestamp,
    ) -> Arc<Sampler> {
        let mut running = self.running.lock().expect("samplers");
        if let Some(s) = running.get(uid) {
            s.state.lock().expect("sampler state").adopt(source, plan, abort, judging);
            return s.clone();
        }
        let grace = SignedDuration::try_from(self.interval).unwrap_or(SignedDuration::ZERO) * 2;
        let mut state = State::new(source, plan, abort, since, grace);
        state.recorder.set_targets(judging.faults, judging.target_names);
        let sampler = Arc::new(Sampler { state: Mutex::new(state), task: Mutex::new(None) });
        let task = tokio::spawn(scrape_loop(sampler.clone(), self.http.clone(), self.kube.clone(), self.interval));
        *sampler.task.lock().expect("task") = Some(task);
        running.insert(uid.to_string(), sampler.clone());
        sampler
    }

    pub fn get(&self, uid: &str) -> Option<Arc<Sampler>> {
        self.running.lock().expect("samplers").get(uid).cloned()
    }

    pub fn stop(&self, uid: &str) {
        if let Some(s) = self.running.lock().expect("samplers").remove(uid)
            && let Some(t) = s.task.lock().expect("task").take()
        {
            t.abort();
        }
    }
}

async fn scrape_loop(sampler: Arc<Sampler>, http: reqwest::Client, kube: Option<kube::Client>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (end, source, reader) = {
            let s = sampler.state.lock().expect("sampler state");
            (s.recorder.plan().end(), s.source.clone(), s.reader.clone())
        };
        let now = Timestamp::now();
        // Bounded: the loop ends one interval after the run's planned end.
        if now > end + SignedDuration::try_from(interval).unwrap_or(SignedDuration::ZERO) {
            return;
        }
        let reading = match &source {
            Ok(source) => source.read(&http, kube.as_ref(), &reader).await,
            Err(e) => chaoslab_reading::Reading { errors: vec![e.clone()], ..Default::default() },
        };
        // Values from a Prometheus are as old as its scrape: recorded when taken, once each.
        let at = reading.at.unwrap_or_else(Timestamp::now);
        let mut s = sampler.state.lock().expect("sampler state");
        if let Some(e) = reading.failed() {
            s.last_error = Some(brief(e));
            continue;
        }
        if s.last_at.is_some_and(|last| at <= last) {
            continue;
        }
        s.last_at = Some(at);
        // Replicas that did not answer are left out of this reading (their counts are kept).
        s.last_error = reading.errors.first().map(|e| brief(format!("a replica did not answer: {e}")));
        let scrape = s.reader.combine(&reading.replicas);
        if let Some(t) = s.recorder.record(at, scrape) {
            s.abort_at.get_or_insert(t);
        }
    }
}

/// What of a scrape's error goes into the status message: the parser quotes the offending line,
/// which a hostile endpoint makes megabytes long (the apiserver then refuses every status write).
fn brief(error: String) -> String {
    const MAX: usize = 300;
    match (0..=MAX).rev().find(|&i| error.is_char_boundary(i)) {
        // A copy: a truncated String would keep its megabytes of capacity.
        Some(cut) if error.len() > MAX => format!("{}…", &error[..cut]),
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chaoslab_core::api::{Phase, Phases};
    use chaoslab_testenv::at;
    use tokio::{io::AsyncWriteExt, net::TcpListener};

    use super::*;

    fn phases(secs: u64) -> Phases {
        let p = format!("{secs}s").parse().unwrap();
        Phases { stabilization: p, testing: p, recovery: p }
    }

    fn scrape(ok: f64) -> chaoslab_core::client_metrics::Scrape {
        let text = format!("chaoslab_client_requests_total{{server=\"s\",outcome=\"success\"}} {ok}\n");
        chaoslab_core::client_metrics::parse(&text).unwrap()
    }

    /// A phase is reported only if the sampler watched it from its start.
    fn reported(created: Timestamp) -> Vec<Phase> {
        let client = ClientSpec::url("http://x");
        let mut s = State::new(("ns", &client), Plan::new(at(100), &phases(10)), None, created, SignedDuration::ZERO);
        for t in (100..=111).step_by(1) {
            s.recorder.record(at(t), scrape(t as f64));
        }
        s.finished().iter().map(|o| o.phase).collect()
    }

    #[test]
    fn an_error_quoting_a_huge_line_is_cut_short() {
        let error = format!("line 1: not a sample: \"{}\"", "é".repeat(1 << 20));
        let cut = brief(error);
        assert!(cut.len() <= 303 && cut.starts_with("line 1: not a sample") && cut.ends_with('…'), "{cut}");
        assert_eq!(brief("HTTP 503".into()), "HTTP 503");
    }

    #[test]
    fn a_phase_is_reported_only_when_watched_from_its_start() {
        // Admitted at 99.4 s: the run starts at the next whole second (100 s), after the sampler.
        assert_eq!(reported(at(99) + SignedDuration::from_millis(400)), [Phase::Stabilization]);
        // An operator restarted 3 s into Stabilization saw only part of it.
        assert!(reported(at(103)).is_empty());
    }

    /// A metrics endpoint that counts its scrapes.
    async fn endpoint() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let body = "chaoslab_client_requests_total{server=\"s\",outcome=\"success\"} 1\n";
                let reply =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        (url, hits)
    }

    async fn wait_for_hit(hits: &AtomicUsize) {
        let before = hits.load(Ordering::SeqCst);
        for _ in 0..100 {
            if hits.load(Ordering::SeqCst) > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no scrape within 2 s");
    }

    #[tokio::test]
    async fn edits_of_a_running_scenario_reach_its_sampler() {
        let samplers = Samplers::new(Duration::from_millis(50), None).unwrap();
        let ((url_a, hits_a), (url_b, hits_b)) = (endpoint().await, endpoint().await);
        let plan = Plan::new(Timestamp::now(), &phases(60));
        let none = Judging { faults: &[], target_names: &[] };
        samplers.ensure("u", ("ns", &ClientSpec::url(&url_a)), plan, None, none, Timestamp::now());
        wait_for_hit(&hits_a).await;
        // spec.client.metricsUrl, spec.abort and the phase lengths edited mid-run.
        let rule = AbortRule { error_rate: 0.5, window: Duration::from_secs(3) };
        let longer = Plan::new(plan.start, &phases(90));
        let s = samplers.ensure("u", ("ns", &ClientSpec::url(&url_b)), longer, Some(rule), none, Timestamp::now());
        wait_for_hit(&hits_b).await;
        let scraped_a = hits_a.load(Ordering::SeqCst);
        wait_for_hit(&hits_b).await;
        assert!(hits_a.load(Ordering::SeqCst) <= scraped_a + 1, "the old URL is no longer scraped");
        let state = s.state.lock().unwrap();
        assert_eq!(state.recorder.plan().end(), longer.end());
        assert_eq!(state.recorder.abort(), Some(rule));
        drop(state);
        samplers.stop("u");
    }
}
