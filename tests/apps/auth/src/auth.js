// Echoes who called, as each authentication policy shapes `request.caller`.
export function whoami(request) {
  return { body: request.caller };
}

// A COSE-signed request: the caller's content is the signed payload, as an ArrayBuffer; the raw
// body is the whole COSE_Sign1.
export function signed(request) {
  const { cose, ...rest } = request.caller;
  const content = cose.content;
  return {
    body: {
      caller: rest,
      contentIsArrayBuffer: content instanceof ArrayBuffer,
      content: ccf.bufToStr(content),
      bodyBytes: request.body.arrayBuffer().byteLength,
    },
  };
}
