//! A deterministic sample dataset of a small online shop: what a customer-data pipeline
//! meets in its first week.
//!
//! [`generate`] writes, into one directory:
//!
//! | file | content |
//! |---|---|
//! | `web.jsonl` | Segment-spec `page`, `track` and `identify` events from browsers |
//! | `mobile.jsonl` | Segment-spec `screen`, `track` and `identify` events from the iOS and Android app |
//! | `crm.csv` | `crm_id,email,phone,first_name,last_name,company,created_at,updated_at` |
//! | `billing.csv` | `invoice_id,crm_id,customer_email,amount,currency,status,issued_at` |
//! | `truth.csv` | `person_id,identifier_type,identifier_value`: who really is who |
//!
//! Event files are sorted by `timestamp` (RFC 3339 UTC, millisecond precision) over
//! [`SampleConfig::days`] days. The identities overlap the way they do in a real company:
//!
//! - people browse anonymously (`userId` null) and later log in: an `identify` event joins the
//!   device's `anonymousId` to their `userId`, with `context.traits.email`;
//! - one person uses several devices (a browser or two and the app) with the same email;
//! - emails are spelt differently across systems (`Alice.Smith@Acme.io ` in the app,
//!   `alice.smith@acme.io` in billing, `ALICE.SMITH@ACME.IO` in the CRM);
//! - CRM ids link the CRM to billing; a few people have two CRM records; some invoices have
//!   no CRM id and some use a personal email;
//! - a few shared kiosk devices keep one `anonymousId` while several people log in on them;
//! - a few QA accounts share [`TEST_EMAIL`].
//!
//! `truth.csv` lists, per person, every identifier that appears in the data (emails
//! lowercased and trimmed, phones in E.164). An identifier listed for several persons (kiosk
//! devices, the test email) is shared, and must not merge them.
//!
//! With [`SampleConfig::inject_errors`], a few malformed JSON lines and events with an
//! unparseable `timestamp` are written at deterministic positions, reported in the
//! [`SampleManifest`], so the dead-letter path has something to show.
//!
//! The same [`SampleConfig`] always produces byte-identical files.
//!
//! # Example
//!
//! ```
//! use cdp_testkit::sample::{generate, SampleConfig};
//!
//! let dir = std::env::temp_dir().join(format!("cdp-sample-doc-{}", std::process::id()));
//! let config = SampleConfig { persons: 200, events: 2_000, inject_errors: true, ..SampleConfig::default() };
//! let manifest = generate(&dir, &config)?;
//! assert_eq!(manifest.events(), 2_000);
//! assert!(manifest.web.path.exists());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, SecondsFormat, TimeZone, Utc};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// File name of the web events.
pub const WEB_FILE: &str = "web.jsonl";
/// File name of the mobile events.
pub const MOBILE_FILE: &str = "mobile.jsonl";
/// File name of the CRM export.
pub const CRM_FILE: &str = "crm.csv";
/// File name of the billing export.
pub const BILLING_FILE: &str = "billing.csv";
/// File name of the ground truth.
pub const TRUTH_FILE: &str = "truth.csv";
/// The email every QA account uses (in several spellings).
pub const TEST_EMAIL: &str = "test@example.com";

/// Header of [`CRM_FILE`].
pub const CRM_HEADER: &str =
    "crm_id,email,phone,first_name,last_name,company,created_at,updated_at";
/// Header of [`BILLING_FILE`].
pub const BILLING_HEADER: &str =
    "invoice_id,crm_id,customer_email,amount,currency,status,issued_at";
/// Header of [`TRUTH_FILE`].
pub const TRUTH_HEADER: &str = "person_id,identifier_type,identifier_value";

/// Malformed lines injected per event file when [`SampleConfig::inject_errors`] is set.
const MALFORMED_PER_FILE: usize = 3;
/// Events with an unparseable timestamp per event file when errors are injected.
const BAD_TIMESTAMPS_PER_FILE: usize = 3;

/// What to generate. Every field has a default; override with struct update syntax.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleConfig {
    /// Seed of the random generator: the same config gives byte-identical files.
    pub seed: u64,
    /// Number of persons, including CRM-only leads and QA accounts (at least 50).
    pub persons: usize,
    /// Number of events over both event files (at least 500), not counting injected
    /// malformed lines.
    pub events: usize,
    /// Length of the event window in days.
    pub days: u32,
    /// Start of the event window.
    pub start: DateTime<Utc>,
    /// Write a few malformed JSON lines and unparseable timestamps into the event files.
    pub inject_errors: bool,
    /// Number of shared kiosk devices on which several persons log in.
    pub shared_devices: usize,
    /// Number of QA accounts sharing [`TEST_EMAIL`].
    pub test_accounts: usize,
}

impl Default for SampleConfig {
    /// 5,000 persons, 50,000 events over 90 days from 2024-01-01, seed 42, three kiosks,
    /// four QA accounts, no injected errors.
    fn default() -> Self {
        SampleConfig {
            seed: 42,
            persons: 5_000,
            events: 50_000,
            days: 90,
            start: Utc
                .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            inject_errors: false,
            shared_devices: 3,
            test_accounts: 4,
        }
    }
}

/// One generated JSONL event file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFile {
    /// Where it was written.
    pub path: PathBuf,
    /// Events written (valid JSON lines, including those with a bad timestamp).
    pub events: usize,
    /// Lines written, malformed ones included.
    pub lines: usize,
    /// 1-based line numbers of the injected malformed lines.
    pub malformed_lines: Vec<usize>,
    /// 1-based line numbers of the events whose `timestamp` cannot be parsed.
    pub bad_timestamp_lines: Vec<usize>,
}

/// One generated CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvFile {
    /// Where it was written.
    pub path: PathBuf,
    /// Data rows, not counting the header.
    pub rows: usize,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleManifest {
    /// The output directory.
    pub dir: PathBuf,
    /// Persons in the ground truth, as configured.
    pub persons: usize,
    /// `web.jsonl`.
    pub web: EventFile,
    /// `mobile.jsonl`.
    pub mobile: EventFile,
    /// `crm.csv`.
    pub crm: CsvFile,
    /// `billing.csv`.
    pub billing: CsvFile,
    /// `truth.csv`.
    pub truth: CsvFile,
}

impl SampleManifest {
    /// Events over both event files.
    pub fn events(&self) -> usize {
        self.web.events + self.mobile.events
    }

    /// Malformed lines injected over both event files.
    pub fn malformed_lines(&self) -> usize {
        self.web.malformed_lines.len() + self.mobile.malformed_lines.len()
    }

    /// Events with an unparseable timestamp over both event files.
    pub fn bad_timestamps(&self) -> usize {
        self.web.bad_timestamp_lines.len() + self.mobile.bad_timestamp_lines.len()
    }
}

/// Writes the sample dataset described by `config` into `dir` (created if missing) and
/// returns what was written.
///
/// Fails with [`io::ErrorKind::InvalidInput`] when the config is too small to show the
/// overlaps (fewer than 50 persons or 500 events, more QA accounts than a tenth of the
/// persons, no days) or its window is out of range, and with the I/O error otherwise.
pub fn generate(dir: &Path, config: &SampleConfig) -> io::Result<SampleManifest> {
    validate(config)?;
    std::fs::create_dir_all(dir)?;
    let mut world = World::build(config);
    let events = world.events(config);

    let mut web: Vec<&Ev> = Vec::new();
    let mut mobile: Vec<&Ev> = Vec::new();
    for ev in &events {
        match world.devices[ev.device].platform {
            Platform::Web => web.push(ev),
            Platform::Ios | Platform::Android => mobile.push(ev),
        }
    }
    let web = write_events(&dir.join(WEB_FILE), &world, &web, config.inject_errors)?;
    let mobile = write_events(
        &dir.join(MOBILE_FILE),
        &world,
        &mobile,
        config.inject_errors,
    )?;
    let crm = world.write_crm(&dir.join(CRM_FILE), config)?;
    let billing = world.write_billing(&dir.join(BILLING_FILE), config)?;
    let truth = world.write_truth(&dir.join(TRUTH_FILE))?;
    Ok(SampleManifest {
        dir: dir.to_path_buf(),
        persons: config.persons,
        web,
        mobile,
        crm,
        billing,
        truth,
    })
}

