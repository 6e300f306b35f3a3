//! Scraping the client's metrics while a scenario runs. One task per running scenario feeds the
//! shared [`RunRecorder`]; the reconciler reads finished phases from it and writes them to status.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chaoslab_core::{
    api::PhaseObservation,
    client_metrics,
    engine::Plan,
    observation::{AbortRule, RunRecorder},
};
use jiff::{SignedDuration, Timestamp};
use tokio::task::JoinHandle;

pub struct Sampler {
    state: Mutex<State>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    recorder: RunRecorder,
    /// Phases that started before this sampler (an operator restart) are incomplete: not reported.
    created: Timestamp,
    grace: SignedDuration,
    abort_at: Option<Timestamp>,
    last_error: Option<String>,
}

impl Sampler {
    /// Observations of the phases that ended and were watched from their start.
    pub fn finished(&self) -> Vec<PhaseObservation> {
        let s = self.state.lock().expect("sampler state");
        let plan = *s.recorder.plan();
        s.recorder
            .finished()
            .iter()
            .filter(|o| plan.starts(o.phase).is_some_and(|start| start + s.grace >= s.created))
            .cloned()
            .collect()
    }

    pub fn abort_at(&self) -> Option<Timestamp> {
        self.state.lock().expect("sampler state").abort_at
    }

    pub fn last_error(&self) -> Option<String> {
        self.state.lock().expect("sampler state").last_error.clone()
    }

    /// Finishes phases that ended by `now` even if no scrape came after their end.
    pub fn close_until(&self, now: Timestamp) {
        self.state.lock().expect("sampler state").recorder.close_until(now);
    }

    fn set_plan(&self, plan: Plan) {
        self.state.lock().expect("sampler state").recorder.set_plan(plan);
    }
}

/// The samplers of all running scenarios, by uid.
pub struct Samplers {
    http: reqwest::Client,
    interval: Duration,
    running: Mutex<HashMap<String, Arc<Sampler>>>,
}

impl Samplers {
    /// Fails where no HTTP client can be built, e.g. without CA certificates in the system.
    pub fn new(interval: Duration) -> Result<Self, reqwest::Error> {
        chaoslab_toxiproxy::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(interval.max(Duration::from_secs(1)))
            .user_agent(concat!("chaoslab-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, interval, running: Mutex::new(HashMap::new()) })
    }

    /// The sampler of `uid`, started if needed; an existing one adopts `plan` (aborts, edits).
    pub fn ensure(&self, uid: &str, url: &str, plan: Plan, abort: Option<AbortRule>) -> Arc<Sampler> {
        let mut running = self.running.lock().expect("samplers");
        if let Some(s) = running.get(uid) {
            s.set_plan(plan);
            return s.clone();
        }
        let grace = SignedDuration::try_from(self.interval).unwrap_or(SignedDuration::ZERO) * 2;
        let sampler = Arc::new(Sampler {
            state: Mutex::new(State {
                recorder: RunRecorder::new(plan, abort),
                created: Timestamp::now(),
                grace,
                abort_at: None,
                last_error: None,
            }),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(scrape_loop(sampler.clone(), self.http.clone(), url.to_string(), self.interval));
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

async fn scrape_loop(sampler: Arc<Sampler>, http: reqwest::Client, url: String, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let end = sampler.state.lock().expect("sampler state").recorder.plan().end();
        let now = Timestamp::now();
        // Bounded: the loop ends one interval after the run's planned end.
        if now > end + SignedDuration::try_from(interval).unwrap_or(SignedDuration::ZERO) {
            return;
        }
        let scraped = scrape(&http, &url).await;
        let at = Timestamp::now();
        let mut s = sampler.state.lock().expect("sampler state");
        match scraped {
            Ok(scrape) => {
                s.last_error = None;
                if let Some(t) = s.recorder.record(at, scrape) {
                    s.abort_at.get_or_insert(t);
                }
            }
            Err(e) => s.last_error = Some(e),
        }
    }
}

async fn scrape(http: &reqwest::Client, url: &str) -> Result<client_metrics::Scrape, String> {
    let resp = http.get(url).send().await.map_err(|e| format!("scraping {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("scraping {url}: HTTP {}", resp.status()));
    }
    let text = resp.text().await.map_err(|e| format!("scraping {url}: {e}"))?;
    client_metrics::parse(&text).map_err(|e| format!("scraping {url}: {e}"))
}
