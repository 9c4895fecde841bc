/** Why a key and certificate cannot sign. */
export class SignerError extends Error {
  /** "certificate": not a P-256/P-384 X.509 certificate; "key": not a private key of the
   * certificate's curve; "mismatch": the key is not the certificate's; "unavailable": no
   * WebCrypto (a page that is not a secure context). */
  kind: "certificate" | "key" | "mismatch" | "unavailable";
}

export interface GovMessageOptions {
  /** `ccf.gov.msg.proposal_id`, for ballots and withdrawals. */
  proposalId?: string;
  /** `ccf.gov.msg.created_at`, whole seconds since the epoch; now by default. */
  createdAt?: number;
}

export interface MemberSigner {
  /** The member id: SHA-256 of the certificate (DER), lowercase hex. */
  id: string;
  /** The COSE algorithm: -7 (ES256) or -35 (ES384). */
  alg: number;
  /** A tagged COSE_Sign1 of `payload` as governance message `msgType` ("proposal", "ballot",
   * "withdrawal", "ack", "state_digest", "recovery_share", ...), as `consort gov` and CCF's
   * `ccf_cose_sign1` write it. Post it with `content-type: application/cose`. */
  sign(msgType: string, payload: string | Uint8Array, options?: GovMessageOptions): Promise<Uint8Array>;
}

/** A member's signer from its private key (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`) and
 * certificate, PEM text; WebCrypto holds the key, not exportable. */
export function memberSigner(options: { key: string; cert: string }): Promise<MemberSigner>;
