import type { Receipt, VerifiedTransaction } from "./receipt";

export interface ClientOptions {
  /** A node's address, `https://host:port`. */
  url: string;
  /** The service certificate (PEM): the only root trusted. */
  serviceCert: string;
  /** The caller's certificate and key (PEM); none for anonymous calls. */
  cert?: string;
  key?: string;
  /** How often a 503 is retried (default 5), and the first pause in ms (default 100, doubled each time). */
  retries?: number;
  backoffMs?: number;
}

export interface RequestOptions {
  /** An object is sent as JSON; a string or bytes as they are. */
  body?: unknown;
  headers?: Record<string, string>;
}

export declare class Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  /** `x-ms-ccf-transaction-id`, if the reply has one. */
  readonly txid: string | null;
  readonly ok: boolean;
  text(): string;
  json<T = any>(): T;
}

export declare class ClientError extends Error {
  readonly reply: Reply | null;
}

export interface WaitOptions {
  timeoutMs?: number;
  pollMs?: number;
}

/** Mutual-TLS client for Node.js: follows CCF's redirects, retries 503s with backoff. */
export declare class Client {
  constructor(options: ClientOptions);
  request(method: string, path: string, options?: RequestOptions): Promise<Reply>;
  get(path: string, options?: RequestOptions): Promise<Reply>;
  post(path: string, body?: unknown, options?: RequestOptions): Promise<Reply>;
  put(path: string, body?: unknown, options?: RequestOptions): Promise<Reply>;
  delete(path: string, options?: RequestOptions): Promise<Reply>;
  /** Resolves once `txid` is committed; rejects if it is invalid or after the timeout. */
  waitForCommit(txid: string, options?: WaitOptions): Promise<"Committed">;
  /** The receipt of a transaction, once committed. */
  receipt(txid: string, options?: WaitOptions): Promise<Receipt>;
  /** The receipt, verified against the service certificate. */
  verifiedReceipt(txid: string, options?: WaitOptions): Promise<VerifiedTransaction & { receipt: Receipt }>;
  /** Closes kept-alive connections. */
  close(): void;
}
