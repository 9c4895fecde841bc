//! The Web APIs npm libraries expect, beside the `ccf` global: `TextEncoder`/`TextDecoder`,
//! `atob`/`btoa`, `URL`/`URLSearchParams`, `crypto.getRandomValues`/`crypto.randomUUID`,
//! `structuredClone` and `queueMicrotask`. The classes are JavaScript (`web.js`, installed
//! before the prelude); what needs a library is native, here: UTF-8 from the standard library,
//! base64 from `base64`, URLs from `url` (the WHATWG parser and its setters), query strings from
//! `form_urlencoded`, random bytes from the operating system's CSPRNG.

use base64::Engine;
use boa_engine::object::builtins::{AlignedVec, JsArray, JsArrayBuffer};
use boa_engine::{js_string, Context, JsNativeError, JsResult, JsString, JsValue, Source};

const WEB_JS: &str = include_str!("web.js");

/// The most `crypto.getRandomValues` fills at once (the Web Crypto API's quota).
pub const RANDOM_BYTES_MAX: usize = 65_536;

fn type_err(msg: impl Into<String>) -> boa_engine::JsError {
    JsNativeError::typ().with_message(msg.into()).into()
}

fn string_arg(args: &[JsValue], i: usize) -> JsResult<JsString> {
    args.get(i).and_then(JsValue::as_string).ok_or_else(|| type_err("expected a string"))
}

fn bytes_arg(args: &[JsValue], i: usize) -> JsResult<Vec<u8>> {
    let obj = args.get(i).and_then(JsValue::as_object).ok_or_else(|| type_err("expected an ArrayBuffer"))?;
    let buffer = JsArrayBuffer::from_object(obj).map_err(|_| type_err("expected an ArrayBuffer"))?;
    Ok(buffer.to_vec().unwrap_or_default())
}

fn buffer(bytes: &[u8], ctx: &mut Context) -> JsResult<JsValue> {
    Ok(JsArrayBuffer::from_byte_block(AlignedVec::from_slice(0, bytes), ctx)?.into())
}

/// `utf8Encode(string)`: the string's UTF-8 bytes, each lone surrogate as U+FFFD (a USVString).
fn utf8_encode(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    buffer(string_arg(args, 0)?.to_std_string_lossy().as_bytes(), ctx)
}

/// The text of UTF-8 `bytes` and how many bytes at the end were held back: with `stream`, an
/// incomplete sequence at the end waits for the next chunk. With `fatal`, a malformed sequence
/// is an error; otherwise each maximal malformed subpart becomes U+FFFD (WHATWG's decoder).
pub fn utf8_decode(bytes: &[u8], fatal: bool, stream: bool) -> Result<(String, usize), String> {
    let mut held = 0;
    let complete = match std::str::from_utf8(bytes) {
        Ok(_) => bytes,
        Err(e) if stream && e.error_len().is_none() => {
            held = bytes.len() - e.valid_up_to();
            &bytes[..e.valid_up_to()]
        }
        Err(e) if fatal => return Err(format!("the data is not valid UTF-8 (at byte {})", e.valid_up_to())),
        Err(_) => bytes,
    };
    Ok((String::from_utf8_lossy(complete).into_owned(), held))
}

/// `utf8Decode(buffer, fatal, stream)`: `[text, bytes held back]`, or a TypeError.
fn utf8_decode_native(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let bytes = bytes_arg(args, 0)?;
    let flag = |i: usize| args.get(i).is_some_and(JsValue::to_boolean);
    let (text, held) = utf8_decode(&bytes, flag(1), flag(2)).map_err(type_err)?;
    Ok(JsArray::from_iter([JsString::from(text.as_str()).into(), JsValue::from(held as u32)], ctx).into())
}

/// `btoa`'s work on the bytes of a string whose code units are all below 256.
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// WHATWG's forgiving-base64 decode: ASCII whitespace ignored, padding optional (but never
/// more than makes a multiple of four), trailing bits ignored. `None` where `atob` throws.
pub fn forgiving_base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut data: String = text.chars().filter(|c| !matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')).collect();
    if data.len().is_multiple_of(4) {
        for _ in 0..2 {
            if data.ends_with('=') {
                data.pop();
            }
        }
    }
    if data.len() % 4 == 1 || !data.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
        return None;
    }
    let config = base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true);
    base64::engine::GeneralPurpose::new(&base64::alphabet::STANDARD, config).decode(data).ok()
}

