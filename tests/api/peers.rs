//! Real peers for the tests: the scriptable aiosmtpd server (`tests/peers/smtpd.py`),
//! certificates made on the spot by a test CA, and the skip-or-fail rule.
//!
//! A test that needs a peer that is not installed prints a loud SKIPPED line and returns,
//! unless `CARTERO_REQUIRE_PEERS=1` (CI), where it fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn peers_required() -> bool {
    std::env::var("CARTERO_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// Says loudly that a test cannot run, or fails it when peers are required.
pub fn missing_peer(peer: &str, hint: &str) {
    if peers_required() {
        panic!("peer `{peer}` is required (CARTERO_REQUIRE_PEERS=1) but missing: {hint}");
    }
    eprintln!("\n*** SKIPPED: peer `{peer}` is not available ({hint}); run scripts/peers.sh ***\n");
}

fn aiosmtpd_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA and server certificates for 127.0.0.1/localhost: valid, expired, for another
/// name, and self-signed.
pub struct TestPki {
    _dir: tempfile::TempDir,
    pub ca_pem: PathBuf,
    pub valid: CertFiles,
    pub expired: CertFiles,
    pub wrong_name: CertFiles,
    pub self_signed: CertFiles,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "cartero test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let ca_pem = dir.path().join("ca.pem");
        std::fs::write(&ca_pem, ca.pem()).unwrap();

        let leaf = |name: &str, sans: Vec<String>, expired: bool, self_signed: bool| {
            let mut params = CertificateParams::new(sans).unwrap();
            params.is_ca = IsCa::ExplicitNoCa;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.distinguished_name.push(DnType::CommonName, name);
            if expired {
                params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(60);
                params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(30);
            }
            let key = KeyPair::generate().unwrap();
            let cert = if self_signed {
                params.self_signed(&key).unwrap()
            } else {
                params.signed_by(&key, &ca).unwrap()
            };
            let files = CertFiles {
                cert: dir.path().join(format!("{name}.crt")),
                key: dir.path().join(format!("{name}.key")),
            };
            std::fs::write(&files.cert, cert.pem()).unwrap();
            std::fs::write(&files.key, key.serialize_pem()).unwrap();
            files
        };
        let local = || vec!["localhost".to_string(), "127.0.0.1".to_string()];
        TestPki {
            valid: leaf("valid", local(), false, false),
            expired: leaf("expired", local(), true, false),
            wrong_name: leaf("wrong-name", vec!["mail.example.net".into()], false, false),
            self_signed: leaf("self-signed", local(), false, true),
            ca_pem,
            _dir: dir,
        }
    }
}

/// How to start the scriptable SMTP server.
#[derive(Clone, Debug, Default)]
pub struct SmtpdOptions {
    /// `plain`, `starttls`, `tls` or `silent`.
    pub mode: &'static str,
    pub cert: Option<CertFiles>,
    pub auth: Option<(&'static str, &'static str)>,
    pub auth_require_tls: bool,
    pub require_starttls: bool,
    /// Canned replies (see tests/peers/smtpd.py).
    pub script: Option<Value>,
}

/// A running `tests/peers/smtpd.py`, stopped when dropped.
pub struct Smtpd {
    pub port: u16,
    pub maildir: PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Smtpd {
    /// Starts the server, or returns `None` (after [`missing_peer`]) when aiosmtpd is absent.
    pub fn start(options: SmtpdOptions) -> Option<Smtpd> {
        if !aiosmtpd_available() {
            missing_peer("aiosmtpd", "python3 -c 'import aiosmtpd' failed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/smtpd.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args(["--host", "127.0.0.1", "--port", "0", "--mode", options.mode])
            .arg("--maildir")
            .arg(&maildir);
        if let Some(c) = &options.cert {
            cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
        }
        if let Some((user, pass)) = options.auth {
            cmd.arg("--auth").arg(format!("{user}:{pass}"));
        }
        if options.auth_require_tls {
            cmd.arg("--auth-require-tls");
        }
        if options.require_starttls {
            cmd.arg("--require-starttls");
        }
        if let Some(script) = &options.script {
            let path = dir.path().join("script.json");
            std::fs::write(&path, script.to_string()).unwrap();
            cmd.arg("--script").arg(path);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let port = read_ready(&mut child, "smtpd.py");
        Some(Smtpd {
            port: port[0],
            maildir,
            _dir: dir,
            child,
        })
    }

    /// The log lines of accepted messages so far.
    pub fn messages(&self) -> Vec<Value> {
        read_log(&self.maildir.join("log.jsonl"))
    }

    /// Waits until `n` messages were accepted (or `timeout` passes) and returns them.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let got = self.messages();
            if got.len() >= n || start.elapsed() > timeout {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The raw bytes of the n-th accepted message (1-based, as the server numbers them).
    pub fn message_body(&self, n: usize) -> String {
        std::fs::read_to_string(self.maildir.join(format!("{n}.eml"))).unwrap_or_default()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Reads the `READY <port> [<port>…]` line a peer script prints once it listens.
pub fn read_ready(child: &mut Child, what: &str) -> Vec<u16> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} did not print READY within 20 s"));
    let ports: Vec<u16> = line
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("{what} printed `{line}` instead of READY"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(!ports.is_empty(), "{what}: READY without a port");
    ports
}

/// A port that was free a moment ago (for peers that cannot report the port they bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Postfix's `smtp-sink`, stopped when dropped.
pub struct SmtpSink {
    pub port: u16,
    child: Child,
}

impl SmtpSink {
    /// `smtp-sink -u nobody [extra…] 127.0.0.1:PORT 64`, once it accepts connections.
    pub fn start(extra: &[&str]) -> Option<SmtpSink> {
        let bin = ["/usr/sbin/smtp-sink", "/usr/lib/postfix/smtp-sink"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(bin) = bin else {
            missing_peer("smtp-sink", "Postfix's smtp-sink is not installed");
            return None;
        };
        let port = free_port();
        let child = Command::new(bin)
            .args(["-u", "nobody"])
            .args(extra)
            .arg(format!("127.0.0.1:{port}"))
            .arg("64")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("smtp-sink runs");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "smtp-sink did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(SmtpSink { port, child })
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private Dovecot (`tests/peers/dovecot.py`), stopped when dropped.
pub struct Dovecot {
    pub imap_port: u16,
    pub imaps_port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Dovecot {
    pub fn start(cert: &CertFiles, user: &str, password: &str) -> Option<Dovecot> {
        if !Path::new("/usr/sbin/dovecot").exists() {
            missing_peer("dovecot", "/usr/sbin/dovecot is not installed");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("dc")
            .tempdir_in("/tmp")
            .unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/dovecot.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--dir")
            .arg(dir.path())
            .arg("--cert")
            .arg(&cert.cert)
            .arg("--key")
            .arg(&cert.key)
            .arg("--user")
            .arg(format!("{user}:{password}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let ports = read_ready(&mut child, "dovecot.py");
        Some(Dovecot {
            imap_port: ports[0],
            imaps_port: ports[1],
            _dir: dir,
            child,
        })
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the wrapper stop Dovecot cleanly.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
