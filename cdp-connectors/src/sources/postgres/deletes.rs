//! The key table behind full-refresh delete detection.

use arrow::array::{Array, ArrayRef};
use bytes::{BufMut, BytesMut};
use cdp_core::{Error, Result};
use cdp_postgres::types::value_text;
use cdp_postgres::{CopyDecoder, PgKind, PostgresConnection, ident, literal, pg_error, qualified};
use futures::{SinkExt, StreamExt};

use super::PostgresColumn;
use super::config::FullRefreshDeletes;
use super::read::{Conn, key_cast};

/// Keeps the keys each full refresh saw: `(scope text, run bigint, key text[])`.
#[derive(Debug)]
pub(crate) struct KeyStore {
    conn: Conn,
    connector: String,
    schema: String,
    table: String,
    ready: bool,
}

impl KeyStore {
    pub(crate) fn new(
        settings: &FullRefreshDeletes,
        source: &PostgresConnection,
        connector: &str,
    ) -> Self {
        let connection = settings
            .connection
            .clone()
            .unwrap_or_else(|| source.clone());
        KeyStore {
            conn: Conn::new(connection, connector),
            connector: connector.to_string(),
            schema: settings.schema.clone(),
            table: qualified(&settings.schema, &settings.table),
            ready: false,
        }
    }

    async fn client(&mut self) -> Result<&tokio_postgres::Client> {
        if !self.ready {
            let sql = format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {table} (
                     scope text NOT NULL, run bigint NOT NULL, key text[] NOT NULL);
                 CREATE INDEX IF NOT EXISTS cdp_seen_keys_scope_run ON {table} (scope, run);",
                schema = ident(&self.schema),
                table = self.table
            );
            let connector = self.connector.clone();
            self.conn
                .get()
                .await?
                .batch_execute(&sql)
                .await
                .map_err(|e| pg_error(&connector, "create the key table", e))?;
            self.ready = true;
        }
        self.conn.get().await
    }

    /// Forgets every run of `scope` but `keep` (the last complete one), before a new run.
    pub(crate) async fn start_run(&mut self, scope: &str, keep: Option<u64>) -> Result<()> {
        let keep = keep.map_or(-1, |k| i64::try_from(k).unwrap_or(i64::MAX));
        let sql = format!("DELETE FROM {} WHERE scope = $1 AND run <> $2", self.table);
        let connector = self.connector.clone();
        let result = self.client().await?.execute(&sql, &[&scope, &keep]).await;
        result
            .map(|_| ())
            .map_err(|e| self.failed(pg_error(&connector, "clear old keys", e)))
    }

    fn failed(&mut self, error: Error) -> Error {
        if error.is_retryable() {
            self.conn.reset();
        }
        error
    }

    /// Records the keys (one array per key column) run `run` saw.
    pub(crate) async fn record(&mut self, scope: &str, run: u64, key: &[ArrayRef]) -> Result<()> {
        let rows = key.first().map_or(0, |a| a.len());
        let run =
            i64::try_from(run).map_err(|_| Error::State(format!("run {run} out of range")))?;
        let mut buf = BytesMut::with_capacity(64 * rows + 32);
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_i32(0);
        buf.put_i32(0);
        let count = i32::try_from(key.len()).map_err(|_| Error::State("key too wide".into()))?;
        for row in 0..rows {
            buf.put_i16(3);
            put_text(&mut buf, scope)?;
            buf.put_i32(8);
            buf.put_i64(run);
            let start = buf.len();
            buf.put_i32(0);
            buf.put_i32(1); // one dimension
            buf.put_i32(0); // no nulls
            buf.put_u32(25); // text
            buf.put_i32(count);
            buf.put_i32(1);
            for column in key {
                let text = value_text(column.as_ref(), row)
                    .map_err(|e| Error::State(format!("key value: {e}")))?
                    .ok_or_else(|| Error::State("null key value".into()))?;
                put_text(&mut buf, &text)?;
            }
            let len = i32::try_from(buf.len() - start - 4)
                .map_err(|_| Error::State("key too long".into()))?;
            buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
        buf.put_i16(-1);
        let sql = format!(
            "COPY {} (scope, run, key) FROM STDIN (FORMAT binary)",
            self.table
        );
        let connector = self.connector.clone();
        let client = self.client().await?;
        let result: Result<u64, tokio_postgres::Error> = async {
            let sink = client.copy_in::<_, bytes::Bytes>(&sql).await?;
            let mut sink = std::pin::pin!(sink);
            sink.send(buf.freeze()).await?;
            sink.as_mut().finish().await
        }
        .await;
        result
            .map(|_| ())
            .map_err(|e| self.failed(pg_error(&connector, "record keys", e)))
    }

    /// Keys run `previous` saw and run `current` did not, decoded as the key columns.
    pub(crate) async fn gone(
        &mut self,
        scope: &str,
        previous: u64,
        current: u64,
        key: &[PostgresColumn],
    ) -> Result<Vec<ArrayRef>> {
        let casts: Vec<String> = key
            .iter()
            .enumerate()
            .map(|(i, c)| format!("(key[{}])::{} AS {}", i + 1, key_cast(c), ident(&c.name)))
            .collect();
        let sql = format!(
            "COPY (SELECT {casts} FROM (
                 SELECT key FROM {table} WHERE scope = {scope} AND run = {previous}
                 EXCEPT
                 SELECT key FROM {table} WHERE scope = {scope} AND run = {current}) gone
             ) TO STDOUT (FORMAT binary)",
            casts = casts.join(", "),
            table = self.table,
            scope = literal(scope),
        );
        let kinds: Vec<PgKind> = key
            .iter()
            .map(|c| match &c.kind {
                _ if c.as_text => PgKind::Text,
                PgKind::Jsonb => PgKind::Text,
                kind => kind.clone(),
            })
            .collect();
        let mut decoder = CopyDecoder::new(key.iter().map(|c| c.name.clone()).collect(), &kinds);
        let connector = self.connector.clone();
        let client = self.client().await?;
        let result: Result<(), Error> = async {
            let stream = client
                .copy_out(&sql)
                .await
                .map_err(|e| pg_error(&connector, "find deleted keys", e))?;
            let mut stream = std::pin::pin!(stream);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| pg_error(&connector, "find deleted keys", e))?;
                decoder.push(&chunk);
                while decoder
                    .next_row()
                    .map_err(|e| Error::external(connector.clone(), e))?
                {}
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            return Err(self.failed(e));
        }
        decoder
            .finish()
            .map_err(|e| Error::external(self.connector.clone(), e))
    }
}

fn put_text(buf: &mut BytesMut, text: &str) -> Result<()> {
    let len = i32::try_from(text.len()).map_err(|_| Error::State("key too long".into()))?;
    buf.put_i32(len);
    buf.put_slice(text.as_bytes());
    Ok(())
}
