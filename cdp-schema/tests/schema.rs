//! Integration tests of `cdp-schema`, one binary with a module per topic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

    pub(super) fn schema(fields: Vec<Field>) -> SchemaRef {
        Arc::new(Schema::new(fields))
    }

    pub(super) fn f(name: &str, t: DataType, nullable: bool) -> Field {
        Field::new(name, t, nullable)
    }

    pub(super) fn st(fields: Vec<Field>) -> DataType {
        DataType::Struct(Fields::from(fields))
    }

    pub(super) fn list(t: DataType, nullable: bool) -> DataType {
        DataType::List(Arc::new(Field::new("item", t, nullable)))
    }

    pub(super) fn map(k: DataType, v: DataType) -> DataType {
        DataType::Map(
            Arc::new(Field::new(
                "entries",
                st(vec![
                    Field::new("key", k, false),
                    Field::new("value", v, true),
                ]),
                false,
            )),
            false,
        )
    }
}

mod promotions {
    use arrow::datatypes::{DataType, TimeUnit};
    use cdp_schema::types::{Promotions, TypeRelation, can_promote, relate};
    use std::sync::Arc;

    use super::common::list;

    fn ts(unit: TimeUnit, tz: Option<&str>) -> DataType {
        DataType::Timestamp(unit, tz.map(Arc::from))
    }

    /// (from, to, allowed under Avro, under Iceberg, under Arrow).
    fn cases() -> Vec<(DataType, DataType, bool, bool, bool)> {
        use DataType::*;
        use TimeUnit::*;
        vec![
            // Avro's promotions.
            (Int32, Int64, true, true, true),
            (Int32, Float32, true, false, true),
            (Int32, Float64, true, false, true),
            (Int64, Float32, true, false, true),
            (Int64, Float64, true, false, true),
            (Float32, Float64, true, true, true),
            (Utf8, Binary, true, false, true),
            (Binary, Utf8, true, false, false),
            // Iceberg's promotions.
            (Decimal128(9, 2), Decimal128(18, 2), false, true, true),
            (Decimal128(10, 2), Decimal256(40, 2), false, true, true),
            (Date32, ts(Microsecond, None), false, true, true),
            (Date32, ts(Nanosecond, None), false, true, true),
            (Null, Int64, false, true, true),
            // Lossless Arrow widenings (same Avro / Iceberg type).
            (Int8, Int16, true, true, true),
            (Int16, Int32, true, true, true),
            (UInt32, Int64, true, true, true),
            (Float16, Float32, true, true, true),
            (Utf8, LargeUtf8, true, true, true),
            (Binary, LargeBinary, true, true, true),
            (Date32, Date64, false, true, true),
            (
                list(Int32, true),
                DataType::LargeList(Arc::new(arrow::datatypes::Field::new("item", Int32, true))),
                true,
                true,
                true,
            ),
            // Arrow only.
            (Decimal128(10, 2), Decimal128(12, 4), false, false, true),
            (Int32, Decimal128(12, 2), false, false, true),
            // Refused everywhere.
            (Int64, Int32, false, false, false),
            (Float64, Float32, false, false, false),
            (Int32, Utf8, false, false, false),
            (Utf8, Int32, false, false, false),
            (Boolean, Int32, false, false, false),
            (Int8, UInt8, false, false, false),
            (UInt64, Int64, false, false, false),
            (Decimal128(10, 2), Decimal128(10, 3), false, false, false),
            (Decimal128(18, 2), Decimal128(9, 2), false, false, false),
            (
                ts(Microsecond, None),
                ts(Microsecond, Some("UTC")),
                false,
                false,
                false,
            ),
            (
                ts(Microsecond, None),
                ts(Nanosecond, None),
                false,
                false,
                false,
            ),
            (Date32, ts(Microsecond, Some("UTC")), false, false, false),
            (Date32, ts(Millisecond, None), false, false, false),
            (LargeUtf8, Utf8, false, false, false),
        ]
    }

