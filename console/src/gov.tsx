// The governance view: proposals with their actions rendered readably, each member's ballot and
// the final state; with a member's key loaded, a new proposal (or its dry-run), votes for or
// against, and withdrawal, each a COSE_Sign1 request signed in this page.
import { useEffect, useState } from "preact/hooks";
import type { MemberSigner } from "consort-sdk/gov";
import { describe, getJson, getText, gov, postCose, ReadError, unsent } from "./api";
import { MemberPanel } from "./member";

const ACCEPT = "export function vote (proposal, proposerId) { return true; }";
const REJECT = "export function vote (proposal, proposerId) { return false; }";

interface Proposal {
  proposalId: string;
  proposerId: string;
  proposalState: string;
  ballotCount: number;
  finalVotes?: Record<string, boolean>;
  failure?: { reason: string };
}
interface Action {
  name: string;
  args?: any;
}

/** One action, readably: a set_js_app as its endpoints and modules, anything else as its arguments. */
function ActionView({ action }: { action: Action }) {
  const args = action.args ?? {};
  if (action.name === "set_js_app" && args.bundle) {
    const endpoints: [string, string, any][] = [];
    for (const [path, methods] of Object.entries<any>(args.bundle.metadata?.endpoints ?? {})) {
      for (const [method, def] of Object.entries<any>(methods)) endpoints.push([method.toUpperCase(), path, def]);
    }
    const modules: any[] = args.bundle.modules ?? [];
    return (
      <div class="action">
        <strong>set_js_app</strong>
        <table class="endpoints">
          <tr><th>Method</th><th>Path</th><th>Function</th><th>Mode</th><th>Authentication</th></tr>
          {endpoints.map(([m, p, d]) => (
            <tr key={`${m} ${p}`}><td>{m}</td><td><code>{p}</code></td><td><code>{d.js_module}:{d.js_function}</code></td><td>{d.mode}</td><td>{(d.authn_policies ?? []).join(", ")}</td></tr>
          ))}
        </table>
        <p>Modules: {modules.map((m) => `${m.name} (${m.module?.length ?? 0} characters)`).join(", ")}</p>
      </div>
    );
  }
  return (
    <div class="action">
      <strong>{action.name}</strong>
      <dl>
        {Object.entries<any>(args).map(([k, v]) => [
          <dt key={`${k}-t`}>{k}</dt>,
          <dd key={`${k}-d`}>{typeof v === "string" ? <pre>{v}</pre> : <code>{JSON.stringify(v)}</code>}</dd>,
        ])}
      </dl>
    </div>
  );
}

/** What a write did: a message, and the transaction it ran as (the ledger explorer links to it). */
type Changed = (message: string, transactionId?: string) => void;

/** Each member's ballot on a proposal: its source, or null when the member has not voted. */
type Ballots = [string, string | null][];

async function ballotsOf(proposalId: string): Promise<Ballots> {
  const members = await getJson<{ value: { memberId: string }[] }>(gov("/service/members"));
  return Promise.all(
    members.value.map(async ({ memberId }): Promise<[string, string | null]> => {
      try {
        return [memberId, await getText(gov(`/members/proposals/${proposalId}/ballots/${memberId}`))];
      } catch (e) {
        if (e instanceof ReadError && e.status === 404) return [memberId, null];
        throw e;
      }
    }),
  );
}

