//! A webhook receiver: records (and optionally prints) every delivery and checks its Standard
//! Webhooks signature. Used by `erp-toolkit webhook-receiver` for trying the pipeline out, by the
//! tests and by the load generator.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use tokio::sync::Notify;

use erp_webhooks::signing;

/// One received request.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: web::Bytes,
    /// Every request header, names in lower case (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// Whether the signature verified (`None` when the receiver has no secret).
    pub verified: Option<bool>,
    pub received_at: Instant,
}

impl Delivery {
    /// A request header by (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }

    /// Checks the signature with `secret`.
    pub fn verify(&self, secret: &str) -> bool {
        signing::verify(
            secret,
            &self.webhook_id,
            self.timestamp,
            &self.body,
            &self.signature,
        )
        .is_ok()
    }
}

struct Shared {
    deliveries: Mutex<Vec<Delivery>>,
    arrived: Notify,
    status: AtomicU16,
    behaviour: Mutex<Behaviour>,
    /// Wakes hanging requests when hanging is switched off.
    released: Notify,
    secret: Option<String>,
    print: bool,
}

/// Misbehaviour on top of the plain status, for tests of retries and isolation.
#[derive(Debug, Clone, Default)]
struct Behaviour {
    /// Requests still to be answered with `fail_status`.
    fail_remaining: usize,
    fail_status: u16,
    /// `Retry-After` sent with every answer that is not 2xx.
    retry_after: Option<String>,
    /// Whether requests are held without an answer.
    hang: bool,
    /// Requests whose body contains this text answer this status.
    fail_matching: Option<(String, u16)>,
    /// The first request of each `webhook-id` answers this status (a flaky endpoint that
    /// takes every delivery on its retry).
    fail_first_attempt: Option<u16>,
    /// The `webhook-id`s seen so far, for `fail_first_attempt`.
    seen: BTreeSet<String>,
}

/// A running receiver.
pub struct Receiver {
    /// Where it listens.
    pub address: SocketAddr,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

impl Receiver {
    /// Starts a receiver on `listen` answering 204. With `secret`, signatures are verified; with
    /// `print`, each delivery is written to stdout.
    pub async fn start(listen: &str, secret: Option<String>, print: bool) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            deliveries: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            status: AtomicU16::new(204),
            behaviour: Mutex::new(Behaviour::default()),
            released: Notify::new(),
            secret,
            print,
        });
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(receive))
        })
        .workers(2)
        .disable_signals()
        .bind(listen)?;
        let address = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("listener has no address"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            address,
            shared,
            handle,
        })
    }

    /// The URL to configure as a webhook endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    /// Makes every following request answer `status`.
    pub fn respond_with(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Makes the next `n` requests answer `status`, then returns to the plain status.
    pub fn fail_first(&self, n: usize, status: u16) {
        self.with_behaviour(|b| {
            b.fail_remaining = n;
            b.fail_status = status;
        });
    }

    /// Makes every following request whose body contains `needle` answer `status` (`None`
    /// stops it), so one event can fail while others are delivered.
    pub fn fail_matching(&self, failing: Option<(&str, u16)>) {
        self.with_behaviour(|b| b.fail_matching = failing.map(|(n, s)| (n.to_owned(), s)));
    }

    /// Makes the first request of each `webhook-id` answer `status` and its later ones the
    /// plain status (`None` stops it).
    pub fn fail_first_attempt(&self, status: Option<u16>) {
        self.with_behaviour(|b| b.fail_first_attempt = status);
    }

    /// Sends `Retry-After: value` with every answer that is not 2xx (`None` stops it).
    pub fn retry_after(&self, value: Option<&str>) {
        self.with_behaviour(|b| b.retry_after = value.map(str::to_owned));
    }

    /// Holds every request without answering (its arrival is still recorded) until switched
    /// off, which answers the held ones.
    pub fn hang(&self, hang: bool) {
        self.with_behaviour(|b| b.hang = hang);
        if !hang {
            self.shared.released.notify_waiters();
        }
    }

    fn with_behaviour(&self, f: impl FnOnce(&mut Behaviour)) {
        if let Ok(mut behaviour) = self.shared.behaviour.lock() {
            f(&mut behaviour);
        }
    }

    /// Everything received so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared
            .deliveries
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.shared.deliveries.lock().map(|d| d.len()).unwrap_or(0)
    }

    /// Waits until at least `n` requests arrived; false on timeout.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let arrived = self.shared.arrived.notified();
            if self.count() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.count() >= n;
            }
        }
    }

    /// Stops listening.
    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut headers = BTreeMap::<String, String>::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let mut delivery = Delivery {
        headers,
        webhook_id: header("webhook-id"),
        timestamp: header("webhook-timestamp").parse().unwrap_or_default(),
        signature: header("webhook-signature"),
        body: body.clone(),
        verified: None,
        received_at: Instant::now(),
    };
    if let Some(secret) = &shared.secret {
        delivery.verified = Some(delivery.verify(secret));
    }
    if shared.print {
        let verdict = match delivery.verified {
            Some(true) => "signature valid",
            Some(false) => "SIGNATURE INVALID",
            None => "signature not checked (no --secret)",
        };
        println!(
            "{} {} webhook-id={} ({verdict})\n{}\n",
            req.method(),
            req.path(),
            delivery.webhook_id,
            serde_json::to_string_pretty(&delivery.json()).unwrap_or_default()
        );
    }
    let webhook_id = delivery.webhook_id.clone();
    if let Ok(mut deliveries) = shared.deliveries.lock() {
        deliveries.push(delivery);
    }
    shared.arrived.notify_waiters();
    loop {
        let released = shared.released.notified();
        let hang = shared.behaviour.lock().map(|b| b.hang).unwrap_or(false);
        if !hang {
            break;
        }
        // Bounded, so a forgotten hang cannot keep a connection forever.
        if tokio::time::timeout(Duration::from_secs(600), released)
            .await
            .is_err()
        {
            break;
        }
    }
    let (failing, retry_after) = match shared.behaviour.lock() {
        Ok(mut b) => {
            let matching = b.fail_matching.as_ref().and_then(|(needle, status)| {
                let text = String::from_utf8_lossy(&body);
                text.contains(needle.as_str()).then_some(*status)
            });
            let failing = (b.fail_remaining > 0).then_some(b.fail_status);
            b.fail_remaining = b.fail_remaining.saturating_sub(1);
            let first_seen = b.seen.insert(webhook_id);
            let first = b.fail_first_attempt.filter(|_| first_seen);
            let failing = matching.or(failing).or(first);
            (failing, b.retry_after.clone())
        }
        Err(_) => (None, None),
    };
    let status = failing.unwrap_or_else(|| shared.status.load(Ordering::SeqCst));
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT);
    let mut response = HttpResponse::build(status);
    if let Some(retry_after) = retry_after.filter(|_| !status.is_success()) {
        response.insert_header(("retry-after", retry_after));
    }
    response.body(if status.is_success() {
        String::new()
    } else {
        format!("receiver answers {}", status.as_u16())
    })
}