    #[test]
    fn every_promotion_allowed_or_refused_per_rule_set() {
        let mut failures = Vec::new();
        for (from, to, avro, iceberg, arrow) in cases() {
            for (rules, expected) in [
                (Promotions::Avro, avro),
                (Promotions::Iceberg, iceberg),
                (Promotions::Arrow, arrow),
            ] {
                if can_promote(&from, &to, rules) != expected {
                    failures.push(format!("{from} -> {to} under {rules}: expected {expected}"));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn relation_is_the_promotion_seen_from_both_sides() {
        use DataType::*;
        assert_eq!(
            relate(&Int32, &Int64, Promotions::Avro),
            TypeRelation::Widened
        );
        assert_eq!(
            relate(&Int64, &Int32, Promotions::Avro),
            TypeRelation::Narrowed
        );
        assert_eq!(
            relate(&Int64, &Utf8, Promotions::Avro),
            TypeRelation::Incompatible
        );
        assert_eq!(
            relate(&Utf8, &Utf8View, Promotions::Iceberg),
            TypeRelation::Same
        );
    }
}

mod compatibility {
    use arrow::datatypes::{DataType, Field, Schema};
    use cdp_schema::compat::{CompatibilityMode, Direction, check};
    use cdp_schema::types::{DEFAULT_KEY, Promotions};

    use super::common::{f, list, schema, st};

    fn v1() -> Schema {
        Schema::new(vec![
            f("id", DataType::Int32, false),
            f("name", DataType::Utf8, true),
            f("plan", DataType::Utf8, false),
        ])
    }

    fn with(change: impl FnOnce(&mut Vec<Field>)) -> Schema {
        let mut fields: Vec<Field> = v1().fields().iter().map(|f| f.as_ref().clone()).collect();
        change(&mut fields);
        Schema::new(fields)
    }

    /// (case, candidate, compatible under NONE, BACKWARD, FORWARD, FULL).
    fn cases() -> Vec<(&'static str, Schema, [bool; 4])> {
        vec![
            ("identical", v1(), [true, true, true, true]),
            (
                "add optional field",
                with(|f| f.push(Field::new("country", DataType::Utf8, true))),
                [true, true, true, true],
            ),
            (
                "add required field",
                with(|f| f.push(Field::new("country", DataType::Utf8, false))),
                [true, false, true, false],
            ),
            (
                "add required field with default",
                with(|f| {
                    f.push(
                        Field::new("country", DataType::Utf8, false)
                            .with_metadata([(DEFAULT_KEY, "unknown")]),
                    )
                }),
                [true, true, true, true],
            ),
            (
                "remove optional field",
                with(|f| f.retain(|f| f.name() != "name")),
                [true, true, true, true],
            ),
            (
                "remove required field",
                with(|f| f.retain(|f| f.name() != "plan")),
                [true, true, false, false],
            ),
            (
                "widen int32 to int64",
                with(|f| f[0] = Field::new("id", DataType::Int64, false)),
                [true, true, false, false],
            ),
            (
                "narrow to int16",
                with(|f| f[0] = Field::new("id", DataType::Int16, false)),
                [true, false, true, false],
            ),
            (
                "make nullable field required",
                with(|f| f[1] = Field::new("name", DataType::Utf8, false)),
                [true, false, true, false],
            ),
            (
                "make required field nullable",
                with(|f| f[2] = Field::new("plan", DataType::Utf8, true)),
                [true, true, false, false],
            ),
            (
                "incompatible type change",
                with(|f| f[2] = Field::new("plan", DataType::Boolean, false)),
                [true, false, false, false],
            ),
            (
                "rename with alias",
                with(|f| {
                    f[2] = Field::new("tier", DataType::Utf8, false)
                        .with_metadata([(cdp_schema::types::ALIASES_KEY, "plan")])
                }),
                // The new reader finds `plan` through the alias; the old one cannot find `plan`.
                [true, true, false, false],
            ),
        ]
    }

    #[test]
    fn every_mode_against_one_earlier_version() {
        let old = v1();
        let mut failures = Vec::new();
        for (case, candidate, expected) in cases() {
            let modes = [
                (CompatibilityMode::None, expected[0]),
                (CompatibilityMode::Backward, expected[1]),
                (CompatibilityMode::BackwardTransitive, expected[1]),
                (CompatibilityMode::Forward, expected[2]),
                (CompatibilityMode::ForwardTransitive, expected[2]),
                (CompatibilityMode::Full, expected[3]),
                (CompatibilityMode::FullTransitive, expected[3]),
            ];
            for (mode, want) in modes {
                let report = check(mode, &candidate, &[(1, &old)], Promotions::Arrow);
                if report.is_compatible() != want {
                    failures.push(format!(
                        "{case} under {mode}: expected {want}, got {:?}",
                        report.violations
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    /// Chains v1 -> v2 -> v3 where v3 is compatible with v2 but not with v1, per mode.
    fn chains() -> Vec<(CompatibilityMode, CompatibilityMode, [Schema; 3])> {
        let id = || Field::new("id", DataType::Int64, false);
        vec![
            (
                CompatibilityMode::Backward,
                CompatibilityMode::BackwardTransitive,
                [
                    Schema::new(vec![id(), Field::new("name", DataType::Utf8, false)]),
                    // Dropping a field: the new reader ignores it in old data.
                    Schema::new(vec![id()]),
                    // Re-adding it as int64 with a default reads v2 data, not v1's strings.
                    Schema::new(vec![
                        id(),
                        Field::new("name", DataType::Int64, false)
                            .with_metadata([(DEFAULT_KEY, "0")]),
                    ]),
                ],
            ),
            (
                CompatibilityMode::Forward,
                CompatibilityMode::ForwardTransitive,
                [
                    Schema::new(vec![id(), Field::new("x", DataType::Utf8, true)]),
                    Schema::new(vec![id()]),
                    // v2 readers ignore `x`; v1 readers cannot read int64 as string.
                    Schema::new(vec![id(), Field::new("x", DataType::Int64, true)]),
                ],
            ),
            (
                CompatibilityMode::Full,
                CompatibilityMode::FullTransitive,
                [
                    Schema::new(vec![id(), Field::new("x", DataType::Utf8, true)]),
                    Schema::new(vec![id()]),
                    Schema::new(vec![id(), Field::new("x", DataType::Int64, true)]),
                ],
            ),
        ]
    }

    #[test]
    fn transitive_modes_check_every_earlier_version() {
        for (latest_only, transitive, [a, b, c]) in chains() {
            let history = [(1, &a), (2, &b)];
            assert!(check(latest_only, &b, &[(1, &a)], Promotions::Arrow).is_compatible());
            let report = check(latest_only, &c, &history, Promotions::Arrow);
            assert!(
                report.is_compatible(),
                "{latest_only}: {:?}",
                report.violations
            );
            assert_eq!(report.checked_versions, vec![2]);

            let report = check(transitive, &c, &history, Promotions::Arrow);
            assert!(!report.is_compatible(), "{transitive} should refuse v3");
            assert_eq!(report.checked_versions, vec![1, 2]);
            assert!(
                report.violations.iter().all(|v| v.version == 1),
                "{report:?}"
            );
            let field = if transitive == CompatibilityMode::BackwardTransitive {
                "name"
            } else {
                "x"
            };
            assert!(
                report
                    .violations
                    .iter()
                    .any(|v| v.incompatibility.path == field),
                "{report:?}"
            );
        }
    }

    #[test]
    fn nested_types_are_checked_field_by_field() {
        let old = schema(vec![
            f(
                "context",
                st(vec![f(
                    "device",
                    st(vec![f("id", DataType::Int32, false)]),
                    true,
                )]),
                true,
            ),
            f("tags", list(DataType::Int32, true), true),
        ]);
        let new = schema(vec![
            f(
                "context",
                st(vec![f(
                    "device",
                    st(vec![f("id", DataType::Int64, false)]),
                    true,
                )]),
                true,
            ),
            f("tags", list(DataType::Utf8, true), true),
        ]);
        let report = check(
            CompatibilityMode::Backward,
            &new,
            &[(1, &old)],
            Promotions::Arrow,
        );
        let paths: Vec<_> = report
            .violations
            .iter()
            .map(|v| (v.incompatibility.path.as_str(), v.direction))
            .collect();
        assert_eq!(paths, vec![("tags[]", Direction::Backward)]);
        let report = check(
            CompatibilityMode::Forward,
            &new,
            &[(1, &old)],
            Promotions::Arrow,
        );
        let paths: Vec<_> = report
            .violations
            .iter()
            .map(|v| v.incompatibility.path.as_str())
            .collect();
        assert_eq!(paths, vec!["context.device.id", "tags[]"]);
    }

    #[test]
    fn modes_parse_from_confluent_names() {
        for mode in CompatibilityMode::ALL {
            assert_eq!(mode.as_str().parse::<CompatibilityMode>().unwrap(), mode);
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{}\"", mode.as_str()));
        }
        assert!("sideways".parse::<CompatibilityMode>().is_err());
    }
}

mod diffs {
    use arrow::datatypes::{DataType, Field, Schema};
    use cdp_schema::types::{ALIASES_KEY, DATA_CLASS_KEY, Promotions, UNIT_KEY};
    use cdp_schema::{SchemaDiff, SchemaPolicy, render_report};

    use super::common::{f, list, map, schema, st};

    pub(super) fn old_events() -> Schema {
        Schema::new(vec![
            f("user_id", DataType::Int64, false),
            f("email", DataType::Utf8, true).with_metadata([(DATA_CLASS_KEY, "pii.email")]),
            f("amount", DataType::Int32, true).with_metadata([(UNIT_KEY, "cents")]),
            f("status", DataType::Utf8, true),
            f(
                "context",
                st(vec![
                    f(
                        "device",
                        st(vec![
                            f("id", DataType::Utf8, true),
                            f("type", DataType::Utf8, true),
                        ]),
                        true,
                    ),
                    f("ip", DataType::Utf8, true),
                ]),
                true,
            ),
            f(
                "items",
                list(
                    st(vec![
                        f("sku", DataType::Utf8, true),
                        f("qty", DataType::Int32, true),
                    ]),
                    true,
                ),
                true,
            ),
            f("attributes", map(DataType::Utf8, DataType::Int32), true),
            f("legacy_score", DataType::Float64, true),
        ])
    }

    pub(super) fn new_events() -> Schema {
        Schema::new(vec![
            f("customer_id", DataType::Int64, false).with_metadata([(ALIASES_KEY, "user_id")]),
            f("email_address", DataType::Utf8, true).with_metadata([(DATA_CLASS_KEY, "pii.email")]),
            f("amount", DataType::Int64, true).with_metadata([(UNIT_KEY, "dollars")]),
            f("status", DataType::Boolean, false),
            f(
                "context",
                st(vec![f(
                    "device",
                    st(vec![
                        f("id", DataType::LargeUtf8, true),
                        f("type", DataType::Utf8, true),
                        f("model", DataType::Utf8, true),
                    ]),
                    true,
                )]),
                true,
            ),
            f(
                "items",
                list(
                    st(vec![
                        f("sku", DataType::Utf8, false),
                        f("qty", DataType::Int64, true),
                    ]),
                    true,
                ),
                true,
            ),
            f("attributes", map(DataType::Utf8, DataType::Utf8), true),
            f("consent", DataType::Boolean, true),
        ])
    }

    #[test]
    fn nested_diff_finds_every_change_with_its_path() {
        let diff = SchemaDiff::between(&old_events(), &new_events(), Promotions::Arrow);
        let got: Vec<(String, &str)> = diff
            .changes
            .iter()
            .map(|c| (c.path.clone(), c.kind.label()))
            .collect();
        let want: Vec<(String, &str)> = [
            ("legacy_score", "removed"),
            ("customer_id", "renamed"),
            ("email_address", "probable rename"),
            ("amount", "semantic change"),
            ("amount", "widened"),
            ("status", "now required"),
            ("status", "type changed"),
            ("context.ip", "removed"),
            ("context.device.id", "widened"),
            ("context.device.model", "added"),
            ("items[].sku", "now required"),
            ("items[].qty", "widened"),
            ("attributes{value}", "type changed"),
            ("consent", "added"),
        ]
        .into_iter()
        .map(|(p, l)| (p.to_string(), l))
        .collect();
        assert_eq!(got, want);
    }

    /// (case, old fields, new fields, expected (path, label) changes).
    #[allow(clippy::type_complexity)]
    fn rename_cases() -> Vec<(
        &'static str,
        Vec<Field>,
        Vec<Field>,
        Vec<(&'static str, &'static str)>,
    )> {
        let id = || Field::new("id", DataType::Int64, false);
        vec![
            (
                "similar name, same type",
                vec![id(), Field::new("email", DataType::Utf8, true)],
                vec![id(), Field::new("email_address", DataType::Utf8, true)],
                vec![("email_address", "probable rename")],
            ),
            (
                "incompatible types are not a rename",
                vec![id(), Field::new("email", DataType::Utf8, true)],
                vec![id(), Field::new("email_ok", DataType::Boolean, true)],
                vec![("email", "removed"), ("email_ok", "added")],
            ),
            (
                "dissimilar names at different positions",
                vec![
                    id(),
                    Field::new("a", DataType::Utf8, true),
                    Field::new("b", DataType::Utf8, true),
                ],
                vec![
                    id(),
                    Field::new("b", DataType::Utf8, true),
                    Field::new("zzz", DataType::Int8, true),
                    Field::new("yyy", DataType::Int8, true),
                ],
                vec![("a", "removed"), ("zzz", "added"), ("yyy", "added")],
            ),
            (
                "declared alias",
                vec![id(), Field::new("zip", DataType::Utf8, true)],
                vec![
                    id(),
                    Field::new("postal_code", DataType::Utf8, false)
                        .with_metadata([(ALIASES_KEY, "zip, zipcode")]),
                ],
                vec![("postal_code", "renamed"), ("postal_code", "now required")],
            ),
        ]
    }

    #[test]
    fn renames_declared_and_probable() {
        for (case, old, new, want) in rename_cases() {
            let diff = SchemaDiff::between(&Schema::new(old), &Schema::new(new), Promotions::Arrow);
            let got: Vec<(&str, &str)> = diff
                .changes
                .iter()
                .map(|c| (c.path.as_str(), c.kind.label()))
                .collect();
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn probable_rename_carries_its_evidence() {
        let old = schema(vec![
            f("id", DataType::Int64, false),
            f("email", DataType::Utf8, true),
        ]);
        let new = schema(vec![
            f("id", DataType::Int64, false),
            f("email_address", DataType::Utf8, true),
        ]);
        let diff = SchemaDiff::between(&old, &new, Promotions::Arrow);
        let change = diff.at("email_address").unwrap();
        let cdp_schema::ChangeKind::ProbableRename { from, evidence } = &change.kind else {
            panic!("{change:?}");
        };
        assert_eq!(from, "email");
        assert!(
            evidence.contains(&"same type string".to_string()),
            "{evidence:?}"
        );
        assert!(
            evidence.iter().any(|e| e.starts_with("name similarity")),
            "{evidence:?}"
        );
        assert!(
            evidence.iter().any(|e| e.starts_with("same position")),
            "{evidence:?}"
        );
    }

    #[test]
    fn diff_round_trips_through_json() {
        let diff = SchemaDiff::between(&old_events(), &new_events(), Promotions::Arrow);
        let back: SchemaDiff = serde_json::from_str(&diff.to_json()).unwrap();
        assert_eq!(back, diff);
    }

    #[test]
    fn report_snapshot_text() {
        insta::assert_snapshot!(render_report(
            &old_events(),
            &new_events(),
            &SchemaPolicy::default()
        ));
    }

    #[test]
    fn report_snapshot_json() {
        let report = cdp_schema::DiffReport::new(
            &old_events(),
            &new_events(),
            &SchemaPolicy::default(),
            &[
                cdp_schema::Consumer::new("churn", cdp_schema::ConsumerKind::Dashboard, "events")
                    .requires("user_id")
                    .reads("context.device.id"),
            ],
        );
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        insta::assert_json_snapshot!(value);
    }

    #[test]
    fn no_change_report_is_short() {
        let s = old_events();
        insta::assert_snapshot!(render_report(&s, &s, &SchemaPolicy::default()), @r"
        No schema changes.
        Compatibility BACKWARD (arrow promotions): compatible
        ");
    }
}

mod severity {
    use arrow::datatypes::DataType;
    use cdp_schema::{ChangeCategory, SchemaPolicy, Severity};

    use super::common::{f, schema, st};

    #[test]
    fn defaults_overrides_and_categories() {
        let old = schema(vec![
            f("id", DataType::Int64, false),
            f("note", DataType::Utf8, true),
            f("context", st(vec![f("ip", DataType::Utf8, true)]), true),
        ]);
        let new = schema(vec![
            f("id", DataType::Int64, false),
            f("context", st(vec![f("ua", DataType::Utf8, true)]), true),
            f("extra", DataType::Utf8, true),
        ]);
        let policy = SchemaPolicy::default();
        let got: Vec<(String, Severity)> = policy
            .assess(&old, &new)
            .changes
            .into_iter()
            .map(|c| (c.change.path, c.severity))
            .collect();
        assert_eq!(
            got,
            vec![
                ("note".to_string(), Severity::Block),
                ("context.ua".to_string(), Severity::Block),
                ("extra".to_string(), Severity::None),
            ]
        );

        let relaxed = SchemaPolicy::default()
            .with_severity(ChangeCategory::FieldRemoved, Severity::Monitor)
            .with_override("context.*", None, Severity::None);
        let classified = relaxed.assess(&old, &new);
        assert_eq!(classified.max_severity(), Severity::Monitor);
        assert_eq!(classified.blocking().count(), 0);
    }

    #[test]
    fn policy_round_trips_through_json() {
        let text = r#"{ "compatibility": "FULL_TRANSITIVE", "promotions": "iceberg",
            "severities": { "field_removed": "patch" },
            "overrides": [ { "path": "context.*", "severity": "monitor" } ] }"#;
        let policy: SchemaPolicy = serde_json::from_str(text).unwrap();
        assert_eq!(
            policy.compatibility,
            cdp_schema::CompatibilityMode::FullTransitive
        );
        let back: SchemaPolicy =
            serde_json::from_str(&serde_json::to_string(&policy).unwrap()).unwrap();
        assert_eq!(back, policy);
        assert!(serde_json::from_str::<SchemaPolicy>(r#"{"compat": "NONE"}"#).is_err());
    }
}

mod consumers {
    use arrow::datatypes::DataType;
    use cdp_schema::types::Promotions;
    use cdp_schema::{Consumer, ConsumerKind, ImpactLevel, SchemaDiff, consumers::impact};

    use super::common::{f, schema, st};

    #[test]
    fn impact_by_field_and_requirement() {
        let old = schema(vec![
            f("email", DataType::Utf8, true),
            f("plan", DataType::Utf8, false),
            f("amount", DataType::Int32, true),
            f(
                "context",
                st(vec![
                    f("ip", DataType::Utf8, true),
                    f("ua", DataType::Utf8, true),
                ]),
                true,
            ),
            f("country", DataType::Utf8, true),
        ]);
        let new = schema(vec![
            f("email_address", DataType::Utf8, true),
            f("plan", DataType::Utf8, true),
            f("amount", DataType::Int64, true),
            f("context", st(vec![f("ua", DataType::Utf8, true)]), true),
            f("country", DataType::Utf8, true),
        ]);
        let diff = SchemaDiff::between(&old, &new, Promotions::Arrow);
        let consumers = vec![
            Consumer::new("churn", ConsumerKind::Dashboard, "users").requires("email"),
            Consumer::new("mailer", ConsumerKind::Activation, "users").reads("email"),
            Consumer::new("billing", ConsumerKind::Transform, "users")
                .requires("plan")
                .reads("amount"),
            Consumer::new("geo", ConsumerKind::Transform, "users").requires("context.ip"),
            Consumer::new("raw", ConsumerKind::Other("export".into()), "users").reads("context"),
            Consumer::new("countries", ConsumerKind::Dashboard, "users").requires("country"),
        ];
        let result = impact(&consumers, &diff);
        let levels: Vec<(&str, ImpactLevel)> = result
            .consumers
            .iter()
            .map(|c| (c.consumer.as_str(), c.level))
            .collect();
        assert_eq!(
            levels,
            vec![
                ("churn", ImpactLevel::Broken),
                ("geo", ImpactLevel::Broken),
                ("billing", ImpactLevel::Degraded),
                ("mailer", ImpactLevel::Degraded),
                ("raw", ImpactLevel::Degraded),
                ("countries", ImpactLevel::Unaffected),
            ]
        );
        assert_eq!(result.broken(), vec!["churn", "geo"]);
    }
}

mod registry {
    use std::sync::Arc;

    use arrow::datatypes::DataType;
    use cdp_schema::types::{UNIT_KEY, fingerprint};
    use cdp_schema::{CompatibilityMode, Contract, Error, FieldRule, SchemaPolicy, SchemaRegistry};

    use super::common::{f, list, map, schema, st};

    fn exercise(registry: SchemaRegistry) {
        registry
            .set_policy(
                "orders",
                SchemaPolicy::default().with_compatibility(CompatibilityMode::BackwardTransitive),
            )
            .unwrap();
        let v1 = schema(vec![
            f("id", DataType::Int64, false),
            f("name", DataType::Utf8, false),
            f(
                "context",
                st(vec![
                    f("tags", list(DataType::Utf8, true), true),
                    f("attrs", map(DataType::Utf8, DataType::Int64), true),
                ]),
                true,
            ),
            f("amount", DataType::Decimal128(10, 2), true).with_metadata([(UNIT_KEY, "EUR")]),
        ]);
        let v2 = schema(vec![
            v1.field(0).clone(),
            v1.field(2).clone(),
            v1.field(3).clone(),
        ]);
        let v3 = schema(vec![
            v1.field(0).clone(),
            f("name", DataType::Int64, false)
                .with_metadata([(cdp_schema::types::DEFAULT_KEY, "0")]),
        ]);
        let contract = Contract::new(vec![FieldRule::new("id").required()]);
        let r1 = registry
            .register_with_contract("orders", &v1, Some(contract.clone()))
            .unwrap();
        assert_eq!((r1.version, r1.created), (1, true));
        let again = registry
            .register_with_contract("orders", &v1, Some(contract.clone()))
            .unwrap();
        assert_eq!((again.version, again.created), (1, false));
        assert_eq!(registry.register("orders", &v2).unwrap().version, 2);
        // Compatible with v2, not with v1: refused under BACKWARD_TRANSITIVE.
        let err = registry.register("orders", &v3).unwrap_err();
        assert!(matches!(err, Error::Incompatible { .. }), "{err}");
        assert!(err.to_string().contains("version 1"), "{err}");
        registry
            .set_policy(
                "orders",
                SchemaPolicy::default().with_compatibility(CompatibilityMode::Backward),
            )
            .unwrap();
        assert_eq!(registry.register("orders", &v3).unwrap().version, 3);

        let got = registry.get("orders", 1).unwrap();
        assert_eq!(got.schema, v1);
        assert_eq!(got.contract, Some(contract));
        assert_eq!(got.fingerprint, fingerprint(&v1));
        assert_eq!(registry.latest("orders").unwrap().unwrap().version, 3);
        let found = registry.by_fingerprint(&fingerprint(&v2)).unwrap();
        assert_eq!(found.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2]);
        assert!(matches!(registry.get("orders", 9), Err(Error::NotFound(_))));
        assert_eq!(registry.subjects().unwrap(), vec!["orders".to_string()]);
        let diff = registry.diff("orders", 1, 2).unwrap();
        assert_eq!(diff.changes.len(), 1);
    }

    #[test]
    fn memory_registry() {
        exercise(SchemaRegistry::in_memory());
    }

    #[test]
    fn sqlite_registry_persists_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        exercise(SchemaRegistry::sqlite(&path).unwrap());
        let reopened = SchemaRegistry::sqlite(&path).unwrap();
        assert_eq!(reopened.versions("orders").unwrap().len(), 3);
        assert_eq!(
            reopened.policy("orders").unwrap().compatibility,
            CompatibilityMode::Backward
        );
        let v1 = reopened.get("orders", 1).unwrap();
        assert_eq!(fingerprint(&v1.schema), v1.fingerprint);
    }

    #[test]
    fn concurrent_registrations_get_distinct_versions() {
        let registry = SchemaRegistry::in_memory().with_default_policy(
            SchemaPolicy::default().with_compatibility(CompatibilityMode::None),
        );
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let registry = registry.clone();
                std::thread::spawn(move || {
                    let s = Arc::new(arrow::datatypes::Schema::new(vec![f(
                        &format!("c{i}"),
                        DataType::Int64,
                        true,
                    )]));
                    registry.register("s", &s).unwrap().version
                })
            })
            .collect();
        let mut versions: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        versions.sort_unstable();
        assert_eq!(versions, (1..=8).collect::<Vec<_>>());
    }
}

mod guard {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use cdp_core::memory::{MemoryDestination, MemorySource};
    use cdp_core::{MemoryStateStore, Pipeline, StateStore};
    use cdp_schema::{
        BreakingAction, ChangeKind, Consumer, ConsumerKind, ConsumerRegistry, GuardAction,
        SchemaGuard, SchemaRegistry, Severity,
    };

    fn users(email_column: &str, ids: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(email_column, DataType::Utf8, true),
            Field::new("plan", DataType::Utf8, true),
        ]));
        let emails: Vec<String> = ids.iter().map(|i| format!("u{i}@example.com")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(emails)),
                Arc::new(StringArray::from(vec!["pro"; ids.len()])),
            ],
        )
        .unwrap()
    }

    /// Two batches with `email`, then the source renames it to `email_address`.
    fn renaming_source() -> (MemorySource, usize) {
        let batches = vec![
            users("email", &[1, 2, 3]),
            users("email", &[4, 5, 6]),
            users("email_address", &[7, 8]),
            users("email_address", &[9, 10]),
        ];
        let produced = batches.iter().map(RecordBatch::num_rows).sum();
        (MemorySource::new("users", batches), produced)
    }

    fn consumers() -> Arc<ConsumerRegistry> {
        let registry = ConsumerRegistry::new();
        registry
            .register(
                Consumer::new("churn-dashboard", ConsumerKind::Dashboard, "users")
                    .requires("email"),
            )
            .unwrap();
        registry
            .register(
                Consumer::new("plan-report", ConsumerKind::Dashboard, "users").requires("plan"),
            )
            .unwrap();
        Arc::new(registry)
    }

    fn dead_letter_rows(dlq: &cdp_core::memory::MemoryHandle) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for batch in dlq.batches() {
            let reason = cdp_core::record::string_column(&batch.data, "reason").unwrap();
            let payload = cdp_core::record::string_column(&batch.data, "payload").unwrap();
            for i in 0..batch.num_rows() {
                out.push((reason.value(i).to_string(), payload.value(i).to_string()));
            }
        }
        out
    }

    fn assert_rename_classified(guard: &cdp_schema::GuardHandle, action: GuardAction) {
        let events = guard.events();
        assert_eq!(events.len(), 2, "{events:#?}");
        assert_eq!(events[0].action, GuardAction::Registered);
        let event = &events[1];
        assert_eq!(event.action, action);
        let rename = event
            .changes
            .changes
            .iter()
            .find(|c| c.change.path == "email_address")
            .expect("rename found");
        assert!(
            matches!(&rename.change.kind, ChangeKind::ProbableRename { from, .. } if from == "email")
        );
        assert_eq!(rename.severity, Severity::Block);
        assert_eq!(event.impact.broken(), vec!["churn-dashboard"]);
        assert!(event.impact.degraded().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rename_mid_run_quarantines_rows_and_loses_nothing() {
        let (source, produced) = renaming_source();
        let guard = SchemaGuard::new(SchemaRegistry::in_memory())
            .with_consumers(consumers())
            .on_breaking(BreakingAction::Quarantine);
        let decisions = guard.handle();
        let sink = MemoryDestination::new("warehouse");
        let dlq = MemoryDestination::new("dead-letters");
        let (delivered, dead) = (sink.handle(), dlq.handle());

        let report = Pipeline::builder("rename-quarantine")
            .source(source)
            .transform(guard)
            .destination(sink)
            .dead_letter(dlq)
            .commit_every_rows(1)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();

        assert_rename_classified(&decisions, GuardAction::Quarantined);
        assert_eq!(delivered.row_count(), 6);
        let letters = dead_letter_rows(&dead);
        assert_eq!(letters.len(), 4);
        assert_eq!(delivered.row_count() + letters.len(), produced);
        assert_eq!(decisions.quarantined_rows(), 4);
        for (reason, payload) in &letters {
            assert!(
                reason.contains("`email` probably renamed to `email_address`"),
                "{reason}"
            );
            assert!(reason.contains("churn-dashboard"), "{reason}");
            assert!(payload.contains("email_address"), "{payload}");
        }
        assert_eq!(report.rows_out(), 6);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rename_mid_run_blocks_the_stream_then_a_split_rerun_delivers_the_rest() {
        let (source, produced) = renaming_source();
        let registry = SchemaRegistry::in_memory();
        let state: Arc<dyn StateStore> = Arc::new(MemoryStateStore::new());
        let guard = SchemaGuard::new(registry.clone()).with_consumers(consumers());
        let decisions = guard.handle();
        let sink = MemoryDestination::new("warehouse");
        let dlq = MemoryDestination::new("dead-letters");
        let (delivered, dead) = (sink.handle(), dlq.handle());

        let err = Pipeline::builder("rename-block")
            .source(source.clone())
            .transform(guard)
            .destination(sink.clone())
            .dead_letter(dlq.clone())
            .state_store(state.clone())
            .commit_every_rows(1)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("stream `users`"), "{message}");
        assert!(
            message.contains("`email` probably renamed to `email_address`"),
            "{message}"
        );
        assert!(
            message.contains("broken consumers: churn-dashboard"),
            "{message}"
        );
        assert_rename_classified(&decisions, GuardAction::Blocked);
        // The batches before the rename are committed; the blocked one is not.
        assert_eq!(delivered.row_count(), 6);
        assert!(dead_letter_rows(&dead).is_empty());
        let committed = state.load("rename-block").await.unwrap();
        assert_eq!(committed.cursor("users"), Some(&serde_json::json!(2)));

        // Someone decides: keep the old column and add the new one. The re-run resumes
        // from the committed checkpoint and delivers the rest.
        let guard = SchemaGuard::new(registry.clone())
            .with_consumers(consumers())
            .on_breaking(BreakingAction::SplitColumn);
        let decisions = guard.handle();
        Pipeline::builder("rename-block")
            .source(source)
            .transform(guard)
            .destination(sink)
            .dead_letter(dlq)
            .state_store(state)
            .commit_every_rows(1)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert_eq!(decisions.events()[0].action, GuardAction::Split);
        assert_eq!(delivered.row_count(), produced);
        assert!(dead_letter_rows(&dead).is_empty());
        let last = delivered.batches().pop().unwrap();
        let user: Vec<_> = last
            .user_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(user, vec!["id", "email", "plan", "email_address"]);
        assert_eq!(last.data.column_by_name("email").unwrap().null_count(), 2);
        assert_eq!(registry.versions("users").unwrap().len(), 2);
        // The destination was prepared again for the evolved schema.
        let prepared = delivered.prepared();
        assert!(prepared.len() >= 2, "{prepared:?}");
    }

    fn typed(amount: ArrayRef) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("amount", amount.data_type().clone(), true),
        ]));
        let n = amount.len() as i64;
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..n)), amount],
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn type_change_splits_the_column_stitch_style() {
        let batches = vec![
            typed(Arc::new(Int64Array::from(vec![100, 250]))),
            typed(Arc::new(StringArray::from(vec!["1.5 EUR", "n/a", "3"]))),
        ];
        let guard =
            SchemaGuard::new(SchemaRegistry::in_memory()).on_breaking(BreakingAction::SplitColumn);
        let sink = MemoryDestination::new("warehouse");
        let delivered = sink.handle();
        Pipeline::builder("split")
            .source(MemorySource::new("payments", batches))
            .transform(guard)
            .destination(sink)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert_eq!(delivered.row_count(), 5);
        let last = delivered.batches().pop().unwrap();
        let schema = last.user_schema();
        assert_eq!(
            schema.field_with_name("amount").unwrap().data_type(),
            &DataType::Int64
        );
        assert_eq!(
            schema
                .field_with_name("amount__string")
                .unwrap()
                .data_type(),
            &DataType::Utf8
        );
        assert_eq!(last.data.column_by_name("amount").unwrap().null_count(), 3);
        let split = cdp_core::record::string_column(&last.data, "amount__string").unwrap();
        assert_eq!(split.value(1), "n/a");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn additive_change_is_registered_and_destinations_evolve() {
        let base = users("email", &[1, 2]);
        let mut fields: Vec<Field> = base
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("country", DataType::Utf8, true));
        let mut columns = base.columns().to_vec();
        columns.push(Arc::new(StringArray::from(vec![Some("DE"), None])));
        let wider = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();

        let registry = SchemaRegistry::in_memory();
        let guard = SchemaGuard::new(registry.clone()).with_consumers(consumers());
        let decisions = guard.handle();
        let sink = MemoryDestination::new("warehouse");
        let delivered = sink.handle();
        Pipeline::builder("additive")
            .source(MemorySource::new("users", vec![base, wider.clone(), wider]))
            .transform(guard)
            .destination(sink)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert_eq!(delivered.row_count(), 6);
        let events = decisions.events();
        assert!(
            events.iter().all(|e| e.action == GuardAction::Registered),
            "{events:#?}"
        );
        assert_eq!(registry.versions("users").unwrap().len(), 2);
        let prepared = delivered.prepared();
        assert!(
            prepared
                .iter()
                .any(|s| s.schema.column_with_name("country").is_some())
        );
        let versions: Vec<_> = delivered
            .batches()
            .iter()
            .map(|b| b.meta.schema_version)
            .collect();
        assert_eq!(versions, vec![Some(1), Some(2), Some(2)]);
    }
}