/// `base64Encode(string)`: `null` if a code unit is above 255 (`btoa` then throws).
fn base64_encode_native(_: &JsValue, args: &[JsValue], _ctx: &mut Context) -> JsResult<JsValue> {
    let units = string_arg(args, 0)?.to_vec();
    let bytes: Option<Vec<u8>> = units.iter().map(|u| u8::try_from(*u).ok()).collect();
    Ok(bytes.map_or(JsValue::null(), |b| JsString::from(base64_encode(&b).as_str()).into()))
}

/// `base64Decode(string)`: the bytes as a string of code units below 256, or `null`.
fn base64_decode_native(_: &JsValue, args: &[JsValue], _ctx: &mut Context) -> JsResult<JsValue> {
    let text = string_arg(args, 0)?.to_std_string_lossy();
    Ok(forgiving_base64_decode(&text).map_or(JsValue::null(), |bytes| {
        let units: Vec<u16> = bytes.into_iter().map(u16::from).collect();
        JsString::from(&units[..]).into()
    }))
}

/// `randomBytes(n)`: `n` bytes (at most [`RANDOM_BYTES_MAX`]) from the operating system.
fn random_bytes(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let n = args.first().and_then(JsValue::as_number).unwrap_or(0.0);
    if !(0.0..=RANDOM_BYTES_MAX as f64).contains(&n) {
        return Err(type_err(format!("at most {RANDOM_BYTES_MAX} random bytes at once")));
    }
    let drawn = match ctx.get_data::<std::rc::Rc<crate::engine::sources::Sources>>() {
        Some(sources) => sources.bytes(n as usize),
        None => {
            let mut bytes = vec![0; n as usize];
            getrandom::fill(&mut bytes).map(|()| bytes)
        }
    };
    let bytes = drawn.map_err(|e| type_err(format!("the operating system's random source: {e}")))?;
    buffer(&bytes, ctx)
}

/// `random()`: `Math.random()`, through the interpreter's sources (recorded or replayed).
fn random(_: &JsValue, _: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let sources =
        ctx.get_data::<std::rc::Rc<crate::engine::sources::Sources>>().ok_or_else(|| type_err("Math.random has no source here"))?;
    Ok(JsValue::from(sources.random()))
}

/// The components `URL` shows, in the order `web.js` reads them.
const URL_PARTS: [fn(&url::Url) -> String; 11] = [
    |u| url::quirks::href(u).to_owned(),
    url::quirks::origin,
    |u| url::quirks::protocol(u).to_owned(),
    |u| url::quirks::username(u).to_owned(),
    |u| url::quirks::password(u).to_owned(),
    |u| url::quirks::host(u).to_owned(),
    |u| url::quirks::hostname(u).to_owned(),
    |u| url::quirks::port(u).to_owned(),
    |u| url::quirks::pathname(u).to_owned(),
    |u| url::quirks::search(u).to_owned(),
    |u| url::quirks::hash(u).to_owned(),
];

/// Parses `input` against `base` as the URL Standard does.
pub fn parse_url(input: &str, base: Option<&str>) -> Result<url::Url, url::ParseError> {
    match base {
        Some(base) => url::Url::parse(base)?.join(input),
        None => url::Url::parse(input),
    }
}

/// Applies one of `URL`'s setters (`protocol`, `host`, ...) as the URL Standard does: a value
/// that does not fit leaves the URL as it was; only `href` fails.
pub fn set_url_part(url: &mut url::Url, part: &str, value: &str) -> Result<(), String> {
    use url::quirks as q;
    // A value that does not fit is ignored (`Err(())`), as the standard's setters ignore it.
    let _ignored = match part {
        "href" => return q::set_href(url, value).map_err(|e| e.to_string()),
        "protocol" => q::set_protocol(url, value),
        "username" => q::set_username(url, value),
        "password" => q::set_password(url, value),
        "host" => q::set_host(url, value),
        "hostname" => q::set_hostname(url, value),
        "port" => q::set_port(url, value),
        "pathname" => {
            q::set_pathname(url, value);
            Ok(())
        }
        "search" => {
            q::set_search(url, value);
            Ok(())
        }
        "hash" => {
            q::set_hash(url, value);
            Ok(())
        }
        other => return Err(format!("URL has no setter {other:?}")),
    };
    Ok(())
}

