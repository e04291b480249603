//! The quickstart: a deterministic sample company dataset, three pipelines from files
//! through normalisation into a Parquet landing zone, and their run reports.
//!
//! ```text
//! cargo run --release --example quickstart -- --out out/quickstart
//! ```
//!
//! Run it again after killing it: every pipeline resumes from its last committed checkpoint
//! (in `OUT/state.db`), and the landing zone keeps every record exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cdp::IdentityEventKind;
use cdp::connectors::{
    CsvSource, JsonlDestination, JsonlSource, ParquetDestination, ParquetSource,
};
use cdp::governance::{AuditLog, DataClass, Decision, Keys, Policy, SqliteAuditLog};
use cdp::identity::{
    ColumnMapping, IdentifierColumn, ProfileExplanation, Resolver, ResolverConfig,
};
use cdp::memory::MemoryDestination;
use cdp::schema::{Consumer, ConsumerKind, SchemaPolicy, render_report_with_consumers};
use cdp::transforms::normalize::{Normalize, NormalizeConfig};
use cdp::{Pipeline, RunMode, RunReport, Source, SqliteStateStore, StateStore, Transform};
use cdp_testkit::sample::{SampleConfig, SampleManifest, generate};
use clap::Parser;

/// Runs the quickstart on generated sample data.
#[derive(Debug, Parser)]
struct Args {
    /// Where inputs, landing zone, dead letters and state go.
    #[arg(long, default_value = "out/quickstart")]
    out: PathBuf,
    /// Events to generate (web and mobile together).
    #[arg(long, default_value_t = 60_000)]
    events: usize,
    /// Persons in the sample company.
    #[arg(long, default_value_t = 5_000)]
    persons: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Rows between commits (smaller: more checkpoints, finer resume).
    #[arg(long, default_value_t = 20_000)]
    commit_rows: usize,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let input = args.out.join("input");
    match sample_data(&input, &args)? {
        Some(m) => say(format!(
            "generated sample data in {}: {} events ({} web, {} mobile, {} malformed lines \
             and {} bad timestamps injected), {} CRM rows, {} invoices, {} persons",
            input.display(),
            m.events(),
            m.web.events,
            m.mobile.events,
            m.malformed_lines(),
            m.bad_timestamps(),
            m.crm.rows,
            m.billing.rows,
            m.persons,
        )),
        None => say(format!("reusing sample data in {}", input.display())),
    }

    let store: Arc<dyn StateStore> = Arc::new(SqliteStateStore::open(args.out.join("state.db"))?);
    let normalize: BTreeMap<String, NormalizeConfig> =
        toml::from_str(include_str!("normalize.toml"))?;
    let audit = Arc::new(SqliteAuditLog::open(args.out.join("audit.db"))?);
    let policy = Policy::from_toml(include_str!("policy.toml"))?
        .with_keys(Keys::new().with_hash_key(&hash_key())?)
        .with_audit(audit.clone())?;
    let ctx = Context {
        out: args.out.clone(),
        store: store.clone(),
        normalize,
        commit_rows: args.commit_rows,
        policy,
        decisions: std::sync::Mutex::new(Vec::new()),
    };

    let events = JsonlSource::new(&input)
        .with_name("web_and_mobile")
        .with_stream("events")
        .with_extensions(["jsonl"])
        .with_infer_records(20_000);
    let crm = CsvSource::new(input.join("crm.csv"))
        .with_name("crm_export")
        .with_stream("crm");
    let billing = CsvSource::new(input.join("billing.csv"))
        .with_name("billing_export")
        .with_stream("billing");
    let (events, crm, billing) = tokio::try_join!(
        ctx.run("events", events, true),
        ctx.run("crm", crm, false),
        ctx.run("billing", billing, false),
    )?;

    say("\n== run reports ==".into());
    for report in [&events, &crm, &billing] {
        say(report.to_string());
    }
    let landed: u64 = [&events, &crm, &billing].iter().map(|r| r.rows_out()).sum();
    let dead: u64 = [&events, &crm, &billing]
        .iter()
        .map(|r| r.dead_letters)
        .sum();
    say(format!(
        "landed {landed} rows in {} (dead letters: {dead}, in {})",
        args.out.join("landing").display(),
        args.out.join("dead_letters").display()
    ));
    if landed == 0 {
        say("nothing new to read: every source is at its committed checkpoint".into());
    }

    say("\n== governance ==".into());
    let decisions = ctx.decisions.lock().map(|d| d.clone()).unwrap_or_default();
    // Protected fields one by one; the rest (internal data in the clear) as a count.
    let (protected, plain): (Vec<_>, Vec<_>) = decisions
        .iter()
        .partition(|d| d.classification.class > DataClass::Internal);
    for decision in &protected {
        say(format!("  {decision}"));
    }
    say(format!(
        "  ... and {} internal fields in the clear ({} decisions in all)",
        plain.len(),
        decisions.len()
    ));
    let verified = audit.verify()?;
    say(format!(
        "  audit log {}: {} entries, hash chain {}",
        args.out.join("audit.db").display(),
        audit.entries()?.len(),
        if verified.is_intact() {
            "intact"
        } else {
            "BROKEN"
        }
    ));
    say(format!(
        "  activation export (hashed emails, no ip): {}",
        args.out.join("activation").display()
    ));

