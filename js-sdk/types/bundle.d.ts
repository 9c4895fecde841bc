/** A bundle as CCF and Consort deploy it (SPEC §4). */
export interface Bundle {
  metadata: { endpoints: Record<string, Record<string, EndpointDefinition>> };
  modules: Array<{ name: string; module: string }>;
}

export interface EndpointDefinition {
  js_module: string;
  js_function: string;
  authn_policies: Array<string | { all_of: string[] }>;
  forwarding_required: "sometimes" | "always" | "never";
  redirection_strategy?: "none" | "to_primary" | "to_backup";
  mode: "readwrite" | "readonly" | "historical";
  openapi?: unknown;
  [more: string]: unknown;
}

export declare const BUNDLE_MODULES_MAX: number;
export declare const BUNDLE_ENDPOINTS_MAX: number;

/** Why a bundle would be refused at deploy; the message is the node's own wording. */
export declare class BundleError extends Error {}

/** `app.json` and every file under `src/` of an app directory, as ccf-build-bundle reads them. */
export declare function readAppDir(dir: string): Bundle;

/** Throws the {@link BundleError} a deploy of the bundle would fail with. */
export declare function checkBundle(bundle: Bundle): Promise<void>;

/** Reads, checks and writes a bundle (`<dir>/bundle.json` unless `out` says otherwise). */
export declare function buildBundle(dir: string, out?: string): Promise<{ bundle: Bundle; path: string }>;