function ProposalRow({ p, signer, onChange }: { p: Proposal; signer: MemberSigner | null; onChange: Changed }) {
  const [details, setDetails] = useState<{ actions: Action[]; ballots: Ballots } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [open, setOpen] = useState(false);
  const toggle = () => setOpen(!open);
  // Read when opened, and again when a refresh shows new ballots or a new state.
  useEffect(() => {
    if (!open) return;
    Promise.all([getJson<{ actions: Action[] }>(gov(`/members/proposals/${p.proposalId}/actions`)), ballotsOf(p.proposalId)]).then(
      ([body, ballots]) => {
        setDetails({ actions: body.actions ?? [], ballots });
        setError(null);
      },
      (e: Error) => setError(e.message),
    );
  }, [open, p.ballotCount, p.proposalState]);
  async function vote(ballot: string) {
    if (!signer) return;
    try {
      const body = JSON.stringify({ ballot });
      const a = await postCose(gov(`/members/proposals/${p.proposalId}/ballots/${signer.id}:submit`), await signer.sign("ballot", body, { proposalId: p.proposalId }));
      onChange(a.status === 200 ? `Voted on ${p.proposalId}: it is ${a.body.proposalState}.` : `The vote was refused: ${describe(a)}`, a.transactionId);
    } catch (e) {
      onChange(unsent(`Could not vote on ${p.proposalId}`, e));
    }
  }
  async function withdraw() {
    if (!signer) return;
    try {
      const a = await postCose(gov(`/members/proposals/${p.proposalId}:withdraw`), await signer.sign("withdrawal", "", { proposalId: p.proposalId }));
      onChange(a.status === 200 ? `Withdrew ${p.proposalId}.` : `The withdrawal was refused: ${describe(a)}`, a.transactionId);
    } catch (e) {
      onChange(unsent(`Could not withdraw ${p.proposalId}`, e));
    }
  }
  const votes = p.finalVotes ? Object.entries(p.finalVotes).map(([m, v]) => `${m.slice(0, 8)}…: ${v ? "for" : "against"}`).join(", ") : `${p.ballotCount} ballot(s)`;
  return (
    <>
      <tr data-proposal={p.proposalId}>
        <td class="id"><a href="#" onClick={(e) => { e.preventDefault(); toggle(); }}>{p.proposalId}</a></td>
        <td class="id">{p.proposerId}</td>
        <td class="state">{p.proposalState}</td>
        <td>{votes}{p.failure ? ` (${p.failure.reason})` : ""}</td>
        <td>
          {signer && p.proposalState === "Open" && (
            <>
              <button class="vote-for" onClick={() => vote(ACCEPT)}>Vote for</button>{" "}
              <button class="vote-against" onClick={() => vote(REJECT)}>Vote against</button>{" "}
              {p.proposerId === signer.id && <button class="withdraw" onClick={withdraw}>Withdraw</button>}
            </>
          )}
        </td>
      </tr>
      {open && (error || details) && (
        <tr class="actions">
          <td colSpan={5}>
            {error && <p class="error">{error}</p>}
            {details?.actions.map((a, i) => <ActionView key={i} action={a} />)}
            {details && (
              <table class="ballots">
                <tr><th>Member</th><th>Ballot</th><th>Final vote</th></tr>
                {details.ballots.map(([member, source]) => (
                  <tr key={member} data-member={member}>
                    <td class="id">{member}</td>
                    <td>{source === null ? <em>no ballot</em> : <pre>{source}</pre>}</td>
                    <td>{p.finalVotes && member in p.finalVotes ? (p.finalVotes[member] ? "for" : "against") : ""}</td>
                  </tr>
                ))}
              </table>
            )}
          </td>
        </tr>
      )}
    </>
  );
}

function NewProposal({ signer, onChange }: { signer: MemberSigner; onChange: Changed }) {
  const [text, setText] = useState('{"actions": []}');
  const [error, setError] = useState<string | null>(null);
  async function addUser(input: HTMLInputElement) {
    const cert = await input.files?.[0]?.text();
    if (!cert) return;
    let proposal: { actions: Action[] };
    try {
      proposal = JSON.parse(text);
    } catch {
      proposal = { actions: [] };
    }
    proposal.actions = [...(proposal.actions ?? []), { name: "set_user", args: { cert } }];
    setText(JSON.stringify(proposal, null, 2));
  }
  const [dryRun, setDryRun] = useState<DryRun | null>(null);
  /** Sends the proposal in the box, signed, to `:create` or `:dry-run`; null if not sent. */
  async function send(path: string) {
    setError(null);
    setDryRun(null);
    try {
      JSON.parse(text);
    } catch (e) {
      setError(`The proposal is not JSON: ${(e as Error).message}. Nothing was sent.`);
      return null;
    }
    try {
      return await postCose(gov(path), await signer.sign("proposal", text));
    } catch (e) {
      setError(unsent(path.endsWith(":create") ? "Could not propose" : "Could not dry-run", e));
      return null;
    }
  }
  async function propose() {
    const a = await send("/members/proposals:create");
    if (!a) return;
    if (a.status === 200) onChange(`Proposed ${a.body.proposalId}: it is ${a.body.proposalState}.`, a.transactionId);
    else setError(`The proposal was refused: ${describe(a)}`);
  }
  async function tryIt() {
    const a = await send("/members/proposals:dry-run");
    if (!a) return;
    if (a.status === 200) setDryRun(a.body as DryRun);
    else setError(`The dry-run was refused: ${describe(a)}`);
  }
  return (
    <section id="new-proposal">
      <h2>New proposal</h2>
      <p><label>Add set_user for a certificate <input type="file" id="user-cert" onChange={(e) => addUser(e.currentTarget)} /></label></p>
      <textarea id="proposal-text" rows={8} cols={100} value={text} onInput={(e) => setText(e.currentTarget.value)} />
      <p><button id="dry-run" onClick={tryIt}>Dry-run</button> <button id="propose" onClick={propose}>Propose</button></p>
      {error && <p class="error" id="proposal-error">{error}</p>}
      {dryRun && <DryRunView result={dryRun} />}
    </section>
  );
}

