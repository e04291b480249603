//! The fields a read added or widened, kept in the stream's cursor so a resumed read
//! decodes with the schema the interrupted one had reached.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::{Value, json};

use super::path::{Path, Segment};

/// Changes to a base schema, in the order they were made. A path set twice keeps its first
/// place, so replaying the list rebuilds the schema field for field.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Deltas(Vec<(Path, DataType)>);

impl Deltas {
    /// Records that the field at `path` has type `data_type` (added or widened).
    pub(crate) fn set(&mut self, path: Path, data_type: DataType) {
        match self.0.iter_mut().find(|(p, _)| *p == path) {
            Some(entry) => entry.1 = data_type,
            None => self.0.push((path, data_type)),
        }
    }

    /// The schema these changes make of `base`. A change that no longer fits the base (its
    /// parent is gone or is no longer an object) is skipped: the record that needs it will
    /// evolve the schema again.
    pub(crate) fn apply(&self, base: &SchemaRef) -> SchemaRef {
        let mut schema = base.clone();
        for (path, data_type) in &self.0 {
            if let Some(next) = set_type(&schema, path, data_type.clone()) {
                schema = next;
            }
        }
        schema
    }

    /// The cursor form: `[{"path": ["properties", "plan"], "type": "utf8"}, …]`.
    pub(crate) fn to_json(&self) -> Value {
        Value::Array(
            self.0
                .iter()
                .filter_map(|(path, data_type)| {
                    Some(json!({"path": path.to_json(), "type": type_to_json(data_type)?}))
                })
                .collect(),
        )
    }

    /// Reads the cursor form; entries it does not understand are skipped (a warning says so).
    pub(crate) fn from_json(value: &Value) -> Deltas {
        let mut deltas = Deltas::default();
        for entry in value.as_array().into_iter().flatten() {
            let path = entry.get("path").and_then(Path::from_json);
            let data_type = entry.get("type").and_then(type_from_json);
            match (path, data_type) {
                (Some(path), Some(data_type)) => deltas.set(path, data_type),
                _ => {
                    tracing::warn!(%entry, "ignoring a schema change in the cursor that is not understood")
                }
            }
        }
        deltas
    }
}

/// The type of the field at `path`, if there is one.
#[cfg(test)]
pub(crate) fn get_type(schema: &Schema, path: &Path) -> Option<DataType> {
    let mut current = DataType::Struct(schema.fields().clone());
    for segment in &path.0 {
        current = match (segment, &current) {
            (Segment::Field(name), DataType::Struct(fields)) => {
                fields.find(name)?.1.data_type().clone()
            }
            (Segment::Item, DataType::List(item)) => item.data_type().clone(),
            _ => return None,
        };
    }
    Some(current)
}

/// `schema` with the field at `path` set to `data_type`: added at the end of its parent if
/// missing, retyped (keeping nullability and metadata) if present. `None` when the parent
/// does not exist or is not an object.
pub(crate) fn set_type(schema: &SchemaRef, path: &Path, data_type: DataType) -> Option<SchemaRef> {
    let root = DataType::Struct(schema.fields().clone());
    let DataType::Struct(fields) = set_in(&root, &path.0, data_type)? else {
        return None;
    };
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

fn set_in(current: &DataType, segments: &[Segment], data_type: DataType) -> Option<DataType> {
    let Some((first, rest)) = segments.split_first() else {
        return Some(data_type);
    };
    match (first, current) {
        (Segment::Field(name), DataType::Struct(fields)) => {
            let mut children: Vec<Arc<Field>> = fields.iter().cloned().collect();
            match children.iter().position(|f| f.name() == name) {
                Some(i) => {
                    let child = set_in(children[i].data_type(), rest, data_type)?;
                    children[i] = Arc::new(children[i].as_ref().clone().with_data_type(child));
                }
                None if rest.is_empty() => {
                    children.push(Arc::new(Field::new(name, data_type, true)));
                }
                None => return None,
            }
            Some(DataType::Struct(Fields::from(children)))
        }
        (Segment::Item, DataType::List(item)) => {
            let child = set_in(item.data_type(), rest, data_type)?;
            Some(DataType::List(Arc::new(
                item.as_ref().clone().with_data_type(child),
            )))
        }
        _ => None,
    }
}

fn type_to_json(data_type: &DataType) -> Option<Value> {
    Some(match data_type {
        DataType::Null => json!("null"),
        DataType::Boolean => json!("boolean"),
        DataType::Int64 => json!("int64"),
        DataType::Float64 => json!("float64"),
        DataType::Utf8 => json!("utf8"),
        DataType::Date32 => json!("date32"),
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "us",
                TimeUnit::Nanosecond => "ns",
            };
            json!({"timestamp": {"unit": unit, "tz": tz.as_deref()}})
        }
        DataType::List(item) => json!({"list": type_to_json(item.data_type())?}),
        DataType::Struct(fields) => {
            let fields = fields
                .iter()
                .map(|f| Some(json!({"name": f.name(), "type": type_to_json(f.data_type())?})))
                .collect::<Option<Vec<_>>>()?;
            json!({ "struct": fields })
        }
        _ => return None,
    })
}