mod contracts {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use cdp_core::Pipeline;
    use cdp_core::memory::{MemoryDestination, MemorySource};
    use cdp_schema::TypeFamily;
    use cdp_schema::contract::{Contract, ContractCheck, FieldRule, RuleKind};
    use chrono::{TimeZone, Utc};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("plan", DataType::Utf8, true),
            Field::new("age", DataType::Utf8, true),
            Field::new("fax", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![
                    Some(1),
                    None,
                    Some(3),
                    Some(4),
                    Some(5),
                ])),
                Arc::new(StringArray::from(vec![
                    Some("free"),
                    Some("pro"),
                    Some("gold"),
                    None,
                    Some("pro"),
                ])),
                Arc::new(StringArray::from(vec![
                    Some("31"),
                    Some("40"),
                    Some("x"),
                    Some("22"),
                    None,
                ])),
                Arc::new(StringArray::from(vec![
                    None,
                    None,
                    None,
                    Some("+4930"),
                    None,
                ])),
            ],
        )
        .unwrap()
    }

    fn contract() -> Contract {
        Contract::new(vec![
            FieldRule::new("id").required().of_type(TypeFamily::Integer),
            FieldRule::new("plan").one_of(["free", "pro"]),
            FieldRule::new("age").of_type(TypeFamily::Integer),
            FieldRule::new("fax").deprecated(
                Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
                Some(Utc.with_ymd_and_hms(2024, 6, 30, 0, 0, 0).unwrap()),
                Some("phone".into()),
            ),
        ])
    }

    #[test]
    fn row_level_violations() {
        let during = Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap();
        let v = contract().validate(&batch(), during).unwrap();
        let got: Vec<(usize, &str, RuleKind)> = v
            .violations
            .iter()
            .map(|v| (v.row, v.field.as_str(), v.rule))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "id", RuleKind::Missing),
                (2, "plan", RuleKind::NotAllowed),
                (2, "age", RuleKind::WrongType),
            ]
        );
        assert_eq!(v.valid_rows(), 3);
        assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
        assert!(v.warnings[0].contains("use `phone`"));

        let after = Utc.with_ymd_and_hms(2024, 7, 1, 0, 0, 0).unwrap();
        let v = contract().validate(&batch(), after).unwrap();
        assert!(
            v.violations
                .iter()
                .any(|x| x.row == 3 && x.rule == RuleKind::Removed)
        );
        assert_eq!(v.valid_rows(), 2);
    }

    #[test]
    fn contract_json_shape() {
        let text = r#"{ "fields": [ { "path": "id", "required": true, "type": "integer" },
            { "path": "plan", "allowed_values": ["free", "pro"] } ], "allow_undeclared": false }"#;
        let c: Contract = serde_json::from_str(text).unwrap();
        assert_eq!(c.fields[0].family, Some(TypeFamily::Integer));
        let v = c.validate(&batch(), Utc::now()).unwrap();
        assert!(
            v.violations
                .iter()
                .any(|x| x.rule == RuleKind::Undeclared && x.field == "age")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn violating_rows_are_dead_lettered_and_valid_rows_continue() {
        let check = ContractCheck::new(contract());
        let stats = check.stats();
        let sink = MemoryDestination::new("warehouse");
        let dlq = MemoryDestination::new("dlq");
        let (delivered, dead) = (sink.handle(), dlq.handle());
        Pipeline::builder("contract")
            .source(MemorySource::new("users", vec![batch()]))
            .transform(check)
            .destination(sink)
            .dead_letter(dlq)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        // Now is after the fax removal date: rows 1, 2 and 3 break a rule.
        assert_eq!(delivered.row_count(), 2);
        assert_eq!(dead.row_count(), 3);
        assert_eq!(
            stats
                .invalid_rows
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }
}

mod inference {
    use arrow::datatypes::{DataType, TimeUnit};
    use cdp_schema::infer::{Fallback, InferOptions, infer, infer_json_lines};
    use serde_json::json;

    use super::common::{f, list, st};

    /// (case, samples, expected type of field `v`, nullable).
    fn cases() -> Vec<(&'static str, Vec<serde_json::Value>, DataType, bool)> {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        vec![
            (
                "int + int",
                vec![json!({"v": 1}), json!({"v": 2})],
                DataType::Int64,
                false,
            ),
            (
                "int + float",
                vec![json!({"v": 1}), json!({"v": 2.5})],
                DataType::Float64,
                false,
            ),
            (
                "beyond i64",
                vec![json!({"v": 1}), json!({"v": u64::MAX})],
                DataType::Float64,
                false,
            ),
            (
                "null + string",
                vec![json!({"v": null}), json!({"v": "a"})],
                DataType::Utf8,
                true,
            ),
            (
                "missing in one",
                vec![json!({"v": true}), json!({})],
                DataType::Boolean,
                true,
            ),
            ("only nulls", vec![json!({"v": null})], DataType::Null, true),
            (
                "timestamps",
                vec![
                    json!({"v": "2024-05-01T10:00:00Z"}),
                    json!({"v": "2024-05-02T00:00:00+02:00"}),
                ],
                ts,
                false,
            ),
            (
                "timestamp + text",
                vec![json!({"v": "2024-05-01T10:00:00Z"}), json!({"v": "soon"})],
                DataType::Utf8,
                false,
            ),
            (
                "bool + int falls back",
                vec![json!({"v": true}), json!({"v": 1})],
                DataType::Utf8,
                false,
            ),
            (
                "text + object falls back",
                vec![json!({"v": "a"}), json!({"v": {"x": 1}})],
                DataType::Utf8,
                false,
            ),
            (
                "arrays unify elements",
                vec![json!({"v": [1, 2]}), json!({"v": [1.5]}), json!({"v": []})],
                list(DataType::Float64, true),
                false,
            ),
            (
                "objects merge fields",
                vec![
                    json!({"v": {"id": "a"}}),
                    json!({"v": {"id": "b", "model": "x"}}),
                ],
                st(vec![
                    f("id", DataType::Utf8, false),
                    f("model", DataType::Utf8, true),
                ]),
                false,
            ),
        ]
    }

    #[test]
    fn unification_rules() {
        for (case, samples, want, nullable) in cases() {
            let inferred = infer(&samples, &InferOptions::default()).unwrap();
            let field = inferred.schema.field_with_name("v").unwrap();
            assert_eq!(field.data_type(), &want, "{case}");
            assert_eq!(field.is_nullable(), nullable, "{case}");
            let falls_back = case.contains("falls back");
            assert_eq!(
                !inferred.conflicts.is_empty(),
                falls_back,
                "{case}: {:?}",
                inferred.conflicts
            );
        }
    }

    #[test]
    fn conflicts_name_their_path_or_fail_by_choice() {
        let samples = [
            json!({"context": {"device": {"id": 7}}}),
            json!({"context": {"device": {"id": "a7"}}}),
        ];
        let inferred = infer(&samples, &InferOptions::default()).unwrap();
        assert_eq!(inferred.conflicts[0].path, "context.device.id");
        assert_eq!(inferred.conflicts[0].seen, vec!["integer", "string"]);
        let strict = InferOptions {
            fallback: Fallback::Error,
            ..InferOptions::default()
        };
        let err = infer(&samples, &strict).unwrap_err().to_string();
        assert!(
            err.contains("context.device.id") && err.contains("integer, string"),
            "{err}"
        );
        let no_ts = InferOptions {
            detect_timestamps: false,
            ..InferOptions::default()
        };
        let t = infer(&[json!({"t": "2024-05-01T10:00:00Z"})], &no_ts).unwrap();
        assert_eq!(t.schema.field(0).data_type(), &DataType::Utf8);
    }

    #[test]
    fn inferred_schema_decodes_the_samples() {
        let text = "{\"id\": 1, \"email\": \"a@x.io\", \"score\": 1, \"context\": {\"ip\": \"1.2.3.4\"}}\n\
                    \n\
                    {\"id\": 2, \"score\": 0.5, \"tags\": [\"a\", \"b\"], \"context\": {\"ip\": null}}\n";
        let inferred = infer_json_lines(text, &InferOptions::default()).unwrap();
        assert_eq!(inferred.samples, 2);
        let names: Vec<_> = inferred
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, vec!["id", "email", "score", "context", "tags"]);
        let mut decoder = arrow::json::ReaderBuilder::new(std::sync::Arc::new(inferred.schema))
            .build_decoder()
            .unwrap();
        decoder.decode(text.as_bytes()).unwrap();
        let batch = decoder.flush().unwrap().unwrap();
        assert_eq!(batch.num_rows(), 2);
    }
}

