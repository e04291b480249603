//! [`PostgresProfileStore`]: profiles in PostgreSQL tables, served to every worker.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use cdp_identity::error::BackendErrorKind;
use cdp_identity::{
    IdentifierKey, Profile, ProfileDelta, ProfileId, ProfileStore, Result, StoreConfig,
};
use cdp_postgres::{PostgresConnection, qualified};
use tokio_postgres::{GenericClient, Statement};

use super::worker::{Conn, Worker, create_tables};
use super::{PostgresIdentityOptions, backend, pg_error};

const NAME: &str = "postgres profile store";

/// A lookup follows at most this many merges, like the memory store; chains are short
/// because a merge points at the profile that was live at the time.
const MAX_HOPS: usize = 64;

/// Rows per statement when a delta is large (the first delta holds the whole graph).
const CHUNK: usize = 10_000;

/// Profiles in PostgreSQL, with the semantics of
/// [`MemoryProfileStore`](cdp_identity::MemoryProfileStore): the same survivorship rules
/// ([`StoreConfig`]), merged ids that resolve to their survivor, unmerges that restore the
/// absorbed profile as it was at the merge.
///
/// Two tables (created if missing):
///
/// - `<prefix>profiles`: `id uuid primary key`, `state` (`live`, `merged` or `retired`),
///   `merged_into uuid` (for merged profiles: the profile it was merged into, which may have
///   been merged on since), `profile jsonb` (the [`Profile`]: traits, computed traits;
///   for a merged profile, what it held at the merge), `created_at bigint` (UTC
///   milliseconds) and `updated_at timestamptz`.
/// - `<prefix>profile_index`: `key uuid primary key` (the 128-bit [`IdentifierKey`]) →
///   `profile uuid`, the profile the identifier was assigned to.
///
/// [`apply`](ProfileStore::apply) runs one transaction per delta: a crash leaves the state
/// before the delta or after it. The transaction first takes an advisory lock on the
/// store's tables (`pg_advisory_xact_lock`), so writers on several machines apply their
/// deltas one after the other instead of interleaving them; it reads the profiles the delta
/// touches (and the profiles their merges lead to), changes them in memory exactly as the
/// memory store would, and writes back only those.
///
/// Lookups read the database, so they see what any handle committed; they run on a second
/// connection of their own and never wait for an `apply` in progress (lookups from several
/// threads take turns on that connection; open more handles for more). A lookup is one
/// prepared statement that follows `merged_into` from a merged id to the live profile;
/// [`len`](ProfileStore::len) counts the live rows, which scans the table. The lookup
/// methods of the trait cannot return errors: a failed lookup is logged (`tracing`, warn)
/// and answers `None` (`len` answers 0).
pub struct PostgresProfileStore {
    writer: Worker,
    reader: Worker,
    sql: Arc<Sql>,
    config: Arc<StoreConfig>,
}

impl fmt::Debug for PostgresProfileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresProfileStore")
            .field("profiles", &self.sql.profiles)
            .field("index", &self.sql.index)
            .field("config", &self.config)
            .finish()
    }
}

/// The statements of one store, built once from its table names.
#[derive(Debug)]
struct Sql {
    profiles: String,
    index: String,
    lock: String,
    load: String,
    upsert_profiles: String,
    upsert_index: String,
    delete_index: String,
    get: String,
    profile_id: String,
    lookup: String,
    len: String,
}

