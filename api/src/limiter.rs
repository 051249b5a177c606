//! Rate limits by GCRA (generic cell rate algorithm): a steady rate with a
//! burst allowance, one timestamp per key. In Redis (atomic Lua script, server
//! clock) for `serve`; in memory for `dev`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{ApiError, ApiResult};

/// A rate: `per_minute` sustained, `burst` requests allowed back to back.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    fn interval_us(self) -> u64 {
        60_000_000 / u64::from(self.per_minute.max(1))
    }
    fn tolerance_us(self) -> u64 {
        self.interval_us() * u64::from(self.burst.max(1))
    }
}

#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync {
    /// Ok if allowed; `RateLimited` with the wait otherwise.
    async fn check(&self, key: &str, rate: Rate) -> ApiResult<()>;
}

fn limited(wait_us: u64) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: wait_us.div_ceil(1_000_000).max(1),
    }
}

/// In-memory limiter for the embedded mode.
pub struct LocalLimiter {
    start: Instant,
    tats: Mutex<HashMap<String, u64>>,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        LocalLimiter {
            start: Instant::now(),
            tats: Mutex::new(HashMap::new()),
        }
    }
}

impl LocalLimiter {
    fn check_at(&self, key: &str, rate: Rate, now: u64) -> ApiResult<()> {
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        let tat = tats.get(key).copied().unwrap_or(now).max(now);
        let new_tat = tat + rate.interval_us();
        let allow_at = new_tat.saturating_sub(rate.tolerance_us());
        if now < allow_at {
            return Err(limited(allow_at - now));
        }
        tats.insert(key.to_owned(), new_tat);
        Ok(())
    }
}

#[async_trait::async_trait]
impl RateLimiter for LocalLimiter {
    async fn check(&self, key: &str, rate: Rate) -> ApiResult<()> {
        let now =
            self.start.elapsed().as_micros() as u64 + Duration::from_secs(3600).as_micros() as u64;
        self.check_at(key, rate, now)
    }
}

const GCRA_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if now < allow_at then return allow_at - now end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
";

/// Redis limiter shared by every API process.
pub struct RedisLimiter {
    conn: redis::aio::MultiplexedConnection,
    script: redis::Script,
    namespace: String,
}

impl RedisLimiter {
    pub async fn connect(url: &str, namespace: &str) -> ApiResult<Self> {
        let conn = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        Ok(RedisLimiter {
            conn,
            script: redis::Script::new(GCRA_LUA),
            namespace: namespace.to_owned(),
        })
    }
}

#[async_trait::async_trait]
impl RateLimiter for RedisLimiter {
    async fn check(&self, key: &str, rate: Rate) -> ApiResult<()> {
        let mut conn = self.conn.clone();
        let wait: u64 = self
            .script
            .key(format!("{}:rl:{key}", self.namespace))
            .arg(rate.interval_us())
            .arg(rate.tolerance_us())
            .invoke_async(&mut conn)
            .await?;
        if wait > 0 {
            return Err(limited(wait));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let l = LocalLimiter::default();
        let rate = Rate {
            per_minute: 60,
            burst: 3,
        };
        let t0 = 10_000_000_000;
        for _ in 0..3 {
            l.check_at("k", rate, t0).unwrap();
        }
        assert!(l.check_at("k", rate, t0).is_err());
        assert!(l.check_at("other", rate, t0).is_ok());
        // One interval later exactly one more is allowed.
        l.check_at("k", rate, t0 + 1_000_000).unwrap();
        assert!(l.check_at("k", rate, t0 + 1_000_000).is_err());
    }
}
