// consort-sdk: what Consort adds for app authors (next to @microsoft/ccf-app) and for members.
export { verifyReceipt, ReceiptError } from "./receipt.js";
export { memberSigner, SignerError } from "./gov.js";