fn validate(config: &SampleConfig) -> io::Result<()> {
    let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    if config.persons < 50 {
        return invalid(format!(
            "sample needs at least 50 persons, got {}",
            config.persons
        ));
    }
    if config.events < 500 {
        return invalid(format!(
            "sample needs at least 500 events, got {}",
            config.events
        ));
    }
    if config.test_accounts > config.persons / 10 {
        return invalid(format!(
            "{} test accounts is more than a tenth of {} persons",
            config.test_accounts, config.persons
        ));
    }
    if config.shared_devices > config.persons / 20 {
        return invalid(format!(
            "{} shared devices is more than one per 20 of {} persons",
            config.shared_devices, config.persons
        ));
    }
    if config.days == 0 {
        return invalid("sample needs a window of at least one day".to_string());
    }
    // Four-digit years in RFC 3339, and room for CRM records a year before the window.
    let end = config
        .start
        .checked_add_signed(chrono::Duration::days(i64::from(config.days) + 1));
    if end.is_none_or(|end| end.year() > 9999) || config.start.year() < 1971 {
        return invalid(format!(
            "sample window {} + {} days is out of range",
            config.start, config.days
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------------------

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "Alice", "Bob", "Carla", "Daniel", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Kara", "Liam", "Maya", "Noah", "Olivia", "Pablo", "Quinn", "Rosa", "Samir", "Tara", "Uma",
    "Victor", "Wen", "Ximena", "Yusuf", "Zoe", "Aaron", "Beatriz", "Chen", "Dmitri", "Elena",
    "Felix", "Gita", "Hannah", "Ivan", "Julia", "Kofi", "Lena", "Mateo", "Nadia", "Oscar",
    "Priya", "Rafael", "Sofia", "Tomas", "Valentina", "William", "Yara", "Amir", "Chloe",
    "Diego", "Freya", "Gabriel", "Isla", "Jamal", "Leila", "Marco", "Nora", "Omar", "Sara",
];

#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[

    "Smith", "Johnson", "Garcia", "Muller", "Rossi", "Nguyen", "Kim", "Okafor", "Silva", "Novak",
    "Cohen", "Larsen", "Moreau", "Tanaka", "Kowalski", "Haddad", "Patel", "Brown", "Fischer",
    "Lopez", "Andersen", "Costa", "Dubois", "Ivanova", "Jensen", "Khan", "Lee", "Martin",
    "Nakamura", "Olsen", "Petrov", "Quinlan", "Reyes", "Schmidt", "Torres", "Ueda", "Vargas",
    "Walker", "Young", "Zhang", "Adams", "Baker", "Clark", "Diaz", "Evans", "Foster", "Gomez",
    "Hughes", "Ito", "Jones", "Kelly", "Lambert", "Meyer", "Nilsson", "Ortiz", "Park", "Ramos",
    "Sato", "Turner", "Weber",
];

#[rustfmt::skip]
const COMPANY_WORDS: &[&str] = &[
    "Acme", "Blue", "Cedar", "Delta", "Ember", "Fjord", "Granite", "Harbor", "Iris", "Juniper",
    "Kite", "Lumen", "Maple", "Nimbus", "Orbit", "Pine", "Quartz", "River", "Summit", "Tidal",
    "Umber", "Vertex", "Willow", "Zenith",
];
#[rustfmt::skip]
const COMPANY_NOUNS: &[&str] = &[
    "Labs", "Works", "Systems", "Foods", "Logistics", "Studio", "Analytics", "Robotics",
    "Health", "Supply",
];
const COMPANY_SUFFIXES: &[&str] = &["", "", " Inc.", ", Inc.", " LLC", " GmbH", " Ltd"];
const COMPANY_TLDS: &[&str] = &["io", "com", "co", "de", "co.uk"];
const FREE_MAIL: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "yahoo.com",
    "icloud.com",
    "proton.me",
];

const CATEGORIES: &[&str] = &[
    "Shoes",
    "Outerwear",
    "Bags",
    "Accessories",
    "Home",
    "Outdoor",
];
#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "Trail", "Urban", "Classic", "Alpine", "Coastal", "Nordic", "Everyday", "Summit", "Studio",
    "Weekend",
];
#[rustfmt::skip]
const NOUNS: &[&str] = &[
    "Runner", "Parka", "Backpack", "Beanie", "Mug", "Tent", "Sneaker", "Tote", "Scarf", "Lamp",
    "Bottle", "Jacket",
];
const SEARCHES: &[&str] = &[
    "running shoes",
    "rain jacket",
    "backpack 30l",
    "gift card",
    "wool scarf",
    "tent 2 person",
    "sale",
];

/// `(name, path, title)` of the web pages.
const PAGES: &[(&str, &str, &str)] = &[
    ("Home", "/", "Shop Example"),
    ("Catalog", "/catalog", "All products | Shop Example"),
    ("Product", "/products", "Product | Shop Example"),
    ("Pricing", "/pricing", "Membership | Shop Example"),
    ("Blog", "/blog", "Journal | Shop Example"),
    ("Cart", "/cart", "Your cart | Shop Example"),
    ("Checkout", "/checkout", "Checkout | Shop Example"),
    ("Help", "/help", "Help centre | Shop Example"),
];
const SCREENS: &[&str] = &[
    "Home",
    "Catalog",
    "Product Detail",
    "Search",
    "Cart",
    "Checkout",
    "Account",
];
const REFERRERS: &[&str] = &[
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://www.instagram.com/",
    "https://news.ycombinator.com/",
];
const SITE: &str = "https://shop.example.com";

const BROWSER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
];
const KIOSK_AGENT: &str = "Mozilla/5.0 (X11; CrOS x86_64 15633.69.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 Kiosk";
const IOS_AGENTS: &[&str] = &[
    "ShopApp/4.2.0 (iPhone15,2; iOS 17.2.1)",
    "ShopApp/4.1.3 (iPhone13,1; iOS 16.7.4)",
];
const ANDROID_AGENTS: &[&str] = &[
    "ShopApp/4.2.0 (Linux; Android 14; Pixel 8)",
    "ShopApp/4.1.3 (Linux; Android 13; SM-S911B)",
];

// ---------------------------------------------------------------------------------------
// The world: persons, devices, products
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Browses, maybe signs up.
    Regular,
    /// Known only to the CRM (a sales lead): no events.
    Lead,
    /// A QA account using [`TEST_EMAIL`].
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Us,
    Uk,
    De,
}

impl Region {
    fn currency(self) -> &'static str {
        match self {
            Region::Us => "USD",
            Region::Uk => "GBP",
            Region::De => "EUR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    Web,
    Ios,
    Android,
}

/// How one system spells an email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Canonical,
    /// `Alice.Smith@Acme.io`: typed with care.
    Capitalized,
    /// `Alice.smith@acme.io`: phone keyboards capitalise the first letter.
    FirstCap,
    /// `ALICE.SMITH@ACME.IO`: CRMs that shout.
    Upper,
    /// `alice.smith@acme.io `: autocomplete left a space.
    Trailing,
    /// `Alice.Smith@Acme.io `.
    CapitalizedTrailing,
    /// ` alice.smith@acme.io`: pasted.
    Leading,
}

#[derive(Debug)]
struct Device {
    id: String,
    anonymous_id: String,
    platform: Platform,
    kind: &'static str,
    agent: &'static str,
    ip: String,
}

#[derive(Debug)]
struct Person {
    kind: Kind,
    first: &'static str,
    last: &'static str,
    /// Lowercased, trimmed.
    email: String,
    /// A personal address some invoices use.
    alt_email: Option<String>,
    region: Region,
    /// `(e164, as typed in the CRM)`.
    phone: Option<(String, String)>,
    company: Option<usize>,
    user_id: Option<String>,
    devices: Vec<usize>,
    kiosk: Option<usize>,
    budget: usize,
    web_style: Style,
    app_style: Style,
    crm_style: Style,
    billing_style: Style,
    /// Event time of the person's first event, for CRM `created_at`.
    first_seen: Option<i64>,
}

