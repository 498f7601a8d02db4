//! `cartero bench`: cartero against Postfix on this machine, in one run, on 127.0.0.1 only.
//!
//! Each round starts Postfix's `smtp-sink` as the destination and measures three pipelines
//! into it with the same message size and concurrency:
//! * **raw SMTP** — `smtp-source` straight into the sink: the ceiling of SMTP here;
//! * **Postfix** — `smtp-source` → a private Postfix instance (queue on disk) → the sink
//!   (`scripts/postfix-bench.sh`);
//! * **cartero** — HTTP `POST /v1/messages` (keep-alive, `concurrency` in flight) →
//!   `cartero serve` (SQLite, `synchronous=FULL`, a fresh data directory) → the sink.
//!
//! End to end is from the first submission until the sink has counted every message. For
//! cartero it also records accept rate and latency, peak RSS (`VmHWM`), bytes written to
//! disk per message (`/proc/PID/io`), the latency of one message on an idle server, and the
//! accept latency at a fixed rate. Medians over `runs` rounds; the JSON goes to `--out`.
//! Timings never enter the test suite: `--smoke` (200 messages, one round) is what CI runs so
//! this command cannot rot.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub messages: usize,
    pub concurrency: usize,
    pub runs: usize,
    pub size: usize,
    pub postfix: bool,
    /// Round trip added between each sender and the sink ([`Relay`]); zero for none.
    pub rtt: Duration,
    /// Extra round with this many messages already queued (deferred), 0 for none.
    pub queued: usize,
    /// Extra round draining this many due messages queued while no server ran, 0 for none.
    pub backlog: usize,
    /// Fixed submission rate (msgs/s) for the accept-latency measurement, 0 to skip.
    pub rate: usize,
    pub out: PathBuf,
    /// The cartero binary to measure (this one by default).
    pub exe: PathBuf,
    /// The repository root (for scripts/postfix-bench.sh).
    pub repo: PathBuf,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct CarteroRound {
    pub accepted_per_s: f64,
    pub accept_p50_ms: f64,
    pub accept_p99_ms: f64,
    pub end_to_end_per_s: f64,
    pub peak_rss_mb: f64,
    pub disk_bytes_per_message: f64,
    /// CPU time of `cartero serve` (user + system) per message during the round: steadier
    /// than rates on a shared machine.
    #[serde(default)]
    pub cpu_us_per_message: f64,
    /// CPU time of the load generator (this process: the HTTP clients, and the relay with
    /// `--rtt-ms`) per message during the same round, on the same two cores.
    #[serde(default)]
    pub client_cpu_us_per_message: f64,
    pub single_message_ms: f64,
    pub fixed_rate: Option<FixedRate>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct FixedRate {
    pub rate_per_s: usize,
    pub sent: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The slowest submissions: one in a thousand, and the very slowest.
    #[serde(default)]
    pub p999_ms: f64,
    #[serde(default)]
    pub max_ms: f64,
    /// The slowest write + fdatasync of 4 KB that a probe beside the data directory saw
    /// during the same seconds (one every 20 ms): when the disk itself stalls, every commit
    /// waits for it, and this says so next to the p99.
    #[serde(default)]
    pub disk_sync_max_ms: f64,
    /// The probe's syncs that took longer than [`SLOW_MS`] during the same seconds.
    #[serde(default)]
    pub disk_stalls: usize,
    /// Submissions answered later than [`SLOW_MS`] (what the p99 target bounds)…
    #[serde(default)]
    pub slow: usize,
    /// …and how many of them were waiting while one of the probe's syncs took longer than
    /// [`SLOW_MS`]: while the disk stalls, every commit waits for it. (The probe's sync may
    /// also wait behind cartero's own writes; the idle probe below has none of those.)
    #[serde(default)]
    pub slow_during_disk_stall: usize,
    /// The same probe just before, for as long, with the server idle: the disk on its own.
    #[serde(default)]
    pub idle_disk_sync_max_ms: f64,
    #[serde(default)]
    pub idle_disk_stalls: usize,
}

/// The accept-latency bound of the target (p99 under 10 ms at 1,000 msgs/s); a probe sync
/// slower than this is a stall of the disk.
const SLOW_MS: f64 = 10.0;

#[derive(Debug, Clone, Serialize, Default)]
pub struct Round {
    pub cartero: CarteroRound,
    pub postfix_per_s: Option<f64>,
    pub raw_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub machine: String,
    pub messages: usize,
    pub concurrency: usize,
    pub size: usize,
    /// Round trip added between each sender and the sink.
    pub rtt_ms: u64,
    pub runs: Vec<Round>,
    pub median: Round,
    pub ratio_cartero_postfix: Option<f64>,
    pub ratio_cartero_raw: f64,
    pub queued: Option<QueuedRound>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog: Option<BacklogRound>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueuedRound {
    pub queued: usize,
    pub end_to_end_per_s: f64,
    pub peak_rss_mb: f64,
    /// With the queue full, as a fraction of the empty-queue figure.
    pub relative_to_empty: f64,
}

/// A queue that built up while no server ran (after an outage, say), drained from a cold start:
/// every message goes through a claim, none is handed over at acceptance.
#[derive(Debug, Clone, Serialize)]
pub struct BacklogRound {
    pub messages: usize,
    /// From the server answering its health check until the sink counted the last message
    /// (what it delivered before answering is left out of both the count and the time).
    pub drained_per_s: f64,
    pub cpu_us_per_message: f64,
    pub peak_rss_mb: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The unit of the CPU times in /proc/PID/stat (`getconf CLK_TCK`; 100 on Linux unless the
/// kernel says otherwise).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Flushes every dirty page to disk (`sync`) before a pipeline starts, so that none of them
/// measures the writeback of the one before it (Postfix's round writes and deletes a queue
/// file per message just before cartero's).
fn settle_disk() {
    if let Err(e) = Command::new("sync").status() {
        eprintln!("sync failed ({e}); the next pipeline may share the disk with the last");
    }
}

fn which(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Postfix's smtp-sink, counting messages (`-c`) into a file we poll.
struct Sink {
    port: u16,
    child: Child,
    counter: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sink {
    fn start() -> anyhow::Result<Sink> {
        let bin = which(&["/usr/sbin/smtp-sink", "/usr/lib/postfix/smtp-sink"])
            .context("smtp-sink is not installed: run scripts/peers.sh")?;
        let dir = tempfile::tempdir()?;
        let counter = dir.path().join("counter");
        let port = free_port()?;
        let child = Command::new(bin)
            .args(["-u", "nobody", "-c"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("1024")
            .stdout(std::fs::File::create(&counter)?)
            .stderr(Stdio::null())
            .spawn()
            .context("starting smtp-sink")?;
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                bail!("smtp-sink did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Sink {
            port,
            child,
            counter,
            _dir: dir,
        })
    }

    /// Messages the sink has received so far (`mesg=N` of its last counter record).
    fn count(&self) -> usize {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.counter) {
            use std::io::{Seek, SeekFrom};
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(128)));
            let _ = f.read_to_string(&mut text);
        }
        last_count(&text).unwrap_or(0)
    }

    /// Waits until the sink counted `n` messages; returns when it happened.
    fn wait_for(&self, n: usize, limit: Duration) -> anyhow::Result<Instant> {
        let start = Instant::now();
        loop {
            if self.count() >= n {
                return Ok(Instant::now());
            }
            if start.elapsed() > limit {
                bail!(
                    "the sink counted {} of {n} messages within {limit:?}",
                    self.count()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The `mesg=N` of the last whole record in the tail of smtp-sink's counter output
/// (`sess=N quit=N mesg=N\r` per event). What follows the last `\r` is skipped: a read
/// that meets a record still being written would otherwise take `mesg=2` of `mesg=20011`.
fn last_count(tail: &str) -> Option<usize> {
    let mut records = tail.split('\r');
    records.next_back();
    records
        .rev()
        .find_map(|r| r.rsplit_once("mesg=").and_then(|(_, n)| n.parse().ok()))
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_source(port: u16, messages: usize, concurrency: usize, size: usize) -> anyhow::Result<()> {
    let bin = which(&["/usr/sbin/smtp-source", "/usr/lib/postfix/smtp-source"])
        .context("smtp-source is not installed: run scripts/peers.sh")?;
    // -d: keep each session open for the next message (connection reuse), as cartero's
    // pooled connections do.
    let status = Command::new(bin)
        .args([
            "-d",
            "-s",
            &concurrency.to_string(),
            "-m",
            &messages.to_string(),
            "-l",
            &size.to_string(),
        ])
        .args(["-f", "bench@acme.example", "-t", "sink@example.com"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .status()
        .context("running smtp-source")?;
    if !status.success() {
        bail!("smtp-source failed: {status}");
    }
    Ok(())
}

/// A TCP relay on 127.0.0.1 in front of the sink that holds every chunk for half the round
/// trip in each direction: what a provider across the internet costs a sender that waits
/// for each reply. Stops with the value.
struct Relay {
    port: u16,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Relay {
    fn start(target: u16, rtt: Duration) -> anyhow::Result<Relay> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let relay = async {
                    while let Ok((client, _)) = listener.accept().await {
                        tokio::spawn(async move {
                            let Ok(server) =
                                tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                            else {
                                return;
                            };
                            let _ = client.set_nodelay(true);
                            let _ = server.set_nodelay(true);
                            let (cr, cw) = client.into_split();
                            let (sr, sw) = server.into_split();
                            tokio::join!(delayed(cr, sw, rtt / 2), delayed(sr, cw, rtt / 2));
                        });
                    }
                };
                tokio::select! {
                    _ = stopped => {}
                    _ = relay => {}
                }
            });
        });
        Ok(Relay { port, _stop: stop })
    }
}

/// Copies `from` to `to`, each chunk `delay` after it arrived, in order.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if tx
                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// Where senders deliver: the sink, or a relay in front of it when a round trip is asked for.
fn destination(opts: &BenchOptions, sink: &Sink) -> anyhow::Result<(u16, Option<Relay>)> {
    if opts.rtt.is_zero() {
        return Ok((sink.port, None));
    }
    let relay = Relay::start(sink.port, opts.rtt)?;
    Ok((relay.port, Some(relay)))
}

/// Raw SMTP: smtp-source straight into the sink.
fn raw_round(opts: &BenchOptions) -> anyhow::Result<f64> {
    settle_disk();
    let sink = Sink::start()?;
    let (port, _relay) = destination(opts, &sink)?;
    let t0 = Instant::now();
    smtp_source(port, opts.messages, opts.concurrency, opts.size)?;
    let done = sink.wait_for(opts.messages, Duration::from_secs(600))?;
    Ok(opts.messages as f64 / (done - t0).as_secs_f64())
}

/// Postfix end to end: smtp-source → Postfix (disk queue) → the sink.
fn postfix_round(opts: &BenchOptions) -> anyhow::Result<f64> {
    let script = opts.repo.join("scripts/postfix-bench.sh");
    if !script.exists() {
        bail!(
            "{} not found: run `cartero bench` from the repository root, or pass --no-postfix",
            script.display()
        );
    }
    settle_disk();
    let sink = Sink::start()?;
    let dir = tempfile::Builder::new().prefix("pfb").tempdir_in("/tmp")?;
    let port = free_port()?;
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .output()
            .context("running scripts/postfix-bench.sh")?;
        if !out.status.success() {
            bail!(
                "scripts/postfix-bench.sh {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    let dir_s = dir.path().display().to_string();
    let (relay_port, _relay) = destination(opts, &sink)?;
    run(&["start", &dir_s, &port.to_string(), &relay_port.to_string()])?;
    let t0 = Instant::now();
    let measured = smtp_source(port, opts.messages, opts.concurrency, opts.size)
        .and_then(|()| sink.wait_for(opts.messages, Duration::from_secs(1800)));
    let stopped = run(&["stop", &dir_s]);
    let done = measured?;
    stopped?;
    Ok(opts.messages as f64 / (done - t0).as_secs_f64())
}

/// User + system CPU seconds process `pid` (or `self`) has used so far (`/proc/PID/stat`).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

/// A running `cartero serve` on a fresh data directory with one account → the sink.
struct Server {
    child: Child,
    port: u16,
    token: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds the server has used so far (`/proc/PID/stat`).
    fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(&self.pid().to_string())
    }

    fn proc_field(&self, file: &str, field: &str) -> Option<f64> {
        let text = std::fs::read_to_string(format!("/proc/{}/{file}", self.pid())).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| {
                v.trim_start_matches(':')
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
    }

    /// SIGTERM (graceful), then SIGKILL after 30 s.
    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    /// A round that fails half-way must not leave a server running.
    fn drop(&mut self) {
        self.terminate();
    }
}

fn cli(exe: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(exe)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("CARTERO_LOG", "warn")
        .output()
        .with_context(|| format!("running cartero {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "cartero {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

async fn start_server(opts: &BenchOptions, destination: u16, dir: &Path) -> anyhow::Result<Server> {
    cli(
        &opts.exe,
        dir,
        &[
            "account",
            "add",
            "--name",
            "sink",
            "--host",
            "127.0.0.1",
            "--port",
            &destination.to_string(),
            "--security",
            "none",
            "--auth",
            "none",
            "--from-email",
            "bench@acme.example",
        ],
    )?;
    let token = cli(
        &opts.exe,
        dir,
        &["token", "create", "--name", "bench", "--role", "sender"],
    )?;
    let port = free_port()?;
    let child = Command::new(&opts.exe)
        .arg("--data-dir")
        .arg(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("CARTERO_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting cartero serve")?;
    let server = Server { child, port, token };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut poster) = Poster::connect(server.port, &server.token).await
            && let Ok((status, _)) = poster
                .send(http::Method::GET, "/healthz", String::new())
                .await
            && status.is_success()
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("cartero serve did not become healthy");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The JSON of message `i`: ~`size` bytes of text, as in the issue (4 KB, one recipient).
///
/// The load generator shares the machine's two cores with the server it measures, so it stays
/// lean: the text is escaped once (`text_json`) and each body is one `format!`, instead of a
/// `serde_json::Value` built and serialised per request.
fn body(text_json: &str, i: usize) -> String {
    format!(
        r#"{{"type":"system","to":["user{i}@example.com"],"subject":"Bench {i}","text":{text_json}}}"#
    )
}

/// The message text of [`body`]: `size` bytes of lines of Latin.
fn text(size: usize) -> String {
    let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n";
    line.repeat(size / line.len() + 1)[..size].to_string()
}

/// [`text`] as a JSON string.
fn text_json(size: usize) -> String {
    serde_json::to_string(&text(size)).expect("a string serialises")
}

/// One keep-alive HTTP/1.1 connection of the load generator: hyper's client connection, with
/// no pool or middleware in front of it.
///
/// The load generator shares the two cores with the server it measures, as `smtp-source` does
/// in the other pipelines, so it stays as lean as it can (its CPU per message is in the JSON).
struct Poster {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    host: http::HeaderValue,
    auth: http::HeaderValue,
}

impl Poster {
    async fn connect(port: u16, token: &str) -> anyhow::Result<Poster> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .context("connecting to cartero serve")?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "bench connection closed");
            }
        });
        Ok(Poster {
            sender,
            host: http::HeaderValue::from_str(&format!("127.0.0.1:{port}"))?,
            auth: http::HeaderValue::from_str(&format!("Bearer {token}"))?,
        })
    }

    /// One request with the token; the status and the whole answer.
    async fn send(
        &mut self,
        method: http::Method,
        path: &str,
        body: String,
    ) -> anyhow::Result<(http::StatusCode, bytes::Bytes)> {
        use http_body_util::BodyExt;
        self.sender.ready().await?;
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.host.clone())
            .header(http::header::AUTHORIZATION, self.auth.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }

    /// One `POST /v1/messages`; its latency in ms, or why it was not a 202.
    async fn post(&mut self, body: String) -> anyhow::Result<f64> {
        let t = Instant::now();
        let (status, answer) = self.send(http::Method::POST, "/v1/messages", body).await?;
        if status != http::StatusCode::ACCEPTED {
            bail!(
                "submission answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        Ok(ms(t.elapsed()))
    }
}

/// Submits `n` messages with `concurrency` in flight, each on a keep-alive connection of its
/// own; returns (latencies ms, first, last).
async fn submit(
    server: &Server,
    n: usize,
    concurrency: usize,
    size: usize,
    offset: usize,
) -> anyhow::Result<(Vec<f64>, Instant, Instant)> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let text = std::sync::Arc::new(text_json(size));
    let mut posters = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        posters.push(Poster::connect(server.port, &server.token).await?);
    }
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for mut poster in posters {
        let next = next.clone();
        let text = text.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                lat.push(poster.post(body(&text, offset + i)).await?);
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for w in workers {
        all.extend(w.await??);
    }
    Ok((all, t0, Instant::now()))
}

async fn cartero_round(opts: &BenchOptions, prefill: usize) -> anyhow::Result<CarteroRound> {
    let sink = Sink::start()?;
    let dir = tempfile::tempdir()?;
    if prefill > 0 {
        prefill_queue(dir.path(), prefill, Prefill::Parked).await?;
    }
    settle_disk();
    let (port, _relay) = destination(opts, &sink)?;
    let server = start_server(opts, port, dir.path()).await?;
    let io_before = server.proc_field("io", "write_bytes").unwrap_or(0.0);
    let cpu_before = server.cpu_seconds().unwrap_or(0.0);
    let client_before = cpu_seconds("self").unwrap_or(0.0);
    let (mut lat, t0, last) =
        submit(&server, opts.messages, opts.concurrency, opts.size, 0).await?;
    // Polled on a thread that may block, as the raw and Postfix rounds are.
    let done =
        tokio::task::block_in_place(|| sink.wait_for(opts.messages, Duration::from_secs(1800)))?;
    let io_after = server.proc_field("io", "write_bytes").unwrap_or(0.0);
    let cpu_after = server.cpu_seconds().unwrap_or(0.0);
    let client_after = cpu_seconds("self").unwrap_or(0.0);
    lat.sort_by(|a, b| a.total_cmp(b));
    let mut round = CarteroRound {
        accepted_per_s: opts.messages as f64 / (last - t0).as_secs_f64(),
        accept_p50_ms: percentile(&lat, 0.50),
        accept_p99_ms: percentile(&lat, 0.99),
        end_to_end_per_s: opts.messages as f64 / (done - t0).as_secs_f64(),
        disk_bytes_per_message: (io_after - io_before) / opts.messages as f64,
        cpu_us_per_message: (cpu_after - cpu_before) * 1e6 / opts.messages as f64,
        client_cpu_us_per_message: (client_after - client_before) * 1e6 / opts.messages as f64,
        ..CarteroRound::default()
    };

    // One message on an idle server: from the 202 to the sink's count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut poster = Poster::connect(server.port, &server.token).await?;
    let mut singles = Vec::new();
    let text = text_json(opts.size);
    for i in 0..11 {
        let before = sink.count();
        poster.post(body(&text, 10_000_000 + i)).await?;
        let accepted = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.count() <= before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        singles.push(ms(accepted.elapsed()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    round.single_message_ms = median(singles);

    if opts.rate > 0 {
        round.fixed_rate = Some(fixed_rate(&server, opts, dir.path()).await?);
    }
    round.peak_rss_mb = server.proc_field("status", "VmHWM").unwrap_or(0.0) / 1024.0;
    server.stop();
    Ok(round)
}

/// Accept latency while submitting the round's N messages at a fixed rate (open loop): at the
/// defaults, 20,000 submissions over 20 s. (A 5 s window made its p99 the 50th slowest of
/// 5,000, so one 50 ms stall of the disk, which holds back every commit meanwhile, decided it.)
async fn fixed_rate(server: &Server, opts: &BenchOptions, dir: &Path) -> anyhow::Result<FixedRate> {
    let total = opts.messages.max(opts.rate);
    let window = Duration::from_secs_f64(total as f64 / opts.rate as f64);
    // The disk on its own first, the server idle, for as long as the submissions take.
    let probe = DiskProbe::start(&dir.join("disk-probe"))?;
    tokio::time::sleep(window).await;
    let idle = probe.stop()?;
    let probe = DiskProbe::start(&dir.join("disk-probe"))?;
    // Idle keep-alive connections; a submission finding none opens another (open loop).
    let idle_posters = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Poster>::new()));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / opts.rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total);
    let text = text_json(opts.size);
    for i in 0..total {
        ticker.tick().await;
        let b = body(&text, 20_000_000 + i);
        let idle_posters = idle_posters.clone();
        let (port, token) = (server.port, server.token.clone());
        tasks.push(tokio::spawn(async move {
            // From the tick: a submission that needs a new connection waits for it too.
            let t = Instant::now();
            let taken = idle_posters.lock().expect("not poisoned").pop();
            let mut poster = match taken {
                Some(p) => p,
                None => Poster::connect(port, &token).await?,
            };
            poster.post(b).await?;
            idle_posters.lock().expect("not poisoned").push(poster);
            anyhow::Ok(Span {
                at: t,
                took: t.elapsed(),
            })
        }));
    }
    let mut spans = Vec::with_capacity(total);
    for t in tasks {
        spans.push(t.await??);
    }
    let syncs = probe.stop()?;
    let slow = over_bound(&spans);
    let disk_stalls = over_bound(&syncs);
    let mut lat: Vec<f64> = spans.iter().map(|s| ms(s.took)).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(FixedRate {
        rate_per_s: opts.rate,
        sent: total,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        p999_ms: percentile(&lat, 0.999),
        max_ms: lat.last().copied().unwrap_or(0.0),
        disk_sync_max_ms: slowest(&syncs),
        disk_stalls: disk_stalls.len(),
        slow: slow.len(),
        slow_during_disk_stall: overlapping(&slow, &disk_stalls),
        idle_disk_sync_max_ms: slowest(&idle),
        idle_disk_stalls: over_bound(&idle).len(),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Something that started at `at` and lasted `took`: a submission, or a synced write of the
/// disk probe.
#[derive(Debug, Clone, Copy)]
struct Span {
    at: Instant,
    took: Duration,
}

impl Span {
    fn overlaps(&self, other: &Span) -> bool {
        self.at < other.at + other.took && other.at < self.at + self.took
    }
}

/// The spans that lasted longer than [`SLOW_MS`]: slow submissions, or the probe's stalls.
fn over_bound(spans: &[Span]) -> Vec<Span> {
    spans
        .iter()
        .copied()
        .filter(|s| ms(s.took) > SLOW_MS)
        .collect()
}

fn slowest(syncs: &[Span]) -> f64 {
    syncs.iter().map(|s| ms(s.took)).fold(0.0, f64::max)
}

/// How many of `spans` overlap at least one of `stalls`.
fn overlapping(spans: &[Span], stalls: &[Span]) -> usize {
    spans
        .iter()
        .filter(|s| stalls.iter().any(|stall| s.overlaps(stall)))
        .count()
}

/// Times a small synced write on the disk under test every 20 ms, on a thread of its own,
/// until stopped: the disk's own stalls, told apart from cartero's.
struct DiskProbe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<std::io::Result<Vec<Span>>>,
}

impl DiskProbe {
    fn start(path: &Path) -> anyhow::Result<DiskProbe> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("creating the disk probe {}", path.display()))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let block = [0x5au8; 4096];
            let mut syncs = Vec::new();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let at = Instant::now();
                file.write_all_at(&block, 0)?;
                file.sync_data()?;
                syncs.push(Span {
                    at,
                    took: at.elapsed(),
                });
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(syncs)
        });
        Ok(DiskProbe { stop, thread })
    }

    /// Every synced write it timed.
    fn stop(self) -> anyhow::Result<Vec<Span>> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the disk probe panicked"))?
            .context("the disk probe's write failed")
    }
}

/// Drains `n` due messages that were queued while no server ran: starts `cartero serve` on
/// them and times it from its first healthy answer until the sink counted them all.
async fn backlog_round(opts: &BenchOptions, n: usize) -> anyhow::Result<BacklogRound> {
    let sink = Sink::start()?;
    let dir = tempfile::tempdir()?;
    prefill_queue(dir.path(), n, Prefill::Due { size: opts.size }).await?;
    settle_disk();
    let (port, _relay) = destination(opts, &sink)?;
    let server = start_server(opts, port, dir.path()).await?;
    let (t0, before) = (Instant::now(), sink.count());
    let cpu_before = server.cpu_seconds().unwrap_or(0.0);
    let done = tokio::task::block_in_place(|| sink.wait_for(n, Duration::from_secs(1800)))?;
    let cpu_after = server.cpu_seconds().unwrap_or(0.0);
    let drained = (n - before.min(n)) as f64;
    let round = BacklogRound {
        messages: n,
        drained_per_s: drained / (done - t0).as_secs_f64(),
        cpu_us_per_message: (cpu_after - cpu_before) * 1e6 / drained.max(1.0),
        peak_rss_mb: server.proc_field("status", "VmHWM").unwrap_or(0.0) / 1024.0,
    };
    server.stop();
    Ok(round)
}

/// What [`prefill_queue`] puts in the queue.
#[derive(Debug, Clone, Copy)]
enum Prefill {
    /// Deferred for a day, of type `parked` (which no account serves): a paused account's
    /// backlog, that the round's own messages pass.
    Parked,
    /// Due now, of type `system` (the sink's account) and the round's size: a backlog that
    /// built up while no server ran.
    Due { size: usize },
}

/// Fills a fresh data directory's queue with `n` messages, stored as the intake stores them.
async fn prefill_queue(dir: &Path, n: usize, what: Prefill) -> anyhow::Result<()> {
    let url = format!("sqlite://{}", dir.join("cartero.db").display());
    let store = crate::store::open(&url).await?;
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "prefilling the queue [{bar:40}] {pos}/{len} {per_sec}",
        )
        .expect("valid")
        .progress_chars("=> "),
    );
    let (message_type, text, due) = match what {
        Prefill::Parked => (
            "parked",
            "x".repeat(1000),
            crate::delivery::now_ms() + 24 * 3600 * 1000,
        ),
        Prefill::Due { size } => ("system", text(size), crate::delivery::now_ms()),
    };
    let content = |i: usize| {
        serde_json::to_string(&crate::domain::message::Content::Fields {
            subject: match what {
                Prefill::Parked => "parked".into(),
                Prefill::Due { .. } => format!("Backlog {i}"),
            },
            text: Some(text.clone()),
            html: None,
            reply_to: None,
            headers: vec![],
            attachments: vec![],
            template: None,
        })
    };
    let mut done = 0;
    while done < n {
        let batch = (done..(done + 5000).min(n))
            .map(|i| {
                Ok(crate::store::NewMessage {
                    id: uuid::Uuid::now_v7().to_string(),
                    project_id: crate::store::DEFAULT_PROJECT.into(),
                    message_type: message_type.into(),
                    content: content(i)?,
                    size: text.len(),
                    idempotency_key: None,
                    recipients: vec![(
                        format!("{message_type}{i}@example.com"),
                        crate::domain::message::RecipientKind::To,
                    )],
                    now_ms: due,
                    expires_at_ms: due + 3 * 24 * 3600 * 1000,
                    lease_until_ms: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let len = batch.len();
        store.enqueue(batch, None).await?;
        done += len;
        bar.set_position(done as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0);
    format!("{cores} cores, {:.0} GiB, {cpu}", mem / 1024.0 / 1024.0)
}

pub async fn run(opts: &BenchOptions) -> anyhow::Result<Summary> {
    let mut runs = Vec::new();
    for r in 0..opts.runs {
        eprintln!("round {}/{}: raw SMTP…", r + 1, opts.runs);
        let raw = tokio::task::block_in_place(|| raw_round(opts))?;
        let postfix = if opts.postfix {
            eprintln!("round {}/{}: Postfix…", r + 1, opts.runs);
            Some(tokio::task::block_in_place(|| postfix_round(opts))?)
        } else {
            None
        };
        eprintln!("round {}/{}: cartero…", r + 1, opts.runs);
        let cartero = cartero_round(opts, 0).await?;
        runs.push(Round {
            cartero,
            postfix_per_s: postfix,
            raw_per_s: raw,
        });
    }
    let m = |f: &dyn Fn(&Round) -> f64| median(runs.iter().map(f).collect());
    let m_rate =
        |f: &dyn Fn(&FixedRate) -> f64| m(&|r| r.cartero.fixed_rate.as_ref().map_or(0.0, f));
    let median_round = Round {
        cartero: CarteroRound {
            accepted_per_s: m(&|r| r.cartero.accepted_per_s),
            accept_p50_ms: m(&|r| r.cartero.accept_p50_ms),
            accept_p99_ms: m(&|r| r.cartero.accept_p99_ms),
            end_to_end_per_s: m(&|r| r.cartero.end_to_end_per_s),
            peak_rss_mb: m(&|r| r.cartero.peak_rss_mb),
            disk_bytes_per_message: m(&|r| r.cartero.disk_bytes_per_message),
            cpu_us_per_message: m(&|r| r.cartero.cpu_us_per_message),
            client_cpu_us_per_message: m(&|r| r.cartero.client_cpu_us_per_message),
            single_message_ms: m(&|r| r.cartero.single_message_ms),
            fixed_rate: (opts.rate > 0).then(|| FixedRate {
                rate_per_s: opts.rate,
                sent: runs[0].cartero.fixed_rate.as_ref().map_or(0, |f| f.sent),
                p50_ms: m_rate(&|f| f.p50_ms),
                p99_ms: m_rate(&|f| f.p99_ms),
                p999_ms: m_rate(&|f| f.p999_ms),
                max_ms: m_rate(&|f| f.max_ms),
                disk_sync_max_ms: m_rate(&|f| f.disk_sync_max_ms),
                disk_stalls: m_rate(&|f| f.disk_stalls as f64) as usize,
                slow: m_rate(&|f| f.slow as f64) as usize,
                slow_during_disk_stall: m_rate(&|f| f.slow_during_disk_stall as f64) as usize,
                idle_disk_sync_max_ms: m_rate(&|f| f.idle_disk_sync_max_ms),
                idle_disk_stalls: m_rate(&|f| f.idle_disk_stalls as f64) as usize,
            }),
        },
        postfix_per_s: opts.postfix.then(|| m(&|r| r.postfix_per_s.unwrap_or(0.0))),
        raw_per_s: m(&|r| r.raw_per_s),
    };
    let queued = if opts.queued > 0 {
        eprintln!(
            "extra round: cartero with {} messages already queued…",
            opts.queued
        );
        let q = cartero_round(opts, opts.queued).await?;
        Some(QueuedRound {
            queued: opts.queued,
            end_to_end_per_s: q.end_to_end_per_s,
            peak_rss_mb: q.peak_rss_mb,
            relative_to_empty: q.end_to_end_per_s / median_round.cartero.end_to_end_per_s,
        })
    } else {
        None
    };
    let backlog = if opts.backlog > 0 {
        eprintln!(
            "extra round: cartero draining a backlog of {} messages…",
            opts.backlog
        );
        Some(backlog_round(opts, opts.backlog).await?)
    } else {
        None
    };
    let summary = Summary {
        machine: machine(),
        messages: opts.messages,
        concurrency: opts.concurrency,
        size: opts.size,
        rtt_ms: opts.rtt.as_millis() as u64,
        ratio_cartero_postfix: median_round
            .postfix_per_s
            .filter(|p| *p > 0.0)
            .map(|p| median_round.cartero.end_to_end_per_s / p),
        ratio_cartero_raw: median_round.cartero.end_to_end_per_s / median_round.raw_per_s,
        median: median_round,
        runs,
        queued,
        backlog,
    };
    std::fs::write(&opts.out, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("writing {}", opts.out.display()))?;
    Ok(summary)
}

/// The table printed at the end (also pasted into BENCHMARKS.md).
pub fn table(s: &Summary) -> String {
    let c = &s.median.cartero;
    let mut out = String::new();
    out.push_str(&format!(
        "{} messages of {} bytes, concurrency {}{}, median of {} round(s) — {}\n\n",
        s.messages,
        s.size,
        s.concurrency,
        if s.rtt_ms > 0 {
            format!(", {} ms round trip to the sink", s.rtt_ms)
        } else {
            String::new()
        },
        s.runs.len(),
        s.machine
    ));
    out.push_str(
        "| measure | cartero | Postfix | raw smtp-source → smtp-sink |\n|---|---|---|---|\n",
    );
    out.push_str(&format!(
        "| end-to-end delivered msgs/s | {:.0} | {} | {:.0} |\n",
        c.end_to_end_per_s,
        s.median
            .postfix_per_s
            .map_or("—".into(), |p| format!("{p:.0}")),
        s.median.raw_per_s
    ));
    out.push_str(&format!(
        "| ratio cartero / … | 1 | {} | {:.2} |\n",
        s.ratio_cartero_postfix
            .map_or("—".into(), |r| format!("{r:.1}×")),
        s.ratio_cartero_raw
    ));
    if s.runs.len() > 1 {
        // The ratios of the medians above can pair a calm round of one pipeline with a slow
        // round of another; each round's own ratio compares pipelines measured seconds apart.
        let each = |ratio: &dyn Fn(&Round) -> Option<f64>, unit: &str, digits: usize| {
            let all: Vec<String> = s
                .runs
                .iter()
                .filter_map(ratio)
                .map(|r| format!("{r:.digits$}{unit}"))
                .collect();
            if all.is_empty() {
                "—".into()
            } else {
                all.join(", ")
            }
        };
        out.push_str(&format!(
            "| … in each round | | {} | {} |\n",
            each(
                &|r| r
                    .postfix_per_s
                    .filter(|p| *p > 0.0)
                    .map(|p| r.cartero.end_to_end_per_s / p),
                "×",
                1
            ),
            each(&|r| Some(r.cartero.end_to_end_per_s / r.raw_per_s), "", 2)
        ));
    }
    out.push_str(&format!(
        "| accepted msgs/s (HTTP 202) | {:.0} | | |\n",
        c.accepted_per_s
    ));
    out.push_str(&format!(
        "| accept latency p50 / p99 (closed loop) | {:.2} / {:.2} ms | | |\n",
        c.accept_p50_ms, c.accept_p99_ms
    ));
    if let Some(f) = &c.fixed_rate {
        out.push_str(&format!(
            "| accept latency p50 / p99 / p99.9 / max at {} msgs/s ({} submissions) | {:.2} / {:.2} / {:.1} / {:.1} ms | | |\n",
            f.rate_per_s, f.sent, f.p50_ms, f.p99_ms, f.p999_ms, f.max_ms
        ));
        out.push_str(&format!(
            "| submissions answered after {SLOW_MS:.0} ms; of them, while the disk probe stalled | {} of {}; {} | | |\n",
            f.slow, f.sent, f.slow_during_disk_stall
        ));
        out.push_str(&format!(
            "| meanwhile, a disk probe's 4 KB write + fdatasync every 20 ms: slowest; over {SLOW_MS:.0} ms | {:.1} ms; {} | | |\n",
            f.disk_sync_max_ms, f.disk_stalls
        ));
        out.push_str(&format!(
            "| the same probe just before, server idle: slowest; over {SLOW_MS:.0} ms | {:.1} ms; {} | | |\n",
            f.idle_disk_sync_max_ms, f.idle_disk_stalls
        ));
    }
    out.push_str(&format!("| peak RSS | {:.0} MB | | |\n", c.peak_rss_mb));
    out.push_str(&format!(
        "| disk bytes written per message | {:.0} | | |\n",
        c.disk_bytes_per_message
    ));
    out.push_str(&format!(
        "| server CPU per message (user + system) | {:.0} µs | | |\n",
        c.cpu_us_per_message
    ));
    out.push_str(&format!(
        "| load generator CPU per message (HTTP client) | {:.0} µs | | |\n",
        c.client_cpu_us_per_message
    ));
    out.push_str(&format!(
        "| one message, idle server: 202 → delivered | {:.1} ms | | |\n",
        c.single_message_ms
    ));
    if let Some(b) = &s.backlog {
        out.push_str(&format!(
            "| draining a backlog of {} (queued with no server running) | {:.0} msgs/s, {:.0} µs CPU per message, RSS {:.0} MB | | |\n",
            b.messages, b.drained_per_s, b.cpu_us_per_message, b.peak_rss_mb
        ));
    }
    if let Some(q) = &s.queued {
        out.push_str(&format!(
            "| end-to-end with {} already queued | {:.0} msgs/s ({:.0} % of empty), RSS {:.0} MB | | |\n",
            q.queued,
            q.end_to_end_per_s,
            q.relative_to_empty * 100.0,
            q.peak_rss_mb
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(base: Instant, from_ms: u64, took_ms: u64) -> Span {
        Span {
            at: base + Duration::from_millis(from_ms),
            took: Duration::from_millis(took_ms),
        }
    }

    #[test]
    fn the_sink_count_is_its_last_whole_record() {
        assert_eq!(
            last_count("sess=1 quit=1 mesg=1\rsess=1 quit=1 mesg=2\r"),
            Some(2)
        );
        // The last record still being written: the one before it counts.
        assert_eq!(
            last_count("quit=19 mesg=20010\rsess=19 quit=19 mesg=2"),
            Some(20010)
        );
        // The tail may begin inside a record.
        assert_eq!(last_count("g=7\rsess=3 quit=3 mesg=8\rsess"), Some(8));
        assert_eq!(last_count("sess=0 quit=0 mesg="), None);
        assert_eq!(last_count(""), None);
    }

    #[test]
    fn only_spans_over_the_bound_count() {
        let base = Instant::now();
        let syncs = [span(base, 0, 1), span(base, 20, 10), span(base, 40, 11)];
        let found = over_bound(&syncs);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].at, base + Duration::from_millis(40));
        assert_eq!(slowest(&syncs), 11.0);
        assert_eq!(slowest(&[]), 0.0);
    }

    #[test]
    fn a_slow_submission_counts_when_it_waited_through_part_of_a_stall() {
        let base = Instant::now();
        let stall = [span(base, 100, 50)]; // 100–150 ms
        let slow = [
            span(base, 90, 15),  // ends inside the stall
            span(base, 120, 12), // inside it
            span(base, 140, 30), // starts inside it
            span(base, 80, 100), // spans it
            span(base, 150, 20), // starts as it ended
            span(base, 60, 40),  // ends as it began
            span(base, 300, 25), // long after
        ];
        assert_eq!(overlapping(&slow, &stall), 4);
        assert_eq!(overlapping(&slow, &[]), 0);
    }

    #[test]
    fn the_table_gives_each_rounds_own_ratios() {
        let round = |cartero: f64, postfix: f64, raw: f64| Round {
            cartero: CarteroRound {
                end_to_end_per_s: cartero,
                ..CarteroRound::default()
            },
            postfix_per_s: Some(postfix),
            raw_per_s: raw,
        };
        let runs = vec![
            round(5_000.0, 625.0, 12_500.0),
            round(8_000.0, 800.0, 16_000.0),
            round(9_000.0, 600.0, 15_000.0),
        ];
        let summary = Summary {
            machine: String::new(),
            messages: 3,
            concurrency: 1,
            size: 1,
            rtt_ms: 0,
            median: round(8_000.0, 625.0, 15_000.0),
            ratio_cartero_postfix: Some(12.8),
            ratio_cartero_raw: 8_000.0 / 15_000.0,
            runs,
            queued: None,
            backlog: None,
        };
        let table = table(&summary);
        assert!(
            table.contains("| ratio cartero / … | 1 | 12.8× | 0.53 |"),
            "{table}"
        );
        assert!(
            table.contains("| … in each round | | 8.0×, 10.0×, 15.0× | 0.40, 0.50, 0.60 |"),
            "{table}"
        );
    }
}
