//! Structural diffs between two Arrow schemas, down to nested fields.
//!
//! Fields are matched by name at each level. A new field whose [`ALIASES_KEY`] metadata
//! names an unmatched old field is an explicit rename. Among the fields left, a removed and
//! an added field of compatible type at the same level are reported as a *probable* rename
//! with the evidence (type, position, name similarity) so a person can confirm it; the rest
//! are removals and additions. Matched fields are compared for type (by the promotion
//! rules), nullability and semantic metadata (unit, format, data class), recursing into
//! structs (`context.device.id`), list elements (`items[].sku`) and map keys and values
//! (`attributes{key}`, `attributes{value}`).
//!
//! [`ALIASES_KEY`]: crate::types::ALIASES_KEY

pub mod render;

use arrow::datatypes::{DataType, Field, Fields, Schema};
use serde::{Deserialize, Serialize};

use crate::types::{self, Promotions, SEMANTIC_KEYS, TypeRelation, type_name};

/// One change between two schemas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Full path of the field in the new schema (in the old one for removals).
    pub path: String,
    /// What changed.
    #[serde(flatten)]
    pub kind: ChangeKind,
}

/// What changed about a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeKind {
    /// A field appeared.
    Added {
        /// Its type.
        data_type: String,
        /// Whether it may be null.
        nullable: bool,
    },
    /// A field disappeared.
    Removed {
        /// Its type.
        data_type: String,
        /// Whether it could be null.
        nullable: bool,
    },
    /// A field was renamed and the new field declares the old name as an alias.
    Renamed {
        /// The old path.
        from: String,
    },
    /// A field disappeared and one of compatible type appeared at the same level; probably
    /// a rename, but nothing declares it.
    ProbableRename {
        /// The old path.
        from: String,
        /// Why it looks like a rename.
        evidence: Vec<String>,
    },
    /// The type was promoted (old data reads as the new type).
    Widened {
        /// The old type.
        from: String,
        /// The new type.
        to: String,
    },
    /// The type narrowed (old data may not fit the new type).
    Narrowed {
        /// The old type.
        from: String,
        /// The new type.
        to: String,
    },
    /// The type changed to one neither side reads as the other.
    TypeChanged {
        /// The old type.
        from: String,
        /// The new type.
        to: String,
    },
    /// The field may now be null.
    NullabilityRelaxed,
    /// The field may no longer be null.
    NullabilityTightened,
    /// A declared meaning of the field (unit, format, data class) changed.
    SemanticChanged {
        /// `unit`, `format` or `data class`.
        attribute: String,
        /// The old value, if any.
        from: Option<String>,
        /// The new value, if any.
        to: Option<String>,
    },
}

impl ChangeKind {
    /// A short label: `added`, `removed`, `renamed`, `probable rename`, `widened`, ….
    pub fn label(&self) -> &'static str {
        match self {
            ChangeKind::Added { .. } => "added",
            ChangeKind::Removed { .. } => "removed",
            ChangeKind::Renamed { .. } => "renamed",
            ChangeKind::ProbableRename { .. } => "probable rename",
            ChangeKind::Widened { .. } => "widened",
            ChangeKind::Narrowed { .. } => "narrowed",
            ChangeKind::TypeChanged { .. } => "type changed",
            ChangeKind::NullabilityRelaxed => "now nullable",
            ChangeKind::NullabilityTightened => "now required",
            ChangeKind::SemanticChanged { .. } => "semantic change",
        }
    }

    /// The old path of a renamed field.
    pub fn renamed_from(&self) -> Option<&str> {
        match self {
            ChangeKind::Renamed { from } | ChangeKind::ProbableRename { from, .. } => Some(from),
            _ => None,
        }
    }
}

impl Change {
    /// The paths of the old schema this change takes away or alters: the old path for
    /// renames, the path itself otherwise (additions alter no old path).
    pub fn old_path(&self) -> Option<&str> {
        match &self.kind {
            ChangeKind::Added { .. } => None,
            kind => Some(kind.renamed_from().unwrap_or(&self.path)),
        }
    }