#[derive(Debug)]
struct Product {
    id: String,
    name: String,
    category: &'static str,
    cents: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EvKind {
    Track,
    Identify,
    Page,
    Screen,
}

#[derive(Debug, Clone, Copy)]
enum Props {
    None,
    Page {
        page: usize,
        referrer: Option<usize>,
    },
    Product(usize),
    Search(usize),
    Order {
        order: u32,
        cents: u64,
    },
    SignedUp(&'static str),
}

/// One event, rendered only when written.
#[derive(Debug)]
struct Ev {
    micros: i64,
    kind: EvKind,
    person: usize,
    device: usize,
    logged_in: bool,
    /// Track event name, page or screen name.
    name: &'static str,
    props: Props,
    message_id: u128,
}

#[derive(Debug)]
struct World {
    rng: ChaCha8Rng,
    persons: Vec<Person>,
    devices: Vec<Device>,
    companies: Vec<(String, String)>,
    products: Vec<Product>,
    truth: BTreeSet<(usize, &'static str, String)>,
    /// CRM ids per person, filled by [`World::write_crm`].
    crm_ids: Vec<Vec<String>>,
}

fn uuid(rng: &mut ChaCha8Rng) -> u128 {
    let v: u128 = rng.random();
    let v = (v & !(0xF << 76)) | (0x4 << 76);
    (v & !(0x3 << 62)) | (0x2 << 62)
}

fn uuid_string(v: u128) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        v >> 96,
        (v >> 80) & 0xffff,
        (v >> 64) & 0xffff,
        (v >> 48) & 0xffff,
        v & 0xffff_ffff_ffff
    )
}

fn pick_style(rng: &mut ChaCha8Rng, weights: &[(Style, u32)]) -> Style {
    let total: u32 = weights.iter().map(|(_, w)| w).sum();
    let mut roll = rng.random_range(0..total);
    for &(style, weight) in weights {
        if roll < weight {
            return style;
        }
        roll -= weight;
    }
    Style::Canonical
}

fn capitalize_after(text: &str, out: &mut String, all_segments: bool) {
    let mut start = true;
    for c in text.chars() {
        if start && c.is_ascii_alphabetic() {
            out.push(c.to_ascii_uppercase());
            start = false;
        } else {
            out.push(c);
            if c == '.' && all_segments {
                start = true;
            } else if c.is_ascii_alphanumeric() {
                start = false;
            }
        }
    }
}

fn styled(email: &str, style: Style) -> String {
    let capitalized = || {
        let mut out = String::with_capacity(email.len() + 1);
        let (local, domain) = email.split_once('@').unwrap_or((email, ""));
        capitalize_after(local, &mut out, true);
        out.push('@');
        capitalize_after(domain, &mut out, false);
        out
    };
    match style {
        Style::Canonical => email.to_string(),
        Style::Capitalized => capitalized(),
        Style::FirstCap => {
            let mut out = String::with_capacity(email.len());
            capitalize_after(email, &mut out, false);
            out
        }
        Style::Upper => email.to_ascii_uppercase(),
        Style::Trailing => format!("{email} "),
        Style::CapitalizedTrailing => format!("{} ", capitalized()),
        Style::Leading => format!(" {email}"),
    }
}

fn ip(rng: &mut ChaCha8Rng) -> String {
    // Public-looking unicast addresses, avoiding 10/8, 127/8 and multicast.
    let a = rng.random_range(11u32..=223);
    let a = if a == 127 { 128 } else { a };
    format!(
        "{a}.{}.{}.{}",
        rng.random_range(0u32..=255),
        rng.random_range(0u32..=255),
        rng.random_range(1u32..=254)
    )
}

fn phone(rng: &mut ChaCha8Rng, region: Region) -> Option<(String, String)> {
    match region {
        Region::Us => {
            // 555-01xx numbers are reserved for fiction.
            let area = rng.random_range(201u32..=989);
            let line = rng.random_range(0u32..=99);
            let e164 = format!("+1{area}55501{line:02}");
            let typed = match rng.random_range(0u32..5) {
                0 => format!("+1 {area}-555-01{line:02}"),
                1 => format!("({area}) 555-01{line:02}"),
                2 => format!("{area}.555.01{line:02}"),
                3 => format!("1-{area}-555-01{line:02}"),
                _ => format!("{area}55501{line:02}"),
            };
            Some((e164, typed))
        }
        Region::Uk => {
            // 07700 900xxx numbers are reserved for drama.
            let line = rng.random_range(0u32..=999);
            let e164 = format!("+447700900{line:03}");
            let typed = match rng.random_range(0u32..3) {
                0 => format!("+44 7700 900{line:03}"),
                1 => format!("0044 7700 900{line:03}"),
                _ => e164.clone(),
            };
            Some((e164, typed))
        }
        Region::De => None,
    }
}

impl World {
    fn build(config: &SampleConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let companies = Self::companies(&mut rng);
        let products = Self::products(&mut rng);
        let mut world = World {
            rng,
            persons: Vec::with_capacity(config.persons),
            devices: Vec::new(),
            companies,
            products,
            truth: BTreeSet::new(),
            crm_ids: Vec::new(),
        };
        world.persons(config);
        world.kiosks(config);
        world.budgets(config);
        world
    }

    fn companies(rng: &mut ChaCha8Rng) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut domains = HashSet::new();
        for word in COMPANY_WORDS {
            for noun in COMPANY_NOUNS {
                if rng.random_bool(0.5) {
                    continue;
                }
                let suffix = COMPANY_SUFFIXES.choose(rng).copied().unwrap_or("");
                let tld = COMPANY_TLDS.choose(rng).copied().unwrap_or("com");
                let name = format!("{word} {noun}{suffix}");
                let domain = format!(
                    "{}{}.{tld}",
                    word.to_ascii_lowercase(),
                    noun.to_ascii_lowercase()
                );
                if domains.insert(domain.clone()) {
                    out.push((name, domain));
                }
            }
        }
        out
    }

    fn products(rng: &mut ChaCha8Rng) -> Vec<Product> {
        (0..48)
            .map(|i| {
                let adjective = ADJECTIVES.choose(rng).copied().unwrap_or("Classic");
                let noun = NOUNS.choose(rng).copied().unwrap_or("Mug");
                Product {
                    id: format!("prod_{:04}", 1001 + i),
                    name: format!("{adjective} {noun}"),
                    category: CATEGORIES.choose(rng).copied().unwrap_or("Home"),
                    cents: rng.random_range(5u64..=250) * 100 - 1,
                }
            })
            .collect()
    }

