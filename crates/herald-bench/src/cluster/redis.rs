//! The bench's few words with Redis, in RESP over one plain TCP connection (no client library):
//! is it there, how much CPU has it used, and removing a run's keys afterwards (by the watchdog
//! too: the nodes are killed, so they leave their heartbeats and registrations behind).

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _};

/// Cluster prefixes whose keys are still in Redis, for the watchdog: (Redis URL, prefixes).
static PREFIXES: Mutex<Option<(String, Vec<String>)>> = Mutex::new(None);

/// Remembers (or forgets, once its keys are gone) a prefix the run uses.
pub(super) fn remember(url: &str, prefix: &str, used: bool) {
    let mut guard = PREFIXES.lock().unwrap_or_else(|p| p.into_inner());
    let (_, prefixes) = guard.get_or_insert_with(|| (url.to_owned(), Vec::new()));
    if used {
        prefixes.push(prefix.to_owned());
    } else {
        prefixes.retain(|known| known != prefix);
    }
}

/// Removes the keys of the prefixes a run left behind (the watchdog calls it after killing the
/// servers).
pub(crate) fn delete_leftover_keys() {
    let Some((url, prefixes)) = PREFIXES.lock().unwrap_or_else(|p| p.into_inner()).take() else {
        return;
    };
    let Ok(mut redis) = Redis::connect(&url) else {
        eprintln!("herald-bench: cannot remove the Redis keys of {prefixes:?}; remove them by hand");
        return;
    };
    for prefix in prefixes {
        let _ = redis.delete_prefix(&prefix);
    }
}

/// One RESP reply.
#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// `redis://host:port[/db]` → `host:port`. Only a Redis on this machine, without a password.
fn address(url: &str) -> anyhow::Result<String> {
    let rest = url.strip_prefix("redis://").with_context(|| format!("{url:?} is not a redis:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        bail!("the bench does not log in to Redis; use a Redis without a password");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().context("the Redis port")?),
        None => (authority, 6379),
    };
    if !matches!(host, "127.0.0.1" | "localhost") {
        bail!("the bench only talks to 127.0.0.1; {host:?} is not this machine");
    }
    Ok(format!("127.0.0.1:{port}"))
}

/// A connection to Redis.
pub(crate) struct Redis {
    stream: BufReader<TcpStream>,
}

impl Redis {
    pub(crate) fn connect(url: &str) -> anyhow::Result<Redis> {
        let address = address(url)?;
        let socket = address.parse().context("the Redis address")?;
        let stream = TcpStream::connect_timeout(&socket, Duration::from_secs(2))
            .with_context(|| format!("cannot connect to Redis at {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut redis = Redis { stream: BufReader::new(stream) };
        match redis.command(&["PING"])? {
            Reply::Simple(pong) if pong == "PONG" => Ok(redis),
            other => bail!("Redis answered PING with {other:?}"),
        }
    }

    /// Sends one command and reads its reply; an error reply is an error.
    fn command(&mut self, args: &[&str]) -> anyhow::Result<Reply> {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.stream.get_mut().write_all(request.as_bytes()).context("write to Redis")?;
        self.reply()
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).context("read from Redis")? == 0 {
            bail!("Redis closed the connection");
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn reply(&mut self) -> anyhow::Result<Reply> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let number =
            || rest.parse::<i64>().with_context(|| format!("a RESP length or integer, got {line:?}"));
        Ok(match kind {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => bail!("Redis: {rest}"),
            ":" => Reply::Integer(number()?),
            "$" => match usize::try_from(number()?) {
                Ok(length) => {
                    let mut data = vec![0; length + 2];
                    self.stream.read_exact(&mut data).context("read from Redis")?;
                    data.truncate(length);
                    Reply::Bulk(Some(data))
                }
                Err(_) => Reply::Bulk(None),
            },
            "*" => {
                let count = usize::try_from(number()?).unwrap_or(0);
                Reply::Array((0..count).map(|_| self.reply()).collect::<anyhow::Result<_>>()?)
            }
            _ => bail!("not a RESP reply: {line:?}"),
        })
    }

    /// CPU seconds (user + system, every thread) Redis has used since it started (`INFO cpu`).
    pub(crate) fn cpu_secs(&mut self) -> Option<f64> {
        let Reply::Bulk(Some(info)) = self.command(&["INFO", "cpu"]).ok()? else {
            return None;
        };
        Some(used_cpu(&String::from_utf8_lossy(&info)))
    }

    /// Deletes every key of the Herald cluster `prefix` (`{prefix:…}…` and `{prefix}:…`);
    /// returns how many.
    pub(crate) fn delete_prefix(&mut self, prefix: &str) -> anyhow::Result<i64> {
        let pattern = format!("{{{prefix}[:}}]*");
        let mut cursor = "0".to_owned();
        let mut deleted = 0;
        loop {
            let reply = self.command(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"])?;
            let Reply::Array(mut parts) = reply else { bail!("SCAN answered {reply:?}") };
            let (Some(Reply::Array(keys)), Some(Reply::Bulk(Some(next)))) = (parts.pop(), parts.pop()) else {
                bail!("SCAN answered {parts:?}");
            };
            let keys: Vec<String> = keys
                .into_iter()
                .filter_map(|key| match key {
                    Reply::Bulk(Some(key)) => String::from_utf8(key).ok(),
                    _ => None,
                })
                .collect();
            if !keys.is_empty() {
                let mut args = vec!["DEL"];
                args.extend(keys.iter().map(String::as_str));
                if let Reply::Integer(count) = self.command(&args)? {
                    deleted += count;
                }
            }
            cursor = String::from_utf8_lossy(&next).into_owned();
            if cursor == "0" {
                return Ok(deleted);
            }
        }
    }
}

/// `used_cpu_sys` + `used_cpu_user` of an `INFO cpu` answer.
fn used_cpu(info: &str) -> f64 {
    info.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| matches!(*name, "used_cpu_sys" | "used_cpu_user"))
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_urls() {
        assert_eq!(address("redis://127.0.0.1:6379").unwrap(), "127.0.0.1:6379");
        assert_eq!(address("redis://localhost/2").unwrap(), "127.0.0.1:6379");
        assert!(address("redis://:secret@127.0.0.1:6379").is_err());
        assert!(address("redis://cache.example.com:6379").is_err());
        assert!(address("rediss://127.0.0.1:6379").is_err());
    }

    #[test]
    fn sums_redis_cpu() {
        let info =
            "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9.0\r\n";
        assert_eq!(used_cpu(info), 3.75);
    }
}
