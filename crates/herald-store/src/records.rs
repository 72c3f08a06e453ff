//! What the notification layer stores for one accepted domain event, and the ingest transaction.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Store, StoreError};

/// Now, in Unix epoch milliseconds (the unit of every stored time).
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64)
}

/// The queue lanes. The two broadcast lanes share the broadcast workers, critical always served
/// first; webhooks have workers of their own, so a slow receiver never delays a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    Critical,
    Normal,
    Webhooks,
}

impl Lane {
    /// Every lane, in the order workers serve them.
    pub const ALL: [Lane; 3] = [Lane::Critical, Lane::Normal, Lane::Webhooks];

    /// The queue names (the broadcast lanes' are the original module's).
    pub fn name(self) -> &'static str {
        match self {
            Lane::Critical => "critical-broadcasts",
            Lane::Normal => "broadcasts",
            Lane::Webhooks => "webhooks",
        }
    }

    pub(crate) fn code(self) -> i64 {
        match self {
            Lane::Critical => 0,
            Lane::Normal => 1,
            Lane::Webhooks => 2,
        }
    }

    pub(crate) fn from_code(code: i64) -> Lane {
        match code {
            0 => Lane::Critical,
            2 => Lane::Webhooks,
            _ => Lane::Normal,
        }
    }
}

/// Which lanes a worker claims from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// `critical-broadcasts`, then `broadcasts`.
    Broadcasts,
    Webhooks,
}

impl Lanes {
    /// The lane codes, first and last, the claim reads.
    pub(crate) fn codes(self) -> (i64, i64) {
        match self {
            Lanes::Broadcasts => (Lane::Critical.code(), Lane::Normal.code()),
            Lanes::Webhooks => (Lane::Webhooks.code(), Lane::Webhooks.code()),
        }
    }
}

/// One queue job, as every enqueue writes it: `$1` id, `$2` event id, `$3` event name, `$4`
/// channels (JSON), `$5` payload, `$6` lane, `$7` now.
pub(crate) const INSERT_JOB: &str =
    "INSERT INTO broadcasts (id, event_id, event_name, channels, payload, lane, status, \
     attempts, next_attempt_at, locked_until, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, 0, $7)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: String,
    pub event_type: String,
    pub occurred_at: i64,
    pub payload: String,
    /// `accepted` or `ignored`.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub id: String,
    pub user_id: String,
    pub notification_type: String,
    pub title: String,
    pub message: String,
    pub priority: String,
    pub data: String,
    pub action_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBroadcast {
    pub id: String,
    pub event_name: String,
    /// Logical channel names (`user.notifications.42`), as a JSON list when stored.
    pub channels: Vec<String>,
    pub payload: String,
    pub lane: Lane,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    pub broadcast_id: Option<String>,
    pub kind: crate::AuditKind,
    pub detail: String,
}

/// Everything one accepted event stores, in one transaction with its siblings of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub event: NewEvent,
    pub notifications: Vec<NewNotification>,
    pub broadcasts: Vec<NewBroadcast>,
    pub audits: Vec<NewAudit>,
    /// The JSON the ingest answers for this event; a repeat of the id answers it again.
    pub outcome: String,
    /// `(campaign_id, organization_id)` learnt from a campaign event, stored in the same transaction.
    pub campaign: Option<(String, String)>,
}

/// The ingest's answer for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestResult {
    Stored,
    /// The id was seen before: its original outcome JSON.
    Duplicate {
        outcome: String,
    },
}

