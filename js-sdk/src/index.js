// consort-sdk: what Consort adds for app authors next to @microsoft/ccf-app.
export { verifyReceipt, ReceiptError } from "./receipt.js";
