//! `JSON.parse` without a reviver, built straight from serde_json's parser.
//!
//! Boa 0.22's `JSON.parse` checks the text with serde_json, then parses it again as a JavaScript
//! expression, compiles it to bytecode and runs that: a tenth of a node's CPU per request for a
//! handler that reads a small JSON body (docs/perf.md). This builds the value as serde_json
//! reads the text, with the results ECMA-262's `JSON.parse` gives:
//! - objects get their keys in the text's order with `CreateDataProperty` (so a `"__proto__"`
//!   key is an own property, and a repeated key keeps its first position and its last value);
//! - numbers are the nearest double to the text's decimal value (serde_json's
//!   `float_roundtrip`), `-0` included; integers beyond 2^53 round as their decimal does;
//! - what Boa's own refuses, this refuses with the same `SyntaxError`: everything serde_json
//!   rejects, nesting deeper than 128 levels and escapes of lone surrogates among it.
//!
//! The recursion is serde_json's, bounded by its limit of 128 levels.

use std::fmt;

use boa_engine::object::builtins::JsArray;
use boa_engine::{Context, JsError, JsNativeError, JsObject, JsString, JsValue};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The value `text` denotes as JSON, or the `SyntaxError` `JSON.parse` throws.
pub fn parse(text: &[u8], ctx: &mut Context) -> Result<JsValue, JsError> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = Build { ctx }.deserialize(&mut de).map_err(|e| syntax(&e))?;
    de.end().map_err(|e| syntax(&e))?;
    Ok(value)
}

fn syntax(e: &serde_json::Error) -> JsError {
    JsNativeError::syntax().with_message(e.to_string()).into()
}

/// Builds one JSON value in the context.
struct Build<'c> {
    ctx: &'c mut Context,
}

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = JsValue;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<JsValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = JsValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<JsValue, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<JsValue, E> {
        Ok(i32::try_from(v).map_or_else(|_| JsValue::from(v as f64), JsValue::from))
    }

    fn visit_u64<E>(self, v: u64) -> Result<JsValue, E> {
        Ok(i32::try_from(v).map_or_else(|_| JsValue::from(v as f64), JsValue::from))
    }

    fn visit_f64<E>(self, v: f64) -> Result<JsValue, E> {
        Ok(JsValue::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<JsValue, E> {
        Ok(JsString::from(v).into())
    }

    fn visit_unit<E>(self) -> Result<JsValue, E> {
        Ok(JsValue::null())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element_seed(Build { ctx: &mut *self.ctx })? {
            items.push(v);
        }
        Ok(JsArray::from_iter(items, self.ctx).into())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsValue, A::Error> {
        let object = JsObject::with_object_proto(self.ctx.intrinsics());
        while let Some(key) = map.next_key_seed(Key)? {
            let value = map.next_value_seed(Build { ctx: &mut *self.ctx })?;
            object.create_data_property_or_throw(key, value, self.ctx).map_err(|e| de::Error::custom(e.to_string()))?;
        }
        Ok(object.into())
    }
}

/// An object's key.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = JsString;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<JsString, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = JsString;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, v: &str) -> Result<JsString, E> {
        Ok(JsString::from(v))
    }
}
