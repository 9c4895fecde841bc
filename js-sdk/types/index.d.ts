export { verifyReceipt, ReceiptError, Receipt, VerifiedTransaction } from "./receipt";
export { memberSigner, SignerError, MemberSigner, GovMessageOptions } from "./gov";