    fn persons(&mut self, config: &SampleConfig) {
        let rng = &mut self.rng;
        let mut emails = HashSet::new();
        let regulars = config.persons - config.test_accounts;
        for index in 0..config.persons {
            let kind = if index >= regulars {
                Kind::Test
            } else if rng.random_bool(0.04) {
                Kind::Lead
            } else {
                Kind::Regular
            };
            let first = FIRST_NAMES.choose(rng).copied().unwrap_or("Alex");
            let last = LAST_NAMES.choose(rng).copied().unwrap_or("Doe");
            let region = match rng.random_range(0u32..100) {
                0..80 => Region::Us,
                80..92 => Region::Uk,
                _ => Region::De,
            };
            let company = (rng.random_bool(0.55) && !self.companies.is_empty())
                .then(|| rng.random_range(0..self.companies.len() as u32) as usize);
            let email = if kind == Kind::Test {
                TEST_EMAIL.to_string()
            } else {
                let f = first.to_ascii_lowercase();
                let l = last.to_ascii_lowercase();
                let local = match rng.random_range(0u32..4) {
                    0 => format!("{f}.{l}"),
                    1 => format!("{}{l}", &f[..1]),
                    2 => format!("{f}_{l}"),
                    _ => format!("{f}.{l}{}", rng.random_range(1u32..99)),
                };
                let domain = match company {
                    Some(c) if rng.random_bool(0.6) => self.companies[c].1.clone(),
                    _ => FREE_MAIL
                        .choose(rng)
                        .copied()
                        .unwrap_or("gmail.com")
                        .to_string(),
                };
                let mut email = format!("{local}@{domain}");
                let mut n = 2;
                while !emails.insert(email.clone()) {
                    email = format!("{local}{n}@{domain}");
                    n += 1;
                }
                email
            };
            let alt_email = (kind == Kind::Regular && rng.random_bool(0.08)).then(|| {
                let candidate = format!(
                    "{}.{}{}@{}",
                    first.to_ascii_lowercase(),
                    last.to_ascii_lowercase(),
                    rng.random_range(1960u32..2004),
                    FREE_MAIL.choose(rng).copied().unwrap_or("gmail.com")
                );
                // A clash would make two persons share an address; fall back to none.
                emails.insert(candidate.clone()).then_some(candidate)
            });
            let alt_email = alt_email.flatten();
            let has_account = match kind {
                Kind::Regular => rng.random_bool(0.7),
                Kind::Lead => false,
                Kind::Test => true,
            };
            let user_id =
                has_account.then(|| format!("usr_{:012x}", rng.random::<u64>() & 0xffff_ffff_ffff));
            let phone = phone(rng, region);
            let web_style = if kind == Kind::Test {
                [Style::Canonical, Style::Capitalized, Style::Trailing][index % 3]
            } else {
                pick_style(
                    rng,
                    &[
                        (Style::Canonical, 50),
                        (Style::Capitalized, 20),
                        (Style::Upper, 5),
                        (Style::Trailing, 10),
                        (Style::CapitalizedTrailing, 10),
                        (Style::Leading, 5),
                    ],
                )
            };
            let app_style = pick_style(
                rng,
                &[
                    (Style::Canonical, 45),
                    (Style::FirstCap, 30),
                    (Style::Trailing, 15),
                    (Style::CapitalizedTrailing, 10),
                ],
            );
            let crm_style = pick_style(
                rng,
                &[
                    (Style::Canonical, 50),
                    (Style::Capitalized, 30),
                    (Style::Upper, 20),
                ],
            );
            let billing_style = pick_style(
                rng,
                &[
                    (Style::Canonical, 80),
                    (Style::Trailing, 10),
                    (Style::Leading, 10),
                ],
            );
            let mut person = Person {
                kind,
                first,
                last,
                email,
                alt_email,
                region,
                phone,
                company,
                user_id,
                devices: Vec::new(),
                kiosk: None,
                budget: 0,
                web_style,
                app_style,
                crm_style,
                billing_style,
                first_seen: None,
            };
            if kind != Kind::Lead {
                let mobile = kind == Kind::Regular && rng.random_bool(0.4);
                let web_too = !mobile || rng.random_bool(0.85);
                if web_too {
                    person.devices.push(self.devices.len());
                    self.devices.push(Self::device(rng, Platform::Web));
                    if kind == Kind::Regular && rng.random_bool(0.15) {
                        person.devices.push(self.devices.len());
                        self.devices.push(Self::device(rng, Platform::Web));
                    }
                }
                if mobile {
                    let platform = if rng.random_bool(0.55) {
                        Platform::Ios
                    } else {
                        Platform::Android
                    };
                    person.devices.push(self.devices.len());
                    self.devices.push(Self::device(rng, platform));
                }
            }
            self.persons.push(person);
        }
    }

    fn device(rng: &mut ChaCha8Rng, platform: Platform) -> Device {
        let anonymous_id = uuid_string(uuid(rng));
        let (id, kind, agent) = match platform {
            Platform::Web => (
                uuid_string(uuid(rng)),
                "browser",
                BROWSER_AGENTS.choose(rng).copied().unwrap_or_default(),
            ),
            // iOS identifierForVendor is an upper-case UUID, Android ids are 16 hex digits.
            Platform::Ios => (
                uuid_string(uuid(rng)).to_ascii_uppercase(),
                "ios",
                IOS_AGENTS.choose(rng).copied().unwrap_or_default(),
            ),
            Platform::Android => (
                format!("{:016x}", rng.random::<u64>()),
                "android",
                ANDROID_AGENTS.choose(rng).copied().unwrap_or_default(),
            ),
        };
        Device {
            id,
            anonymous_id,
            platform,
            kind,
            agent,
            ip: ip(rng),
        }
    }

    /// Shared kiosk browsers; each is used by several account holders, and never resets
    /// its anonymous id between them.
    fn kiosks(&mut self, config: &SampleConfig) {
        let candidates: Vec<usize> = (0..self.persons.len())
            .filter(|&p| {
                let person = &self.persons[p];
                person.kind == Kind::Regular && person.user_id.is_some()
            })
            .collect();
        let mut next = 0usize;
        for _ in 0..config.shared_devices {
            let mut device = Self::device(&mut self.rng, Platform::Web);
            device.kind = "kiosk";
            device.agent = KIOSK_AGENT;
            let index = self.devices.len();
            self.devices.push(device);
            let users = self.rng.random_range(6u32..=12) as usize;
            for _ in 0..users {
                // Spread kiosk users over the population, deterministically.
                next += self.rng.random_range(1u32..=20) as usize;
                if let Some(&p) = candidates.get(next % candidates.len().max(1))
                    && self.persons[p].kiosk.is_none()
                {
                    self.persons[p].kiosk = Some(index);
                }
            }
        }
    }