impl Store {
    /// Whether a notification or broadcast with this id exists (the platform may name its own
    /// notification ids, which become the broadcast's id).
    pub async fn notification_exists(&self, id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = with_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT CAST(1 AS BIGINT) FROM notifications WHERE id = $1 \
                 UNION ALL SELECT CAST(1 AS BIGINT) FROM broadcasts WHERE id = $1 LIMIT 1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.is_some())
    }

    /// Whether a domain event with this id was accepted before.
    pub async fn event_exists(&self, id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM domain_events WHERE id = $1").bind(id).fetch_optional(pool).await?
        });
        Ok(found.is_some())
    }

    /// Stores a batch in one transaction: each event with its notifications, broadcast jobs,
    /// channel history and audit entries, unless its id is already known. Nothing of the batch
    /// is stored if any statement fails. (The server goes through [`crate::IngestQueue`], which
    /// commits the batches of concurrent requests together.)
    pub async fn ingest(&self, records: &[EventRecord]) -> Result<Vec<IngestResult>, StoreError> {
        let now = now_ms();
        let _writing = self.writing().await;
        let results = with_writer!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut results = store_group!(tx, &[records], now, self.backend() == crate::Backend::Sqlite).await?;
            tx.commit().await?;
            results.pop().unwrap_or_default()
        });
        Ok(results)
    }
}

/// Most bind parameters one statement takes: under SQLite's 32 766 and PostgreSQL's 65 535.
pub(crate) const MAX_BINDS: usize = 32_000;
/// Most rows one multi-row statement writes.
const MAX_ROWS: usize = 256;

/// Splits `rows` into the chunks of one multi-row statement each: the largest power of two that
/// fits (at most [`MAX_ROWS`], and at most [`MAX_BINDS`] parameters of `columns` each), then the
/// next. Only a few row counts ever occur, so each table has a handful of distinct statements,
/// all kept prepared, and a group of n rows takes at most log2(n) + 1 statements.
pub(crate) fn chunks<T>(rows: &[T], columns: usize) -> impl Iterator<Item = &[T]> {
    let cap = MAX_ROWS.min((MAX_BINDS - 1) / columns.max(1)).max(1);
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let fit = rest.len().min(cap);
        let size = 1 << (usize::BITS - 1 - fit.leading_zeros());
        let (chunk, after) = rest.split_at(size);
        rest = after;
        Some(chunk)
    })
}

/// `head` then `rows` copies of `row`, comma-separated, then `tail`; each `?` of a row becomes the
/// next `$N`, counting from `$first` (the statement's own parameters before it keep `$1` …).
pub(crate) fn rows_sql(head: &str, row: &str, rows: usize, tail: &str, first: usize) -> String {
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * (row.len() + 16));
    sql.push_str(head);
    let mut next = first;
    for index in 0..rows {
        if index > 0 {
            sql.push_str(", ");
        }
        for piece in row.split_inclusive('?') {
            match piece.strip_suffix('?') {
                Some(text) => {
                    sql.push_str(text);
                    let _ = write!(sql, "${next}");
                    next += 1;
                }
                None => sql.push_str(piece),
            }
        }
    }
    sql.push_str(tail);
    sql
}

/// The parameters one row of a template binds: its `?`s (`$1`, `now`, is the statement's own).
pub(crate) const fn columns(row: &str) -> usize {
    let bytes = row.as_bytes();
    let (mut index, mut count) = (0, 0);
    while index < bytes.len() {
        if bytes[index] == b'?' {
            count += 1;
        }
        index += 1;
    }
    count
}

/// A `campaign_organizations` row: campaign id, organization id.
pub(crate) const CAMPAIGNS_ROW: &str = "(?, ?)";

/// `INSERT INTO domain_events … VALUES` with `now` as `$1`; the new ids come back.
pub(crate) const EVENTS_HEAD: &str =
    "INSERT INTO domain_events (id, event_type, occurred_at, received_at, payload, status, outcome) VALUES ";
pub(crate) const EVENTS_ROW: &str = "(?, ?, ?, $1, ?, ?, ?)";
pub(crate) const EVENTS_TAIL: &str = " ON CONFLICT (id) DO NOTHING RETURNING id";
pub(crate) const NOTIFICATIONS_HEAD: &str =
    "INSERT INTO notifications (id, user_id, event_id, notification_type, title, message, priority, data, \
     action_url, created_at) VALUES ";
pub(crate) const NOTIFICATIONS_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, $1)";
pub(crate) const JOBS_HEAD: &str =
    "INSERT INTO broadcasts (id, event_id, event_name, channels, payload, lane, status, attempts, \
     next_attempt_at, locked_until, created_at) VALUES ";