impl Sql {
    fn new(profiles: String, index: String) -> Sql {
        // Follows `merged_into` from the rows of `start` to the live profile; `hops`
        // counts like the memory store's lookups.
        let chain = |start: &str| {
            format!(
                "WITH RECURSIVE chain(id, state, merged_into, hops) AS (
                     {start}
                   UNION ALL
                     SELECT p.id, p.state, p.merged_into, c.hops + 1
                     FROM chain c JOIN {profiles} p ON p.id = c.merged_into
                     WHERE c.state = 'merged' AND c.hops < {last}
                 )",
                last = MAX_HOPS - 1
            )
        };
        let by_id = chain(&format!(
            "SELECT id, state, merged_into, 0 FROM {profiles} WHERE id = $1::text::uuid"
        ));
        let by_key = chain(&format!(
            "SELECT p.id, p.state, p.merged_into, 0
             FROM {index} i JOIN {profiles} p ON p.id = i.profile
             WHERE i.key = $1::text::uuid"
        ));
        Sql {
            lock: "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))".into(),
            // Every row the delta names, plus the rows their merges lead to.
            load: format!(
                "WITH RECURSIVE chain(id, hops) AS (
                     SELECT id, 0 FROM {profiles} WHERE id = ANY($1::text[]::uuid[])
                   UNION
                     SELECT p.merged_into, c.hops + 1
                     FROM chain c JOIN {profiles} p ON p.id = c.id
                     WHERE p.state = 'merged' AND c.hops < {MAX_HOPS}
                 )
                 SELECT id::text, state, merged_into::text, profile::text
                 FROM {profiles} WHERE id IN (SELECT id FROM chain)"
            ),
            upsert_profiles: format!(
                "INSERT INTO {profiles} (id, state, merged_into, profile, created_at)
                 SELECT id::uuid, state, merged_into::uuid, profile::jsonb, created_at
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[])
                      AS r(id, state, merged_into, profile, created_at)
                 ON CONFLICT (id) DO UPDATE
                 SET state = excluded.state, merged_into = excluded.merged_into,
                     profile = excluded.profile, updated_at = now()"
            ),
            upsert_index: format!(
                "INSERT INTO {index} (key, profile)
                 SELECT key::uuid, profile::uuid FROM unnest($1::text[], $2::text[]) AS r(key, profile)
                 ON CONFLICT (key) DO UPDATE SET profile = excluded.profile"
            ),
            delete_index: format!("DELETE FROM {index} WHERE key = ANY($1::text[]::uuid[])"),
            get: format!(
                "{by_id}
                 SELECT c.id::text, p.profile::text
                 FROM chain c JOIN {profiles} p ON p.id = c.id WHERE c.state = 'live'"
            ),
            profile_id: format!("{by_key} SELECT id::text FROM chain WHERE state = 'live'"),
            lookup: format!(
                "{by_key}
                 SELECT c.id::text, p.profile::text
                 FROM chain c JOIN {profiles} p ON p.id = c.id WHERE c.state = 'live'"
            ),
            len: format!("SELECT count(*) FROM {profiles} WHERE state = 'live'"),
            profiles,
            index,
        }
    }
}

impl PostgresProfileStore {
    /// Connects (a connection for writes, one for lookups) and creates the schema and the
    /// tables if they are missing.
    pub fn open(
        connection: &PostgresConnection,
        options: &PostgresIdentityOptions,
        config: StoreConfig,
    ) -> Result<Self> {
        let profiles = qualified(&options.schema, &options.table("profiles")?);
        let index = qualified(&options.schema, &options.table("profile_index")?);
        let tables = vec![
            (
                profiles.clone(),
                format!(
                    "CREATE TABLE IF NOT EXISTS {profiles} (
                         id uuid PRIMARY KEY,
                         state text NOT NULL CHECK (state IN ('live', 'merged', 'retired')),
                         merged_into uuid,
                         profile jsonb NOT NULL,
                         created_at bigint,
                         updated_at timestamptz NOT NULL DEFAULT now(),
                         CHECK ((state = 'merged') = (merged_into IS NOT NULL))
                     )"
                ),
            ),
            (
                index.clone(),
                format!(
                    "CREATE TABLE IF NOT EXISTS {index} (
                         key uuid PRIMARY KEY,
                         profile uuid NOT NULL
                     )"
                ),
            ),
        ];
        let writer = Worker::start(NAME, connection)?;
        let schema = options.schema.clone();
        writer
            .run(async move |conn| create_tables(&mut conn.client, NAME, &schema, &tables).await)?;
        let reader = Worker::start(NAME, connection)?;
        Ok(PostgresProfileStore {
            writer,
            reader,
            sql: Arc::new(Sql::new(profiles, index)),
            config: Arc::new(config),
        })
    }

    /// The survivorship rules.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Runs a lookup that answers at most one `(id, profile)` row.
    fn find(&self, sql: fn(&Sql) -> &str, param: String) -> Option<Arc<Profile>> {
        let statements = self.sql.clone();
        let found = self.reader.read(async move |conn| {
            let statement = conn
                .statement(sql(&statements))
                .await
                .map_err(|e| pg_error(NAME, "look up a profile", &e))?;
            let row = conn
                .client
                .query_opt(&statement, &[&param])
                .await
                .map_err(|e| pg_error(NAME, "look up a profile", &e))?;
            let Some(row) = row else { return Ok(None) };
            let text: String = row
                .try_get(1)
                .map_err(|e| pg_error(NAME, "look up a profile", &e))?;
            Ok(Some(serde_json::from_str::<Profile>(&text)?))
        });
        found.unwrap_or_else(warn).map(Arc::new)
    }
}

fn warn<T: Default>(error: cdp_identity::Error) -> T {
    tracing::warn!(%error, "profile store lookup failed; answering none");
    T::default()
}

/// Where a profile stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Live,
    Merged(ProfileId),
    Retired,
}

/// A profile row read (or created) by one `apply`.
#[derive(Debug)]
struct Row {
    state: State,
    profile: Profile,
    /// Creation time, for rows this delta creates.
    created_at: Option<i64>,
    dirty: bool,
}