mod tracking {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use cdp_core::Pipeline;
    use cdp_core::memory::{MemoryDestination, MemorySource};
    use cdp_schema::TypeFamily;
    use cdp_schema::contract::RuleKind;
    use cdp_schema::tracking_plan::{
        EventPlan, PlanAction, PropertyRule, TrackingPlan, TrackingPlanCheck,
    };

    fn events() -> RecordBatch {
        let text = |v: Vec<Option<&str>>| -> ArrayRef { Arc::new(StringArray::from(v)) };
        let props = StructArray::from(vec![
            (
                Arc::new(Field::new("order_id", DataType::Utf8, true)),
                text(vec![Some("o1"), None, None, None, None]),
            ),
            (
                Arc::new(Field::new("revenue", DataType::Utf8, true)),
                text(vec![Some("10.5"), Some("abc"), None, None, None]),
            ),
            (
                Arc::new(Field::new("plan", DataType::Utf8, true)),
                text(vec![None, None, Some("pro"), None, None]),
            ),
            (
                Arc::new(Field::new("extra", DataType::Utf8, true)),
                text(vec![Some("x"), None, None, Some("y"), None]),
            ),
        ]);
        let schema = Schema::new(vec![
            Field::new("event", DataType::Utf8, true),
            Field::new("properties", props.data_type().clone(), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                text(vec![
                    Some("Order Completed"),
                    Some("Order Completed"),
                    Some("Signed Up"),
                    Some("Mystery"),
                    None,
                ]),
                Arc::new(props),
            ],
        )
        .unwrap()
    }

    fn plan() -> TrackingPlan {
        TrackingPlan::default()
            .event(
                "Order Completed",
                EventPlan::new(vec![
                    PropertyRule::required("order_id", TypeFamily::String),
                    PropertyRule::optional("revenue", TypeFamily::Float),
                ])
                .strict(),
            )
            .event(
                "Signed Up",
                EventPlan::new(vec![PropertyRule::required("plan", TypeFamily::String)]),
            )
    }

    #[test]
    fn violations_and_unplanned_events_are_counted() {
        let v = plan().validate(&events()).unwrap();
        let got: Vec<(usize, &str, RuleKind)> = v
            .violations
            .iter()
            .map(|x| (x.row, x.field.as_str(), x.rule))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "extra", RuleKind::UnplannedProperty),
                (1, "order_id", RuleKind::Missing),
                (1, "revenue", RuleKind::WrongType),
                (3, "event", RuleKind::UnplannedEvent),
                (4, "event", RuleKind::UnplannedEvent),
            ]
        );
        let oc = v.counts["Order Completed"];
        assert_eq!((oc.rows, oc.violations, oc.blocked), (2, 2, 2));
        assert_eq!(v.counts["Mystery"].unplanned, 1);
        assert_eq!(v.counts["(none)"].unplanned, 1);
        assert_eq!(v.counts["Signed Up"].violations, 0);
        assert_eq!(v.pass.true_count(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocked_events_are_dead_lettered_by_policy() {
        for (unplanned, delivered_rows) in [(PlanAction::Allow, 3), (PlanAction::Block, 1)] {
            let plan = TrackingPlan {
                on_unplanned_event: unplanned,
                ..plan()
            };
            let check = TrackingPlanCheck::new(plan);
            let stats = check.stats();
            let sink = MemoryDestination::new("warehouse");
            let dlq = MemoryDestination::new("dlq");
            let (delivered, dead) = (sink.handle(), dlq.handle());
            Pipeline::builder("plan")
                .source(MemorySource::new("tracks", vec![events()]))
                .transform(check)
                .destination(sink)
                .dead_letter(dlq)
                .build()
                .unwrap()
                .run()
                .await
                .unwrap();
            assert_eq!(delivered.row_count(), delivered_rows);
            assert_eq!(delivered.row_count() + dead.row_count(), 5);
            assert_eq!(stats.counts()["Order Completed"].blocked, 2);
        }
    }

    #[test]
    fn plan_json_shape() {
        let text = r#"{ "events": { "Order Completed": { "properties": [
              { "name": "order_id", "required": true, "type": "string" } ],
              "allow_unplanned_properties": false } },
            "on_unplanned_event": "block" }"#;
        let plan: TrackingPlan = serde_json::from_str(text).unwrap();
        assert_eq!(plan.on_violation, PlanAction::Block);
        assert_eq!(plan.event_column, "event");
        assert!(!plan.events["Order Completed"].allow_unplanned_properties);
    }
}

