// Reading the node the page came from: the same endpoints, with the same access, as any client.

/** A request that did not answer what the page needs: the path, and why (with the node's
 * status and error code when it answered). */
export class ReadError extends Error {
  constructor(message: string, readonly status?: number, readonly code?: string) {
    super(message);
  }
}

/** GET `path` on this node, as JSON. */
export async function getJson<T = unknown>(path: string): Promise<T> {
  const reply = await fetchOrExplain(path);
  try {
    return (await reply.json()) as T;
  } catch {
    throw new ReadError(`${path}: the node's answer is not JSON`);
  }
}

/** GET `path` on this node, as text. */
export async function getText(path: string): Promise<string> {
  return (await fetchOrExplain(path)).text();
}

async function fetchOrExplain(path: string): Promise<Response> {
  let reply: Response;
  try {
    reply = await fetch(path, { headers: { accept: "application/json" } });
  } catch (e) {
    throw new ReadError(`${path}: the node cannot be reached (${(e as Error).message}); is it down?`);
  }
  if (!reply.ok) {
    let message = `${reply.status} ${reply.statusText}`;
    let code: string | undefined;
    try {
      const body = await reply.json();
      if (body?.error?.message) message = `${reply.status}: ${body.error.message}`;
      code = body?.error?.code;
    } catch {
      // not JSON: the status says it
    }
    throw new ReadError(`${path}: ${message}`, reply.status, code);
  }
  return reply;
}

/** The SHA-256 fingerprint of a PEM certificate, as `AB:CD:...` (as openssl prints it). */
export async function fingerprint(pem: string): Promise<string> {
  const base64 = pem.replace(/-----[^-]+-----|\s+/g, "");
  const der = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0").toUpperCase()).join(":");
}

/** What a write answered: its status, its body (JSON when it is), and the transaction it ran
 * as, when it ran one. */
export interface Answer {
  status: number;
  body: any;
  transactionId?: string;
}

/** POSTs a COSE_Sign1 `body` (signed in this page) to `path` on this node. */
export async function postCose(path: string, body: Uint8Array): Promise<Answer> {
  let reply: Response;
  try {
    reply = await fetch(path, { method: "POST", headers: { "content-type": "application/cose" }, body: body as BodyInit });
  } catch (e) {
    throw new ReadError(`${path}: the node cannot be reached (${(e as Error).message}); is it down?`);
  }
  const text = await reply.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // kept as text
  }
  return { status: reply.status, body: parsed, transactionId: reply.headers.get("x-ms-ccf-transaction-id") ?? undefined };
}

/** What the page says when a write could not be sent or answered (`e` from [`postCose`] or
 * from signing): the node may not have received it, or may have and not answered. */
export function unsent(what: string, e: unknown): string {
  const why = (e as Error).message;
  return e instanceof ReadError ? `${what}: ${why}. If it reached the node, Refresh shows whether it took effect.` : `${what}: ${why}. Nothing was sent.`;
}

/** The message of an error answer, or the answer itself. */
export function describe(a: Answer): string {
  const e = a.body?.error;
  return e ? `${a.status} ${e.code}: ${e.message}` : `${a.status}: ${typeof a.body === "string" ? a.body : JSON.stringify(a.body)}`;
}

/** `path` under the governance API version this console speaks. */
export const gov = (path: string) => `/gov${path}${path.includes("?") ? "&" : "?"}api-version=2024-07-01`;