pub(crate) const JOBS_ROW: &str = "(?, ?, ?, ?, ?, ?, 'pending', 0, $1, 0, $1)";
pub(crate) const HISTORY_HEAD: &str =
    "INSERT INTO channel_events (channel, broadcast_id, event_name, payload, created_at) VALUES ";
pub(crate) const HISTORY_ROW: &str = "(?, ?, ?, ?, $1)";
pub(crate) const AUDITS_HEAD: &str =
    "INSERT INTO audit_entries (event_id, event_type, broadcast_id, kind, detail, at) VALUES ";
pub(crate) const AUDITS_ROW: &str = "(?, ?, ?, ?, ?, $1)";

/// Which record of a group is stored and which repeats an id: each id's first occurrence in the
/// group is `fresh` (tried against the table), every later one a duplicate of it.
pub(crate) struct GroupPlan<'a> {
    /// First occurrences, in group order.
    pub(crate) fresh: Vec<&'a EventRecord>,
    /// Per batch, per record: its id's index in `fresh`, and whether it is that first occurrence.
    pub(crate) slots: Vec<Vec<(usize, bool)>>,
}

impl<'a> GroupPlan<'a> {
    pub(crate) fn new(batches: &[&'a [EventRecord]]) -> GroupPlan<'a> {
        let mut first: std::collections::HashMap<&'a str, usize> = std::collections::HashMap::new();
        let mut fresh = Vec::new();
        let slots = batches
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .map(|record| match first.get(record.event.id.as_str()) {
                        Some(&index) => (index, false),
                        None => {
                            first.insert(&record.event.id, fresh.len());
                            fresh.push(record);
                            (fresh.len() - 1, true)
                        }
                    })
                    .collect()
            })
            .collect();
        GroupPlan { fresh, slots }
    }
}

/// The rows new events write beside their own, table by table, in group order.
pub(crate) struct Rows<'a> {
    pub(crate) campaigns: Vec<&'a (String, String)>,
    pub(crate) notifications: Vec<(&'a NewEvent, &'a NewNotification)>,
    /// With the channels as stored (a JSON list).
    pub(crate) jobs: Vec<(&'a NewEvent, &'a NewBroadcast, String)>,
    pub(crate) history: Vec<(&'a String, &'a NewBroadcast)>,
    pub(crate) audits: Vec<(&'a NewEvent, &'a NewAudit)>,
}

