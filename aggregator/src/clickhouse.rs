//! A small ClickHouse HTTP client: statements, JSONEachRow inserts and
//! JSONEachRow selects. Written on plain HTTP rather than the `clickhouse`
//! crate because the SQL must also run on Debian's ClickHouse 18.16,
//! whose RowBinary parser has the chunk-boundary bug
//! (ClickHouse issue 37420) that current versions of the crate no longer work
//! around; JSON rows are parsed correctly by every server version.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error("clickhouse unreachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("clickhouse refused the query ({status}): {message}")]
    Server { status: u16, message: String },
    #[error("clickhouse answered rows this client cannot read: {0}")]
    Decode(String),
}

/// A connection to one database of one ClickHouse server.
#[derive(Clone)]
pub struct ClickHouse {
    http: reqwest::Client,
    url: String,
    database: String,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClickHouse({} db={})", self.url, self.database)
    }
}

impl ClickHouse {
    pub fn new(url: &str, database: &str) -> ClickHouse {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(20))
            .build()
            .expect("a reqwest client with only timeouts set always builds");
        ClickHouse {
            http,
            url: url.trim_end_matches('/').to_owned(),
            database: database.to_owned(),
        }
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET /ping` answers `Ok.` while the server takes queries.
    pub async fn ping(&self) -> bool {
        matches!(self.http.get(format!("{}/ping", self.url)).send().await, Ok(r) if r.status().is_success())
    }

    async fn post(
        &self,
        query: Option<&str>,
        body: Vec<u8>,
        in_database: bool,
    ) -> Result<Vec<u8>, ClickHouseError> {
        let mut params: Vec<(&str, &str)> = vec![
            // 64-bit integers as JSON numbers, so serde reads them directly.
            ("output_format_json_quote_64bit_integers", "0"),
            ("input_format_skip_unknown_fields", "0"),
        ];
        if in_database {
            params.push(("database", &self.database));
        }
        if let Some(q) = query {
            params.push(("query", q));
        }
        let response = self
            .http
            .post(format!("{}/", self.url))
            .query(&params)
            .body(body)
            .send()
            .await
            .map_err(|e| ClickHouseError::Unreachable {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClickHouseError::Unreachable {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        if !status.is_success() {
            return Err(ClickHouseError::Server {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes).trim().to_owned(),
            });
        }
        Ok(bytes.to_vec())
    }

    /// Runs one statement in this database.
    pub async fn execute(&self, sql: &str) -> Result<(), ClickHouseError> {
        self.post(None, sql.as_bytes().to_vec(), true)
            .await
            .map(drop)
    }

    /// Creates this client's database if it is missing.
    pub async fn create_database(&self) -> Result<(), ClickHouseError> {
        let sql = format!("CREATE DATABASE IF NOT EXISTS {}", ident(&self.database)?);
        self.post(None, sql.into_bytes(), false).await.map(drop)
    }

    /// Drops this client's database (tests and benches clean up with it).
    pub async fn drop_database(&self) -> Result<(), ClickHouseError> {
        let sql = format!("DROP DATABASE IF EXISTS {}", ident(&self.database)?);
        self.post(None, sql.into_bytes(), false).await.map(drop)
    }

    /// Inserts `rows` into `table` in one request. One request with fewer
    /// rows than `max_insert_block_size` into a table without partitions is
    /// written as one part: all or nothing.
    pub async fn insert<T: Serialize>(
        &self,
        table: &str,
        rows: &[T],
    ) -> Result<(), ClickHouseError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut body = Vec::with_capacity(rows.len() * 128);
        for row in rows {
            serde_json::to_writer(&mut body, row)
                .map_err(|e| ClickHouseError::Decode(e.to_string()))?;
            body.push(b'\n');
        }
        let query = format!("INSERT INTO {} FORMAT JSONEachRow", ident(table)?);
        self.post(Some(&query), body, true).await.map(drop)
    }

    /// Runs a SELECT and reads its rows.
    pub async fn select<T: DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, ClickHouseError> {
        let body = format!("{sql} FORMAT JSONEachRow");
        let started = std::time::Instant::now();
        let bytes = self.post(None, body.into_bytes(), true).await?;
        tracing::debug!(
            ms = started.elapsed().as_millis(),
            bytes = bytes.len(),
            "select answered"
        );
        bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                serde_json::from_slice(line).map_err(|e| ClickHouseError::Decode(e.to_string()))
            })
            .collect()
    }
}

/// A database or table name, checked to need no quoting.
pub fn ident(name: &str) -> Result<&str, ClickHouseError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(name)
    } else {
        Err(ClickHouseError::Server {
            status: 400,
            message: format!("{name:?} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)"),
        })
    }
}

/// A string literal for SQL text: the server has no query parameters on
/// 18.16, so values are escaped here and only here.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}
