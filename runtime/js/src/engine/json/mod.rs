//! `JSON` as scripts get it: `JSON.stringify` with a bound on nesting (issue 20), and
//! `JSON.parse` without a reviver built straight from serde_json (`parse`).
//!
//! Boa 0.22 serializes a nested value by native recursion with no stack check: about 1 KiB of
//! native stack for each level, for 177 bytes of heap, so a value the heap limit allows could
//! overflow any script thread's stack (docs/perf.md). This is the same algorithm (ECMA-262
//! SerializeJSONProperty and its helpers: `toJSON`, a replacer function or property list, the
//! gap, wrapper objects, `JSON.rawJSON` values, the cycle check), written against Boa's public
//! API, that refuses to go deeper than [`levels_allowed`] with a `RangeError` the script can
//! catch. The levels are counted per thread, across the nested `JSON.stringify` calls a getter
//! or `toJSON` can make, so a script cannot multiply the bound by re-entering.
//!
//! The functions it must not take from the script's (mutable) globals, `Array.isArray`,
//! `Object.keys` and `JSON.isRawJSON`, are captured when the context is set up.

mod parse;

pub use parse::parse;

use std::cell::Cell;
use std::collections::HashSet;

use boa_engine::object::builtins::JsProxy;
use boa_engine::object::ObjectInitializer;
use boa_engine::string::CodePoint;
use boa_engine::value::IntegerOrInfinity;
use boa_engine::{js_string, Context, JsBigInt, JsNativeError, JsObject, JsResult, JsString, JsValue, NativeFunction};
use boa_gc::{Finalize, Trace};

/// Bytes of `max_stack_bytes` one level of nesting is charged: Boa's recursion limit is
/// `max_stack_bytes / 1024` calls, so a value may nest four times as deep as a script may
/// recurse (4,096 levels for CCF's default 1 MiB).
pub const STACK_BYTES_PER_LEVEL: usize = 256;

thread_local! {
    /// Levels of every `JSON.stringify` running on this thread, nested calls included.
    static LEVELS: Cell<usize> = const { Cell::new(0) };
}

/// The nesting a context's stack limit allows (its recursion limit, in Boa's calls).
pub fn levels_allowed(recursion_limit: usize) -> usize {
    recursion_limit.saturating_mul(1024 / STACK_BYTES_PER_LEVEL)
}

/// The script-independent functions the serializer calls.
#[derive(Clone, Trace, Finalize)]
struct Originals {
    is_array: JsObject,
    keys: JsObject,
    is_raw_json: JsObject,
}

/// Replaces the context's `JSON.stringify` with the bounded one and `JSON.parse` with the
/// direct one (same names, lengths and attributes; a `JSON.parse` given a reviver calls Boa's,
/// which gives the reviver each primitive's source text). Call before any script runs.
pub fn install(ctx: &mut Context) -> JsResult<()> {
    let global = ctx.global_object();
    let object = |name: JsString, ctx: &mut Context| -> JsResult<JsObject> {
        global
            .get(name.clone(), ctx)?
            .as_object()
            .ok_or_else(|| JsNativeError::typ().with_message(format!("no global {}", name.to_std_string_escaped())).into())
    };
    let (array, object_ctor, json) =
        (object(js_string!("Array"), ctx)?, object(js_string!("Object"), ctx)?, object(js_string!("JSON"), ctx)?);
    let function = |holder: &JsObject, name: JsString, ctx: &mut Context| -> JsResult<JsObject> {
        holder.get(name, ctx)?.as_callable().ok_or_else(|| JsNativeError::typ().with_message("a JSON built-in is missing").into())
    };
    let originals = Originals {
        is_array: function(&array, js_string!("isArray"), ctx)?,
        keys: function(&object_ctor, js_string!("keys"), ctx)?,
        is_raw_json: function(&json, js_string!("isRawJSON"), ctx)?,
    };
    let stringify =
        NativeFunction::from_copy_closure_with_captures(|_, args, originals: &Originals, ctx| stringify(args, originals, ctx), originals);
    // Built through an initializer so that the function gets its name and length as a
    // built-in has them; then moved onto `JSON` as writable, configurable, not enumerable.
    let boa_parse = function(&json, js_string!("parse"), ctx)?;
    let parse = NativeFunction::from_copy_closure_with_captures(
        |_, args, boa_parse: &JsObject, ctx| {
            if args.get(1).is_some_and(JsValue::is_callable) {
                return boa_parse.call(&JsValue::undefined(), args, ctx);
            }
            let text = args.first().cloned().unwrap_or_default().to_string(ctx)?;
            let text = text.to_std_string().map_err(|e| JsNativeError::syntax().with_message(e.to_string()))?;
            parse::parse(text.as_bytes(), ctx)
        },
        boa_parse,
    );
    let holder =
        ObjectInitializer::new(ctx).function(stringify, js_string!("stringify"), 3).function(parse, js_string!("parse"), 2).build();
    for name in [js_string!("stringify"), js_string!("parse")] {
        let f = holder.get(name.clone(), ctx)?;
        json.define_property_or_throw(
            name,
            boa_engine::property::PropertyDescriptor::builder().value(f).writable(true).enumerable(false).configurable(true),
            ctx,
        )?;
    }
    Ok(())
}

