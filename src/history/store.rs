//! The database: one query layer (sqlx's `Any` driver) over SQLite and PostgreSQL.
//!
//! The schema (`migrations/`) keeps times as UTC microseconds in `BIGINT` columns and numbers
//! as `DOUBLE PRECISION` and `BIGINT`, so the same SQL, with `$n` placeholders (which both
//! drivers bind by number), runs on both. Migrations run at start-up.
//!
//! Two pools per node: the writer's own ([`open`]: one connection for SQLite, which has one
//! writer anyway; two for PostgreSQL, the writer lock's and the writes'), and the routes'
//! ([`open_readers`], [`READERS`] connections). Readers wait for a reader connection, never for
//! the writer's, so a burst of history requests cannot hold up the records being written.

use std::collections::HashMap;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::base::redact_url;
use crate::market::classifier::TradeType;
use crate::market::history::{Candle, HistoryRecord, IndexCandle};

/// Rows per `INSERT`: well under SQLite's bound on parameters in one statement.
const ROWS_PER_INSERT: usize = 200;

/// Connections the routes read through, at most; more requests at once wait for one (up to
/// [`ACQUIRE_TIMEOUT`], then 503).
pub const READERS: u32 = 4;

/// How long a query waits for a connection of its pool.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What can go wrong with the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DATABASE_URL: {0}")]
    Url(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Which engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine of `url`, or why it is not one marketcast speaks.
    pub fn of(url: &str) -> Result<Engine, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else {
            Err(StoreError::Url(format!(
                "{} is neither sqlite: nor postgres(ql)://",
                redact_url(url)
            )))
        }
    }

    /// Its name in `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// Connects the writer's pool and brings the schema up to date.
pub async fn open(url: &str) -> Result<AnyPool, StoreError> {
    sqlx::any::install_default_drivers();
    let engine = Engine::of(url)?;
    let pool = AnyPoolOptions::new()
        .max_connections(match engine {
            Engine::Sqlite => 1,
            // One for the writer lock's own connection, one for the writes.
            Engine::Postgres => 2,
        })
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await?;
    if engine == Engine::Sqlite {
        // Readers (the REST routes) do not wait for the writer, nor it for them.
        sqlx::query("PRAGMA journal_mode=WAL")
            .execute(&pool)
            .await?;
    }
    sqlx::migrate::Migrator::new(Embedded)
        .await?
        .run(&pool)
        .await?;
    Ok(pool)
}

/// Connects the routes' pool (after [`open`], which made the schema).
pub async fn open_readers(url: &str) -> Result<AnyPool, StoreError> {
    sqlx::any::install_default_drivers();
    Engine::of(url)?;
    Ok(AnyPoolOptions::new()
        .max_connections(READERS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await?)
}

/// The migrations in `migrations/`, compiled in (the binary needs no files beside it).
#[derive(Debug)]
struct Embedded;

impl<'s> sqlx::migrate::MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures_util::future::BoxFuture<
        's,
        Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
    > {
        use sqlx::migrate::{Migration, MigrationType};
        Box::pin(async {
            Ok(vec![Migration::new(
                1,
                "history".into(),
                MigrationType::Simple,
                include_str!("../../migrations/0001_history.sql").into(),
                false,
            )])
        })
    }
}

fn side_name(side: TradeType) -> &'static str {
    match side {
        TradeType::MuaChuDong => "mua_chu_dong",
        TradeType::BanChuDong => "ban_chu_dong",
        TradeType::Neutral => "neutral",
    }
}

/// A value for a placeholder.
enum Value<'a> {
    Text(&'a str),
    Int(i64),
    Float(f64),
}

