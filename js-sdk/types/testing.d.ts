import type { Client } from "./client";

export interface NetworkOptions {
  /** The app: a directory with `app.json` and `src/` (your build output), or a `bundle.json`. Default `./`. */
  app?: string;
  /** The `consort` binary (default: `$CONSORT_BIN`, the repository's build, or `consort` on the PATH). */
  consort?: string;
  /** Where the network keeps its files (default: a temporary directory, removed by `stop()`). */
  workspace?: string;
  env?: Record<string, string>;
  /** How many nodes (default 1); node i serves clients on the first node's port + 2i. */
  nodes?: number;
}

export interface Network {
  /** `https://127.0.0.1:<port>` */
  url: string;
  serviceCert: string;
  workspace: string;
  user0: Client;
  member0: Client;
  /** A client as `identity` (`user0`, `member0`, ...), or anonymous. */
  client(identity?: string): Client;
  /** The processes this network runs: the sandbox, then each node. */
  pids(): number[];
  /** Runs `consort gov <args>` as member0 and resolves with its output. */
  gov(...args: string[]): Promise<string>;
  /** Stops every process it started and removes a temporary workspace. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A real single-node network with the app deployed and the service open. */
export declare function startNetwork(options?: NetworkOptions): Promise<Network>;