struct State<'a> {
    originals: &'a Originals,
    replacer: Option<JsObject>,
    property_list: Option<Vec<JsString>>,
    gap: Vec<u16>,
    indent: Vec<u16>,
    /// The objects being serialized, outermost first: meeting one again is a cycle.
    stack: HashSet<JsObject>,
    levels_allowed: usize,
    out: Vec<u16>,
}

/// `JSON.stringify(value, replacer, space)`.
fn stringify(args: &[JsValue], originals: &Originals, ctx: &mut Context) -> JsResult<JsValue> {
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    let (replacer, property_list) = match arg(1).as_object() {
        Some(r) if r.is_callable() => (Some(r.clone()), None),
        Some(r) if is_array(&r, originals, ctx)? => (None, Some(property_list(&r, ctx)?)),
        _ => (None, None),
    };
    let mut space = arg(2);
    if let Some(o) = space.as_object() {
        if o.is::<f64>() {
            space = space.to_number(ctx)?.into();
        } else if o.is::<JsString>() {
            space = space.to_string(ctx)?.into();
        }
    }
    let gap: Vec<u16> = if space.is_number() {
        let spaces = match space.to_integer_or_infinity(ctx)? {
            IntegerOrInfinity::PositiveInfinity => 10,
            IntegerOrInfinity::Integer(i) => i.clamp(0, 10) as usize,
            IntegerOrInfinity::NegativeInfinity => 0,
        };
        vec![u16::from(b' '); spaces]
    } else if let Some(s) = space.as_string() {
        s.iter().take(10).collect()
    } else {
        Vec::new()
    };
    let wrapper = JsObject::with_object_proto(ctx.intrinsics());
    wrapper.create_data_property_or_throw(js_string!(), arg(0), ctx)?;
    let mut state = State {
        originals,
        replacer,
        property_list,
        gap,
        indent: Vec::new(),
        stack: HashSet::new(),
        levels_allowed: levels_allowed(ctx.runtime_limits().recursion_limit()),
        out: Vec::new(),
    };
    if serialize_property(&mut state, Key::Name(js_string!()), &wrapper, ctx)? {
        Ok(JsString::from(&state.out[..]).into())
    } else {
        Ok(JsValue::undefined())
    }
}

/// The property list of a replacer array: its strings and numbers (and their wrappers), as
/// strings, each once, in order.
fn property_list(replacer: &JsObject, ctx: &mut Context) -> JsResult<Vec<JsString>> {
    let len = replacer.get(js_string!("length"), ctx)?.to_length(ctx)?;
    let mut list: Vec<JsString> = Vec::new();
    let mut seen: HashSet<JsString> = HashSet::new();
    for k in 0..len {
        let v = replacer.get(k, ctx)?;
        let item = if let Some(s) = v.as_string() {
            Some(s.clone())
        } else if v.is_number() || v.as_object().is_some_and(|o| o.is::<JsString>() || o.is::<f64>()) {
            Some(v.to_string(ctx)?)
        } else {
            None
        };
        if let Some(item) = item {
            if seen.insert(item.clone()) {
                list.push(item);
            }
        }
    }
    Ok(list)
}