/// One multi-row `INSERT` (`rows` of `width` values each), with `$n` placeholders.
async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    head: &str,
    tail: &str,
    width: usize,
    rows: &[Vec<Value<'_>>],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::with_capacity(head.len() + chunk.len() * width * 5 + tail.len());
        sql.push_str(head);
        sql.push_str(" VALUES ");
        let mut n = 0;
        for (i, _) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for j in 0..width {
                n += 1;
                if j > 0 {
                    sql.push(',');
                }
                sql.push('$');
                sql.push_str(&n.to_string());
            }
            sql.push(')');
        }
        sql.push_str(tail);
        let mut q = sqlx::query(&sql);
        for row in chunk {
            for v in row {
                q = match v {
                    Value::Text(s) => q.bind(s.to_string()),
                    Value::Int(i) => q.bind(*i),
                    Value::Float(f) => q.bind(*f),
                };
            }
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Writes records and candle increments in one transaction (all or nothing, so a failed batch
/// is retried whole and never half written). A candle increment merges into its stored row: the
/// row keeps its open, widens its high and low, takes the new close and adds the volumes (see
/// [`crate::market::history::CandleBuilder`]). (`MAX(a, b)` is SQLite's and `GREATEST` is
/// PostgreSQL's, so the widening is spelled with `CASE`.)
pub async fn write(
    pool: &AnyPool,
    records: &[HistoryRecord],
    candles: &[Candle],
    index_candles: &[IndexCandle],
) -> Result<(), sqlx::Error> {
    let mut ticks = Vec::new();
    let mut foreign = Vec::new();
    let mut index = Vec::new();
    let mut basis = Vec::new();
    for r in records {
        match r {
            HistoryRecord::Tick {
                symbol,
                at_us,
                price,
                volume,
                side,
                bid,
                ask,
            } => ticks.push(vec![
                Value::Text(symbol),
                Value::Int(*at_us),
                Value::Float(*price),
                Value::Int(*volume),
                Value::Text(side_name(*side)),
                Value::Float(*bid),
                Value::Float(*ask),
            ]),
            HistoryRecord::Foreign {
                symbol,
                at_us,
                buy_vol,
                sell_vol,
                buy_value,
                sell_value,
            } => foreign.push(vec![
                Value::Text(symbol),
                Value::Int(*at_us),
                Value::Int(*buy_vol),
                Value::Int(*sell_vol),
                Value::Int(buy_vol - sell_vol),
                Value::Float(*buy_value),
                Value::Float(*sell_value),
            ]),
            HistoryRecord::Index {
                index_name,
                at_us,
                value,
                change_pct,
                volume,
            } => index.push(vec![
                Value::Text(index_name),
                Value::Int(*at_us),
                Value::Float(*value),
                Value::Float(*change_pct),
                Value::Int(*volume),
            ]),
            HistoryRecord::Basis {
                contract,
                at_us,
                price,
                basis: b,
            } => basis.push(vec![
                Value::Text(contract),
                Value::Int(*at_us),
                Value::Float(*price),
                Value::Float(*b),
                Value::Int(0),
            ]),
        }
    }
    let candle_rows: Vec<Vec<Value>> = candles
        .iter()
        .map(|c| {
            vec![
                Value::Text(&c.symbol),
                Value::Int(c.minute_us),
                Value::Float(c.open),
                Value::Float(c.high),
                Value::Float(c.low),
                Value::Float(c.close),
                Value::Int(c.volume),
                Value::Int(c.active_buy_vol),
                Value::Int(c.active_sell_vol),
            ]
        })
        .collect();
    let index_candle_rows: Vec<Vec<Value>> = index_candles
        .iter()
        .map(|c| {
            vec![
                Value::Text(&c.index_name),
                Value::Int(c.minute_us),
                Value::Float(c.open),
                Value::Float(c.high),
                Value::Float(c.low),
                Value::Float(c.close),
                Value::Int(c.volume),
            ]
        })
        .collect();
    let mut tx = pool.begin().await?;
    insert(
        &mut tx,
        "INSERT INTO tick_data (symbol, ts, price, volume, side, bid, ask)",
        "",
        7,
        &ticks,
    )
    .await?;
    insert(
        &mut tx,
        "INSERT INTO foreign_flow (symbol, ts, buy_vol, sell_vol, net_vol, buy_value, sell_value)",
        "",
        7,
        &foreign,
    )
    .await?;
    insert(
        &mut tx,
        "INSERT INTO index_snapshots (index_name, ts, value, change_pct, volume)",
        "",
        5,
        &index,
    )
    .await?;
    insert(
        &mut tx,
        "INSERT INTO derivatives (contract, ts, price, basis, open_interest)",
        "",
        5,
        &basis,
    )
    .await?;
    insert(
        &mut tx,
        "INSERT INTO candles_1m (symbol, ts, open, high, low, close, volume, active_buy_vol, active_sell_vol)",
        " ON CONFLICT (symbol, ts) DO UPDATE SET high = CASE WHEN excluded.high > candles_1m.high THEN excluded.high ELSE candles_1m.high END, low = CASE WHEN excluded.low < candles_1m.low THEN excluded.low ELSE candles_1m.low END, close = excluded.close, volume = candles_1m.volume + excluded.volume, active_buy_vol = candles_1m.active_buy_vol + excluded.active_buy_vol, active_sell_vol = candles_1m.active_sell_vol + excluded.active_sell_vol",
        9,
        &candle_rows,
    )
    .await?;
    insert(
        &mut tx,
        "INSERT INTO index_candles_1m (index_name, ts, open, high, low, close, volume)",
        " ON CONFLICT (index_name, ts) DO UPDATE SET high = CASE WHEN excluded.high > index_candles_1m.high THEN excluded.high ELSE index_candles_1m.high END, low = CASE WHEN excluded.low < index_candles_1m.low THEN excluded.low ELSE index_candles_1m.low END, close = excluded.close, volume = index_candles_1m.volume + excluded.volume",
        7,
        &index_candle_rows,
    )
    .await?;
    tx.commit().await
}

/// The advisory lock's key: the one writer of a shared PostgreSQL holds it.
const WRITER_LOCK_KEY: i64 = 0x6d63_6173_7400; // "mcast\0"

/// The right to write a shared PostgreSQL: a session-level advisory lock, held on a connection
/// of its own for as long as this lives. The connection is closed (never returned to the pool
/// with the lock on it) when it is dropped, which frees the lock.
pub struct WriterLock {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
}

/// Takes the writer lock if no other session holds it.
pub async fn try_lock_writer(pool: &AnyPool) -> Result<Option<WriterLock>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let got: i32 =
        sqlx::query_scalar("SELECT CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END")
            .bind(WRITER_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?;
    Ok((got == 1).then_some(WriterLock { conn: Some(conn) }))
}

impl WriterLock {
    /// Whether the lock's connection still answers (and so the lock is still held).
    pub async fn alive(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let ping = sqlx::query("SELECT 1").execute(&mut **conn);
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), ping).await,
            Ok(Ok(_))
        )
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Out of the pool and closed: the lock ends with its session.
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

/// The raw series, which retention applies to (candles, made from them, are kept).
pub const RAW_TABLES: [&str; 4] = [
    "tick_data",
    "foreign_flow",
    "index_snapshots",
    "derivatives",
];

/// Deletes the raw series' rows older than `before_us`; returns how many.
pub async fn purge_raw(pool: &AnyPool, before_us: i64) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for table in RAW_TABLES {
        let r = sqlx::query(&format!("DELETE FROM {table} WHERE ts < $1"))
            .bind(before_us)
            .execute(pool)
            .await?;
        deleted += r.rows_affected();
    }
    Ok(deleted)
}

