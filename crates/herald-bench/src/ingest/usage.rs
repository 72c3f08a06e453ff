//! CPU and I/O around a step: the server's threads and writes, and with PostgreSQL its
//! processes and WAL.

use std::collections::{BTreeMap, HashMap};

use crate::phases::{Cpu, CpuClock};
use crate::postgres::{Postgres, Wal};
use crate::server::{cpu_secs, Server};

/// CPU seconds of the processes around the server during a step.
#[derive(Debug, Clone, Default)]
pub(crate) struct Usage {
    pub(crate) cpu: Cpu,
    /// The server's threads, grouped by name (`tokio-runtime-worker`, `sqlx-sqlite-worker`),
    /// busiest first.
    pub(crate) threads: Vec<(String, f64)>,
    /// PostgreSQL: the server's backend processes, and the WAL writer + checkpointer + background
    /// writer (shared by the whole cluster).
    pub(crate) postgres_backends: Option<f64>,
    pub(crate) postgres_aux: Option<f64>,
    /// PostgreSQL: `pg_stat_wal` growth (cluster-wide).
    pub(crate) wal: Option<Wal>,
    /// The server's `/proc/<pid>/io`: bytes sent to storage, write syscalls (`syscw`: files and
    /// sockets alike).
    pub(crate) write_bytes: u64,
    pub(crate) write_calls: u64,
}

impl Usage {
    /// CPU of every other process, without the PostgreSQL processes counted above.
    pub(crate) fn others(&self) -> f64 {
        (self.cpu.others() - self.postgres_backends.unwrap_or(0.0) - self.postgres_aux.unwrap_or(0.0))
            .max(0.0)
    }
}

/// The server's threads: tid → (name, CPU seconds).
fn server_threads(pid: u32) -> HashMap<String, (String, f64)> {
    let mut threads = HashMap::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for entry in entries.flatten() {
        let tid = entry.file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).unwrap_or_default();
        // `sqlx-sqlite-worker-3` and `sqlx-sqlite-worker-0` are one group.
        let name = comm.trim().trim_end_matches(|c: char| c.is_ascii_digit() || c == '-' || c == '_');
        let name = if name.is_empty() { comm.trim() } else { name };
        threads.insert(tid.clone(), (name.to_owned(), cpu_secs(&format!("{pid}/task/{tid}"))));
    }
    threads
}

/// `write_bytes` and `syscw` of `/proc/<pid>/io`.
fn server_io(pid: u32) -> (u64, u64) {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        io.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("write_bytes:"), field("syscw:"))
}

/// The PostgreSQL server and the database of the server under test, to read their CPU and WAL.
pub(super) struct Probe<'a> {
    pub(super) pg: &'a mut Postgres,
    pub(super) database: &'a str,
}

pub(super) struct UsageClock {
    cpu: CpuClock,
    threads: HashMap<String, (String, f64)>,
    io: (u64, u64),
    postgres: Option<(String, HashMap<i32, f64>, Option<Wal>)>,
}

impl UsageClock {
    pub(super) async fn start(server: &Server, postgres: Option<&mut Probe<'_>>) -> UsageClock {
        let postgres = match postgres {
            Some(Probe { pg, database }) => {
                let processes = pg.processes(database).await;
                let cpu = processes.iter().map(|(pid, _)| (*pid, cpu_secs(&pid.to_string()))).collect();
                Some((database.to_owned(), cpu, pg.wal().await))
            }
            None => None,
        };
        UsageClock {
            cpu: CpuClock::start(server),
            threads: server_threads(server.pid),
            io: server_io(server.pid),
            postgres,
        }
    }

    pub(super) async fn stop(self, server: &Server, postgres: Option<&mut Probe<'_>>) -> Usage {
        let cpu = self.cpu.stop(server);
        let mut groups: BTreeMap<String, f64> = BTreeMap::new();
        for (tid, (name, secs)) in server_threads(server.pid) {
            let before = self.threads.get(&tid).map_or(0.0, |(_, secs)| *secs);
            *groups.entry(name).or_default() += secs - before;
        }
        let mut threads: Vec<(String, f64)> = groups.into_iter().filter(|(_, secs)| *secs >= 0.05).collect();
        threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        let io = server_io(server.pid);
        let mut usage = Usage {
            cpu,
            threads,
            write_bytes: io.0.saturating_sub(self.io.0),
            write_calls: io.1.saturating_sub(self.io.1),
            ..Usage::default()
        };
        if let (Some((database, before, wal_before)), Some(Probe { pg, .. })) = (self.postgres, postgres) {
            let (mut backends, mut aux) = (0.0, 0.0);
            for (pid, is_backend) in pg.processes(&database).await {
                let secs = cpu_secs(&pid.to_string()) - before.get(&pid).copied().unwrap_or(0.0);
                if is_backend {
                    backends += secs;
                } else {
                    aux += secs;
                }
            }
            usage.postgres_backends = Some(backends);
            usage.postgres_aux = Some(aux);
            if let (Some(before), Some(after)) = (wal_before, pg.wal().await) {
                usage.wal = Some(Wal {
                    records: after.records - before.records,
                    bytes: after.bytes - before.bytes,
                    writes: after.writes - before.writes,
                    syncs: after.syncs - before.syncs,
                });
            }
        }
        usage
    }
}
