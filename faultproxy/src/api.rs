//! The HTTP admin API: Toxiproxy's routes, status codes and bodies (see docs/toxiproxy-api.md).

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_TYPE, HeaderValue, LOCATION, USER_AGENT},
};
use serde::Serialize;

use crate::{
    VERSION,
    error::ApiError,
    model::{self, GoToxic, PopulateReply, ProxyFields},
    registry::Registry,
};

/// Bodies beyond this are refused (Toxiproxy has no limit; nothing legitimate comes close).
const MAX_BODY: usize = 16 * 1024 * 1024;

type Reply = Response<Full<Bytes>>;

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Reset,
    Proxies,
    Populate,
    Version,
    Proxy(String),
    Toxics(String),
    Toxic(String, String),
}

impl Route {
    /// Matches a decoded, clean path; a name may not be empty or contain `/` (as with gorilla/mux).
    fn parse(path: &str) -> Option<Route> {
        let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return None;
        }
        Some(match segs.as_slice() {
            ["reset"] => Route::Reset,
            ["proxies"] => Route::Proxies,
            ["populate"] => Route::Populate,
            ["version"] => Route::Version,
            ["proxies", p] => Route::Proxy(p.to_string()),
            ["proxies", p, "toxics"] => Route::Toxics(p.to_string()),
            ["proxies", p, "toxics", t] => Route::Toxic(p.to_string(), t.to_string()),
            _ => return None,
        })
    }

    fn allows(&self, m: &Method) -> bool {
        match self {
            Route::Reset | Route::Populate => m == Method::POST,
            Route::Version => m == Method::GET,
            Route::Proxies | Route::Toxics(_) => m == Method::GET || m == Method::POST,
            Route::Proxy(_) | Route::Toxic(..) => {
                m == Method::GET || m == Method::POST || m == Method::PATCH || m == Method::DELETE
            }
        }
    }
}

pub(crate) async fn handle(req: Request<Incoming>, registry: Arc<Registry>) -> Result<Reply, Infallible> {
    let raw_path = req.uri().path().to_string();
    let path = percent_decode(&raw_path);
    let clean = clean_path(&path);
    if clean != path {
        // gorilla/mux redirects to the clean path.
        let mut location = clean;
        if let Some(q) = req.uri().query() {
            location = format!("{location}?{q}");
        }
        let mut r = plain(StatusCode::MOVED_PERMANENTLY, "");
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(LOCATION, v);
        }
        return Ok(r);
    }
    let Some(route) = Route::parse(&path) else {
        return Ok(with_nosniff(plain(StatusCode::NOT_FOUND, "404 page not found\n")));
    };
    if !route.allows(req.method()) {
        return Ok(empty(StatusCode::METHOD_NOT_ALLOWED));
    }
    let mut reply = if is_browser(&req) {
        with_nosniff(plain(StatusCode::FORBIDDEN, "User agent not allowed\n"))
    } else {
        let method = req.method().clone();
        match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(body) => dispatch(route, &method, &body.to_bytes(), &registry).await,
            Err(e) => error(&ApiError::bad_body(e)),
        }
    };
    reply.headers_mut().insert("X-Toxiproxy-Request-Id", request_id());
    Ok(reply)
}

async fn dispatch(route: Route, method: &Method, body: &[u8], reg: &Registry) -> Reply {
    let get = method == Method::GET;
    let delete = method == Method::DELETE;
    let r = match route {
        Route::Reset => reg.reset().await.map(|()| empty(StatusCode::NO_CONTENT)),
        Route::Version => Ok(version()),
        Route::Proxies if get => Ok(json(StatusCode::OK, &reg.list().await)),
        Route::Proxies => match model::proxy_body(body, ProxyFields::for_create()) {
            Ok(f) => reg.create(f).await.map(|v| json(StatusCode::CREATED, &v)),
            Err(e) => Err(e),
        },
        Route::Populate => return populate(body, reg).await,
        Route::Proxy(p) if get => reg.get(&p).await.map(|v| json(StatusCode::OK, &v)),
        Route::Proxy(p) if delete => reg.delete(&p).await.map(|()| empty(StatusCode::NO_CONTENT)),
        Route::Proxy(p) => reg.update(&p, body).await.map(|v| json(StatusCode::OK, &v)),
        Route::Toxics(p) if get => reg.toxics(&p).await.map(|ts| {
            let ts: Vec<GoToxic<'_>> = ts.iter().map(GoToxic).collect();
            json(StatusCode::OK, &ts)
        }),
        // Toxiproxy answers 200, not 201, to a created toxic.
        Route::Toxics(p) => reg.create_toxic(&p, body).await.map(|t| json(StatusCode::OK, &GoToxic(&t))),
        Route::Toxic(p, t) if get => reg.toxic(&p, &t).await.map(|t| json(StatusCode::OK, &GoToxic(&t))),
        Route::Toxic(p, t) if delete => reg.delete_toxic(&p, &t).await.map(|()| empty(StatusCode::NO_CONTENT)),
        Route::Toxic(p, t) => reg.update_toxic(&p, &t, body).await.map(|t| json(StatusCode::OK, &GoToxic(&t))),
    };
    r.unwrap_or_else(|e| error(&e))
}

