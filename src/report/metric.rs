//! One number out of a typed report by its path (`totals.rps`,
//! `latency.corrected.p99_us`, `status_codes.UNAVAILABLE`): a serde `Serializer` that walks
//! the report's own `Serialize` and keeps only the value at the path. Thresholds are judged
//! with it — on the typed report, never on a JSON copy of it — and any numeric field of the
//! report can be named, exactly as it appears in the JSON.

use std::fmt;

use serde::ser::{self, Impossible, Serialize};

/// The number at `path` in `value`, if there is one there.
pub fn number_at<T: Serialize>(value: &T, path: &[String]) -> Option<f64> {
    value.serialize(Finder { path }).ok().flatten()
}

/// Nothing at the path, or not a number. Never shown: `number_at` gives `None`.
#[derive(Debug)]
pub struct Miss;

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not found")
    }
}

impl std::error::Error for Miss {}

impl ser::Error for Miss {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Miss
    }
}

/// Walks toward `path`; `Ok(None)` where the path leads nowhere.
struct Finder<'p> {
    path: &'p [String],
}

impl Finder<'_> {
    fn leaf(self, v: f64) -> Result<Option<f64>, Miss> {
        Ok(self.path.is_empty().then_some(v))
    }
}

macro_rules! numbers {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<Option<f64>, Miss> {
            self.leaf(v as f64)
        }
    )*};
}

macro_rules! nothing {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, _: $t) -> Result<Option<f64>, Miss> {
            Ok(None)
        }
    )*};
}

impl<'p> ser::Serializer for Finder<'p> {
    type Ok = Option<f64>;
    type Error = Miss;
    type SerializeSeq = Fields<'p>;
    type SerializeTuple = Fields<'p>;
    type SerializeTupleStruct = Fields<'p>;
    type SerializeTupleVariant = Impossible<Option<f64>, Miss>;
    type SerializeMap = Fields<'p>;
    type SerializeStruct = Fields<'p>;
    type SerializeStructVariant = Impossible<Option<f64>, Miss>;

