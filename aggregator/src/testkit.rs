//! Services of a test's or benchmark's own, for what must not touch the
//! shared ones: a ClickHouse server in a temporary directory and a tansu
//! broker, each restartable with SIGKILL (the chaos test and the outage
//! benchmark); and what pipeline tests do around an aggregator: produce
//! records as they are, wait for committed batches, read dead letters.
//! Enabled by the `testkit` feature; not part of the product.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} not ready after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

pub fn kill9(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// A ClickHouse server of this test's own, in a temporary directory.
pub struct OwnClickHouse {
    dir: PathBuf,
    http_port: u16,
    child: Option<Child>,
}

impl OwnClickHouse {
    pub fn start(dir: &Path) -> OwnClickHouse {
        let http_port = free_port();
        let tcp_port = free_port();
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog></logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{d}/data/</path>
    <tmp_path>{d}/data/tmp/</tmp_path>
    <user_files_path>{d}/data/user_files/</user_files_path>
    <format_schema_path>{d}/data/format_schemas/</format_schema_path>
    <users_config>/etc/clickhouse-server/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
</yandex>"#,
            d = dir.display()
        );
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("config.xml"), config).unwrap();
        let mut ch = OwnClickHouse {
            dir: dir.to_owned(),
            http_port,
            child: None,
        };
        ch.restart();
        ch
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Kills the server (SIGKILL); `restart` brings it back on its data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("/usr/sbin/clickhouse-server")
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clickhouse-server (deploy/local/pipeline-services.sh installs it)");
        self.child = Some(child);
        let port = self.http_port;
        wait_until("clickhouse", Duration::from_secs(60), || port_open(port));
    }
}

impl Drop for OwnClickHouse {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }
}

/// A tansu broker of this test's own. With `sqlite://broker.db` its log is a
/// file in `dir` (its working directory) and survives restarts.
pub struct OwnBroker {
    port: u16,
    storage: String,
    dir: PathBuf,
    child: Option<Child>,
    /// Clients must sign in with SASL (SCRAM users of its storage).
    authentication: bool,
}

pub fn tansu_binary() -> PathBuf {
    std::env::var_os("DOTMAC_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache =
                std::env::var("DOTMAC_CACHE").unwrap_or_else(|_| "/var/cache/dotmac".into());
            Path::new(&cache).join("broker/bin/tansu")
        })
}

impl OwnBroker {
    pub fn start(dir: &Path, storage: &str) -> OwnBroker {
        std::fs::create_dir_all(dir).expect("broker dir");
        let mut b = OwnBroker {
            port: free_port(),
            storage: storage.to_owned(),
            dir: dir.to_owned(),
            child: None,
            authentication: false,
        };
        b.restart();
        b
    }

    /// Restarts the broker requiring SASL sign-in (tansu 0.6: SCRAM-SHA-256
    /// or -512, users kept by the sqlite storage engine).
    pub fn require_authentication(&mut self) {
        self.authentication = true;
        self.restart();
    }

    /// Creates a SCRAM-SHA-512 user (while authentication is off: tansu's
    /// user tool cannot sign in itself).
    pub fn create_user(&self, name: &str, password: &str) {
        let broker = format!("tcp://{}", self.address());
        let status = Command::new(tansu_binary())
            .args([
                "user",
                "create",
                name,
                password,
                "--broker",
                &broker,
                "--mechanism",
                "scram512",
            ])
            .current_dir(&self.dir)
            .status()
            .expect("tansu user create");
        assert!(status.success(), "tansu user create {name}: {status}");
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
        let url = format!("tcp://{}", self.address());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .unwrap();
        let mut args = vec![
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            &self.storage,
        ];
        if self.authentication {
            args.push("--authentication");
        }
        let child = Command::new(tansu_binary())
            .args(args)
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tansu (deploy/local/pipeline-services.sh builds it)");
        self.child = Some(child);
        let port = self.port;
        wait_until("broker", Duration::from_secs(60), || port_open(port));
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
    }
}

/// A record as produced: its key (the tenant id, or anything) and bytes.
pub type RawRecord = (Option<String>, Vec<u8>);

/// Produces `records` to `topic` as they are (any key, any bytes), each
/// acknowledged by the broker.
pub async fn produce(brokers: &str, topic: &str, records: &[RawRecord]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = dotmac_ingest::kafka::events_producer_config(
        brokers,
        &dotmac_ingest::kafka::KafkaSecurity::default(),
    )
    .set("linger.ms", "5")
    .create()
    .expect("a producer");
    for chunk in records.chunks(5000) {
        let sends = chunk.iter().map(|(key, payload)| {
            let mut r: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(topic).payload(payload.as_slice());
            if let Some(k) = key {
                r = r.key(k.as_str());
            }
            producer.send(r, rdkafka::util::Timeout::After(Duration::from_secs(30)))
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(e, _)| e).expect("broker acknowledged");
        }
    }
}

/// Waits until committed batches of `usage` account for `records` records.
pub async fn wait_for_records(
    usage: &crate::store::UsageStore,
    records: u64,
    timeout: Duration,
) -> crate::store::BatchTotals {
    let deadline = Instant::now() + timeout;
    loop {
        // A read may fail while ClickHouse restarts (the chaos test); the
        // last failure is shown if the wait runs out.
        let (totals, failure) = match usage.totals().await {
            Ok(t) => (t, None),
            Err(e) => (Default::default(), Some(e.to_string())),
        };
        if totals.events >= records {
            return totals;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {records} records committed after {timeout:?}: {totals:?} (last read error: {failure:?})",
            totals.events
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads `n` records of the dead-letter `topic` (or what arrives within a
/// minute): key, payload, and the reason header.
pub fn dead_letters(
    brokers: &str,
    topic: &str,
    n: usize,
) -> Vec<(Option<String>, Vec<u8>, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    use rdkafka::Message;
    let group = format!("dlq-reader-{}", uuid::Uuid::new_v4().simple());
    let consumer: BaseConsumer = dotmac_ingest::kafka::client_config(
        brokers,
        &dotmac_ingest::kafka::KafkaSecurity::default(),
    )
    .set("group.id", group)
    .set("auto.offset.reset", "earliest")
    .set("session.timeout.ms", "6000")
    .set("max.poll.interval.ms", "7000")
    .create()
    .expect("a consumer");
    consumer.subscribe(&[topic]).expect("subscribed");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let reason = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "dotmac-reason"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            out.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                m.payload().unwrap_or_default().to_vec(),
                reason,
            ));
        }
    }
    out
}