fn type_from_json(value: &Value) -> Option<DataType> {
    if let Some(name) = value.as_str() {
        return Some(match name {
            "null" => DataType::Null,
            "boolean" => DataType::Boolean,
            "int64" => DataType::Int64,
            "float64" => DataType::Float64,
            "utf8" => DataType::Utf8,
            "date32" => DataType::Date32,
            _ => return None,
        });
    }
    if let Some(timestamp) = value.get("timestamp") {
        let unit = match timestamp.get("unit")?.as_str()? {
            "s" => TimeUnit::Second,
            "ms" => TimeUnit::Millisecond,
            "us" => TimeUnit::Microsecond,
            "ns" => TimeUnit::Nanosecond,
            _ => return None,
        };
        let tz = match timestamp.get("tz") {
            None | Some(Value::Null) => None,
            Some(tz) => Some(tz.as_str()?.into()),
        };
        return Some(DataType::Timestamp(unit, tz));
    }
    if let Some(item) = value.get("list") {
        return Some(DataType::List(Arc::new(Field::new_list_field(
            type_from_json(item)?,
            true,
        ))));
    }
    if let Some(fields) = value.get("struct") {
        let fields = fields
            .as_array()?
            .iter()
            .map(|f| {
                let name = f.get("name")?.as_str()?;
                Some(Field::new(name, type_from_json(f.get("type")?)?, true))
            })
            .collect::<Option<Vec<_>>>()?;
        return Some(DataType::Struct(Fields::from(fields)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> SchemaRef {
        let properties = Fields::from(vec![Field::new("seats", DataType::Int64, true)]);
        Arc::new(Schema::new(vec![
            Field::new("event", DataType::Utf8, true),
            Field::new("properties", DataType::Struct(properties), true),
        ]))
    }

    #[test]
    fn deltas_rebuild_the_schema_from_their_cursor_form() {
        let base = schema();
        let mut deltas = Deltas::default();
        let plan = Path::default().child("properties").child("plan");
        deltas.set(plan.clone(), DataType::Utf8);
        deltas.set(
            Path::default().child("properties").child("seats"),
            DataType::Float64,
        );
        deltas.set(
            Path::default().child("at"),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        );
        let evolved = deltas.apply(&base);
        assert_eq!(get_type(&evolved, &plan), Some(DataType::Utf8));
        assert_eq!(
            get_type(
                &evolved,
                &Path::default().child("properties").child("seats")
            ),
            Some(DataType::Float64)
        );
        let again = Deltas::from_json(&deltas.to_json());
        assert_eq!(again, deltas);
        assert_eq!(again.apply(&base), evolved);
        // A change under a field that is not an object is skipped.
        let mut odd = Deltas::default();
        odd.set(Path::default().child("event").child("x"), DataType::Utf8);
        assert_eq!(odd.apply(&base), base);
    }
}
