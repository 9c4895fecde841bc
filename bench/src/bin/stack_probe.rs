//! `stack-probe`: how much native stack does Boa use per nesting level of each shape a script can
//! nest (issue 20)? For each shape it finds the deepest nesting that a thread with a known stack
//! survives, with Boa's own limits out of the way, and prints the stack that one level costs.
//! A trial that overflows the stack aborts its process, so every trial runs in a child process
//! (this binary again, `--trial SHAPE DEPTH`). For the shapes a script builds as data, it also
//! measures the heap one level takes (what the JS heap limit counts), and so how many bytes of
//! stack a byte of heap can make the engine use: the stack a script thread needs for the heap
//! limit to trip first is that ratio times the heap limit.
//!
//! `cargo run --release -p consort-bench --bin stack-probe [SHAPE...]`

use std::process::{Command, ExitCode, Stdio};

#[global_allocator]
static ALLOC: consort_alloc::CountingAllocator = consort_alloc::CountingAllocator;
use std::time::{Duration, Instant};

/// The stack of the thread a trial runs on.
const STACK_BYTES: usize = 4 << 20;
/// No shape is searched deeper than this.
const DEPTH_MAX: u64 = 4_000_000;
/// A trial that runs longer counts as surviving its depth (the search stops there).
const TRIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// A shape's name and the script that nests it `d` levels deep.
type Shape = (&'static str, fn(u64) -> String);

/// For the shapes built as data: the script that builds `d` levels (what the heap holds when
/// the engine recurses over them).
fn builds() -> Vec<Shape> {
    let nested: fn(u64) -> String = |d| format!("let a = []; for (let i = 0; i < {d}; i++) a = [a]; 0");
    vec![
        ("json-stringify", nested),
        ("array-tostring", nested),
        ("array-join", nested),
        ("array-flat", nested),
        ("proxy-chain", |d| format!("let p = {{}}; for (let i = 0; i < {d}; i++) p = new Proxy(p, {{}}); 0")),
        ("prototype-chain", |d| format!("let o = {{}}; for (let i = 0; i < {d}; i++) o = Object.create(o); 0")),
        ("bound-instanceof", |d| format!("let f = function () {{}}; for (let i = 0; i < {d}; i++) f = f.bind(null); 0")),
    ]
}

/// The heap bytes per level the build script of `shape` leaves live at `depth` levels.
fn heap_per_level(shape: &str, depth: u64) -> Option<u64> {
    let (_, build) = builds().into_iter().find(|(n, _)| *n == shape)?;
    let (base_src, src) = (build(0), build(depth));
    let run = std::thread::Builder::new().stack_size(STACK_BYTES).spawn(move || {
        let live = |src: &str| {
            let mut ctx = boa_engine::Context::builder().instructions_remaining(usize::MAX).build().ok()?;
            let before = consort_alloc::thread_live_bytes();
            ctx.eval(boa_engine::Source::from_bytes(src)).ok()?;
            let after = consort_alloc::thread_live_bytes();
            drop(ctx);
            Some(after - before)
        };
        Some((live(&src)? - live(&base_src)?).max(0) as u64)
    });
    run.ok()?.join().ok().flatten().map(|bytes| bytes / depth.max(1))
}

/// Every shape. Each script ends by evaluating to a value or throwing; only a native recursion
/// without a check aborts.
fn shapes() -> Vec<Shape> {
    fn nested_array(d: u64) -> String {
        format!("let a = []; for (let i = 0; i < {d}; i++) a = [a];")
    }
    vec![
        ("json-stringify", |d| format!("{} JSON.stringify(a).length", nested_array(d))),
        ("array-tostring", |d| format!("{} String(a).length", nested_array(d))),
        ("array-join", |d| format!("{} a.join().length", nested_array(d))),
        ("array-flat", |d| format!("{} a.flat(Infinity).length", nested_array(d))),
        ("json-parse", |d| format!("JSON.parse('['.repeat({d}) + ']'.repeat({d}))")),
        ("eval-brackets", |d| format!("eval('['.repeat({d}) + ']'.repeat({d}))")),
        ("eval-parens", |d| format!("eval('('.repeat({d}) + '0' + ')'.repeat({d}))")),
        ("eval-unary", |d| format!("eval('!'.repeat({d}) + '0')")),
        ("eval-assign", |d| format!("var x; eval('x='.repeat({d}) + '0')")),
        ("eval-conditional", |d| format!("eval('1?'.repeat({d}) + '0' + ':0'.repeat({d}))")),
        ("eval-arrow", |d| format!("eval('x=>'.repeat({d}) + '0')")),
        ("eval-if", |d| format!("eval('if(1)'.repeat({d}) + '0')")),
        ("eval-else-if", |d| format!("eval('if(0){{}}else '.repeat({d}) + '0')")),
        ("eval-template", |d| format!("eval('`${{'.repeat({d}) + '0' + '}}`'.repeat({d}))")),
        ("eval-new", |d| format!("eval('new '.repeat({d}) + 'Object')")),
        ("eval-typeof", |d| format!("eval('typeof '.repeat({d}) + '0')")),
        ("eval-exponent", |d| format!("eval('1**'.repeat({d}) + '1')")),
        ("eval-sum", |d| format!("eval('1+'.repeat({d}) + '1')")),
        ("function-body", |d| format!("new Function('return ' + '['.repeat({d}) + ']'.repeat({d}))()")),
        ("proxy-chain", |d| format!("let p = {{}}; for (let i = 0; i < {d}; i++) p = new Proxy(p, {{}}); p.x")),
        ("prototype-chain", |d| format!("let o = {{}}; for (let i = 0; i < {d}; i++) o = Object.create(o); o.x")),
        ("bound-chain", |d| format!("let f = function () {{ return 1 }}; for (let i = 0; i < {d}; i++) f = f.bind(null); f()")),
        ("bound-instanceof", |d| format!("let f = function () {{}}; for (let i = 0; i < {d}; i++) f = f.bind(null); ({{}}) instanceof f")),
        ("linked-list-gc", |d| {
            format!("let l = null; for (let i = 0; i < {d}; i++) l = {{ next: l }}; let junk = []; for (let i = 0; i < 200000; i++) junk.push({{ i }}); 0")
        }),
        ("regexp-groups", |d| format!("new RegExp('('.repeat({d}) + ')'.repeat({d})).test('')")),
    ]
}

/// Runs one trial in this process: prints how the script ended (an abort prints nothing).
fn trial(shape: &str, depth: u64) -> ExitCode {
    let Some((_, script)) = shapes().into_iter().find(|(n, _)| *n == shape) else {
        eprintln!("no shape {shape}");
        return ExitCode::FAILURE;
    };
    let source = script(depth);
    let run = std::thread::Builder::new().stack_size(STACK_BYTES).spawn(move || {
        // The workspace builds Boa with its `fuzz` feature (an instruction budget): unbounded here.
        let Ok(mut ctx) = boa_engine::Context::builder().instructions_remaining(usize::MAX).build() else {
            return "no context".to_owned();
        };
        ctx.runtime_limits_mut().set_recursion_limit(usize::MAX);
        ctx.runtime_limits_mut().set_stack_size_limit(usize::MAX);
        match ctx.eval(boa_engine::Source::from_bytes(&source)) {
            Ok(_) => "value".to_owned(),
            Err(e) => format!("threw {}", e.to_string().replace('\n', " ").chars().take(80).collect::<String>()),
        }
    });
    match run.map(|h| h.join()) {
        Ok(Ok(outcome)) => {
            println!("{outcome}");
            ExitCode::SUCCESS
        }
        _ => ExitCode::FAILURE,
    }
}

enum Outcome {
    Survived(String),
    Aborted,
    TimedOut,
}

fn run_trial(shape: &str, depth: u64) -> Outcome {
    let exe = std::env::current_exe().expect("this binary");
    let mut child = Command::new(exe)
        .args(["--trial", shape, &depth.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("a trial process");
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut out = String::new();
            if let Some(mut o) = child.stdout.take() {
                use std::io::Read;
                let _ = o.read_to_string(&mut out);
            }
            return if status.success() { Outcome::Survived(out.trim().to_owned()) } else { Outcome::Aborted };
        }
        if started.elapsed() > TRIAL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Outcome::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The deepest nesting that survived, the shallowest that aborted (if any), and how the deepest
/// survivor ended.
fn search(shape: &str) -> (u64, Option<u64>, String) {
    let (mut ok, mut ended) = (0, String::from("-"));
    let mut depth = 64;
    let bad = loop {
        match run_trial(shape, depth) {
            Outcome::Survived(how) => {
                (ok, ended) = (depth, how);
                if depth >= DEPTH_MAX {
                    return (ok, None, ended);
                }
                depth = (depth * 4).min(DEPTH_MAX);
            }
            Outcome::TimedOut => return (ok, None, format!("{ended} (deeper timed out at {depth})")),
            Outcome::Aborted => break depth,
        }
    };
    let mut bad = bad;
    while bad - ok > ok / 20 + 1 {
        let mid = ok + (bad - ok) / 2;
        match run_trial(shape, mid) {
            Outcome::Survived(how) => (ok, ended) = (mid, how),
            Outcome::Aborted | Outcome::TimedOut => bad = mid,
        }
    }
    (ok, Some(bad), ended)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, shape, depth] = args.as_slice() {
        if flag == "--trial" {
            return trial(shape, depth.parse().unwrap_or(0));
        }
    }
    println!("Native stack per nesting level, Boa 0.22, a {} MiB thread, Boa's limits off:", STACK_BYTES >> 20);
    println!(
        "| shape | deepest that survived | shallowest that aborted | stack per level (bytes) | heap per level (bytes) | stack per heap byte | how the deepest ended |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for (name, _) in shapes() {
        if !args.is_empty() && !args.iter().any(|a| a == name) {
            continue;
        }
        let (ok, bad, ended) = search(name);
        let stack = bad.map(|b| STACK_BYTES as u64 / b.max(1));
        let heap = heap_per_level(name, 10_000);
        let ratio = match (stack, heap) {
            (Some(s), Some(h)) if h > 0 => format!("{:.1}", s as f64 / h as f64),
            _ => "—".to_owned(),
        };
        let show = |v: Option<u64>| v.map_or("—".to_owned(), |v| v.to_string());
        println!(
            "| {name} | {ok} | {} | {} | {} | {ratio} | {ended} |",
            bad.map_or("none".to_owned(), |b| b.to_string()),
            show(stack),
            show(heap)
        );
    }
    ExitCode::SUCCESS
}
