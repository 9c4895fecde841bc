// The console's page: what the node this page came from says about its service, and its
// governance. Every read and write goes to the same endpoints, with the same access, as any
// client's; members' writes are signed in this page.
import { render } from "preact";
import { useState } from "preact/hooks";
import { ServiceView } from "./service";
import { GovView } from "./gov";

const VIEWS = { service: "Service", governance: "Governance" } as const;
type View = keyof typeof VIEWS;

function Console() {
  const initial = (location.hash.slice(1) in VIEWS ? location.hash.slice(1) : "service") as View;
  const [view, setView] = useState<View>(initial);
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
      <main>{view === "service" ? <ServiceView /> : <GovView />}</main>
    </>
  );
}

render(<Console />, document.getElementById("console")!);
