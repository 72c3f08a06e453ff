//! The durable broadcast queue: claim with a lease (critical lane first), complete, retry later,
//! dead-letter; dead letters can be listed, replayed and purged.

use sqlx::Row;

use crate::records::INSERT_JOB;
use crate::records::{now_ms, parse_json_list};
use crate::{AuditKind, Lane, Lanes, NewBroadcast, Store, StoreError};

/// A broadcast job a worker holds until its lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub id: String,
    pub event_id: String,
    pub event_name: String,
    pub channels: Vec<String>,
    pub payload: String,
    pub lane: Lane,
    /// Attempts so far, this one included.
    pub attempts: i64,
    pub created_at: i64,
}

/// A job delivered at its attempt `attempt`, to be recorded with `complete_all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub job_id: String,
    pub attempt: i64,
    /// The audit entry's detail (JSON).
    pub detail: String,
}

/// A broadcast that exhausted its attempts or was refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub broadcast_id: String,
    pub event_id: String,
    pub event_name: String,
    pub channels: Vec<String>,
    pub attempts: i64,
    pub last_error: String,
    pub failed_at: i64,
}

/// Depth and age of one lane's pending jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStats {
    pub lane: Lane,
    pub pending: i64,
    /// Creation time of the oldest pending job.
    pub oldest_created_at: Option<i64>,
}

const AUDIT_FOR_BROADCAST: &str =
    "INSERT INTO audit_entries (event_id, event_type, broadcast_id, kind, detail, at) \
     SELECT b.event_id, d.event_type, b.id, $1, $2, $3 FROM broadcasts b \
     JOIN domain_events d ON d.id = b.event_id WHERE b.id = $4";

/// Which dead letters `replay_dead_letters` and `purge_dead_letters` act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetters<'a> {
    All,
    /// The dead letter of this broadcast id (an empty id names none).
    One(&'a str),
}

impl<'a> DeadLetters<'a> {
    /// The queries' filter: `''` for all, the id for one; `None` when nothing can match.
    fn filter(self) -> Option<&'a str> {
        match self {
            DeadLetters::All => Some(""),
            DeadLetters::One("") => None,
            DeadLetters::One(id) => Some(id),
        }
    }
}

/// The job `$1` at its current attempt `$2`, still pending: an outcome counts only for it, so a
/// worker whose lease expired (a stall, a pause) cannot overwrite the attempt that took over.
macro_rules! current_attempt {
    () => {
        "id = $1 AND attempts = $2 AND status = 'pending'"
    };
}

/// Marks `jobs` jobs delivered: `$1` now, then each job's id and claimed attempt (`$2`, `$3`,
/// …); returns the ids of the jobs still at that attempt, now recorded.
fn complete_sql(jobs: usize) -> String {
    let ids: Vec<String> = (0..jobs).map(|job| format!("${}", 2 + 2 * job)).collect();
    let attempts: String =
        (0..jobs).map(|job| format!("WHEN ${} THEN ${} ", 2 + 2 * job, 3 + 2 * job)).collect();
    format!(
        "UPDATE broadcasts SET status = 'delivered', delivered_at = $1, locked_until = 0, last_error = NULL \
         WHERE id IN ({}) AND status = 'pending' AND attempts = CASE id {attempts}END RETURNING id",
        ids.join(", ")
    )
}

/// The `delivered` audit entries of the jobs [`complete_sql`] recorded (delivered at the attempt
/// that was claimed). `$1` now and `$kind` the kind. `shared`: after `complete_sql` in one call,
/// its ids and attempts, and each job's detail from `$kind + 1` on; else each job's id, attempt
/// and detail from `$kind + 1` on.
fn audit_sql(jobs: usize, kind: usize, shared: bool) -> String {
    let place = |job: usize| -> (usize, usize, usize) {
        if shared {
            (2 + 2 * job, 3 + 2 * job, kind + 1 + job)
        } else {
            (kind + 1 + 3 * job, kind + 2 + 3 * job, kind + 3 + 3 * job)
        }
    };
    let ids: Vec<String> = (0..jobs).map(|job| format!("${}", place(job).0)).collect();
    let (mut attempts, mut details) = (String::new(), String::new());
    for job in 0..jobs {
        let (id, attempt, detail) = place(job);
        attempts.push_str(&format!("WHEN ${id} THEN ${attempt} "));
        details.push_str(&format!("WHEN ${id} THEN ${detail} "));
    }
    format!(
        "INSERT INTO audit_entries (event_id, event_type, broadcast_id, kind, detail, at) \
         SELECT b.event_id, d.event_type, b.id, ${kind}, CASE b.id {details}END, $1 FROM broadcasts b \
         JOIN domain_events d ON d.id = b.event_id WHERE b.id IN ({}) AND b.status = 'delivered' \
         AND b.attempts = CASE b.id {attempts}END ORDER BY b.seq",
        ids.join(", ")
    )
}