/// The 128-bit identifier key as a uuid literal (32 hex digits).
fn key_text(key: IdentifierKey) -> String {
    format!("{:032x}", key.0)
}

fn parse_id(text: &str) -> Result<ProfileId> {
    text.parse().map_err(|_| {
        backend(
            NAME,
            BackendErrorKind::Failed,
            format!("`{text}` in the profile table is not a profile id"),
        )
    })
}

/// The live profile `id` resolves to, following merges among the rows read.
fn live_of(rows: &HashMap<ProfileId, Row>, mut id: ProfileId) -> Option<ProfileId> {
    for _ in 0..MAX_HOPS {
        match rows.get(&id)?.state {
            State::Live => return Some(id),
            State::Retired => return None,
            State::Merged(into) => id = into,
        }
    }
    None
}

/// Reads the rows of `ids` and of the profiles they were merged into.
async fn load(
    tx: &impl GenericClient,
    statement: &Statement,
    ids: &[String],
) -> Result<HashMap<ProfileId, Row>> {
    let mut rows = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let found = tx
            .query(statement, &[&chunk])
            .await
            .map_err(|e| pg_error(NAME, "read profiles", &e))?;
        for row in found {
            let get = |i: usize| -> Result<Option<String>> {
                row.try_get(i)
                    .map_err(|e| pg_error(NAME, "read profiles", &e))
            };
            let id = parse_id(&get(0)?.unwrap_or_default())?;
            let state = match (get(1)?.as_deref(), get(2)?) {
                (Some("live"), _) => State::Live,
                (Some("retired"), _) => State::Retired,
                (Some("merged"), Some(into)) => State::Merged(parse_id(&into)?),
                (state, _) => {
                    return Err(backend(
                        NAME,
                        BackendErrorKind::Failed,
                        format!("profile {id} has an invalid state {state:?}"),
                    ));
                }
            };
            let profile = serde_json::from_str(&get(3)?.unwrap_or_default())?;
            rows.insert(
                id,
                Row {
                    state,
                    profile,
                    created_at: None,
                    dirty: false,
                },
            );
        }
    }
    Ok(rows)
}