    say("\n== identity: stitched profiles ==".into());
    say(stitch(&args.out, &input).await?);

    say("\n== schema change: next week's CRM export ==".into());
    say(crm_schema_change(&input).await?);
    Ok(())
}

/// Stitches the landed events, CRM rows and invoices into profiles, checks them against the
/// generator's ground truth, and explains one profile.
///
/// Identity runs over the committed landing zone (read back with the Parquet source), so it
/// sees exactly what was delivered, however many runs and resumes that took.
async fn stitch(out: &Path, input: &Path) -> Result<String, BoxError> {
    let config: ResolverConfig = toml::from_str(include_str!("identity.toml"))?;
    let events = Arc::new(config.build()?);
    let id = |path: &str, kind: &str| IdentifierColumn::new(path, kind);
    let crm = events.with_mapping(
        ColumnMapping::new(vec![
            id("crm_id", "crm_id"),
            id("email", "email"),
            id("phone", "phone"),
        ])
        .timestamp("updated_at"),
    )?;
    let billing = events.with_mapping(
        ColumnMapping::new(vec![id("crm_id", "crm_id"), id("email", "email")])
            .timestamp("issued_at"),
    )?;
    let streams = [
        ("events", events.clone()),
        ("crm", Arc::new(crm)),
        ("billing", Arc::new(billing)),
    ];
    let mut text = String::new();
    for (stream, resolver) in streams {
        let report = Pipeline::builder(format!("quickstart-identity-{stream}"))
            .source(
                ParquetSource::new(out.join("landing").join(stream))
                    .with_stream(stream)
                    .with_name(format!("landing/{stream}")),
            )
            .identity(resolver)
            .destination(MemoryDestination::new("resolved"))
            .build()?
            .run()
            .await?;
        let merges = report
            .identity_events
            .get(&IdentityEventKind::Merge)
            .copied()
            .unwrap_or(0);
        let refused = report
            .identity_events
            .get(&IdentityEventKind::RefusedLink)
            .copied()
            .unwrap_or(0);
        text.push_str(&format!(
            "  {stream:<8} {:>7} rows resolved, {merges:>6} merges, {refused:>5} links refused\n",
            report.rows_out()
        ));
    }
    let now = chrono_now_ms();
    text.push_str(&format!("{}\n", events.health(now)));
    text.push_str(&truth_check(&events, &input.join("truth.csv"))?);

    // Explain the richest CRM person: every identifier type, and the links that joined them.
    let crm_ids = std::fs::read_to_string(input.join("crm.csv"))?;
    let mut best: Option<(usize, ProfileExplanation)> = None;
    for line in crm_ids.lines().skip(1).take(500) {
        let Some(crm_id) = line.split(',').next() else {
            continue;
        };
        let Some(profile) = events.profile_of("crm_id", crm_id) else {
            continue;
        };
        let explanation = events.explain_profile(profile)?;
        let mut kinds: Vec<&str> = explanation
            .identifiers
            .iter()
            .map(|(i, _)| i.kind.as_str())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        let score = kinds.len() * 1000 - explanation.identifiers.len().min(999);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, explanation));
        }
    }
    if let Some((_, profile)) = best {
        let crm = profile.identifiers.iter().find(|(i, _)| i.kind == "crm_id");
        let anon = profile
            .identifiers
            .iter()
            .find(|(i, _)| i.kind == "anonymous_id");
        if let (Some((crm, _)), Some((anon, _))) = (crm, anon) {
            text.push_str(&format!(
                "\nwhy is {anon} the same person as {crm}?\n{}\n",
                events.explain(anon, crm)?
            ));
        }
        text.push_str(&format!("\n{profile}"));
    }
    Ok(text)
}

