export { verifyReceipt, ReceiptError, Receipt, VerifiedTransaction } from "./receipt";
