// The console's page: what the node this page came from says about its service. Every read
// goes to the same endpoints, with the same access, as any client's.
import { render } from "preact";
import { ServiceView } from "./service";

function Console() {
  return (
    <>
      <header>
        <h1>Consort console</h1>
        <span>{location.host}</span>
      </header>
      <main>
        <ServiceView />
      </main>
    </>
  );
}

render(<Console />, document.getElementById("console")!);