/// Compares the stitched profiles with the generator's ground truth: how many people were
/// split over several profiles, and how many profiles fused different people.
fn truth_check(resolver: &Resolver, truth: &Path) -> Result<String, BoxError> {
    use std::collections::{HashMap, HashSet};
    let text = std::fs::read_to_string(truth)?;
    let mut owners: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for line in text.lines().skip(1) {
        let mut parts = line.splitn(3, ',');
        let (Some(person), Some(kind), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        owners
            .entry((kind.to_string(), value.to_string()))
            .or_default()
            .insert(person.to_string());
    }
    // Identifiers several people share (kiosks, the QA email) prove nothing either way.
    let mut profiles_of: HashMap<String, HashSet<String>> = HashMap::new();
    let mut people_in: HashMap<String, HashSet<String>> = HashMap::new();
    for ((kind, value), people) in &owners {
        if people.len() != 1 {
            continue;
        }
        let Some(profile) = resolver.profile_of(kind, value) else {
            continue;
        };
        let person = people.iter().next().cloned().unwrap_or_default();
        profiles_of
            .entry(person.clone())
            .or_default()
            .insert(profile.to_string());
        people_in
            .entry(profile.to_string())
            .or_default()
            .insert(person);
    }
    let split = profiles_of.values().filter(|p| p.len() > 1).count();
    let fused = people_in.values().filter(|p| p.len() > 1).count();
    Ok(format!(
        "ground truth: {} people seen; {} stitched into exactly one profile, {split} split \
         over several; {fused} profiles hold more than one person\n",
        profiles_of.len(),
        profiles_of.len() - split
    ))
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The CRM team renames `phone` to `mobile_phone` and adds `lifecycle_stage` in next week's
/// export: shows the diff, its severity, and which downstream consumers it breaks, before
/// any pipeline reads the file.
async fn crm_schema_change(input: &Path) -> Result<String, BoxError> {
    let current = input.join("crm.csv");
    let next = input.join("crm_next_week.csv");
    let text = std::fs::read_to_string(&current)?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let mut changed = header.replace(",phone,", ",mobile_phone,") + ",lifecycle_stage\n";
    for (i, line) in lines.enumerate() {
        let stage = ["lead", "customer", "churned"][i % 3];
        changed.push_str(&format!("{line},{stage}\n"));
    }
    std::fs::write(&next, changed)?;

    let schema_of = |path: PathBuf| async move {
        let catalog = CsvSource::new(path).discover().await?;
        Ok::<_, BoxError>(catalog.streams[0].schema.clone())
    };
    let (old, new) = (schema_of(current).await?, schema_of(next).await?);
    let consumers = [
        Consumer::new("sms-reminders", ConsumerKind::Activation, "crm")
            .requires("phone")
            .reads("email"),
        Consumer::new("sales-dashboard", ConsumerKind::Dashboard, "crm")
            .reads("company")
            .reads("created_at"),
    ];
    Ok(render_report_with_consumers(
        &old,
        &new,
        &SchemaPolicy::default(),
        &consumers,
    ))
}

/// What every pipeline of the quickstart shares.
struct Context {
    out: PathBuf,
    store: Arc<dyn StateStore>,
    normalize: BTreeMap<String, NormalizeConfig>,
    commit_rows: usize,
    policy: Policy,
    decisions: std::sync::Mutex<Vec<Decision>>,
}

impl Context {
    /// Runs `source` → normalise → landing zone (and, with `activate`, the governed ads
    /// export), under the policy's flow checks.
    async fn run(
        &self,
        stream: &str,
        source: impl Source + 'static,
        activate: bool,
    ) -> Result<RunReport, BoxError> {
        let config = self
            .normalize
            .get(stream)
            .cloned()
            .ok_or_else(|| format!("normalize.toml has no [{stream}] table"))?;
        let normalize = Normalize::new(config)?;
        // The schema destinations will see, for the policy's per-destination masking.
        let discovered = source.discover().await?;
        let raw = discovered
            .stream(stream)
            .ok_or_else(|| format!("source has no stream `{stream}`"))?;
        let schema = normalize.output_schema(&raw.schema)?;

        let mut decisions = self.policy.decisions(&[(stream, schema.clone())])?;
        let landing = ParquetDestination::new(self.out.join("landing")).with_name("landing");
        let mut builder = Pipeline::builder(format!("quickstart-{stream}"))
            .source(source)
            .transform(normalize)
            .destination_with(landing, self.policy.transforms_for("landing", &schema)?)
            .check(self.policy.enforcer());
        if activate {
            let export = JsonlDestination::new(self.out.join("activation")).with_name("activation");
            let masking = self.policy.transforms_for("activation", &schema)?;
            builder = builder.destination_with(export, masking);
        } else {
            decisions.retain(|d| d.destination != "activation");
        }
        if let Ok(mut all) = self.decisions.lock() {
            all.extend(decisions);
        }
        let pipeline = builder
            .dead_letter(
                JsonlDestination::new(self.out.join("dead_letters")).with_name("dead_letters"),
            )
            .state_store(self.store.clone())
            .mode(RunMode::Batch)
            .commit_every_rows(self.commit_rows)
            .build()?;
        Ok(pipeline.run().await?)
    }
}

/// Generates the sample data once; later runs (and resumes) read the same files. Returns
/// `None` when the files were already there.
fn sample_data(dir: &Path, args: &Args) -> Result<Option<SampleManifest>, BoxError> {
    let marker = dir.join(".complete");
    if marker.exists() {
        return Ok(None);
    }
    let config = SampleConfig {
        seed: args.seed,
        persons: args.persons,
        events: args.events,
        inject_errors: true,
        ..SampleConfig::default()
    };
    let manifest = generate(dir, &config)?;
    std::fs::write(&marker, format!("{config:?}\n"))?;
    Ok(Some(manifest))
}

/// The HMAC key for hashed identifiers: from `CDP_HASH_KEY`, or a fixed demo key (hashes are
/// then reproducible across runs, and worthless as a secret: set the variable in production).
fn hash_key() -> Vec<u8> {
    match std::env::var("CDP_HASH_KEY") {
        Ok(key) if key.len() >= 32 => key.into_bytes(),
        _ => b"quickstart demo key, not a secret!".to_vec(),
    }
}

#[allow(clippy::print_stdout)]
fn say(line: String) {
    println!("{line}");
}
