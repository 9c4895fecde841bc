//! The Web APIs against the web platform's answers, case by case: each row is a script and
//! the string it must give (what a browser or Node.js 20 prints for it), run in a context with
//! only the Web APIs installed; and the native helpers alone.

use boa_engine::{Context, Source};

use super::*;

/// A context with the Web APIs alone (and no instruction budget to speak of).
fn context() -> Context {
    let mut ctx = Context::builder().instructions_remaining(usize::MAX).build().expect("a context");
    install(&mut ctx).expect("the Web APIs install");
    ctx
}

/// Runs `script` (an expression) with the Web APIs installed and microtasks drained; its value
/// as a string, or the thrown error as `name: message`.
fn run(script: &str) -> String {
    let mut ctx = context();
    let wrapped = format!("(() => {{ try {{ return String({script}); }} catch (e) {{ return `${{e.name}}: ${{e.message}}`; }} }})()");
    let value = ctx.eval(Source::from_bytes(&wrapped)).expect("the script runs");
    ctx.run_jobs().expect("the jobs run");
    value.to_string(&mut ctx).expect("a string").to_std_string_escaped()
}

fn table(rows: &[(&str, &str)]) {
    let mut wrong = Vec::new();
    for (script, expected) in rows {
        let got = run(script);
        if got != *expected {
            wrong.push(format!("{script}\n  expected {expected}\n  got      {got}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} cases differ:\n{}", wrong.len(), rows.len(), wrong.join("\n"));
}

#[test]
fn text_encoder_and_decoder() {
    table(&[
        ("new TextEncoder().encoding", "utf-8"),
        ("Array.from(new TextEncoder().encode('aé€😀')).join()", "97,195,169,226,130,172,240,159,152,128"),
        ("new TextEncoder().encode().length", "0"),
        // A lone surrogate is encoded as U+FFFD.
        ("Array.from(new TextEncoder().encode('a\\ud800b')).join()", "97,239,191,189,98"),
        ("(() => { const d = new Uint8Array(5); const r = new TextEncoder().encodeInto('a€😀', d); return `${r.read},${r.written},${d.join()}`; })()", "2,4,97,226,130,172,0"),
        ("new TextDecoder().decode(new Uint8Array([104, 105]))", "hi"),
        ("new TextDecoder().decode(new Uint8Array([0xef, 0xbb, 0xbf, 104]).buffer)", "h"),
        ("new TextDecoder('utf-8', { ignoreBOM: true }).decode(new Uint8Array([0xef, 0xbb, 0xbf, 104])).length", "2"),
        ("new TextDecoder().decode(new DataView(new Uint8Array([1, 0xe2, 0x82, 0xac, 2]).buffer, 1, 3))", "€"),
        // Maximal subparts: an invalid lead, a truncated sequence, a surrogate's encoding.
        ("escape(new TextDecoder().decode(new Uint8Array([0x61, 0xff, 0x62, 0xe2, 0x82, 0x63, 0xed, 0xa0, 0x80])))", "a%uFFFDb%uFFFDc%uFFFD%uFFFD%uFFFD"),
        ("new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array([0xc3]))", "TypeError: the data is not valid UTF-8 (at byte 0)"),
        ("new TextDecoder('UTF8').encoding", "utf-8"),
        ("new TextDecoder('latin1')", "RangeError: TextDecoder: the encoding \"latin1\" is not supported (UTF-8 only)"),
        ("new TextDecoder().decode('text')", "TypeError: TextDecoder.decode: expected an ArrayBuffer, a typed array or a DataView"),
        // Streaming: a sequence split between chunks, and a BOM split too.
        ("(() => { const d = new TextDecoder(); return d.decode(new Uint8Array([0xe2, 0x82]), { stream: true }) + '|' + d.decode(new Uint8Array([0xac])); })()", "|€"),
        ("(() => { const d = new TextDecoder(); return d.decode(new Uint8Array([0xef, 0xbb]), { stream: true }) + d.decode(new Uint8Array([0xbf, 0x41])); })()", "A"),
        ("escape(new TextDecoder().decode(new Uint8Array([0xe2, 0x82])))", "%uFFFD"),
    ]);
}

#[test]
fn atob_and_btoa() {
    table(&[
        ("btoa('hello')", "aGVsbG8="),
        ("btoa('\\xff\\xfe')", "//4="),
        ("btoa('€')", "InvalidCharacterError: btoa: the string contains characters outside of the Latin1 range"),
        ("atob('aGVsbG8=')", "hello"),
        ("atob(' aGVs\\nbG8 ')", "hello"),
        ("atob('aGVsbG8')", "hello"),
        ("escape(atob('//4='))", "%FF%FE"),
        ("atob('YQ')", "a"),
        ("atob('YR==')", "a"),
        ("atob('a')", "InvalidCharacterError: atob: the string is not correctly encoded base64"),
        ("atob('aGVsbG8==')", "InvalidCharacterError: atob: the string is not correctly encoded base64"),
        ("atob('a-b_')", "InvalidCharacterError: atob: the string is not correctly encoded base64"),
        ("atob('')", ""),
        ("(() => { try { atob('*'); } catch (e) { return e instanceof DOMException && e.code; } })()", "5"),
    ]);
}

#[test]
fn urls_and_search_params() {
    table(&[
        ("new URL('https://user:pw@example.com:8443/a/./b/../c?x=1&y=2#frag').href", "https://user:pw@example.com:8443/a/c?x=1&y=2#frag"),
        (
            "(() => { const u = new URL('https://user:pw@EXAMPLE.com:8443/p?q=1#h'); return [u.protocol, u.username, u.password, u.host, u.hostname, u.port, u.pathname, u.search, u.hash, u.origin].join(' '); })()",
            "https: user pw example.com:8443 example.com 8443 /p ?q=1 #h https://example.com:8443",
        ),
        ("new URL('../x?y', 'https://a.example/b/c/d').href", "https://a.example/b/x?y"),
        ("new URL('https://example.com:443/').port", ""),
        ("new URL('http://münchen.de/').hostname", "xn--mnchen-3ya.de"),
        ("new URL('/no-base')", "TypeError: Invalid URL: \"/no-base\""),
        ("URL.canParse('a:b') + ',' + URL.canParse('nope') + ',' + URL.parse('nope')", "true,false,null"),
        ("(() => { const u = new URL('https://a.example/p'); u.pathname = '/q r'; u.hash = 'x'; u.port = '8080'; return u.href; })()", "https://a.example:8080/q%20r#x"),
        ("(() => { const u = new URL('https://a.example/'); u.port = 'nope'; return u.href; })()", "https://a.example/"),
        ("(() => { const u = new URL('https://a.example/'); try { u.href = 'nope'; } catch (e) { return e.name; } })()", "TypeError"),
        ("JSON.stringify({ u: new URL('https://a.example/?q') })", "{\"u\":\"https://a.example/?q\"}"),
        // searchParams follows the URL and the URL follows it.
        ("(() => { const u = new URL('https://a.example/?a=1&b=2'); u.searchParams.append('c', '3 4'); return u.href; })()", "https://a.example/?a=1&b=2&c=3+4"),
        ("(() => { const u = new URL('https://a.example/?a=1'); u.searchParams.delete('a'); return u.href; })()", "https://a.example/"),
        ("(() => { const u = new URL('https://a.example/?a=1'); u.search = '?z=9'; return u.searchParams.get('z'); })()", "9"),
        ("new URLSearchParams('?a=1&b=x%20y&a=2&c=%E2%82%AC+d').toString()", "a=1&b=x+y&a=2&c=%E2%82%AC+d"),
        ("new URLSearchParams('a=1&a=2&b').getAll('a').join() + '|' + new URLSearchParams('b').get('b') + '|' + new URLSearchParams('').get('x')", "1,2||null"),
        ("new URLSearchParams({ x: 1, y: 'é' }).toString()", "x=1&y=%C3%A9"),
        ("new URLSearchParams([['a', '1'], ['b', '2']]).toString()", "a=1&b=2"),
        ("new URLSearchParams([['a']])", "TypeError: URLSearchParams: each pair must have exactly two items"),
        ("(() => { const p = new URLSearchParams('b=1&a=2&b=3&a=4'); p.sort(); return p.toString(); })()", "a=2&a=4&b=1&b=3"),
        ("(() => { const p = new URLSearchParams('a=1&b=2&a=3'); p.set('a', 'x'); return p.toString(); })()", "a=x&b=2"),
        ("(() => { const p = new URLSearchParams('a=1&a=2'); return [p.has('a'), p.has('a', '2'), p.has('a', '3'), p.size].join(); })()", "true,true,false,2"),
        ("Array.from(new URLSearchParams('a=1&b=2')).map(([k, v]) => k + v).join()", "a1,b2"),
        ("[...new URLSearchParams('a=1&b=2').keys()].join() + [...new URLSearchParams('a=1&b=2').values()].join()", "a,b1,2"),
        ("new URLSearchParams('x=a+b%2Bc').get('x')", "a b+c"),
    ]);
}

#[test]
fn crypto_random_values_and_uuids() {
    table(&[
        ("crypto.getRandomValues(new Uint8Array(16)).length", "16"),
        // 64 random bytes are not all zero but with probability 2^-512.
        ("crypto.getRandomValues(new Uint32Array(16)).some((x) => x !== 0)", "true"),
        ("(() => { const a = new Uint8Array(8); return crypto.getRandomValues(a) === a; })()", "true"),
        ("(() => { const b = new Uint8Array(8); crypto.getRandomValues(new Uint8Array(b.buffer, 2, 4)); return b[0] === 0 && b[1] === 0 && b[6] === 0 && b[7] === 0; })()", "true"),
        ("crypto.getRandomValues(new BigUint64Array(2)).length", "2"),
        ("crypto.getRandomValues(new Float32Array(2))", "TypeMismatchError: getRandomValues: the argument must be an integer typed array"),
        ("crypto.getRandomValues(new Uint8Array(65537))", "QuotaExceededError: getRandomValues: 65537 bytes asked for, at most 65536 at once"),
        ("crypto.getRandomValues(new Uint8Array(65536)).length", "65536"),
        ("/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID())", "true"),
        ("new Set(Array.from({ length: 100 }, () => crypto.randomUUID())).size", "100"),
    ]);
}

#[test]
fn structured_clone_and_microtasks() {
    table(&[
        ("(() => { const o = { a: [1, { b: 2n }], d: new Date(5), r: /x/gi, m: new Map([[{ k: 1 }, new Set([1])]]) }; const c = structuredClone(o); return [c !== o, c.a[1].b, c.d.getTime(), c.r.flags, [...c.m.keys()][0].k, [...c.m.values()][0].has(1)].join(); })()", "true,2,5,gi,1,true"),
        ("(() => { const o = { name: 'x' }; o.self = o; const c = structuredClone(o); return c.self === c && c !== o; })()", "true"),
        ("(() => { const s = { v: 1 }; const c = structuredClone([s, s]); return c[0] === c[1]; })()", "true"),
        ("(() => { const b = new Uint8Array([1, 2, 3]); const c = structuredClone({ b, v: new DataView(b.buffer, 1) }); b[0] = 9; return [c.b[0], c.v.getUint8(0), c.v.buffer === c.b.buffer].join(); })()", "1,2,true"),
        ("(() => { const e = structuredClone(new RangeError('far')); return e instanceof RangeError && e.message; })()", "far"),
        ("structuredClone(() => 1)", "DataCloneError: structuredClone: a function could not be cloned"),
        ("structuredClone({ s: Symbol('x') })", "DataCloneError: structuredClone: a Symbol could not be cloned"),
        ("structuredClone(new WeakMap())", "DataCloneError: structuredClone: a WeakMap could not be cloned"),
        ("structuredClone(Promise.resolve())", "DataCloneError: structuredClone: a Promise could not be cloned"),
        ("(() => { class P { constructor() { this.x = 1; } } const c = structuredClone(new P()); return Object.getPrototypeOf(c) === Object.prototype && c.x; })()", "1"),
        ("typeof structuredClone(new Number(3)) + structuredClone(new String('s'))", "objects"),
        // As deep as the heap allows, without native recursion.
        ("(() => { let v = {}; for (let i = 0; i < 100000; i++) v = [v]; let c = structuredClone(v), n = 0; while (Array.isArray(c)) { c = c[0]; n++; } return n; })()", "100000"),
        ("(() => { const order = []; queueMicrotask(() => order.push('micro')); order.push('sync'); return order.join(); })()", "sync"),
        ("queueMicrotask(1)", "TypeError: queueMicrotask: the argument must be a function"),
    ]);
}

#[test]
fn microtasks_run_before_the_job_ends() {
    let mut ctx = context();
    ctx.eval(Source::from_bytes("globalThis.seen = []; queueMicrotask(() => seen.push(1)); seen.push(0);")).expect("runs");
    ctx.run_jobs().expect("the jobs run");
    let seen = ctx.eval(Source::from_bytes("seen.join()")).expect("runs").to_string(&mut ctx).expect("a string");
    assert_eq!(seen.to_std_string_escaped(), "0,1");
}

#[test]
fn the_native_helpers_alone() {
    assert_eq!(utf8_decode(b"ok", true, false), Ok(("ok".to_owned(), 0)));
    assert_eq!(utf8_decode(&[0x61, 0xe2, 0x82], false, true), Ok(("a".to_owned(), 2)));
    assert!(utf8_decode(&[0x61, 0xff, 0xe2], true, true).is_err(), "an invalid byte before a held tail is still an error");
    assert_eq!(forgiving_base64_decode("YQ=="), Some(b"a".to_vec()));
    assert_eq!(forgiving_base64_decode("YQ="), None, "padding that does not make a multiple of four");
    assert_eq!(forgiving_base64_decode("Y"), None);
    assert_eq!(base64_encode(&[0, 255]), "AP8=");
    let mut url = parse_url("b?c", Some("https://x.example/a/")).expect("a URL");
    assert_eq!(url.as_str(), "https://x.example/a/b?c");
    set_url_part(&mut url, "hostname", "y.example").expect("a setter");
    assert_eq!(url.as_str(), "https://y.example/a/b?c");
    assert!(set_url_part(&mut url, "href", "::").is_err());
    assert!(set_url_part(&mut url, "nope", "").is_err());
    assert!(parse_url("nope", None).is_err());
}
