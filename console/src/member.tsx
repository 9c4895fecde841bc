// The member the page signs as: its private key and certificate, read from local files. They
// never leave the page: the key goes into WebCrypto (not extractable) and only signed requests
// are sent.
import { useState } from "preact/hooks";
import { memberSigner, type MemberSigner } from "consort-sdk/gov";
import { describe, gov, postCose, unsent } from "./api";

async function readFile(input: HTMLInputElement | null): Promise<string | null> {
  const file = input?.files?.[0];
  return file ? file.text() : null;
}

export function MemberPanel({ signer, onSigner, onChange }: { signer: MemberSigner | null; onSigner: (s: MemberSigner | null) => void; onChange: () => void }) {
  const [message, setMessage] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  async function load() {
    setError(null);
    setMessage(null);
    const key = await readFile(document.getElementById("member-key") as HTMLInputElement);
    const cert = await readFile(document.getElementById("member-cert") as HTMLInputElement);
    if (!key || !cert) {
      setError("Choose both files: the member's private key and its certificate (PEM).");
      return;
    }
    try {
      onSigner(await memberSigner({ key, cert }));
    } catch (e) {
      onSigner(null);
      setError(`Not loaded: ${(e as Error).message}. Nothing was sent.`);
    }
  }
  async function ack() {
    if (!signer) return;
    setError(null);
    try {
      const update = await postCose(gov(`/members/state-digests/${signer.id}:update`), await signer.sign("state_digest", ""));
      if (update.status !== 200) {
        setError(`Could not read the state digest: ${describe(update)}`);
        return;
      }
      const body = JSON.stringify({ stateDigest: update.body.stateDigest });
      const acked = await postCose(gov(`/members/state-digests/${signer.id}:ack`), await signer.sign("ack", body));
      if (acked.status >= 300) setError(`Not acknowledged: ${describe(acked)}`);
      else setMessage("Membership acknowledged: this member is now Active.");
    } catch (e) {
      setError(unsent("Could not acknowledge membership", e));
    }
    onChange();
  }
  return (
    <section id="member">
      <h2>Signing as</h2>
      {signer ? (
        <p>
          Member <span class="id" id="member-id">{signer.id}</span> ({signer.alg === -7 ? "ES256" : "ES384"}){" "}
          <button id="ack" onClick={ack}>Acknowledge membership</button>{" "}
          <button id="unload" onClick={() => onSigner(null)}>Forget the key</button>
        </p>
      ) : (
        <p>
          <label>Private key <input type="file" id="member-key" /></label>{" "}
          <label>Certificate <input type="file" id="member-cert" /></label>{" "}
          <button id="load-member" onClick={load}>Load</button>
        </p>
      )}
      {message && <p id="member-message">{message}</p>}
      {error && <p class="error" id="member-error">{error}</p>}
    </section>
  );
}