    /// Splits the event budget over the persons with devices: a heavy tail, like real
    /// traffic, summing to exactly `config.events`.
    fn budgets(&mut self, config: &SampleConfig) {
        let weights: Vec<f64> = self
            .persons
            .iter()
            .map(|p| match p.kind {
                Kind::Lead => 0.0,
                Kind::Test => 0.5,
                Kind::Regular => {
                    // Pareto with shape 4/3: (1 - u)^(-3/4). Built from `sqrt`, which IEEE
                    // rounds exactly everywhere (`powf` does not), so budgets, and the files,
                    // are the same on every platform.
                    let u: f64 = self.rng.random();
                    let s = (1.0 - u).sqrt();
                    (1.0 / (s * s.sqrt())).min(40.0)
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let mut assigned = 0usize;
        for (person, weight) in self.persons.iter_mut().zip(&weights) {
            person.budget = (config.events as f64 * weight / total).floor() as usize;
            assigned += person.budget;
        }
        let active: Vec<usize> = (0..self.persons.len())
            .filter(|&p| weights[p] > 0.0)
            .collect();
        let mut i = 0;
        while assigned < config.events && !active.is_empty() {
            self.persons[active[i % active.len()]].budget += 1;
            assigned += 1;
            i += 1;
        }
    }

    fn record(&mut self, person: usize, kind: &'static str, value: &str) {
        self.truth.insert((person, kind, value.to_string()));
    }

    /// All events, sorted by time.
    fn events(&mut self, config: &SampleConfig) -> Vec<Ev> {
        let start = config.start.timestamp_micros();
        let span = i64::from(config.days) * 86_400_000_000;
        let mut events = Vec::with_capacity(config.events);
        let mut orders = 0u32;
        for p in 0..self.persons.len() {
            let budget = self.persons[p].budget;
            if budget == 0 {
                continue;
            }
            let rng = &mut self.rng;
            let sessions = (budget as f64 / 4.5).round().clamp(1.0, budget as f64) as usize;
            let mut lengths = vec![1usize; sessions];
            for _ in sessions..budget {
                lengths[rng.random_range(0..sessions as u32) as usize] += 1;
            }
            let first_seen = (rng.random::<f64>() * 0.8 * span as f64) as i64;
            let mut times: Vec<i64> = (0..sessions)
                .map(|_| first_seen + (rng.random::<f64>() * (span - first_seen) as f64) as i64)
                .collect();
            times.sort_unstable();
            let has_account = self.persons[p].user_id.is_some();
            let signup_session = rng.random_range(0..=sessions.min(4) as u32 - 1) as usize;
            let kiosk_session = self.persons[p]
                .kiosk
                .map(|_| rng.random_range(signup_session as u32..sessions as u32) as usize);
            let mut identified = vec![false; self.persons[p].devices.len()];
            let mut signed_up = false;
            self.persons[p].first_seen = Some(start + times[0]);

            for (s, (&offset, &len)) in times.iter().zip(&lengths).enumerate() {
                let person = &self.persons[p];
                let (device, slot) = match (kiosk_session, person.kiosk) {
                    (Some(k), Some(kiosk)) if k == s => (kiosk, None),
                    _ => {
                        let slot = if person.devices.len() == 1 {
                            0
                        } else {
                            self.rng.random_range(0..person.devices.len() as u32) as usize
                        };
                        (person.devices[slot], Some(slot))
                    }
                };
                let platform = self.devices[device].platform;
                let logged_in = has_account && s >= signup_session;
                let needs_identify = logged_in && slot.is_none_or(|slot| !identified[slot]);
                let identify_at = if !needs_identify {
                    None
                } else if slot.is_none() {
                    Some(0)
                } else {
                    Some(self.rng.random_range(0..len as u32) as usize)
                };
                let mut micros = start + offset;
                let mut user_known = logged_in && !needs_identify;
                let mut i = 0;
                while i < len {
                    micros += i64::from(self.rng.random_range(4_000u32..90_000)) * 1_000;
                    let (kind, name, props) = if identify_at == Some(i) {
                        user_known = true;
                        if let Some(slot) = slot {
                            identified[slot] = true;
                        }
                        (EvKind::Identify, "", Props::None)
                    } else if user_known && !signed_up {
                        signed_up = true;
                        let method =
                            ["email", "google", "apple"][self.rng.random_range(0..3u32) as usize];
                        (EvKind::Track, "Signed Up", Props::SignedUp(method))
                    } else {
                        self.browse(platform, i == 0, &mut orders)
                    };
                    let message_id = uuid(&mut self.rng);
                    events.push(Ev {
                        micros,
                        kind,
                        person: p,
                        device,
                        logged_in: user_known,
                        name,
                        props,
                        message_id,
                    });
                    i += 1;
                }
                let d = &self.devices[device];
                let (device_id, anonymous_id) = (d.id.clone(), d.anonymous_id.clone());
                self.record(p, "device_id", &device_id);
                self.record(p, "anonymous_id", &anonymous_id);
                if user_known && let Some(user) = self.persons[p].user_id.clone() {
                    self.record(p, "user_id", &user);
                }
                if identify_at.is_some() {
                    let email = self.persons[p].email.clone();
                    self.record(p, "email", &email);
                }
            }
        }
        events.sort_unstable_by_key(|e| (e.micros, e.message_id));
        events
    }

    /// One browsing event: a page or screen view, or a track call.
    fn browse(
        &mut self,
        platform: Platform,
        first: bool,
        orders: &mut u32,
    ) -> (EvKind, &'static str, Props) {
        let rng = &mut self.rng;
        let view = first || rng.random_bool(0.45);
        if view {
            return match platform {
                Platform::Web => {
                    let page = rng.random_range(0..PAGES.len() as u32) as usize;
                    let referrer = (first && rng.random_bool(0.4))
                        .then(|| rng.random_range(0..REFERRERS.len() as u32) as usize);
                    (EvKind::Page, PAGES[page].0, Props::Page { page, referrer })
                }
                _ => {
                    let screen = SCREENS.choose(rng).copied().unwrap_or("Home");
                    (EvKind::Screen, screen, Props::None)
                }
            };
        }
        let product = rng.random_range(0..self.products.len() as u32) as usize;
        match rng.random_range(0u32..100) {
            0..55 => (EvKind::Track, "Product Viewed", Props::Product(product)),
            55..72 => (EvKind::Track, "Product Added", Props::Product(product)),
            72..84 => {
                let search = rng.random_range(0..SEARCHES.len() as u32) as usize;
                (EvKind::Track, "Products Searched", Props::Search(search))
            }
            84..93 => (EvKind::Track, "Checkout Started", Props::Product(product)),
            _ => {
                *orders += 1;
                let items = rng.random_range(1u32..=3);
                let cents = (0..items)
                    .map(|_| {
                        let i = rng.random_range(0..self.products.len() as u32) as usize;
                        self.products[i].cents
                    })
                    .sum();
                (
                    EvKind::Track,
                    "Order Completed",
                    Props::Order {
                        order: *orders,
                        cents,
                    },
                )
            }
        }
    }

    fn write_crm(&mut self, path: &Path, config: &SampleConfig) -> io::Result<CsvFile> {
        let start = config.start.timestamp_micros();
        let end = start + i64::from(config.days) * 86_400_000_000;
        let year = 365 * 86_400_000_000i64;
        // (created, person, email style, phone as typed)
        let mut records: Vec<(i64, usize, Style, Option<String>)> = Vec::new();
        let mut tests_in_crm = 0;
        for p in 0..self.persons.len() {
            let person = &self.persons[p];
            let rng = &mut self.rng;
            let include = match person.kind {
                Kind::Lead => true,
                Kind::Test => {
                    tests_in_crm += 1;
                    tests_in_crm <= 2
                }
                Kind::Regular if person.user_id.is_some() => rng.random_bool(0.6),
                Kind::Regular => rng.random_bool(0.05),
            };
            if !include {
                continue;
            }
            let latest = person.first_seen.unwrap_or(end).max(start - year + 1);
            let created = rng.random_range(start - year..latest);
            let typed = person
                .phone
                .as_ref()
                .filter(|_| rng.random_bool(0.8))
                .map(|(_, typed)| typed.clone());
            records.push((created, p, person.crm_style, typed));
            if person.kind == Kind::Regular && rng.random_bool(0.02) {
                // A duplicate contact, created later by someone who did not search first.
                let again = rng.random_range(created..end);
                records.push((again, p, Style::Upper, None));
            }
        }
        records.sort_by_key(|r| (r.0, r.1));

        let mut out = BufWriter::new(File::create(path)?);
        writeln!(out, "{CRM_HEADER}")?;
        let mut crm_ids: Vec<Vec<String>> = vec![Vec::new(); self.persons.len()];
        for (n, (created, p, style, typed)) in records.iter().enumerate() {
            let crm_id = format!("CRM-{:06}", n + 1);
            let updated = self.rng.random_range(*created..=end.max(*created));
            let person = &self.persons[*p];
            let (first, last, company) = if person.kind == Kind::Test {
                ("Test", "User", "Example Corp")
            } else {
                let company = person
                    .company
                    .filter(|_| self.rng.random_bool(0.95))
                    .map_or("", |c| self.companies[c].0.as_str());
                (person.first, person.last, company)
            };
            let email = styled(&person.email, *style);
            csv_row(
                &mut out,
                &[
                    &crm_id,
                    &email,
                    typed.as_deref().unwrap_or(""),
                    first,
                    last,
                    company,
                    &rfc3339(*created)?,
                    &rfc3339(updated)?,
                ],
            )?;
            crm_ids[*p].push(crm_id.clone());
            let canonical = person.email.clone();
            let e164 = typed
                .as_ref()
                .and(person.phone.as_ref())
                .map(|(e, _)| e.clone());
            self.record(*p, "crm_id", &crm_id);
            self.record(*p, "email", &canonical);
            if let Some(e164) = e164 {
                self.record(*p, "phone", &e164);
            }
        }
        out.flush()?;
        self.crm_ids = crm_ids;
        Ok(CsvFile {
            path: path.to_path_buf(),
            rows: records.len(),
        })
    }

    fn write_billing(&mut self, path: &Path, config: &SampleConfig) -> io::Result<CsvFile> {
        let day = 86_400_000_000i64;
        let start = config.start.timestamp_micros();
        let end = start + i64::from(config.days) * day;
        // (issued, person, crm id, email, cents, currency, status)
        let mut invoices: Vec<(i64, usize, String, String, u64, &'static str, &'static str)> =
            Vec::new();
        let mut test_invoice = false;
        for p in 0..self.persons.len() {
            let person = &self.persons[p];
            let rng = &mut self.rng;
            let crm = &self.crm_ids[p];
            let customer = match person.kind {
                Kind::Test => !crm.is_empty() && !std::mem::replace(&mut test_invoice, true),
                _ if !crm.is_empty() => rng.random_bool(0.55),
                Kind::Regular => person.user_id.is_some() && rng.random_bool(0.1),
                Kind::Lead => false,
            };
            if !customer {
                continue;
            }
            let plan_cents: u64 = if person.kind == Kind::Test {
                0
            } else {
                [2_900, 9_900, 29_900, 29_000, 99_000][rng.random_range(0..5u32) as usize]
            };
            let mut issued = rng.random_range(start - 180 * day..start + 60 * day);
            let mut count = 0;
            while issued < end && count < 8 {
                let crm_id = match crm.as_slice() {
                    [] => String::new(),
                    [only] => only.clone(),
                    [first, rest @ ..] => {
                        if rng.random_bool(0.7) {
                            first.clone()
                        } else {
                            rest[0].clone()
                        }
                    }
                };
                let email = match &person.alt_email {
                    Some(alt) if rng.random_bool(0.5) => alt.clone(),
                    _ => styled(&person.email, person.billing_style),
                };
                let overage = if rng.random_bool(0.2) {
                    rng.random_range(1u64..5_000)
                } else {
                    0
                };
                let status = if person.kind == Kind::Test {
                    "void"
                } else if end - issued < 15 * day && rng.random_bool(0.5) {
                    "open"
                } else {
                    match rng.random_range(0u32..100) {
                        0..92 => "paid",
                        92..95 => "refunded",
                        95..97 => "void",
                        _ => "uncollectible",
                    }
                };
                invoices.push((
                    issued,
                    p,
                    crm_id,
                    email,
                    plan_cents + overage,
                    person.region.currency(),
                    status,
                ));
                count += 1;
                issued += 30 * day + i64::from(rng.random_range(0u32..3)) * day;
            }
        }
        invoices.sort_by_key(|i| (i.0, i.1));

        let mut out = BufWriter::new(File::create(path)?);
        writeln!(out, "{BILLING_HEADER}")?;
        for (n, (issued, p, crm_id, email, cents, currency, status)) in invoices.iter().enumerate()
        {
            let invoice_id = format!("INV-{:06}", n + 1);
            let amount = format!("{}.{:02}", cents / 100, cents % 100);
            csv_row(
                &mut out,
                &[
                    &invoice_id,
                    crm_id,
                    email,
                    &amount,
                    currency,
                    status,
                    &rfc3339(*issued)?,
                ],
            )?;
            let canonical = email.trim().to_ascii_lowercase();
            self.record(*p, "email", &canonical);
        }
        out.flush()?;
        Ok(CsvFile {
            path: path.to_path_buf(),
            rows: invoices.len(),
        })
    }

    fn write_truth(&self, path: &Path) -> io::Result<CsvFile> {
        let mut out = BufWriter::new(File::create(path)?);
        writeln!(out, "{TRUTH_HEADER}")?;
        for (p, kind, value) in &self.truth {
            csv_row(&mut out, &[&person_id(*p), kind, value])?;
        }
        out.flush()?;
        Ok(CsvFile {
            path: path.to_path_buf(),
            rows: self.truth.len(),
        })
    }
}

fn person_id(index: usize) -> String {
    format!("P{:05}", index + 1)
}

fn rfc3339(micros: i64) -> io::Result<String> {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("timestamp {micros}us is out of range"),
            )
        })
}