impl Store {
    /// Queues jobs that belong to no domain event (webhooks), in one transaction: all or none.
    /// `source` stands in the event id column (`webhook:<app id>`).
    pub async fn enqueue(&self, source: &str, jobs: &[NewBroadcast]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let _writing = self.writing().await;
        with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            for job in jobs {
                sqlx::query(INSERT_JOB)
                    .bind(&job.id)
                    .bind(source)
                    .bind(&job.event_name)
                    .bind(crate::records::serde_json_list(&job.channels))
                    .bind(&job.payload)
                    .bind(job.lane.code())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Claims up to `limit` due jobs of `lanes`, critical lane first, leasing them until
    /// `now + lease_ms`.
    pub async fn claim(
        &self,
        lanes: Lanes,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        self.claim_skipping(lanes, limit, lease_ms, &[]).await
    }

    /// `claim`, passing over the jobs whose channels are exactly `[c]` for a `c` in `skip` (at
    /// most 64): the webhook receivers that already have all the deliveries they may have.
    pub async fn claim_skipping(
        &self,
        lanes: Lanes,
        limit: i64,
        lease_ms: i64,
        skip: &[String],
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let now = now_ms();
        let skip = &skip[..skip.len().min(64)];
        let skipped: Vec<String> = skip
            .iter()
            .map(|channel| crate::records::serde_json_list(std::slice::from_ref(channel)))
            .collect();
        // Our own placeholders ($5, $6, …), one per skipped list; the values are bound.
        let skip_clause = if skipped.is_empty() {
            String::new()
        } else {
            let placeholders: Vec<String> = (0..skipped.len()).map(|n| format!("${}", n + 5)).collect();
            format!(" AND channels NOT IN ({})", placeholders.join(", "))
        };
        let skip_locked = match self {
            Store::Sqlite(..) => "",
            Store::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        // The limit is written into the statement (it is our own small number): a planner that
        // knows it is small walks the claim index in order and stops at the first due job.
        let limit = limit.clamp(1, 1000);
        let sql = format!(
            "UPDATE broadcasts SET locked_until = $1, attempts = attempts + 1 WHERE seq IN \
             (SELECT seq FROM broadcasts WHERE status = 'pending' AND lane BETWEEN $3 AND $4 \
             AND next_attempt_at <= $2 AND locked_until <= $2{skip_clause} ORDER BY lane, next_attempt_at, seq LIMIT {limit}{skip_locked}) \
             RETURNING id, event_id, event_name, channels, payload, lane, attempts, created_at"
        );
        let _writing = self.writing().await;
        let mut jobs = with_writer!(self, pool => {
            let (first, last) = lanes.codes();
            let mut query = sqlx::query(&sql).bind(now + lease_ms).bind(now).bind(first).bind(last);
            for list in &skipped {
                query = query.bind(list);
            }
            let rows = query.fetch_all(pool).await?;
            let mut jobs = Vec::with_capacity(rows.len());
            for row in rows {
                jobs.push(ClaimedJob {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    event_name: row.try_get("event_name")?,
                    channels: parse_json_list(row.try_get::<&str, _>("channels")?),
                    payload: row.try_get("payload")?,
                    lane: Lane::from_code(row.try_get("lane")?),
                    attempts: row.try_get("attempts")?,
                    created_at: row.try_get("created_at")?,
                });
            }
            jobs
        });
        jobs.sort_by_key(|job| (job.lane, job.created_at));
        Ok(jobs)
    }

    /// Marks a job delivered and audits it with `detail` (JSON).
    /// False, and nothing recorded, when `attempt` is no longer the job's current attempt: its
    /// lease expired and another worker claimed it again, whose outcome counts.
    pub async fn complete(&self, job_id: &str, attempt: i64, detail: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let _writing = self.writing().await;
        let recorded = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let changed = sqlx::query(concat!("UPDATE broadcasts SET status = 'delivered', delivered_at = $3, locked_until = 0, last_error = NULL WHERE ", current_attempt!()))
                .bind(job_id)
                .bind(attempt)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed > 0 {
                sqlx::query(AUDIT_FOR_BROADCAST).bind(AuditKind::Delivered.as_str()).bind(detail).bind(now).bind(job_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            changed > 0
        });
        Ok(recorded)
    }

    /// Marks delivered jobs delivered and audits each, in one transaction: `complete` for many,
    /// set-based (one `UPDATE` and one audit `INSERT … SELECT` per up to 256 jobs; on SQLite both
    /// in one call). One flag per job, in order: false (nothing recorded for it) when its attempt
    /// is no longer current.
    pub async fn complete_all(&self, delivered: &[Delivered]) -> Result<Vec<bool>, StoreError> {
        if delivered.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let one_call = self.backend() == crate::Backend::Sqlite;
        let _writing = self.writing().await;
        let recorded = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut recorded = std::collections::HashSet::with_capacity(delivered.len());
            for jobs in crate::records::chunks(delivered, 3) {
                // `$1` now, each job's id and attempt from `$2` on; the audit entries' kind and
                // details after them, or (on their own) `$1` now, `$2` kind, from `$3` on.
                let update = complete_sql(jobs.len());
                let audit = if one_call { audit_sql(jobs.len(), 2 + 2 * jobs.len(), true) } else { audit_sql(jobs.len(), 2, false) };
                if one_call {
                    let sql = format!("{update};\n{audit}");
                    let mut query = sqlx::query_scalar::<_, String>(&sql).bind(now);
                    for job in jobs {
                        query = query.bind(&job.job_id).bind(job.attempt);
                    }
                    query = query.bind(AuditKind::Delivered.as_str());
                    for job in jobs {
                        query = query.bind(&job.detail);
                    }
                    recorded.extend(query.fetch_all(&mut *tx).await?);
                } else {
                    let mut query = sqlx::query_scalar::<_, String>(&update).bind(now);
                    for job in jobs {
                        query = query.bind(&job.job_id).bind(job.attempt);
                    }
                    let changed = query.fetch_all(&mut *tx).await?;
                    if changed.is_empty() {
                        continue;
                    }
                    recorded.extend(changed);
                    let mut query = sqlx::query(&audit).bind(now).bind(AuditKind::Delivered.as_str());
                    for job in jobs {
                        query = query.bind(&job.job_id).bind(job.attempt).bind(&job.detail);
                    }
                    query.execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            recorded
        });
        Ok(delivered.iter().map(|job| recorded.contains(&job.job_id)).collect())
    }

    /// Schedules another attempt at `next_attempt_at` after a failed one (false, and nothing
    /// recorded, when `attempt` is no longer current: see `complete`).
    pub async fn retry_later(
        &self,
        job_id: &str,
        attempt: i64,
        next_attempt_at: i64,
        error: &str,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let _writing = self.writing().await;
        let recorded = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let changed = sqlx::query(concat!("UPDATE broadcasts SET next_attempt_at = $3, locked_until = 0, last_error = $4 WHERE ", current_attempt!()))
                .bind(job_id)
                .bind(attempt)
                .bind(next_attempt_at)
                .bind(error)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed > 0 {
                sqlx::query(AUDIT_FOR_BROADCAST).bind(AuditKind::AttemptFailed.as_str()).bind(detail).bind(now).bind(job_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            changed > 0
        });
        Ok(recorded)
    }

    /// Moves a job to the dead letters (false, and nothing recorded, when `attempt` is no longer
    /// current: see `complete`).
    pub async fn dead_letter(
        &self,
        job_id: &str,
        attempt: i64,
        error: &str,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let _writing = self.writing().await;
        let recorded = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let changed = sqlx::query(concat!("UPDATE broadcasts SET status = 'dead', locked_until = 0, last_error = $3 WHERE ", current_attempt!()))
                .bind(job_id)
                .bind(attempt)
                .bind(error)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed == 0 {
                tx.commit().await?;
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO dead_letters (broadcast_id, event_id, attempts, last_error, failed_at) \
                 SELECT id, event_id, attempts, $1, $2 FROM broadcasts WHERE id = $3 \
                 ON CONFLICT (broadcast_id) DO UPDATE SET attempts = excluded.attempts, \
                 last_error = excluded.last_error, failed_at = excluded.failed_at",
            )
            .bind(error)
            .bind(now)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(AUDIT_FOR_BROADCAST).bind(AuditKind::DeadLettered.as_str()).bind(detail).bind(now).bind(job_id).execute(&mut *tx).await?;
            tx.commit().await?;
            true
        });
        Ok(recorded)
    }

    /// Frees every lease at once: a single-node (SQLite) server calls it at start-up, since no
    /// other process can be working on its jobs, so a crash's unfinished jobs are resumed at once.
    pub async fn release_leases(&self) -> Result<u64, StoreError> {
        let _writing = self.writing().await;
        let released = with_writer!(self, pool => {
            sqlx::query("UPDATE broadcasts SET locked_until = 0 WHERE status = 'pending' AND locked_until > 0")
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(released)
    }

    /// Pending depth and oldest job of each lane (every lane is always listed).
    pub async fn lane_stats(&self) -> Result<Vec<LaneStats>, StoreError> {
        let rows: Vec<(i64, i64, Option<i64>)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT lane, COUNT(*), MIN(created_at) FROM broadcasts WHERE status = 'pending' GROUP BY lane")
                .fetch_all(pool)
                .await?
        });
        Ok(Lane::ALL
            .into_iter()
            .map(|lane| {
                let row = rows.iter().find(|(code, _, _)| *code == lane.code());
                LaneStats { lane, pending: row.map_or(0, |r| r.1), oldest_created_at: row.and_then(|r| r.2) }
            })
            .collect())
    }

    /// The newest dead letters, at most `limit`.
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        let letters = with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT d.broadcast_id, d.event_id, b.event_name, b.channels, d.attempts, d.last_error, d.failed_at \
                 FROM dead_letters d JOIN broadcasts b ON b.id = d.broadcast_id ORDER BY d.failed_at DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut letters = Vec::with_capacity(rows.len());
            for row in rows {
                letters.push(DeadLetter {
                    broadcast_id: row.try_get("broadcast_id")?,
                    event_id: row.try_get("event_id")?,
                    event_name: row.try_get("event_name")?,
                    channels: parse_json_list(row.try_get::<&str, _>("channels")?),
                    attempts: row.try_get("attempts")?,
                    last_error: row.try_get("last_error")?,
                    failed_at: row.try_get("failed_at")?,
                });
            }
            letters
        });
        Ok(letters)
    }

    pub async fn dead_letter_count(&self) -> Result<i64, StoreError> {
        let count: i64 = with_pool!(self, pool => sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters").fetch_one(pool).await?);
        Ok(count)
    }

    /// Puts dead letters back in the queue; returns how many.
    pub async fn replay_dead_letters(&self, which: DeadLetters<'_>) -> Result<u64, StoreError> {
        let now = now_ms();
        let Some(only) = which.filter() else { return Ok(0) };
        let _writing = self.writing().await;
        let replayed = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO audit_entries (event_id, event_type, broadcast_id, kind, detail, at) \
                 SELECT d.event_id, e.event_type, d.broadcast_id, $3, '{}', $1 FROM dead_letters d \
                 JOIN domain_events e ON e.id = d.event_id WHERE $2 = '' OR d.broadcast_id = $2",
            )
            .bind(now)
            .bind(only)
            .bind(AuditKind::Replayed.as_str())
            .execute(&mut *tx)
            .await?;
            let replayed = sqlx::query(
                "UPDATE broadcasts SET status = 'pending', attempts = 0, next_attempt_at = $1, locked_until = 0 \
                 WHERE id IN (SELECT broadcast_id FROM dead_letters WHERE $2 = '' OR broadcast_id = $2)",
            )
            .bind(now)
            .bind(only)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM dead_letters WHERE $1 = '' OR broadcast_id = $1").bind(only).execute(&mut *tx).await?;
            tx.commit().await?;
            replayed
        });
        Ok(replayed)
    }

    /// Forgets dead letters; their broadcasts stay `purged`.
    pub async fn purge_dead_letters(&self, which: DeadLetters<'_>) -> Result<u64, StoreError> {
        let Some(only) = which.filter() else { return Ok(0) };
        let _writing = self.writing().await;
        let purged = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE broadcasts SET status = 'purged' \
                 WHERE id IN (SELECT broadcast_id FROM dead_letters WHERE $1 = '' OR broadcast_id = $1)",
            )
            .bind(only)
            .execute(&mut *tx)
            .await?;
            let purged = sqlx::query("DELETE FROM dead_letters WHERE $1 = '' OR broadcast_id = $1")
                .bind(only)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            purged
        });
        Ok(purged)
    }
}