    /// One line describing the change, without severity.
    pub fn describe(&self) -> String {
        let path = &self.path;
        match &self.kind {
            ChangeKind::Added {
                data_type,
                nullable,
            } => format!("`{path}` added ({data_type}, {})", null_word(*nullable)),
            ChangeKind::Removed {
                data_type,
                nullable,
            } => format!(
                "`{path}` removed (was {data_type}, {})",
                null_word(*nullable)
            ),
            ChangeKind::Renamed { from } => {
                format!("`{from}` renamed to `{path}` (declared alias)")
            }
            ChangeKind::ProbableRename { from, evidence } => format!(
                "`{from}` probably renamed to `{path}` ({})",
                evidence.join("; ")
            ),
            ChangeKind::Widened { from, to } => format!("`{path}` widened {from} -> {to}"),
            ChangeKind::Narrowed { from, to } => format!("`{path}` narrowed {from} -> {to}"),
            ChangeKind::TypeChanged { from, to } => {
                format!("`{path}` changed type {from} -> {to}")
            }
            ChangeKind::NullabilityRelaxed => format!("`{path}` may now be null"),
            ChangeKind::NullabilityTightened => format!("`{path}` may no longer be null"),
            ChangeKind::SemanticChanged {
                attribute,
                from,
                to,
            } => format!(
                "`{path}` {attribute} changed {} -> {}",
                from.as_deref().unwrap_or("(none)"),
                to.as_deref().unwrap_or("(none)")
            ),
        }
    }
}

fn null_word(nullable: bool) -> &'static str {
    if nullable { "nullable" } else { "required" }
}

/// All changes from one schema to another, in schema order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaDiff {
    /// The changes.
    pub changes: Vec<Change>,
}