fn csv_row(out: &mut impl Write, fields: &[&str]) -> io::Result<()> {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        // Quote what a reader could split or trim, so the odd spacing survives.
        if field.contains([',', '"', '\n', '\r']) || field.starts_with(' ') || field.ends_with(' ')
        {
            write!(out, "\"{}\"", field.replace('"', "\"\""))?;
        } else {
            out.write_all(field.as_bytes())?;
        }
    }
    out.write_all(b"\n")
}

// ---------------------------------------------------------------------------------------
// JSON rendering
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct EventJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "messageId")]
    message_id: &'a str,
    #[serde(rename = "anonymousId")]
    anonymous_id: &'a str,
    #[serde(rename = "userId")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    timestamp: &'a str,
    context: ContextJson<'a>,
    properties: PropsJson<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContextJson<'a> {
    device: DeviceJson<'a>,
    ip: &'a str,
    user_agent: &'a str,
    library: NameVersion<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<NameVersion<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os: Option<NameVersion<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traits: Option<TraitsJson<'a>>,
}

#[derive(Serialize)]
struct DeviceJson<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct NameVersion<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
struct TraitsJson<'a> {
    email: &'a str,
}

#[derive(Serialize, Default)]
struct PropsJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referrer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revenue: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
}

const BAD_TIMESTAMPS: [&str; 3] = [
    "2024-02-30T25:61:00Z",
    "not-a-timestamp",
    "17/03/2024 10:15",
];

fn render(world: &World, ev: &Ev, timestamp: &str, out: &mut Vec<u8>) -> io::Result<()> {
    let person = &world.persons[ev.person];
    let device = &world.devices[ev.device];
    let message_id = uuid_string(ev.message_id);
    let email;
    let traits = if ev.kind == EvKind::Identify {
        let style = match device.platform {
            Platform::Web => person.web_style,
            Platform::Ios | Platform::Android => person.app_style,
        };
        email = styled(&person.email, style);
        Some(TraitsJson { email: &email })
    } else {
        None
    };
    let mut props = PropsJson::default();
    match ev.props {
        Props::None => {}
        Props::Page { page, referrer } => {
            let (_, path, title) = PAGES[page];
            props.url = Some(format!("{SITE}{path}"));
            props.path = Some(path);
            props.title = Some(title);
            props.referrer = referrer.map(|r| REFERRERS[r]);
        }
        Props::Product(p) => {
            let product = &world.products[p];
            props.product_id = Some(&product.id);
            props.name = Some(&product.name);
            props.category = Some(product.category);
            props.price = Some(product.cents as f64 / 100.0);
        }
        Props::Search(s) => props.query = Some(SEARCHES[s]),
        Props::Order { order, cents } => {
            props.order_id = Some(format!("ORD-{order:07}"));
            props.revenue = Some(cents as f64 / 100.0);
            props.currency = Some(person.region.currency());
        }
        Props::SignedUp(method) => props.method = Some(method),
    }
    let (library, app, os) = match device.platform {
        Platform::Web => (
            NameVersion {
                name: "analytics.js",
                version: "4.15.3",
            },
            None,
            None,
        ),
        Platform::Ios => (
            NameVersion {
                name: "analytics-swift",
                version: "1.5.3",
            },
            Some(NameVersion {
                name: "ShopApp",
                version: "4.2.0",
            }),
            Some(NameVersion {
                name: "iOS",
                version: "17.2.1",
            }),
        ),
        Platform::Android => (
            NameVersion {
                name: "analytics-kotlin",
                version: "1.16.0",
            },
            Some(NameVersion {
                name: "ShopApp",
                version: "4.2.0",
            }),
            Some(NameVersion {
                name: "Android",
                version: "14",
            }),
        ),
    };
    let json = EventJson {
        kind: match ev.kind {
            EvKind::Track => "track",
            EvKind::Identify => "identify",
            EvKind::Page => "page",
            EvKind::Screen => "screen",
        },
        message_id: &message_id,
        anonymous_id: &device.anonymous_id,
        user_id: if ev.logged_in {
            person.user_id.as_deref()
        } else {
            None
        },
        event: (ev.kind == EvKind::Track).then_some(ev.name),
        name: matches!(ev.kind, EvKind::Page | EvKind::Screen).then_some(ev.name),
        timestamp,
        context: ContextJson {
            device: DeviceJson {
                id: &device.id,
                kind: device.kind,
            },
            ip: &device.ip,
            user_agent: device.agent,
            library,
            app,
            os,
            traits,
        },
        properties: props,
    };
    serde_json::to_writer(&mut *out, &json).map_err(io::Error::other)?;
    out.push(b'\n');
    Ok(())
}

/// `count` positions spread evenly over `0..len`, shifted by `phase` (0..1) so two sets of
/// positions do not coincide.
fn spread(len: usize, count: usize, phase: f64) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    (0..count)
        .map(|k| (((k as f64 + phase) / count as f64) * len as f64) as usize % len)
        .collect()
}

