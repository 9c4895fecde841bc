// startNetwork: a real single-node Consort network for an app's tests (node:test, vitest, jest),
// with the app deployed and the service open, and clients for user0 and member0.
import { spawn, execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { Client } from "./client.js";

const READY_WAIT_MS = 60_000;
const STOP_WAIT_MS = 20_000;

/** The `consort` binary: `options.consort`, `$CONSORT_BIN`, one built in the repository this SDK
 * sits in, or `consort` on the PATH. */
function consortBinary(explicit) {
  if (explicit) return explicit;
  if (process.env.CONSORT_BIN) return process.env.CONSORT_BIN;
  const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
  for (const profile of ["debug", "release"]) {
    const built = join(repo, "target", profile, "consort");
    if (existsSync(built)) return built;
  }
  return "consort";
}

/** A port free on 127.0.0.1 now (the OS's choice). */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Starts `consort sandbox` with `app` (a directory with `app.json` and `src/`, or a
 * `bundle.json`) deployed and the service open, on `nodes` nodes (1 by default; node i
 * serves clients on the first node's port + 2i). Resolves with the network once it answers:
 * `{url, serviceCert, workspace, user0, member0, client(identity), gov(...args), stop()}`.
 * Call `stop()` (or `await using`) when the tests are done: it stops every process it started.
 */
export async function startNetwork({ app = "./", consort, workspace, env = {}, nodes = 1 } = {}) {
  const appPath = resolve(app);
  if (!existsSync(appPath)) throw new Error(`startNetwork: no app at ${appPath}`);
  const binary = consortBinary(consort);
  const ws = workspace ? resolve(workspace) : mkdtempSync(join(tmpdir(), "consort-network-"));
  const port = await freePort();
  const args = ["sandbox", "--workspace", ws, "--rpc-port", String(port), "--app", appPath];
  // Node i serves clients on port + 2i (and peers on port + 2i + 1).
  if (nodes > 1) args.push("--nodes", String(nodes));
  const child = spawn(binary, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  const nodePids = [];
  let stderr = "";
  child.stderr.on("data", (c) => (stderr = (stderr + c).slice(-8192)));
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`startNetwork: the network did not start within ${READY_WAIT_MS} ms\n${stderr}`)), READY_WAIT_MS);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`startNetwork: cannot run ${binary} (set CONSORT_BIN or pass {consort}): ${e.message}`));
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`startNetwork: consort sandbox exited (${code}) before it was ready\n${stderr}`));
    });
    createInterface({ input: child.stdout }).on("line", (line) => {
      const pid = /^PID node\d+ (\d+)$/.exec(line);
      if (pid) nodePids.push(Number(pid[1]));
      if (line.startsWith("READY ")) {
        clearTimeout(timer);
        resolveUrl(line.slice("READY ".length).trim());
      }
    });
  }).catch(async (e) => {
    await stopProcesses(child, nodePids);
    throw e;
  });
  child.removeAllListeners("exit");
  const common = join(ws, "sandbox_common");
  const pem = (name) => readFileSync(join(common, name), "utf8");
  const serviceCert = pem("service_cert.pem");
  const clients = [];
  const client = (identity) => {
    const c = identity
      ? new Client({ url, serviceCert, cert: pem(`${identity}_cert.pem`), key: pem(`${identity}_privk.pem`) })
      : new Client({ url, serviceCert });
    clients.push(c);
    return c;
  };
  let stopped = false;
  const network = {
    url,
    serviceCert,
    workspace: ws,
    user0: client("user0"),
    member0: client("member0"),
    client,
    /** The processes this network runs: the sandbox, then each node. */
    pids: () => [child.pid, ...nodePids],
    /** Runs `consort gov <args>` as member0 (e.g. `propose --set-js-app DIR --accept`); its output. */
    gov: (...args) =>
      new Promise((resolveGov, reject) =>
        execFile(binary, ["gov", "--url", url, "--service-cert", join(common, "service_cert.pem"), "--member", join(common, "member0"), ...args], (e, out, err) =>
          e ? reject(new Error(`consort gov ${args.join(" ")}: ${err || e.message}`)) : resolveGov(out),
        ),
      ),
    /** Stops the network (SIGTERM, then SIGKILL after 20 s) and removes a temporary workspace. */
    async stop() {
      if (stopped) return;
      stopped = true;
      clients.forEach((c) => c.close());
      await stopProcesses(child, nodePids);
      if (!workspace) rmSync(ws, { recursive: true, force: true });
    },
    [Symbol.asyncDispose]() {
      return this.stop();
    },
  };
  return network;
}

/** SIGTERM to the sandbox (it stops its nodes); SIGKILL to it and each node it named if it
 * has not exited in time. Only processes this harness started are signalled, by pid. */
async function stopProcesses(child, nodePids) {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timedOut = await Promise.race([exited.then(() => false), new Promise((r) => setTimeout(() => r(true), STOP_WAIT_MS).unref())]);
    if (timedOut) {
      child.kill("SIGKILL");
      await exited;
    }
  }
  for (const pid of nodePids) if (alive(pid)) process.kill(pid, "SIGKILL");
}
