// The ledger explorer: the node's recent ledger entries by seqno (GET /node/ledger/entries),
// one entry's details, and its receipt verified in this page with the SDK's verifier against the
// service certificate. The receipt is shown as text that can be edited or replaced by one from
// elsewhere: whatever is in the box is what gets verified.
import { Fragment } from "preact";
import { useEffect, useState } from "preact/hooks";
import { verifyReceipt, type Receipt } from "consort-sdk/receipt";
import { fingerprint, getJson, ReadError } from "./api";

interface Write {
  key: string;
  keyEncoding?: string;
  keyTruncated?: boolean;
  keyBytes?: number;
  value?: unknown;
  removed?: boolean;
  truncated?: boolean;
  bytes?: number;
}
interface Table {
  name: string;
  writes: Write[];
  more: number;
}
export interface Entry {
  transactionId: string;
  view: number;
  seqno: number;
  kind: "transaction" | "signature" | "view_start" | "configuration";
  status: string;
  writeSetDigest: string;
  appVersion?: number;
  privateWrites?: boolean;
  inputsRecorded?: boolean;
  tables?: Table[];
  moreTables?: number;
  withheld?: { tables: number; writes: number };
  signature?: { node: string; root: string; coversTo: number };
  configuration?: unknown;
  unreadable?: string;
}
interface Entries {
  first: number;
  last: number;
  committed: string;
  reader: "anyone" | { member: string };
  entries: Entry[];
}

const PAGE = 20;
/** While a receipt is not there yet (no signature covers the transaction): how often and how
 * many times the page asks again before it leaves a button to ask. */
const RECEIPT_RETRY_MS = 500;
const RECEIPT_TRIES = 60;

const KIND_NAMES: Record<Entry["kind"], string> = {
  transaction: "transaction",
  signature: "signature",
  view_start: "view start",
  configuration: "node configuration",
};

function summary(e: Entry): string {
  if (e.kind === "signature" && e.signature) return `signs the root over 0…${e.signature.coversTo}`;
  if (e.kind !== "transaction") return "";
  const parts = (e.tables ?? []).map((t) => t.name);
  if (e.withheld) parts.push(`${e.withheld.tables} table(s) only members see`);
  if (e.privateWrites) parts.push("private writes (sealed)");
  return parts.join(", ");
}

/** `#ledger` or `#ledger/<view>.<seqno>`: the transaction to open, if any. */
export function selectedInHash(): string | null {
  const m = /^#ledger\/(\d+\.\d+)$/.exec(location.hash);
  return m ? m[1] : null;
}

