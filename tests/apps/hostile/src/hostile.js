// Scripts that try to take a node down. tests/e2e/hostile.rs calls each while another client
// keeps calling `ok`.
export function ok() { return { body: "ok" }; }
export function endless() { while (true) {} }
export function spread() { function inner(n) { let s = 0; for (let i = 0; i < n; i++) s += i; return s; } while (true) inner(1000); }
export function callbacks() { const big = Array.from({ length: 20000 }, (_, i) => i); while (true) big.reduce((a, b) => a + b, 0); }
export function recursion() { function f(n) { return f(n + 1) + 1; } return { body: f(0) }; }
export function heap() { const a = []; while (true) a.push(new Array(1000).fill(1)); }
export function strings() { let s = "x"; while (true) s += s; }
export function huge() { return { body: "x".repeat(200 * 1024 * 1024) }; }
export function throwsNonError() { throw { not: "an Error" }; }
export function crash() { let o = {}; for (let i = 0; i < 300000; i++) o = { o }; return { body: JSON.stringify(o).length }; }
