//! The masking plan of one schema: which method runs at which path. The method runs on the
//! child array at its path and [`rewrite`](crate::rewrite) rebuilds the containers above it
//! around the result, so everything else in them survives untouched (same buffers, no
//! copy).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cdp_core::arrow::array::{Array, ArrayRef, new_null_array};
use cdp_core::arrow::datatypes::{DataType, FieldRef, Schema};

use super::{FieldAction, Keys, Method};
use crate::class::{DataClass, with_class};
use crate::error::{Error, Result};
use crate::path::{NestedPath, children};
use crate::rewrite::{Rewrite, Rows, Visit, rewrite_column};

/// What happens at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Action {
    pub(crate) class: DataClass,
    /// `None`: the values pass; only a leaf's class is recorded.
    pub(crate) method: Option<Method>,
    /// The policy rule behind it, for error messages.
    pub(crate) rule: Option<String>,
}

/// The actions for one input schema, by path, and the containers to descend into.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    actions: HashMap<NestedPath, Action>,
    /// The paths of `actions` in the order they were added.
    order: Vec<NestedPath>,
    /// Every container above an action: only these are rebuilt.
    touched: HashSet<NestedPath>,
}

impl Plan {
    /// Adds an action; an action on a container covers (and replaces) those inside it.
    pub(crate) fn insert(&mut self, path: NestedPath, action: Action) {
        if path.ancestors().any(|a| {
            self.actions
                .get(&a)
                .is_some_and(|covering| covering.method.is_some())
        }) {
            return;
        }
        if action.method.is_some() {
            self.actions
                .retain(|p, _| !p.starts_with(&path) || *p == path);
            let actions = &self.actions;
            self.order.retain(|p| actions.contains_key(p));
        }
        self.touched.extend(path.ancestors());
        if self.actions.insert(path.clone(), action).is_none() {
            self.order.push(path);
        }
    }

    /// The actions as [`FieldAction`]s, in the order they were added.
    pub(crate) fn listed(&self) -> Vec<FieldAction> {
        self.order
            .iter()
            .filter_map(|path| {
                self.actions.get(path).map(|a| FieldAction {
                    field: path.to_string(),
                    class: a.class,
                    method: a.method.clone(),
                })
            })
            .collect()
    }

    /// Whether nothing changes.
    pub(crate) fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Checks every method fits the field it applies to.
    pub(crate) fn check(&self, schema: &Schema, keys: &Keys) -> Result<()> {
        for field in schema.fields() {
            self.check_field(field, NestedPath::column(field.name()), keys)?;
        }
        Ok(())
    }

    fn check_field(&self, field: &FieldRef, path: NestedPath, keys: &Keys) -> Result<()> {
        if let Some(Action {
            method: Some(method),
            rule,
            ..
        }) = self.actions.get(&path)
        {
            return method
                .check(&path.to_string(), field.data_type(), keys)
                .map_err(|e| match (e, rule) {
                    (
                        Error::Masking {
                            field,
                            method,
                            message,
                        },
                        Some(rule),
                    ) => Error::Masking {
                        field,
                        method,
                        message: format!("{message} (rule {rule})"),
                    },
                    (other, _) => other,
                });
        }
        if self.touched.contains(&path) {
            for (name, child, _) in children(field).unwrap_or_default() {
                let child_path = name.map_or_else(|| path.item(), |n| path.child(n));
                self.check_field(&child, child_path, keys)?;
            }
        }
        Ok(())
    }

    /// The field (and, given one, the column) a top-level `field` becomes; `None` when it is
    /// dropped.
    pub(crate) fn rebuild(
        &self,
        field: &FieldRef,
        column: Option<&ArrayRef>,
        keys: &Keys,
    ) -> Result<Option<(FieldRef, Option<ArrayRef>)>> {
        rewrite_column(field, column, &PlanRewrite { plan: self, keys })
    }
}

struct PlanRewrite<'a> {
    plan: &'a Plan,
    keys: &'a Keys,
}

impl Rewrite for PlanRewrite<'_> {
    fn visit(
        &self,
        path: &NestedPath,
        field: &FieldRef,
        array: Option<&ArrayRef>,
        _rows: &Rows,
    ) -> Result<Visit> {
        let action = self
            .plan
            .actions
            .get(path)
            .or_else(|| null_keys(self.plan, path, field));
        if let Some(action) = action {
            return Ok(match apply(field, array, path, action, self.keys)? {
                Some((field, array)) => Visit::Replace(field, array),
                None => Visit::Drop,
            });
        }
        Ok(if self.plan.touched.contains(path) {
            Visit::Descend
        } else {
            Visit::Keep
        })
    }
}

/// A map whose keys are to be nulled: map keys cannot be null, so the whole map is.
fn null_keys<'a>(plan: &'a Plan, path: &NestedPath, field: &FieldRef) -> Option<&'a Action> {
    let DataType::Map(entries, _) = field.data_type() else {
        return None;
    };
    let DataType::Struct(kv) = entries.data_type() else {
        return None;
    };
    let keys = path.item().child(kv.first()?.name());
    plan.actions
        .get(&keys)
        .filter(|a| a.method == Some(Method::Null))
}

fn apply(
    field: &FieldRef,
    array: Option<&ArrayRef>,
    path: &NestedPath,
    action: &Action,
    keys: &Keys,
) -> Result<Option<(FieldRef, Option<ArrayRef>)>> {
    let is_leaf = children(field).is_none();
    let Some(method) = &action.method else {
        // Only leaves record their class: a container's class is what lies inside it.
        let out = if is_leaf {
            Arc::new(with_class(field.as_ref().clone(), action.class))
        } else {
            field.clone()
        };
        return Ok(Some((out, array.cloned())));
    };
    let Some(out_field) = method.output_field(field, action.class) else {
        return Ok(None);
    };
    let out = match array {
        None => None,
        // On a container only what reveals nothing applies: the whole value becomes null.
        Some(array) if !is_leaf => match method {
            Method::Null => Some(new_null_array(field.data_type(), array.len())),
            other => {
                return Err(Error::masking(
                    path.to_string(),
                    other,
                    format!(
                        "`{path}` is {}, not a value; mask the fields inside it, or use `null` or \
                         `drop`",
                        field.data_type()
                    ),
                ));
            }
        },
        Some(array) => match method.apply(&path.to_string(), array, keys)? {
            Some(masked) => Some(masked),
            None => return Ok(None),
        },
    };
    Ok(Some((Arc::new(out_field), out)))
}
