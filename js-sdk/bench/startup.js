// How long startNetwork takes to give a test a network it can call, and stop() to take it down:
// `node bench/startup.js [runs]` prints one JSON line per run ({startMs, firstCallMs, stopMs}).
// `BENCH_ONLY=SDK make bench` runs it on the release build (docs/perf.md has the figures).
import { fileURLToPath } from "node:url";
import { startNetwork } from "../src/testing.js";

const runs = Number(process.argv[2] ?? 5);
const app = fileURLToPath(new URL("../../samples/logging", import.meta.url));
for (let i = 0; i < runs; i++) {
  const t0 = performance.now();
  const net = await startNetwork({ app });
  const t1 = performance.now();
  const reply = await net.user0.post("/app/log/public", { id: i, msg: "startup" });
  if (reply.status !== 200) throw new Error(`the first call answered ${reply.status}: ${reply.text()}`);
  const t2 = performance.now();
  await net.stop();
  const t3 = performance.now();
  console.log(JSON.stringify({ startMs: t1 - t0, firstCallMs: t2 - t1, stopMs: t3 - t2 }));
}
