// Reading the node the page came from: the same endpoints, with the same access, as any client.

/** A request that did not answer what the page needs: the path, and why. */
export class ReadError extends Error {}

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
    try {
      const body = await reply.json();
      if (body?.error?.message) message = `${reply.status}: ${body.error.message}`;
    } catch {
      // not JSON: the status says it
    }
    throw new ReadError(`${path}: ${message}`);
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