export function LedgerView() {
  const [range, setRange] = useState<{ from?: number; to?: number }>(() => {
    const selected = selectedInHash();
    return selected ? { to: Number(selected.split(".")[1]) + PAGE / 2 } : {};
  });
  const [answer, setAnswer] = useState<Entries | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(selectedInHash());
  const [seqno, setSeqno] = useState("");

  async function load(r: { from?: number; to?: number }) {
    const query = [r.from !== undefined ? `from=${r.from}` : "", r.to !== undefined ? `to=${r.to}` : ""].filter(Boolean).join("&");
    try {
      setAnswer(await getJson<Entries>(`/node/ledger/entries${query ? `?${query}` : ""}`));
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  }
  useEffect(() => {
    load(range);
  }, [range]);

  const select = (txid: string | null) => {
    setOpen(txid);
    history.replaceState(null, "", txid ? `#ledger/${txid}` : "#ledger");
  };
  function goTo() {
    const n = Number(seqno);
    if (!/^\d+$/.test(seqno.trim()) || !Number.isSafeInteger(n)) {
      setError(`"${seqno}" is not a seqno (a whole number).`);
      return;
    }
    setRange({ to: n + PAGE / 2 });
  }
  const first = answer?.entries[0]?.seqno;
  const last = answer?.entries[answer.entries.length - 1]?.seqno;
  const entries = [...(answer?.entries ?? [])].reverse();
  const opened = entries.find((e) => e.transactionId === open);
  return (
    <div id="ledger">
      <section>
        <h2>Ledger</h2>
        {answer && (
          <p id="ledger-info">
            This node holds entries {answer.first}…{answer.last}; committed up to {answer.committed}.{" "}
            {answer.reader === "anyone"
              ? "You read as anyone: the writes to governance tables are shown; a member's certificate in this browser shows every public table."
              : `You read as member ${answer.reader.member.slice(0, 12)}…: every public table's writes are shown.`}{" "}
            Private writes stay sealed.
          </p>
        )}
        {error && <p class="error" id="ledger-error">{error}</p>}
        <p class="controls">
          <button id="ledger-newest" onClick={() => setRange({})}>Newest</button>{" "}
          <button id="ledger-newer" disabled={last === undefined || !answer || last >= answer.last} onClick={() => setRange({ from: (last ?? 0) + 1 })}>Newer</button>{" "}
          <button id="ledger-older" disabled={first === undefined || !answer || first <= answer.first} onClick={() => setRange({ to: (first ?? 1) - 1 })}>Older</button>{" "}
          <label>Seqno <input id="ledger-seqno" size={8} value={seqno} onInput={(e) => setSeqno(e.currentTarget.value)} onKeyDown={(e) => e.key === "Enter" && goTo()} /></label>{" "}
          <button id="ledger-go" onClick={goTo}>Go</button>
        </p>
        <table id="entries">
          <tr><th>Seqno</th><th>View</th><th>Kind</th><th>Status</th><th>Writes</th></tr>
          {entries.map((e) => (
            <Fragment key={e.transactionId}>
              <tr data-txid={e.transactionId} class={e.kind === "signature" ? "signature" : ""}>
                <td><a href={`#ledger/${e.transactionId}`} onClick={(ev) => { ev.preventDefault(); select(open === e.transactionId ? null : e.transactionId); }}>{e.seqno}</a></td>
                <td>{e.view}</td>
                <td class="kind">{e.kind === "signature" ? <strong>✎ signature</strong> : KIND_NAMES[e.kind]}{e.appVersion !== undefined ? ` (app v${e.appVersion})` : ""}</td>
                <td>{e.status}</td>
                <td class="tables">{summary(e)}</td>
              </tr>
              {opened === e && (
                <tr class="details">
                  <td colSpan={5}><EntryDetails entry={e} /></td>
                </tr>
              )}
            </Fragment>
          ))}
        </table>
      </section>
    </div>
  );
}

function shown(w: Write): string {
  if (w.removed) return "(removed)";
  const compact = JSON.stringify(w.value);
  const text = typeof w.value === "string" ? w.value : compact.length <= 100 ? compact : JSON.stringify(w.value, null, 2);
  return w.truncated ? `${text}… (${w.bytes} bytes, cut)` : text;
}

function EntryDetails({ entry }: { entry: Entry }) {
  return (
    <div class="entry" data-details={entry.transactionId}>
      <dl>
        <dt>Transaction</dt><dd>{entry.transactionId}</dd>
        <dt>Write set digest</dt><dd class="id">{entry.writeSetDigest}</dd>
        {entry.appVersion !== undefined && [<dt key="a">Run by</dt>, <dd key="b">app version {entry.appVersion}</dd>]}
        {entry.inputsRecorded && [<dt key="a">Inputs</dt>, <dd key="b">recorded (sealed; <code>consort replay</code> runs it again)</dd>]}
        {entry.privateWrites && [<dt key="a">Private writes</dt>, <dd key="b">sealed under the ledger secret</dd>]}
        {entry.signature && [
          <dt key="a">Signed by</dt>, <dd key="b" class="id">node {entry.signature.node}</dd>,
          <dt key="c">Root</dt>, <dd key="d" class="id">{entry.signature.root} (entries 0…{entry.signature.coversTo})</dd>,
        ]}
        {entry.unreadable && [<dt key="a">Unreadable</dt>, <dd key="b" class="error">{entry.unreadable}</dd>]}
      </dl>
      {entry.configuration !== undefined && <pre>{JSON.stringify(entry.configuration, null, 2)}</pre>}
      {(entry.tables ?? []).map((t) => (
        <table class="writes" key={t.name} data-table={t.name}>
          <tr><th colSpan={2}>{t.name}</th></tr>
          {t.writes.map((w) => (
            <tr key={w.key}>
              <td class="id key">{w.key}{w.keyTruncated ? `… (${w.keyBytes} bytes, cut)` : ""}{w.keyEncoding ? ` (${w.keyEncoding})` : ""}</td>
              <td><pre>{shown(w)}</pre></td>
            </tr>
          ))}
          {t.more > 0 && <tr><td colSpan={2}>… and {t.more} more write(s)</td></tr>}
        </table>
      ))}
      {entry.moreTables !== undefined && <p>… and {entry.moreTables} more table(s).</p>}
      {entry.withheld && <p>{entry.withheld.writes} write(s) to {entry.withheld.tables} other public table(s): only members see them.</p>}
      <ReceiptCheck entry={entry} />
    </div>
  );
}

type Verdict = { ok: true; text: string } | { ok: false; text: string };

/** The service certificate the page verifies against, and its fingerprint (read once). */
let serviceCert: Promise<{ pem: string; fingerprint: string }> | null = null;
function service() {
  serviceCert ??= getJson<{ service_certificate: string }>("/node/network").then(async (n) => ({
    pem: n.service_certificate,
    fingerprint: await fingerprint(n.service_certificate),
  }));
  serviceCert.catch(() => (serviceCert = null));
  return serviceCert;
}

/** What the verifier says about `text` as the receipt of `entry`. */
async function verdictOn(text: string, entry: Entry): Promise<Verdict> {
  let cert;
  try {
    cert = await service();
  } catch (e) {
    return { ok: false, text: `The service certificate cannot be read: ${(e as Error).message}` };
  }
  try {
    const tx = verifyReceipt(text, cert.pem);
    const receipt = JSON.parse(text) as Receipt;
    if (tx.txid !== entry.transactionId) return { ok: false, text: `The receipt verifies, but for transaction ${tx.txid}, not ${entry.transactionId}.` };
    if (receipt.leaf_components.write_set_digest !== entry.writeSetDigest)
      return { ok: false, text: "The receipt verifies, but its write set digest is not this entry's." };
    const by = tx.appVersion ? `, run by app version ${tx.appVersion.version}` : "";
    return { ok: true, text: `Verified in this page: transaction ${tx.txid}${by}, signed by node ${receipt.node_id.slice(0, 12)}…, whose certificate the service (SHA-256 ${cert.fingerprint}) endorses.` };
  } catch (e) {
    return { ok: false, text: `Does not verify: ${(e as Error).message}` };
  }
}

function ReceiptCheck({ entry }: { entry: Entry }) {
  const [text, setText] = useState<string | null>(null);
  const [waiting, setWaiting] = useState<string | null>(null);
  const [verdict, setVerdict] = useState<Verdict | null>(null);

  async function fetchReceipt() {
    setVerdict(null);
    for (let tries = 1; ; tries++) {
      try {
        const receipt = await getJson(`/app/receipt?transaction_id=${entry.transactionId}`);
        const pretty = JSON.stringify(receipt, null, 2);
        setWaiting(null);
        setText(pretty);
        setVerdict(await verdictOn(pretty, entry));
        return;
      } catch (e) {
        const pending = e instanceof ReadError && e.code === "TransactionPendingOrUnknown" && /pending/.test(e.message);
        if (!pending || tries >= RECEIPT_TRIES) {
          setWaiting(null);
          setVerdict({ ok: false, text: `No receipt: ${(e as Error).message}` });
          return;
        }
        setWaiting("No signature covers this transaction yet; asking again…");
        await new Promise((r) => setTimeout(r, RECEIPT_RETRY_MS));
      }
    }
  }
  useEffect(() => {
    fetchReceipt();
  }, [entry.transactionId]);

  return (
    <div class="receipt">
      <h3>Receipt</h3>
      {waiting && <p id="receipt-waiting">{waiting}</p>}
      {verdict && <p id="receipt-verdict" class={verdict.ok ? "verified" : "error"}>{verdict.ok ? "✔ " : "✘ "}{verdict.text}</p>}
      {text !== null && (
        <>
          <textarea id="receipt-text" rows={12} value={text} onInput={(e) => setText(e.currentTarget.value)} />
          <p>
            <button id="receipt-verify" onClick={async () => setVerdict(await verdictOn(text, entry))}>Verify this receipt</button>{" "}
            <button id="receipt-refetch" onClick={fetchReceipt}>Fetch it again</button>
          </p>
        </>
      )}
      {text === null && !waiting && verdict && <button id="receipt-refetch" onClick={fetchReceipt}>Ask again</button>}
    </div>
  );
}