    numbers!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_f32: f32, serialize_f64: f64);
    nothing!(serialize_bool: bool, serialize_char: char, serialize_str: &str,
        serialize_bytes: &[u8], serialize_unit_struct: &'static str);

    fn serialize_none(self) -> Result<Option<f64>, Miss> {
        Ok(None)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<Option<f64>, Miss> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Option<f64>, Miss> {
        Ok(None)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Option<f64>, Miss> {
        Ok(None)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Option<f64>, Miss> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Option<f64>, Miss> {
        Ok(None)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Fields<'p>, Miss> {
        Ok(Fields::new(self.path))
    }
    fn serialize_tuple(self, _: usize) -> Result<Fields<'p>, Miss> {
        Ok(Fields::new(self.path))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Fields<'p>, Miss> {
        Ok(Fields::new(self.path))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Miss> {
        Err(Miss)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Fields<'p>, Miss> {
        Ok(Fields::new(self.path))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Fields<'p>, Miss> {
        Ok(Fields::new(self.path))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Miss> {
        Err(Miss)
    }
}

/// The members of a struct, map or list, looking for the path's next segment (a field name,
/// a map key, or a list index).
struct Fields<'p> {
    path: &'p [String],
    index: usize,
    key_matches: bool,
    found: Option<f64>,
}

impl<'p> Fields<'p> {
    fn new(path: &'p [String]) -> Self {
        Self {
            path,
            index: 0,
            key_matches: false,
            found: None,
        }
    }

    fn member<T: ?Sized + Serialize>(&mut self, matches: bool, v: &T) {
        if self.found.is_none() && matches {
            if let Some((_, rest)) = self.path.split_first() {
                self.found = v.serialize(Finder { path: rest }).ok().flatten();
            }
        }
    }

    fn element<T: ?Sized + Serialize>(&mut self, v: &T) {
        let matches = self
            .path
            .first()
            .is_some_and(|s| *s == self.index.to_string());
        self.index += 1;
        self.member(matches, v);
    }
}

impl ser::SerializeStruct for Fields<'_> {
    type Ok = Option<f64>;
    type Error = Miss;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), Miss> {
        let matches = self.path.first().is_some_and(|s| s == key);
        self.member(matches, v);
        Ok(())
    }
    fn end(self) -> Result<Option<f64>, Miss> {
        Ok(self.found)
    }
}

impl ser::SerializeMap for Fields<'_> {
    type Ok = Option<f64>;
    type Error = Miss;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Miss> {
        self.key_matches = match self.path.first() {
            Some(want) => key.serialize(KeyIs(want)).unwrap_or(false),
            None => false,
        };
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Miss> {
        let matches = self.key_matches;
        self.member(matches, v);
        Ok(())
    }
    fn end(self) -> Result<Option<f64>, Miss> {
        Ok(self.found)
    }
}

macro_rules! elements {
    ($($tr:ident :: $f:ident),*) => {$(
        impl ser::$tr for Fields<'_> {
            type Ok = Option<f64>;
            type Error = Miss;
            fn $f<T: ?Sized + Serialize>(&mut self, v: &T) -> Result<(), Miss> {
                self.element(v);
                Ok(())
            }
            fn end(self) -> Result<Option<f64>, Miss> {
                Ok(self.found)
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

/// Whether a map key (a string in every map of the report) is the one looked for.
struct KeyIs<'a>(&'a str);

macro_rules! not_a_string_key {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, _: $t) -> Result<bool, Miss> {
            Ok(false)
        }
    )*};
}

impl ser::Serializer for KeyIs<'_> {
    type Ok = bool;
    type Error = Miss;
    type SerializeSeq = Impossible<bool, Miss>;
    type SerializeTuple = Impossible<bool, Miss>;
    type SerializeTupleStruct = Impossible<bool, Miss>;
    type SerializeTupleVariant = Impossible<bool, Miss>;
    type SerializeMap = Impossible<bool, Miss>;
    type SerializeStruct = Impossible<bool, Miss>;
    type SerializeStructVariant = Impossible<bool, Miss>;

    fn serialize_str(self, v: &str) -> Result<bool, Miss> {
        Ok(v == self.0)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<bool, Miss> {
        Ok(variant == self.0)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<bool, Miss> {
        v.serialize(self)
    }
    not_a_string_key!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16,
        serialize_i32: i32, serialize_i64: i64, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_f32: f32, serialize_f64: f64,
        serialize_char: char, serialize_bytes: &[u8], serialize_unit_struct: &'static str);
    fn serialize_none(self) -> Result<bool, Miss> {
        Ok(false)
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<bool, Miss> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<bool, Miss> {
        Ok(false)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<bool, Miss> {
        Ok(false)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Miss> {
        Err(Miss)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Miss> {
        Err(Miss)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Miss> {
        Err(Miss)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Miss> {
        Err(Miss)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Miss> {
        Err(Miss)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Miss> {
        Err(Miss)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Miss> {
        Err(Miss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every numeric leaf of `v` with its path.
    fn leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, f64)>) {
        match v {
            Value::Number(n) => out.push((path.clone(), n.as_f64().unwrap())),
            Value::Object(o) => {
                for (k, x) in o {
                    path.push(k.clone());
                    leaves(x, path, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(i.to_string());
                    leaves(x, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    #[derive(serde::Serialize)]
    struct Inner {
        p99_us: u64,
        ratio: Option<f64>,
        name: &'static str,
    }

    #[derive(serde::Serialize)]
    struct Outer {
        totals: Inner,
        skipped: Option<Inner>,
        codes: std::collections::BTreeMap<String, u64>,
        list: Vec<Inner>,
        #[serde(skip_serializing_if = "Option::is_none")]
        absent: Option<u64>,
    }

    #[test]
    fn every_numeric_leaf_of_the_json_is_found_with_its_value_and_nothing_else_is() {
        let o = Outer {
            totals: Inner {
                p99_us: 1500,
                ratio: Some(0.25),
                name: "x",
            },
            skipped: None,
            codes: [("OK".to_string(), 7), ("UNAVAILABLE".to_string(), 2)].into(),
            list: vec![Inner {
                p99_us: 3,
                ratio: None,
                name: "y",
            }],
            absent: None,
        };
        let json = serde_json::to_value(&o).unwrap();
        let mut all = Vec::new();
        leaves(&json, &mut Vec::new(), &mut all);
        assert_eq!(all.len(), 5);
        for (path, value) in all {
            assert_eq!(number_at(&o, &path), Some(value), "{path:?}");
        }
        let p = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        for missing in [
            "totals.name",
            "totals",
            "skipped.p99_us",
            "totals.ratio.x",
            "codes.CANCELLED",
            "list.1.p99_us",
            "absent",
            "nope",
        ] {
            assert_eq!(number_at(&o, &p(missing)), None, "{missing}");
        }
    }
}