fn write_events(
    path: &Path,
    world: &World,
    events: &[&Ev],
    inject_errors: bool,
) -> io::Result<EventFile> {
    let (malformed_at, bad_at) = if inject_errors {
        (
            spread(events.len(), MALFORMED_PER_FILE, 0.3),
            spread(events.len(), BAD_TIMESTAMPS_PER_FILE, 0.7),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let mut out = BufWriter::with_capacity(1 << 16, File::create(path)?);
    let mut line = Vec::with_capacity(1024);
    let mut lines = 0usize;
    let mut malformed_lines = Vec::new();
    let mut bad_timestamp_lines = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        let timestamp = rfc3339(ev.micros)?;
        if let Some(k) = malformed_at.iter().position(|&m| m == i) {
            line.clear();
            match k % 3 {
                // A write cut short, retried on the next line.
                0 => {
                    render(world, ev, &timestamp, &mut line)?;
                    line.truncate(line.len() / 2);
                }
                // Hand-built JSON with a trailing comma.
                1 => line.extend_from_slice(
                    format!(
                        r#"{{"type":"track","event":"Product Viewed","timestamp":"{timestamp}","properties":{{"price":12.5,}}}}"#
                    )
                    .as_bytes(),
                ),
                // A proxy error page logged as an event.
                _ => line.extend_from_slice(b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
            }
            line.push(b'\n');
            out.write_all(&line)?;
            lines += 1;
            malformed_lines.push(lines);
        }
        line.clear();
        match bad_at.iter().position(|&b| b == i) {
            Some(k) => {
                render(
                    world,
                    ev,
                    BAD_TIMESTAMPS[k % BAD_TIMESTAMPS.len()],
                    &mut line,
                )?;
                bad_timestamp_lines.push(lines + 1);
            }
            None => render(world, ev, &timestamp, &mut line)?,
        }
        out.write_all(&line)?;
        lines += 1;
    }
    out.flush()?;
    Ok(EventFile {
        path: path.to_path_buf(),
        events: events.len(),
        lines,
        malformed_lines,
        bad_timestamp_lines,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cdp-testkit-sample-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn small() -> SampleConfig {
        SampleConfig {
            persons: 600,
            events: 6_000,
            ..SampleConfig::default()
        }
    }

    fn events(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn csv(path: &Path) -> Vec<Vec<String>> {
        // Minimal reader for what `csv_row` writes: quoted fields hold no newlines.
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .skip(1)
            .map(|line| {
                let mut fields = Vec::new();
                let mut field = String::new();
                let mut quoted = false;
                let mut chars = line.chars().peekable();
                while let Some(c) = chars.next() {
                    match (c, quoted) {
                        ('"', true) if chars.peek() == Some(&'"') => {
                            field.push('"');
                            chars.next();
                        }
                        ('"', _) => quoted = !quoted,
                        (',', false) => fields.push(std::mem::take(&mut field)),
                        _ => field.push(c),
                    }
                }
                fields.push(field);
                fields
            })
            .collect()
    }

    fn identify_emails(events: &[serde_json::Value]) -> Vec<String> {
        events
            .iter()
            .filter(|e| e["type"] == "identify")
            .map(|e| {
                e["context"]["traits"]["email"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (a, b, c) = (temp_dir("det-a"), temp_dir("det-b"), temp_dir("det-c"));
        let config = SampleConfig {
            inject_errors: true,
            ..small()
        };
        let ma = generate(&a, &config).unwrap();
        let mb = generate(&b, &config).unwrap();
        generate(&c, &SampleConfig { seed: 7, ..config }).unwrap();
        for file in [WEB_FILE, MOBILE_FILE, CRM_FILE, BILLING_FILE, TRUTH_FILE] {
            let fa = std::fs::read(a.join(file)).unwrap();
            assert_eq!(fa, std::fs::read(b.join(file)).unwrap(), "{file} differs");
            assert_ne!(
                fa,
                std::fs::read(c.join(file)).unwrap(),
                "{file} ignores the seed"
            );
        }
        assert_eq!(ma.web.malformed_lines, mb.web.malformed_lines);
        for dir in [a, b, c] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn default_counts_and_shapes() {
        let dir = temp_dir("defaults");
        let config = SampleConfig::default();
        let m = generate(&dir, &config).unwrap();
        assert_eq!(m.events(), 50_000);
        assert_eq!(m.persons, 5_000);
        assert_eq!(m.malformed_lines() + m.bad_timestamps(), 0);
        assert!(m.mobile.events > 10_000 && m.web.events > 25_000, "{m:?}");
        assert_eq!(m.web.lines, m.web.events);

        let web = events(&m.web.path);
        let mobile = events(&m.mobile.path);
        assert_eq!(web.len() + mobile.len(), 50_000);
        let types = |evs: &[serde_json::Value]| -> BTreeSet<String> {
            evs.iter()
                .map(|e| e["type"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            types(&web),
            ["identify", "page", "track"].map(String::from).into()
        );
        assert_eq!(
            types(&mobile),
            ["identify", "screen", "track"].map(String::from).into()
        );
        let names: BTreeSet<&str> = web
            .iter()
            .filter_map(|e| e.get("event").and_then(|v| v.as_str()))
            .collect();
        for name in ["Product Viewed", "Order Completed", "Signed Up"] {
            assert!(names.contains(name), "no {name} in {names:?}");
        }
        for e in web.iter().chain(&mobile) {
            assert!(e["messageId"].is_string() && e["anonymousId"].is_string());
            assert!(
                e.get("userId").is_some(),
                "userId must be present, null or not"
            );
            assert!(e["context"]["device"]["id"].is_string());
            assert!(e["context"]["ip"].is_string() && e["context"]["userAgent"].is_string());
            assert!(e["properties"].is_object());
            match e["type"].as_str().unwrap() {
                "track" => assert!(e["event"].is_string()),
                "page" | "screen" => assert!(e["name"].is_string()),
                _ => assert!(e["context"]["traits"]["email"].is_string()),
            }
        }
        assert!(web.iter().any(|e| e["properties"]["revenue"].is_f64()));
        assert!(web.iter().any(|e| e["properties"]["url"].is_string()));

        // Timestamps parse, increase, and span most of the 90 days.
        for evs in [&web, &mobile] {
            let ts: Vec<DateTime<Utc>> = evs
                .iter()
                .map(|e| e["timestamp"].as_str().unwrap().parse().unwrap())
                .collect();
            assert!(ts.windows(2).all(|w| w[0] <= w[1]));
            let days = (*ts.last().unwrap() - ts[0]).num_days();
            assert!((80..=91).contains(&days), "{days} days");
        }

        assert_eq!(csv(&m.crm.path).len(), m.crm.rows);
        assert_eq!(csv(&m.billing.path).len(), m.billing.rows);
        assert_eq!(csv(&m.truth.path).len(), m.truth.rows);
        assert!(m.crm.rows > 1_500 && m.billing.rows > 1_000, "{m:?}");
        let header = |p: &Path| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(header(&m.crm.path), CRM_HEADER);
        assert_eq!(header(&m.billing.path), BILLING_HEADER);
        assert_eq!(header(&m.truth.path), TRUTH_HEADER);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn identities_overlap_like_a_real_company() {
        let dir = temp_dir("overlap");
        let m = generate(&dir, &small()).unwrap();
        let web = events(&m.web.path);
        let mobile = events(&m.mobile.path);
        let all: Vec<&serde_json::Value> = web.iter().chain(&mobile).collect();

        // Anonymous browsing later joined to a user id on the same anonymousId.
        let mut seen: HashMap<&str, (bool, bool)> = HashMap::new();
        for e in &all {
            let entry = seen.entry(e["anonymousId"].as_str().unwrap()).or_default();
            if e["userId"].is_null() {
                entry.0 = true;
            } else if entry.0 {
                entry.1 = true;
            }
        }
        let joined = seen.values().filter(|(_, later)| *later).count();
        assert!(
            joined > 20,
            "only {joined} anonymous ids were later identified"
        );

        // The same person (email, case and spaces aside) on web and mobile.
        let norm = |e: &str| e.trim().to_lowercase();
        let web_emails: BTreeSet<String> = identify_emails(&web).iter().map(|e| norm(e)).collect();
        let mobile_emails: BTreeSet<String> =
            identify_emails(&mobile).iter().map(|e| norm(e)).collect();
        let both = web_emails.intersection(&mobile_emails).count();
        assert!(both > 20, "only {both} emails on web and mobile");

        // Spellings differ between systems.
        let crm = csv(&m.crm.path);
        let billing = csv(&m.billing.path);
        let mut spellings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let raw = identify_emails(&web)
            .into_iter()
            .chain(identify_emails(&mobile))
            .chain(crm.iter().map(|r| r[1].clone()))
            .chain(billing.iter().map(|r| r[2].clone()));
        for email in raw {
            spellings.entry(norm(&email)).or_default().insert(email);
        }
        let cased = spellings
            .values()
            .filter(|s| s.iter().map(|e| e.trim()).collect::<BTreeSet<_>>().len() > 1)
            .count();
        let spaced = spellings
            .values()
            .flatten()
            .filter(|e| e.trim() != *e)
            .count();
        assert!(cased > 50 && spaced > 20, "{cased} cased, {spaced} spaced");
        assert!(
            spellings.get(TEST_EMAIL).is_some_and(|s| s.len() > 1),
            "test email in one spelling only"
        );

        // CRM ids link billing to the CRM; some invoices carry none.
        let crm_ids: BTreeSet<&str> = crm.iter().map(|r| r[0].as_str()).collect();
        assert!(
            billing
                .iter()
                .all(|r| r[1].is_empty() || crm_ids.contains(r[1].as_str()))
        );
        assert!(billing.iter().filter(|r| !r[1].is_empty()).count() > billing.len() / 2);
        assert!(billing.iter().any(|r| r[1].is_empty()));

        // A kiosk: one anonymousId, several user ids.
        let mut users_per_anon: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for e in &all {
            if let Some(user) = e["userId"].as_str() {
                users_per_anon
                    .entry(e["anonymousId"].as_str().unwrap())
                    .or_default()
                    .insert(user);
            }
        }
        let shared = users_per_anon.values().filter(|u| u.len() > 1).count();
        assert_eq!(shared, small().shared_devices);

        // The truth agrees: shared identifiers are the kiosks and the test email.
        let truth = csv(&m.truth.path);
        let mut persons_per_id: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
        for row in &truth {
            persons_per_id
                .entry((&row[1], &row[2]))
                .or_default()
                .insert(&row[0]);
        }
        let shared_ids: BTreeSet<&str> = persons_per_id
            .iter()
            .filter(|(_, p)| p.len() > 1)
            .map(|((kind, _), _)| *kind)
            .collect();
        assert_eq!(
            shared_ids,
            ["anonymous_id", "device_id", "email"].into(),
            "unexpected shared identifiers"
        );
        assert!(persons_per_id[&("email", TEST_EMAIL)].len() > 1);
        let persons_with_devices = truth
            .iter()
            .filter(|r| r[1] == "device_id")
            .map(|r| &r[0])
            .collect::<BTreeSet<_>>()
            .len();
        assert!(persons_with_devices > 500, "{persons_with_devices}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn injected_errors_are_where_the_manifest_says() {
        let dir = temp_dir("errors");
        let m = generate(
            &dir,
            &SampleConfig {
                inject_errors: true,
                ..small()
            },
        )
        .unwrap();
        assert_eq!(m.malformed_lines(), 2 * MALFORMED_PER_FILE);
        assert_eq!(m.bad_timestamps(), 2 * BAD_TIMESTAMPS_PER_FILE);
        assert_eq!(m.events(), 6_000);
        for file in [&m.web, &m.mobile] {
            let text = std::fs::read_to_string(&file.path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), file.lines);
            assert_eq!(file.lines, file.events + file.malformed_lines.len());
            for (n, line) in lines.iter().enumerate() {
                let n = n + 1;
                let parsed = serde_json::from_str::<serde_json::Value>(line);
                assert_eq!(
                    parsed.is_err(),
                    file.malformed_lines.contains(&n),
                    "line {n}"
                );
                if let Ok(event) = parsed {
                    let ts = event["timestamp"].as_str().unwrap();
                    let bad = ts.parse::<DateTime<Utc>>().is_err();
                    assert_eq!(bad, file.bad_timestamp_lines.contains(&n), "line {n}: {ts}");
                }
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rejects_configs_too_small_to_overlap() {
        let dir = temp_dir("invalid");
        for config in [
            SampleConfig {
                persons: 10,
                ..small()
            },
            SampleConfig {
                events: 10,
                ..small()
            },
            SampleConfig {
                test_accounts: 100,
                ..small()
            },
            SampleConfig { days: 0, ..small() },
        ] {
            let err = generate(&dir, &config).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
        assert!(!dir.exists());
    }

    #[test]
    fn email_styles() {
        let e = "alice.smith@acme.io";
        assert_eq!(styled(e, Style::Capitalized), "Alice.Smith@Acme.io");
        assert_eq!(styled(e, Style::FirstCap), "Alice.smith@acme.io");
        assert_eq!(styled(e, Style::Upper), "ALICE.SMITH@ACME.IO");
        assert_eq!(
            styled(e, Style::CapitalizedTrailing),
            "Alice.Smith@Acme.io "
        );
        assert_eq!(styled(e, Style::Leading), " alice.smith@acme.io");
    }

    #[test]
    fn normalize_reads_the_sample_and_dead_letters_its_bad_timestamps() {
        use cdp_core::Batch;
        use cdp_core::arrow::array::{Array, AsArray};
        use cdp_core::transform::Transform;
        use cdp_core::transforms::{Normalize, NormalizeConfig};
        use std::sync::Arc;

        let dir = temp_dir("normalize");
        let manifest = generate(
            &dir,
            &SampleConfig {
                persons: 200,
                events: 2_000,
                inject_errors: true,
                ..SampleConfig::default()
            },
        )
        .unwrap();
        // Malformed lines are the file source's dead letters; keep the parseable ones.
        let text = std::fs::read_to_string(&manifest.web.path).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .collect();
        let joined = lines.join("\n");
        let (schema, _) =
            cdp_core::arrow::json::reader::infer_json_schema(std::io::Cursor::new(&joined), None)
                .unwrap();
        let data = cdp_core::arrow::json::ReaderBuilder::new(Arc::new(schema))
            .with_batch_size(lines.len())
            .build(std::io::Cursor::new(&joined))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();

        let config: NormalizeConfig = serde_json::from_value(serde_json::json!({
            "fields": [
                { "from": "messageId", "to": "message_id" },
                { "from": "userId", "to": "user_id" },
                { "from": "context.traits.email", "to": "email", "normalise": ["trim", "lowercase", "empty_as_null"] },
                { "from": "timestamp", "to": "event_time", "cast": "timestamp_us" },
                { "from": "properties.revenue", "to": "revenue", "cast": "float64" }
            ],
            "keep_unmapped": true,
            "drop": ["context"]
        }))
        .unwrap();
        let n = Normalize::new(config).unwrap();
        let input = data.schema();
        let out = n.apply(Batch::new("web", data, "sample")).unwrap();
        assert_eq!(
            out.dead_letters.len(),
            manifest.web.bad_timestamp_lines.len()
        );
        assert!(
            out.dead_letters
                .iter()
                .all(|d| d.reason.contains("to timestamp_us"))
        );
        let batch = out.batch.unwrap();
        assert_eq!(
            batch.num_rows(),
            manifest.web.events - out.dead_letters.len()
        );
        assert_eq!(batch.data.schema(), n.output_schema(&input).unwrap());
        let emails = batch
            .data
            .column_by_name("email")
            .unwrap()
            .as_string::<i32>();
        assert!(emails.null_count() > 0 && emails.null_count() < emails.len());
        assert!(
            emails
                .iter()
                .flatten()
                .all(|e| e == e.trim().to_lowercase())
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