/** What `:dry-run` answers (docs/decisions.md, "App versions"). */
interface DryRun {
  valid: boolean;
  applied: boolean;
  failure?: { reason: string } | string | null;
  stateAt: string;
  writes: { table: string; key: string; old?: unknown; new?: unknown; private?: boolean; removed?: boolean }[];
  appReplay?: { window: number; replayed: number; differing: { transactionId: string }[]; error?: string };
}

const shown = (v: unknown) => (v === null || v === undefined ? "—" : typeof v === "string" ? v : JSON.stringify(v));

function DryRunView({ result }: { result: DryRun }) {
  const failure = typeof result.failure === "string" ? result.failure : result.failure?.reason;
  return (
    <div id="dry-run-result">
      <p>
        Dry-run on the state at {result.stateAt}: {result.applied ? "it would apply" : `it would not apply${failure ? `: ${failure}` : ""}`}. Nothing
        was stored.
      </p>
      <table class="writes">
        <tr><th>Table</th><th>Key</th><th>Before</th><th>After</th></tr>
        {result.writes.map((w) => (
          <tr key={`${w.table} ${w.key}`}>
            <td>{w.table}</td>
            <td class="id">{w.key}</td>
            {w.private ? <td colSpan={2}><em>private: {w.removed ? "removed" : "written"}</em></td> : [<td key="o"><pre>{shown(w.old)}</pre></td>, <td key="n"><pre>{w.new === null ? "(removed)" : shown(w.new)}</pre></td>]}
          </tr>
        ))}
      </table>
      {result.appReplay && (
        <p id="dry-run-replay">
          {result.appReplay.error
            ? `The proposed app could not be tried on recorded transactions: ${result.appReplay.error}`
            : `The proposed app, run on the last ${result.appReplay.replayed} recorded app transaction(s): ${result.appReplay.differing.length} would answer or write differently${result.appReplay.differing.length ? ` (${result.appReplay.differing.map((d) => d.transactionId).join(", ")})` : ""}.`}
        </p>
      )}
    </div>
  );
}

export function GovView() {
  const [signer, setSigner] = useState<MemberSigner | null>(null);
  const [proposals, setProposals] = useState<Proposal[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState<{ text: string; transactionId?: string } | null>(null);
  async function reload() {
    try {
      const list = await getJson<{ value: Proposal[] }>(gov("/members/proposals"));
      setProposals(list.value);
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  }
  useEffect(() => {
    reload();
  }, []);
  const changed: Changed = (text, transactionId) => {
    setMessage({ text, transactionId });
    reload();
  };
  return (
    <div id="governance">
      <MemberPanel signer={signer} onSigner={setSigner} onChange={reload} />
      {message && (
        <p id="gov-message">
          {message.text}
          {message.transactionId && <> Transaction <a id="gov-message-tx" href={`#ledger/${message.transactionId}`}>{message.transactionId}</a>.</>}
        </p>
      )}
      {signer && <NewProposal signer={signer} onChange={changed} />}
      <section>
        <h2>Proposals</h2>
        {error && <p class="error" id="gov-error">{error}</p>}
        <button id="refresh" onClick={reload}>Refresh</button>
        <table id="proposals">
          <tr><th>Proposal</th><th>Proposer</th><th>State</th><th>Votes</th><th></th></tr>
          {(proposals ?? []).map((p) => <ProposalRow key={p.proposalId} p={p} signer={signer} onChange={changed} />)}
        </table>
      </section>
    </div>
  );
}
