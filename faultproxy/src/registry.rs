//! The proxies and their toxics: what the HTTP API reads and changes. One lock serialises admin calls
//! (they are rare); the data path never takes it: each proxy publishes its toxics on a watch channel that
//! its connections follow.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use chaoslab_core::toxic::{Stream, Toxic};
use tokio::sync::{Mutex, watch};

use crate::{
    chain::{Chain, StoredToxic},
    error::ApiError,
    model::{self, ProxyFields, ProxyView},
    proxy::{self, Runner},
};

struct Entry {
    id: u64,
    name: String,
    listen: String,
    upstream: String,
    /// Running while the proxy is enabled.
    runner: Option<Runner>,
    toxics: Vec<Arc<StoredToxic>>,
    chain: watch::Sender<Chain>,
}

impl Entry {
    fn new(id: u64, f: &ProxyFields) -> Self {
        Entry {
            id,
            name: f.name.clone(),
            listen: f.listen.clone(),
            upstream: f.upstream.clone(),
            runner: None,
            toxics: Vec::new(),
            chain: watch::channel(Chain::default()).0,
        }
    }

    fn enabled(&self) -> bool {
        self.runner.is_some()
    }

    /// Toxiproxy lists upstream toxics first, then downstream ones, each in the order they were added.
    fn ordered_toxics(&self) -> Vec<Toxic> {
        [Stream::Upstream, Stream::Downstream]
            .into_iter()
            .flat_map(|s| self.toxics.iter().filter(move |t| t.toxic.stream == s).map(|t| t.toxic.clone()))
            .collect()
    }

    fn view(&self) -> ProxyView {
        ProxyView {
            name: self.name.clone(),
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            enabled: self.enabled(),
            toxics: self.ordered_toxics(),
        }
    }

    /// Listens (on the port it got last time, for a `:0` listen that was started before).
    async fn start(&mut self) -> Result<(), ApiError> {
        if self.runner.is_none() {
            let (runner, bound) = Runner::start(&self.listen, &self.upstream, self.chain.subscribe())
                .await
                .map_err(ApiError::internal)?;
            self.listen = bound;
            self.runner = Some(runner);
        }
        Ok(())
    }

    /// Closes the listener and every connection.
    async fn stop(&mut self) {
        if let Some(r) = self.runner.take() {
            r.stop().await;
        }
    }

    fn publish(&self) {
        self.chain.send_replace(Arc::new(self.toxics.clone()));
    }

    fn find_toxic(&self, name: &str) -> Result<usize, ApiError> {
        self.toxics.iter().position(|t| t.toxic.name == name).ok_or_else(ApiError::toxic_not_found)
    }
}

#[derive(Default)]
struct State {
    proxies: BTreeMap<String, Entry>,
    next_id: u64,
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn proxy(&mut self, name: &str) -> Result<&mut Entry, ApiError> {
        self.proxies.get_mut(name).ok_or_else(ApiError::proxy_not_found)
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    state: Mutex<State>,
}

impl Registry {
    pub async fn list(&self) -> BTreeMap<String, ProxyView> {
        let st = self.state.lock().await;
        st.proxies.iter().map(|(k, e)| (k.clone(), e.view())).collect()
    }

    /// `POST /proxies`: name and upstream required; 409 before trying to listen.
    pub async fn create(&self, f: ProxyFields) -> Result<ProxyView, ApiError> {
        if f.name.is_empty() {
            return Err(ApiError::missing_field("name"));
        }
        if f.upstream.is_empty() {
            return Err(ApiError::missing_field("upstream"));
        }
        let mut st = self.state.lock().await;
        if st.proxies.contains_key(&f.name) {
            return Err(ApiError::proxy_exists());
        }
        let mut e = Entry::new(st.id(), &f);
        if f.enabled {
            e.start().await?;
        }
        let view = e.view();
        st.proxies.insert(f.name, e);
        Ok(view)
    }

