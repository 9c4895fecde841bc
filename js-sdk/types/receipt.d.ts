/** A receipt as a Consort node answers `/app/receipt?transaction_id=` (SPEC §7). */
export interface Receipt {
  /** The signing node's certificate (PEM), endorsed by the service identity. */
  cert: string;
  /** SHA-256 (hex) of the node's public key (DER SubjectPublicKeyInfo). */
  node_id: string;
  /** Base64 DER ECDSA P-384/SHA-384 signature over the Merkle root. */
  signature: string;
  /** The path from the transaction's leaf to the root: each step's sibling, hex. */
  proof: Array<{ left: string } | { right: string }>;
  leaf_components: {
    write_set_digest: string;
    /** `ce:<view>.<seqno>:<64 hex>` */
    commit_evidence: string;
    claims_digest: string;
  };
  /** For a transaction the app ran: the app version, which `write_set_digest` binds
   * (`BLAKE3(entry_digest ‖ version as u64 LE ‖ bundle_digest)`). */
  app_version?: { version: number; bundle_digest: string; entry_digest: string };
}

/** The transaction a receipt proves. */
export interface VerifiedTransaction {
  view: number;
  seqno: number;
  /** `"<view>.<seqno>"` */
  txid: string;
  /** The app version that ran it, when the receipt names one (checked against the signed leaf). */
  appVersion?: { version: number; bundleDigest: string };
}

/** Why a receipt does not verify. */
export declare class ReceiptError extends Error {
  /** `malformed`: not a well-formed receipt; `signature`: the proof, a signature or the endorsement does not hold. */
  readonly kind: "malformed" | "signature";
}

/**
 * Verifies a receipt offline against the service certificate (PEM): the Merkle proof (BLAKE3),
 * the node's P-384 signature over the root, the node's certificate endorsed by the service, and
 * the node id. Runs in Node.js and in browsers. Throws a {@link ReceiptError} when it does not hold.
 */
export declare function verifyReceipt(receipt: Receipt | string, serviceCertPem: string): VerifiedTransaction;
