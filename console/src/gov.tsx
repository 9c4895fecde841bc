// The governance view: proposals with their actions rendered readably, their ballots and final
// state; with a member's key loaded, a new proposal, votes for or against, and withdrawal, each
// a COSE_Sign1 request signed in this page.
import { useEffect, useState } from "preact/hooks";
import type { MemberSigner } from "consort-sdk/gov";
import { describe, getJson, gov, postCose } from "./api";
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

function ProposalRow({ p, signer, onChange }: { p: Proposal; signer: MemberSigner | null; onChange: Changed }) {
  const [actions, setActions] = useState<Action[] | null>(null);
  const [open, setOpen] = useState(false);
  async function toggle() {
    if (!open && !actions) {
      const body = await getJson<{ actions: Action[] }>(gov(`/members/proposals/${p.proposalId}/actions`));
      setActions(body.actions ?? []);
    }
    setOpen(!open);
  }
  async function vote(ballot: string) {
    if (!signer) return;
    const body = JSON.stringify({ ballot });
    const a = await postCose(gov(`/members/proposals/${p.proposalId}/ballots/${signer.id}:submit`), await signer.sign("ballot", body, { proposalId: p.proposalId }));
    onChange(a.status === 200 ? `Voted on ${p.proposalId}: it is ${a.body.proposalState}.` : `The vote was refused: ${describe(a)}`, a.transactionId);
  }
  async function withdraw() {
    if (!signer) return;
    const a = await postCose(gov(`/members/proposals/${p.proposalId}:withdraw`), await signer.sign("withdrawal", "", { proposalId: p.proposalId }));
    onChange(a.status === 200 ? `Withdrew ${p.proposalId}.` : `The withdrawal was refused: ${describe(a)}`, a.transactionId);
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
      {open && actions && (
        <tr class="actions"><td colSpan={5}>{actions.map((a, i) => <ActionView key={i} action={a} />)}</td></tr>
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
  async function propose() {
    setError(null);
    try {
      JSON.parse(text);
    } catch (e) {
      setError(`The proposal is not JSON: ${(e as Error).message}. Nothing was sent.`);
      return;
    }
    const a = await postCose(gov("/members/proposals:create"), await signer.sign("proposal", text));
    if (a.status === 200) onChange(`Proposed ${a.body.proposalId}: it is ${a.body.proposalState}.`, a.transactionId);
    else setError(`The proposal was refused: ${describe(a)}`);
  }
  return (
    <section id="new-proposal">
      <h2>New proposal</h2>
      <p><label>Add set_user for a certificate <input type="file" id="user-cert" onChange={(e) => addUser(e.currentTarget)} /></label></p>
      <textarea id="proposal-text" rows={8} cols={100} value={text} onInput={(e) => setText(e.currentTarget.value)} />
      <p><button id="propose" onClick={propose}>Propose</button></p>
      {error && <p class="error" id="proposal-error">{error}</p>}
    </section>
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
