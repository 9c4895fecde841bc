// The service view: the service, its nodes (which is primary), members, users, the app (its
// endpoints, from /app/api, and its versions), the constitution's source and the JS limits.
import { useEffect, useState } from "preact/hooks";
import { fingerprint, getJson, getText } from "./api";

interface Network {
  service_status: string;
  service_certificate: string;
  current_view: number;
  primary_id: string | null;
  recovery_count: number;
}
interface NodeInfo {
  node_id: string;
  status: string;
  primary: boolean;
  rpc_address?: string;
  node_address?: string;
}
interface Member {
  memberId: string;
  status: string;
  recoveryRole?: string;
  memberData: unknown;
}
interface User {
  userId: string;
  userData: unknown;
}
interface Version {
  version: number;
  bundleDigest: string;
  proposalId: string;
  transactionId: string;
}
interface OpenApi {
  paths?: Record<string, Record<string, unknown>>;
}

export interface ServiceData {
  network: Network;
  fingerprint: string;
  nodes: NodeInfo[];
  members: Member[];
  users: User[];
  endpoints: [string, string][];
  versions: Version[];
  constitution: string;
  limits: Record<string, unknown>;
}

/** Everything the view shows, read in parallel. */
export async function loadService(): Promise<ServiceData> {
  const [network, nodes, members, users, api, versions, constitution, metrics] = await Promise.all([
    getJson<Network>("/node/network"),
    getJson<{ nodes: NodeInfo[] }>("/node/network/nodes"),
    getJson<{ value: Member[] }>("/gov/service/members?api-version=2024-07-01"),
    getJson<{ value: User[] }>("/gov/service/users?api-version=2024-07-01"),
    getJson<OpenApi>("/app/api").catch(() => ({}) as OpenApi),
    getJson<{ value: Version[] }>("/gov/service/javascript-app/versions?api-version=2024-07-01"),
    getText("/gov/service/constitution?api-version=2024-07-01"),
    getJson<Record<string, unknown>>("/node/js_metrics"),
  ]);
  const endpoints: [string, string][] = [];
  for (const [path, methods] of Object.entries(api.paths ?? {})) {
    for (const method of Object.keys(methods)) endpoints.push([method.toUpperCase(), path]);
  }
  const limitNames = ["max_heap_size", "max_stack_size", "max_execution_time", "max_cached_interpreters"];
  const limits = Object.fromEntries(limitNames.filter((k) => k in metrics).map((k) => [k, metrics[k]]));
  return {
    network,
    fingerprint: await fingerprint(network.service_certificate),
    nodes: nodes.nodes,
    members: members.value,
    users: users.value,
    endpoints,
    versions: versions.value,
    constitution,
    limits,
  };
}

const json = (v: unknown) => (v === null || v === undefined ? "" : JSON.stringify(v));

export function ServiceView() {
  const [data, setData] = useState<ServiceData | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    loadService().then(setData, (e: Error) => setError(e.message));
  }, []);
  if (error) return <p class="error" id="service-error">{error}</p>;
  if (!data) return <p>Reading the service…</p>;
  const { network } = data;
  return (
    <div id="service">
      <section>
        <h2>Service</h2>
        <dl>
          <dt>Status</dt>
          <dd id="service-status">{network.service_status}</dd>
          <dt>Certificate (SHA-256)</dt>
          <dd class="id" id="service-fingerprint">{data.fingerprint}</dd>
          <dt>View</dt>
          <dd>{network.current_view}</dd>
          <dt>Recoveries</dt>
          <dd id="recovery-count">{network.recovery_count}</dd>
        </dl>
      </section>
      <section>
        <h2>Nodes ({data.nodes.length})</h2>
        <table id="nodes">
          <tr><th>Node</th><th>Status</th><th>Role</th><th>Client address</th><th>Node address</th></tr>
          {data.nodes.map((n) => (
            <tr key={n.node_id} data-node={n.node_id}>
              <td class="id">{n.node_id}</td>
              <td>{n.status}</td>
              <td class={n.primary ? "primary" : ""}>{n.primary ? "primary" : "backup"}</td>
              <td>{n.rpc_address ?? ""}</td>
              <td>{n.node_address ?? ""}</td>
            </tr>
          ))}
        </table>
      </section>
      <section>
        <h2>Members ({data.members.length})</h2>
        <table id="members">
          <tr><th>Member</th><th>Status</th><th>Recovery role</th><th>Data</th></tr>
          {data.members.map((m) => (
            <tr key={m.memberId}>
              <td class="id">{m.memberId}</td>
              <td>{m.status}</td>
              <td>{m.recoveryRole ?? ""}</td>
              <td><code>{json(m.memberData)}</code></td>
            </tr>
          ))}
        </table>
      </section>
      <section>
        <h2>Users ({data.users.length})</h2>
        <table id="users">
          <tr><th>User</th><th>Data</th></tr>
          {data.users.map((u) => (
            <tr key={u.userId}>
              <td class="id">{u.userId}</td>
              <td><code>{json(u.userData)}</code></td>
            </tr>
          ))}
        </table>
      </section>
      <section>
        <h2>App</h2>
        <table id="endpoints">
          <tr><th>Method</th><th>Path</th></tr>
          {data.endpoints.map(([method, path]) => (
            <tr key={`${method} ${path}`}><td>{method}</td><td><code>{path}</code></td></tr>
          ))}
        </table>
        {data.versions.length > 0 && (
          <table id="versions">
            <tr><th>Version</th><th>Bundle digest</th><th>Proposal</th><th>Transaction</th></tr>
            {data.versions.map((v) => (
              <tr key={v.version}>
                <td>{v.version}</td>
                <td class="id">{v.bundleDigest}</td>
                <td class="id">{v.proposalId}</td>
                <td>{v.transactionId}</td>
              </tr>
            ))}
          </table>
        )}
      </section>
      <section>
        <h2>JS runtime limits</h2>
        <dl id="limits">
          {Object.entries(data.limits).map(([k, v]) => [<dt key={`${k}-t`}>{k}</dt>, <dd key={`${k}-d`}>{String(v)}</dd>])}
        </dl>
      </section>
      <section>
        <h2>Constitution</h2>
        <pre id="constitution">{data.constitution}</pre>
      </section>
    </div>
  );
}