/// `POST /populate` answers in JSON also when it fails: `{"error","status","proxies"}`.
async fn populate(body: &[u8], reg: &Registry) -> Reply {
    let (views, failure) = match model::populate_body(body) {
        Ok(items) => reg.populate(items).await,
        Err(e) => (Vec::new(), Some(e)),
    };
    let status = failure.as_ref().map_or(StatusCode::CREATED, |e| status(e.status));
    let reply = PopulateReply { error: failure.as_ref(), proxies: (!views.is_empty()).then_some(&views[..]) };
    json(status, &reply)
}

fn version() -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(format!("{{\"version\": \"{VERSION}\"}}\n"))));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json;charset=utf-8"));
    r
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn json<T: Serialize + ?Sized>(code: StatusCode, v: &T) -> Reply {
    let body = serde_json::to_vec(v).expect("API replies serialize");
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Toxiproxy writes errors through Go's `http.Error`: text/plain, though the body is JSON.
fn error(e: &ApiError) -> Reply {
    with_nosniff(plain(status(e.status), &e.body()))
}

fn plain(code: StatusCode, body: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = code;
    if !body.is_empty() {
        r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    r
}

fn with_nosniff(mut r: Reply) -> Reply {
    r.headers_mut().insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    r
}

fn empty(code: StatusCode) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// Toxiproxy refuses browsers (a CSRF guard): any User-Agent starting with `Mozilla/`.
fn is_browser(req: &Request<Incoming>) -> bool {
    req.headers().get(USER_AGENT).is_some_and(|ua| ua.as_bytes().starts_with(b"Mozilla/"))
}

/// An id in the style of the ones Toxiproxy attaches (20 base32hex characters).
fn request_id() -> HeaderValue {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
    let id: String = (0..20).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect();
    HeaderValue::from_str(&id).expect("ascii")
}

/// Decodes `%XX` escapes (names are matched decoded, as Go's `URL.Path` is); invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = ((b[i + 1] as char).to_digit(16), (b[i + 2] as char).to_digit(16))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `path.Clean`, keeping a trailing slash (gorilla/mux's `cleanPath`).
fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return "/".into();
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if p.ends_with('/') && out != "/" {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_toxiproxys() {
        assert_eq!(Route::parse("/proxies"), Some(Route::Proxies));
        assert_eq!(Route::parse("/proxies/a b/toxics/t"), Some(Route::Toxic("a b".into(), "t".into())));
        assert_eq!(Route::parse("/proxies/"), None);
        assert_eq!(Route::parse("/proxies/a/b"), None);
        assert_eq!(Route::parse("/version/"), None);
        assert!(Route::Proxy("x".into()).allows(&Method::PATCH));
        assert!(!Route::Reset.allows(&Method::GET));
        assert!(!Route::Version.allows(&Method::HEAD));
    }

    #[test]
    fn paths_are_decoded_and_cleaned() {
        assert_eq!(percent_decode("/proxies/a%20b%2Fc%zz"), "/proxies/a b/c%zz");
        assert_eq!(clean_path("//proxies"), "/proxies");
        assert_eq!(clean_path("/proxies/./a/../b/"), "/proxies/b/");
        assert_eq!(clean_path("/proxies/"), "/proxies/");
    }
}