/// A column of a result row, as JSON.
#[derive(Debug, Clone, Copy)]
pub enum Col {
    Text,
    Int,
    Float,
    /// UTC microseconds, written as an ISO-8601 time with `+00:00`.
    Time,
}

/// Runs a query and returns each row as a JSON object with `names` in order.
pub async fn rows(
    pool: &AnyPool,
    sql: &str,
    key: &str,
    from_us: i64,
    until_us: Option<i64>,
    limit: Option<i64>,
    columns: &[(&str, Col)],
) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    let mut q = sqlx::query(sql).bind(key.to_string()).bind(from_us);
    if let Some(until) = until_us {
        q = q.bind(until);
    }
    if let Some(limit) = limit {
        q = q.bind(limit);
    }
    let rows: Vec<AnyRow> = q.fetch_all(pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut obj = serde_json::Map::with_capacity(columns.len());
        for (i, (name, col)) in columns.iter().enumerate() {
            let v = match col {
                Col::Text => serde_json::Value::from(row.try_get::<String, _>(i)?),
                Col::Int => serde_json::Value::from(int_of(&row, i)?),
                Col::Float => serde_json::Value::from(float_of(&row, i)?),
                Col::Time => serde_json::Value::from(iso_utc(int_of(&row, i)?)),
            };
            obj.insert((*name).to_string(), v);
        }
        out.push(serde_json::Value::Object(obj));
    }
    Ok(out)
}

/// An integer column (SQLite may hand back an aggregate of integers as a float).
fn int_of(row: &AnyRow, i: usize) -> Result<i64, sqlx::Error> {
    row.try_get::<i64, _>(i)
        .or_else(|_| row.try_get::<f64, _>(i).map(|f| f as i64))
}

/// A float column (SQLite keeps a whole REAL as an integer when it can).
fn float_of(row: &AnyRow, i: usize) -> Result<f64, sqlx::Error> {
    row.try_get::<f64, _>(i)
        .or_else(|_| row.try_get::<i64, _>(i).map(|n| n as f64))
}

/// UTC microseconds as the original's JSON showed a `TIMESTAMPTZ`: `+00:00`, and six
/// fractional digits only when there is a fraction.
pub fn iso_utc(us: i64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_micros(us) else {
        return String::new();
    };
    if us.rem_euclid(1_000_000) == 0 {
        t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// How many rows each table holds (for tests and `import`'s summary).
pub async fn counts(pool: &AnyPool) -> Result<HashMap<&'static str, i64>, sqlx::Error> {
    let mut out = HashMap::new();
    for table in [
        "tick_data",
        "candles_1m",
        "foreign_flow",
        "index_snapshots",
        "index_candles_1m",
        "derivatives",
    ] {
        let row = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(pool)
            .await?;
        out.insert(table, int_of(&row, 0)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_the_original_printed_timestamptz() {
        assert_eq!(iso_utc(1_770_689_700_000_000), "2026-02-10T02:15:00+00:00");
        assert_eq!(
            iso_utc(1_770_689_707_123_456),
            "2026-02-10T02:15:07.123456+00:00"
        );
    }

    #[test]
    fn urls_name_their_engine_and_hide_their_password() {
        assert_eq!(Engine::of("sqlite://data/h.db").unwrap(), Engine::Sqlite);
        assert_eq!(
            Engine::of("postgresql://u:p@h/db").unwrap(),
            Engine::Postgres
        );
        let err = Engine::of("mysql://u:secret@h/db").unwrap_err().to_string();
        assert!(err.starts_with("DATABASE_URL"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}
