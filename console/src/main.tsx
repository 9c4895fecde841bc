// The console's page: what the node this page came from says about its service, its
// governance, and its ledger. Every read and write goes to the same endpoints, with the same
// access, as any client's; members' writes are signed in this page.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ServiceView } from "./service";
import { GovView } from "./gov";
import { LedgerView } from "./ledger";

const VIEWS = { service: "Service", governance: "Governance", ledger: "Ledger" } as const;
type View = keyof typeof VIEWS;

/** The view `#<view>[/<more>]` names (the service's when none). */
function viewInHash(): View {
  const name = location.hash.slice(1).split("/")[0];
  return (name in VIEWS ? name : "service") as View;
}

function Console() {
  const [view, setView] = useState<View>(viewInHash);
  // A link to another view (the governance view's links to transactions) changes the hash.
  useEffect(() => {
    const follow = () => setView(viewInHash());
    addEventListener("hashchange", follow);
    return () => removeEventListener("hashchange", follow);
  }, []);
  const show = (v: View) => {
    location.hash = v;
    setView(v);
  };
  return (
    <>
      <header>
        <h1>Consort console</h1>
        <span>{location.host}</span>
        <nav>
          {(Object.keys(VIEWS) as View[]).map((v) => (
            <a key={v} href={`#${v}`} id={`tab-${v}`} class={v === view ? "current" : ""} onClick={(e) => { e.preventDefault(); show(v); }}>
              {VIEWS[v]}
            </a>
          ))}
        </nav>
      </header>
      <main>{view === "service" ? <ServiceView /> : view === "governance" ? <GovView /> : <LedgerView key={location.hash} />}</main>
    </>
  );
}

render(<Console />, document.getElementById("console")!);