fn url_parts(url: &url::Url, ctx: &mut Context) -> JsValue {
    JsArray::from_iter(URL_PARTS.iter().map(|part| JsString::from(part(url).as_str()).into()), ctx).into()
}

/// `urlParse(input, base?)`: the components, or `null` if it is not a URL.
fn url_parse(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let input = string_arg(args, 0)?.to_std_string_lossy();
    let base = match args.get(1) {
        Some(v) if !v.is_undefined() => Some(string_arg(args, 1)?.to_std_string_lossy()),
        _ => None,
    };
    Ok(parse_url(&input, base.as_deref()).map_or(JsValue::null(), |url| url_parts(&url, ctx)))
}

/// `urlSet(href, part, value)`: the components after the setter, or a TypeError (`href` only).
fn url_set(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let href = string_arg(args, 0)?.to_std_string_lossy();
    let mut url = url::Url::parse(&href).map_err(|e| type_err(format!("Invalid URL: {e}")))?;
    let (part, value) = (string_arg(args, 1)?.to_std_string_lossy(), string_arg(args, 2)?.to_std_string_lossy());
    set_url_part(&mut url, &part, &value).map_err(|e| type_err(format!("Invalid URL: {e}")))?;
    Ok(url_parts(&url, ctx))
}

/// `formParse(string)`: `application/x-www-form-urlencoded` pairs, flattened `[k, v, k, v, ...]`.
fn form_parse(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let text = string_arg(args, 0)?.to_std_string_lossy();
    let flat =
        form_urlencoded::parse(text.as_bytes()).flat_map(|(k, v)| [JsString::from(k.as_ref()).into(), JsString::from(v.as_ref()).into()]);
    Ok(JsArray::from_iter(flat, ctx).into())
}

/// `formSerialize([k, v, k, v, ...])`: the pairs as `application/x-www-form-urlencoded`.
fn form_serialize(_: &JsValue, args: &[JsValue], ctx: &mut Context) -> JsResult<JsValue> {
    let obj = args.first().and_then(JsValue::as_object).ok_or_else(|| type_err("expected an array"))?;
    let array = JsArray::from_object(obj.clone())?;
    let len = array.length(ctx)?;
    let mut out = form_urlencoded::Serializer::new(String::new());
    let mut i = 0;
    while i + 1 < len {
        let k = array.get(i, ctx)?.to_string(ctx)?.to_std_string_lossy();
        let v = array.get(i + 1, ctx)?.to_string(ctx)?.to_std_string_lossy();
        out.append_pair(&k, &v);
        i += 2;
    }
    Ok(JsString::from(out.finish().as_str()).into())
}

/// Installs the Web APIs as globals (the natives are handed to `web.js` and then removed).
pub fn install(ctx: &mut Context) -> JsResult<()> {
    let natives: [(&str, crate::engine::runtime::Native, usize); 11] = [
        ("random", random, 0),
        ("utf8Encode", utf8_encode, 1),
        ("utf8Decode", utf8_decode_native, 3),
        ("base64Encode", base64_encode_native, 1),
        ("base64Decode", base64_decode_native, 1),
        ("randomBytes", random_bytes, 1),
        ("urlParse", url_parse, 2),
        ("urlSet", url_set, 3),
        ("formParse", form_parse, 1),
        ("formSerialize", form_serialize, 1),
        ("randomBytesMax", |_, _, _| Ok(JsValue::from(RANDOM_BYTES_MAX as u32)), 0),
    ];
    crate::engine::runtime::register_natives(ctx, js_string!("__web"), &natives)?;
    ctx.eval(Source::from_bytes(WEB_JS))?;
    Ok(())
}

#[cfg(test)]
mod tests;