/// `IsArray`: an array, or a proxy whose target is one (asked of the original `Array.isArray`,
/// which also throws for a revoked proxy).
fn is_array(o: &JsObject, originals: &Originals, ctx: &mut Context) -> JsResult<bool> {
    if o.is_array() {
        return Ok(true);
    }
    if JsProxy::from_object(o.clone()).is_err() {
        return Ok(false);
    }
    Ok(originals.is_array.call(&JsValue::undefined(), &[o.clone().into()], ctx)?.to_boolean())
}

#[derive(Clone)]
enum Key {
    Name(JsString),
    Index(u64),
}

impl Key {
    fn as_string(&self) -> JsString {
        match self {
            Key::Name(s) => s.clone(),
            Key::Index(i) => JsString::from(i.to_string().as_str()),
        }
    }
}

/// SerializeJSONProperty: appends the property's JSON text to `state.out` and returns true, or
/// returns false (appending nothing) when the value has no JSON form (undefined, a function, a
/// symbol).
fn serialize_property(state: &mut State, key: Key, holder: &JsObject, ctx: &mut Context) -> JsResult<bool> {
    let mut value = match &key {
        Key::Name(s) => holder.get(s.clone(), ctx)?,
        Key::Index(i) => holder.get(*i, ctx)?,
    };
    if value.is_object() || value.is_bigint() {
        let to_json = value.to_object(ctx)?.get(js_string!("toJSON"), ctx)?;
        if let Some(f) = to_json.as_callable() {
            value = f.call(&value, &[key.as_string().into()], ctx)?;
        }
    }
    if let Some(replacer) = &state.replacer {
        value = replacer.call(&holder.clone().into(), &[key.as_string().into(), value], ctx)?;
    }
    if let Some(o) = value.as_object() {
        if o.is::<f64>() {
            value = value.to_number(ctx)?.into();
        } else if o.is::<JsString>() {
            value = value.to_string(ctx)?.into();
        } else if let Some(b) = o.downcast_ref::<bool>() {
            value = (*b).into();
        } else if let Some(b) = o.downcast_ref::<JsBigInt>() {
            value = b.clone().into();
        } else if o.prototype().is_none() && state.originals.is_raw_json.call(&JsValue::undefined(), &[value.clone()], ctx)?.to_boolean() {
            let raw = o.get(js_string!("rawJSON"), ctx)?.to_string(ctx)?;
            state.out.extend(raw.iter());
            return Ok(true);
        }
    }
    if value.is_null() {
        state.out.extend("null".encode_utf16());
    } else if let Some(b) = value.as_boolean() {
        state.out.extend(if b { "true" } else { "false" }.encode_utf16());
    } else if let Some(s) = value.as_string() {
        quote(&s, &mut state.out);
    } else if let Some(n) = value.as_number() {
        if n.is_finite() {
            state.out.extend(value.to_string(ctx)?.iter());
        } else {
            state.out.extend("null".encode_utf16());
        }
    } else if value.is_bigint() {
        return Err(JsNativeError::typ().with_message("cannot serialize a BigInt to JSON").into());
    } else if let Some(o) = value.as_object().filter(|o| !o.is_callable()) {
        let _level = Level::enter(state, &o)?;
        let r = if is_array(&o, state.originals, ctx)? { serialize_array(state, &o, ctx) } else { serialize_object(state, &o, ctx) };
        state.stack.remove(&o);
        r?;
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// One level of nesting, counted on the thread while it lasts.
struct Level;

impl Level {
    fn enter(state: &mut State, o: &JsObject) -> JsResult<Level> {
        if state.stack.contains(o) {
            return Err(JsNativeError::typ().with_message("cyclic object value").into());
        }
        let depth = LEVELS.with(|l| l.get()) + 1;
        if depth > state.levels_allowed {
            return Err(JsNativeError::range()
                .with_message(format!(
                    "JSON.stringify: the value nests deeper than {} levels (the stack limit, max_stack_bytes, allows one per {STACK_BYTES_PER_LEVEL} bytes)",
                    state.levels_allowed
                ))
                .into());
        }
        LEVELS.with(|l| l.set(depth));
        state.stack.insert(o.clone());
        Ok(Level)
    }
}

impl Drop for Level {
    fn drop(&mut self) {
        LEVELS.with(|l| l.set(l.get().saturating_sub(1)));
    }
}

/// Opens a level of indentation; returns the indentation to step back to.
fn open(state: &mut State, bracket: u8) -> (Vec<u16>, usize) {
    let stepback = state.indent.clone();
    state.indent.extend_from_slice(&state.gap);
    let start = state.out.len();
    state.out.push(u16::from(bracket));
    (stepback, start)
}

/// Before a member: a comma after the first, and with a gap a new line and the indentation.
fn separate(state: &mut State, first: bool) {
    if !first {
        state.out.push(u16::from(b','));
    }
    if !state.gap.is_empty() {
        state.out.push(u16::from(b'\n'));
        state.out.extend_from_slice(&state.indent);
    }
}

/// Closes a level: `{}`/`[]` when nothing was written, else the closing line and bracket.
fn close(state: &mut State, stepback: Vec<u16>, start: usize, empty: bool, brackets: [u8; 2]) {
    if empty {
        state.out.truncate(start);
        state.out.extend([u16::from(brackets[0]), u16::from(brackets[1])]);
    } else {
        if !state.gap.is_empty() {
            state.out.push(u16::from(b'\n'));
            state.out.extend_from_slice(&stepback);
        }
        state.out.push(u16::from(brackets[1]));
    }
    state.indent = stepback;
}

fn serialize_object(state: &mut State, o: &JsObject, ctx: &mut Context) -> JsResult<()> {
    let keys: Vec<JsString> = match &state.property_list {
        Some(list) => list.clone(),
        None => {
            let keys = state.originals.keys.call(&JsValue::undefined(), &[o.clone().into()], ctx)?;
            let keys = keys.as_object().ok_or_else(|| JsNativeError::typ().with_message("Object.keys gave no array"))?;
            let len = keys.get(js_string!("length"), ctx)?.to_length(ctx)?;
            let mut names = Vec::with_capacity(len as usize);
            for i in 0..len {
                names.push(keys.get(i, ctx)?.to_string(ctx)?);
            }
            names
        }
    };
    let (stepback, start) = open(state, b'{');
    let mut empty = true;
    for key in keys {
        let mark = state.out.len();
        separate(state, empty);
        quote(&key, &mut state.out);
        state.out.push(u16::from(b':'));
        if !state.gap.is_empty() {
            state.out.push(u16::from(b' '));
        }
        if serialize_property(state, Key::Name(key), o, ctx)? {
            empty = false;
        } else {
            state.out.truncate(mark);
        }
    }
    close(state, stepback, start, empty, [b'{', b'}']);
    Ok(())
}

fn serialize_array(state: &mut State, o: &JsObject, ctx: &mut Context) -> JsResult<()> {
    let len = o.get(js_string!("length"), ctx)?.to_length(ctx)?;
    let (stepback, start) = open(state, b'[');
    for i in 0..len {
        separate(state, i == 0);
        if !serialize_property(state, Key::Index(i), o, ctx)? {
            state.out.extend("null".encode_utf16());
        }
    }
    close(state, stepback, start, len == 0, [b'[', b']']);
    Ok(())
}

/// QuoteJSONString: the string in double quotes, with `"` `\` and controls escaped, and lone
/// surrogates as `\uXXXX` (well-formed JSON.stringify).
fn quote(s: &JsString, out: &mut Vec<u16>) {
    out.push(u16::from(b'"'));
    for point in s.code_points() {
        match point {
            CodePoint::Unicode(c) => match c {
                '\u{8}' => out.extend("\\b".encode_utf16()),
                '\t' => out.extend("\\t".encode_utf16()),
                '\n' => out.extend("\\n".encode_utf16()),
                '\u{c}' => out.extend("\\f".encode_utf16()),
                '\r' => out.extend("\\r".encode_utf16()),
                '"' => out.extend("\\\"".encode_utf16()),
                '\\' => out.extend("\\\\".encode_utf16()),
                c if c < ' ' => hex_escape(c as u16, out),
                c => out.extend_from_slice(c.encode_utf16(&mut [0; 2])),
            },
            CodePoint::UnpairedSurrogate(u) => hex_escape(u, out),
        }
    }
    out.push(u16::from(b'"'));
}

fn hex_escape(u: u16, out: &mut Vec<u16>) {
    out.extend(format!("\\u{u:04x}").encode_utf16());
}

#[cfg(test)]
mod tests {
    use super::*;
    use boa_engine::Source;

    /// Runs a test on a thread with the room Boa needs in a debug build.
    fn on_big_stack(test: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new().stack_size(256 << 20).spawn(test).expect("thread").join().expect("passed");
    }

    /// A context whose `JSON.stringify` and `JSON.parse` are ours, with Boa's own kept as
    /// `nativeStringify` and `nativeParse`.
    fn context(recursion_limit: usize) -> Context {
        let mut ctx = Context::builder().instructions_remaining(usize::MAX).build().expect("context");
        ctx.eval(Source::from_bytes("globalThis.nativeStringify = JSON.stringify; globalThis.nativeParse = JSON.parse;")).expect("saved");
        install(&mut ctx).expect("installed");
        ctx.runtime_limits_mut().set_recursion_limit(recursion_limit);
        ctx
    }

    fn eval(ctx: &mut Context, code: &str) -> String {
        match ctx.eval(Source::from_bytes(code)) {
            Ok(v) => v.display().to_string(),
            Err(e) => format!("threw {}", e.try_native(ctx).map(|n| n.kind().to_string()).unwrap_or_else(|_| e.to_string())),
        }
    }

    /// Boa's own serializer is the oracle: every case gives the same text, or throws the same
    /// kind of error.
    #[test]
    fn serializes_as_the_engine_does() {
        on_big_stack(serializes_as_the_engine_does_body);
    }

    fn serializes_as_the_engine_does_body() {
        let cases = [
            "[1]", "[-0]", "[NaN]", "[-Infinity]", "[1e21]", "[0.1]", "['str']", "[true]", "[null]", "[undefined]", "[Symbol('s')]",
            "[function () {}]", "[]",
            r#"['\u0000\u001f"\\\b\f\n\r\t\u007f\u2028']"#, r#"['\ud800']"#, r#"['\udc00x\ud800']"#, r#"['\ud83d\ude00 é']"#,
            "[{ a: 1, b: [1, 'x', null, undefined, () => 1, Symbol()], c: { d: {} }, e: undefined }]",
            "[[1, , 3]]", "[Object.assign([1, 2], { extra: 3 })]",
            "[{ toJSON(k) { return 'key:' + k; } }]", "[{ a: { toJSON(k) { return [k, this === undefined]; } } }]",
            "[new Date(0)]", "[{ toJSON() { return undefined; } }]", "[{ a: { toJSON() { return undefined; } } }]",
            "[1n]", "[{ a: 2n }]", "[Object(1n)]",
            "[new Number(3), null, new String('-')]", "[[new Number(3), new String('s'), new Boolean(false)]]",
            "[{ a: 1, b: { c: 2 } }, (k, v) => (typeof v === 'number' ? v * 10 : v)]",
            "[{ a: 1, b: 2 }, function (k, v) { return k === 'a' ? undefined : k === 'b' ? [this === undefined, k, v] : v; }]",
            "[{ a: 1, b: 2, 1: 'one', c: { a: 3, d: 4 } }, ['a', 1, 'a', new String('c'), new Number(1), {}, true]]",
            "[{ a: [1, { b: 2 }], c: {} , d: [] }, null, 2]", "[{ a: [1, { b: 2 }] }, null, 20]", "[{ a: [1] }, null, -1]",
            "[{ a: [1] }, null, 'abcdefghijklmnop']", "[{ a: [1] }, null, new Number(3)]", "[{ a: [1] }, null, new String('--')]",
            "[{ a: [1] }, null, 3.7]", "[{ a: [1] }, null, Infinity]", "[{ a: [1] }, null, {}]",
            "[(() => { const a = {}; a.self = a; return a; })()]", "[(() => { const a = []; a.push([a]); return a; })()]",
            "[(() => { const shared = { x: 1 }; return [shared, shared, { s: shared }]; })()]",
            "[{ [Symbol('k')]: 1, visible: 2 }]", "[Object.defineProperty({ a: 1 }, 'hidden', { value: 2, enumerable: false })]",
            "[new Proxy([1, 2], {})]", "[new Proxy({ a: 1 }, { ownKeys: () => ['a', 'b'], getOwnPropertyDescriptor: (t, k) => ({ value: k, enumerable: true, configurable: true }) })]",
            "[JSON.rawJSON('1e1000')]", "[{ big: JSON.rawJSON('12345678901234567890') }]", "[[JSON.rawJSON('\"s\"')], null, 1]",
            "[{ get g() { return { h: 1 }; } }]", "[new Map([[1, 2]])]", "[new Uint8Array([1, 2])]", "[Object.create({ inherited: 1 })]",
            "[{ b: 1, a: 2, 10: 3, 2: 4 }]", "[{ '\\n': 1, '\"': 2 }]", "[[{}], null, '\\t']",
            "[{ a: 1 }, { length: 1, 0: 'a' }]", "[{ a: 1 }, new Proxy(['a'], {})]",
        ];
        let mut ctx = context(512);
        for args in cases {
            let ours = eval(&mut ctx, &format!("JSON.stringify(...{args})"));
            let engine = eval(&mut ctx, &format!("nativeStringify(...{args})"));
            assert_eq!(ours, engine, "JSON.stringify(...{args})");
        }
        // What a script can see of the function itself.
        assert_eq!(
            eval(&mut ctx, "[JSON.stringify.name, JSON.stringify.length, Object.keys(JSON).includes('stringify')].join()"),
            "\"stringify,3,false\""
        );
        // The script's changes to the globals it uses do not reach it.
        assert_eq!(
            eval(&mut ctx, "Object.keys = () => ['x']; Array.isArray = () => false; JSON.stringify({ a: [1] })"),
            r#""{\"a\":[1]}""#
        );
    }

    #[test]
    fn nesting_past_the_stack_limit_is_a_range_error() {
        on_big_stack(nesting_past_the_stack_limit_is_a_range_error_body);
    }

    fn nesting_past_the_stack_limit_is_a_range_error_body() {
        // A recursion limit of 100 calls allows 400 levels.
        let mut ctx = context(100);
        let nested = |d: usize| format!("(() => {{ let a = 0; for (let i = 0; i < {d}; i++) a = [a]; return a; }})()");
        assert_eq!(eval(&mut ctx, &format!("JSON.stringify({}).length", nested(400))), "801");
        assert_eq!(eval(&mut ctx, &format!("JSON.stringify({})", nested(401))), "threw RangeError");
        assert_eq!(eval(&mut ctx, &format!("JSON.stringify({})", nested(1_000_000))), "threw RangeError");
        // Caught, and the thread's count is whole again afterwards.
        assert_eq!(
            eval(&mut ctx, &format!("try {{ JSON.stringify({}) }} catch (e) {{ e.name + ' ' + JSON.stringify([[1]]) }}", nested(5000))),
            "\"RangeError [[1]]\""
        );
        assert_eq!(LEVELS.with(|l| l.get()), 0);
        // A toJSON that serializes again counts its levels with its caller's: 300 + 300 > 400.
        let reentrant = format!(
            "const inner = {}; let outer = {{ toJSON() {{ return JSON.parse(JSON.stringify(inner)); }} }}; \
             for (let i = 0; i < 300; i++) outer = [outer];",
            nested(300)
        );
        assert_eq!(eval(&mut ctx, &format!("{reentrant} JSON.stringify(outer)")), "threw RangeError");
        assert_eq!(LEVELS.with(|l| l.get()), 0);
    }

    /// Boa's own `JSON.parse` is the oracle: every text gives the same value (types, `-0`,
    /// own keys in order, prototypes) or the same kind of error.
    #[test]
    fn parses_as_the_engine_does() {
        on_big_stack(parses_as_the_engine_does_body);
    }

    fn parses_as_the_engine_does_body() {
        let nested = |d: usize| format!("{}0{}", "[".repeat(d), "]".repeat(d));
        let deep: Vec<String> = [126, 127, 128, 129, 5000].into_iter().map(nested).collect();
        let mut cases: Vec<&str> = vec![
            "1",
            "-0",
            "-0.0",
            "0",
            "1.5",
            "0.1",
            "1e21",
            "1E-7",
            "-1.25e+2",
            "123456789012345678901234567890",
            "9007199254740993",
            "-9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "2147483647",
            "2147483648",
            "-2147483648",
            "-2147483649",
            "4.35",
            "5e-324",
            "2.4703282292062328e-324",
            "1.7976931348623157e308",
            "1e400",
            "-1e400",
            "0.30000000000000004",
            "3.0",
            "100",
            "1e2",
            r#""s""#,
            r#""\ud83d\ude00""#,
            r#""\ud800""#,
            r#""\udc00\ud800""#,
            "\"é\\n\\t\\u0000\\/\\\"\"",
            "\"\u{2028}\"",
            "\"\u{1}\"",
            r#""\x41""#,
            r#""\u00""#,
            "true",
            "false",
            "null",
            "[]",
            "{}",
            " \t\r\n[ 1 , 2 ]\n",
            "[1,[2,[3,{}]],[]]",
            r#"{"a":1,"b":{"c":[1,2]},"d":null,"e":"x"}"#,
            r#"{"b":1,"a":2,"10":3,"2":4,"-1":5,"01":6}"#,
            r#"{"a":1,"a":2,"b":3,"a":4}"#,
            r#"{"__proto__":{"x":1}}"#,
            r#"{"":1}"#,
            r#"{"constructor":1,"toString":2}"#,
            "[1,]",
            r#"{"a":1,}"#,
            "01",
            ".5",
            "1.",
            "+1",
            "'s'",
            "NaN",
            "Infinity",
            "",
            " ",
            "[1] x",
            "[1] [2]",
            "{a:1}",
            "[",
            "]",
            "\u{feff}1",
            "tru",
            "nul",
            r#"{"a" 1}"#,
            "[1 2]",
            "/* c */ 1",
        ];
        cases.extend(deep.iter().map(String::as_str));
        let mut ctx = context(512);
        ctx.eval(Source::from_bytes(
            "globalThis.describe = (v) => typeof v === 'number' ? (Object.is(v, -0) ? '-0' : String(v)) \
               : v === null ? 'null' \
               : Array.isArray(v) ? (Object.getPrototypeOf(v) === Array.prototype ? '' : '!') + '[' + v.map(describe).join() + ']' \
               : typeof v === 'object' ? (Object.getPrototypeOf(v) === Object.prototype ? '' : '!') + '{' + Reflect.ownKeys(v).map((k) => { \
                   const d = Object.getOwnPropertyDescriptor(v, k); \
                   return nativeStringify(k) + (d.writable && d.enumerable && d.configurable ? ':' : '~') + describe(v[k]); }).join() + '}' \
               : typeof v + ' ' + nativeStringify(v);",
        ))
        .expect("describer");
        for text in cases {
            let literal = serde_json::to_string(text).expect("literal");
            let ours = eval(&mut ctx, &format!("describe(JSON.parse({literal}))"));
            let engine = eval(&mut ctx, &format!("describe(nativeParse({literal}))"));
            assert_eq!(ours, engine, "JSON.parse({literal})");
        }
        // What is not a string is made one first, as the engine's does.
        for arg in ["1", "null", "[1, 2]", "{ toString() { return '[3]'; } }", "undefined", "Symbol()", "{}"] {
            assert_eq!(
                eval(&mut ctx, &format!("describe(JSON.parse({arg}))")),
                eval(&mut ctx, &format!("describe(nativeParse({arg}))")),
                "{arg}"
            );
        }
        // A reviver still sees each primitive's source text (Boa's parse does the walk).
        assert_eq!(
            eval(&mut ctx, "JSON.parse('[1.0, \"x\"]', (k, v, c) => (typeof v === 'object' ? v : c.source)).join('|')"),
            "\"1.0|\\\"x\\\"\""
        );
        assert_eq!(eval(&mut ctx, "[JSON.parse.name, JSON.parse.length, Object.keys(JSON).includes('parse')].join()"), "\"parse,2,false\"");
    }
}