impl<'a> Rows<'a> {
    pub(crate) fn of(records: &[&'a EventRecord]) -> Rows<'a> {
        let campaigns = records.iter().filter_map(|record| record.campaign.as_ref()).collect();
        let notifications = records
            .iter()
            .flat_map(|record| record.notifications.iter().map(move |n| (&record.event, n)))
            .collect();
        let jobs: Vec<(&NewEvent, &NewBroadcast, String)> = records
            .iter()
            .flat_map(|record| {
                record
                    .broadcasts
                    .iter()
                    .map(move |broadcast| (&record.event, broadcast, serde_json_list(&broadcast.channels)))
            })
            .collect();
        let history = jobs
            .iter()
            .flat_map(|(_, broadcast, _)| broadcast.channels.iter().map(move |channel| (channel, *broadcast)))
            .collect();
        let audits = records
            .iter()
            .flat_map(|record| record.audits.iter().map(move |audit| (&record.event, audit)))
            .collect();
        Rows { campaigns, notifications, jobs, history, audits }
    }

    /// Bind parameters of one statement per table plus the events' own (and `now`).
    pub(crate) fn binds(&self, events: usize) -> usize {
        1 + events * columns(EVENTS_ROW)
            + self.campaigns.len() * columns(CAMPAIGNS_ROW)
            + self.notifications.len() * columns(NOTIFICATIONS_ROW)
            + self.jobs.len() * columns(JOBS_ROW)
            + self.history.len() * columns(HISTORY_ROW)
            + self.audits.len() * columns(AUDITS_ROW)
    }

    /// One string of statements (SQLite runs them in one call, on one argument list: `$1` is
    /// `now`, then the rows' parameters in the order [`bind_rows!`] binds them): the events with
    /// `RETURNING id`, then each other table in one multi-row statement.
    pub(crate) fn sql(&self, events: usize) -> String {
        let mut sql = String::with_capacity(4096);
        let mut next = 2;
        let mut add = |head: &str, row: &str, rows: usize, tail: &str| {
            if rows > 0 {
                sql.push_str(&rows_sql(head, row, rows, tail, next));
                sql.push_str(";\n");
                next += rows * columns(row);
            }
        };
        add(EVENTS_HEAD, EVENTS_ROW, events, EVENTS_TAIL);
        for _ in &self.campaigns {
            add(CAMPAIGNS_HEAD, CAMPAIGNS_ROW, 1, CAMPAIGNS_TAIL);
        }
        add(NOTIFICATIONS_HEAD, NOTIFICATIONS_ROW, self.notifications.len(), "");
        add(JOBS_HEAD, JOBS_ROW, self.jobs.len(), "");
        add(HISTORY_HEAD, HISTORY_ROW, self.history.len(), "");
        add(AUDITS_HEAD, AUDITS_ROW, self.audits.len(), "");
        sql
    }
}

pub(crate) const CAMPAIGNS_HEAD: &str =
    "INSERT INTO campaign_organizations (campaign_id, organization_id) VALUES ";
pub(crate) const CAMPAIGNS_TAIL: &str =
    " ON CONFLICT (campaign_id) DO UPDATE SET organization_id = excluded.organization_id";

/// Binds `$rows` (a slice of one table's rows of [`Rows`], named by `$table`) to `$query`, in
/// the order of that table's row template.
macro_rules! bind_rows {
    ($query:ident, events, $rows:expr) => {
        for record in $rows {
            let event = &record.event;
            $query = $query
                .bind(&event.id)
                .bind(&event.event_type)
                .bind(event.occurred_at)
                .bind(&event.payload)
                .bind(&event.status)
                .bind(&record.outcome);
        }
    };
    ($query:ident, campaigns, $rows:expr) => {
        for (campaign, organization) in $rows {
            $query = $query.bind(campaign).bind(organization);
        }
    };
    ($query:ident, notifications, $rows:expr) => {
        for (event, notification) in $rows {
            $query = $query
                .bind(&notification.id)
                .bind(&notification.user_id)
                .bind(&event.id)
                .bind(&notification.notification_type)
                .bind(&notification.title)
                .bind(&notification.message)
                .bind(&notification.priority)
                .bind(&notification.data)
                .bind(&notification.action_url);
        }
    };
    ($query:ident, jobs, $rows:expr) => {
        for (event, broadcast, channels) in $rows {
            $query = $query
                .bind(&broadcast.id)
                .bind(&event.id)
                .bind(&broadcast.event_name)
                .bind(channels)
                .bind(&broadcast.payload)
                .bind(broadcast.lane.code());
        }
    };
    ($query:ident, history, $rows:expr) => {
        for (channel, broadcast) in $rows {
            $query = $query
                .bind(*channel)
                .bind(&broadcast.id)
                .bind(&broadcast.event_name)
                .bind(&broadcast.payload);
        }
    };
    ($query:ident, audits, $rows:expr) => {
        for (event, audit) in $rows {
            $query = $query
                .bind(&event.id)
                .bind(&event.event_type)
                .bind(&audit.broadcast_id)
                .bind(audit.kind.as_str())
                .bind(&audit.detail);
        }
    };
}
pub(crate) use bind_rows;

/// Stores the batches of a group (`$batches`: `&[&[EventRecord]]`) in the open transaction `$tx`,
/// as if each batch were stored alone one after the other: an id stored before (in this group
/// too) is a duplicate answering its original outcome. Each table is written once per group
/// (multi-row statements): the events with `ON CONFLICT DO NOTHING RETURNING id` to tell the new
/// ones, then the new events' notifications, jobs, channel history and audit entries.
///
/// `$one_call` (SQLite): first, behind a savepoint, every statement in one call to the database
/// on the guess that every id is new (the usual case); when an id was stored before, that is
/// rolled back and the group stored statement by statement. Otherwise (PostgreSQL, which
/// prepares one statement at a time, or a group of more than [`MAX_BINDS`] parameters)
/// statement by statement, each table in chunks of a power of two rows (see [`chunks`]).
/// An async block: `Result<Vec<Vec<IngestResult>>, sqlx::Error>`, one list per batch.
macro_rules! store_group {
    ($tx:ident, $batches:expr, $now:expr, $one_call:expr) => {
        async {
            use $crate::records::{bind_rows, chunks, rows_sql, Rows};
            let now: i64 = $now;
            let batches: &[&[$crate::EventRecord]] = $batches;
            let group = $crate::records::GroupPlan::new(batches);
            let mut inserted: std::collections::HashSet<String> = std::collections::HashSet::new();
            let mut earlier: std::collections::HashMap<String, String> = std::collections::HashMap::new();

            let mut stored_all = false;
            let rows = if $one_call { Some(Rows::of(&group.fresh)) } else { None };
            if let Some(rows) =
                rows.filter(|rows| rows.binds(group.fresh.len()) <= $crate::records::MAX_BINDS)
            {
                sqlx::query("SAVEPOINT ingest_group").execute(&mut *$tx).await?;
                let sql = rows.sql(group.fresh.len());
                let mut query = sqlx::query_scalar::<_, String>(&sql).bind(now);
                bind_rows!(query, events, &group.fresh);
                bind_rows!(query, campaigns, &rows.campaigns);
                bind_rows!(query, notifications, &rows.notifications);
                bind_rows!(query, jobs, &rows.jobs);
                bind_rows!(query, history, &rows.history);
                bind_rows!(query, audits, &rows.audits);
                // A unique conflict may be a repeat's rows (its own notification id): the
                // statement-by-statement way below tells a repeat from a real conflict.
                match query.fetch_all(&mut *$tx).await {
                    Ok(ids) if ids.len() == group.fresh.len() => {
                        inserted.extend(ids);
                        stored_all = true;
                    }
                    Ok(_) => {}
                    Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {}
                    Err(error) => return Err(error),
                }
                if !stored_all {
                    sqlx::query("ROLLBACK TO SAVEPOINT ingest_group").execute(&mut *$tx).await?;
                }
            }

            if !stored_all {
                // The events; the ids that come back are new, the others were stored before.
                for chunk in chunks(&group.fresh, $crate::records::columns($crate::records::EVENTS_ROW)) {
                    use $crate::records::{EVENTS_HEAD, EVENTS_ROW, EVENTS_TAIL};
                    let sql = rows_sql(EVENTS_HEAD, EVENTS_ROW, chunk.len(), EVENTS_TAIL, 2);
                    let mut query = sqlx::query_scalar::<_, String>(&sql).bind(now);
                    bind_rows!(query, events, chunk);
                    inserted.extend(query.fetch_all(&mut *$tx).await?);
                }
                let stored: Vec<&$crate::EventRecord> = group
                    .fresh
                    .iter()
                    .copied()
                    .filter(|record| inserted.contains(&record.event.id))
                    .collect();

                // The original outcomes of ids stored before this group (the rare path).
                let known: Vec<&str> = group
                    .fresh
                    .iter()
                    .filter(|record| !inserted.contains(&record.event.id))
                    .map(|record| record.event.id.as_str())
                    .collect();
                for ids in chunks(&known, 1) {
                    let sql = rows_sql(
                        "SELECT id, outcome FROM domain_events WHERE id IN (",
                        "?",
                        ids.len(),
                        ")",
                        1,
                    );
                    let mut query = sqlx::query_as::<_, (String, String)>(&sql);
                    for id in ids {
                        query = query.bind(*id);
                    }
                    earlier.extend(query.fetch_all(&mut *$tx).await?);
                }

                let rows = Rows::of(&stored);
                for campaign in &rows.campaigns {
                    use $crate::records::{CAMPAIGNS_HEAD, CAMPAIGNS_ROW, CAMPAIGNS_TAIL};
                    let sql = rows_sql(CAMPAIGNS_HEAD, CAMPAIGNS_ROW, 1, CAMPAIGNS_TAIL, 1);
                    sqlx::query(&sql).bind(&campaign.0).bind(&campaign.1).execute(&mut *$tx).await?;
                }
                for chunk in
                    chunks(&rows.notifications, $crate::records::columns($crate::records::NOTIFICATIONS_ROW))
                {
                    use $crate::records::{NOTIFICATIONS_HEAD, NOTIFICATIONS_ROW};
                    let sql = rows_sql(NOTIFICATIONS_HEAD, NOTIFICATIONS_ROW, chunk.len(), "", 2);
                    let mut query = sqlx::query(&sql).bind(now);
                    bind_rows!(query, notifications, chunk);
                    query.execute(&mut *$tx).await?;
                }
                for chunk in chunks(&rows.jobs, $crate::records::columns($crate::records::JOBS_ROW)) {
                    use $crate::records::{JOBS_HEAD, JOBS_ROW};
                    let sql = rows_sql(JOBS_HEAD, JOBS_ROW, chunk.len(), "", 2);
                    let mut query = sqlx::query(&sql).bind(now);
                    bind_rows!(query, jobs, chunk);
                    query.execute(&mut *$tx).await?;
                }
                for chunk in chunks(&rows.history, $crate::records::columns($crate::records::HISTORY_ROW)) {
                    use $crate::records::{HISTORY_HEAD, HISTORY_ROW};
                    let sql = rows_sql(HISTORY_HEAD, HISTORY_ROW, chunk.len(), "", 2);
                    let mut query = sqlx::query(&sql).bind(now);
                    bind_rows!(query, history, chunk);
                    query.execute(&mut *$tx).await?;
                }
                for chunk in chunks(&rows.audits, $crate::records::columns($crate::records::AUDITS_ROW)) {
                    use $crate::records::{AUDITS_HEAD, AUDITS_ROW};
                    let sql = rows_sql(AUDITS_HEAD, AUDITS_ROW, chunk.len(), "", 2);
                    let mut query = sqlx::query(&sql).bind(now);
                    bind_rows!(query, audits, chunk);
                    query.execute(&mut *$tx).await?;
                }
            }

            // The answers, and an audit entry for every duplicate (after its original's).
            let mut answers = Vec::with_capacity(batches.len());
            for slots in &group.slots {
                let mut results = Vec::with_capacity(slots.len());
                for &(index, first) in slots {
                    let record = group.fresh[index];
                    let new = inserted.contains(&record.event.id);
                    if first && new {
                        results.push($crate::IngestResult::Stored);
                        continue;
                    }
                    let outcome = if new {
                        record.outcome.clone()
                    } else {
                        match earlier.get(&record.event.id) {
                            Some(outcome) => outcome.clone(),
                            // Neither inserted nor found: gone between the two statements.
                            None => return Err(sqlx::Error::RowNotFound),
                        }
                    };
                    sqlx::query(
                        "INSERT INTO audit_entries (event_id, event_type, broadcast_id, kind, detail, at) \
                         SELECT id, event_type, NULL, $3, '{}', $1 FROM domain_events WHERE id = $2",
                    )
                    .bind(now)
                    .bind(&record.event.id)
                    .bind($crate::AuditKind::Duplicate.as_str())
                    .execute(&mut *$tx)
                    .await?;
                    results.push($crate::IngestResult::Duplicate { outcome });
                }
                answers.push(results);
            }
            Ok::<_, sqlx::Error>(answers)
        }
    };
}
pub(crate) use store_group;

/// A list of names as a JSON array.
pub(crate) fn serde_json_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("a list of strings serializes")
}

/// Parses a list stored by [`serde_json_list`]; a damaged row yields no names.
pub(crate) fn parse_json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}