mod lineage {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use cdp_core::Pipeline;
    use cdp_core::memory::{MemoryDestination, MemorySource};
    use cdp_core::transforms::{CastType, FieldRule, NormalizeConfig};
    use cdp_schema::{LineageGraph, LineageMapping, SchemaGuard, SchemaRegistry};

    fn raw() -> RecordBatch {
        let text = |v: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(v)) };
        let device = StructArray::from(vec![(
            Arc::new(Field::new("id", DataType::Utf8, true)),
            text(vec!["d1", "d2"]),
        )]);
        let context = StructArray::from(vec![(
            Arc::new(Field::new("device", device.data_type().clone(), true)),
            Arc::new(device) as ArrayRef,
        )]);
        let properties = StructArray::from(vec![(
            Arc::new(Field::new("revenue", DataType::Utf8, true)),
            text(vec!["10.5", "oops"]),
        )]);
        let schema = Schema::new(vec![
            Field::new("userId", DataType::Utf8, true),
            Field::new("context", context.data_type().clone(), true),
            Field::new("properties", properties.data_type().clone(), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                text(vec!["u1", "u2"]),
                Arc::new(context),
                Arc::new(properties),
            ],
        )
        .unwrap()
    }

    fn config(fields: Vec<FieldRule>) -> NormalizeConfig {
        NormalizeConfig {
            fields,
            keep_unmapped: false,
            drop: Vec::new(),
            default_region: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn curated_fields_know_where_they_came_from() {
        let graph = LineageGraph::new();
        let curated = LineageMapping::new(config(vec![
            FieldRule::new("userId", "user_id"),
            FieldRule::new("context.device.id", "device_id"),
            FieldRule::new("properties.revenue", "revenue").cast(CastType::Float64),
        ]))
        .unwrap()
        .named("curate_events")
        .into_stream("events_curated")
        .with_lineage(graph.clone());
        let mart = LineageMapping::new(config(vec![
            FieldRule::new("user_id", "customer"),
            FieldRule::new("revenue", "revenue"),
        ]))
        .unwrap()
        .named("mart_orders")
        .into_stream("orders_mart")
        .with_lineage(graph.clone());
        let sink = MemoryDestination::new("warehouse");
        let dlq = MemoryDestination::new("dlq");
        let (delivered, dead) = (sink.handle(), dlq.handle());
        Pipeline::builder("layers")
            .source(MemorySource::new("events", vec![raw(), raw()]))
            .transform(SchemaGuard::new(SchemaRegistry::in_memory()))
            .transform(curated)
            .transform(mart)
            .destination(sink)
            .dead_letter(dlq)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        // "oops" is no float: that row is dead-lettered by the mapping, the other continues.
        assert_eq!(delivered.row_count(), 2);
        assert_eq!(dead.row_count(), 2);
        let batch = &delivered.batches()[0];
        assert_eq!(&*batch.stream, "orders_mart");

        let revenue = graph.producers_of("events_curated", "revenue");
        assert_eq!(revenue.len(), 1);
        assert_eq!(revenue[0].source_fields, vec!["properties.revenue"]);
        assert_eq!(revenue[0].operation, "extract, cast to float64");
        assert_eq!(revenue[0].transform, "curate_events");
        assert_eq!(revenue[0].source_schema_version, Some(1));
        assert_eq!(
            graph.producers_of("events_curated", "user_id")[0].operation,
            "rename"
        );

        let upstream: Vec<_> = graph
            .upstream("orders_mart", "customer")
            .into_iter()
            .map(|e| (e.source_stream, e.source_fields[0].clone()))
            .collect();
        assert_eq!(
            upstream,
            vec![
                ("events_curated".into(), "user_id".into()),
                ("events".into(), "userId".into())
            ]
        );
        let reached: Vec<_> = graph
            .downstream("events", "context")
            .into_iter()
            .map(|e| (e.target_stream, e.target_field))
            .collect();
        assert_eq!(
            reached,
            vec![("events_curated".to_string(), "device_id".to_string())]
        );
        // Recorded once per schema version, not per batch.
        assert_eq!(graph.edges().len(), 5);
        let json: serde_json::Value = serde_json::from_str(&graph.to_json()).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 5);
    }
}