/// Applies `d` in one transaction; see [`PostgresProfileStore`].
async fn apply(conn: &mut Conn, sql: &Sql, config: &StoreConfig, d: &ProfileDelta) -> Result<()> {
    let pg = |context: &'static str| move |e| pg_error(NAME, context, &e);
    // Prepared once per connection; a delta then costs no extra round trips for them.
    let lock = conn.statement(&sql.lock).await.map_err(pg("prepare"))?;
    let load_rows = conn.statement(&sql.load).await.map_err(pg("prepare"))?;
    let upsert_profiles = conn
        .statement(&sql.upsert_profiles)
        .await
        .map_err(pg("prepare"))?;
    let upsert_index = conn
        .statement(&sql.upsert_index)
        .await
        .map_err(pg("prepare"))?;
    let delete_index = conn
        .statement(&sql.delete_index)
        .await
        .map_err(pg("prepare"))?;
    let tx = conn.client.transaction().await.map_err(pg("begin apply"))?;
    tx.execute(&lock, &[&sql.profiles])
        .await
        .map_err(pg("lock the profile store"))?;

    let mut named: HashSet<ProfileId> = HashSet::new();
    named.extend(d.created.iter().map(|(id, _)| *id));
    named.extend(d.assign.iter().map(|(_, id)| *id));
    named.extend(d.merges.iter().flat_map(|(a, s)| [*a, *s]));
    named.extend(
        d.splits
            .iter()
            .flat_map(|s| s.into.iter().map(|(id, _)| *id)),
    );
    named.extend(d.retired.iter().copied());
    named.extend(d.observations.iter().map(|o| o.profile));
    let named: Vec<String> = named.iter().map(ProfileId::to_string).collect();
    let mut rows = load(&tx, &load_rows, &named).await?;

    // The steps of `MemoryProfileStore::apply`, in its order.
    let new_row = |id: ProfileId, created_at: Option<i64>| Row {
        state: State::Live,
        profile: Profile::new(id),
        created_at,
        dirty: true,
    };
    for &(id, at) in &d.created {
        rows.entry(id).or_insert_with(|| new_row(id, Some(at)));
    }
    // Last word per key: every assignment comes before every removal.
    let mut index: HashMap<IdentifierKey, Option<ProfileId>> = HashMap::new();
    for &(key, id) in &d.assign {
        if rows.contains_key(&id) {
            index.insert(key, Some(id));
        }
    }
    for &(absorbed, survivor) in &d.merges {
        if !rows.contains_key(&absorbed) {
            continue;
        }
        let Some(s) = live_of(&rows, survivor) else {
            continue;
        };
        if absorbed == s || live_of(&rows, absorbed) != Some(absorbed) {
            continue;
        }
        let Some(gone) = rows.get_mut(&absorbed) else {
            continue;
        };
        gone.state = State::Merged(s);
        gone.dirty = true;
        let gone = gone.profile.clone();
        if let Some(target) = rows.get_mut(&s) {
            target.profile.absorb(config, &gone);
            target.dirty = true;
        }
    }
    for split in &d.splits {
        for &(id, restored) in &split.into {
            match rows.get_mut(&id) {
                Some(row) if restored => {
                    row.state = State::Live;
                    row.dirty = true;
                }
                Some(_) => {}
                None => {
                    rows.insert(id, new_row(id, None));
                }
            }
        }
    }
    for key in &d.unassign {
        index.insert(*key, None);
    }
    for id in &d.retired {
        if let Some(row) = rows.get_mut(id) {
            row.state = State::Retired;
            row.dirty = true;
        }
    }
    for o in &d.observations {
        let Some(live) = live_of(&rows, o.profile) else {
            continue;
        };
        if let Some(row) = rows.get_mut(&live) {
            row.profile.observe(config, o);
            row.dirty = true;
        }
    }

    let dirty: Vec<(&ProfileId, &Row)> = rows.iter().filter(|(_, r)| r.dirty).collect();
    for chunk in dirty.chunks(CHUNK) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut states = Vec::with_capacity(chunk.len());
        let mut into = Vec::with_capacity(chunk.len());
        let mut profiles = Vec::with_capacity(chunk.len());
        let mut created = Vec::with_capacity(chunk.len());
        for (id, row) in chunk {
            ids.push(id.to_string());
            let (state, merged_into) = match row.state {
                State::Live => ("live", None),
                State::Merged(to) => ("merged", Some(to.to_string())),
                State::Retired => ("retired", None),
            };
            states.push(state);
            into.push(merged_into);
            profiles.push(serde_json::to_string(&row.profile)?);
            created.push(row.created_at);
        }
        tx.execute(
            &upsert_profiles,
            &[&ids, &states, &into, &profiles, &created],
        )
        .await
        .map_err(pg("write profiles"))?;
    }
    let (mut keys, mut owners, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for (key, id) in index {
        match id {
            Some(id) => {
                keys.push(key_text(key));
                owners.push(id.to_string());
            }
            None => removed.push(key_text(key)),
        }
    }
    for (keys, owners) in keys.chunks(CHUNK).zip(owners.chunks(CHUNK)) {
        tx.execute(&upsert_index, &[&keys, &owners])
            .await
            .map_err(pg("write identifier index"))?;
    }
    for keys in removed.chunks(CHUNK) {
        tx.execute(&delete_index, &[&keys])
            .await
            .map_err(pg("remove identifiers from the index"))?;
    }
    tx.commit().await.map_err(pg("commit apply"))
}

impl ProfileStore for PostgresProfileStore {
    fn apply(&self, delta: &ProfileDelta) -> Result<()> {
        if delta.is_empty() {
            return Ok(());
        }
        let (sql, config, delta) = (self.sql.clone(), self.config.clone(), delta.clone());
        self.writer
            .run(async move |conn| apply(conn, &sql, &config, &delta).await)
    }

    fn get(&self, id: ProfileId) -> Option<Arc<Profile>> {
        self.find(|sql| &sql.get, id.to_string())
    }

    fn profile_id(&self, key: IdentifierKey) -> Option<ProfileId> {
        let sql = self.sql.clone();
        let key = key_text(key);
        let found = self.reader.read(async move |conn| {
            let statement = conn
                .statement(&sql.profile_id)
                .await
                .map_err(|e| pg_error(NAME, "look up an identifier", &e))?;
            let row = conn
                .client
                .query_opt(&statement, &[&key])
                .await
                .map_err(|e| pg_error(NAME, "look up an identifier", &e))?;
            match row {
                Some(row) => {
                    let id: String = row
                        .try_get(0)
                        .map_err(|e| pg_error(NAME, "look up an identifier", &e))?;
                    Ok(Some(parse_id(&id)?))
                }
                None => Ok(None),
            }
        });
        found.unwrap_or_else(warn)
    }

    fn lookup(&self, key: IdentifierKey) -> Option<Arc<Profile>> {
        self.find(|sql| &sql.lookup, key_text(key))
    }

    fn len(&self) -> usize {
        let sql = self.sql.clone();
        let len = self.reader.read(async move |conn| {
            let statement = conn
                .statement(&sql.len)
                .await
                .map_err(|e| pg_error(NAME, "count profiles", &e))?;
            conn.client
                .query_one(&statement, &[])
                .await
                .and_then(|row| row.try_get::<_, i64>(0))
                .map_err(|e| pg_error(NAME, "count profiles", &e))
        });
        usize::try_from(len.unwrap_or_else(warn)).unwrap_or(0)
    }
}