impl SchemaDiff {
    /// The changes from `old` to `new`, judging types by `rules`.
    pub fn between(old: &Schema, new: &Schema, rules: Promotions) -> SchemaDiff {
        let mut changes = Vec::new();
        diff_fields(old.fields(), new.fields(), "", rules, &mut changes);
        SchemaDiff { changes }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// The change at `path`, if any.
    pub fn at(&self, path: &str) -> Option<&Change> {
        self.changes.iter().find(|c| c.path == path)
    }

    /// The diff as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

/// Joins a parent path and a child name.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn diff_fields(old: &Fields, new: &Fields, prefix: &str, rules: Promotions, out: &mut Vec<Change>) {
    let mut old_matched = vec![false; old.len()];
    let mut new_matched: Vec<Option<usize>> = vec![None; new.len()];
    for (ni, nf) in new.iter().enumerate() {
        if let Some(oi) = old.iter().position(|of| of.name() == nf.name()) {
            old_matched[oi] = true;
            new_matched[ni] = Some(oi);
        }
    }
    let mut renames: Vec<(usize, usize, Option<Vec<String>>)> = Vec::new();
    for (ni, nf) in new.iter().enumerate() {
        if new_matched[ni].is_some() {
            continue;
        }
        let alias = types::aliases(nf).into_iter().find_map(|alias| {
            old.iter()
                .position(|of| of.name() == alias)
                .filter(|oi| !old_matched[*oi])
        });
        if let Some(oi) = alias {
            old_matched[oi] = true;
            new_matched[ni] = Some(oi);
            renames.push((oi, ni, None));
        }
    }
    for (oi, ni, evidence) in probable_renames(old, new, &old_matched, &new_matched, rules) {
        old_matched[oi] = true;
        new_matched[ni] = Some(oi);
        renames.push((oi, ni, Some(evidence)));
    }

    for (oi, of) in old.iter().enumerate() {
        if !old_matched[oi] {
            out.push(Change {
                path: join(prefix, of.name()),
                kind: ChangeKind::Removed {
                    data_type: type_name(of.data_type()),
                    nullable: of.is_nullable(),
                },
            });
        }
    }
    for (ni, nf) in new.iter().enumerate() {
        let path = join(prefix, nf.name());
        let Some(oi) = new_matched[ni] else {
            out.push(Change {
                path,
                kind: ChangeKind::Added {
                    data_type: type_name(nf.data_type()),
                    nullable: nf.is_nullable(),
                },
            });
            continue;
        };
        if let Some((_, _, evidence)) = renames.iter().find(|(o, n, _)| *o == oi && *n == ni) {
            let from = join(prefix, old[oi].name());
            let kind = match evidence {
                None => ChangeKind::Renamed { from },
                Some(evidence) => ChangeKind::ProbableRename {
                    from,
                    evidence: evidence.clone(),
                },
            };
            out.push(Change {
                path: path.clone(),
                kind,
            });
        }
        diff_field(&old[oi], nf, &path, rules, out);
    }
}

/// Pairs removed and added fields that look like renames, best evidence first.
fn probable_renames(
    old: &Fields,
    new: &Fields,
    old_matched: &[bool],
    new_matched: &[Option<usize>],
    rules: Promotions,
) -> Vec<(usize, usize, Vec<String>)> {
    let removed: Vec<usize> = (0..old.len()).filter(|i| !old_matched[*i]).collect();
    let added: Vec<usize> = (0..new.len())
        .filter(|i| new_matched[*i].is_none())
        .collect();
    let only_pair = removed.len() == 1 && added.len() == 1;
    let mut candidates: Vec<(f64, usize, usize, Vec<String>)> = Vec::new();
    for &oi in &removed {
        for &ni in &added {
            let (of, nf) = (&old[oi], &new[ni]);
            let (ot, nt) = (of.data_type(), nf.data_type());
            let mut evidence = Vec::new();
            let mut score = 0.0;
            if types::is_nested(ot) || types::is_nested(nt) {
                if types::TypeFamily::of(ot) != types::TypeFamily::of(nt) {
                    continue;
                }
                evidence.push(format!("both {}", types::TypeFamily::of(ot)));
            } else {
                match types::relate(ot, nt, rules) {
                    TypeRelation::Same => evidence.push(format!("same type {}", type_name(nt))),
                    TypeRelation::Widened | TypeRelation::Narrowed => {
                        score -= 0.1;
                        evidence.push(format!(
                            "compatible types {} -> {}",
                            type_name(ot),
                            type_name(nt)
                        ));
                    }
                    TypeRelation::Incompatible => continue,
                }
            }
            let similarity =
                strsim::jaro_winkler(&of.name().to_lowercase(), &nf.name().to_lowercase());
            score += similarity;
            let same_position = oi == ni;
            if same_position {
                score += 0.3;
                evidence.push(format!("same position ({})", ni + 1));
            }
            if similarity >= 0.6 {
                evidence.push(format!("name similarity {similarity:.2}"));
            }
            if only_pair {
                score += 0.2;
                evidence.push("the only field removed and the only one added here".into());
            }
            // Being the only pair is supporting evidence, never enough on its own.
            if similarity >= 0.7 || same_position {
                candidates.push((score, oi, ni, evidence));
            }
        }
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut taken_old = Vec::new();
    let mut taken_new = Vec::new();
    let mut pairs = Vec::new();
    for (_, oi, ni, evidence) in candidates {
        if taken_old.contains(&oi) || taken_new.contains(&ni) {
            continue;
        }
        taken_old.push(oi);
        taken_new.push(ni);
        pairs.push((oi, ni, evidence));
    }
    pairs
}

fn diff_field(old: &Field, new: &Field, path: &str, rules: Promotions, out: &mut Vec<Change>) {
    match (old.is_nullable(), new.is_nullable()) {
        (false, true) => out.push(Change {
            path: path.to_string(),
            kind: ChangeKind::NullabilityRelaxed,
        }),
        (true, false) => out.push(Change {
            path: path.to_string(),
            kind: ChangeKind::NullabilityTightened,
        }),
        _ => {}
    }
    for (key, attribute) in SEMANTIC_KEYS {
        let (from, to) = (old.metadata().get(key), new.metadata().get(key));
        if from != to {
            out.push(Change {
                path: path.to_string(),
                kind: ChangeKind::SemanticChanged {
                    attribute: attribute.to_string(),
                    from: from.cloned(),
                    to: to.cloned(),
                },
            });
        }
    }
    diff_type(old.data_type(), new.data_type(), path, rules, out);
}

fn diff_type(old: &DataType, new: &DataType, path: &str, rules: Promotions, out: &mut Vec<Change>) {
    let (lo, ln) = (types::logical(old), types::logical(new));
    let type_change = |kind: fn(String, String) -> ChangeKind| Change {
        path: path.to_string(),
        kind: kind(type_name(old), type_name(new)),
    };
    match (lo, ln) {
        (DataType::Struct(of), DataType::Struct(nf)) => diff_fields(of, nf, path, rules, out),
        (DataType::Map(oe, _), DataType::Map(ne, _)) => match (oe.data_type(), ne.data_type()) {
            (DataType::Struct(okv), DataType::Struct(nkv)) if okv.len() == 2 && nkv.len() == 2 => {
                diff_field(&okv[0], &nkv[0], &format!("{path}{{key}}"), rules, out);
                diff_field(&okv[1], &nkv[1], &format!("{path}{{value}}"), rules, out);
            }
            _ => out.push(type_change(|from, to| ChangeKind::TypeChanged { from, to })),
        },
        _ => {
            if let (Some(oe), Some(ne)) = (types::list_element(lo), types::list_element(ln)) {
                // The container first (list -> large list), then the elements.
                if !types::same_logical(&strip_element(lo), &strip_element(ln)) {
                    let kind = match types::relate(lo, ln, rules) {
                        TypeRelation::Widened => |from, to| ChangeKind::Widened { from, to },
                        TypeRelation::Narrowed => |from, to| ChangeKind::Narrowed { from, to },
                        _ => |from, to| ChangeKind::TypeChanged { from, to },
                    };
                    out.push(type_change(kind));
                }
                diff_field(oe, ne, &format!("{path}[]"), rules, out);
                return;
            }
            if types::is_nested(lo) || types::is_nested(ln) {
                if lo != ln {
                    out.push(type_change(|from, to| ChangeKind::TypeChanged { from, to }));
                }
                return;
            }
            match types::relate(lo, ln, rules) {
                TypeRelation::Same => {}
                TypeRelation::Widened => {
                    out.push(type_change(|from, to| ChangeKind::Widened { from, to }))
                }
                TypeRelation::Narrowed => {
                    out.push(type_change(|from, to| ChangeKind::Narrowed { from, to }))
                }
                TypeRelation::Incompatible => {
                    out.push(type_change(|from, to| ChangeKind::TypeChanged { from, to }))
                }
            }
        }
    }
}

/// A list type with a placeholder element, so containers compare on their own.
fn strip_element(t: &DataType) -> DataType {
    let item = std::sync::Arc::new(Field::new("item", DataType::Null, true));
    match t {
        DataType::List(_) => DataType::List(item),
        DataType::LargeList(_) => DataType::LargeList(item),
        DataType::ListView(_) => DataType::ListView(item),
        DataType::LargeListView(_) => DataType::LargeListView(item),
        DataType::FixedSizeList(_, n) => DataType::FixedSizeList(item, *n),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_beats_probable_rename() {
        let old = Schema::new(vec![Field::new("user_id", DataType::Int64, false)]);
        let new = Schema::new(vec![
            Field::new("customer_id", DataType::Int64, false)
                .with_metadata([(types::ALIASES_KEY, "user_id")]),
        ]);
        let diff = SchemaDiff::between(&old, &new, Promotions::Arrow);
        assert_eq!(
            diff.changes,
            vec![Change {
                path: "customer_id".into(),
                kind: ChangeKind::Renamed {
                    from: "user_id".into()
                }
            }]
        );
    }
}