    /// `POST /populate` as Toxiproxy 2.12 does it: item by item, a proxy with the same name, listen (as
    /// resolved) and upstream is kept with its toxics, any other of that name is stopped and replaced; the
    /// first failure ends it with the proxies done so far (and proxies not named are left alone).
    pub async fn populate(&self, items: Vec<ProxyFields>) -> (Vec<ProxyView>, Option<ApiError>) {
        let mut st = self.state.lock().await;
        let mut done: Vec<u64> = Vec::new();
        let mut replaced: HashMap<u64, ProxyView> = HashMap::new();
        let mut failure = None;
        for f in items {
            if let Some(existing) = st.proxies.get_mut(&f.name) {
                let same_listen = match proxy::resolve(&f.listen).await {
                    Ok(addr) => addr.to_string() == existing.listen,
                    Err(msg) => {
                        failure = Some(ApiError::internal(msg));
                        break;
                    }
                };
                if same_listen && existing.upstream == f.upstream {
                    done.push(existing.id);
                    continue;
                }
                existing.stop().await;
            }
            let mut e = Entry::new(st.id(), &f);
            if f.enabled
                && let Err(err) = e.start().await
            {
                failure = Some(err);
                break;
            }
            done.push(e.id);
            if let Some(old) = st.proxies.insert(f.name, e) {
                replaced.insert(old.id, old.view());
            }
        }
        // Toxiproxy renders the proxy objects at the end: one replaced later in the same call shows stopped.
        let views = done
            .iter()
            .filter_map(|id| {
                st.proxies.values().find(|e| e.id == *id).map(Entry::view).or_else(|| replaced.get(id).cloned())
            })
            .collect();
        (views, failure)
    }

    pub async fn get(&self, name: &str) -> Result<ProxyView, ApiError> {
        let mut st = self.state.lock().await;
        Ok(st.proxy(name)?.view())
    }

    /// `PATCH /proxies/{p}`: omitted fields keep their values; a new listen or upstream restarts the proxy
    /// (dropping its connections); `enabled` starts or stops it.
    pub async fn update(&self, name: &str, body: &[u8]) -> Result<ProxyView, ApiError> {
        let mut st = self.state.lock().await;
        let e = st.proxy(name)?;
        let current = ProxyFields {
            name: e.name.clone(),
            listen: e.listen.clone(),
            upstream: e.upstream.clone(),
            enabled: e.enabled(),
        };
        let f = model::proxy_body(body, current)?;
        if f.listen != e.listen || f.upstream != e.upstream {
            e.stop().await;
            e.listen = f.listen;
            e.upstream = f.upstream;
        }
        if f.enabled != e.enabled() {
            if f.enabled {
                e.start().await?;
            } else {
                e.stop().await;
            }
        }
        Ok(e.view())
    }

    pub async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let mut st = self.state.lock().await;
        let mut e = st.proxies.remove(name).ok_or_else(ApiError::proxy_not_found)?;
        e.stop().await;
        Ok(())
    }

    pub async fn toxics(&self, name: &str) -> Result<Vec<Toxic>, ApiError> {
        let mut st = self.state.lock().await;
        Ok(st.proxy(name)?.ordered_toxics())
    }

    pub async fn toxic(&self, proxy: &str, toxic: &str) -> Result<Toxic, ApiError> {
        let mut st = self.state.lock().await;
        let e = st.proxy(proxy)?;
        let i = e.find_toxic(toxic)?;
        Ok(e.toxics[i].toxic.clone())
    }

    /// `POST /proxies/{p}/toxics`: appended to its stream's chain, live connections included.
    pub async fn create_toxic(&self, proxy: &str, body: &[u8]) -> Result<Toxic, ApiError> {
        let mut st = self.state.lock().await;
        let id = st.id();
        let e = st.proxy(proxy)?;
        let toxic = model::toxic_create(body, |n| e.toxics.iter().any(|t| t.toxic.name == n))?;
        e.toxics.push(Arc::new(StoredToxic { id, rev: 0, toxic: toxic.clone() }));
        e.publish();
        Ok(toxic)
    }

    pub async fn update_toxic(&self, proxy: &str, toxic: &str, body: &[u8]) -> Result<Toxic, ApiError> {
        let mut st = self.state.lock().await;
        let e = st.proxy(proxy)?;
        let i = e.find_toxic(toxic)?;
        let (id, rev) = (e.toxics[i].id, e.toxics[i].rev);
        let updated = model::toxic_update(body, &e.toxics[i].toxic)?;
        e.toxics[i] = Arc::new(StoredToxic { id, rev: rev + 1, toxic: updated.clone() });
        e.publish();
        Ok(updated)
    }

    pub async fn delete_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ApiError> {
        let mut st = self.state.lock().await;
        let e = st.proxy(proxy)?;
        let i = e.find_toxic(toxic)?;
        e.toxics.remove(i);
        e.publish();
        Ok(())
    }

    /// `POST /reset`: every proxy enabled, every toxic removed; stops at the first proxy that cannot listen.
    pub async fn reset(&self) -> Result<(), ApiError> {
        let mut st = self.state.lock().await;
        for e in st.proxies.values_mut() {
            e.start().await?;
            e.toxics.clear();
            e.publish();
        }
        Ok(())
    }

    /// Stops every proxy: when this returns, their listeners and connections are closed.
    pub async fn shutdown(&self) {
        let mut st = self.state.lock().await;
        for e in st.proxies.values_mut() {
            e.stop().await;
        }
    }
}