mod laws {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};
    use cdp_schema::compat::{CompatibilityMode, check};
    use cdp_schema::types::{Promotions, can_promote, fingerprint};
    use cdp_schema::{SchemaDiff, SchemaPolicy};
    use proptest::prelude::*;

    fn pool() -> Vec<DataType> {
        use DataType::*;
        vec![
            Null,
            Boolean,
            Int8,
            Int16,
            Int32,
            Int64,
            UInt8,
            UInt32,
            UInt64,
            Float16,
            Float32,
            Float64,
            Utf8,
            LargeUtf8,
            Binary,
            LargeBinary,
            Date32,
            Date64,
            Decimal128(9, 2),
            Decimal128(18, 2),
            Decimal128(12, 4),
            Decimal256(40, 2),
            Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
        ]
    }

    #[test]
    fn promotions_never_go_both_ways_except_avro_text_and_bytes() {
        for a in pool() {
            for b in pool() {
                for rules in [Promotions::Iceberg, Promotions::Arrow] {
                    assert!(
                        !(can_promote(&a, &b, rules) && can_promote(&b, &a, rules)),
                        "{a} <-> {b} under {rules}"
                    );
                }
            }
        }
    }

    fn schema_strategy() -> impl Strategy<Value = Schema> {
        let types = pool();
        prop::collection::vec((0..types.len(), any::<bool>()), 0..8).prop_map(move |cols| {
            Schema::new(
                cols.into_iter()
                    .enumerate()
                    .map(|(i, (t, nullable))| {
                        Field::new(format!("c{i}"), types[t].clone(), nullable)
                    })
                    .collect::<Vec<_>>(),
            )
        })
    }

    proptest! {
        #[test]
        fn a_schema_is_compatible_with_itself_in_every_mode(s in schema_strategy()) {
            prop_assert!(SchemaDiff::between(&s, &s, Promotions::Arrow).is_empty());
            for mode in CompatibilityMode::ALL {
                prop_assert!(check(mode, &s, &[(1, &s)], Promotions::Arrow).is_compatible());
            }
            prop_assert_eq!(fingerprint(&s), fingerprint(&s.clone()));
        }

        #[test]
        fn adding_a_nullable_field_is_full_compatible_and_flows(s in schema_strategy()) {
            let mut fields: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(Field::new("added", DataType::Utf8, true));
            let wider = Schema::new(fields);
            prop_assert!(check(CompatibilityMode::FullTransitive, &wider, &[(1, &s)], Promotions::Arrow).is_compatible());
            let classified = SchemaPolicy::default().assess(&s, &wider);
            prop_assert_eq!(classified.changes.len(), 1);
            prop_assert_eq!(classified.max_severity(), cdp_schema::Severity::None);
            prop_assert_ne!(fingerprint(&s), fingerprint(&wider));
            let _ = Arc::new(wider);
        }
    }
}

mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<cdp_schema::SchemaRegistry>();
        assert_send_sync::<cdp_schema::MemoryStore>();
        assert_send_sync::<cdp_schema::registry::SqliteStore>();
        assert_send_sync::<cdp_schema::SchemaGuard>();
        assert_send_sync::<cdp_schema::GuardHandle>();
        assert_send_sync::<cdp_schema::ConsumerRegistry>();
        assert_send_sync::<cdp_schema::ContractCheck>();
        assert_send_sync::<cdp_schema::TrackingPlanCheck>();
        assert_send_sync::<cdp_schema::LineageMapping>();
        assert_send_sync::<cdp_schema::LineageGraph>();
        assert_send_sync::<cdp_schema::Error>();
    }
}

mod registered_contracts {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use cdp_core::Pipeline;
    use cdp_core::memory::{MemoryDestination, MemorySource};
    use cdp_schema::{Contract, ContractFlowCheck, FieldRule, SchemaGuard, SchemaRegistry};

    fn users(plans: &[&str], country: bool) -> RecordBatch {
        let mut fields = vec![
            Field::new("id", DataType::Int64, false),
            Field::new("plan", DataType::Utf8, true),
        ];
        let ids: Vec<i64> = (0..plans.len() as i64).collect();
        let mut columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(plans.to_vec())),
        ];
        if country {
            fields.push(Field::new("country", DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from(vec!["DE"; plans.len()])));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    fn registry_with_contract() -> SchemaRegistry {
        let registry = SchemaRegistry::in_memory();
        let contract = Contract::new(vec![
            FieldRule::new("id").required(),
            FieldRule::new("plan").required().one_of(["free", "pro"]),
        ]);
        registry
            .register_with_contract("users", &users(&[], false).schema(), Some(contract))
            .unwrap();
        registry
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guard_enforces_the_registered_contract_across_versions() {
        let registry = registry_with_contract();
        let guard = SchemaGuard::new(registry.clone()).enforce_contracts();
        let handle = guard.handle();
        let sink = MemoryDestination::new("warehouse");
        let dlq = MemoryDestination::new("dlq");
        let (delivered, dead) = (sink.handle(), dlq.handle());
        let batches = vec![
            users(&["free", "gold", "pro"], false),
            // Additive change: v2 is registered with the same contract.
            users(&["pro", "platinum"], true),
        ];
        Pipeline::builder("contracted")
            .source(MemorySource::new("users", batches))
            .transform(guard)
            .destination(sink)
            .dead_letter(dlq)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert_eq!(delivered.row_count(), 3);
        assert_eq!(dead.row_count(), 2);
        let v2 = registry.get("users", 2).unwrap();
        assert_eq!(v2.contract, registry.get("users", 1).unwrap().contract);
        assert_eq!(
            handle.contract_stats().invalid_rows.load(Ordering::Relaxed),
            2
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn flow_without_a_contracted_field_is_refused_before_data_moves() {
        let registry = SchemaRegistry::in_memory();
        let contract = Contract::new(vec![FieldRule::new("email").required()]);
        registry
            .register_with_contract("users", &users(&[], false).schema(), Some(contract))
            .unwrap();
        let sink = MemoryDestination::new("warehouse");
        let delivered = sink.handle();
        let err = Pipeline::builder("refused")
            .source(MemorySource::new("users", vec![users(&["pro"], false)]))
            .destination(sink)
            .check(ContractFlowCheck::new(registry))
            .build()
            .unwrap()
            .run()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field `email` is required by the contract of version 1"),
            "{err}"
        );
        assert!(err.contains("warehouse"), "{err}");
        assert_eq!(delivered.row_count(), 0);
    }
}

mod report_with_consumers {
    use arrow::datatypes::DataType;
    use cdp_schema::{Consumer, ConsumerKind, SchemaPolicy, render_report_with_consumers};

    use super::common::{f, schema};

    #[test]
    fn rename_report_names_broken_consumers() {
        let old = schema(vec![
            f("id", DataType::Int64, false),
            f("email", DataType::Utf8, true),
            f("amount", DataType::Int32, true),
        ]);
        let new = schema(vec![
            f("id", DataType::Int64, false),
            f("email_address", DataType::Utf8, true),
            f("amount", DataType::Int64, true),
            f("country", DataType::Utf8, true),
        ]);
        let consumers = [
            Consumer::new("churn-dashboard", ConsumerKind::Dashboard, "users").requires("email"),
            Consumer::new("revenue-sync", ConsumerKind::Activation, "users")
                .requires("id")
                .reads("amount"),
            Consumer::new("id-export", ConsumerKind::Transform, "users").requires("id"),
        ];
        insta::assert_snapshot!(render_report_with_consumers(
            &old,
            &new,
            &SchemaPolicy::default(),
            &consumers
        ));
    }
}
