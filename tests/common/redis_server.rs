//! Redis servers for the scale-out tests: the distribution's `redis-server`, started by the
//! test on a free loopback port with no persistence, stopped when dropped.
//!
//! `scripts/test` installs `redis-server` when it is missing. Without it the tests fail with
//! a message that says how to get it; they never skip themselves.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`; stopped when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
    /// Where its log goes (shown when it fails to start).
    log: PathBuf,
    /// TLS: the port carries only TLS, and clients need this CA.
    pub tls: bool,
    pub password: Option<String>,
    /// `scripts/test`'s server: never stopped here.
    shared: bool,
}

/// The `redis-server` binary: `MARKETCAST_TEST_REDIS_SERVER`, else the one on `PATH`.
fn binary() -> String {
    if let Ok(path) = std::env::var("MARKETCAST_TEST_REDIS_SERVER") {
        return path;
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = std::path::Path::new(dir).join("redis-server");
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!(
        "the Redis tests need `redis-server`, which is not installed here: run scripts/test \
         (it installs it), or `apt-get install redis-server`, or set \
         MARKETCAST_TEST_REDIS_SERVER to its path"
    );
}

impl RedisServer {
    /// The Redis `scripts/test` runs (`MARKETCAST_TEST_REDIS_URL`), for tests that neither
    /// stop it nor need special settings and keep to a prefix of their own; else one of the
    /// test's own.
    pub fn shared() -> RedisServer {
        let Ok(url) = std::env::var("MARKETCAST_TEST_REDIS_URL") else {
            return Self::start();
        };
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("MARKETCAST_TEST_REDIS_URL={url}: no port"));
        RedisServer {
            child: None,
            port,
            args: Vec::new(),
            log: PathBuf::new(),
            tls: false,
            password: None,
            shared: true,
        }
    }

    /// A plain Redis of the test's own.
    pub fn start() -> RedisServer {
        Self::start_with(Vec::new(), false, None)
    }

    /// A Redis that wants `password`.
    pub fn with_password(password: &str) -> RedisServer {
        Self::start_with(
            vec!["--requirepass".into(), password.into()],
            false,
            Some(password.into()),
        )
    }

    /// A Redis that speaks only TLS (with `cert` and `key`, signed by `ca`), and wants
    /// `password`.
    pub fn with_tls(cert: &str, key: &str, ca: &str, password: &str) -> RedisServer {
        let args = [
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
            "--tls-ca-cert-file",
            ca,
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
        ];
        Self::start_with(
            args.iter().map(|s| s.to_string()).collect(),
            true,
            Some(password.into()),
        )
    }

    fn start_with(args: Vec<String>, tls: bool, password: Option<String>) -> RedisServer {
        let port = super::free_port();
        let log = std::env::temp_dir().join(format!(
            "marketcast-redis-{}-{port}.log",
            std::process::id()
        ));
        let mut r = RedisServer {
            child: None,
            port,
            args,
            log,
            tls,
            password,
            shared: false,
        };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let port = self.port.to_string();
        let mut cmd = Command::new(binary());
        let (port_flag, plain_port) = if self.tls {
            ("--tls-port", "0")
        } else {
            ("--port", port.as_str())
        };
        cmd.args([
            port_flag,
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            &self.log.display().to_string(),
        ]);
        if self.tls {
            cmd.args(["--port", plain_port]);
        }
        cmd.args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("start redis-server");
        self.child = Some(child);
        // Ready when it accepts connections (a TCP connect is enough for TLS too).
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    panic!("redis-server exited ({status}): {log}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL the nodes are given.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        match &self.password {
            Some(pw) => format!("{scheme}://:{pw}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// Stops it at once (SIGKILL: an unclean loss, as a crash or a network cut looks).
    pub fn stop(&mut self) {
        assert!(!self.shared, "the shared Redis is not the test's to stop");
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// A client connection (plain only), for publishing by hand.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test Redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.shared {
            return;
        }
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}
