//! [`ClickHouseStore`]: the [`Store`] that inserts rows into the tables of
//! [`super::migrations`], one RowBinary insert per table, and enforces retention as its
//! upkeep.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use clickhouse::Row;
use serde::Serialize;

use super::{ClickHouse, retention};
use crate::error::{Result, SinkError};
use crate::rows::AggregateRows;
use crate::spec::StoreSpec;
use crate::store::{Rows, Store};

/// Stage name written into the dead letters a sink on this store makes.
pub const STAGE: &str = "sink/clickhouse";

const INSERT_TIMEOUT: Duration = Duration::from_secs(30);

/// The ClickHouse tables as a [`Store`].
#[derive(Debug, Clone)]
pub struct ClickHouseStore {
    ch: ClickHouse,
    spec: StoreSpec,
}

impl ClickHouseStore {
    /// The store of `spec`'s tables in `ch` (migrated by [`super::migrations::migrate`]).
    pub fn new(ch: ClickHouse, spec: StoreSpec) -> Result<Self> {
        spec.validate()?;
        Ok(ClickHouseStore { ch, spec })
    }

    /// The connection.
    pub fn clickhouse(&self) -> &ClickHouse {
        &self.ch
    }
}

#[async_trait]
impl Store for ClickHouseStore {
    fn stage(&self) -> &'static str {
        STAGE
    }

    fn describe(&self) -> String {
        format!(
            "ClickHouse {} database {}",
            self.ch.url(),
            self.ch.database()
        )
    }

    fn spec(&self) -> &StoreSpec {
        &self.spec
    }

    /// Inserts every table's rows; a table whose insert was acknowledged is emptied, so a
    /// retry sends only what is still missing.
    async fn write(&self, rows: &mut Rows) -> Result<()> {
        insert_typed(&self.ch, "events", &mut rows.events).await?;
        insert_typed(&self.ch, "alerts", &mut rows.alerts).await?;
        insert_typed(&self.ch, "insights", &mut rows.insights).await?;
        insert_typed(&self.ch, "dead_letters", &mut rows.dead_letters).await?;
        insert_typed(&self.ch, "late_events", &mut rows.late_events).await?;
        while let Some((name, aggregate)) = rows.aggregates.pop_first() {
            if let Err(e) = insert_aggregate(&self.ch, &aggregate).await {
                rows.aggregates.insert(name, aggregate);
                return Err(e);
            }
        }
        Ok(())
    }

    async fn maintain(&self) -> Result<()> {
        retention::apply(&self.ch, &self.spec).await.map(|_| ())
    }
}

async fn insert_typed<T>(ch: &ClickHouse, table: &str, rows: &mut Vec<T>) -> Result<()>
where
    T: Row + Serialize + for<'a> clickhouse::RowWrite<Value<'a> = T>,
{
    if rows.is_empty() {
        return Ok(());
    }
    let action = || format!("inserting {} rows into {table}", rows.len());
    let mut insert = ch
        .client()
        .insert::<T>(table)
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), action(), e))?
        .with_timeouts(Some(INSERT_TIMEOUT), Some(INSERT_TIMEOUT));
    for row in rows.iter() {
        insert
            .write(row)
            .await
            .map_err(|e| SinkError::clickhouse(ch.url(), action(), e))?;
    }
    insert
        .end()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), action(), e))?;
    rows.clear();
    Ok(())
}

async fn insert_aggregate(ch: &ClickHouse, rows: &AggregateRows) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let table = rows.spec().table();
    let action = || format!("inserting {} rows into {table}", rows.len());
    let sql = format!(
        "INSERT INTO `{table}` ({}) FORMAT RowBinary",
        rows.columns()
    );
    let mut insert = ch
        .client()
        .insert_formatted_with(sql)
        .with_timeouts(Some(INSERT_TIMEOUT), Some(INSERT_TIMEOUT));
    insert
        .send(Bytes::from(rows.row_binary()))
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), action(), e))?;
    insert
        .end()
        .await
        .map_err(|e| SinkError::clickhouse(ch.url(), action(), e))
}
